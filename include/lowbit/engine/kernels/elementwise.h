// The engine's element-wise kernels: functions of one value (activations, rounding, Clip, the
// sign's Where) and of two (arithmetic, Min/Max, comparisons, PRelu), over arrays of the same
// size, a constant scalar, or a constant per row (a per-channel constant against [C, H, W]).
// Compiled once per instruction set from one body (elementwise_body.h); every build performs the
// same IEEE operations on each element (one rounding each; exp, tanh, erf, log1p and pow are the C
// library's in every build), so all give the same bits. One list drives dispatch, tests and
// benchmarks (docs/engine.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lowbit {
namespace engine {
namespace elementwise {

// y = f(x) with parameters a, b where the function has them (ONNX's defaults are the caller's).
// NaN: propagated by every function but nonzero and select (NaN is nonzero).
enum class Unary {
  copy,          // x
  relu,          // x < 0 ? 0 : x
  clamp,         // min(max(x, a), b) (std::min/std::max, as ONNX's Clip: NaN stays NaN)
  leaky_relu,    // x >= 0 ? x : a * x
  elu,           // x >= 0 ? x : a * (exp(x) - 1)
  hard_sigmoid,  // max(0, min(1, a * x + b)), NaN for NaN
  hard_swish,    // x * max(0, min(1, x / 6 + 0.5))
  sigmoid,       // 1 / (1 + exp(-x))
  tanh,          // tanh(x)
  softplus,      // x > 0 ? x + log1p(exp(-x)) : log1p(exp(x))
  exp,           // exp(x)
  sqrt,          // sqrt(x)
  erf,           // erf(x)
  neg,           // -x
  abs,           // |x|
  sign,          // x > 0 ? 1 : x < 0 ? -1 : 0
  round,         // to the nearest integer, ties to even
  floor,         // floor(x)
  ceil,          // ceil(x)
  trunc,         // toward 0 (casts to integer types)
  nonzero,       // x != 0 ? 1 : 0 (casts to bool)
  select,        // x != 0 ? a : b (Where with scalar branches)
};

// y = f(p, q).
enum class Binary {
  add,    // p + q
  sub,    // p - q
  mul,    // p * q
  div,    // p / q
  min,    // NaN in either: p + q (NaN), else std::min(p, q)
  max,    // NaN in either: p + q (NaN), else std::max(p, q)
  mean,   // (p + q) / 2
  pow,    // pow(p, q)
  ge,     // p >= q ? 1 : 0
  gt,     // p > q ? 1 : 0
  prelu,  // p < 0 ? q * p : p (q the slope)
};

// QONNX's rounding modes, in the order of its table (round and half_even alike: to the nearest,
// ties to even).
enum class Rounding { round, half_even, ceil, floor, half_up, half_down, up, down };

// The names of the functions, as the benchmarks and tests print them.
const char* name(Unary f);
const char* name(Binary f);
// Every function, in the enums' order (what the tests and benchmarks run through).
const std::vector<Unary>& unary_functions();
const std::vector<Binary>& binary_functions();

// y[e] = f(x[e]) for e < n (y may be x).
using UnaryFn = void (*)(Unary f, float a, float b, const float* x, int64_t n, float* y);
// y[e] = f(p[e], q[e]) for e < n (y may be p or q).
using BinaryFn = void (*)(Binary f, const float* p, const float* q, int64_t n, float* y);
// Against a constant per row: rows of n values, y[r * n + e] = f(x[r * n + e], c[r]), or
// f(c[r], x[r * n + e]) where constant_first (a scalar: one row). y may be x.
using RowsFn = void (*)(Binary f, const float* x, const float* c, int64_t rows, int64_t n,
                        bool constant_first, float* y);

// QONNX's Quant over rows of n values with a scale and zero point per row (one row: scalars):
// u = x / scale[r] + zero[r], clamped to [lo, hi] (u > hi ? hi : u < lo ? lo : u, so NaN stays
// NaN), rounded by `mode` (half_up: u < 0 ? -floor(-u + 0.5) : floor(u + 0.5); half_down:
// u < 0 ? -ceil(-u - 0.5) : ceil(u - 0.5); up: away from 0; down: toward 0), then
// y = (u - zero[r]) * scale[r]. y may be x.
using QuantFn = void (*)(Rounding mode, float lo, float hi, const float* x, const float* scale,
                         const float* zero, int64_t rows, int64_t n, float* y);

struct Kernels {
  std::string name;
  bool (*supported)();
  UnaryFn unary;
  BinaryFn binary;
  RowsFn rows;
  QuantFn quant;
};
// Every implementation, the reference first; and the best one this CPU runs.
const std::vector<Kernels>& all();
const Kernels& best();

}  // namespace elementwise
}  // namespace engine
}  // namespace lowbit
