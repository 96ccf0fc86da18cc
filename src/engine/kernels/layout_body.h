// layout.h's kernels, compiled once per instruction set: included by exactly one file per
// LOWBIT_LAYOUT_ISA namespace, with that file's flags (the loops below vectorize where they can).
#pragma once

#include <algorithm>
#include <vector>

#include "lowbit/engine/kernels/layout.h"

namespace lowbit {
namespace engine {
namespace layout {
namespace LOWBIT_LAYOUT_ISA {

// The source index of padded index i along an axis of n values (reflect or edge; i outside).
inline int64_t source(PadMode mode, int64_t i, int64_t n) {
  if (mode == PadMode::edge || n == 1) return std::min(std::max<int64_t>(i, 0), n - 1);
  while (i < 0 || i >= n) i = i < 0 ? -i : 2 * (n - 1) - i;
  return i;
}

void pad(const float* x, int64_t h, int64_t w, int64_t top, int64_t left, int64_t oh, int64_t ow,
         PadMode mode, float value, float* y) {
  const bool constant = mode == PadMode::constant;
  const int64_t inside_end = left + w;  // columns [left, inside_end) hold a row of x
  for (int64_t r = 0; r < oh; ++r) {
    float* yr = y + r * ow;
    const int64_t rr = r - top;
    const bool inside = rr >= 0 && rr < h;
    if (constant && !inside) {
      std::fill(yr, yr + ow, value);
      continue;
    }
    const float* xr = x + (inside ? rr : source(mode, rr, h)) * w;
    if (constant) {
      std::fill(yr, yr + left, value);
      std::fill(yr + inside_end, yr + ow, value);
    } else {
      for (int64_t q = 0; q < left; ++q) yr[q] = xr[source(mode, q - left, w)];
      for (int64_t q = inside_end; q < ow; ++q) yr[q] = xr[source(mode, q - left, w)];
    }
    std::copy(xr, xr + w, yr + left);
  }
}

// Not vectorized: gathers of single floats run slower than the scalar loop (measured in
// lowbit_engine_layout_bench).
__attribute__((optimize("no-tree-vectorize"))) void nearest(const float* x, int64_t w,
                                                            const int64_t* rows, int64_t oh,
                                                            const int64_t* cols, int64_t ow,
                                                            float* y) {
  for (int64_t r = 0; r < oh; ++r) {
    float* __restrict yr = y + r * ow;
    if (r > 0 && rows[r] == rows[r - 1]) {  // the row above again (upsampling)
      std::copy(yr - ow, yr, yr);
      continue;
    }
    const float* __restrict xr = x + rows[r] * w;
    for (int64_t q = 0; q < ow; ++q) yr[q] = xr[cols[q]];
  }
}

void linear(const float* x, int64_t w, const int64_t* rows0, const int64_t* rows1, const float* fr,
            int64_t oh, const int64_t* cols0, const int64_t* cols1, const float* fc, int64_t ow,
            float* y) {
  // Two source rows interpolated along the columns at a time, kept while output rows reuse them.
  thread_local std::vector<float> slots;
  slots.resize(2 * ow);
  float* slot[2] = {slots.data(), slots.data() + ow};
  int64_t held[2] = {-1, -1};
  auto fetch = [&](int64_t row, int64_t keep) -> const float* {
    for (int s = 0; s < 2; ++s)
      if (held[s] == row) return slot[s];
    const int s = held[0] == keep ? 1 : 0;  // the slot the other row does not need
    const float* __restrict xr = x + row * w;
    float* __restrict out = slot[s];
    for (int64_t q = 0; q < ow; ++q) {
      const float a = xr[cols0[q]], b = xr[cols1[q]];
      out[q] = a + (b - a) * fc[q];
    }
    held[s] = row;
    return out;
  };
  for (int64_t r = 0; r < oh; ++r) {
    const float* t = fetch(rows0[r], rows1[r]);
    const float* b = fetch(rows1[r], rows0[r]);
    const float f = fr[r];
    float* __restrict yr = y + r * ow;
    for (int64_t q = 0; q < ow; ++q) yr[q] = t[q] + (b[q] - t[q]) * f;
  }
}

}  // namespace LOWBIT_LAYOUT_ISA
}  // namespace layout
}  // namespace engine
}  // namespace lowbit
