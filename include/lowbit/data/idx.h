// Reads image classification data sets in MNIST's IDX format (MNIST, Fashion-MNIST), plain or
// gzipped, without LibTorch.
#pragma once

#include <string>

#include "lowbit/data/dataset.h"

namespace lowbit {
namespace data {

// One IDX file of unsigned-byte images (magic 0x00000803), as one-channel Images; one of
// unsigned-byte labels (magic 0x00000801). A file is gunzipped when it starts with the gzip magic
// bytes 1f 8b, whatever its name. Every error throws std::runtime_error naming the file and what is
// wrong with it.
Images read_idx_images(const std::string& path);
Labels read_idx_labels(const std::string& path);

// True when dir holds t10k-images-idx3-ubyte (plain or .gz): an IDX data set.
bool is_idx_dataset(const std::string& dir);

// Reads train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
// t10k-labels-idx1-ubyte from dir, each plain or with .gz appended, and checks that the splits
// agree: as many labels as images, one image size. When both the plain and the .gz file exist they
// must hold the same data (else an error names both). Without `with_train` only the test split is
// read (the train split stays empty), for commands that only evaluate.
Dataset load_idx_dataset(const std::string& dir, bool with_train = true);

}  // namespace data
}  // namespace lowbit
