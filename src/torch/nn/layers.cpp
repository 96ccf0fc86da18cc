// QuantLinear and QuantConv2d: quantize the input and the latent kernel, never the bias.
#include <torch/torch.h>

#include <cmath>
#include <stdexcept>

#include "lowbit/nn.h"

namespace lowbit {
namespace nn {

namespace F = torch::nn::functional;

void QuantLayer::setup(torch::nn::Module& self, const QuantizerArg& input,
                       const QuantizerArg& kernel, const std::string& constraint,
                       std::vector<int64_t> weight_shape, int64_t fan_in, bool with_bias,
                       int64_t out) {
  // PyTorch's own initialisation of Linear and Conv2d, so that recipes behave as users expect.
  weight = self.register_parameter("weight", torch::empty(weight_shape));
  torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (with_bias) {
    const double bound = fan_in > 0 ? 1.0 / std::sqrt(static_cast<double>(fan_in)) : 0.0;
    bias = self.register_parameter("bias", torch::empty({out}).uniform_(-bound, bound));
  }
  input_quantizer = make_quantizer(input, QuantizerRole::kInput);
  kernel_quantizer = make_quantizer(kernel, QuantizerRole::kKernel);
  if (!input_quantizer.is_empty()) self.register_module("input_quantizer", input_quantizer);
  if (!kernel_quantizer.is_empty()) self.register_module("kernel_quantizer", kernel_quantizer);
  const QuantizerSpec c = QuantizerSpec::parse(constraint);
  if (c.name == "weight_clip") {
    clip_value_ = 1.0;
    for (const auto& [key, value] : c.options) {
      if (key != "clip_value") {
        throw std::invalid_argument("kernel_constraint weight_clip has no option '" + key + "'");
      }
      size_t used = 0;
      try {
        clip_value_ = std::stod(value, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != value.size() || !(clip_value_ > 0)) {
        throw std::invalid_argument(
            "kernel_constraint weight_clip: clip_value must be a positive "
            "number, got " +
            value);
      }
    }
  } else if (c.name != "none") {
    throw std::invalid_argument("unknown kernel_constraint '" + c.name +
                                "' (known: weight_clip, none)");
  }
}

int64_t QuantLayer::input_precision() const {
  return input_quantizer.is_empty() ? 32 : input_quantizer->precision();
}

int64_t QuantLayer::kernel_precision() const {
  return kernel_quantizer.is_empty() ? 32 : kernel_quantizer->precision();
}

at::Tensor QuantLayer::quantized_kernel() {
  return kernel_quantizer.is_empty() ? weight : kernel_quantizer->forward(weight);
}

at::Tensor QuantLayer::quantize_input(const at::Tensor& x) {
  return input_quantizer.is_empty() ? x : input_quantizer->forward(x);
}

void QuantLayer::apply_kernel_constraint() {
  if (clip_value_ <= 0) return;
  torch::NoGradGuard no_grad;
  weight.clamp_(-clip_value_, clip_value_);
}

QuantLinearImpl::QuantLinearImpl(const QuantLinearOptions& o) : options(o) {
  TORCH_CHECK_VALUE(o.in_features() > 0 && o.out_features() > 0,
                    "QuantLinear: in_features and out_features must be positive, got ",
                    o.in_features(), " and ", o.out_features());
  setup(*this, o.input_quantizer(), o.kernel_quantizer(), o.kernel_constraint(),
        {o.out_features(), o.in_features()}, o.in_features(), o.bias(), o.out_features());
}

at::Tensor QuantLinearImpl::forward(const at::Tensor& x) {
  at::Tensor y = F::linear(quantize_input(x), quantized_kernel(), bias);
  last_input_sizes = x.sizes().vec();
  last_output_sizes = y.sizes().vec();
  return y;
}

int64_t QuantLinearImpl::macs_per_sample() const {
  if (last_output_sizes.empty()) return 0;
  // Every output value takes in_features MACs; leading dimensions beyond the batch multiply.
  int64_t outputs = 1;
  for (size_t d = 1; d < last_output_sizes.size(); ++d) outputs *= last_output_sizes[d];
  return outputs * options.in_features();
}

void QuantLinearImpl::pretty_print(std::ostream& stream) const {
  stream << "lowbit::nn::QuantLinear(in_features=" << options.in_features()
         << ", out_features=" << options.out_features() << ", bias=" << bias.defined()
         << ", input_precision=" << input_precision() << ", kernel_precision=" << kernel_precision()
         << ")";
}

QuantConv2dImpl::QuantConv2dImpl(const QuantConv2dOptions& o) : options(o) {
  TORCH_CHECK_VALUE(o.in_channels() > 0 && o.out_channels() > 0 && o.groups() > 0,
                    "QuantConv2d: in_channels, out_channels and groups must be positive");
  TORCH_CHECK_VALUE(o.in_channels() % o.groups() == 0 && o.out_channels() % o.groups() == 0,
                    "QuantConv2d: in_channels (", o.in_channels(), ") and out_channels (",
                    o.out_channels(), ") must be divisible by groups (", o.groups(), ")");
  const auto k = *o.kernel_size();
  const int64_t per_group = o.in_channels() / o.groups();
  setup(*this, o.input_quantizer(), o.kernel_quantizer(), o.kernel_constraint(),
        {o.out_channels(), per_group, k[0], k[1]}, per_group * k[0] * k[1], o.bias(),
        o.out_channels());
}

at::Tensor QuantConv2dImpl::forward(const at::Tensor& x) {
  at::Tensor xq = quantize_input(x);
  const auto p = *options.padding();
  if (p[0] != 0 || p[1] != 0) {
    // Pad after quantization, with pad_values: binary inputs padded with +1 stay binary.
    xq = F::pad(xq, F::PadFuncOptions({p[1], p[1], p[0], p[0]})
                        .mode(torch::kConstant)
                        .value(options.pad_values()));
  }
  at::Tensor y = F::conv2d(xq, quantized_kernel(),
                           F::Conv2dFuncOptions()
                               .bias(bias)
                               .stride(options.stride())
                               .padding(0)
                               .dilation(options.dilation())
                               .groups(options.groups()));
  last_input_sizes = x.sizes().vec();
  last_output_sizes = y.sizes().vec();
  return y;
}

int64_t QuantConv2dImpl::macs_per_sample() const {
  if (last_output_sizes.size() != 4) return 0;
  const auto k = *options.kernel_size();
  // Each output value: in_channels / groups * kh * kw MACs.
  return last_output_sizes[1] * last_output_sizes[2] * last_output_sizes[3] *
         (options.in_channels() / options.groups()) * k[0] * k[1];
}

void QuantConv2dImpl::pretty_print(std::ostream& stream) const {
  const auto k = *options.kernel_size();
  stream << "lowbit::nn::QuantConv2d(" << options.in_channels() << ", " << options.out_channels()
         << ", kernel_size=[" << k[0] << ", " << k[1] << "], groups=" << options.groups()
         << ", pad_values=" << options.pad_values() << ", input_precision=" << input_precision()
         << ", kernel_precision=" << kernel_precision() << ")";
}

std::vector<std::pair<std::string, QuantLayer*>> quant_layers(torch::nn::Module& module) {
  std::vector<std::pair<std::string, QuantLayer*>> layers;
  for (const auto& item : module.named_modules()) {
    if (auto* layer = dynamic_cast<QuantLayer*>(item.value().get())) {
      layers.emplace_back(item.key(), layer);
    }
  }
  return layers;
}

void apply_constraints(torch::nn::Module& module) {
  for (auto& [name, layer] : quant_layers(module)) layer->apply_kernel_constraint();
}

}  // namespace nn
}  // namespace lowbit
