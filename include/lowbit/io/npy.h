// NumPy .npy files of numbers (torch-free; library lowbit_io): the engine's inputs and outputs.
// Files are untrusted: the header is parsed strictly and sizes are checked against the file before
// anything is allocated; every error names the file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lowbit {
namespace io {

// An array as float32 values in C order.
struct NpyArray {
  std::vector<int64_t> shape;
  std::vector<float> data;
  int64_t count() const;  // the product of the shape (1 for a 0-d array)
};

// Parses a .npy file (format 1.0, 2.0 or 3.0; C order) of little-endian float32, float64, int8,
// uint8, int16, uint16, int32, int64 or bool values, converted to float32 (float64 rounds to
// nearest; integers beyond 2^24 round too). std::invalid_argument "ORIGIN: WHAT" for anything
// else: a bad magic or header, Fortran order, a big-endian or other type, a size that does not
// match the file, more than `max_elements` values.
NpyArray parse_npy(const std::string& bytes, const std::string& origin,
                   int64_t max_elements = int64_t{1} << 31);
// Reads and parses `path` (IoError "PATH: REASON" when it cannot be read).
NpyArray read_npy(const std::string& path, int64_t max_elements = int64_t{1} << 31);

// The bytes of a float32 .npy file (format 1.0, or 2.0 when the header needs it).
std::string npy_bytes(const std::vector<int64_t>& shape, const float* data);
// Writes them to `path` atomically (write_file_atomically).
void write_npy(const std::string& path, const std::vector<int64_t>& shape, const float* data);

}  // namespace io
}  // namespace lowbit
