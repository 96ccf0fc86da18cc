// Reads MNIST's IDX files, plain or gzipped, checking every header against the data that is there.
#include "lowbit/data/idx.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace lowbit {
namespace data {
namespace {

constexpr uint32_t kImagesMagic = 0x00000803;  // unsigned bytes, 3 dimensions
constexpr uint32_t kLabelsMagic = 0x00000801;  // unsigned bytes, 1 dimension
// The payload grows by at most this much per read, so a header that lies about the count costs no
// more memory than the data actually present (plus one chunk).
constexpr size_t kChunkBytes = size_t{1} << 20;
constexpr size_t kInputBufferBytes = size_t{1} << 16;

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error(path + ": " + what);
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08X", v);
  return buf;
}

std::string describe_magic(uint32_t magic) {
  // IDX magic: two zero bytes, a type code, the number of dimensions.
  if ((magic >> 16) != 0) return "not an IDX header";
  const char* type = nullptr;
  switch ((magic >> 8) & 0xFF) {
    case 0x08:
      type = "unsigned byte";
      break;
    case 0x09:
      type = "signed byte";
      break;
    case 0x0B:
      type = "int16";
      break;
    case 0x0C:
      type = "int32";
      break;
    case 0x0D:
      type = "float32";
      break;
    case 0x0E:
      type = "float64";
      break;
    default:
      return "not an IDX header: unknown type code";
  }
  const unsigned dims = magic & 0xFF;
  return std::string("IDX ") + type + ", " + std::to_string(dims) +
         (dims == 1 ? " dimension" : " dimensions");
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

// The bytes of one file, gunzipped when it starts with the gzip magic. The first buffer is read
// ahead to look at that magic, so the plain path also goes through it.
class IdxStream {
 public:
  explicit IdxStream(const std::string& path) : path_(path), in_(kInputBufferBytes) {
    file_.reset(std::fopen(path.c_str(), "rb"));
    if (!file_) fail(path_, std::string("cannot open (") + std::strerror(errno) + ")");
    fill();
    gzip_ = in_end_ >= 2 && in_[0] == 0x1F && in_[1] == 0x8B;
    if (!gzip_ && ends_with(path_, ".gz")) {
      if (in_end_ == 0) fail(path_, "not a gzip file: it is empty");
      char found[16];
      if (in_end_ >= 2) {
        std::snprintf(found, sizeof found, "%02x %02x", in_[0], in_[1]);
      } else {
        std::snprintf(found, sizeof found, "%02x", in_[0]);
      }
      fail(path_, std::string("not a gzip file: starts with ") + found +
                      " instead of the gzip magic bytes 1f 8b");
    }
    if (gzip_) {
      // 16 + MAX_WBITS: a gzip wrapper, whose CRC-32 and length zlib checks at the end of a member.
      const int rc = inflateInit2(&z_, 16 + MAX_WBITS);
      if (rc == Z_MEM_ERROR) throw std::bad_alloc();
      if (rc != Z_OK)
        fail(path_, "cannot start gzip decompression (zlib error " + std::to_string(rc) + ")");
    }
  }
  ~IdxStream() {
    if (gzip_) inflateEnd(&z_);
  }
  IdxStream(const IdxStream&) = delete;
  IdxStream& operator=(const IdxStream&) = delete;

  const std::string& path() const { return path_; }
  bool gzip() const { return gzip_; }

  // Reads up to n bytes; fewer only at the end of the (decompressed) data.
  size_t read(uint8_t* dst, size_t n) { return gzip_ ? read_gzip(dst, n) : read_plain(dst, n); }

 private:
  bool fill() {
    in_pos_ = 0;
    in_end_ = std::fread(in_.data(), 1, in_.size(), file_.get());
    check_read(in_end_ < in_.size());
    return in_end_ > 0;
  }

  void check_read(bool short_read) {
    if (short_read && std::ferror(file_.get())) {
      fail(path_, std::string("cannot read (") + std::strerror(errno) + ")");
    }
  }

  size_t read_plain(uint8_t* dst, size_t n) {
    size_t got = std::min(n, in_end_ - in_pos_);
    if (got > 0) std::memcpy(dst, in_.data() + in_pos_, got);
    in_pos_ += got;
    while (got < n) {
      const size_t k = std::fread(dst + got, 1, n - got, file_.get());
      check_read(k < n - got);
      if (k == 0) break;
      got += k;
    }
    return got;
  }

  size_t read_gzip(uint8_t* dst, size_t n) {
    size_t got = 0;
    while (got < n) {
      if (in_pos_ == in_end_ && !fill()) {
        if (member_ended_) break;
        fail(path_, "truncated gzip data: the compressed stream ends early");
      }
      if (member_ended_) {
        // More input after a complete member: gzip allows concatenated members (gzip a; gzip b;
        // cat), and anything else fails the next member's header check.
        inflateReset(&z_);
        member_ended_ = false;
      }
      const size_t out_n = std::min<size_t>(n - got, std::numeric_limits<uInt>::max());
      z_.next_in = in_.data() + in_pos_;
      z_.avail_in = static_cast<uInt>(in_end_ - in_pos_);
      z_.next_out = dst + got;
      z_.avail_out = static_cast<uInt>(out_n);
      const int rc = inflate(&z_, Z_NO_FLUSH);
      in_pos_ = in_end_ - z_.avail_in;
      got += out_n - z_.avail_out;
      if (rc == Z_STREAM_END) {
        member_ended_ = true;
        ++members_;
      } else if (rc == Z_MEM_ERROR) {
        throw std::bad_alloc();
      } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
        const std::string where =
            members_ > 0 && z_.total_out == 0
                ? ": bytes after the end of the gzip stream that start no new member"
                : "";
        fail(path_, "corrupt gzip data" + where + " (" + (z_.msg ? z_.msg : "zlib error") + ")");
      }
    }
    return got;
  }

  std::string path_;
  std::unique_ptr<std::FILE, FileCloser> file_;
  std::vector<uint8_t> in_;
  size_t in_pos_ = 0, in_end_ = 0;
  bool gzip_ = false;
  bool member_ended_ = false;
  int members_ = 0;  // complete gzip members so far
  z_stream z_{};
};

std::string byte_count(uint64_t n) { return std::to_string(n) + (n == 1 ? " byte" : " bytes"); }

uint32_t load_be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

// Reads the magic and ndims dimensions; the magic is checked before the dimensions are read so that
// a file of the other kind is reported as such, not as a short header.
std::vector<uint32_t> read_header(IdxStream& s, uint32_t magic, const char* kind) {
  const size_t ndims = magic & 0xFF;
  const size_t header_bytes = 4 + 4 * ndims;
  uint8_t buf[4 + 4 * 255];
  const auto truncated = [&](size_t found) {
    fail(s.path(),
         "truncated header: expected " + byte_count(header_bytes) + ", found " + byte_count(found));
  };
  size_t got = s.read(buf, 4);
  if (got < 4) truncated(got);
  const uint32_t found = load_be32(buf);
  if (found != magic) {
    fail(s.path(), "bad magic number: expected " + hex32(magic) + " (" + describe_magic(magic) +
                       ": " + kind + "), found " + hex32(found) + " (" + describe_magic(found) +
                       ")");
  }
  got = s.read(buf + 4, header_bytes - 4);
  if (got < header_bytes - 4) truncated(4 + got);
  std::vector<uint32_t> dims(ndims);
  for (size_t i = 0; i < ndims; ++i) dims[i] = load_be32(buf + 4 + 4 * i);
  return dims;
}

// Reads exactly `expected` bytes and requires the file to end there. `declared` says what the
// header promised, for the messages.
std::vector<uint8_t> read_payload(IdxStream& s, uint64_t expected, const std::string& declared) {
  const std::string source = s.gzip() ? " of decompressed data" : "";
  std::vector<uint8_t> out;
  while (out.size() < expected) {
    const size_t old = out.size();
    const size_t want = static_cast<size_t>(std::min<uint64_t>(kChunkBytes, expected - old));
    out.resize(old + want);  // grows geometrically, so the copies stay linear overall
    const size_t got = s.read(out.data() + old, want);
    if (got < want) {
      fail(s.path(), "truncated data: the header declares " + declared + " = " +
                         byte_count(expected) + ", found " + byte_count(old + got) + source);
    }
  }
  uint8_t extra[4096];
  uint64_t trailing = 0;
  while (const size_t k = s.read(extra, sizeof extra)) trailing += k;
  if (trailing > 0) {
    fail(s.path(), "trailing garbage: " + byte_count(trailing) + source + " after the " +
                       byte_count(expected) + " the header declares (" + declared + ")");
  }
  return out;
}

// The plain file, else the gzipped one; both when both exist (load_split compares them).
std::vector<std::string> find_idx_files(const std::string& dir, const std::string& name) {
  namespace fs = std::filesystem;
  std::vector<std::string> found;
  for (const std::string& candidate : {name, name + ".gz"}) {
    const fs::path p = fs::path(dir) / candidate;
    std::error_code ec;
    const bool exists = fs::exists(p, ec);
    if (ec) fail(p.string(), "cannot access (" + ec.message() + ")");
    if (exists) found.push_back(p.string());
  }
  if (found.empty())
    fail(dir, "missing " + name + " (looked for " + name + " and " + name + ".gz)");
  return found;
}

// Reads a file found by find_idx_files; where both forms exist they must hold the same data.
template <class T, class Read, class Same>
T read_one(const std::vector<std::string>& files, Read read, Same same, std::string* path) {
  *path = files[0];
  T value = read(files[0]);
  if (files.size() > 1 && !same(value, read(files[1]))) {
    fail(files[0], "differs from " + files[1] +
                       ": both files exist and hold different data; remove the one that is not "
                       "the data set");
  }
  return value;
}

Split load_split(const std::string& dir, const std::string& prefix) {
  Split s;
  s.images = read_one<Images>(
      find_idx_files(dir, prefix + "-images-idx3-ubyte"), read_idx_images,
      [](const Images& a, const Images& b) {
        return a.count == b.count && a.rows == b.rows && a.cols == b.cols && a.pixels == b.pixels;
      },
      &s.images_path);
  s.labels = read_one<Labels>(
      find_idx_files(dir, prefix + "-labels-idx1-ubyte"), read_idx_labels,
      [](const Labels& a, const Labels& b) { return a.labels == b.labels; }, &s.labels_path);
  const auto n_labels = static_cast<int64_t>(s.labels.labels.size());
  if (n_labels != s.images.count) {
    throw std::runtime_error("image and label counts differ: " + s.images_path + " has " +
                             std::to_string(s.images.count) + " images, " + s.labels_path +
                             " has " + std::to_string(n_labels) + " labels");
  }
  return s;
}

}  // namespace

