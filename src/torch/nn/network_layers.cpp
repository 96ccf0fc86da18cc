// Networks described layer by layer (NetworkOptions::layers): shapes followed through the list,
// quantizers resolved per layer, blocks built recursively.
#include <torch/torch.h>

#include <cmath>
#include <stdexcept>

#include "lowbit/catalogue.h"
#include "lowbit/network.h"

namespace lowbit {
namespace nn {
namespace {

// The shape of the values between layers: channels x height x width, or features (rank 1).
struct Shape {
  int64_t c = 0, h = 0, w = 0;
  bool flat = false;
  std::string str() const {
    return flat ? std::to_string(c) + " features"
                : std::to_string(c) + "x" + std::to_string(h) + "x" + std::to_string(w);
  }
  bool operator==(const Shape& o) const {
    return c == o.c && flat == o.flat && (flat || (h == o.h && w == o.w));
  }
};

[[noreturn]] void fail(const LayerSpec& l, const std::string& what) {
  throw std::invalid_argument(l.where + " (" + l.type + "): " + what);
}

bool quantizable(const LayerSpec& l) {
  return l.type == "conv" || l.type == "depthwise_conv" || l.type == "dense";
}

// The first and last quantizable layers, depth first.
void find_ends(const std::vector<LayerSpec>& layers, const LayerSpec** first,
               const LayerSpec** last) {
  for (const LayerSpec& l : layers) {
    if (quantizable(l)) {
      if (!*first) *first = &l;
      *last = &l;
    }
    find_ends(l.body, first, last);
    find_ends(l.shortcut, first, last);
    for (const auto& b : l.branches) find_ends(b, first, last);
  }
}

class Builder {
 public:
  explicit Builder(const NetworkOptions& o) : o_(o) { find_ends(o.layers, &first_, &last_); }

  torch::nn::Sequential build(const std::vector<LayerSpec>& layers, Shape& s) {
    torch::nn::Sequential seq;
    for (const LayerSpec& l : layers) add(seq, l, s);
    return seq;
  }

 private:
  // The quantizer spec of a layer for one role, with `bits` applied.
  std::string quantizer(const LayerSpec& l, const std::string& own, const std::string& network,
                        bool quantized) {
    if (!quantized) return "none";
    QuantizerSpec spec = QuantizerSpec::parse(own.empty() ? network : own);
    if (l.bits > 0 && spec.name != "none") {
      const QuantizerInfo& info = quantizer_info(spec.name);
      if (!info.bits_option.empty()) spec.options[info.bits_option] = std::to_string(l.bits);
    }
    return spec.str();
  }

  bool is_quantized(const LayerSpec& l) const {
    if (l.quantized >= 0) return l.quantized == 1;
    // A layer that names its quantizers or bits is quantized, first and last ones too.
    if (!l.input_quantizer.empty() || !l.kernel_quantizer.empty() || l.bits > 0) return true;
    if (&l == first_) return o_.quantize_first_convolution;
    if (&l == last_) return o_.quantize_last_convolution;
    return true;
  }

  // `bits` needs a quantizer that takes a bit width (k_bit or bit).
  void check_bits(const LayerSpec& l, const std::string& input, const std::string& kernel) {
    if (l.bits == 0) return;
    for (const std::string& s : {input, kernel}) {
      const QuantizerSpec spec = QuantizerSpec::parse(s);
      if (spec.name != "none" && !quantizer_info(spec.name).bits_option.empty()) return;
    }
    fail(l, "bits " + std::to_string(l.bits) + ": neither of its quantizers (" + input + ", " +
                kernel + ") takes a bit width");
  }

