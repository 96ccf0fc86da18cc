// Quantization-aware training: batch-norm folding, observers and the prepare step (lowbit/qat.h,
// docs/qat.md).
#include "lowbit/qat.h"

#include <torch/library.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <cmath>
#include <iomanip>
#include <sstream>
#include <stdexcept>

#include "lowbit/kernels.h"
#include "lowbit/ops.h"

namespace lowbit {
namespace qat {
namespace {

namespace F = torch::nn::functional;

// Conv2d's padding options are c10::variant in LibTorch 1.x and std::variant from 2.1 on.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
using std::get_if;
#else
using c10::get_if;
#endif

TensorQuantization pow2_quantization(double lo, double hi, int64_t bits,
                                     c10::optional<int64_t> max_exponent) {
  const auto [pmin, pmax] =
      lowbit::pow2_range(torch::tensor(static_cast<float>(lo)),
                         torch::tensor(static_cast<float>(hi)), bits, max_exponent);
  TensorQuantization q;
  q.bits = bits;
  q.min = pmin.item<double>();
  q.max = pmax.item<double>();
  const int64_t e = std::ilogb(-q.min);  // pow2_min = -2^e exactly
  q.frac_bits = bits - 1 - e;
  q.scale = std::ldexp(1.0, static_cast<int>(-q.frac_bits));
  q.zero_point = 0;
  q.qmin = -(int64_t{1} << (bits - 1));
  q.qmax = (int64_t{1} << (bits - 1)) - 1;
  return q;
}

TensorQuantization affine_quantization(double lo, double hi, int64_t bits, bool narrow_range) {
  const auto p = kernels::nudge<float>(static_cast<float>(lo), static_cast<float>(hi),
                                       static_cast<int>(bits), narrow_range);
  TensorQuantization q;
  q.bits = bits;
  q.qmin = narrow_range ? 1 : 0;
  q.qmax = (int64_t{1} << bits) - 1;
  q.scale = p.scale;
  q.zero_point = q.qmin + static_cast<int64_t>(p.quant_zero);
  q.min = p.nudged_min;
  q.max = p.nudged_max;
  return q;
}

std::vector<int64_t> pair(const torch::ExpandingArray<2>& a) { return {(*a)[0], (*a)[1]}; }

// A per-channel vector shaped to broadcast over a weight (channel first) or an output (channel 1).
at::Tensor as_weight(const at::Tensor& v, int64_t dim) {
  std::vector<int64_t> shape(dim, 1);
  shape[0] = -1;
  return v.view(shape);
}
at::Tensor as_output(const at::Tensor& v, int64_t dim) {
  std::vector<int64_t> shape(dim, 1);
  shape[1] = -1;
  return v.view(shape);
}

void json_tensor(std::ostringstream& s, const char* key, const TensorQuantization& q,
                 Scheme scheme) {
  s << "\"" << key << "\": ";
  if (q.bits == 0) {
    s << "null";
    return;
  }
  s << "{\"bits\": " << q.bits;
  if (scheme == Scheme::kPow2) s << ", \"frac_bits\": " << q.frac_bits;
  s << ", \"scale\": " << q.scale << ", \"zero_point\": " << q.zero_point
    << ", \"qmin\": " << q.qmin << ", \"qmax\": " << q.qmax << ", \"min\": " << q.min
    << ", \"max\": " << q.max << "}";
}

}  // namespace

Scheme parse_scheme(const std::string& name) {
  if (name == "pow2") return Scheme::kPow2;
  if (name == "affine") return Scheme::kAffine;
  throw std::invalid_argument("unknown quantization scheme '" + name + "' (known: pow2, affine)");
}

std::string scheme_name(Scheme scheme) { return scheme == Scheme::kPow2 ? "pow2" : "affine"; }

void QatOptions::check() const {
  auto bits = [](const char* name, int64_t v) {
    if (v < 2 || v > 16) {
      throw std::invalid_argument(std::string("qat: ") + name + " must be in [2, 16], got " +
                                  std::to_string(v));
    }
  };
  bits("weight_bits", weight_bits);
  bits("activation_bits", activation_bits);
  if (scheme == Scheme::kPow2) bits("bias_bits", bias_bits);
  if (!(ema_decay >= 0 && ema_decay < 1)) {
    throw std::invalid_argument("qat: ema_decay must be in [0, 1), got " +
                                std::to_string(ema_decay));
  }
  if (quant_delay < 0) throw std::invalid_argument("qat: quant_delay must be >= 0");
  if (freeze_bn_delay < -1) {
    throw std::invalid_argument("qat: freeze_bn_delay must be >= 0, or -1 for never");
  }
}

// ---- activations
// ---------------------------------------------------------------------------------

ActivationQuantImpl::ActivationQuantImpl(const QatOptions& o) : options(o) {
  options.check();
  min = register_buffer("min", torch::zeros({}));
  max = register_buffer("max", torch::zeros({}));
  step = register_buffer("step", torch::zeros({}, torch::kLong));
  observed = register_buffer("observed", torch::zeros({}, torch::kLong));
}

bool ActivationQuantImpl::initialized() const { return observed.item<int64_t>() != 0; }

at::Tensor ActivationQuantImpl::forward(const at::Tensor& x) {
  if (is_training()) {
    if (x.numel() > 0) {
      torch::NoGradGuard no_grad;
      const auto [lo, hi] = torch::aminmax(x.detach());
      const auto batch_min = lo.clamp_max(0).to(torch::kFloat);
      const auto batch_max = hi.clamp_min(0).to(torch::kFloat);
      if (!initialized()) {
        min.copy_(batch_min);
        max.copy_(batch_max);
        observed.fill_(1);
      } else {  // TF's assign_moving_average: v -= (1 - decay) * (v - value)
        min.sub_((min - batch_min) * (1.0 - options.ema_decay));
        max.sub_((max - batch_max) * (1.0 - options.ema_decay));
      }
    }
    const int64_t s = step.item<int64_t>();
    step.add_(1);
    if (s < options.quant_delay || !initialized()) return x;
  } else if (!initialized()) {
    return x;
  }
  if (options.scheme == Scheme::kPow2) {
    return lowbit::fake_quant_pow2(x, min, max, options.activation_bits);
  }
  return lowbit::fake_quant_with_min_max_vars(x, min, max, options.activation_bits, false);
}

TensorQuantization ActivationQuantImpl::quantization() const {
  if (!initialized()) return {};
  const double lo = min.item<double>(), hi = max.item<double>();
  return options.scheme == Scheme::kPow2
             ? pow2_quantization(lo, hi, options.activation_bits, c10::nullopt)
             : affine_quantization(lo, hi, options.activation_bits, false);
}

void ActivationQuantImpl::pretty_print(std::ostream& stream) const {
  stream << "lowbit::qat::ActivationQuant(scheme=" << scheme_name(options.scheme)
         << ", bits=" << options.activation_bits << ", ema_decay=" << options.ema_decay << ")";
}

// ---- folded layers
// -------------------------------------------------------------------------------

FoldedLayerImpl::FoldedLayerImpl(const QatOptions& o, const Geometry& g, const at::Tensor& w,
                                 const at::Tensor& b, const at::Tensor& bn_weight,
                                 const at::Tensor& bn_bias, const at::Tensor& mean,
                                 const at::Tensor& var, double bn_eps, double bn_momentum)
    : options(o), geometry(g), eps(bn_eps), momentum(bn_momentum) {
  options.check();
  TORCH_CHECK_VALUE(w.dim() == (g.conv ? 4 : 2), "FoldedLayer: a ", g.conv ? "conv" : "linear",
                    " weight must have ", g.conv ? 4 : 2, " dimensions, got ", w.dim());
  torch::NoGradGuard no_grad;
  weight = register_parameter("weight", w.detach().clone());
  if (b.defined()) bias = register_parameter("bias", b.detach().clone());
  if (bn_weight.defined()) {
    const int64_t c = w.size(0);
    for (const auto* t : {&bn_weight, &bn_bias, &mean, &var}) {
      TORCH_CHECK_VALUE(t->defined() && t->dim() == 1 && t->size(0) == c,
                        "FoldedLayer: batch norm tensors must have one value per output channel (",
                        c, ")");
    }
    gamma = register_parameter("gamma", bn_weight.detach().clone());
    beta = register_parameter("beta", bn_bias.detach().clone());
    running_mean = register_buffer("running_mean", mean.detach().clone());
    running_var = register_buffer("running_var", var.detach().clone());
  }
  step = register_buffer("step", torch::zeros({}, torch::kLong));
}

at::Tensor FoldedLayerImpl::apply(const at::Tensor& x, const at::Tensor& w) const {
  if (!geometry.conv) return F::linear(x, w);
  return F::conv2d(x, w,
                   F::Conv2dFuncOptions()
                       .stride(geometry.stride)
                       .padding(geometry.padding)
                       .dilation(geometry.dilation)
                       .groups(geometry.groups));
}

at::Tensor FoldedLayerImpl::quantize_weight(const at::Tensor& w, bool quantize) const {
  if (!quantize) return w;
  // Per channel: the operators' per-channel forms work on the last dimension, so each output
  // channel becomes a column.
  const at::Tensor v = options.per_channel ? w.reshape({w.size(0), -1}).t() : w;
  const auto lo = options.per_channel ? std::get<0>(v.detach().min(0)) : v.min().detach();
  const auto hi = options.per_channel ? std::get<0>(v.detach().max(0)) : v.max().detach();
  at::Tensor q;
  if (options.scheme == Scheme::kPow2) {
    q = lowbit::fake_quant_pow2(v, lo, hi, options.weight_bits, options.max_exponent);
  } else if (options.per_channel) {
    q = lowbit::fake_quant_with_min_max_vars_per_channel(v, lo.clamp_max(0), hi.clamp_min(0),
                                                         options.weight_bits, true);
  } else {
    // tf.contrib.quantize's LastValueQuantize for weights: narrow range, 0 inside the window.
    q = lowbit::fake_quant_with_min_max_vars(v, lo.clamp_max(0), hi.clamp_min(0),
                                             options.weight_bits, true);
  }
  return options.per_channel ? q.t().reshape(w.sizes()) : q;
}

at::Tensor FoldedLayerImpl::quantize_bias(const at::Tensor& b, bool quantize) const {
  if (!quantize || options.scheme != Scheme::kPow2 || !b.defined() || b.numel() == 0) return b;
  return lowbit::fake_quant_pow2(b, b.min().detach(), b.max().detach(), options.bias_bits,
                                 options.max_exponent);
}

at::Tensor FoldedLayerImpl::forward(const at::Tensor& x) {
  const bool training = is_training();
  const int64_t s = step.item<int64_t>();
  const bool quantize = !training || s >= options.quant_delay;
  at::Tensor y;
  if (!has_batchnorm()) {
    y = apply(x, quantize_weight(weight, quantize));
    if (bias.defined()) y = y + as_output(quantize_bias(bias, quantize), y.dim());
  } else {
    const bool batch_statistics =
        training && !(options.freeze_bn_delay >= 0 && s >= options.freeze_bn_delay);
    const auto moving_std = (running_var + eps).sqrt();
    const auto scale = gamma / moving_std;
    y = apply(x, quantize_weight(weight * as_weight(scale, weight.dim()), quantize));
    TORCH_CHECK_VALUE(y.dim() >= 2, "FoldedLayer: the output needs a channel dimension");
    TORCH_CHECK_VALUE(geometry.conv || y.dim() == 2,
                      "FoldedLayer: a linear layer with batch norm takes [batch, features] inputs");
    if (batch_statistics) {
      // Batch norm of the layer's own output y / s (+ bias), by torch's fused kernel: its value is
      // y * sqrt(moving var + eps) / sqrt(batch var + eps) + b with the batch statistics' folded
      // bias b, and it updates the moving statistics. The bias's quantization error is then added
      // as a constant, so the output takes q(b) and the gradient is batch norm's. A channel whose
      // gamma is 0 has a zero weight and outputs beta.
      const auto safe = torch::where(scale == 0, torch::ones_like(scale), scale);
      at::Tensor raw = y / as_output(safe, y.dim());
      if (bias.defined()) raw = raw + as_output(bias, y.dim());
      const auto [normed, batch_mean, batch_invstd] = at::native_batch_norm(
          raw, gamma, beta, running_mean, running_var, /*training=*/true, momentum, eps);
      y = normed;
      if (quantize && options.scheme == Scheme::kPow2) {
        at::Tensor error;
        {
          torch::NoGradGuard no_grad;
          const auto b = folded_bias(batch_mean, gamma * batch_invstd);
          error = quantize_bias(b, true) - b;
        }
        y = y + as_output(error, y.dim());
      }
    } else {
      y = y + as_output(quantize_bias(folded_bias(running_mean, scale), quantize), y.dim());
    }
  }
  if (training) step.add_(1);
  last_input_sizes = x.sizes().vec();
  last_output_sizes = y.sizes().vec();
  return y;
}

std::pair<at::Tensor, at::Tensor> FoldedLayerImpl::folded_parameters() {
  torch::NoGradGuard no_grad;
  if (!has_batchnorm())
    return {weight.detach().clone(), bias.defined() ? bias.detach().clone() : bias};
  const auto scale = gamma / (running_var + eps).sqrt();
  return {weight * as_weight(scale, weight.dim()), folded_bias(running_mean, scale)};
}

at::Tensor FoldedLayerImpl::folded_bias(const at::Tensor& mean, const at::Tensor& factor) const {
  return beta + ((bias.defined() ? bias : torch::zeros_like(mean)) - mean) * factor;
}

std::pair<at::Tensor, at::Tensor> FoldedLayerImpl::quantized_folded_parameters() {
  torch::NoGradGuard no_grad;
  const auto [w, b] = folded_parameters();
  return {quantize_weight(w, true), quantize_bias(b, true)};
}

TensorQuantization FoldedLayerImpl::weight_quantization() {
  const auto w = folded_parameters().first;
  const double lo = w.min().item<double>(), hi = w.max().item<double>();
  if (options.scheme == Scheme::kPow2) {
    return pow2_quantization(lo, hi, options.weight_bits, options.max_exponent);
  }
  return affine_quantization(std::min(lo, 0.0), std::max(hi, 0.0), options.weight_bits, true);
}

std::vector<TensorQuantization> FoldedLayerImpl::channel_weight_quantization() {
  const auto rows = folded_parameters().first.reshape({weight.size(0), -1});
  std::vector<TensorQuantization> q;
  for (int64_t c = 0; c < rows.size(0); ++c) {
    const double lo = rows[c].min().item<double>(), hi = rows[c].max().item<double>();
    q.push_back(
        options.scheme == Scheme::kPow2
            ? pow2_quantization(lo, hi, options.weight_bits, options.max_exponent)
            : affine_quantization(std::min(lo, 0.0), std::max(hi, 0.0), options.weight_bits, true));
  }
  return q;
}

TensorQuantization FoldedLayerImpl::bias_quantization() {
  const auto b = folded_parameters().second;
  if (!b.defined() || b.numel() == 0 || options.scheme != Scheme::kPow2) return {};
  return pow2_quantization(b.min().item<double>(), b.max().item<double>(), options.bias_bits,
                           options.max_exponent);
}

int64_t FoldedLayerImpl::macs_per_sample() const {
  if (last_output_sizes.size() < 2) return 0;
  int64_t outputs = 1;
  for (size_t d = 1; d < last_output_sizes.size(); ++d) outputs *= last_output_sizes[d];
  return outputs * (weight.numel() / weight.size(0));  // each output: one row of the kernel
}

void FoldedLayerImpl::pretty_print(std::ostream& stream) const {
  stream << "lowbit::qat::FoldedLayer(" << (geometry.conv ? "conv2d" : "linear") << ", "
         << weight.size(1) * (geometry.conv ? geometry.groups : 1) << ", " << weight.size(0)
         << ", batchnorm=" << gamma.defined() << ", scheme=" << scheme_name(options.scheme)
         << ", weight_bits=" << options.weight_bits << ")";
}

// ---- prepare
// -------------------------------------------------------------------------------------

torch::nn::Sequential prepare(const torch::nn::Sequential& model, const QatOptions& o,
                              bool keep_quantized_layers) {
  o.check();
  torch::NoGradGuard no_grad;
  torch::nn::Sequential out;
  if (o.quantize_input) out->push_back(ActivationQuant(o));
  // Whether the values reaching module i come from a kept quantized layer (its batch norm, pools,
  // flatten, dropout, ReLU) rather than from the input or an activation quantizer: a folded layer
  // reading them gets an activation quantizer of its own first. (The network's input is quantized
  // only with quantize_input.)
  bool on_grid = true;
  bool after_kept = false;  // since the last kept quantized layer, no folded one
  const size_t n = model->size();
  for (size_t i = 0; i < n; ++i) {
    const auto m = model->ptr(i);
    const std::string where = "qat::prepare: module " + std::to_string(i) + " (" + m->name() + ")";
    FoldedLayerImpl::Geometry g;
    at::Tensor w, b;
    bool layer = true;
    const auto* qc = m->as<nn::QuantConv2dImpl>();
    const auto* ql = m->as<nn::QuantLinearImpl>();
    const bool quantized =
        (qc != nullptr && (!qc->input_quantizer.is_empty() || !qc->kernel_quantizer.is_empty())) ||
        (ql != nullptr && (!ql->input_quantizer.is_empty() || !ql->kernel_quantizer.is_empty()));
    if (quantized) {
      if (!keep_quantized_layers) {
        throw std::invalid_argument(where + ": has quantizers; prepare takes a float network");
      }
      // Kept as it is (the same module: its weights train on), and so is its batch norm.
      out->push_back(*(model->begin() + static_cast<std::ptrdiff_t>(i)));
      on_grid = false;
      after_kept = true;
      continue;
    }
    if (auto* c = m->as<nn::QuantConv2dImpl>()) {
      const auto p = pair(c->options.padding());
      if (c->options.pad_values() != 0 && (p[0] != 0 || p[1] != 0)) {
        throw std::invalid_argument(where + ": pad_values must be 0");
      }
      g.stride = pair(c->options.stride());
      g.padding = p;
      g.dilation = pair(c->options.dilation());
      g.groups = c->options.groups();
      w = c->weight;
      b = c->bias;
    } else if (auto* c = m->as<torch::nn::Conv2dImpl>()) {
      const auto* p = get_if<torch::ExpandingArray<2>>(&c->options.padding());
      if (p == nullptr || !get_if<torch::enumtype::kZeros>(&c->options.padding_mode())) {
        throw std::invalid_argument(where + ": only explicit zero padding is supported");
      }
      g.stride = pair(c->options.stride());
      g.padding = pair(*p);
      g.dilation = pair(c->options.dilation());
      g.groups = c->options.groups();
      w = c->weight;
      b = c->bias;
    } else if (auto* l = m->as<nn::QuantLinearImpl>()) {
      g.conv = false;
      w = l->weight;
      b = l->bias;
    } else if (auto* l = m->as<torch::nn::LinearImpl>()) {
      g.conv = false;
      w = l->weight;
      b = l->bias;
    } else {
      layer = false;
    }
    if (layer) {
      at::Tensor gw, gb, mean, var;
      double eps = 1e-5, momentum = 0.1;
      if (i + 1 < n) {
        const auto next = model->ptr(i + 1);
        const torch::nn::BatchNormOptions* bo = nullptr;
        torch::nn::BatchNormImplBase<2, torch::nn::BatchNorm2dImpl>* bn2 =
            next->as<torch::nn::BatchNorm2dImpl>();
        torch::nn::BatchNormImplBase<1, torch::nn::BatchNorm1dImpl>* bn1 =
            next->as<torch::nn::BatchNorm1dImpl>();
        if (bn2 && !g.conv)
          throw std::invalid_argument(where + ": BatchNorm2d after a linear layer");
        if (bn1 && g.conv) throw std::invalid_argument(where + ": BatchNorm1d after a convolution");
        if (bn2) {
          bo = &bn2->options;
          gw = bn2->weight, gb = bn2->bias, mean = bn2->running_mean, var = bn2->running_var;
        } else if (bn1) {
          bo = &bn1->options;
          gw = bn1->weight, gb = bn1->bias, mean = bn1->running_mean, var = bn1->running_var;
        }
        if (bo) {
          if (!bo->affine() || !bo->track_running_stats()) {
            throw std::invalid_argument(where +
                                        ": its batch norm must be affine and track running "
                                        "statistics to be folded");
          }
          eps = bo->eps();
          momentum = bo->momentum().value_or(0.1);
          ++i;
        }
      }
      if (!on_grid) out->push_back(ActivationQuant(o));
      out->push_back(FoldedLayer(o, g, w, b, gw, gb, mean, var, eps, momentum));
      if (i + 1 < n && model->ptr(i + 1)->as<torch::nn::ReLUImpl>()) {
        out->push_back(torch::nn::ReLU());
        ++i;
      }
      out->push_back(ActivationQuant(o));
      on_grid = true;
      after_kept = false;
    } else if (after_kept &&
               (m->as<torch::nn::BatchNorm2dImpl>() || m->as<torch::nn::BatchNorm1dImpl>())) {
      out->push_back(*(model->begin() + static_cast<std::ptrdiff_t>(i)));  // a kept layer's
    } else if (m->as<torch::nn::BatchNorm2dImpl>() || m->as<torch::nn::BatchNorm1dImpl>()) {
      throw std::invalid_argument(
          where +
          ": a batch norm that does not follow a Conv2d or Linear cannot be folded (build "
          "the network with pool_before_batchnorm = false)");
    } else if (auto* p = m->as<torch::nn::MaxPool2dImpl>()) {
      out->push_back(torch::nn::MaxPool2d(p->options));
    } else if (auto* f = m->as<torch::nn::FlattenImpl>()) {
      out->push_back(torch::nn::Flatten(f->options));
    } else if (auto* d = m->as<torch::nn::DropoutImpl>()) {
      out->push_back(torch::nn::Dropout(d->options));
    } else if (auto* r = m->as<torch::nn::ReLUImpl>()) {
      out->push_back(torch::nn::ReLU(r->options));
    } else {
      throw std::invalid_argument(where +
                                  ": not supported by quantization-aware training (known: "
                                  "Conv2d, Linear, BatchNorm after them, ReLU, MaxPool2d, "
                                  "Flatten, Dropout)");
    }
  }
  return out;
}

// ---- integer parameters
// --------------------------------------------------------------------------

std::vector<LayerIntegerParameters> integer_parameters(torch::nn::Sequential& prepared) {
  std::vector<LayerIntegerParameters> layers;
  TensorQuantization current;  // bits 0: a float network input
  int64_t waiting = -1;        // the layer whose output quantization comes next
  for (size_t i = 0; i < prepared->size(); ++i) {
    const auto m = prepared->ptr(i);
    if (auto* a = m->as<ActivationQuantImpl>()) {
      current = a->quantization();
      if (waiting >= 0) layers[waiting].output = current;
      waiting = -1;
    } else if (auto* f = m->as<FoldedLayerImpl>()) {
      LayerIntegerParameters p;
      p.name = std::to_string(i);
      p.type = f->geometry.conv ? "conv2d" : "linear";
      p.input = current;
      p.weight = f->weight_quantization();
      p.bias = f->bias_quantization();
      if (f->options.scheme == Scheme::kAffine && (f->has_batchnorm() || f->bias.defined()) &&
          p.input.bits > 0) {
        // TF's conversion: an int32 bias with the accumulator's scale.
        p.bias.bits = 32;
        p.bias.scale = p.input.scale * p.weight.scale;
        p.bias.qmin = -(int64_t{1} << 31);
        p.bias.qmax = (int64_t{1} << 31) - 1;
        p.bias.min = p.bias.qmin * p.bias.scale;
        p.bias.max = p.bias.qmax * p.bias.scale;
      }
      current = {};
      layers.push_back(p);
      waiting = static_cast<int64_t>(layers.size()) - 1;
    } else if (m->as<torch::nn::ReLUImpl>() && waiting >= 0) {
      layers[waiting].relu = true;
    } else if (m->as<nn::QuantConv2dImpl>() || m->as<nn::QuantLinearImpl>() ||
               m->as<torch::nn::BatchNorm2dImpl>() || m->as<torch::nn::BatchNorm1dImpl>()) {
      current = {};  // a kept quantized layer (or its batch norm): float values again
      waiting = -1;
    }
  }
  return layers;
}

std::string integer_parameters_json(const std::vector<LayerIntegerParameters>& layers,
                                    Scheme scheme) {
  std::ostringstream s;
  s << std::setprecision(10);
  s << "{\"scheme\": \"" << scheme_name(scheme) << "\", \"layers\": [";
  for (size_t i = 0; i < layers.size(); ++i) {
    const auto& l = layers[i];
    s << (i ? ",\n  " : "\n  ") << "{\"name\": \"" << l.name << "\", \"type\": \"" << l.type
      << "\", \"relu\": " << (l.relu ? "true" : "false") << ", ";
    json_tensor(s, "input", l.input, scheme);
    s << ", ";
    json_tensor(s, "weight", l.weight, scheme);
    s << ", ";
    json_tensor(s, "bias", l.bias, scheme);
    s << ", ";
    json_tensor(s, "output", l.output, scheme);
    s << "}";
  }
  s << "\n]}\n";
  return s.str();
}

}  // namespace qat
}  // namespace lowbit

namespace {

// QatOptions' defaults as JSON: Python's lowbit.qat.QatOptions takes its defaults from here.
std::string qat_defaults_op() {
  const lowbit::qat::QatOptions o;
  std::ostringstream j;
  j << std::setprecision(17) << "{\"scheme\": \"" << lowbit::qat::scheme_name(o.scheme)
    << "\", \"weight_bits\": " << o.weight_bits << ", \"activation_bits\": " << o.activation_bits
    << ", \"bias_bits\": " << o.bias_bits << ", \"max_exponent\": " << o.max_exponent
    << ", \"ema_decay\": " << o.ema_decay << ", \"quant_delay\": " << o.quant_delay
    << ", \"freeze_bn_delay\": " << o.freeze_bn_delay
    << ", \"quantize_input\": " << (o.quantize_input ? "true" : "false")
    << ", \"per_channel\": " << (o.per_channel ? "true" : "false") << "}";
  return j.str();
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(lowbit, m) { m.def("_qat_defaults() -> str", &qat_defaults_op); }
