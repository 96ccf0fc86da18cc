// A configurable convolutional network of quantized layers, with Blueoil's first/last-layer
// options.
#pragma once

#include <torch/nn/modules/container/sequential.h>

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
};

// Bi-Real Net's block: body(x) + shortcut(x), the shortcut being the identity or a projection.
class ShortcutBlockImpl : public torch::nn::Module {
 public:
  ShortcutBlockImpl(torch::nn::Sequential body, torch::nn::Sequential projection);
  at::Tensor forward(const at::Tensor& x);
  torch::nn::Sequential body{nullptr}, projection{nullptr};  // projection null: identity
};
TORCH_MODULE(ShortcutBlock);

torch::nn::Sequential build_network(const NetworkOptions& options);

}  // namespace nn
}  // namespace lowbit