Images read_idx_images(const std::string& path) {
  IdxStream s(path);
  const std::vector<uint32_t> dims = read_header(s, kImagesMagic, "images");
  Images images;
  images.count = dims[0];
  images.rows = dims[1];
  images.cols = dims[2];
  if (images.count == 0) fail(path, "no images: the header declares 0 images");
  if (images.rows == 0 || images.cols == 0) {
    fail(path, "empty images: the header declares images of " +
                   size_string(images.rows, images.cols) + " pixels");
  }
  // Three uint32 dimensions can overflow 64 bits; such a header cannot match any real file.
  const uint64_t pixels_per_image = uint64_t{dims[1]} * dims[2];
  if (dims[0] > std::numeric_limits<uint64_t>::max() / pixels_per_image) {
    fail(path, "bad header: " + std::to_string(images.count) + " images of " +
                   size_string(images.rows, images.cols) + " pixels overflow 64-bit sizes");
  }
  images.pixels = read_payload(s, dims[0] * pixels_per_image,
                               std::to_string(images.count) + " images of " +
                                   size_string(images.rows, images.cols) + " pixels");
  return images;
}

Labels read_idx_labels(const std::string& path) {
  IdxStream s(path);
  const std::vector<uint32_t> dims = read_header(s, kLabelsMagic, "labels");
  Labels labels;
  labels.labels = read_payload(s, dims[0], std::to_string(dims[0]) + " labels");
  return labels;
}

Dataset load_idx_dataset(const std::string& dir, bool with_train) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status status = fs::status(dir, ec);
  if (status.type() == fs::file_type::not_found) {
    fail(dir, "IDX data set directory does not exist");
  }
  if (ec) fail(dir, "cannot access the IDX data set directory (" + ec.message() + ")");
  if (status.type() != fs::file_type::directory) {
    fail(dir, "not a directory (expected the directory of an IDX data set)");
  }

  Split train = with_train ? load_split(dir, "train") : Split{};
  Split test = load_split(dir, "t10k");
  Dataset ds;
  ds.format = "idx";
  ds.train = std::move(train);
  ds.test = std::move(test);
  finish_dataset(ds);
  return ds;
}

bool is_idx_dataset(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const std::string name = "t10k-images-idx3-ubyte";
  return fs::exists(fs::path(dir) / name, ec) || fs::exists(fs::path(dir) / (name + ".gz"), ec);
}

}  // namespace data
}  // namespace lowbit
