// Activation functions and the other per-element or per-channel nodes of float networks: Sigmoid,
// Tanh, the hard and leaky variants, Softmax, BatchNormalization (inference), PRelu, Dropout
// (inference: the identity) and Constant.
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "../lower.h"

namespace lowbit {
namespace engine {
namespace detail {
namespace {

using elementwise::Binary;
using elementwise::Unary;

void lower_sigmoid(Node& d) { d.unary(Unary::sigmoid); }

void lower_tanh(Node& d) { d.unary(Unary::tanh); }

void lower_leaky_relu(Node& d) {
  const float alpha = d.a.f("alpha", 0.01f);
  d.unary(Unary::leaky_relu, alpha);
}

void lower_elu(Node& d) {
  const float alpha = d.a.f("alpha", 1.0f);
  d.unary(Unary::elu, alpha);
}

void lower_hard_sigmoid(Node& d) {
  const float alpha = d.a.f("alpha", 0.2f), beta = d.a.f("beta", 0.5f);
  d.unary(Unary::hard_sigmoid, alpha, beta);
}

void lower_hard_swish(Node& d) { d.unary(Unary::hard_swish); }

void lower_softplus(Node& d) { d.unary(Unary::softplus); }

void lower_neg(Node& d) { d.unary(Unary::neg); }

void lower_exp(Node& d) { d.unary(Unary::exp); }

void lower_sqrt(Node& d) { d.unary(Unary::sqrt); }

void lower_erf(Node& d) { d.unary(Unary::erf); }

void lower_prelu(Node& d) {  // slope broadcast to X (unidirectionally)
  d.binary(Binary::prelu);
}

// Inference: the identity (ratio and training_mode, where given, must not ask for training).
void lower_dropout(Node& d) {
  d.arity(1, 3);
  if (d.in.size() == 3 && d.in[2] &&
      (!d.in[2]->constant || d.in[2]->data.size() != 1 || d.in[2]->data[0] != 0))
    bad(d.where, "training_mode must be a constant false (the engine runs inference)");
  if (d.a.i("is_test", 1) == 0 && d.p.opset < 7)
    bad(d.where, "is_test 0 (training) is not supported");
  d.in.resize(1);
  d.unary(Unary::copy);
  d.out.grid = d.in[0]->grid;
}

// Softmax over `axis` (opset 13 on: that axis alone, default -1; before: the input flattened to 2-D
// at `axis`, default 1). The batch axis 0 is not an axis of one image.
void lower_softmax(Node& d) {
  d.arity(1, 1);
  const auto& dims = d.in[0]->dims;
  const int64_t rank = static_cast<int64_t>(dims.size());
  const bool v13 = d.p.opset >= 13;
  int64_t axis = d.a.i("axis", v13 ? -1 : 1);
  if (axis < -rank || axis >= rank)
    bad(d.where, "axis " + std::to_string(axis) + " is out of range");
  if (axis < 0) axis += rank;
  if (axis == 0 && !d.in[0]->constant)
    bad(d.where, "axis 0 is the batch: a softmax across images is not supported");
  const int64_t len = v13 ? dims[axis] : product(dims, axis);
  const int64_t inner = v13 ? product(dims, axis + 1) : 1;
  d.out.dims = dims;
  d.s.info.kernel = "softmax_f32";
  d.s.run = [len, inner](const std::vector<const float*>& xs, float* y, int64_t count) {
    const float* x = xs[0];
    for (int64_t start = 0; start < count; start += len * inner) {
      for (int64_t i = 0; i < inner; ++i) {
        const float* xi = x + start + i;
        float* yi = y + start + i;
        float top = -std::numeric_limits<float>::infinity();
        for (int64_t k = 0; k < len; ++k) top = std::max(top, xi[k * inner]);
        float sum = 0;
        for (int64_t k = 0; k < len; ++k) sum += (yi[k * inner] = std::exp(xi[k * inner] - top));
        for (int64_t k = 0; k < len; ++k) yi[k * inner] /= sum;
      }
    }
  };
}

// BatchNormalization in inference: (x - mean) / sqrt(var + epsilon) * scale + B per channel (the
// second dimension), as ONNX writes it.
void lower_batch_normalization(Node& d) {
  d.arity(5, 5);
  if (d.a.i("training_mode", 0) != 0) bad(d.where, "training_mode 1 is not supported");
  const auto& dims = d.in[0]->dims;
  if (dims.size() < 2) bad(d.where, "X must have a channel dimension");
  const int64_t channels = dims[1], inner = product(dims, 2);
  std::vector<float> c[4];
  const char* names[] = {"scale", "B", "input_mean", "input_var"};
  for (int k = 0; k < 4; ++k) {
    c[k] = d.constant(k + 1, names[k]).data;
    if (static_cast<int64_t>(c[k].size()) != channels)
      bad(d.where, std::string(names[k]) + " must hold " + std::to_string(channels) + " values");
  }
  const float eps = d.a.f("epsilon", 1e-5f);
  std::vector<float> root(channels);
  for (int64_t ch = 0; ch < channels; ++ch) root[ch] = std::sqrt(c[3][ch] + eps);
  d.out.dims = dims;
  d.s.info.kernel = "batchnorm_f32";
  d.s.info.parameter_bytes = static_cast<int64_t>(4 * channels * sizeof(float));
  const std::vector<float> scale = c[0], bias = c[1], mean = c[2];
  d.s.run = [=](const std::vector<const float*>& xs, float* y, int64_t count) {
    const float* x = xs[0];
    for (int64_t e0 = 0; e0 < count; e0 += inner) {
      const int64_t ch = (e0 / inner) % channels;
      for (int64_t e = e0; e < e0 + inner; ++e)
        y[e] = (x[e] - mean[ch]) / root[ch] * scale[ch] + bias[ch];
    }
  };
  d.in.resize(1);
}

// A constant from the node's attribute.
void lower_constant(Node& d) {
  d.arity(0, 0);
  if (d.n.attribute_size() != 1) bad(d.where, "must have exactly one value attribute");
  const onnx::AttributeProto& attr = d.n.attribute(0);
  Value& v = d.out;
  v.constant = true;
  const std::string& name = attr.name();
  if (name == "value") {
    v = d.p.read_initializer(attr.t());
    d.p.total_constant_elements -= static_cast<int64_t>(v.data.size());  // counted when added
  } else if (name == "value_float" || name == "value_int") {
    v.data = {name == "value_float" ? attr.f() : static_cast<float>(attr.i())};
  } else if (name == "value_floats") {
    v.data.assign(attr.floats().begin(), attr.floats().end());
    v.dims = {static_cast<int64_t>(v.data.size())};
  } else if (name == "value_ints") {
    for (int64_t i : attr.ints()) v.data.push_back(static_cast<float>(i));
    v.dims = {static_cast<int64_t>(v.data.size())};
  } else {
    bad(d.where, "attribute " + name + " is not supported (value, value_float(s), value_int(s))");
  }
}

}  // namespace

const std::vector<OpLowering>& activation_ops() {
  static const std::vector<OpLowering> ops = {
      {"Sigmoid", lower_sigmoid},
      {"Tanh", lower_tanh},
      {"LeakyRelu", lower_leaky_relu},
      {"Elu", lower_elu},
      {"HardSigmoid", lower_hard_sigmoid},
      {"HardSwish", lower_hard_swish},
      {"Softplus", lower_softplus},
      {"Neg", lower_neg},
      {"Exp", lower_exp},
      {"Sqrt", lower_sqrt},
      {"Erf", lower_erf},
      {"PRelu", lower_prelu},
      {"Dropout", lower_dropout},
      {"Softmax", lower_softmax},
      {"BatchNormalization", lower_batch_normalization},
      {"Constant", lower_constant},
  };
  return ops;
}

}  // namespace detail
}  // namespace engine
}  // namespace lowbit
