// Re-estimation of batch norm's running statistics on the final weights (lowbit/train.h).
#include <torch/torch.h>

#include <functional>
#include <stdexcept>
#include <vector>

#include "lowbit/train.h"

namespace lowbit {
namespace train {
namespace {

// One batch-norm layer of any dimension: its module and its options' momentum.
struct BatchNormLayer {
  torch::nn::Module* module = nullptr;
  c10::optional<double>* momentum = nullptr;
  c10::optional<double> saved;
  std::function<void()> reset;
};

template <class Impl>
bool collect(torch::nn::Module& m, std::vector<BatchNormLayer>& out) {
  auto* bn = m.as<Impl>();
  if (bn == nullptr) return false;
  if (bn->options.track_running_stats()) {
    BatchNormLayer layer;
    layer.module = &m;
    layer.momentum = &bn->options.momentum();
    layer.saved = bn->options.momentum();
    layer.reset = [bn] { bn->reset_running_stats(); };
    out.push_back(std::move(layer));
  }
  return true;
}

}  // namespace

int64_t recalibrate_batch_norm(torch::nn::Sequential& model,
                               const std::function<bool(at::Tensor&)>& next_batch) {
  std::vector<BatchNormLayer> layers;
  for (const auto& m : model->modules(/*include_self=*/false)) {
    collect<torch::nn::BatchNorm1dImpl>(*m, layers) ||
        collect<torch::nn::BatchNorm2dImpl>(*m, layers) ||
        collect<torch::nn::BatchNorm3dImpl>(*m, layers);
  }
  if (layers.empty()) return 0;
  const bool was_training = model->is_training();
  // Saved before any change: a failing batch leaves the model as it was.
  torch::NoGradGuard no_grad;
  std::vector<std::vector<at::Tensor>> before;
  for (auto& l : layers) {
    before.emplace_back();
    for (const auto& b : l.module->buffers(/*recurse=*/false)) before.back().push_back(b.clone());
  }
  auto restore_modes = [&] {
    for (auto& l : layers) *l.momentum = l.saved;
    model->train(was_training);
  };
  int64_t batches = 0;
  try {
    model->eval();
    for (auto& l : layers) {
      l.reset();
      // No momentum: the running statistics become the plain (cumulative) average over batches.
      *l.momentum = c10::nullopt;
      l.module->train(true);
    }
    at::Tensor images;
    while (next_batch(images)) {
      if (images.defined() && images.size(0) > 1) {
        model->forward(images);
        ++batches;
      }
    }
    if (batches == 0) {
      throw std::invalid_argument(
          "batch norm re-estimation: no batch of at least 2 images to estimate the statistics on");
    }
  } catch (...) {
    for (size_t i = 0; i < layers.size(); ++i) {
      const auto buffers = layers[i].module->buffers(/*recurse=*/false);
      for (size_t j = 0; j < buffers.size(); ++j) buffers[j].copy_(before[i][j]);
    }
    restore_modes();
    throw;
  }
  restore_modes();
  return static_cast<int64_t>(layers.size());
}

}  // namespace train
}  // namespace lowbit
