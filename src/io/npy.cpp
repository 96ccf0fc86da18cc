// NumPy .npy files: the format as NumPy documents it (numpy.lib.format): magic "\x93NUMPY", a
// version, a little-endian header length (2 bytes in 1.0, 4 in 2.0 and 3.0), then a Python dict
// literal {'descr': ..., 'fortran_order': ..., 'shape': (...), } padded with spaces and '\n'.
#include "lowbit/io/npy.h"

#include <cctype>
#include <cstring>
#include <stdexcept>

#include "lowbit/io/file.h"

namespace lowbit {
namespace io {
namespace {

[[noreturn]] void bad(const std::string& origin, const std::string& what) {
  throw std::invalid_argument(origin + ": " + what);
}

// The dict's value for `key` as written (a quoted string, True/False, or a tuple), checked to be
// the one entry of that name.
std::string entry(const std::string& header, const std::string& key, const std::string& origin) {
  const std::string quoted[] = {"'" + key + "'", "\"" + key + "\""};
  size_t at = std::string::npos;
  for (const auto& q : quoted) {
    const size_t found = header.find(q);
    if (found != std::string::npos) {
      if (at != std::string::npos || header.find(q, found + 1) != std::string::npos)
        bad(origin, "the .npy header names '" + key + "' twice");
      at = found + q.size();
    }
  }
  if (at == std::string::npos) bad(origin, "the .npy header has no '" + key + "'");
  while (at < header.size() && std::isspace(static_cast<unsigned char>(header[at]))) ++at;
  if (at >= header.size() || header[at] != ':') bad(origin, "the .npy header is not a dict");
  ++at;
  while (at < header.size() && std::isspace(static_cast<unsigned char>(header[at]))) ++at;
  if (at >= header.size()) bad(origin, "the .npy header is cut short");
  const char open = header[at];
  size_t end;
  if (open == '\'' || open == '"') {
    end = header.find(open, at + 1);
    if (end == std::string::npos) bad(origin, "the .npy header is cut short");
    return header.substr(at + 1, end - at - 1);
  }
  if (open == '(') {
    end = header.find(')', at);
    if (end == std::string::npos) bad(origin, "the .npy header's shape is not closed");
    return header.substr(at, end - at + 1);
  }
  end = at;
  while (end < header.size() && std::isalpha(static_cast<unsigned char>(header[end]))) ++end;
  return header.substr(at, end - at);
}

struct Type {
  const char* descr;
  int size;
};
// The types read, NumPy's descr for each ('<' little-endian, '|' byte-sized).
constexpr Type kTypes[] = {{"<f4", 4}, {"<f8", 8}, {"|i1", 1}, {"|u1", 1}, {"<i2", 2},
                           {"<u2", 2}, {"<i4", 4}, {"<i8", 8}, {"|b1", 1}};

template <class T>
float value_at(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return static_cast<float>(v);
}

}  // namespace

int64_t NpyArray::count() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

NpyArray parse_npy(const std::string& bytes, const std::string& origin, int64_t max_elements) {
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0)
    bad(origin, "not a .npy file (no \\x93NUMPY magic)");
  const int major = static_cast<unsigned char>(bytes[6]);
  if (major < 1 || major > 3)
    bad(origin, "unsupported .npy format version " + std::to_string(major));
  const size_t length_bytes = major == 1 ? 2 : 4;
  if (bytes.size() < 8 + length_bytes) bad(origin, "the .npy header is cut short");
  size_t header_len = 0;
  for (size_t i = 0; i < length_bytes; ++i)
    header_len |= static_cast<size_t>(static_cast<unsigned char>(bytes[8 + i])) << (8 * i);
  const size_t start = 8 + length_bytes;
  if (header_len > bytes.size() - start) bad(origin, "the .npy header is cut short");
  const std::string header = bytes.substr(start, header_len);
  if (header.empty() || header.find('{') == std::string::npos)
    bad(origin, "the .npy header is not a dict");

