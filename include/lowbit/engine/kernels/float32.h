// The engine's float32 direct convolution and dense layer (the layers that stay in float: first
// layers, float recipes), compiled once per instruction set from one body (float32_body.h). Every
// implementation performs the same multiplies and adds in the same order (a row of outputs at a
// time, taps in the order (input channel, i, j), no fused multiply-add: the engine is built with
// -ffp-contract=off), so all give the same bits; wider ones only run more outputs of a row at
// once. One list drives dispatch, tests and benchmarks (docs/engine.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lowbit/engine/kernels/binary.h"  // ConvShape

namespace lowbit {
namespace engine {
namespace float32 {

using ConvShape = binary::ConvShape;

// One image: y[o, r, q] = bias[o] + the sum over the group's input channels ic and the taps
// (i, j) inside the image of x[g * cg + ic, r * sh - ph + i * dh, q * sw - pw + j * dw] *
// w[o, ic, i, j], accumulated in that order from 0 and the bias added last (cg = c / group,
// g = o / (m / group)).
using ConvFn = void (*)(const float* x, const float* w, const float* bias, const ConvShape& s,
                        int64_t group, float* y);

// Ternary weights w = alpha[o] * t with t in {-1, 0, 1} (int8 codes in conv's order, a byte per
// weight in memory): conv() of the weights t * alpha[o], the same operations, so the same bits.
using TernaryConvFn = void (*)(const float* x, const int8_t* t, const float* alpha,
                               const float* bias, const ConvShape& s, int64_t group, float* y);

// A dense layer of one image: y[o] = bias[o] + the sum over i of x[i] * w[o, i], accumulated in
// the order of i from 0 and the bias added last, with the weights transposed: wt[i * ldw + o]
// (ldw >= m: a slice of a wider layer's outputs).
using DenseFn = void (*)(const float* x, const float* wt, int64_t ldw, const float* bias, int64_t k,
                         int64_t m, float* y);

struct Kernels {
  std::string name;
  bool (*supported)();
  ConvFn conv;
  TernaryConvFn ternary_conv;
  DenseFn dense;
};
// Every implementation, the reference first; and the best one this CPU runs.
const std::vector<Kernels>& all();
const Kernels& best();

}  // namespace float32
}  // namespace engine
}  // namespace lowbit
