// Quantization-aware training for integer hardware: batch-norm folding and fake quantization of
// weights, activations and biases, power-of-2 (seed 003) or TF affine (tf.contrib.quantize);
// docs/qat.md.
#pragma once

#include <torch/expanding_array.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "lowbit/nn.h"

namespace lowbit {
namespace qat {

// kPow2: symmetric fixed point with power-of-2 scales (fake_quant_pow2); integer inference needs
// only shifts. kAffine: TF's fake_quant_with_min_max_vars with a float scale and a zero point.
enum class Scheme { kPow2, kAffine };
Scheme parse_scheme(const std::string& name);  // "pow2" or "affine"; std::invalid_argument else
std::string scheme_name(Scheme scheme);

struct QatOptions {
  Scheme scheme = Scheme::kPow2;
  int64_t weight_bits = 8;
  int64_t activation_bits = 8;
  int64_t bias_bits = 16;    // kPow2 only; kAffine keeps a float bias (int32 at conversion, as TF)
  int64_t max_exponent = 3;  // kPow2 weights and biases: range at most [-2^3, 2^3)
  double ema_decay = 0.999;  // moving average of the activations' batch min/max
  int64_t quant_delay = 0;   // training steps that only observe before fake quantization starts
  int64_t freeze_bn_delay =
      -1;                      // step from which folded batch norms use moving statistics; -1 never
  bool quantize_input = true;  // fake-quantize the network input too
  bool per_channel = false;    // one weight range per output channel (else one per tensor)
  // Throws std::invalid_argument naming the option when a value is out of range.
  void check() const;
};

// How one tensor is quantized. kPow2: value = q * 2^-frac_bits, q in [qmin, qmax] =
// [-2^(bits-1), 2^(bits-1) - 1]. kAffine: value = (q - zero_point) * scale, q in [qmin, qmax].
struct TensorQuantization {
  int64_t bits = 0;  // 0: not quantized (float)
  int64_t frac_bits = 0;
  double scale = 0;
  int64_t zero_point = 0;
  int64_t qmin = 0, qmax = 0;
  double min = 0, max = 0;  // the representable range
};

// Fake quantization of activations with an exponential moving average of the batch min and max
// (TF's MovingAvgQuantize). The range always contains 0; the first training batch initialises it.
// In training it observes every batch and quantizes from step quant_delay on; in eval it quantizes
// with the stored range once it has seen data.
class ActivationQuantImpl : public torch::nn::Module, public nn::ActivationQuantizer {
 public:
  explicit ActivationQuantImpl(const QatOptions& options);
  at::Tensor forward(const at::Tensor& x);
  int64_t precision() const override { return options.activation_bits; }
  bool initialized() const;
  TensorQuantization quantization() const;
  void pretty_print(std::ostream& stream) const override;

  QatOptions options;
  at::Tensor min, max;  // float32 buffers, 0-dim
  at::Tensor step;      // int64 buffer: training forwards seen
  at::Tensor observed;  // int64 buffer: 1 once a batch has set the range
};
TORCH_MODULE(ActivationQuant);

// A convolution or linear layer with its batch norm folded in (tf.contrib.quantize's folding, one
// convolution per step): w_fold = w * gamma / sqrt(moving_var + eps) is fake-quantized; in training
// before freeze_bn_delay the output is rescaled by sqrt(moving_var + eps) / sqrt(batch_var + eps)
// and takes the batch statistics' folded bias, so it equals batch norm of the quantized layer; in
// eval and after the freeze it is conv(x, q(w_fold)) + q(b_fold) with the moving statistics. The
// folded bias is fake-quantized with bias_bits (kPow2). Without a batch norm it is a plain layer
// with quantized weight and bias.
class FoldedLayerImpl : public torch::nn::Module, public nn::QuantLayer {
 public:
  struct Geometry {
    bool conv = true;
    std::vector<int64_t> stride{1, 1}, padding{0, 0}, dilation{1, 1};
    int64_t groups = 1;
  };
  // weight/bias from the layer (bias may be undefined); bn_* undefined when there is no batch norm.
  FoldedLayerImpl(const QatOptions& options, const Geometry& geometry, const at::Tensor& weight,
                  const at::Tensor& bias, const at::Tensor& bn_weight, const at::Tensor& bn_bias,
                  const at::Tensor& running_mean, const at::Tensor& running_var, double eps,
                  double momentum);
  at::Tensor forward(const at::Tensor& x);
  bool has_batchnorm() const { return gamma.defined(); }
  // The folded weight and bias of eval mode, before and after fake quantization.
  std::pair<at::Tensor, at::Tensor> folded_parameters();
  std::pair<at::Tensor, at::Tensor> quantized_folded_parameters();
  // Per tensor; with options.per_channel, channel_weight_quantization has one per output channel.
  TensorQuantization weight_quantization();
  std::vector<TensorQuantization> channel_weight_quantization();
  TensorQuantization bias_quantization();

  int64_t input_precision() const override { return options.activation_bits; }
  int64_t kernel_precision() const override { return options.weight_bits; }
  int64_t macs_per_sample() const override;
  void pretty_print(std::ostream& stream) const override;

  QatOptions options;
  Geometry geometry;
  at::Tensor gamma, beta, running_mean, running_var;  // batch norm (undefined without one)
  at::Tensor step;                                    // int64 buffer: training forwards seen
  double eps = 1e-5, momentum = 0.1;

 private:
  at::Tensor apply(const at::Tensor& x, const at::Tensor& w) const;
  at::Tensor quantize_weight(const at::Tensor& w, bool quantize) const;
  at::Tensor quantize_bias(const at::Tensor& b, bool quantize) const;
  // beta + (bias - mean) * factor: the folded bias for a mean and gamma / std.
  at::Tensor folded_bias(const at::Tensor& mean, const at::Tensor& factor) const;
};
TORCH_MODULE(FoldedLayer);

// Prepares a float network for quantization-aware training: every Conv2d / Linear (lowbit's Quant*
// layers without quantizers, or torch's own) followed by a BatchNorm is folded into a FoldedLayer,
// an ActivationQuant follows every layer (after its ReLU when one follows), and one quantizes the
// input. MaxPool2d, Flatten, Dropout and ReLU pass through (they keep values on the grid). The
// weights are copied, so the prepared network starts where the float one was. Anything else (a
// batch norm that does not follow a layer, a pool between a layer and its batch norm, shortcut
// blocks, layers with quantizers) is an std::invalid_argument naming the module.
//
// With keep_quantized_layers, layers that have quantizers (binary or low-bit QuantConv2d and
// QuantLinear) are kept as they are, with the batch norm that follows them, and only the float
// layers are folded and quantized: mixed precision, such as 8-bit first and last layers around
// binary ones (the zoo's bnn-int8-io). A folded layer reading a kept layer's output gets an
// ActivationQuant first, so that every folded layer has integer inputs.
torch::nn::Sequential prepare(const torch::nn::Sequential& model, const QatOptions& options,
                              bool keep_quantized_layers = false);

// The integer parameters of every folded layer of a prepared network, for an integer engine.
struct LayerIntegerParameters {
  std::string name;   // the layer's index in the network
  std::string type;   // "conv2d" or "linear"
  bool relu = false;  // a ReLU comes between the layer and its output quantization
  TensorQuantization input, weight, bias, output;
};
std::vector<LayerIntegerParameters> integer_parameters(torch::nn::Sequential& prepared);
std::string integer_parameters_json(const std::vector<LayerIntegerParameters>& layers,
                                    Scheme scheme);

}  // namespace qat
}  // namespace lowbit
