// The ONNX graph builder and the translation of lowbit's modules to ONNX nodes in both formats,
// shared by the export of checkpoints (onnx_export.cpp) and of traced PyTorch graphs
// (graph_export.cpp); docs/export.md says what each node means. Private to src/export.
#pragma once

#include <onnx/onnx_pb.h>
#include <torch/torch.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "lowbit/export.h"
#include "lowbit/network.h"
#include "lowbit/nn.h"
#include "lowbit/qat.h"

namespace lowbit {
namespace exporter {
namespace detail {

constexpr int64_t kOpset = 13;
constexpr const char* kQonnxDomain = "qonnx.custom_op.general";

[[noreturn]] inline void fail(const std::string& where, const std::string& what) {
  throw std::invalid_argument("cannot export module " + where + ": " + what);
}

// ---- the graph builder --------------------------------------------------------------------------

class Graph {
 public:
  explicit Graph(onnx::GraphProto* graph) : graph_(graph) {}

  std::string unique(const std::string& hint) {
    const int n = used_[hint]++;
    return n == 0 ? hint : hint + "_" + std::to_string(n);
  }

  // A float32 / int8 / uint8 / int32 / int64 initializer holding t (made contiguous).
  std::string initializer(const std::string& hint, const at::Tensor& t) {
    const at::Tensor c = t.detach().cpu().contiguous();
    onnx::TensorProto* p = graph_->add_initializer();
    const std::string name = unique(hint);
    p->set_name(name);
    for (int64_t d : c.sizes()) p->add_dims(d);
    switch (c.scalar_type()) {
      case at::kFloat:
        p->set_data_type(onnx::TensorProto::FLOAT);
        break;
      case at::kChar:
        p->set_data_type(onnx::TensorProto::INT8);
        break;
      case at::kByte:
        p->set_data_type(onnx::TensorProto::UINT8);
        break;
      case at::kInt:
        p->set_data_type(onnx::TensorProto::INT32);
        break;
      case at::kLong:
        p->set_data_type(onnx::TensorProto::INT64);
        break;
      default:
        throw std::logic_error("export: unsupported initializer dtype");
    }
    p->set_raw_data(std::string(static_cast<const char*>(c.data_ptr()), c.nbytes()));
    return name;
  }

  // A 0-dim float constant, shared by every node that uses the same value.
  std::string scalar(float v) {
    uint32_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    auto it = scalars_.find(bits);
    if (it != scalars_.end()) return it->second;
    const std::string name = initializer("const", torch::tensor(v));
    scalars_[bits] = name;
    return name;
  }

  onnx::NodeProto* node(const std::string& op, const std::vector<std::string>& inputs,
                        const std::string& hint, const std::string& domain = "") {
    onnx::NodeProto* n = graph_->add_node();
    n->set_op_type(op);
    if (!domain.empty()) n->set_domain(domain);
    n->set_name(unique(hint + "/" + op));
    for (const auto& i : inputs) n->add_input(i);
    n->add_output(unique(hint + "/" + op + ".out"));
    return n;
  }
  // The node's single output.
  std::string op(const std::string& type, const std::vector<std::string>& inputs,
                 const std::string& hint, const std::string& domain = "") {
    return node(type, inputs, hint, domain)->output(0);
  }

  static void attr(onnx::NodeProto* n, const std::string& name, int64_t v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(v);
  }
  static void attr(onnx::NodeProto* n, const std::string& name, const std::string& v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::STRING);
    a->set_s(v);
  }
  static void attr(onnx::NodeProto* n, const std::string& name, const std::vector<int64_t>& v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INTS);
    for (int64_t x : v) a->add_ints(x);
  }

  bool uses_qonnx = false;

 private:
  onnx::GraphProto* graph_;
  std::map<std::string, int> used_;
  std::map<uint32_t, std::string> scalars_;
};

// A tensor of the graph, with its quantization when it lies on an integer grid (8-bit QAT), which
// the standard format's int32 biases need.
struct Value {
  std::string name;
  qat::TensorQuantization quantization;  // bits == 0: not quantized
};

// ---- quantizer options (the spec was checked when the model was built) -------------------------

inline bool is_sign(const std::string& name) {
  return name == "ste_sign" || name == "approx_sign" || name == "swish_sign";
}

// ---- the exporter -------------------------------------------------------------------------------

class Exporter {
 public:
  Exporter(Graph& g, Format format) : g_(g), format_(format) {}

