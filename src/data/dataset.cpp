// Finds the format of a data set directory and reads it; the checks every format shares.
#include "lowbit/data/dataset.h"

#include <algorithm>
#include <filesystem>
#include <stdexcept>
#include <system_error>

#include "formats.h"
#include "lowbit/data/idx.h"

namespace lowbit {
namespace data {
namespace {

namespace fs = std::filesystem;
using detail::fail;

struct Format {
  const char* name;
  const char* files;  // what it looks for, for messages
  bool (*present)(const fs::path& dir);
  Dataset (*load)(const std::string& dir, const LoadOptions& options);
};

// The formats in the order they are looked for.
const Format kFormats[] = {
    {"idx", "t10k-images-idx3-ubyte[.gz] (IDX)",
     [](const fs::path& d) { return is_idx_dataset(d.string()); },
     [](const std::string& d, const LoadOptions& o) { return load_idx_dataset(d, o.with_train); }},
    {"cifar-10", "test_batch.bin (CIFAR-10)", detail::has_cifar10,
     [](const std::string& d, const LoadOptions& o) { return detail::load_cifar(d, false, o); }},
    {"cifar-100", "test.bin (CIFAR-100)", detail::has_cifar100,
     [](const std::string& d, const LoadOptions& o) { return detail::load_cifar(d, true, o); }},
    {"folders", "test/CLASS/ (image folders)", detail::has_image_folders,
     detail::load_image_folders},
};

// The CIFAR archives unpack into these folders: a DIR that holds only one of them is read there.
const char* const kArchiveFolders[] = {"cifar-10-batches-bin", "cifar-100-binary"};

// The directory that holds the data, and its format.
std::pair<std::string, const Format*> find(const std::string& dir) {
  std::error_code ec;
  const fs::file_status status = fs::status(dir, ec);
  if (status.type() == fs::file_type::not_found) fail(dir, "data set directory does not exist");
  if (ec) fail(dir, "cannot access the data set directory (" + ec.message() + ")");
  if (status.type() != fs::file_type::directory) {
    fail(dir, "not a directory (expected the directory of a data set)");
  }
  for (const Format& f : kFormats) {
    if (f.present(dir)) return {dir, &f};
  }
  for (const char* sub : kArchiveFolders) {
    const fs::path inner = fs::path(dir) / sub;
    if (!fs::is_directory(inner, ec)) continue;
    for (const Format& f : kFormats) {
      if (f.present(inner)) return {inner.string(), &f};
    }
  }
  std::string looked;
  for (const Format& f : kFormats) looked += (looked.empty() ? "" : ", ") + std::string(f.files);
  fail(dir, "no data set found: looked for " + looked);
}

}  // namespace

std::string size_string(int64_t rows, int64_t cols) {
  return std::to_string(rows) + "x" + std::to_string(cols);
}

std::string detect_format(const std::string& dir) { return find(dir).second->name; }

Dataset load_dataset(const std::string& dir, const LoadOptions& options) {
  const auto [where, format] = find(dir);
  return format->load(where, options);
}

Split select(const Split& split, const std::vector<int64_t>& indices) {
  Split s;
  const Images& im = split.images;
  s.images.channels = im.channels;
  s.images.rows = im.rows;
  s.images.cols = im.cols;
  s.images.count = static_cast<int64_t>(indices.size());
  const int64_t per = im.channels * im.rows * im.cols;
  s.images.pixels.resize(static_cast<size_t>(s.images.count * per));
  for (size_t i = 0; i < indices.size(); ++i) {
    if (indices[i] < 0 || indices[i] >= im.count) {
      throw std::out_of_range("select: image index " + std::to_string(indices[i]) +
                              " outside the split's " + std::to_string(im.count));
    }
    std::copy_n(im.pixels.begin() + indices[i] * per, per, s.images.pixels.begin() + i * per);
    s.labels.labels.push_back(split.labels.labels[indices[i]]);
  }
  s.images_path = split.images_path;
  s.labels_path = split.labels_path;
  return s;
}

void finish_dataset(Dataset& ds) {
  const Images& a = ds.train.images;
  const Images& b = ds.test.images;
  if (a.count > 0 && (a.rows != b.rows || a.cols != b.cols)) {
    throw std::runtime_error("train and test image sizes differ: " + ds.train.images_path +
                             " has " + size_string(a.rows, a.cols) + " images, " +
                             ds.test.images_path + " has " + size_string(b.rows, b.cols));
  }
  if (a.count > 0 && a.channels != b.channels) {
    throw std::runtime_error("train and test channels differ: " + ds.train.images_path + " has " +
                             std::to_string(a.channels) + "-channel images, " +
                             ds.test.images_path + " has " + std::to_string(b.channels));
  }
  int max_label = 0;
  for (const Split* split : {&ds.train, &ds.test}) {
    for (uint8_t l : split->labels.labels) max_label = std::max<int>(max_label, l);
  }
  ds.num_classes = max_label + 1;
}

std::vector<int64_t> class_counts(const Labels& labels, int64_t classes) {
  std::vector<int64_t> counts(static_cast<size_t>(std::max<int64_t>(classes, 0)), 0);
  for (uint8_t l : labels.labels)
    if (l < classes) ++counts[l];
  return counts;
}

void check_labels(const Dataset& dataset, int64_t classes, const std::string& whose) {
  for (const Split* split : {&dataset.train, &dataset.test}) {
    const auto& labels = split->labels.labels;
    for (size_t i = 0; i < labels.size(); ++i) {
      if (labels[i] >= classes) {
        fail(split->labels_path.empty() ? "labels" : split->labels_path,
             "label " + std::to_string(labels[i]) + " (at index " + std::to_string(i) +
                 ") is outside the " + std::to_string(classes) + " classes (0-" +
                 std::to_string(classes - 1) + ") of " + whose);
      }
    }
  }
}

std::string check_compatible(const Dataset& dataset, const std::string& dir,
                             const ModelShape& model, const std::string& origin) {
  const Images& im = dataset.test.images;
  if (model.channels != im.channels) {
    fail(dir, "channels differ: the model " + origin + " takes " + std::to_string(model.channels) +
                  "-channel images, the data set has " + std::to_string(im.channels) +
                  (im.channels == 1 ? " channel" : " channels"));
  }
  if (model.height != im.rows || model.width != im.cols) {
    fail(dir, "image sizes differ: the model " + origin + " takes " +
                  size_string(model.height, model.width) + " images, the data set has " +
                  size_string(im.rows, im.cols));
  }
  check_labels(dataset, model.classes, "the model " + origin + " (class counts differ)");
  if (dataset.num_classes < model.classes) {
    return dir + ": the data set's labels use " + std::to_string(dataset.num_classes) +
           " classes (0-" + std::to_string(dataset.num_classes - 1) + "), the model " + origin +
           " has " + std::to_string(model.classes) + "; accuracy counts only those classes";
  }
  return "";
}

}  // namespace data
}  // namespace lowbit
