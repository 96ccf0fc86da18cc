// CRC-32 checks of ZIP archives (PyTorch checkpoints) and of lowbit's ONNX checksum trailer.
#include "lowbit/io/checksum.h"

#include <zlib.h>

#include <cstdio>
#include <limits>
#include <new>
#include <stdexcept>
#include <vector>

namespace lowbit {
namespace io {
namespace {

[[noreturn]] void corrupt(const std::string& origin, const std::string& what) {
  throw std::runtime_error(origin + ": corrupt file: " + what);
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%08x", v);
  return buf;
}

// Little-endian reads, bounds-checked against the archive.
class Reader {
 public:
  Reader(std::string_view bytes, const std::string& origin) : b_(bytes), origin_(origin) {}
  void need(uint64_t offset, uint64_t n, const char* what) const {
    if (offset > b_.size() || n > b_.size() - offset) {
      corrupt(origin_, std::string(what) + " lies beyond the end of the file (offset " +
                           std::to_string(offset) + ", " + std::to_string(n) + " bytes, file " +
                           std::to_string(b_.size()) + " bytes)");
    }
  }
  uint64_t le(uint64_t offset, int n) const {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(b_[offset + i]);
    return v;
  }
  std::string_view slice(uint64_t offset, uint64_t n) const {
    return b_.substr(static_cast<size_t>(offset), static_cast<size_t>(n));
  }
  uint64_t size() const { return b_.size(); }