  Value sequential(torch::nn::Sequential& seq, Value x, const std::string& prefix) {
    const size_t n = seq->size();
    for (size_t i = 0; i < n; ++i) {
      const std::string path = prefix + std::to_string(i);
      const std::shared_ptr<torch::nn::Module> m = seq->ptr(i);
      const std::shared_ptr<torch::nn::Module> next = i + 1 < n ? seq->ptr(i + 1) : nullptr;
      if (auto* conv = m->as<nn::QuantConv2dImpl>()) {
        const bool fold =
            next && next->as<torch::nn::BatchNorm2dImpl>() && conv->kernel_quantizer.is_empty();
        x = quant_conv(*conv, fold ? next.get() : nullptr, x, path);
        if (fold) ++i;
      } else if (auto* linear = m->as<nn::QuantLinearImpl>()) {
        const bool fold =
            next && next->as<torch::nn::BatchNorm1dImpl>() && linear->kernel_quantizer.is_empty();
        x = quant_linear(*linear, fold ? next.get() : nullptr, x, path);
        if (fold) ++i;
      } else if (m->as<torch::nn::BatchNorm2dImpl>() || m->as<torch::nn::BatchNorm1dImpl>()) {
        x = batch_norm(*m, x, path);
      } else if (m->as<torch::nn::ReLUImpl>()) {
        x.name = g_.op("Relu", {x.name}, path);  // keeps a grid: max(q, 0) is on it
      } else if (auto* pool = m->as<torch::nn::MaxPool2dImpl>()) {
        x.name = max_pool(*pool, x.name, path);
      } else if (auto* avg = m->as<torch::nn::AvgPool2dImpl>()) {
        x = Value{avg_pool(*avg, x.name, path), {}};  // an average leaves the grid
      } else if (auto* global = m->as<torch::nn::AdaptiveAvgPool2dImpl>()) {
        const auto size = global->options.output_size();
        if (!(*size)[0] || !(*size)[1] || *(*size)[0] != 1 || *(*size)[1] != 1) {
          fail(path, "AdaptiveAvgPool2d to another size than 1x1");
        }
        x = Value{g_.op("GlobalAveragePool", {x.name}, path), {}};
      } else if (auto* concat = m->as<nn::ConcatBlockImpl>()) {
        std::vector<std::string> parts;
        for (size_t b = 0; b < concat->branches.size(); ++b) {
          parts.push_back(
              sequential(concat->branches[b], x, path + "." + std::to_string(b) + ".").name);
        }
        auto* node = g_.node("Concat", parts, path);
        Graph::attr(node, "axis", int64_t{1});
        x = Value{node->output(0), {}};
      } else if (auto* flatten = m->as<torch::nn::FlattenImpl>()) {
        if (flatten->options.end_dim() != -1) fail(path, "Flatten with end_dim other than -1");
        auto* node = g_.node("Flatten", {x.name}, path);
        Graph::attr(node, "axis", flatten->options.start_dim());
        x.name = node->output(0);
      } else if (m->as<torch::nn::DropoutImpl>()) {
        // Identity in eval mode.
      } else if (auto* block = m->as<nn::ShortcutBlockImpl>()) {
        const Value body = sequential(block->body, x, path + ".body.");
        const Value shortcut =
            block->projection ? sequential(block->projection, x, path + ".projection.") : x;
        x = Value{g_.op("Add", {body.name, shortcut.name}, path), {}};
      } else if (auto* folded = m->as<qat::FoldedLayerImpl>()) {
        x = folded_layer(*folded, x, path);
      } else if (auto* act = m->as<qat::ActivationQuantImpl>()) {
        x = activation_quant(*act, x, path);
      } else {
        fail(path, "the format has no translation for " + m->name());
      }
    }
    return x;
  }

 public:
  bool qonnx() const { return format_ == Format::kQonnx; }

  // QONNX's Quant: y = (clamp(round(x / scale + zeropt), min_int, max_int) - zeropt) * scale.
  std::string quant(const std::string& x, const at::Tensor& scale, double zeropt, int64_t bits,
                    bool is_signed, bool narrow, const std::string& rounding,
                    const std::string& path) {
    return quant(x, scale, torch::tensor(static_cast<float>(zeropt)), bits, is_signed, narrow,
                 rounding, path);
  }
  std::string quant(const std::string& x, const at::Tensor& scale, const at::Tensor& zeropt,
                    int64_t bits, bool is_signed, bool narrow, const std::string& rounding,
                    const std::string& path) {
    g_.uses_qonnx = true;
    const std::string s =
        scale.dim() == 0 ? g_.scalar(scale.item<float>()) : g_.initializer(path + ".scale", scale);
    const std::string z = zeropt.dim() == 0 ? g_.scalar(zeropt.item<float>())
                                            : g_.initializer(path + ".zeropt", zeropt);
    auto* n = g_.node("Quant", {x, s, z, g_.scalar(static_cast<float>(bits))}, path, kQonnxDomain);
    Graph::attr(n, "signed", int64_t{is_signed});
    Graph::attr(n, "narrow", int64_t{narrow});
    Graph::attr(n, "rounding_mode", rounding);
    return n->output(0);
  }
  std::string quant(const std::string& x, double scale, double zeropt, int64_t bits, bool is_signed,
                    bool narrow, const std::string& rounding, const std::string& path) {
    return quant(x, torch::tensor(static_cast<float>(scale)), zeropt, bits, is_signed, narrow,
                 rounding, path);
  }
  std::string bipolar(const std::string& x, const at::Tensor& scale, const std::string& path) {
    g_.uses_qonnx = true;
    const std::string s =
        scale.dim() == 0 ? g_.scalar(scale.item<float>()) : g_.initializer(path + ".scale", scale);
    return g_.op("BipolarQuant", {x, s}, path, kQonnxDomain);
  }

