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
  std::string images_path, labels_path;  // the files read (load_idx_dataset), for messages
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
// t10k-labels-idx1-ubyte from dir, each plain or with .gz appended, and checks that the splits
// agree: as many labels as images, one image size. When both the plain and the .gz file exist they
// must hold the same data (else an error names both). Without `with_train` only the test split is
// read (the train split stays empty), for commands that only evaluate.
IdxDataset load_idx_dataset(const std::string& dir, bool with_train = true);

// How many labels of each class 0..classes-1 `labels` holds (labels >= classes are not counted).
std::vector<int64_t> class_counts(const IdxLabels& labels, int64_t classes);

// Requires every label of both splits to be below `classes`; otherwise std::runtime_error naming
// the labels file, the first label out of range and its index, and `whose` classes they are
// ("the checkpoint runs/bnn/checkpoint.pt's 10 classes", "--num-classes 10").
void check_labels(const IdxDataset& dataset, int64_t classes, const std::string& whose);

// What a trained model takes: images of channels x height x width, and `classes` outputs.
struct ModelShape {
  int64_t channels = 1, height = 0, width = 0, classes = 0;
};
// Checks a data set against a model before it is run (eval, resume, `lowbit run`): the channels
// (IDX images have one) and image size must match, and the labels must be below the model's
// classes; each mismatch is an std::runtime_error that says which differs, with the data set `dir`
// and the model's `origin`. A data set with fewer classes than the model is allowed: the returned
// text is a warning to show (empty when nothing is to be said).
std::string check_compatible(const IdxDataset& dataset, const std::string& dir,
                             const ModelShape& model, const std::string& origin);

}  // namespace data
}  // namespace lowbit
