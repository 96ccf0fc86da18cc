// Files written so that nothing is lost when a process dies or a disk fills up, and read with
// errors that name the file and the reason (torch-free; library lowbit_io).
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace lowbit {
namespace io {

// A file that could not be read or written for a reason of the system's (errno: a full disk, a
// file-size limit, a read-only file system, a missing file): "PATH: REASON".
class IoError : public std::runtime_error {
 public:
  IoError(const std::string& path, int err);
  int error_code() const { return err_; }  // the errno value

 private:
  int err_;
};

// The reason for errno value `err` as the messages print it: strerror's text with its first letter
// in lower case ("no space left on device", "file too large", "permission denied").
std::string reason(int err);

// Writes `bytes` to `path` atomically: into a new temporary file beside it (".NAME.tmp-PID-N"),
// flushed to the disk (fsync), then renamed over `path`. A reader sees the old file or the whole
// new one. On any failure (ENOSPC, EFBIG under `ulimit -f` with SIGXFSZ ignored, EACCES, EROFS,
// ...) the temporary file is removed, `path` is left as it was, and IoError says "PATH: REASON"
// (for example "runs/bnn/checkpoint.pt: no space left on device"). New files get the permissions
// 0666 less the umask, as an ordinary file would.
void write_file_atomically(const std::string& path, std::string_view bytes);

// Makes SIGINT, SIGTERM and SIGHUP remove the temporary file of a write_file_atomically in progress
// before the process ends as the signal says (for commands; a library does not take signals).
void remove_temporaries_on_signals();

// Removes the temporary files that write_file_atomically left beside `path` when its process was
// killed: ".NAME.tmp-PID-N" whose process PID no longer runs (a live writer's file is left alone).
// Returns how many were removed; a directory that cannot be listed removes nothing.
int remove_stale_temporaries(const std::string& path);

// The whole content of a regular file of at most `max_bytes` bytes. IoError "PATH: REASON" when it
// is missing or unreadable; std::runtime_error when it is a directory ("is a directory, not a
// file") or larger than the limit (which is then named, with the file's size).
std::string read_file(const std::string& path, int64_t max_bytes);

// Creates `dir` (and its parents) when missing and checks that files can be created in it, by
// creating and removing one: a read-only directory or file system is found before any work is done.
// std::runtime_error "DIR: REASON" otherwise. Returns true when it created `dir`.
bool ensure_writable_directory(const std::string& dir);

// Refuses to write `out` when it is the same file as the input `in` (both exist and are one file,
// through links too): std::invalid_argument "OUT: is WHAT; write the output elsewhere". An empty
// or missing path is never the same file.
void check_not_input(const std::string& out, const std::string& in, const std::string& what);

// An exclusive advisory lock (flock) on a directory, held by this object until it is destroyed or
// the process ends (a killed process leaves no stale lock). Throws std::runtime_error "DIR: ..."
// when another process holds it.
class DirectoryLock {
 public:
  explicit DirectoryLock(const std::string& dir);
  ~DirectoryLock();
  DirectoryLock(const DirectoryLock&) = delete;
  DirectoryLock& operator=(const DirectoryLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace io
}  // namespace lowbit