  // sign0(x): +1 for x >= 0, else -1.
  std::string sign0(const std::string& x, const std::string& path) {
    if (qonnx()) return bipolar(x, torch::tensor(1.0f), path);
    const std::string ge = g_.op("GreaterOrEqual", {x, g_.scalar(0)}, path);
    return g_.op("Where", {ge, g_.scalar(1), g_.scalar(-1)}, path);
  }

  // The input quantizer of a layer, exactly as its operator computes it.
  std::string input_quantizer(const nn::Quantizer& q, const std::string& x,
                              const std::string& path) {
    if (q.is_empty()) return x;
    const nn::QuantizerSpec& s = q->spec();
    const std::string& name = s.name;
    const std::string where = path + " (input quantizer " + s.str() + ")";
    if (is_sign(name)) return sign0(x, path);
    if (name == "ste_heaviside") {  // 1 for x > 0, else 0
      if (qonnx()) return quant(x, 1.0, 0, 1, false, false, "CEIL", path);
      auto* cast = g_.node("Cast", {g_.op("Greater", {x, g_.scalar(0)}, path)}, path);
      Graph::attr(cast, "to", int64_t{onnx::TensorProto::FLOAT});
      return cast->output(0);
    }
    if (name == "ste_tern") {  // tfsign(tfsign(x + D) + tfsign(x - D))
      if (q->option("ternary_weight_networks").toBool()) {
        fail(where, "its threshold depends on the whole input tensor");
      }
      const float d = static_cast<float>(q->option("threshold_value").toDouble());
      const std::string hi = g_.op("Sign", {g_.op("Add", {x, g_.scalar(d)}, path)}, path);
      const std::string lo = g_.op("Sign", {g_.op("Sub", {x, g_.scalar(d)}, path)}, path);
      const std::string t = g_.op("Sign", {g_.op("Add", {hi, lo}, path)}, path);
      // The values are already -1, 0, +1; the Quant node says so.
      return qonnx() ? quant(t, 1.0, 0, 2, true, true, "ROUND", path) : t;
    }
    if (name == "dorefa") {  // half_even(clip(x, 0, 1) * n) / n
      if (q->option("mode").toStringRef() != "activations") {
        fail(where, "dorefa weights mode as an input quantizer");
      }
      const int64_t k = q->option("k_bit").toInt();
      const float n = static_cast<float>(std::ldexp(1.0, static_cast<int>(k)) - 1);
      const std::string scaled = g_.op("Mul", {x, g_.scalar(n)}, path);
      std::string levels;
      if (qonnx()) {
        levels = quant(scaled, 1.0, 0, k, false, false, "ROUND", path);  // the integer levels
      } else {
        levels = g_.op("Round", {g_.op("Clip", {scaled, g_.scalar(0), g_.scalar(n)}, path)}, path);
      }
      return g_.op("Div", {levels, g_.scalar(n)}, path);
    }
    if (name == "linear_mid_tread_half") {  // floor(clip(x, 0, m) / m * n + 0.5) / n * m
      const int64_t bit = q->option("bit").toInt();
      const float m = static_cast<float>(q->option("max_value").toDouble());
      if (bit == 32) return g_.op("Clip", {x, g_.scalar(0), g_.scalar(m)}, path);
      const float n = static_cast<float>(std::ldexp(1.0, static_cast<int>(bit)) - 1);
      const std::string scaled =
          g_.op("Mul", {g_.op("Div", {x, g_.scalar(m)}, path), g_.scalar(n)}, path);
      std::string levels;
      if (qonnx()) {  // on non-negative values HALF_UP is floor(v + 0.5)
        levels = quant(scaled, 1.0, 0, bit, false, false, "HALF_UP", path);
      } else {
        const std::string c = g_.op("Clip", {scaled, g_.scalar(0), g_.scalar(n)}, path);
        levels = g_.op("Floor", {g_.op("Add", {c, g_.scalar(0.5f)}, path)}, path);
      }
      return g_.op("Mul", {g_.op("Div", {levels, g_.scalar(n)}, path), g_.scalar(m)}, path);
    }
    fail(where,
         "its scale or threshold depends on the whole input tensor; as an input quantizer "
         "only ste_sign, approx_sign, swish_sign, ste_heaviside, ste_tern, dorefa and "
         "linear_mid_tread_half are exported");
  }