  template <class Options>
  void quantize(Options& opts, const LayerSpec& l) {
    const bool q = is_quantized(l);
    if (!q && (!l.input_quantizer.empty() || !l.kernel_quantizer.empty() || l.bits > 0)) {
      fail(l, "quantized: false with quantizers or bits given");
    }
    if (q) {
      check_bits(l, l.input_quantizer.empty() ? o_.input_quantizer : l.input_quantizer,
                 l.kernel_quantizer.empty() ? o_.kernel_quantizer : l.kernel_quantizer);
    }
    opts.input_quantizer(quantizer(l, l.input_quantizer, o_.input_quantizer, q));
    opts.kernel_quantizer(quantizer(l, l.kernel_quantizer, o_.kernel_quantizer, q));
    opts.kernel_constraint(
        q ? (l.kernel_constraint.empty() ? o_.kernel_constraint : l.kernel_constraint) : "none");
  }

  int64_t scaled(int64_t units) const {
    if (units < 1) return units;
    return std::max<int64_t>(1, std::llround(static_cast<double>(units) * o_.width_multiplier));
  }

  static int64_t out_size(int64_t in, int64_t k, int64_t s, int64_t p) {
    return (in + 2 * p - k) / s + 1;
  }

  void need_image(const LayerSpec& l, const Shape& s) {
    if (s.flat) fail(l, "needs an image (channels x height x width); its input is " + s.str());
  }

  void spatial(const LayerSpec& l, Shape& s, int64_t k, int64_t stride, int64_t pad) {
    if (k < 1 || stride < 1 || pad < 0) fail(l, "kernel and stride must be >= 1, padding >= 0");
    if (s.h + 2 * pad < k || s.w + 2 * pad < k) {
      fail(l, "its input " + s.str() + " (padding " + std::to_string(pad) +
                  ") is smaller than its " + std::to_string(k) + "x" + std::to_string(k) +
                  " window");
    }
    s.h = out_size(s.h, k, stride, pad);
    s.w = out_size(s.w, k, stride, pad);
  }

