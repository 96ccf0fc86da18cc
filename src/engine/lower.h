// The lowering of one node (internal): what an operator's entry in the op table receives (its
// inputs, attributes and the program) and fills in (the step that computes it, the value it makes).
// Each op family's file (ops/*.cpp) lists its operators; lower.cpp dispatches through the lists.
#pragma once

#include <string>
#include <vector>

#include "lowbit/engine/kernels/elementwise.h"
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
  // The step of element-wise function f (parameters a, b) of one activation, elementwise.h's
  // kernel (folded over a constant input).
  void unary(elementwise::Unary f, float a = 0, float b = 0);
  // The step of an element-wise f(x, y) (elementwise.h's kernels): two activations of one shape,
  // or of one rank broadcast image by image, or an activation and a constant broadcast to it; two
  // constants are folded with numpy's broadcasting.
  void binary(elementwise::Binary f);
  // The step of QONNX's Quant of activation 0 by elementwise.h's kernel where its scale and zero
  // point are scalars or constants per row (per channel); whether it planned it.
  bool quant_rows(elementwise::Rounding mode, float lo, float hi, const Value& scale,
                  const Value& zero);
  // The step of an element-wise f(x) of one activation that no kernel list has (quantizers with
  // their own rounding), f inlined into the loop.
  template <class F>
  void map(F f);
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
void Node::map(F f) {  // f inlined into the loop
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

}  // namespace detail
}  // namespace engine
}  // namespace lowbit