  // The scale of a binary kernel q = s * sign(w): one value, or one per output channel.
  static at::Tensor binary_scale(const at::Tensor& q, const std::string& where) {
    const at::Tensor a = q.abs();
    const at::Tensor first = a.reshape({-1})[0];
    if (torch::equal(a, first.expand_as(a))) return first.clone();
    const at::Tensor rows = a.reshape({a.size(0), -1});
    const at::Tensor per = rows.select(1, 0);
    if (!torch::equal(rows, per.unsqueeze(1).expand_as(rows))) {
      fail(where, "its kernel is not a per-output-channel scaled sign (axis other than 0?)");
    }
    std::vector<int64_t> shape(q.dim(), 1);
    shape[0] = q.size(0);
    return per.reshape(shape).clone();
  }

  // The signs of a binary kernel q (+1 where q >= 0, else -1) at one bit each: the bits of q in
  // row-major order (1 for -1), least significant first, 8 to a uint8 initializer, turned back
  // into the float ±1 tensor of q's shape by standard operators on exact small integers:
  //   bit k of byte b = floor(b / 2^k) - 2 floor(b / 2^(k+1)),  sign = 1 - 2 bit.
  // Any ONNX runtime folds them to the same constant; the file holds about 1 bit per weight.
  std::string packed_signs(const at::Tensor& q, const std::string& path) {
    const at::Tensor neg = q.detach().cpu().contiguous().reshape({-1}).signbit();
    const int64_t n = neg.numel(), bytes = (n + 7) / 8;
    at::Tensor packed = torch::zeros({bytes}, torch::kByte);
    const auto* b = neg.data_ptr<bool>();
    auto* out = packed.data_ptr<uint8_t>();
    for (int64_t i = 0; i < n; ++i)
      if (b[i]) out[i / 8] = static_cast<uint8_t>(out[i / 8] | (1u << (i % 8)));
    std::vector<float> low(8), high(8);
    for (int k = 0; k < 8; ++k) low[k] = std::ldexp(1.0f, k), high[k] = std::ldexp(1.0f, k + 1);
    const std::string w = path + ".weight";
    auto* cast = g_.node("Cast", {g_.initializer(w + ".bits", packed)}, w);
    Graph::attr(cast, "to", int64_t{onnx::TensorProto::FLOAT});
    const std::string column = g_.op(
        "Reshape",
        {cast->output(0), g_.initializer(w + ".column", torch::tensor({bytes, int64_t{1}}))}, w);
    auto floor_div = [&](const std::vector<float>& d, const std::string& hint) {
      return g_.op("Floor", {g_.op("Div", {column, g_.initializer(hint, torch::tensor(d))}, w)}, w);
    };
    const std::string bit = g_.op(
        "Sub",
        {floor_div(low, w + ".low"), g_.op("Mul", {floor_div(high, w + ".high"), g_.scalar(2)}, w)},
        w);
    const std::string sign = g_.op("Sub", {g_.scalar(1), g_.op("Mul", {bit, g_.scalar(2)}, w)}, w);
    std::string flat =
        g_.op("Reshape", {sign, g_.initializer(w + ".flat", torch::tensor({bytes * 8}))}, w);
    if (bytes * 8 != n) {  // the last byte's padding bits
      flat = g_.op("Slice",
                   {flat, g_.initializer(w + ".start", torch::tensor({int64_t{0}})),
                    g_.initializer(w + ".end", torch::tensor({n}))},
                   w);
    }
    return g_.op("Reshape", {flat, g_.initializer(w + ".shape", torch::tensor(q.sizes().vec()))},
                 w);
  }

  // Quantized weights q = (k - zero) * scale with signed 8-bit codes k: stored as the codes (a byte
  // per weight, `<layer>.weight.codes`) turned back into q by Cast, Sub zero and Mul scale (the
  // ones that are not identities), which is checked to give q exactly in float32; else q as
  // float32.
  std::string weight_values(const at::Tensor& q, double scale, double zero,
                            const std::string& path) {
    return weight_values(q, torch::tensor(static_cast<float>(scale)),
                         torch::tensor(static_cast<float>(zero)), path);
  }
  // The same with a scale and zero point per output channel (tensors shaped to broadcast).
  std::string weight_values(const at::Tensor& q, const at::Tensor& scale, const at::Tensor& zero,
                            const std::string& path) {
    const at::Tensor qf = q.detach().cpu().to(torch::kFloat).contiguous();
    const at::Tensor s = scale.to(torch::kFloat), z = zero.to(torch::kFloat);
    const at::Tensor k = (qf.to(torch::kDouble) / s.to(torch::kDouble)).round() + z;
    const bool in_range = qf.numel() > 0 && torch::isfinite(qf).all().item<bool>() &&
                          k.min().item<double>() >= -128 && k.max().item<double>() <= 127 &&
                          torch::equal(z, z.round()) && torch::isfinite(s).all().item<bool>() &&
                          (s > 0).all().item<bool>();
    if (!in_range) return g_.initializer(path + ".weight", q);
    const bool has_zero = (z != 0).any().item<bool>(), has_scale = (s != 1).any().item<bool>();
    at::Tensor decoded = k.to(torch::kFloat);
    if (has_zero) decoded = decoded - z;
    if (has_scale) decoded = decoded * s;
    if (!torch::equal(decoded, qf)) return g_.initializer(path + ".weight", q);
    const std::string w = path + ".weight";
    auto constant = [&](const at::Tensor& t, const std::string& hint) {
      return t.dim() == 0 ? g_.scalar(t.item<float>()) : g_.initializer(w + hint, t);
    };
    auto* cast = g_.node("Cast", {g_.initializer(w + ".codes", k.to(torch::kChar))}, w);
    Graph::attr(cast, "to", int64_t{onnx::TensorProto::FLOAT});
    std::string v = cast->output(0);
    if (has_zero) v = g_.op("Sub", {v, constant(z, ".zero_point")}, w);
    if (has_scale) v = g_.op("Mul", {v, constant(s, ".scale")}, w);
    return v;
  }