  void add(torch::nn::Sequential& seq, const LayerSpec& l, Shape& s) {
    const std::string& t = l.type;
    if (t == "conv" || t == "depthwise_conv") {
      need_image(l, s);
      const bool depthwise = t == "depthwise_conv";
      const int64_t out = depthwise ? s.c * std::max<int64_t>(l.units, 1) : scaled(l.units);
      if (out < 1) fail(l, "needs a positive number of filters");
      const int64_t stride = l.stride < 0 ? 1 : l.stride;
      const int64_t pad = l.padding < 0 ? l.kernel / 2 : l.padding;
      QuantConv2dOptions opts(s.c, out, l.kernel);
      opts.stride(stride).padding(pad).bias(l.bias).groups(depthwise ? s.c : 1);
      quantize(opts, l);
      opts.pad_values(is_quantized(l) ? l.pad_values.value_or(o_.pad_values) : 0.0);
      spatial(l, s, l.kernel, stride, pad);
      s.c = out;
      seq->push_back(QuantConv2d(opts));
    } else if (t == "dense") {
      if (!s.flat) fail(l, "needs features; its input is " + s.str() + ": put a flatten before it");
      const int64_t out = l.units == kClasses ? o_.num_classes : scaled(l.units);
      if (out < 1) fail(l, "needs a positive number of units");
      QuantLinearOptions opts(s.c, out);
      opts.bias(l.bias);
      quantize(opts, l);
      s.c = out;
      seq->push_back(QuantLinear(opts));
    } else if (t == "batch_norm") {
      if (s.flat) {
        seq->push_back(torch::nn::BatchNorm1d(s.c));
      } else {
        seq->push_back(torch::nn::BatchNorm2d(s.c));
      }
    } else if (t == "relu") {
      seq->push_back(torch::nn::ReLU());
    } else if (t == "max_pool" || t == "avg_pool") {
      need_image(l, s);
      const int64_t stride = l.stride < 0 ? l.kernel : l.stride;
      const int64_t pad = l.padding < 0 ? 0 : l.padding;
      if (2 * pad > l.kernel) fail(l, "padding must be at most half the window");
      spatial(l, s, l.kernel, stride, pad);
      if (t == "max_pool") {
        seq->push_back(torch::nn::MaxPool2d(
            torch::nn::MaxPool2dOptions(l.kernel).stride(stride).padding(pad)));
      } else {
        // Padding counts in the average as zeros, as ONNX's AveragePool's default does.
        seq->push_back(torch::nn::AvgPool2d(
            torch::nn::AvgPool2dOptions(l.kernel).stride(stride).padding(pad)));
      }
    } else if (t == "global_avg_pool") {
      need_image(l, s);
      seq->push_back(torch::nn::AdaptiveAvgPool2d(torch::nn::AdaptiveAvgPool2dOptions(1)));
      seq->push_back(torch::nn::Flatten());
      s.flat = true;
    } else if (t == "flatten") {
      if (!s.flat) {
        seq->push_back(torch::nn::Flatten());
        s.c = s.c * s.h * s.w;
        s.flat = true;
      }
    } else if (t == "dropout") {
      if (!(l.rate >= 0 && l.rate < 1)) fail(l, "rate must be in [0, 1)");
      seq->push_back(torch::nn::Dropout(l.rate));
    } else if (t == "residual") {
      if (l.body.empty()) fail(l, "needs a body");
      Shape body_shape = s, short_shape = s;
      auto body = build(l.body, body_shape);
      torch::nn::Sequential shortcut{nullptr};
      if (!l.shortcut.empty()) shortcut = build(l.shortcut, short_shape);
      if (!(body_shape == short_shape)) {
        fail(l, "its body gives " + body_shape.str() + " but its shortcut " +
                    (l.shortcut.empty() ? "(the identity) " : "") + "gives " + short_shape.str());
      }
      s = body_shape;
      seq->push_back(ShortcutBlock(body, shortcut));
    } else if (t == "concat") {
      if (l.branches.size() < 2) fail(l, "needs at least two branches");
      std::vector<torch::nn::Sequential> branches;
      Shape joined;
      for (size_t i = 0; i < l.branches.size(); ++i) {
        Shape b = s;
        branches.push_back(build(l.branches[i], b));
        if (i == 0) {
          joined = b;
        } else if (b.flat != joined.flat || (!b.flat && (b.h != joined.h || b.w != joined.w))) {
          fail(l, "branch " + std::to_string(i) + " gives " + b.str() + ", branch 0 " +
                      joined.str() + ": only the channels may differ");
        } else {
          joined.c += b.c;
        }
      }
      s = joined;
      seq->push_back(ConcatBlock(branches));
    } else {
      std::string known;
      for (const auto& k : layer_types()) known += (known.empty() ? "" : ", ") + k;
      fail(l, "unknown layer type (known: " + known + ")");
    }
  }

  const NetworkOptions& o_;
  const LayerSpec* first_ = nullptr;
  const LayerSpec* last_ = nullptr;
};

}  // namespace

const std::vector<std::string>& layer_types() {
  static const std::vector<std::string> types = {
      "conv",     "depthwise_conv",  "dense",   "batch_norm", "relu",     "max_pool",
      "avg_pool", "global_avg_pool", "flatten", "dropout",    "residual", "concat"};
  return types;
}

ConcatBlockImpl::ConcatBlockImpl(std::vector<torch::nn::Sequential> b) : branches(std::move(b)) {
  for (size_t i = 0; i < branches.size(); ++i) {
    register_module(std::to_string(i), branches[i]);
  }
}

at::Tensor ConcatBlockImpl::forward(const at::Tensor& x) {
  std::vector<at::Tensor> outs;
  for (auto& b : branches) outs.push_back(b->forward(x));
  return torch::cat(outs, 1);
}

torch::nn::Sequential build_layers(const NetworkOptions& o) {
  Builder builder(o);
  Shape s{o.in_channels, o.height, o.width, false};
  auto net = builder.build(o.layers, s);
  if (!s.flat || s.c != o.num_classes) {
    throw std::invalid_argument("layers: the network gives " + s.str() + ", not the " +
                                std::to_string(o.num_classes) +
                                " class scores (end with a dense layer of `classes` units)");
  }
  return net;
}

}  // namespace nn
}  // namespace lowbit
