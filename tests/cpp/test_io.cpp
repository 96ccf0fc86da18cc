// lowbit_io: atomic writes under a full disk and a file-size limit, stale temporaries, directory
// checks and locks, and the CRC-32 checks of ZIP archives and of the ONNX checksum trailer.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "lowbit/io/checksum.h"
#include "lowbit/io/file.h"

namespace {

namespace fs = std::filesystem;
using lowbit::io::Checksum;

// The message of the std::runtime_error that f throws ("" when it throws none).
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::vector<std::string> entries(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  return names;
}

class IoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("lowbit-io-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
    fs::remove_all(dir_);
  }
  // A tmpfs of `bytes` (read-only when asked) over dir_; false where this process cannot mount.
  bool mount_tmpfs(size_t bytes, bool read_only = false) {
    const std::string options = "size=" + std::to_string(bytes);
    mounted_ =
        ::mount("tmpfs", dir_.c_str(), "tmpfs", read_only ? MS_RDONLY : 0, options.c_str()) == 0;
    return mounted_;
  }
  fs::path dir_;
  bool mounted_ = false;
};

TEST(Io, ReasonsAreErrnoTextInLowerCase) {
  EXPECT_EQ(lowbit::io::reason(ENOSPC), "no space left on device");
  EXPECT_EQ(lowbit::io::reason(EFBIG), "file too large");
}

TEST_F(IoTest, WritesAndReplacesWithoutLeavingTemporaries) {
  const std::string path = (dir_ / "f.bin").string();
  lowbit::io::write_file_atomically(path, std::string("first\0x", 7));
  EXPECT_EQ(slurp(path), std::string("first\0x", 7));
  lowbit::io::write_file_atomically(path, "second");
  EXPECT_EQ(slurp(path), "second");
  EXPECT_EQ(entries(dir_), std::vector<std::string>{"f.bin"});
  EXPECT_EQ(lowbit::io::read_file(path, 100), "second");
}

TEST_F(IoTest, AFullDiskIsAnErrorNamingTheFileAndKeepsTheOldOne) {
  if (!mount_tmpfs(64 * 1024)) GTEST_SKIP() << "cannot mount a tmpfs here (not root?)";
  const std::string path = (dir_ / "checkpoint.pt").string();
  lowbit::io::write_file_atomically(path, "the previous checkpoint");
  const std::string error =
      error_of([&] { lowbit::io::write_file_atomically(path, std::string(1 << 20, 'x')); });
  EXPECT_EQ(error, path + ": no space left on device");
  EXPECT_EQ(slurp(path), "the previous checkpoint");
  EXPECT_EQ(entries(dir_), std::vector<std::string>{"checkpoint.pt"});
}

