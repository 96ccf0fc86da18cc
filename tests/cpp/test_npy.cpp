// .npy files: bytes laid out here as NumPy's format documentation describes them (magic, version,
// little-endian header length, a dict padded with spaces to 64 bytes), every type read, and every
// malformed file an error naming it.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "lowbit/io/npy.h"

namespace {

using lowbit::io::NpyArray;
using lowbit::io::parse_npy;

// A version 1.0 file as NumPy writes it: header padded so that the data starts at a multiple of 64.
std::string numpy_file(const std::string& dict, const std::string& data, char major = 1) {
  std::string header = dict;
  const size_t prefix = major == 1 ? 10 : 12;
  while ((prefix + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string b = "\x93NUMPY";
  b += major;
  b += '\0';
  b += static_cast<char>(header.size() & 0xff);
  b += static_cast<char>(header.size() >> 8);
  if (major != 1) b += std::string(2, '\0');
  return b + header + data;
}

template <class T>
std::string raw(std::vector<T> v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

std::string error_of(const std::string& bytes) {
  try {
    parse_npy(bytes, "x.npy", 1000);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "no error";
}

TEST(Npy, ReadsEveryTypeAsFloat32) {
  auto dict = [](const char* descr, const char* shape) {
    return std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': " + shape +
           ", }";
  };
  NpyArray a = parse_npy(numpy_file(dict("<f8", "(2,)"), raw<double>({1.5, -2.0})), "a");
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2}));
  EXPECT_EQ(a.data, (std::vector<float>{1.5f, -2.0f}));
  a = parse_npy(numpy_file(dict("<f4", "(2, 1, 2)"), raw<float>({1, 2, 3, 0.25f})), "a");
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 1, 2}));
  EXPECT_EQ(a.data, (std::vector<float>{1, 2, 3, 0.25f}));
  EXPECT_EQ(parse_npy(numpy_file(dict("|i1", "(2,)"), raw<int8_t>({-3, 7})), "a").data,
            (std::vector<float>{-3, 7}));
  EXPECT_EQ(parse_npy(numpy_file(dict("|u1", "(2,)"), raw<uint8_t>({200, 0})), "a").data,
            (std::vector<float>{200, 0}));
  EXPECT_EQ(parse_npy(numpy_file(dict("<i2", "(1,)"), raw<int16_t>({-300})), "a").data,
            (std::vector<float>{-300}));
  EXPECT_EQ(parse_npy(numpy_file(dict("<u2", "(1,)"), raw<uint16_t>({65535})), "a").data,
            (std::vector<float>{65535}));
  EXPECT_EQ(parse_npy(numpy_file(dict("<i4", "(1,)"), raw<int32_t>({-70000})), "a").data,
            (std::vector<float>{-70000}));
  EXPECT_EQ(parse_npy(numpy_file(dict("<i8", "(1,)"), raw<int64_t>({1})), "a").data,
            (std::vector<float>{1}));
  EXPECT_EQ(parse_npy(numpy_file(dict("|b1", "(2,)"), raw<uint8_t>({1, 0})), "a").data,
            (std::vector<float>{1, 0}));
  // A 0-d array holds one value; keys in another order, double quotes, format 2.0.
  a = parse_npy(numpy_file("{\"shape\": (), \"fortran_order\": False, \"descr\": \"<f4\"}",
                           raw<float>({4}), 2),
                "a");
  EXPECT_TRUE(a.shape.empty());
  EXPECT_EQ(a.data, (std::vector<float>{4}));
}

TEST(Npy, WritesWhatNumPyWrites) {
  const std::vector<float> v{1, -2, 3, 4.5f, 5, 6};
  const std::string b = lowbit::io::npy_bytes({2, 3}, v.data());
  EXPECT_EQ(b, numpy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", raw(v)));
  EXPECT_EQ(lowbit::io::npy_bytes({6}, v.data()),
            numpy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }", raw(v)));
  for (const std::vector<int64_t>& shape :
       {std::vector<int64_t>{}, {6}, {1, 2, 3}, {3, 0}, {1, 1, 1, 1, 6}}) {
    const size_t n = shape.empty() ? 1 : (shape.size() == 2 ? 0 : 6);
    const NpyArray a = parse_npy(lowbit::io::npy_bytes(shape, v.data()), "a");
    EXPECT_EQ(a.shape, shape);
    EXPECT_EQ(a.data, std::vector<float>(v.begin(), v.begin() + n));
  }
  const auto dir = std::filesystem::temp_directory_path() / "lowbit-npy-test";
  std::filesystem::create_directories(dir);
  lowbit::io::write_npy((dir / "y.npy").string(), {3, 2}, v.data());
  const NpyArray a = lowbit::io::read_npy((dir / "y.npy").string());
  EXPECT_EQ(a.shape, (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(a.data, v);
  std::filesystem::remove_all(dir);
  EXPECT_THROW(lowbit::io::read_npy("/nonexistent/z.npy"), std::runtime_error);
}

TEST(Npy, MalformedFilesAreErrorsNamingTheFile) {
  const std::string ok = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
  const std::string data = raw<float>({1, 2});
  const struct {
    std::string bytes, message;
  } cases[] = {
      {"", "not a .npy file"},
      {"NUMPY\x01\x00\x10\x00{}", "not a .npy file"},
      {numpy_file(ok, data).replace(6, 1, "\x04"), "version 4"},
      {numpy_file(ok, data).substr(0, 40), "cut short"},
      {numpy_file(ok, data).replace(8, 2, "\xff\x7f"), "cut short"},
      {numpy_file(ok, data + "xx"), "holds 10 bytes of data"},
      {numpy_file(ok, data.substr(0, 4)), "holds 4 bytes of data"},
      {numpy_file("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", data), "'>f4'"},
      {numpy_file("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", data), "'<c8'"},
      {numpy_file("{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", data), "Fortran"},
      {numpy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", data), "sizes"},
      {numpy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2000,), }", data),
       "too large"},
      {numpy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (40, 40, 40), }", data),
       "too large"},
      {numpy_file("{'descr': '<f4', 'fortran_order': False}", data), "no 'shape'"},
      {numpy_file("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", data),
       "twice"},
      {numpy_file("not a dict", data), "not a dict"},
  };
  for (const auto& c : cases) {
    const std::string e = error_of(c.bytes);
    EXPECT_EQ(e.rfind("x.npy: ", 0), 0u) << e;
    EXPECT_NE(e.find(c.message), std::string::npos) << e << " / wanted " << c.message;
  }
}

}  // namespace
