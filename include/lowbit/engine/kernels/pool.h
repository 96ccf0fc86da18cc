// The engine's pooling kernels over one channel plane: max-pooling of floats and of 8-bit codes,
// ONNX's average pooling, and the reductions of contiguous blocks that global pooling and
// ReduceMean/Sum/Max/Min over the innermost axes run. Compiled once per instruction set from one
// body (pool_body.h); every build performs the same operations in the same order (the maximum is
// exact, sums follow the lanes below), so all give the same bits. One list drives dispatch, tests
// and benchmarks (docs/engine.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lowbit {
namespace engine {
namespace pool {

// One plane of h x w values, windows of kh x kw taps at strides, dilations and pads (the output
// oh x ow given, so that ceil_mode's extra windows are the caller's choice). pad_bottom and
// pad_right bound the padded plane for the average's count.
struct Window {
  int64_t h = 0, w = 0;
  int64_t kh = 1, kw = 1, stride_h = 1, stride_w = 1, dil_h = 1, dil_w = 1;
  int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  int64_t oh = 0, ow = 0;
};

// y[r, q] = the largest x over the taps (i, j) of window (r, q) inside the plane, taken in the
// order (i, j) by best = (v > best || v != v) ? v : best from -inf: NaN propagates (as in
// LibTorch), a window without a tap inside gives -inf.
using MaxFn = void (*)(const float* x, const Window& s, float* y);
// The largest code of each window (windows inside the plane, no padding), from 0.
using MaxCodesFn = void (*)(const uint8_t* x, const Window& s, uint8_t* y);
// ONNX's AveragePool (no dilation): the window clipped to the padded plane; the sum of its taps
// inside the plane (row by row, each row in order, from 0) divided by their number, or with
// include_pad by the clipped window's size; 0 where that number is 0.
using AverageFn = void (*)(const float* x, const Window& s, bool include_pad, float* y);
// Reductions of `count` consecutive blocks of n values, y[b] the b-th block's, each in 16 lanes:
// lane l takes the block's values l, l + 16, ... in order from the start (0 for the sum, -inf for
// the maximum, +inf for the minimum), then lane l + w is folded into lane l for w = 8, 4, 2, 1;
// the maximum and minimum propagate NaN.
using ReduceFn = void (*)(const float* x, int64_t n, int64_t count, float* y);

struct Kernels {
  std::string name;
  bool (*supported)();
  MaxFn max;
  MaxCodesFn max_codes;
  AverageFn average;
  ReduceFn sum, maximum, minimum;
};
// Every implementation, the reference first; and the best one this CPU runs.
const std::vector<Kernels>& all();
const Kernels& best();

}  // namespace pool
}  // namespace engine
}  // namespace lowbit
