// The 8-bit layers' conversions, compiled once per instruction set (int8.cpp: baseline, the
// kernels' files with their flags, where the compiler vectorizes them wider): the float input to
// codes, and the sums to the float output (int8.h). Included by exactly one file per
// LOWBIT_INT8_ISA namespace, which it gives pack_input and dequantize.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "lowbit/engine/kernels/int8.h"

namespace lowbit {
namespace engine {
namespace int8 {
namespace LOWBIT_INT8_ISA {

// pack_input's and pack_codes' layout: the padding's codes everywhere (the extra channels' 0), then
// the image over them, four channels at a time so that each pixel's group of 4 codes is one 32-bit
// store; row(ch, y, n, k, four) ORs channel ch's codes of row y, columns [0, n), into byte k of
// four[0, n).
template <class Row>
void pack_layout(int zero, const ConvShape& s, uint8_t* out, Row&& row) {
  const int64_t cp = padded_channels(s.c), hp = padded_rows(s), wp = padded_cols(s);
  const uint8_t pad = static_cast<uint8_t>(zero);
  for (int64_t p = 0; p < hp * wp; ++p) {
    std::fill(out + p * cp, out + p * cp + s.c, pad);
    std::fill(out + p * cp + s.c, out + (p + 1) * cp, uint8_t{0});
  }
  const int64_t n = std::max<int64_t>(0, std::min<int64_t>(s.w, wp - s.pad_w));  // columns read
  thread_local std::vector<uint32_t> four;
  four.resize(n);
  for (int64_t c0 = 0; c0 < s.c; c0 += 4) {
    for (int64_t y = 0; y < s.h; ++y) {
      const int64_t yp = y + s.pad_h;
      if (yp >= hp) break;
      std::fill(four.begin(), four.end(), 0u);
      for (int k = 0; k < 4 && c0 + k < s.c; ++k) row(c0 + k, y, n, k, four.data());
      uint8_t* o = out + (yp * wp + s.pad_w) * cp + c0;
      for (int64_t q = 0; q < n; ++q) std::memcpy(o + q * cp, &four[q], 4);
    }
  }
}

void pack_input(const float* x, float scale, int zero, const ConvShape& s, uint8_t* out) {
  // The values are integer multiples of scale: v / scale lies within float32's rounding of an
  // integer in [-zero, 255 - zero], which adding and subtracting 1.5 * 2^23 rounds to (no libm
  // call, vectorized). The only value off the grid a graph can bring is NaN (Quant passes it on),
  // read as 0; the clamp keeps every code in range whatever the input.
  const float lo = static_cast<float>(-zero), hi = static_cast<float>(255 - zero);
  auto code = [lo, hi](float v) {
    v = v > hi ? hi : (v >= lo ? v : (v < lo ? lo : 0.0f));
    return static_cast<int>((v + 12582912.0f) - 12582912.0f);
  };
  const float inverse = 1.0f / scale;
  const bool exact_inverse = inverse * scale == 1.0f && std::isfinite(inverse);
  thread_local std::vector<float> values;
  pack_layout(zero, s, out, [&](int64_t ch, int64_t y, int64_t n, int k, uint32_t* four) {
    values.resize(n);
    float* row = values.data();
    const float* xr = x + (ch * s.h + y) * s.w;
    // Power-of-2 scales multiply by the exact inverse; others divide, as the reference does.
    if (exact_inverse) {
      for (int64_t q = 0; q < n; ++q) row[q] = xr[q] * inverse;
    } else {
      for (int64_t q = 0; q < n; ++q) row[q] = xr[q] / scale;
    }
    for (int64_t q = 0; q < n; ++q)
      four[q] |= static_cast<uint32_t>(code(row[q]) + zero) << (8 * k);
  });
}

void dequantize(const int32_t* raw, int64_t m, int64_t plane, const int64_t* constant, int64_t zw,
                const double* scale, const float* bias, float* y) {
  // Every term below 2^53: the sums are exact in double.
  const int32_t* sum_u = raw + m * plane;
  const double dzw = static_cast<double>(zw);
  for (int64_t o = 0; o < m; ++o) {
    const int32_t* r = raw + o * plane;
    float* yo = y + o * plane;
    const double so = scale[o], bo = bias[o], co = static_cast<double>(constant[o]);
    if (zw == 0) {
      for (int64_t p = 0; p < plane; ++p)
        yo[p] = static_cast<float>((static_cast<double>(r[p]) + co) * so + bo);
    } else {
      for (int64_t p = 0; p < plane; ++p)
        yo[p] = static_cast<float>(
            (static_cast<double>(r[p]) + co - dzw * static_cast<double>(sum_u[p])) * so + bo);
    }
  }
}

void pack_codes(const uint8_t* codes, int zero, const ConvShape& s, uint8_t* out) {
  pack_layout(zero, s, out, [&](int64_t ch, int64_t y, int64_t n, int k, uint32_t* four) {
    const uint8_t* xr = codes + (ch * s.h + y) * s.w;
    for (int64_t q = 0; q < n; ++q) four[q] |= static_cast<uint32_t>(xr[q]) << (8 * k);
  });
}

void requantize(const int32_t* raw, int64_t m, int64_t plane, const int64_t* add, int64_t zw,
                const int32_t* shift, const int32_t* lo, const int32_t* hi, uint8_t* out) {
  const int32_t* sum_u = raw + m * plane;
  for (int64_t o = 0; o < m; ++o) {
    const int32_t* r = raw + o * plane;
    uint8_t* yo = out + o * plane;
    const int64_t a = add[o], l = lo[o], h = hi[o];
    const int k = shift[o];
    if (zw == 0) {
      for (int64_t p = 0; p < plane; ++p) {
        const int64_t v = (static_cast<int64_t>(r[p]) + a) >> k;
        yo[p] = static_cast<uint8_t>(v < l ? l : (v > h ? h : v));
      }
    } else {
      for (int64_t p = 0; p < plane; ++p) {
        const int64_t v = (static_cast<int64_t>(r[p]) - zw * sum_u[p] + a) >> k;
        yo[p] = static_cast<uint8_t>(v < l ? l : (v > h ? h : v));
      }
    }
  }
}

}  // namespace LOWBIT_INT8_ISA
}  // namespace int8
}  // namespace engine
}  // namespace lowbit