  // The quantized kernel q (exactly the forward's) as an initializer, followed in QONNX by the
  // node that describes its grid (applied to q it gives q back). Binary kernels (s * sign per
  // output channel) are stored as packed signs (1 bit per weight) times their scale.
  std::string kernel(const nn::QuantLayer& layer, const at::Tensor& q, const std::string& path) {
    if (!layer.kernel_quantizer.is_empty()) {
      const nn::QuantizerSpec& s = layer.kernel_quantizer->spec();
      const std::string where = path + " (kernel quantizer " + s.str() + ")";
      const bool scaled = s.name == "magnitude_aware_sign" ||
                          s.name == "binary_channel_wise_mean_scaling" ||
                          s.name == "binary_mean_scaling";
      if (is_sign(s.name) || scaled) {
        const std::string signs = packed_signs(q, path);
        const at::Tensor scale = scaled ? binary_scale(q, where) : torch::tensor(1.0f);
        if (qonnx()) return bipolar(signs, scale, path + ".weight");
        if (!scaled) return signs;
        const std::string sc = scale.dim() == 0 ? g_.scalar(scale.item<float>())
                                                : g_.initializer(path + ".weight.scale", scale);
        return g_.op("Mul", {signs, sc}, path + ".weight");
      }
    }
    // Ternary kernels: codes of a byte, times their one scale (both formats).
    if (!layer.kernel_quantizer.is_empty()) {
      const std::string& tname = layer.kernel_quantizer->spec().name;
      if (tname == "ste_tern" || tname == "twn_weight") {
        const double a = tname == "ste_tern" ? 1.0 : q.abs().max().item<double>();
        const std::string w = weight_values(q, a > 0 ? a : 1.0, 0.0, path);
        if (!qonnx()) return w;
        return quant(w, a > 0 ? a : 1.0, 0, 2, true, true, "ROUND", path + ".weight");
      }
    }
    const std::string w = g_.initializer(path + ".weight", q);
    if (layer.kernel_quantizer.is_empty() || !qonnx()) return w;
    const nn::QuantizerSpec& s = layer.kernel_quantizer->spec();
    const std::string where = path + " (kernel quantizer " + s.str() + ")";
    const std::string& name = s.name;
    if (name == "dorefa" && layer.kernel_quantizer->option("mode").toStringRef() == "weights") {
      // 2j / n - 1 for the levels j in [0, n]: scale 2 / n, zero point n / 2.
      const int64_t k = layer.kernel_quantizer->option("k_bit").toInt();
      const double n = std::ldexp(1.0, static_cast<int>(k)) - 1;
      return quant(w, 2.0 / n, n / 2.0, k, false, false, "ROUND", path + ".weight");
    }
    if (name == "ttq_weight") {
      fail(where, "its two ternary scales have no QONNX Quant form; export with --format standard");
    }
    fail(where, "this kernel quantizer has no QONNX form");
  }

  // Batch norm in eval mode as y = x * alpha + beta, alpha and beta computed as LibTorch's CPU
  // kernel does (alpha = weight / sqrt(var + eps), beta = bias - mean * alpha, in float).
  static std::pair<at::Tensor, at::Tensor> bn_terms(torch::nn::Module& m, const std::string& path) {
    at::Tensor weight, bias, mean, var;
    double eps = 1e-5;
    auto take = [&](const auto& o, auto* bn) {
      if (!o.track_running_stats()) fail(path, "batch norm without running statistics");
      eps = o.eps();
      weight = bn->weight;
      bias = bn->bias;
      mean = bn->running_mean;
      var = bn->running_var;
    };
    if (auto* b2 = m.as<torch::nn::BatchNorm2dImpl>()) take(b2->options, b2);
    if (auto* b1 = m.as<torch::nn::BatchNorm1dImpl>()) take(b1->options, b1);
    mean = mean.to(torch::kFloat);
    var = var.to(torch::kFloat);
    const at::Tensor invstd = 1.0f / (var + static_cast<float>(eps)).sqrt();
    const at::Tensor alpha = weight.defined() ? invstd * weight.detach() : invstd;
    const at::Tensor beta =
        (bias.defined() ? bias.detach() : torch::zeros_like(mean)) - mean * alpha;
    return {alpha, beta};
  }

