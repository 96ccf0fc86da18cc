// Reads image classification data sets in MNIST's IDX format (MNIST, Fashion-MNIST), plain or
// gzipped, without LibTorch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lowbit {
namespace data {

// One IDX file of unsigned-byte images (magic 0x00000803).
struct IdxImages {
  int64_t count = 0, rows = 0, cols = 0;
  std::vector<uint8_t> pixels;  // count x rows x cols, row-major
};

// One IDX file of unsigned-byte labels (magic 0x00000801).
struct IdxLabels {
  std::vector<uint8_t> labels;
};

struct IdxSplit {
  IdxImages images;
  IdxLabels labels;
};

struct IdxDataset {
  IdxSplit train, test;
  int64_t num_classes = 0;  // max label over both splits + 1
};

// A file is gunzipped when it starts with the gzip magic bytes 1f 8b, whatever its name. Every
// error throws std::runtime_error naming the file and what is wrong with it.
IdxImages read_idx_images(const std::string& path);
IdxLabels read_idx_labels(const std::string& path);

// Reads train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
// t10k-labels-idx1-ubyte from dir, each plain or with .gz appended (the plain file wins when both
// exist), and checks that the splits agree: as many labels as images, one image size.
IdxDataset load_idx_dataset(const std::string& dir);

}  // namespace data
}  // namespace lowbit
