// Image classification data sets in memory, whatever their files: MNIST's IDX format, CIFAR-10 and
// CIFAR-100 binary batches, or folders of images by class (docs/training.md, "Data"). No LibTorch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lowbit {
namespace data {

// Images of one size, as bytes: count x channels x rows x cols (NCHW), 0..255.
struct Images {
  int64_t count = 0, channels = 1, rows = 0, cols = 0;
  std::vector<uint8_t> pixels;
};

// One label per image, the class index (data sets have at most 256 classes).
struct Labels {
  std::vector<uint8_t> labels;
};

struct Split {
  Images images;
  Labels labels;
  std::string images_path, labels_path;  // the files (or folder) read, for messages
};

struct Dataset {
  Split train, test;
  int64_t num_classes = 0;  // max label over both splits + 1
  std::string format;       // "idx", "cifar-10", "cifar-100" or "folders"
  // Class names where the files give them (folders: the class folders, in label order).
  std::vector<std::string> class_names;
};

struct LoadOptions {
  bool with_train = true;  // false: the test split only (the train split stays empty)
  // Folders of images: every image resized to height x width; 0: the first training image's size
  // (the first test image's without the train split). Other formats must already have this size
  // when it is given (else an error).
  int64_t height = 0, width = 0;
  // Threads decoding image files; 0: all cores.
  int threads = 0;
};

// Reads the data set in `dir`, whichever of the formats it holds: IDX files
// (train-images-idx3-ubyte, ...: lowbit/data/idx.h), CIFAR-10 (data_batch_1.bin ..
// data_batch_5.bin, test_batch.bin), CIFAR-100 (train.bin, test.bin; the fine label) or image
// folders (train/CLASS/*.png|jpg|jpeg|bmp and test/CLASS/...). Every error throws
// std::runtime_error naming the file or folder and what is wrong.
Dataset load_dataset(const std::string& dir, const LoadOptions& options = {});

// The format load_dataset would read in dir ("idx", "cifar-10", "cifar-100", "folders"); an error
// that lists what it looked for when none is there.
std::string detect_format(const std::string& dir);

// The images and labels of split at `indices` (in that order).
Split select(const Split& split, const std::vector<int64_t>& indices);

// Sets num_classes to the largest label + 1 and checks that the splits' images have one shape.
void finish_dataset(Dataset& dataset);

// How many labels of each class 0..classes-1 `labels` holds (labels >= classes are not counted).
std::vector<int64_t> class_counts(const Labels& labels, int64_t classes);

// Requires every label of both splits to be below `classes`; otherwise std::runtime_error naming
// the labels file, the first label out of range and its index, and `whose` classes they are
// ("the checkpoint runs/bnn/checkpoint.pt's 10 classes", "--num-classes 10").
void check_labels(const Dataset& dataset, int64_t classes, const std::string& whose);

// What a trained model takes: images of channels x height x width, and `classes` outputs.
struct ModelShape {
  int64_t channels = 1, height = 0, width = 0, classes = 0;
};
// Checks a data set against a model before it is run (eval, resume, `lowbit run`): the channels
// and image size must match, and the labels must be below the model's classes; each mismatch is an
// std::runtime_error that says which differs, with the data set `dir` and the model's `origin`. A
// data set with fewer classes than the model is allowed: the returned text is a warning to show
// (empty when nothing is to be said).
std::string check_compatible(const Dataset& dataset, const std::string& dir,
                             const ModelShape& model, const std::string& origin);

// "HxW" for messages.
std::string size_string(int64_t rows, int64_t cols);

}  // namespace data
}  // namespace lowbit