  Value batch_norm(torch::nn::Module& m, const Value& x, const std::string& path) {
    const auto [alpha, beta] = bn_terms(m, path);
    const bool conv = m.as<torch::nn::BatchNorm2dImpl>() != nullptr;
    const std::vector<int64_t> shape =
        conv ? std::vector<int64_t>{1, -1, 1, 1} : std::vector<int64_t>{1, -1};
    const std::string y =
        g_.op("Mul", {x.name, g_.initializer(path + ".bn_scale", alpha.reshape(shape))}, path);
    return Value{g_.op("Add", {y, g_.initializer(path + ".bn_shift", beta.reshape(shape))}, path),
                 {}};
  }

  std::string max_pool(torch::nn::MaxPool2dImpl& pool, const std::string& x,
                       const std::string& path) {
    const auto& o = pool.options;
    const auto k = *o.kernel_size(), s = *o.stride(), p = *o.padding(), d = *o.dilation();
    auto* n = g_.node("MaxPool", {x}, path);
    Graph::attr(n, "kernel_shape", std::vector<int64_t>{k[0], k[1]});
    Graph::attr(n, "strides", std::vector<int64_t>{s[0], s[1]});
    Graph::attr(n, "pads", std::vector<int64_t>{p[0], p[1], p[0], p[1]});
    Graph::attr(n, "dilations", std::vector<int64_t>{d[0], d[1]});
    Graph::attr(n, "ceil_mode", int64_t{o.ceil_mode()});
    return n->output(0);
  }

  std::string avg_pool(torch::nn::AvgPool2dImpl& pool, const std::string& x,
                       const std::string& path) {
    const auto& o = pool.options;
    if (o.ceil_mode() || o.divisor_override()) fail(path, "AvgPool2d with ceil_mode or a divisor");
    const auto k = *o.kernel_size(), s = *o.stride(), p = *o.padding();
    auto* n = g_.node("AveragePool", {x}, path);
    Graph::attr(n, "kernel_shape", std::vector<int64_t>{k[0], k[1]});
    Graph::attr(n, "strides", std::vector<int64_t>{s[0], s[1]});
    Graph::attr(n, "pads", std::vector<int64_t>{p[0], p[1], p[0], p[1]});
    // PyTorch counts the zero padding in the average by default; ONNX does not unless told.
    Graph::attr(n, "count_include_pad", int64_t{o.count_include_pad() ? 1 : 0});
    return n->output(0);
  }

  // Folds batch norm into a float layer: w * alpha per output channel, bias * alpha + beta.
  static void fold(torch::nn::Module* bn, at::Tensor& w, at::Tensor& b, const std::string& path) {
    if (!bn) return;
    const auto [alpha, beta] = bn_terms(*bn, path);
    std::vector<int64_t> shape(w.dim(), 1);
    shape[0] = -1;
    w = w * alpha.reshape(shape);
    b = b.defined() ? b.detach() * alpha + beta : beta;
  }

  Value quant_conv(nn::QuantConv2dImpl& conv, torch::nn::Module* bn, const Value& in,
                   const std::string& path) {
    const auto& o = conv.options;
    const std::string x = input_quantizer(conv.input_quantizer, in.name, path);
    at::Tensor w = conv.quantized_kernel().detach();
    at::Tensor b = conv.bias.defined() ? conv.bias.detach() : at::Tensor();
    fold(bn, w, b, path);
    const auto pad = *o.padding();
    std::string padded = x;
    std::vector<int64_t> pads{pad[0], pad[1], pad[0], pad[1]};
    if ((pad[0] != 0 || pad[1] != 0) && o.pad_values() != 0.0) {
      // Padded after quantization with pad_values (+1 keeps binary inputs binary).
      const at::Tensor p = torch::tensor(
          {int64_t{0}, int64_t{0}, pad[0], pad[1], int64_t{0}, int64_t{0}, pad[0], pad[1]});
      padded = g_.op(
          "Pad",
          {x, g_.initializer(path + ".pads", p), g_.scalar(static_cast<float>(o.pad_values()))},
          path);
      pads = {0, 0, 0, 0};
    }
    std::vector<std::string> inputs{padded, kernel(conv, w, path)};
    if (b.defined()) inputs.push_back(g_.initializer(path + ".bias", b));
    auto* n = g_.node("Conv", inputs, path);
    const auto k = *o.kernel_size(), s = *o.stride(), d = *o.dilation();
    Graph::attr(n, "kernel_shape", std::vector<int64_t>{k[0], k[1]});
    Graph::attr(n, "strides", std::vector<int64_t>{s[0], s[1]});
    Graph::attr(n, "pads", pads);
    Graph::attr(n, "dilations", std::vector<int64_t>{d[0], d[1]});
    Graph::attr(n, "group", o.groups());
    return Value{n->output(0), {}};
  }

