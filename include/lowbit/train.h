// Training recipes and the training loop behind the `lowbit` command (docs/training.md).
#pragma once

#include <torch/nn/modules/container/sequential.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "lowbit/batches.h"
#include "lowbit/data/dataset.h"
#include "lowbit/distributed.h"
#include "lowbit/network.h"

namespace lowbit {
namespace train {

// A complete recipe: architecture, quantizers, optimizer and schedule. Every field can be set from
// a YAML config file with the same key (apply_config).
struct Recipe {
  std::string name;
  nn::NetworkOptions network;
  int64_t epochs = 15;
  int64_t batch_size = 128;
  double learning_rate = 1e-3;
  double weight_decay = 0.0;
  std::string schedule = "cosine";  // cosine (to 0 over the epochs) or constant
  std::string optimizer = "adam";   // adam, or bop (Bop for binary kernels, Adam for the rest)
  double bop_threshold = 1e-8;
  double bop_gamma = 1e-4;
  // Quantization-aware training (lowbit/qat.h): "none", "pow2" or "affine". The network is built in
  // float, then prepared (batch norm folded, fake quantization inserted).
  std::string qat = "none";
  int64_t quant_delay = 0;
  int64_t freeze_bn_delay = -1;
  double ema_decay = 0.999;
  // Augmentation of the training images (lowbit/batches.h): random crop after zero padding of this
  // many pixels (0: none), random horizontal flip.
  int64_t random_crop_padding = 0;
  bool horizontal_flip = false;
  // The last epoch ends by estimating batch norm's running statistics anew on this many batches of
  // its training images, unaugmented (recalibrate_batch_norm; -1, `all` in YAML: every batch); 0:
  // not (they stay the exponential average of the last training steps).
  int64_t bn_recalibration_batches = 0;
};

// The recipes the command knows, and one by name (std::invalid_argument listing them if unknown).
std::vector<std::string> recipe_names();
Recipe recipe(const std::string& name);
// The recipe a config file names (its `recipe:` key), or "" when it names none.
std::string config_recipe(const std::string& path);
// The recipe `model` (or, when empty, the one the config file names) with the config applied
// (none when config_path is empty); std::invalid_argument naming --model when neither names one.
Recipe recipe_from(const std::string& model, const std::string& config_path);
// Overrides recipe fields from a YAML file; unknown keys and bad values are errors naming them.
void apply_config(Recipe& recipe, const std::string& path);
// The same from YAML text; errors name `origin` (a file, or a checkpoint's recipe).
void apply_config_text(Recipe& recipe, const std::string& yaml, const std::string& origin);

// A data set as tensors: images [n, channels, h, w] standardised per channel by the training
// set's mean and std (lowbit/batches.h): (x / 255 - mean[c]) / std[c].
struct Tensors {
  at::Tensor train_images, train_labels, test_images, test_labels;
  int64_t num_classes = 0;
  Standardisation standardisation;
};
Tensors to_tensors(const data::Dataset& dataset);
// The same with a given standardisation instead of the training set's.
Tensors to_tensors(const data::Dataset& dataset,
                   const std::optional<Standardisation>& standardisation);

struct TrainOptions {
  std::string data_dir;
  std::string out_dir;
  int64_t epochs = -1;  // -1: the recipe's
  uint64_t seed = 0;
  bool resume = false;
  // A fresh run into an output directory that holds a run (checkpoint.pt, metrics.*) is refused
  // unless this is set; then the old run's files are removed first.
  bool overwrite = false;
  // The model's classes; 0: the largest label + 1 (with a warning when some of those classes have
  // no training image). Labels must be below it.
  int64_t num_classes = 0;
  bool progress = true;
  std::string config_path;  // recorded in the checkpoint
  // Where the model, the data and the optimizer state live: "cpu", "cuda" or "cuda:N" (a LibTorch
  // with CUDA and a GPU). Checkpoints load on any device.
  std::string device = "cpu";
  // Where warnings go (a data set with unused classes, a data set with fewer classes than the
  // checkpoint); default: stderr, as "lowbit: warning: ...".
  std::function<void(const std::string&)> warn;
  // Threads of LibTorch's operators; 0: every core of the machine.
  int threads = 0;
  // Threads assembling the next batches while one trains (lowbit/batches.h's BatchLoader).
  int loader_threads = 1;
  // The fraction of the training split held out for validation (0: none). With it, every epoch is
  // evaluated on the held-out part (val_* metrics) and the test split only at the end.
  double val_split = 0;
  // Image folders are resized to height x width; 0: the first training image's size.
  int64_t image_height = 0, image_width = 0;
  // A data-parallel run (docs/training.md): this process's place (the command reads it from
  // torchrun's variables), the c10d backend ("": nccl on CUDA devices where LibTorch has it, else
  // gloo), and how long a rank waits for the others. `batch_size` is the batch of all ranks
  // together: each takes its part of every batch, gradients are summed over the ranks, and only
  // rank 0 writes OUT.
  DistributedEnvironment distributed;
  std::string distributed_backend;
  double distributed_timeout_seconds = 1800;
};

// The threads `requested` means (0: every core, shared by the `processes` of a data-parallel run
// on this machine), set as LibTorch's intra-op threads; returned.
int set_threads(int requested, int processes = 1);

// Keeps the memory glibc's malloc frees for reuse instead of returning it to the kernel at once: a
// training step allocates and frees the same large buffers again and again, and fresh pages cost
// a page fault each (the first epoch of a run used to be 1.3x slower than the next ones).
void retain_freed_memory();

// The BLAS library LibTorch's matrix products (dense layers) call: its file and its kind
// ("OpenBLAS", "BLIS", "MKL", "ATLAS", or "reference" for the netlib reference BLAS that Debian's
// LibTorch gets by default); both empty when LibTorch calls no shared BLAS library.
struct BlasLibrary {
  std::string name, path;
};
BlasLibrary blas_library();

// A warning text when that BLAS is the reference one (dense layers 5-30x slower), saying what to
// install; empty otherwise. `lowbit train` prints it on CPU runs.
std::string slow_blas_warning();

// The device named by `name` ("cpu", "cuda", "cuda:1"); throws std::invalid_argument naming
// --device when it is malformed or not available here.
torch::Device parse_device(const std::string& name);

// Loss, accuracy and confusion matrix of a model on a labelled set, in eval mode.
struct Evaluation {
  double loss = 0, accuracy = 0;
  int64_t classes = 0;             // the model's outputs
  std::vector<int64_t> confusion;  // [true * classes + predicted]
};
Evaluation evaluate_confusion(torch::nn::Sequential& model, const at::Tensor& images,
                              const at::Tensor& labels, int64_t batch_size = 500);
// The matrix as a table for a terminal (rows true classes, columns predictions), rows named by
// `names` where given.
std::string confusion_text(const Evaluation& evaluation, const std::vector<std::string>& names);

struct TrainResult {
  double test_accuracy = 0;
  Evaluation test;  // on the test split at the end
  std::vector<std::string> class_names;
  int64_t epochs = 0;
  double seconds = 0;
};

// Trains, writing OUT/checkpoint.pt and OUT/metrics.jsonl (every epoch, both atomically),
// OUT/metrics.json and OUT/curves.png at the end. With resume, continues from the checkpoint; the
// result equals an uninterrupted run with the same seed. Before any training, OUT is created,
// checked writable and locked (a second training into it is an error), temporary files left by a
// killed run are removed, and an existing run is refused unless resume or overwrite is set; on
// resume, the checkpoint is verified (CRC-32), and its recipe, seed, image size and classes must
// fit the options and the data set, and --epochs must be at least its epoch.
TrainResult train(const Recipe& recipe, const TrainOptions& options);

// The model of a recipe for images of height x width and `classes` classes: the network, prepared
// for quantization-aware training when the recipe asks for it.
torch::nn::Sequential build_model(const Recipe& recipe, int64_t height, int64_t width,
                                  int64_t classes, int64_t channels = 1);

// (test loss, test accuracy) of a model on images and labels, in eval mode.
std::pair<double, double> evaluate(torch::nn::Sequential& model, const at::Tensor& images,
                                   const at::Tensor& labels, int64_t batch_size = 500);

// Estimates the running mean and variance of the model's batch-norm layers (torch's BatchNorm1d,
// 2d and 3d that track running statistics) anew, as the plain average of the statistics of the
// batches `next_batch` gives (it sets its argument and returns true, or returns false after the
// last; batches of fewer than 2 images are skipped): the "precise batch norm" of the final weights
// instead of an exponential average over the weights of the last training steps. Only those layers
// run in training mode (dropout and the rest in eval mode), without gradients; their momentum and
// the model's mode are restored. Layers that quantization-aware training folded into a
// FoldedLayer (lowbit/qat.h) keep their statistics. Returns the layers re-estimated (0: the model
// has none and is unchanged); std::invalid_argument when no batch comes (the model then unchanged).
int64_t recalibrate_batch_norm(torch::nn::Sequential& model,
                               const std::function<bool(at::Tensor&)>& next_batch);

// A trained model with what rebuilding and deploying it needs.
struct Checkpoint {
  std::string file;  // the checkpoint file read
  Recipe recipe;
  int64_t channels = 1, height = 0, width = 0, num_classes = 0, epoch = 0;
  // The input standardisation of Tensors; absent from checkpoints written before it was stored.
  bool has_normalization = false;
  Standardisation standardisation;
  std::vector<std::string> class_names;  // where the data set named its classes
  torch::nn::Sequential model{nullptr};  // on the CPU, in eval mode
};
// Reads a checkpoint; `path` is a training output directory or a checkpoint file. A missing,
// unreadable, corrupt (CRC-32 of the ZIP container) or incomplete file is an std::runtime_error
// naming it (and what is wrong).
Checkpoint load_checkpoint(const std::string& path);

// The data set standardised as the checkpoint's model was trained (its stored standardisation;
// the data set's own training split where an older checkpoint lacks it), so that a model is
// evaluated on any data set as it was trained.
Tensors to_tensors(const data::Dataset& dataset, const Checkpoint& checkpoint);

// Rebuilds the trained model of OUT (recipe and weights from OUT/checkpoint.pt).
torch::nn::Sequential load_model(const std::string& out_dir, Recipe* recipe_out = nullptr);

// The data set checked against a checkpoint's model (data::check_compatible): image size and
// classes; a warning text when the data set has fewer classes (empty otherwise).
std::string check_compatible(const data::Dataset& dataset, const std::string& dir,
                             const Checkpoint& checkpoint);

// Writes text to path atomically (io::write_file_atomically: "PATH: REASON" on failure).
void write_file_atomically(const std::string& path, const std::string& text);

}  // namespace train
}  // namespace lowbit
