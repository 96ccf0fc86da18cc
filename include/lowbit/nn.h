// Quantizer objects and quantized layers (torch::nn modules) over lowbit's operators;
// docs/layers.md.
#pragma once

#include <torch/expanding_array.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/any.h>
#include <torch/nn/pimpl.h>
#include <torch/optim/optimizer.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "lowbit/catalogue.h"

namespace lowbit {
namespace nn {

// A quantizer by name with options, as written in config files: "dorefa(k_bit=2, mode=weights)".
// Option values keep their text; each quantizer reads and checks the ones it knows.
struct QuantizerSpec {
  std::string name = "none";
  std::map<std::string, std::string> options;

  QuantizerSpec() = default;
  QuantizerSpec(std::string name, std::map<std::string, std::string> options = {})
      : name(std::move(name)), options(std::move(options)) {}
  // Parses "name" or "name(key=value, ...)"; throws std::invalid_argument naming the bad part.
  static QuantizerSpec parse(const std::string& text);
  std::string str() const;
};

// Kernel quantizers default to axis 0 (PyTorch's output channel) where the operator has an axis.
enum class QuantizerRole { kInput, kKernel };

// A quantizer of the catalogue (lowbit/catalogue.h) with its options: calls its operator.
class QuantizerImpl : public torch::nn::Module {
 public:
  QuantizerImpl(const QuantizerSpec& spec, QuantizerRole role);
  at::Tensor forward(const at::Tensor& x);
  int64_t precision() const { return precision_; }
  const QuantizerSpec& spec() const { return spec_; }
  // Every option, defaults filled in (checked at construction).
  const ResolvedOptions& options() const { return options_; }
  const c10::IValue& option(const std::string& key) const;
  void pretty_print(std::ostream& stream) const override;

 private:
  QuantizerSpec spec_;
  ResolvedOptions options_;
  int64_t precision_ = 32;
  std::function<at::Tensor(const at::Tensor&)> apply_;
};
TORCH_MODULE(Quantizer);

// A quantizer argument: a spec string, a QuantizerSpec, or an existing Quantizer object.
struct QuantizerArg {
  QuantizerArg(const char* text)
      : spec(QuantizerSpec::parse(text)) {}  // NOLINT: implicit by design
  QuantizerArg(const std::string& text) : spec(QuantizerSpec::parse(text)) {}  // NOLINT
  QuantizerArg(QuantizerSpec s) : spec(std::move(s)) {}                        // NOLINT
  QuantizerArg(Quantizer q) : object(std::move(q)) {}                          // NOLINT
  QuantizerSpec spec;
  Quantizer object{nullptr};
};

// The quantizer of an argument for `role`, or an empty holder for "none".
Quantizer make_quantizer(const QuantizerArg& arg, QuantizerRole role);

struct QuantLinearOptions {
  QuantLinearOptions(int64_t in_features, int64_t out_features)
      : in_features_(in_features), out_features_(out_features) {}
  TORCH_ARG(int64_t, in_features);
  TORCH_ARG(int64_t, out_features);
  TORCH_ARG(bool, bias) = true;
  TORCH_ARG(QuantizerArg, input_quantizer) = QuantizerArg("none");
  TORCH_ARG(QuantizerArg, kernel_quantizer) = QuantizerArg("none");
  // "none" or "weight_clip(clip_value=1.0)": Larq's clip of the latent weights after each step.
  TORCH_ARG(std::string, kernel_constraint) = "none";
};

struct QuantConv2dOptions {
  QuantConv2dOptions(int64_t in_channels, int64_t out_channels,
                     torch::ExpandingArray<2> kernel_size)
      : in_channels_(in_channels), out_channels_(out_channels), kernel_size_(kernel_size) {}
  TORCH_ARG(int64_t, in_channels);
  TORCH_ARG(int64_t, out_channels);
  TORCH_ARG(torch::ExpandingArray<2>, kernel_size);
  TORCH_ARG(torch::ExpandingArray<2>, stride) = 1;
  TORCH_ARG(torch::ExpandingArray<2>, padding) = 0;
  TORCH_ARG(torch::ExpandingArray<2>, dilation) = 1;
  TORCH_ARG(int64_t, groups) = 1;
  TORCH_ARG(bool, bias) = true;
  TORCH_ARG(QuantizerArg, input_quantizer) = QuantizerArg("none");
  TORCH_ARG(QuantizerArg, kernel_quantizer) = QuantizerArg("none");
  TORCH_ARG(std::string, kernel_constraint) = "none";
  // The constant the quantized input is padded with (1.0: Larq's "same-one" padding).
  TORCH_ARG(double, pad_values) = 0.0;
};

// What the quantized layers share: quantizers, latent kernel, constraint.
class QuantLayer {
 public:
  virtual ~QuantLayer() = default;
  virtual int64_t input_precision() const;
  virtual int64_t kernel_precision() const;
  // The kernel as the forward uses it.
  at::Tensor quantized_kernel();
  // Clamps the latent kernel by the kernel constraint (no-op without one); call after a step.
  void apply_kernel_constraint();