  const std::string descr = entry(header, "descr", origin);
  const Type* type = nullptr;
  for (const Type& t : kTypes)
    if (descr == t.descr || (t.size == 1 && descr == std::string("<") + (t.descr + 1)) ||
        (t.size == 1 && descr == std::string("=") + (t.descr + 1)))
      type = &t;
  if (!type) {
    bad(origin, "values of type '" + descr +
                    "' are not supported (float32, float64, int8-64, uint8, uint16 or bool, "
                    "little-endian)");
  }
  const std::string order = entry(header, "fortran_order", origin);
  if (order == "True") bad(origin, "Fortran order is not supported (write the array in C order)");
  if (order != "False") bad(origin, "fortran_order must be True or False");

  NpyArray a;
  const std::string shape = entry(header, "shape", origin);  // "(2, 3)", "(4,)", "()"
  int64_t count = 1;
  size_t i = 1;
  while (i + 1 < shape.size()) {
    while (i + 1 < shape.size() && (shape[i] == ' ' || shape[i] == ',')) ++i;
    if (i + 1 >= shape.size()) break;
    size_t j = i;
    while (j + 1 < shape.size() && std::isdigit(static_cast<unsigned char>(shape[j]))) ++j;
    if (j == i || j - i > 12) bad(origin, "the .npy shape " + shape + " is not a tuple of sizes");
    const int64_t d = std::stoll(shape.substr(i, j - i));
    if (d > 0 && count > max_elements / d)
      bad(origin, "the array is too large (over " + std::to_string(max_elements) + " values)");
    count *= d;
    a.shape.push_back(d);
    i = j;
    if (a.shape.size() > 32) bad(origin, "the .npy shape has more than 32 dimensions");
  }
  const size_t data_start = start + header_len;
  const size_t need = static_cast<size_t>(count) * type->size;
  if (bytes.size() - data_start != need) {
    bad(origin, "holds " + std::to_string(bytes.size() - data_start) + " bytes of data for shape " +
                    shape + " of " + descr + " (" + std::to_string(need) + " bytes)");
  }
  a.data.resize(static_cast<size_t>(count));
  const char* p = bytes.data() + data_start;
  const std::string d = type->descr;
  for (int64_t e = 0; e < count; ++e, p += type->size) {
    float& v = a.data[static_cast<size_t>(e)];
    if (d == "<f4") {
      std::memcpy(&v, p, 4);
    } else if (d == "<f8") {
      v = value_at<double>(p);
    } else if (d == "|i1") {
      v = value_at<int8_t>(p);
    } else if (d == "|u1" || d == "|b1") {
      v = value_at<uint8_t>(p);
    } else if (d == "<i2") {
      v = value_at<int16_t>(p);
    } else if (d == "<u2") {
      v = value_at<uint16_t>(p);
    } else if (d == "<i4") {
      v = value_at<int32_t>(p);
    } else {
      v = value_at<int64_t>(p);
    }
  }
  return a;
}

NpyArray read_npy(const std::string& path, int64_t max_elements) {
  // The header and the data of max_elements float64 values, at most.
  const int64_t limit = (max_elements > (int64_t{1} << 59) ? int64_t{1} << 62 : max_elements * 8) +
                        (int64_t{1} << 20);
  return parse_npy(read_file(path, limit), path, max_elements);
}

std::string npy_bytes(const std::vector<int64_t>& shape, const float* data) {
  std::string dims;
  int64_t count = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    dims += (i ? ", " : "") + std::to_string(shape[i]);
    count *= shape[i];
  }
  if (shape.size() == 1) dims += ",";  // Python's 1-tuple
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  // Magic, version and length, then the header padded with spaces to a multiple of 64, '\n'.
  const bool v2 = header.size() + 11 > 65535;
  const size_t prefix = v2 ? 12 : 10;
  while ((prefix + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string bytes = "\x93NUMPY";
  bytes += static_cast<char>(v2 ? 2 : 1);
  bytes += '\0';
  for (size_t i = 0; i < (v2 ? 4u : 2u); ++i)
    bytes += static_cast<char>((header.size() >> (8 * i)) & 0xff);
  bytes += header;
  bytes.append(reinterpret_cast<const char*>(data), static_cast<size_t>(count) * sizeof(float));
  return bytes;
}

void write_npy(const std::string& path, const std::vector<int64_t>& shape, const float* data) {
  write_file_atomically(path, npy_bytes(shape, data));
}

}  // namespace io
}  // namespace lowbit
