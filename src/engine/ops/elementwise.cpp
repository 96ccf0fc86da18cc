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

void lower_relu(Node& d) {
  d.unary([](float v) { return v < 0 ? 0.0f : v; });
  const Grid& g = d.in[0]->grid;
  if (g.on && !d.in[0]->constant && g.scale.size() == 1 && g.scale[0] > 0) {
    d.out.grid = g;  // negative values become the zero's code
    d.out.grid.lo = std::max<int64_t>(g.lo, static_cast<int64_t>(g.zero));
    d.out.grid.hi = std::max(d.out.grid.lo, g.hi);
  }
}

void lower_sign(Node& d) {
  d.unary([](float v) { return v > 0 ? 1.0f : (v < 0 ? -1.0f : 0.0f); });
}

void lower_round(Node& d) {
  d.unary([](float v) { return std::nearbyint(v); });
}

void lower_floor(Node& d) {
  d.unary([](float v) { return std::floor(v); });
}

void lower_ceil(Node& d) {
  d.unary([](float v) { return std::ceil(v); });
}

void lower_abs(Node& d) {
  d.unary([](float v) { return std::fabs(v); });
}

void lower_identity(Node& d) {
  d.unary([](float v) { return v; });
  d.out.grid = d.in[0]->grid;
}

void lower_cast(Node& d) {
  if (d.a.i("to", 0) != onnx::TensorProto::FLOAT) bad(d.where, "only casts to float are supported");
  d.unary([](float v) { return v; });  // booleans are already 0 / 1
}

void lower_add(Node& d) {
  d.binary([](float p, float q) { return p + q; });
}

void lower_sub(Node& d) {
  d.binary([](float p, float q) { return p - q; });
}

void lower_mul(Node& d) {
  if (d.p.planes_scalar(d.n)) {  // bit planes stay planes, the factor recorded
    d.p.planes_scaled(d.in, d.out, d.s, '*');
    return;
  }
  d.binary([](float p, float q) { return p * q; });
  scale_grid(d.in, d.out, false);
}

void lower_div(Node& d) {
  if (d.p.planes_scalar(d.n)) {  // bit planes stay planes, the factor recorded
    d.p.planes_scaled(d.in, d.out, d.s, '/');
    return;
  }
  d.binary([](float p, float q) { return p / q; });
  scale_grid(d.in, d.out, true);
}

void lower_greater_or_equal(Node& d) {
  d.binary([](float p, float q) { return p >= q ? 1.0f : 0.0f; });
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

void lower_greater(Node& d) {
  d.binary([](float p, float q) { return p > q ? 1.0f : 0.0f; });
}

void lower_clip(Node& d) {
  d.arity(1, 3);
  const float lo =
      d.in.size() > 1 && d.in[1] ? d.scalar(1, "min") : -std::numeric_limits<float>::infinity();
  const float hi =
      d.in.size() > 2 && d.in[2] ? d.scalar(2, "max") : std::numeric_limits<float>::infinity();
  d.in.resize(1);
  d.unary([lo, hi](float v) { return std::min(std::max(v, lo), hi); });
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
  d.unary([t, f](float c) { return c != 0 ? t : f; });
  if (cond.ge_zero && t == 1.0f && f == -1.0f) {  // the sign, as BipolarQuant's
    d.out.bipolar = true;
    if (cond.sign_chain && d.p.fuse(*cond.sign_chain, d.fused_into)) {
      d.fused = d.out.packed = true;
      d.out.packed_chw = cond.sign_chain->chw;
    }
  }
}

}  // namespace

const std::vector<OpLowering>& elementwise_ops() {
  static const std::vector<OpLowering> ops = {
      {"Relu", lower_relu},
      {"Sign", lower_sign},
      {"Round", lower_round},
      {"Floor", lower_floor},
      {"Ceil", lower_ceil},
      {"Abs", lower_abs},
      {"Identity", lower_identity},
      {"Cast", lower_cast},
      {"Add", lower_add},
      {"Sub", lower_sub},
      {"Mul", lower_mul},
      {"Div", lower_div},
      {"GreaterOrEqual", lower_greater_or_equal},
      {"Greater", lower_greater},
      {"Clip", lower_clip},
      {"Where", lower_where},
  };
  return ops;
}

}  // namespace detail
}  // namespace engine
}  // namespace lowbit
