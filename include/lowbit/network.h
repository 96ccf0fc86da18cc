// A configurable convolutional network of quantized layers, with Blueoil's first/last-layer
// options.
#pragma once

#include <torch/nn/modules/container/sequential.h>

#include <optional>
#include <string>
#include <vector>

#include "lowbit/nn.h"

namespace lowbit {
namespace nn {

// conv blocks, then a classifier:
//   for each entry c of `blocks`: c > 0: QuantConv2d(prev, c, 3x3, padding 1) -> BatchNorm2d ->
//   activation; c == 0: 2x2 max pool, placed before the batch norm of the previous conv when
//   pool_before_batchnorm (as Larq's binary networks do, so that pooling sees the pre-normalised
//   values), else after its activation (the usual order, which lets batch norm fold into the conv
//   for quantization-aware training);
//   with shortcuts (Bi-Real Net), every quantized conv and its batch norm form a residual block
//   x + BN(conv(x)), the shortcut being a float 1x1 conv + batch norm where the channel count
//   changes; pools then act on the block outputs;
//   then Flatten -> [QuantLinear(features, hidden) -> BatchNorm1d -> activation] -> QuantLinear(.,
//   num_classes).
// Every layer takes input_quantizer / kernel_quantizer / kernel_constraint, except the first
// convolution and the last (classifier) layer unless quantize_first_convolution /
// quantize_last_convolution say otherwise (Blueoil's options; the first and last layers usually
// keep full precision).
// One layer of a network described layer by layer (a `layers:` list in a config file;
// docs/training.md, "Networks"). Quantized layers (conv, depthwise_conv, dense) take the network's
// quantizers unless they set their own; the first and last of them follow
// quantize_first_convolution / quantize_last_convolution unless `quantized` says otherwise.
struct LayerSpec {
  // conv, depthwise_conv, dense, batch_norm, relu, max_pool, avg_pool, global_avg_pool, flatten,
  // dropout, residual, concat.
  std::string type;
  // conv: output channels; dense: units (kClasses: the data set's classes); depthwise_conv: the
  // channel multiplier.
  int64_t units = 0;
  int64_t kernel = 3;    // conv kernel, pool window
  int64_t stride = -1;   // -1: 1 for convolutions, the window for pools
  int64_t padding = -1;  // -1: kernel / 2 for convolutions ("same" at stride 1), 0 for pools
  bool bias = true;
  double rate = 0;     // dropout
  int quantized = -1;  // -1: the network's rule; 0: float; 1: quantized
  std::string input_quantizer, kernel_quantizer, kernel_constraint;  // empty: the network's
  std::optional<double> pad_values;                                  // unset: the network's
  int64_t bits = 0;  // > 0: the bit width of both quantizers (their k_bit / bit option)
  std::vector<LayerSpec> body, shortcut;         // residual: body(x) + shortcut(x) (identity)
  std::vector<std::vector<LayerSpec>> branches;  // concat: branches' outputs on the channels
  std::string where;                             // "layers[3].body[1]", for messages
};
constexpr int64_t kClasses = -1;

// The layer types, in the order the docs list them.
const std::vector<std::string>& layer_types();

struct NetworkOptions {
  int64_t in_channels = 1;
  int64_t height = 28;
  int64_t width = 28;
  int64_t num_classes = 10;
  std::vector<int64_t> blocks = {32, 32, 0, 64, 64, 0};
  int64_t hidden = 256;  // 0: no hidden dense layer
  std::string input_quantizer = "none";
  std::string kernel_quantizer = "none";
  std::string kernel_constraint = "none";
  bool quantize_first_convolution = false;
  bool quantize_last_convolution = false;
  double pad_values = 0.0;
  std::string activation = "relu";  // "relu" or "none" (quantizers that clip act as activations)
  double dropout = 0.0;
  bool pool_before_batchnorm = true;
  bool shortcuts = false;
  // Non-empty: the network is these layers (blocks, hidden, dropout, pool_before_batchnorm,
  // shortcuts and activation are then unused).
  std::vector<LayerSpec> layers;
  // Scales the channels of every conv and the units of every dense layer of `layers` (rounded, at
  // least 1; not depthwise multipliers, not `classes`), for smaller or wider variants of a network.
  double width_multiplier = 1.0;
};

// Bi-Real Net's block: body(x) + shortcut(x), the shortcut being the identity or a projection.
class ShortcutBlockImpl : public torch::nn::Module {
 public:
  ShortcutBlockImpl(torch::nn::Sequential body, torch::nn::Sequential projection);
  at::Tensor forward(const at::Tensor& x);
  torch::nn::Sequential body{nullptr}, projection{nullptr};  // projection null: identity
};
TORCH_MODULE(ShortcutBlock);

// Concatenation of branches on the channel axis: cat(branch_0(x), branch_1(x), ...).
class ConcatBlockImpl : public torch::nn::Module {
 public:
  explicit ConcatBlockImpl(std::vector<torch::nn::Sequential> branches);
  at::Tensor forward(const at::Tensor& x);
  std::vector<torch::nn::Sequential> branches;
};
TORCH_MODULE(ConcatBlock);

// The network of `options`: its `layers` when given (shapes are followed through them, and a layer
// that does not fit its input is an std::invalid_argument naming it), else the block network.
torch::nn::Sequential build_network(const NetworkOptions& options);

}  // namespace nn
}  // namespace lowbit
