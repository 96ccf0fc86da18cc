// What a training run prepares before its first epoch: the recipe checked against a resumed
// checkpoint, the data set read and standardised, the model and optimizers built or restored.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "lowbit/batches.h"
#include "lowbit/data/dataset.h"
#include "lowbit/optim.h"
#include "lowbit/train.h"

namespace lowbit {
namespace train {

// The most epochs a run can have (the command's --epochs range).
constexpr int64_t kMaxEpochs = 1000000;

// Adam for every parameter, or Bop for the binary kernels and Adam for the rest.
struct Optimizers {
  std::unique_ptr<torch::optim::Adam> adam;
  std::unique_ptr<optim::Bop> bop;
  void zero_grad();
  void step();
  void set_lr(double lr);
};

// Every field of a recipe as YAML, so that a checkpoint rebuilds exactly its model.
std::string recipe_to_yaml(const Recipe& r);
// The learning rate of an epoch under the recipe's schedule.
double learning_rate(const Recipe& r, int64_t epoch, int64_t epochs);
// The recipe's network for the images and classes of a data set.
nn::NetworkOptions network_for(const Recipe& r, int64_t channels, int64_t height, int64_t width,
                               int64_t classes);
// Prints a warning on stderr as "lowbit: warning: TEXT".
void default_warning(const std::string& text);
// A double as the command line would give it (0.1, not 0.100000).
std::string number(double v);

struct RunSetup {
  std::string recipe_text;  // recipe_to_yaml
  int64_t epochs = 0, first_epoch = 0;
  data::Dataset dataset;
  data::Split training, validation;  // --val-split's parts of the training split
  bool validating = false;
  int64_t channels = 1, height = 0, width = 0, classes = 0;
  Standardisation standardisation;
  // On the run's device; held_* is the validation part with --val-split, else the test split.
  at::Tensor test_images, test_labels, held_images, held_labels;
  Augmentation augmentation;
  torch::nn::Sequential model{nullptr};
  Optimizers optimizers;
  std::vector<std::map<std::string, double>> history;  // of the epochs already trained
  std::string metrics_log;                             // metrics.jsonl as far as it goes
};

// Everything a run needs before its first epoch (for resume: the checkpoint's model and optimizer
// state, checked against the options and the data set). Errors name the option or file at fault.
RunSetup prepare_run(const Recipe& recipe, const TrainOptions& opts, const torch::Device& device,
                     const std::function<void(const std::string&)>& warn);

}  // namespace train
}  // namespace lowbit