  Value quant_linear(nn::QuantLinearImpl& linear, torch::nn::Module* bn, const Value& in,
                     const std::string& path) {
    const std::string x = input_quantizer(linear.input_quantizer, in.name, path);
    at::Tensor w = linear.quantized_kernel().detach();
    at::Tensor b = linear.bias.defined() ? linear.bias.detach() : at::Tensor();
    fold(bn, w, b, path);
    std::vector<std::string> inputs{x, kernel(linear, w, path)};
    if (b.defined()) inputs.push_back(g_.initializer(path + ".bias", b));
    auto* n = g_.node("Gemm", inputs, path);
    Graph::attr(n, "transB", int64_t{1});
    return Value{n->output(0), {}};
  }

  // ---- quantization-aware training's modules

  Value activation_quant(qat::ActivationQuantImpl& a, const Value& x, const std::string& path) {
    if (!a.initialized()) return Value{x.name, {}};  // eval passes values through until observed
    const qat::TensorQuantization q = a.quantization();
    // Unsigned codes u in [0, 2^bits - 1] with zero point z: value = (u - z) * scale. For
    // power-of-2 grids u = q + 2^(bits-1), with which HALF_UP computes fake_quant_pow2's floor(v +
    // 0.5) exactly (with a signed zero point of 0, HALF_UP would round negative ties away from
    // zero).
    const int64_t z = q.qmin < 0 ? -q.qmin : q.zero_point;
    if (qonnx()) {
      return Value{
          quant(x.name, q.scale, static_cast<double>(z), q.bits, false, false, "HALF_UP", path), q};
    }
    // The fake quantization written out with standard operators in its own order, so exactly:
    // floor((clamp(x, min, max) - min) / scale - quant_zero + 0.5) * scale.
    std::string v = g_.op(
        "Clip",
        {x.name, g_.scalar(static_cast<float>(q.min)), g_.scalar(static_cast<float>(q.max))}, path);
    v = g_.op("Sub", {v, g_.scalar(static_cast<float>(q.min))}, path);
    v = g_.op("Div", {v, g_.scalar(static_cast<float>(q.scale))}, path);
    v = g_.op("Sub", {v, g_.scalar(static_cast<float>(z))}, path);  // quant_zero = z
    v = g_.op("Floor", {g_.op("Add", {v, g_.scalar(0.5f)}, path)}, path);
    v = g_.op("Mul", {v, g_.scalar(static_cast<float>(q.scale))}, path);
    if (q.bits != 8) return Value{v, q};
    // 8 bits: QuantizeLinear / DequantizeLinear mark the tensor as int8 (power-of-2, zero point
    // 0) or uint8 (affine). On values already on the grid they are exact; applied to the raw x,
    // QuantizeLinear's ties-to-even rounding would differ from fake quantization's ties-up.
    const std::string scale = g_.scalar(static_cast<float>(q.scale));
    const std::string zp =
        q.qmin < 0
            ? g_.initializer(path + ".zero_point", torch::tensor(int8_t{0}, torch::kChar))
            : g_.initializer(path + ".zero_point",
                             torch::tensor(static_cast<uint8_t>(q.zero_point), torch::kByte));
    const std::string codes = g_.op("QuantizeLinear", {v, scale, zp}, path);
    return Value{g_.op("DequantizeLinear", {codes, scale, zp}, path), q};
  }

