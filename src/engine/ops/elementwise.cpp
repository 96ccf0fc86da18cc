// Element-wise operators: unary functions, arithmetic with broadcast constants, comparisons,
// Clip and Where (the standard format's sign), and the grids they keep.
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>

#include "../lower.h"

namespace lowbit {
namespace engine {
namespace detail {
namespace {

using elementwise::Binary;
using elementwise::Unary;

void lower_relu(Node& d) {
  d.unary(Unary::relu);
  // min(max(v, 0), inf) is v < 0 ? 0 : v, NaN and -0 included.
  if (d.fuse_clamp(0.0f, std::numeric_limits<float>::infinity())) return;
  const Grid& g = d.in[0]->grid;
  if (g.on && !d.in[0]->constant && g.scale.size() == 1 && g.scale[0] > 0) {
    d.out.grid = g;  // negative values become the zero's code
    d.out.grid.lo = std::max<int64_t>(g.lo, static_cast<int64_t>(g.zero));
    d.out.grid.hi = std::max(d.out.grid.lo, g.hi);
  }
}

void lower_sign(Node& d) { d.unary(Unary::sign); }

void lower_round(Node& d) { d.unary(Unary::round); }

void lower_floor(Node& d) { d.unary(Unary::floor); }

void lower_ceil(Node& d) { d.unary(Unary::ceil); }

void lower_abs(Node& d) { d.unary(Unary::abs); }

void lower_identity(Node& d) {
  d.unary(Unary::copy);
  d.out.grid = d.in[0]->grid;
}

// Values are held as floats: casts to floating types keep them, casts of constants (shape
// arithmetic) to integers truncate and to booleans test for nonzero.
void lower_cast(Node& d) {
  const int64_t to = d.a.i("to", 0);
  const bool floating = to == onnx::TensorProto::FLOAT || to == onnx::TensorProto::DOUBLE;
  const bool integer = to == onnx::TensorProto::INT8 || to == onnx::TensorProto::UINT8 ||
                       to == onnx::TensorProto::INT16 || to == onnx::TensorProto::UINT16 ||
                       to == onnx::TensorProto::INT32 || to == onnx::TensorProto::UINT32 ||
                       to == onnx::TensorProto::INT64 || to == onnx::TensorProto::UINT64;
  const bool constant = !d.in.empty() && d.in[0] && d.in[0]->constant;
  if (!floating && !((integer || to == onnx::TensorProto::BOOL) && constant))
    bad(d.where, "attribute to = " + std::to_string(to) +
                     ": activations cast to float or double only, constants also to integers "
                     "and bool");
  if (integer) {
    d.unary(Unary::trunc);
  } else if (to == onnx::TensorProto::BOOL) {
    d.unary(Unary::nonzero);
  } else {
    d.unary(Unary::copy);  // booleans are already 0 / 1
  }
}

void lower_add(Node& d) { d.binary(Binary::add); }

void lower_sub(Node& d) { d.binary(Binary::sub); }

void lower_mul(Node& d) {
  if (d.p.planes_scalar(d.n)) {  // bit planes stay planes, the factor recorded
    d.p.planes_scaled(d.in, d.out, d.s, '*');
    return;
  }
  d.binary(Binary::mul);
  scale_grid(d.in, d.out, false);
}

void lower_div(Node& d) {
  if (d.p.planes_scalar(d.n)) {  // bit planes stay planes, the factor recorded
    d.p.planes_scaled(d.in, d.out, d.s, '/');
    return;
  }
  d.binary(Binary::div);
  scale_grid(d.in, d.out, true);
}

void lower_greater_or_equal(Node& d) {
  d.binary(Binary::ge);
  if (!d.in[0]->constant && d.in[1]->constant && d.in[1]->data.size() == 1 &&
      d.in[1]->data[0] == 0) {
    d.out.ge_zero = true;
    if (d.in[0]->chain) {
      auto chain = std::make_shared<SumChain>(*d.in[0]->chain);
      chain->steps.push_back(d.p.steps.size());
      chain->names.push_back(d.n.output(0));
      d.out.sign_chain = chain;
    }
  }
}

void lower_greater(Node& d) { d.binary(Binary::gt); }

// Clip: bounds as inputs from opset 11, as attributes (default ±FLT_MAX) before.
void lower_clip(Node& d) {
  d.arity(1, 3);
  const bool attributes = d.p.opset < 11;
  const float big = std::numeric_limits<float>::max(), inf = std::numeric_limits<float>::infinity();
  const float lo = attributes                   ? d.a.f("min", -big)
                   : d.in.size() > 1 && d.in[1] ? d.scalar(1, "min")
                                                : -inf;
  const float hi = attributes                   ? d.a.f("max", big)
                   : d.in.size() > 2 && d.in[2] ? d.scalar(2, "max")
                                                : inf;
  d.in.resize(1);
  d.unary(Unary::clamp, lo, hi);
  d.fuse_clamp(lo, hi);
}

void lower_where(Node& d) {
  d.arity(3, 3);
  const Value& cond = *d.in[0];
  if (cond.constant || !d.in[1]->constant || !d.in[2]->constant || d.in[1]->data.size() != 1 ||
      d.in[2]->data.size() != 1) {
    bad(d.where, "only Where(activation, scalar, scalar) is supported");
  }
  const float t = d.in[1]->data[0], f = d.in[2]->data[0];
  d.in.resize(1);
  d.unary(Unary::select, t, f);
  if (cond.ge_zero && t == 1.0f && f == -1.0f) {  // the sign, as BipolarQuant's
    d.out.bipolar = true;
    if (cond.sign_chain && d.p.fuse(*cond.sign_chain, d.fused_into)) {
      d.fused = d.out.packed = true;
      d.out.packed_chw = cond.sign_chain->chw;
    } else if (cond.dims.size() == 4 && d.p.read_packed_everywhere(d.n.output(0), cond.dims)) {
      // Only binary layers, pads of ±1, max-pools and Flatten read it: packed at once (the
      // condition 0 is -1).
      d.p.pack_signs(d.s, cond, d.out, true);
    }
  }
}

// Min, Max, Sum and Mean are variadic in ONNX; one input is the identity, two are supported.
void variadic(Node& d, Binary f) {
  if (d.in.size() == 1) {
    d.unary(Unary::copy);
    return;
  }
  if (d.in.size() != 2) bad(d.where, "more than 2 inputs are not supported");
  d.binary(f);
}

void lower_min(Node& d) {  // NaN propagates, as in onnxruntime
  variadic(d, Binary::min);
}

void lower_max(Node& d) { variadic(d, Binary::max); }

void lower_sum(Node& d) { variadic(d, Binary::add); }

void lower_mean(Node& d) { variadic(d, Binary::mean); }

void lower_pow(Node& d) { d.binary(Binary::pow); }

}  // namespace

const std::vector<OpLowering>& elementwise_ops() {
  static const std::vector<OpLowering> ops = {
      {"Relu", lower_relu},         {"Sign", lower_sign},
      {"Round", lower_round},       {"Floor", lower_floor},
      {"Ceil", lower_ceil},         {"Abs", lower_abs},
      {"Identity", lower_identity}, {"Cast", lower_cast},
      {"Add", lower_add},           {"Min", lower_min},
      {"Max", lower_max},           {"Sum", lower_sum},
      {"Mean", lower_mean},         {"Pow", lower_pow},
      {"Sub", lower_sub},           {"Mul", lower_mul},
      {"Div", lower_div},           {"GreaterOrEqual", lower_greater_or_equal},
      {"Greater", lower_greater},   {"Clip", lower_clip},
      {"Where", lower_where},
  };
  return ops;
}

}  // namespace detail
}  // namespace engine
}  // namespace lowbit
