// pool.h's kernels, compiled once per instruction set: included by exactly one file per
// LOWBIT_POOL_ISA namespace, with that file's flags (the compiler vectorizes the row loops and the
// lanes; the operations and their order are the source's in every build).
#pragma once

#include <algorithm>
#include <limits>
#if defined(__AVX2__) || defined(__AVX512BW__)
#include <immintrin.h>
#endif

#include "lowbit/engine/kernels/pool.h"

namespace lowbit {
namespace engine {
namespace pool {
namespace LOWBIT_POOL_ISA {

inline void take(float& best, float v) { best = (v > best || v != v) ? v : best; }

// The outputs q in [q0, q1) whose tap at column q * stride + off lies in [0, w), of ow.
inline void columns(int64_t off, int64_t stride, int64_t w, int64_t ow, int64_t& q0, int64_t& q1) {
  q0 = off >= 0 ? 0 : (-off + stride - 1) / stride;
  q1 = w - off <= 0 ? 0 : std::min<int64_t>(ow, (w - off - 1) / stride + 1);
  q0 = std::min(q0, q1);
}

void max(const float* x, const Window& s, float* y) {
  const int64_t h = s.h, w = s.w, kh = s.kh, kw = s.kw, sh = s.stride_h, sw = s.stride_w;
  const int64_t dh = s.dil_h, dw = s.dil_w, ph = s.pad_top, pw = s.pad_left, oh = s.oh, ow = s.ow;
  constexpr float kLow = -std::numeric_limits<float>::infinity();
  // Every window inside the plane: no bounds checks.
  const bool inside =
      ph == 0 && pw == 0 && (oh - 1) * sh + (kh - 1) * dh < h && (ow - 1) * sw + (kw - 1) * dw < w;
  if (inside && kh == 2 && kw == 2 && sh == 2 && sw == 2 && dh == 1 && dw == 1) {
    // 2x2 windows of stride 2 (most CNNs' pools): an output's four taps in registers.
    for (int64_t r = 0; r < oh; ++r) {
      float* yr = y + r * ow;
      const float *x0 = x + 2 * r * w, *x1 = x0 + w;
      for (int64_t q = 0; q < ow; ++q) {
        float best = kLow;
        take(best, x0[2 * q]);
        take(best, x0[2 * q + 1]);
        take(best, x1[2 * q]);
        take(best, x1[2 * q + 1]);
        yr[q] = best;
      }
    }
    return;
  }
  // Row by row: each tap (i, j) over the outputs of the row whose tap lies inside the plane (a
  // range of q), in the order (i, j): no bounds checks in the loops.
  for (int64_t r = 0; r < oh; ++r) {
    float* yr = y + r * ow;
    std::fill(yr, yr + ow, kLow);
    for (int64_t i = 0; i < kh; ++i) {
      const int64_t yy = r * sh - ph + i * dh;
      if (yy < 0 || yy >= h) continue;
      const float* xr = x + yy * w;
      for (int64_t j = 0; j < kw; ++j) {
        int64_t q0, q1;
        columns(j * dw - pw, sw, w, ow, q0, q1);
        const float* xt = xr + j * dw - pw;
        for (int64_t q = q0; q < q1; ++q) take(yr[q], xt[q * sw]);
      }
    }
  }
}

void max_codes(const uint8_t* x, const Window& s, uint8_t* y) {
  const int64_t w = s.w, kh = s.kh, kw = s.kw, sh = s.stride_h, sw = s.stride_w, dh = s.dil_h,
                dw = s.dil_w, oh = s.oh, ow = s.ow;
  for (int64_t r = 0; r < oh; ++r) {
    uint8_t* yr = y + r * ow;
    const uint8_t* xr = x + r * sh * w;
    if (kh == 2 && kw == 2 && sh == 2 && sw == 2 && dh == 1 && dw == 1) {
      int64_t q = 0;
#if defined(__AVX512BW__)
      // 32 outputs from 64 bytes of each row: the rows' maximum, then each byte pair's (the high
      // byte of a 16-bit lane shifted onto the low one), the low bytes narrowed.
      for (; q + 32 <= ow; q += 32) {
        const __m512i m =
            _mm512_max_epu8(_mm512_loadu_si512(xr + 2 * q), _mm512_loadu_si512(xr + w + 2 * q));
        const __m512i pairs = _mm512_max_epu8(m, _mm512_srli_epi16(m, 8));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(yr + q), _mm512_cvtepi16_epi8(pairs));
      }
#elif defined(__AVX2__)
      const __m256i low = _mm256_set1_epi16(0xFF);
      for (; q + 32 <= ow; q += 32) {
        __m256i half[2];
        for (int k = 0; k < 2; ++k) {
          const __m256i m = _mm256_max_epu8(
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xr + 2 * q + 32 * k)),
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xr + w + 2 * q + 32 * k)));
          half[k] = _mm256_and_si256(_mm256_max_epu8(m, _mm256_srli_epi16(m, 8)), low);
        }
        const __m256i packed =
            _mm256_permute4x64_epi64(_mm256_packus_epi16(half[0], half[1]), 0xD8);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(yr + q), packed);
      }
#endif
      for (; q < ow; ++q)
        yr[q] = std::max(std::max(xr[2 * q], xr[2 * q + 1]),
                         std::max(xr[w + 2 * q], xr[w + 2 * q + 1]));
      continue;
    }
    std::fill(yr, yr + ow, uint8_t{0});
    for (int64_t i = 0; i < kh; ++i)
      for (int64_t j = 0; j < kw; ++j)
        for (int64_t q = 0; q < ow; ++q) yr[q] = std::max(yr[q], xr[i * dh * w + q * sw + j * dw]);
  }
}