TEST_F(IoTest, AFileSizeLimitIsAnErrorNamingTheFileAndKeepsTheOldOne) {
  const std::string path = (dir_ / "metrics.jsonl").string();
  lowbit::io::write_file_atomically(path, "old");
  // In a child: the limit and the ignored SIGXFSZ (as the lowbit command sets it) stay there.
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::signal(SIGXFSZ, SIG_IGN);
    const rlimit limit{4096, 4096};
    ::setrlimit(RLIMIT_FSIZE, &limit);
    const std::string error =
        error_of([&] { lowbit::io::write_file_atomically(path, std::string(100000, 'y')); });
    (void)!::write(pipe_fds[1], error.data(), error.size());
    ::_exit(0);
  }
  ::close(pipe_fds[1]);
  std::string error;
  char buffer[512];
  for (ssize_t n; (n = ::read(pipe_fds[0], buffer, sizeof buffer)) > 0;) error.append(buffer, n);
  ::close(pipe_fds[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(error, path + ": file too large");
  EXPECT_EQ(slurp(path), "old");
  EXPECT_EQ(entries(dir_), std::vector<std::string>{"metrics.jsonl"});
}

TEST_F(IoTest, AReadOnlyDirectoryIsFoundBeforeAnyWork) {
  if (!mount_tmpfs(64 * 1024, /*read_only=*/true)) GTEST_SKIP() << "cannot mount a tmpfs here";
  const std::string error = error_of([&] { lowbit::io::ensure_writable_directory(dir_.string()); });
  EXPECT_EQ(error, dir_.string() + ": cannot write in the directory: read-only file system");
  EXPECT_NE(error_of([&] { lowbit::io::write_file_atomically((dir_ / "x").string(), "x"); }), "");
}

TEST_F(IoTest, EnsureWritableDirectoryCreatesItAndNamesWhatIsWrong) {
  lowbit::io::ensure_writable_directory((dir_ / "a" / "b").string());
  EXPECT_TRUE(fs::is_directory(dir_ / "a" / "b"));
  EXPECT_TRUE(fs::is_empty(dir_ / "a" / "b"));  // the probe file is gone
  lowbit::io::write_file_atomically((dir_ / "file").string(), "x");
  EXPECT_EQ(error_of([&] { lowbit::io::ensure_writable_directory((dir_ / "file").string()); }),
            (dir_ / "file").string() + ": exists and is not a directory");
}

TEST_F(IoTest, StaleTemporariesOfDeadProcessesAreRemoved) {
  const pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  ::waitpid(dead, nullptr, 0);
  const std::string path = (dir_ / "checkpoint.pt").string();
  const std::string mine = ".checkpoint.pt.tmp-" + std::to_string(::getpid()) + "-7";
  const std::string stale = ".checkpoint.pt.tmp-" + std::to_string(dead) + "-0";
  for (const std::string& name : {mine, stale, std::string(".checkpoint.pt.tmp-x-1"),
                                  std::string(".other.tmp-") + std::to_string(dead) + "-0"})
    std::ofstream(dir_ / name) << "partial";
  EXPECT_EQ(lowbit::io::remove_stale_temporaries(path), 1);
  EXPECT_FALSE(fs::exists(dir_ / stale));
  EXPECT_TRUE(fs::exists(dir_ / mine));                      // a live writer's file stays
  EXPECT_TRUE(fs::exists(dir_ / ".checkpoint.pt.tmp-x-1"));  // not of the writer's form
  // Every write of the file also removes them.
  std::ofstream(dir_ / stale) << "partial";
  lowbit::io::write_file_atomically(path, "new");
  EXPECT_FALSE(fs::exists(dir_ / stale));
  EXPECT_TRUE(fs::exists(dir_ / mine));
}

TEST_F(IoTest, ReadFileNamesMissingFilesDirectoriesAndSizes) {
  EXPECT_EQ(error_of([&] { lowbit::io::read_file((dir_ / "none").string(), 10); }),
            (dir_ / "none").string() + ": no such file or directory");
  EXPECT_EQ(error_of([&] { lowbit::io::read_file(dir_.string(), 10); }),
            dir_.string() + ": is a directory, not a file");
  lowbit::io::write_file_atomically((dir_ / "big").string(), std::string(11, 'z'));
  EXPECT_EQ(error_of([&] { lowbit::io::read_file((dir_ / "big").string(), 10); }),
            (dir_ / "big").string() + ": too large: 11 bytes, over the limit of 10");
}

TEST_F(IoTest, ASecondLockOnADirectoryIsRefusedUntilTheFirstEnds) {
  {
    lowbit::io::DirectoryLock first(dir_.string());
    const std::string error = error_of([&] { lowbit::io::DirectoryLock second(dir_.string()); });
    EXPECT_NE(error.find(dir_.string() + ": another process"), std::string::npos) << error;
  }
  lowbit::io::DirectoryLock again(dir_.string());
}

TEST(Checksum, Crc32HasTheStandardCheckValue) {
  EXPECT_EQ(lowbit::io::crc32("123456789"), 0xCBF43926u);
  EXPECT_EQ(lowbit::io::crc32(""), 0u);
}

// Written by Python's zipfile: 'a/data.pkl' stored (36 bytes), 'a/data/0' deflated (256 bytes).
const std::string kZip(
    "\x50\x4b\x03\x04\x14\x00\x00\x00\x00\x00\x00\x00\x21\x00\x5b\x25\xc2\x05\x24\x00\x00\x00\x24"
    "\x00"
    "\x00\x00\x0a\x00\x00\x00\x61\x2f\x64\x61\x74\x61\x2e\x70\x6b\x6c\x77\x65\x69\x67\x68\x74\x73"
    "\x20"
    "\x30\x31\x32\x33\x34\x35\x36\x37\x38\x39\x77\x65\x69\x67\x68\x74\x73\x20\x30\x31\x32\x33\x34"
    "\x35"
    "\x36\x37\x38\x39\x50\x4b\x03\x04\x14\x00\x00\x00\x08\x00\x00\x00\x21\x00\x4c\x7e\x36\x52\x45"
    "\x00"
    "\x00\x00\x00\x01\x00\x00\x08\x00\x00\x00\x61\x2f\x64\x61\x74\x61\x2f\x30\x63\x60\x64\x62\x66"
    "\x61"
    "\x65\x63\xe7\xe0\xe4\xe2\xe6\xe1\xe5\xe3\x17\x10\x14\x12\x16\x11\x15\x13\x97\x90\x94\x92\x96"
    "\x91"
    "\x95\x93\x57\x50\x54\x52\x56\x51\x55\x53\xd7\xd0\xd4\xd2\xd6\xd1\xd5\xd3\x37\x30\x34\x32\x36"
    "\x31"
    "\x35\x33\xb7\xb0\xb4\xb2\xb6\xb1\xb5\xb3\x67\x18\xe2\xfa\x01\x50\x4b\x01\x02\x14\x03\x14\x00"
    "\x00"
    "\x00\x00\x00\x00\x00\x21\x00\x5b\x25\xc2\x05\x24\x00\x00\x00\x24\x00\x00\x00\x0a\x00\x00\x00"
    "\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x80\x01\x00\x00\x00\x00\x61\x2f\x64\x61\x74\x61\x2e\x70\x6b\x6c"
    "\x50"
    "\x4b\x01\x02\x14\x03\x14\x00\x00\x00\x08\x00\x00\x00\x21\x00\x4c\x7e\x36\x52\x45\x00\x00\x00"
    "\x00"
    "\x01\x00\x00\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80\x01\x4c\x00\x00\x00\x61\x2f"
    "\x64"
    "\x61\x74\x61\x2f\x30\x50\x4b\x05\x06\x00\x00\x00\x00\x02\x00\x02\x00\x6e\x00\x00\x00\xb7\x00"
    "\x00"
    "\x00\x00\x00",
    315);
// Where the two members' data lie in kZip (after their local headers).
constexpr size_t kStoredData = 30 + 10, kStoredSize = 36;

TEST(Checksum, ZipArchivesOfAnotherToolVerify) {
  EXPECT_EQ(lowbit::io::verify_zip(kZip, "a.zip"), 2);
}

TEST(Checksum, EveryFlippedBitOfAZipMembersDataIsFound) {
  for (size_t byte = kStoredData; byte < kStoredData + kStoredSize; ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = kZip;
      bad[byte] = static_cast<char>(bad[byte] ^ (1 << bit));
      const std::string error = error_of([&] { lowbit::io::verify_zip(bad, "a.zip"); });
      EXPECT_EQ(error.rfind("a.zip: corrupt file: member 'a/data.pkl': CRC-32", 0), 0u) << error;
    }
  }
  // The deflated member: any change of its compressed bytes fails to inflate or to match.
  const size_t deflated = kStoredData + kStoredSize + 30 + 8;
  for (size_t byte = deflated; byte < deflated + 20; ++byte) {
    std::string bad = kZip;
    bad[byte] = static_cast<char>(bad[byte] ^ 0x10);
    EXPECT_NE(error_of([&] { lowbit::io::verify_zip(bad, "a.zip"); }), "") << byte;
  }
}

