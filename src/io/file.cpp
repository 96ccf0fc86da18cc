// Atomic writes, whole-file reads, directory checks and locks, with errno's reason in every
// message.
#include "lowbit/io/file.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <system_error>

namespace lowbit {
namespace io {
namespace {

namespace fs = std::filesystem;

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error(path + ": " + what);
}

std::string temporary_prefix(const fs::path& target) {
  return "." + target.filename().string() + ".tmp-";
}

// The directory that holds `path` ("." for a bare file name).
fs::path parent_of(const fs::path& path) {
  return path.has_parent_path() ? path.parent_path() : fs::path(".");
}

// The temporary file of the write in progress, for the signal handler (async-signal-safe: a fixed
// buffer and a flag, unlink and raise only).
char g_temporary[4096];
volatile sig_atomic_t g_has_temporary = 0;

void remember_temporary(const std::string& path) {
  g_has_temporary = 0;
  if (path.size() >= sizeof g_temporary) return;
  std::memcpy(g_temporary, path.c_str(), path.size() + 1);
  g_has_temporary = 1;
}

extern "C" void remove_temporary_and_end(int sig) {
  if (g_has_temporary) ::unlink(g_temporary);
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

int open_directory(const std::string& dir) {
  return ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

}  // namespace

IoError::IoError(const std::string& path, int err)
    : std::runtime_error(path + ": " + reason(err)), err_(err) {}

std::string reason(int err) {
  std::string s = std::strerror(err);
  if (!s.empty()) s[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(s[0])));
  return s;
}

void write_file_atomically(const std::string& given, std::string_view bytes) {
  // A symbolic link is followed: its target is replaced, the link stays.
  std::error_code link_ec;
  const std::string path = fs::is_symlink(given, link_ec)
                               ? fs::weakly_canonical(fs::path(given), link_ec).string()
                               : given;
  const fs::path target(path);
  if (path.empty() || !target.has_filename()) fail(path, "not a file name");
  std::error_code ec;
  if (fs::is_directory(target, ec)) fail(path, "is a directory");
  remove_stale_temporaries(path);  // what a writer of this file left when it was killed
  static std::atomic<unsigned> counter{0};
  int fd = -1;
  fs::path tmp;
  for (int attempt = 0; fd < 0; ++attempt) {
    tmp = parent_of(target) /
          (temporary_prefix(target) + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    // Remembered before it exists: a signal between the open and the remembering would otherwise
    // leave the file behind (the name holds our pid, so it is ours whether or not it exists).
    remember_temporary(tmp.string());
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    const int err = errno;
    if (fd < 0 && (err != EEXIST || attempt >= 100)) {
      g_has_temporary = 0;
      throw IoError(path, err);
    }
  }
  const auto give_up = [&](int err) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    g_has_temporary = 0;
    throw IoError(path, err);
  };
  for (size_t done = 0; done < bytes.size();) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    // A write of 0 bytes makes no progress: the device takes no more (reported as ENOSPC).
    if (n <= 0) give_up(n < 0 ? errno : ENOSPC);
    done += static_cast<size_t>(n);
  }
  // Data that a file system only finds no room for at flush time fails here, not after the rename.
  if (::fsync(fd) != 0 && errno != EINVAL && errno != EROFS) give_up(errno);
  const int closed = ::close(fd);
  const int close_err = errno;
  fd = -1;
  if (closed != 0 && close_err != EINTR) give_up(close_err);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) give_up(errno);
  g_has_temporary = 0;
}

void remove_temporaries_on_signals() {
  for (const int sig : {SIGINT, SIGTERM, SIGHUP}) {
    struct sigaction action {};
    action.sa_handler = remove_temporary_and_end;
    sigemptyset(&action.sa_mask);
    ::sigaction(sig, &action, nullptr);
  }
}

int remove_stale_temporaries(const std::string& path) {
  const fs::path target(path);
  if (!target.has_filename()) return 0;
  const std::string prefix = temporary_prefix(target);
  const fs::path dir = parent_of(target);
  int removed = 0;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    // ".NAME.tmp-PID-N": the writer's process id, then a counter.
    const std::string rest = name.substr(prefix.size());
    const size_t dash = rest.find('-');
    if (dash == 0 || dash == std::string::npos) continue;
    bool digits = true;
    for (size_t i = 0; i < rest.size(); ++i)
      if (i != dash && !std::isdigit(static_cast<unsigned char>(rest[i]))) digits = false;
    if (!digits || dash > 9) continue;
    const auto pid = static_cast<pid_t>(std::stol(rest.substr(0, dash)));
    const bool running = pid == ::getpid() || ::kill(pid, 0) == 0 || errno == EPERM;
    if (running) continue;
    std::error_code remove_ec;
    if (fs::remove(it->path(), remove_ec)) ++removed;
  }
  return removed;
}

std::string read_file(const std::string& path, int64_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw IoError(path, errno);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw IoError(path, errno);
  if (S_ISDIR(st.st_mode)) fail(path, "is a directory, not a file");
  if (!S_ISREG(st.st_mode)) fail(path, "not a regular file");
  if (st.st_size > max_bytes) {
    fail(path, "too large: " + std::to_string(st.st_size) + " bytes, over the limit of " +
                   std::to_string(max_bytes));
  }
  std::string bytes(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw IoError(path, errno);
    if (n == 0) fail(path, "the file shrank while it was read");
    done += static_cast<size_t>(n);
  }
  return bytes;
}

bool ensure_writable_directory(const std::string& dir) {
  if (dir.empty()) fail(dir, "no directory given");
  std::error_code ec;
  const fs::file_status status = fs::status(dir, ec);
  bool created = false;
  if (status.type() == fs::file_type::not_found) {
    fs::create_directories(dir, ec);
    if (ec) fail(dir, "cannot create the directory: " + reason(ec.value()));
    created = true;
  } else if (ec) {
    fail(dir, reason(ec.value()));
  } else if (status.type() != fs::file_type::directory) {
    fail(dir, "exists and is not a directory");
  }
  // access(W_OK) would pass for root on a read-only mode; only creating a file tells.
  const fs::path probe = fs::path(dir) / (".lowbit-write-test-" + std::to_string(::getpid()));
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) fail(dir, "cannot write in the directory: " + reason(errno));
  ::close(fd);
  ::unlink(probe.c_str());
  return created;
}

void check_not_input(const std::string& out, const std::string& in, const std::string& what) {
  if (out.empty() || in.empty()) return;
  std::error_code ec;
  if (fs::equivalent(out, in, ec) && !ec) {
    throw std::invalid_argument(out + ": is " + what + " (" + in + "); write the output elsewhere");
  }
}

DirectoryLock::DirectoryLock(const std::string& dir) {
  fd_ = open_directory(dir);
  if (fd_ < 0) fail(dir, "cannot open the directory to lock it: " + reason(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd_);
    fd_ = -1;
    if (err == EWOULDBLOCK) {
      fail(dir, "another process is writing to this directory (it holds its lock)");
    }
    fail(dir, "cannot lock the directory: " + reason(err));
  }
}

DirectoryLock::~DirectoryLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the descriptor releases the flock
}

}  // namespace io
}  // namespace lowbit
