// The readers behind load_dataset, one per file format (src/data/*.cpp).
#pragma once

#include <filesystem>
#include <stdexcept>
#include <string>

#include "lowbit/data/dataset.h"

namespace lowbit {
namespace data {
namespace detail {

// The error of every reader: "PATH: WHAT".
[[noreturn]] inline void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error(path + ": " + what);
}

// CIFAR-10 (cifar100 false: data_batch_N.bin, test_batch.bin; 1 label byte per record) or
// CIFAR-100 (train.bin, test.bin; coarse and fine label bytes, the fine one used).
bool has_cifar10(const std::filesystem::path& dir);
bool has_cifar100(const std::filesystem::path& dir);
Dataset load_cifar(const std::string& dir, bool cifar100, const LoadOptions& options);

// DIR/train/CLASS/*.{png,jpg,jpeg,bmp} and DIR/test/CLASS/...
bool has_image_folders(const std::filesystem::path& dir);
Dataset load_image_folders(const std::string& dir, const LoadOptions& options);

}  // namespace detail
}  // namespace data
}  // namespace lowbit
