// The lowering of one node (internal): what an operator's entry in the op table receives (its
// inputs, attributes and the program) and fills in (the step that computes it, the value it makes).
// Each op family's file (ops/*.cpp) lists its operators; lower.cpp dispatches through the lists.
#pragma once

#include <string>
#include <vector>

#include "program.h"

namespace lowbit {
namespace engine {
namespace detail {

struct Node {
  Program& p;
  const onnx::NodeProto& n;
  std::string op, where;         // where: "ORIGIN: node K 'NAME' (OP)", for errors
  std::vector<const Value*> in;  // null for an empty (omitted) optional input
  Attrs a;
  Step s;              // the step computing the node, unless it folds
  Value out;           // the value it makes (constant where it folds)
  bool fused = false;  // the node was fused into the earlier step fused_into
  size_t fused_into = 0;

  // Errors unless the node has lo to hi inputs, the first lo of them present.
  void arity(size_t lo, size_t hi) const;
  // Input i, which must be a constant (a single value for scalar).
  const Value& constant(size_t i, const char* what) const;
  float scalar(size_t i, const char* what) const;
  // Input i, a constant of integers (axes, indices), each within ±10^9.
  std::vector<int64_t> integers(size_t i, const char* what) const;
  // The step of an element-wise f(x) of one activation (folded over a constant input).
  template <class F>
  void unary(F f);
  // The step of an element-wise f(x, y): two activations of one shape, or an activation and a
  // constant broadcast to it; two constants are folded with numpy's broadcasting.
  template <class F>
  void binary(F f);
  // Fuses min(max(v, lo), hi) (a Relu or Clip of input 0) into the float convolution or dense
  // layer that computes input 0, where only this node reads it and no activation is fused there
  // yet; whether it did.
  bool fuse_clamp(float lo, float hi);
  // The shape two values broadcast to (numpy's rules), its element count checked.
  std::vector<int64_t> broadcast_shape(const Value& p, const Value& q) const;
};

// An operator's lowering, as each op family lists it.
struct OpLowering {
  const char* op;
  void (*lower)(Node&);
};
// The op families (ops/*.cpp).
const std::vector<OpLowering>& elementwise_ops();
const std::vector<OpLowering>& activation_ops();
const std::vector<OpLowering>& layout_ops();
const std::vector<OpLowering>& resize_ops();
const std::vector<OpLowering>& quant_ops();
const std::vector<OpLowering>& conv_ops();
const std::vector<OpLowering>& shape_ops();
const std::vector<OpLowering>& pool_ops();

template <class F>
void Node::unary(F f) {  // f inlined into the loop
  arity(1, 1);
  out.dims = in[0]->dims;
  s.info.kernel = "elementwise_f32";
  split_step(
      s,
      [f](const std::vector<const float*>& x, float* y, int64_t count, int64_t p, int64_t parts) {
        for (int64_t e = count * p / parts; e < count * (p + 1) / parts; ++e) y[e] = f(x[0][e]);
      },
      in[0]->per_image());  // one operation per element
}

template <class F>
void Node::binary(F f) {
  arity(2, 2);
  const Value &x = *in[0], &c = *in[1];
  s.info.kernel = "elementwise_f32";
  if (!x.constant && !c.constant) {
    if (x.dims == c.dims) {
      out.dims = x.dims;
      s.run = [f](const std::vector<const float*>& xs, float* y, int64_t count) {
        for (int64_t e = 0; e < count; ++e) y[e] = f(xs[0][e], xs[1][e]);
      };
      return;
    }
    // Two activations of one rank broadcast image by image (a squeeze-and-excitation's scaling).
    if (x.dims.size() != c.dims.size())
      bad(where, "activations of shapes " + dims_str(x.dims) + " and " + dims_str(c.dims) +
                     " (activations of different ranks do not broadcast image by image)");
    out.dims = broadcast_shape(x, c);
    const Broadcast ix = make_broadcast(out.dims, x.dims, where);
    const Broadcast ic = make_broadcast(out.dims, c.dims, where);
    const int64_t per = product(out.dims, 1), px = x.per_image(), pc = c.per_image();
    s.info.kernel = "broadcast_f32";
    s.info.parameter_bytes = ix.bytes() + ic.bytes();
    s.run = [f, ix, ic, per, px, pc](const std::vector<const float*>& xs, float* y, int64_t count) {
      for (int64_t b = 0; b < count / per; ++b) {
        const float *p = xs[0] + b * px, *q = xs[1] + b * pc;
        float* yb = y + b * per;
        for (int64_t e = 0; e < per; ++e) yb[e] = f(p[ix.at(e)], q[ic.at(e)]);
      }
    };
    return;
  }
  if (x.constant && c.constant) {  // folded
    out.constant = true;
    out.dims = broadcast_shape(x, c);
    if (p.total_constant_elements + product(out.dims) > p.limits.max_total_elements)
      bad(where, "the constants (initializers and folded values) are too large");
    const auto ix = broadcast_constant(out.dims, x.dims, where);
    const auto ic = broadcast_constant(out.dims, c.dims, where);
    out.data.resize(ix.size());
    for (size_t e = 0; e < ix.size(); ++e) out.data[e] = f(x.data[ix[e]], c.data[ic[e]]);
    return;
  }
  const bool act_first = !x.constant;
  const Value& act = act_first ? x : c;
  const Value& k = act_first ? c : x;
  out.dims = act.dims;
  const Broadcast index = make_broadcast(act.dims, k.dims, where);
  const std::vector<float> kdata = k.data;
  s.info.parameter_bytes = index.bytes() + static_cast<int64_t>(kdata.size() * sizeof(float));
  s.run = [f, index, kdata, act_first](const std::vector<const float*>& xs, float* y,
                                       int64_t count) {
    const float* a = xs[0];  // the one activation
    index.each(count, [&](int64_t e, int64_t j) {
      y[e] = act_first ? f(a[e], kdata[j]) : f(kdata[j], a[e]);
    });
  };
}

}  // namespace detail
}  // namespace engine
}  // namespace lowbit
