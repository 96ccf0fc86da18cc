// Reads CIFAR-10 and CIFAR-100 in their binary form (https://www.cs.toronto.edu/~kriz/cifar.html):
// records of label byte(s) then a 32x32 image as 1024 red, 1024 green and 1024 blue bytes.
#include <algorithm>
#include <fstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "formats.h"
#include "lowbit/io/file.h"

namespace lowbit {
namespace data {
namespace detail {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kSide = 32, kChannels = 3, kImageBytes = kSide * kSide * kChannels;

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

// Appends the records of one file to split: label bytes (the last one is the class), then pixels.
void read_batch(const std::string& path, bool cifar100, Split& split) {
  const int64_t label_bytes = cifar100 ? 2 : 1;
  const int64_t record = label_bytes + kImageBytes;
  const int64_t classes = cifar100 ? 100 : 10;
  const char* kind = cifar100 ? "CIFAR-100" : "CIFAR-10";
  // At most 2 GiB: a CIFAR batch is 30 MB.
  const std::string text = io::read_file(path, int64_t{1} << 31);
  const auto* bytes = reinterpret_cast<const uint8_t*>(text.data());
  const auto size = static_cast<int64_t>(text.size());
  if (size == 0) fail(path, std::string("empty file (expected ") + kind + " records)");
  if (size % record != 0) {
    fail(path, std::to_string(size) + " bytes is not a whole number of " + kind + " records of " +
                   std::to_string(record) + " bytes (" + std::to_string(label_bytes) +
                   (cifar100 ? " label bytes" : " label byte") +
                   " and a 32x32x3 image): " + (size < record ? "not a CIFAR batch" : "truncated"));
  }
  const int64_t n = size / record;
  Images& im = split.images;
  im.pixels.reserve(im.pixels.size() + static_cast<size_t>(n * kImageBytes));
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* r = bytes + i * record;
    if (cifar100 && r[0] >= 20) {
      fail(path, "record " + std::to_string(i) + ": coarse label " + std::to_string(r[0]) +
                     " is not below 20: not a CIFAR-100 file");
    }
    const uint8_t label = r[label_bytes - 1];
    if (label >= classes) {
      fail(path, "record " + std::to_string(i) + ": label " + std::to_string(label) +
                     " is not below " + std::to_string(classes) + ": not a " + kind + " file" +
                     (cifar100 ? "" : " (CIFAR-100's train.bin/test.bin have two label bytes)"));
    }
    split.labels.labels.push_back(label);
    im.pixels.insert(im.pixels.end(), r + label_bytes, r + record);
  }
  im.count += n;
}

Split read_split(const std::vector<std::string>& files, bool cifar100, const std::string& name) {
  Split s;
  s.images.channels = kChannels;
  s.images.rows = s.images.cols = kSide;
  for (const std::string& f : files) read_batch(f, cifar100, s);
  s.images_path = s.labels_path = name;
  return s;
}

// data_batch_1.bin, data_batch_2.bin, ... in numeric order.
std::vector<std::string> cifar10_train_files(const fs::path& dir) {
  std::vector<std::pair<long, std::string>> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    const std::string prefix = "data_batch_", suffix = ".bin";
    if (name.size() <= prefix.size() + suffix.size() || name.rfind(prefix, 0) != 0 ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) {
      continue;
    }
    const std::string digits = name.substr(prefix.size(), name.size() - prefix.size() - 4);
    if (digits.size() > 6 || !std::all_of(digits.begin(), digits.end(), ::isdigit)) continue;
    found.emplace_back(std::stol(digits), entry.path().string());
  }
  if (ec) fail(dir.string(), "cannot list (" + ec.message() + ")");
  std::sort(found.begin(), found.end());
  std::vector<std::string> files;
  for (auto& f : found) files.push_back(f.second);
  return files;
}

// Class names, one per line, where the archive has them (batches.meta.txt, fine_label_names.txt).
std::vector<std::string> class_names(const fs::path& file, size_t classes) {
  std::vector<std::string> names;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
    if (!line.empty()) names.push_back(line);
  }
  if (names.size() != classes) names.clear();  // absent or not the list expected: no names
  return names;
}

}  // namespace

bool has_cifar10(const fs::path& dir) { return is_file(dir / "test_batch.bin"); }
bool has_cifar100(const fs::path& dir) { return is_file(dir / "test.bin"); }

Dataset load_cifar(const std::string& dir, bool cifar100, const LoadOptions& options) {
  const fs::path d(dir);
  Dataset ds;
  ds.format = cifar100 ? "cifar-100" : "cifar-10";
  const std::string test = (d / (cifar100 ? "test.bin" : "test_batch.bin")).string();
  if (options.with_train) {
    std::vector<std::string> files;
    std::string name;
    if (cifar100) {
      name = (d / "train.bin").string();
      if (!is_file(name))
        fail(dir, "missing train.bin (CIFAR-100's training split, beside test.bin)");
      files = {name};
    } else {
      files = cifar10_train_files(d);
      if (files.empty()) {
        fail(dir,
             "missing data_batch_1.bin .. data_batch_5.bin (CIFAR-10's training split, "
             "beside test_batch.bin)");
      }
      name = files.size() == 1 ? files[0] : (d / "data_batch_*.bin").string();
    }
    ds.train = read_split(files, cifar100, name);
  }
  ds.test = read_split({test}, cifar100, test);
  ds.class_names = cifar100 ? class_names(d / "fine_label_names.txt", 100)
                            : class_names(d / "batches.meta.txt", 10);
  finish_dataset(ds);
  ds.num_classes = cifar100 ? 100 : 10;  // the format's classes, even where a file lacks some
  return ds;
}

}  // namespace detail
}  // namespace data
}  // namespace lowbit
