// The engine's float32 direct convolution and dense layer (the layers that stay in float: first
// layers, float recipes), compiled once per instruction set from one body (float32_body.h). Every
// implementation performs the same fused multiply-adds (one rounding each, std::fma's) in the same
// order (taps in the order (input channel, i, j), from 0), so all give the same bits; wider ones
// only hold more outputs in registers at once. The scalar reference runs on any CPU (std::fma in
// software where the CPU has no FMA); AVX2 and AVX-512 need FMA. One list drives dispatch, tests
// and benchmarks (docs/engine.md).
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "lowbit/engine/kernels/binary.h"  // ConvShape

namespace lowbit {
namespace engine {
namespace float32 {

using ConvShape = binary::ConvShape;

// The activation applied to every output after its bias: min(max(v, lo), hi), as the engine's
// Relu (lo = 0) and Clip compute it (NaN stays NaN, -0 stays -0). The default changes nothing.
struct Clamp {
  float lo = -std::numeric_limits<float>::infinity();
  float hi = std::numeric_limits<float>::infinity();
};

// One image's output rows r in [r0, r1) (0 <= r0 <= r1 <= s.oh; y is the whole [m, oh, ow] output,
// the other rows untouched): y[o, r, q] = clamp(acc + bias[o]), where acc starts at 0 and takes,
// for the group's input channels ic and the taps (i, j) inside the image in that order,
// acc = fma(x[g * cg + ic, r * sh - ph + i * dh, q * sw - pw + j * dw], w[o, ic, i, j], acc)
// (cg = c / group, g = o / (m / group)). Each output's sum is the same whatever the rows asked, so
// threads that split the rows give the bits of one call over all of them.
using ConvFn = void (*)(const float* x, const float* w, const float* bias, const ConvShape& s,
                        int64_t group, const Clamp& clamp, int64_t r0, int64_t r1, float* y);

// Ternary weights w = alpha[o] * t with t in {-1, 0, 1} (int8 codes in conv's order, a byte per
// weight in memory): conv() of the weights t * alpha[o], the same operations, so the same bits.
using TernaryConvFn = void (*)(const float* x, const int8_t* t, const float* alpha,
                               const float* bias, const ConvShape& s, int64_t group,
                               const Clamp& clamp, int64_t r0, int64_t r1, float* y);

// A dense layer of one image: y[o] = clamp(acc + bias[o]), acc = fma(x[i], w[o, i], acc) for i
// from 0 (acc from 0), with the weights transposed: wt[i * ldw + o] (ldw >= m: a slice of a wider
// layer's outputs).
using DenseFn = void (*)(const float* x, const float* wt, int64_t ldw, const float* bias, int64_t k,
                         int64_t m, const Clamp& clamp, float* y);

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