TEST(Checksum, TruncatedOrForeignFilesAreNotZipArchives) {
  EXPECT_EQ(error_of([&] { lowbit::io::verify_zip(kZip.substr(0, 200), "a.zip"); }),
            "a.zip: corrupt file: not a ZIP archive (no end of central directory record)");
  EXPECT_EQ(error_of([&] { lowbit::io::verify_zip("PK", "a.zip"); }),
            "a.zip: corrupt file: too short for a ZIP archive (2 bytes)");
  // Every cut of the file is refused with an error, never a read past the end.
  for (size_t n = 0; n < kZip.size(); ++n)
    EXPECT_NE(error_of([&] { lowbit::io::verify_zip(kZip.substr(0, n), "a.zip"); }), "") << n;
}

TEST(Checksum, OnnxTrailerIsAMetadataEntryOverTheBodysCrc) {
  const std::string body = "\x08\x07\x3a\x00";  // ir_version 7, an empty graph
  const std::string trailer = lowbit::io::onnx_checksum_trailer(body);
  // field 14 (metadata_props), length 24: key "lowbit.crc32" (field 1), value: 8 hex digits.
  char crc[9];
  std::snprintf(crc, sizeof crc, "%08x", lowbit::io::crc32(body));
  EXPECT_EQ(trailer, std::string("\x72\x18\x0a\x0clowbit.crc32\x12\x08") + crc);
  EXPECT_EQ(lowbit::io::verify_onnx_checksum(body + trailer, "m.onnx"), Checksum::kVerified);
  EXPECT_EQ(lowbit::io::verify_onnx_checksum(body, "m.onnx"), Checksum::kAbsent);
  for (size_t byte = 0; byte < body.size(); ++byte) {
    std::string bad = body + trailer;
    bad[byte] = static_cast<char>(bad[byte] ^ 4);
    EXPECT_EQ(error_of([&] {
                lowbit::io::verify_onnx_checksum(bad, "m.onnx");
              }).rfind("m.onnx: corrupt file: its checksum (lowbit.crc32 ", 0),
              0u);
  }
}

}  // namespace
