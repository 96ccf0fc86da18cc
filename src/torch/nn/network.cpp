// build_network: the convolutional classifier of the recipes (see include/lowbit/network.h).
#include "lowbit/network.h"

#include <torch/torch.h>

#include <stdexcept>

namespace lowbit {
namespace nn {

ShortcutBlockImpl::ShortcutBlockImpl(torch::nn::Sequential body_in,
                                     torch::nn::Sequential projection_in)
    : body(register_module("body", std::move(body_in))) {
  if (projection_in) projection = register_module("projection", std::move(projection_in));
}

at::Tensor ShortcutBlockImpl::forward(const at::Tensor& x) {
  return body->forward(x) + (projection ? projection->forward(x) : x);
}

torch::nn::Sequential build_layers(const NetworkOptions& o);  // network_layers.cpp

torch::nn::Sequential build_network(const NetworkOptions& o) {
  TORCH_CHECK_VALUE(o.in_channels > 0 && o.height > 0 && o.width > 0,
                    "build_network: in_channels, height and width must be positive");
  TORCH_CHECK_VALUE(o.num_classes >= 2, "build_network: num_classes must be >= 2, got ",
                    o.num_classes);
  if (!o.layers.empty()) return build_layers(o);
  TORCH_CHECK_VALUE(o.activation == "relu" || o.activation == "none",
                    "build_network: activation must be relu or none, got ", o.activation);
  TORCH_CHECK_VALUE(o.dropout >= 0 && o.dropout < 1, "build_network: dropout must be in [0, 1)");
  torch::nn::Sequential net;
  auto activate = [&](torch::nn::Sequential& s) {
    if (o.activation == "relu") s->push_back(torch::nn::ReLU());
  };
  int64_t channels = o.in_channels, h = o.height, w = o.width;
  bool first = true;
  // The batch norm and activation of a conv wait until we know whether a pool follows.
  int64_t pending = 0;
  auto flush = [&]() {
    if (pending == 0) return;
    net->push_back(torch::nn::BatchNorm2d(pending));
    activate(net);
    pending = 0;
  };
  for (int64_t c : o.blocks) {
    if (c == 0) {
      TORCH_CHECK_VALUE(h >= 2 && w >= 2, "build_network: too many pools for a ", o.height, "x",
                        o.width, " image");
      if (!o.pool_before_batchnorm) flush();
      net->push_back(torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions(2)));
      h /= 2;
      w /= 2;
      flush();
      continue;
    }
    TORCH_CHECK_VALUE(c > 0, "build_network: block channels must be positive or 0 (pool)");
    flush();
    const bool quantized = !first || o.quantize_first_convolution;
    QuantConv2d conv(QuantConv2dOptions(channels, c, 3)
                         .padding(1)
                         .bias(false)
                         .input_quantizer(quantized ? o.input_quantizer : "none")
                         .kernel_quantizer(quantized ? o.kernel_quantizer : "none")
                         .kernel_constraint(quantized ? o.kernel_constraint : "none")
                         .pad_values(quantized ? o.pad_values : 0.0));
    first = false;
    if (o.shortcuts && quantized) {
      torch::nn::Sequential body(conv, torch::nn::BatchNorm2d(c));
      torch::nn::Sequential projection{nullptr};
      if (channels != c) {  // Bi-Real Net's real-valued projection where the width changes
        projection = torch::nn::Sequential(
            QuantConv2d(QuantConv2dOptions(channels, c, 1).bias(false)), torch::nn::BatchNorm2d(c));
      }
      net->push_back(ShortcutBlock(body, projection));
      activate(net);
    } else {
      net->push_back(conv);
      pending = c;
    }
    channels = c;
  }
  flush();
  net->push_back(torch::nn::Flatten());
  int64_t features = channels * h * w;
  if (o.hidden > 0) {
    net->push_back(QuantLinear(QuantLinearOptions(features, o.hidden)
                                   .bias(false)
                                   .input_quantizer(o.input_quantizer)
                                   .kernel_quantizer(o.kernel_quantizer)
                                   .kernel_constraint(o.kernel_constraint)));
    net->push_back(torch::nn::BatchNorm1d(o.hidden));
    activate(net);
    features = o.hidden;
  }
  if (o.dropout > 0) net->push_back(torch::nn::Dropout(o.dropout));
  const bool last = o.quantize_last_convolution;
  net->push_back(QuantLinear(QuantLinearOptions(features, o.num_classes)
                                 .input_quantizer(last ? o.input_quantizer : "none")
                                 .kernel_quantizer(last ? o.kernel_quantizer : "none")
                                 .kernel_constraint(last ? o.kernel_constraint : "none")));
  return net;
}

}  // namespace nn
}  // namespace lowbit