  Value folded_layer(qat::FoldedLayerImpl& f, const Value& x, const std::string& path) {
    torch::NoGradGuard no_grad;
    const auto [w, b] = f.quantized_folded_parameters();
    const qat::TensorQuantization wq = f.weight_quantization();
    const qat::TensorQuantization bq = f.bias_quantization();
    const bool pow2 = f.options.scheme == qat::Scheme::kPow2;
    // An all-zero weight (or channel) has an empty range and scale 0; its codes are 0 on any grid,
    // so scale 1 describes it without dividing by zero.
    const double ws = wq.scale > 0 ? wq.scale : 1.0;
    std::string wname, bname;
    if (f.options.per_channel) {
      // A scale (and affine zero point) per output channel: codes as in the per-tensor case.
      std::vector<int64_t> shape(w.dim(), 1);
      shape[0] = -1;
      std::vector<float> scales, zeros;
      for (const auto& c : f.channel_weight_quantization()) {
        scales.push_back(static_cast<float>(c.scale > 0 ? c.scale : 1.0));
        zeros.push_back(pow2 ? 0.0f
                             : static_cast<float>(c.zero_point - (int64_t{1} << (c.bits - 1))));
      }
      const at::Tensor sc = torch::tensor(scales).reshape(shape),
                       zp = torch::tensor(zeros).reshape(shape);
      wname = wq.bits <= 8 ? weight_values(w, sc, zp, path) : g_.initializer(path + ".weight", w);
      if (qonnx()) wname = quant(wname, sc, zp, wq.bits, true, !pow2, "ROUND", path + ".weight");
      if (b.defined()) {
        bname = g_.initializer(path + ".bias", b);
        if (qonnx() && bq.bits > 0) {
          bname = quant(bname, bq.scale, 0, bq.bits, true, false, "ROUND", path + ".bias");
        }
      }
    } else if (qonnx()) {
      // Weights as signed codes: pow2 q * 2^-f; affine (narrow [1, 2^b - 1]) shifted by 2^(b-1).
      const double zp =
          pow2 ? 0.0 : static_cast<double>(wq.zero_point - (int64_t{1} << (wq.bits - 1)));
      wname = wq.bits <= 8 ? weight_values(w, ws, zp, path) : g_.initializer(path + ".weight", w);
      wname = quant(wname, ws, zp, wq.bits, true, !pow2, "ROUND", path + ".weight");
      if (b.defined()) {
        bname = g_.initializer(path + ".bias", b);
        if (bq.bits > 0) {
          bname = quant(bname, bq.scale, 0, bq.bits, true, false, "ROUND", path + ".bias");
        }
      }
    } else {
      if (wq.bits == 8) {
        const double offset = pow2 ? 0.0 : static_cast<double>(wq.zero_point - 128);
        const at::Tensor codes = (w.to(torch::kDouble) / ws).round().add(offset).to(torch::kChar);
        const std::string zp = g_.initializer(
            path + ".weight_zero_point", torch::tensor(static_cast<int8_t>(offset), torch::kChar));
        wname = g_.op(
            "DequantizeLinear",
            {g_.initializer(path + ".weight_q", codes), g_.scalar(static_cast<float>(ws)), zp},
            path + ".weight");
      } else {
        wname = g_.initializer(path + ".weight", w);
      }
      if (b.defined()) bname = int32_bias(b, x.quantization, wq, path);
    }
    std::vector<std::string> inputs{x.name, wname};
    if (!bname.empty()) inputs.push_back(bname);
    onnx::NodeProto* n;
    if (f.geometry.conv) {
      const auto& geo = f.geometry;
      const auto k = w.sizes();
      n = g_.node("Conv", inputs, path);
      Graph::attr(n, "kernel_shape", std::vector<int64_t>{k[2], k[3]});
      Graph::attr(n, "strides", geo.stride);
      Graph::attr(
          n, "pads",
          std::vector<int64_t>{geo.padding[0], geo.padding[1], geo.padding[0], geo.padding[1]});
      Graph::attr(n, "dilations", geo.dilation);
      Graph::attr(n, "group", geo.groups);
    } else {
      n = g_.node("Gemm", inputs, path);
      Graph::attr(n, "transB", int64_t{1});
    }
    return Value{n->output(0), {}};
  }

  // The standard format's bias as int32 codes that DequantizeLinear turns back into exactly the
  // bias the model adds: at the accumulator's scale (input scale x weight scale) where that is
  // exact, else at the coarsest power-of-2 scale that is (a power-of-2 bias with more fractional
  // bits than the accumulator, or the affine scheme's float bias); a float bias where no int32
  // code holds it or the input is not quantized.
  std::string int32_bias(const at::Tensor& b, const qat::TensorQuantization& xq,
                         const qat::TensorQuantization& wq, const std::string& path) {
    if (xq.bits == 0 || wq.bits != 8) return g_.initializer(path + ".bias", b);
    const at::Tensor bf = b.to(torch::kFloat);
    auto exact_codes = [&](double scale, at::Tensor& codes) {
      codes = (bf.to(torch::kDouble) / scale).round();
      if (codes.abs().max().item<double>() > std::numeric_limits<int32_t>::max()) return false;
      // DequantizeLinear computes float(code) * float(scale).
      return torch::equal(codes.to(torch::kInt).to(torch::kFloat) * static_cast<float>(scale), bf);
    };
    at::Tensor codes;
    double scale = xq.scale * wq.scale;
    bool found = exact_codes(scale, codes);
    for (int k = -40; !found && k <= 80; ++k) {
      scale = std::ldexp(1.0, -k);
      found = exact_codes(scale, codes);
    }
    if (!found) return g_.initializer(path + ".bias", b);
    const std::string zp =
        g_.initializer(path + ".bias_zero_point", torch::tensor(int32_t{0}, torch::kInt));
    return g_.op("DequantizeLinear",
                 {g_.initializer(path + ".bias_q", codes.to(torch::kInt)),
                  g_.scalar(static_cast<float>(scale)), zp},
                 path + ".bias");
  }

  Graph& g() { return g_; }

 private:
  Graph& g_;
  Format format_;
};

// A model's header (IR version, producer, doc string) and its graph, named model_name.
onnx::GraphProto* start_model(onnx::ModelProto& proto, const std::string& model_name,
                              const std::string& doc);
// A float32 graph input or output [batch, dims...] (the batch size left free).
void add_value_info(onnx::ValueInfoProto* v, const std::string& name,
                    const std::vector<int64_t>& dims);
// Adds the opsets and lowbit's metadata, runs ONNX's checker and serialises the model with its
// CRC-32 trailer.
std::string finish_model(onnx::ModelProto& proto, const Graph& g, Format format,
                         const std::string& model_name);

}  // namespace detail
}  // namespace exporter
}  // namespace lowbit