  at::Tensor weight;
  at::Tensor bias;
  Quantizer input_quantizer{nullptr};
  Quantizer kernel_quantizer{nullptr};
  // Shapes seen by the last forward (for the model summary).
  std::vector<int64_t> last_input_sizes, last_output_sizes;
  // Multiply-accumulates of one sample in the last forward.
  virtual int64_t macs_per_sample() const = 0;

 protected:
  void setup(torch::nn::Module& self, const QuantizerArg& input, const QuantizerArg& kernel,
             const std::string& constraint, std::vector<int64_t> weight_shape, int64_t fan_in,
             bool with_bias, int64_t out);
  at::Tensor quantize_input(const at::Tensor& x);

 private:
  double clip_value_ = 0.0;  // 0: no constraint
};

class QuantLinearImpl : public torch::nn::Module, public QuantLayer {
 public:
  explicit QuantLinearImpl(const QuantLinearOptions& options);
  QuantLinearImpl(int64_t in, int64_t out) : QuantLinearImpl(QuantLinearOptions(in, out)) {}
  at::Tensor forward(const at::Tensor& x);
  int64_t macs_per_sample() const override;
  void pretty_print(std::ostream& stream) const override;
  QuantLinearOptions options;
};
TORCH_MODULE(QuantLinear);

class QuantConv2dImpl : public torch::nn::Module, public QuantLayer {
 public:
  explicit QuantConv2dImpl(const QuantConv2dOptions& options);
  at::Tensor forward(const at::Tensor& x);
  int64_t macs_per_sample() const override;
  void pretty_print(std::ostream& stream) const override;
  QuantConv2dOptions options;
};
TORCH_MODULE(QuantConv2d);

// A module that only fake-quantizes activations (quantization-aware training's observers): the
// summary counts its state with no layer.
class ActivationQuantizer {
 public:
  virtual ~ActivationQuantizer() = default;
  virtual int64_t precision() const = 0;
};

// Larq's model summary: per layer the input precision, output shape, parameters per bit width,
// memory and MACs per precision; totals and compression. Runs one forward of a zero batch of
// `input_shape` (batch dimension included) to see the shapes. Layers are the modules that own
// parameters or buffers directly, in registration order.
struct SummaryRow {
  std::string name, type;
  int64_t input_precision = 32;       // 0: not a quantized layer
  std::vector<int64_t> output_shape;  // empty when unknown
  std::map<int64_t, int64_t> params_by_bits;
  double memory_kib = 0;
  std::map<int64_t, int64_t> macs_by_bits;
};
struct ModelSummary {
  std::vector<SummaryRow> rows;
  int64_t total_params = 0, trainable_params = 0, non_trainable_params = 0;
  double model_size_kib = 0, model_size_8bit_kib = 0, float32_kib = 0, compression_ratio = 0;
  int64_t total_macs = 0;
  double binarized_mac_ratio = 0, ternarized_mac_ratio = 0;
  std::string to_string() const;
  std::string to_json() const;
};
ModelSummary summary(torch::nn::Module& model, const std::vector<int64_t>& input_shape);

// Every quantized layer in `module` (itself included), with its qualified name.
std::vector<std::pair<std::string, QuantLayer*>> quant_layers(torch::nn::Module& module);
// Applies every layer's kernel constraint; call after each optimizer step.
void apply_constraints(torch::nn::Module& module);

}  // namespace nn
}  // namespace lowbit