 private:
  std::string_view b_;
  const std::string& origin_;
};

constexpr uint32_t kLocal = 0x04034b50, kCentral = 0x02014b50, kEnd = 0x06054b50;
constexpr uint32_t kEnd64 = 0x06064b50, kLocator64 = 0x07064b50;

struct Directory {
  uint64_t entries = 0, offset = 0, size = 0;
};

Directory find_directory(const Reader& r, const std::string& origin) {
  if (r.size() < 22)
    corrupt(origin, "too short for a ZIP archive (" + std::to_string(r.size()) + " bytes)");
  // The end record is the last 22 bytes plus a comment of up to 65535 bytes.
  const uint64_t lowest = r.size() >= 22 + 65535 ? r.size() - 22 - 65535 : 0;
  for (uint64_t at = r.size() - 22;; --at) {
    if (r.le(at, 4) == kEnd && at + 22 + r.le(at + 20, 2) == r.size()) {
      Directory d{r.le(at + 10, 2), r.le(at + 16, 4), r.le(at + 12, 4)};
      if (d.entries == 0xFFFF || d.offset == 0xFFFFFFFF || d.size == 0xFFFFFFFF) {
        if (at < 20 || r.le(at - 20, 4) != kLocator64) corrupt(origin, "ZIP64 locator missing");
        const uint64_t end64 = r.le(at - 12, 8);
        r.need(end64, 56, "the ZIP64 end of central directory");
        if (r.le(end64, 4) != kEnd64) corrupt(origin, "bad ZIP64 end of central directory");
        d = Directory{r.le(end64 + 32, 8), r.le(end64 + 48, 8), r.le(end64 + 40, 8)};
      }
      r.need(d.offset, d.size, "the central directory");
      return d;
    }
    if (at == lowest) break;
  }
  corrupt(origin, "not a ZIP archive (no end of central directory record)");
}

uint32_t inflated_crc(std::string_view data, uint64_t expected_size, const std::string& origin,
                      const std::string& name) {
  z_stream z{};
  if (inflateInit2(&z, -MAX_WBITS) != Z_OK) throw std::bad_alloc();
  std::vector<unsigned char> out(1 << 16);
  uLong crc = ::crc32(0L, Z_NULL, 0);
  uint64_t total = 0;
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  size_t left = data.size();
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    const uInt chunk = static_cast<uInt>(std::min<size_t>(left, std::numeric_limits<uInt>::max()));
    z.avail_in = chunk;
    z.next_out = out.data();
    z.avail_out = static_cast<uInt>(out.size());
    rc = inflate(&z, Z_NO_FLUSH);
    left -= chunk - z.avail_in;
    const size_t produced = out.size() - z.avail_out;
    crc = ::crc32(crc, out.data(), static_cast<uInt>(produced));
    total += produced;
    if (rc != Z_OK && rc != Z_STREAM_END && !(rc == Z_BUF_ERROR && produced > 0)) {
      inflateEnd(&z);
      corrupt(origin, "member '" + name + "': its deflated data does not inflate");
    }
  }
  inflateEnd(&z);
  if (total != expected_size) corrupt(origin, "member '" + name + "': wrong uncompressed size");
  return static_cast<uint32_t>(crc);
}

constexpr std::string_view kOnnxKey = "lowbit.crc32";
constexpr size_t kTrailerBytes = 2 + 2 + kOnnxKey.size() + 2 + 8;

std::string trailer_for(uint32_t crc) {
  // ModelProto.metadata_props (field 14, length-delimited) holding a StringStringEntryProto with
  // key (field 1) and value (field 2).
  const std::string value = hex32(crc);
  std::string entry;
  entry += '\x0a';
  entry += static_cast<char>(kOnnxKey.size());
  entry += kOnnxKey;
  entry += '\x12';
  entry += static_cast<char>(value.size());
  entry += value;
  std::string out;
  out += static_cast<char>((14 << 3) | 2);
  out += static_cast<char>(entry.size());
  return out + entry;
}

}  // namespace

uint32_t crc32(std::string_view bytes) {
  uLong crc = ::crc32(0L, Z_NULL, 0);
  const auto* p = reinterpret_cast<const Bytef*>(bytes.data());
  for (size_t left = bytes.size(); left > 0;) {
    const uInt n = static_cast<uInt>(std::min<size_t>(left, 1u << 30));
    crc = ::crc32(crc, p, n);
    p += n;
    left -= n;
  }
  return static_cast<uint32_t>(crc);
}

int64_t verify_zip(std::string_view archive, const std::string& origin) {
  const Reader r(archive, origin);
  const Directory d = find_directory(r, origin);
  uint64_t at = d.offset;
  for (uint64_t e = 0; e < d.entries; ++e) {
    r.need(at, 46, "a central directory entry");
    if (r.le(at, 4) != kCentral)
      corrupt(origin, "bad central directory entry " + std::to_string(e));
    const uint64_t method = r.le(at + 10, 2), crc = r.le(at + 16, 4);
    uint64_t compressed = r.le(at + 20, 4), size = r.le(at + 24, 4);
    const uint64_t name_len = r.le(at + 28, 2), extra_len = r.le(at + 30, 2);
    const uint64_t comment_len = r.le(at + 32, 2);
    uint64_t local = r.le(at + 42, 4);
    r.need(at + 46, name_len + extra_len + comment_len, "a central directory entry");
    const std::string name(r.slice(at + 46, name_len));
    // ZIP64 sizes and offset, in this order, for the fields that hold 0xFFFFFFFF.
    for (uint64_t x = at + 46 + name_len, end = x + extra_len; x + 4 <= end;) {
      const uint64_t id = r.le(x, 2), len = r.le(x + 2, 2);
      if (x + 4 + len > end) corrupt(origin, "member '" + name + "': bad extra field");
      if (id == 0x0001) {
        uint64_t y = x + 4;
        for (uint64_t* field : {&size, &compressed, &local}) {
          if (*field != 0xFFFFFFFF) continue;
          if (y + 8 > x + 4 + len) corrupt(origin, "member '" + name + "': bad ZIP64 field");
          *field = r.le(y, 8);
          y += 8;
        }
      }
      x += 4 + len;
    }
    r.need(local, 30, "a local header");
    if (r.le(local, 4) != kLocal) corrupt(origin, "member '" + name + "': bad local header");
    const uint64_t local_name = r.le(local + 26, 2), local_extra = r.le(local + 28, 2);
    r.need(local + 30, local_name + local_extra, "a local header");
    if (r.slice(local + 30, local_name) != name) {
      corrupt(origin, "member '" + name + "': its local header names another file");
    }
    const uint64_t data = local + 30 + local_name + local_extra;
    r.need(data, compressed, ("member '" + name + "'").c_str());
    const std::string_view bytes = r.slice(data, compressed);
    uint32_t actual = 0;
    if (method == 0) {
      if (compressed != size) corrupt(origin, "member '" + name + "': stored sizes differ");
      actual = crc32(bytes);
    } else if (method == 8) {
      actual = inflated_crc(bytes, size, origin, name);
    } else {
      corrupt(origin, "member '" + name + "': compression method " + std::to_string(method) +
                          " is not supported");
    }
    if (actual != crc) {
      corrupt(origin, "member '" + name + "': CRC-32 " + hex32(actual) +
                          " where the archive says " + hex32(static_cast<uint32_t>(crc)));
    }
    at += 46 + name_len + extra_len + comment_len;
  }
  return static_cast<int64_t>(d.entries);
}

std::string onnx_checksum_trailer(std::string_view body) { return trailer_for(crc32(body)); }

Checksum verify_onnx_checksum(std::string_view file, const std::string& origin) {
  if (file.size() < kTrailerBytes) return Checksum::kAbsent;
  const std::string_view tail = file.substr(file.size() - kTrailerBytes);
  const std::string expected_shape = trailer_for(0);
  // The same bytes as a trailer, but for the 8 hex digits of the value.
  if (tail.substr(0, kTrailerBytes - 8) !=
      std::string_view(expected_shape).substr(0, kTrailerBytes - 8))
    return Checksum::kAbsent;
  const std::string_view body = file.substr(0, file.size() - kTrailerBytes);
  const uint32_t actual = crc32(body);
  if (tail.substr(kTrailerBytes - 8) != hex32(actual)) {
    corrupt(origin, "its checksum (lowbit.crc32 " + std::string(tail.substr(kTrailerBytes - 8)) +
                        ") does not match its content (" + hex32(actual) + ")");
  }
  return Checksum::kVerified;
}

}  // namespace io
}  // namespace lowbit