void average(const float* x, const Window& s, bool include_pad, float* y) {
  const int64_t h = s.h, w = s.w, sh = s.stride_h, sw = s.stride_w, pt = s.pad_top, pl = s.pad_left,
                ow = s.ow;
  // Row by row as max(): each output's taps added in the order (row, column) from 0, the rows of
  // its window inside the plane, then divided by its count.
  for (int64_t r = 0; r < s.oh; ++r) {
    float* yr = y + r * ow;
    std::fill(yr, yr + ow, 0.0f);
    const int64_t y0 = r * sh - pt, y1 = std::min(y0 + s.kh, h + s.pad_bottom);
    const int64_t rows = std::min(y1, h) - std::max<int64_t>(y0, 0);
    for (int64_t yy = std::max<int64_t>(y0, 0); yy < std::min(y1, h); ++yy) {
      const float* xr = x + yy * w;
      for (int64_t j = 0; j < s.kw; ++j) {
        int64_t q0, q1;
        columns(j - pl, sw, w, ow, q0, q1);  // (taps inside the plane are inside the padded one)
        const float* xt = xr + j - pl;
        for (int64_t q = q0; q < q1; ++q) yr[q] += xt[q * sw];
      }
    }
    for (int64_t q = 0; q < ow; ++q) {
      const int64_t x0 = q * sw - pl, x1 = std::min(x0 + s.kw, w + s.pad_right);
      const int64_t cols = std::min(x1, w) - std::max<int64_t>(x0, 0);
      const int64_t n = include_pad ? (y1 - y0) * (x1 - x0) : rows * cols;
      yr[q] = n > 0 ? yr[q] / static_cast<float>(n) : 0.0f;
    }
  }
}

// The lanes of pool.h's reductions, block by block.
template <class Step>
void lanes(const float* x, int64_t n, int64_t count, float* y, float start, Step step) {
  constexpr int64_t kLanes = 16;
  for (int64_t b = 0; b < count; ++b, x += n) {
    float lane[kLanes];
    for (int64_t l = 0; l < kLanes; ++l) lane[l] = start;
    int64_t e = 0;
    for (; e + kLanes <= n; e += kLanes)
      for (int64_t l = 0; l < kLanes; ++l) lane[l] = step(lane[l], x[e + l]);
    for (int64_t l = 0; e < n; ++e, ++l) lane[l] = step(lane[l], x[e]);
    for (int64_t k = kLanes / 2; k >= 1; k /= 2)
      for (int64_t l = 0; l < k; ++l) lane[l] = step(lane[l], lane[l + k]);
    y[b] = lane[0];
  }
}

void sum(const float* x, int64_t n, int64_t count, float* y) {
  lanes(x, n, count, y, 0.0f, [](float a, float v) { return a + v; });
}

void maximum(const float* x, int64_t n, int64_t count, float* y) {
  lanes(x, n, count, y, -std::numeric_limits<float>::infinity(),
        [](float a, float v) { return v > a || v != v ? v : a; });
}

void minimum(const float* x, int64_t n, int64_t count, float* y) {
  lanes(x, n, count, y, std::numeric_limits<float>::infinity(),
        [](float a, float v) { return v < a || v != v ? v : a; });
}

}  // namespace LOWBIT_POOL_ISA
}  // namespace pool
}  // namespace engine
}  // namespace lowbit
