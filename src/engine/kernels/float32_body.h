// float32.h's convolution, compiled once per instruction set: included by exactly one file per
// LOWBIT_FLOAT32_ISA namespace, with that file's flags (the compiler vectorizes the row loops).
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "float32.h"

namespace lowbit {
namespace engine {
namespace float32 {
namespace LOWBIT_FLOAT32_ISA {

// The loops of conv() and ternary_conv(): tap(o, ic, i, j) is the tap's weight; `finite`: every
// weight finite.
template <class Tap>
void convolve(const float* x, const float* bias, const ConvShape& s, int64_t group, bool finite,
              float* y, Tap&& tap) {
  const int64_t c = s.c, h = s.h, wd = s.w, m = s.m, kh = s.kh, kw = s.kw, oh = s.oh, ow = s.ow;
  const int64_t sh = s.stride_h, sw = s.stride_w, ph = s.pad_h, pw = s.pad_w, dh = s.dil_h,
                dw = s.dil_w, cg = c / group;
  // One tap over n outputs: acc[q] += x[q * step] * v.
  auto add = [](float v, const float* xt, int64_t step, float* acc, int64_t n) {
    if (step == 1) {
      for (int64_t q = 0; q < n; ++q) acc[q] += xt[q] * v;
    } else {
      for (int64_t q = 0; q < n; ++q) acc[q] += xt[q * step] * v;
    }
  };
  thread_local std::vector<float> row;
  // Stride 1 along rows and finite weights: the input copied into a zero-padded plane per channel,
  // every tap then adds over whole rows (and with stride 1 down the columns too, over the whole
  // plane at once, the columns past ow computed and dropped). A tap in the padding adds 0 * w,
  // which leaves every sum as skipping it would (the sums never hold -0; w finite): the same bits.
  if (sw == 1 && finite) {
    const int64_t hp = (oh - 1) * sh + (kh - 1) * dh + 1, wp = ow + (kw - 1) * dw;
    const int64_t slack = (kw - 1) * dw;  // read past the last row by the widest tap
    thread_local std::vector<float> xp;
    xp.assign(c * hp * wp + slack, 0.0f);
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t yp = 0; yp < hp; ++yp) {
        const int64_t yy = yp - ph;
        if (yy < 0 || yy >= h) continue;
        for (int64_t xq = 0; xq < wp; ++xq) {
          const int64_t xx = xq - pw;
          if (xx >= 0 && xx < wd) xp[(ch * hp + yp) * wp + xq] = x[(ch * h + yy) * wd + xx];
        }
      }
    row.resize(oh * wp + slack);
    float* acc = row.data();
    for (int64_t o = 0; o < m; ++o) {
      const int64_t g = o / (m / group);
      std::fill(acc, acc + oh * wp, 0.0f);
      for (int64_t ic = 0; ic < cg; ++ic) {
        const float* xc = xp.data() + (g * cg + ic) * hp * wp;
        for (int64_t i = 0; i < kh; ++i)
          for (int64_t j = 0; j < kw; ++j) {
            const float v = tap(o, ic, i, j);
            if (sh == 1) {
              add(v, xc + i * dh * wp + j * dw, 1, acc, oh * wp);
            } else {
              for (int64_t r = 0; r < oh; ++r)
                add(v, xc + (r * sh + i * dh) * wp + j * dw, 1, acc + r * wp, ow);
            }
          }
      }
      for (int64_t r = 0; r < oh; ++r) {
        float* yr = y + (o * oh + r) * ow;
        for (int64_t q = 0; q < ow; ++q) yr[q] = acc[r * wp + q] + bias[o];
      }
    }
    return;
  }
  row.resize(ow);
  float* acc = row.data();
  for (int64_t o = 0; o < m; ++o) {
    const int64_t g = o / (m / group);
    for (int64_t r = 0; r < oh; ++r) {
      // A row of outputs at a time, taps in the order (ic, i, j) for every output, so the inner
      // loop runs along the row without bounds checks.
      std::fill(acc, acc + ow, 0.0f);
      for (int64_t ic = 0; ic < cg; ++ic) {
        const float* xc = x + (g * cg + ic) * h * wd;
        for (int64_t i = 0; i < kh; ++i) {
          const int64_t yy = r * sh - ph + i * dh;
          if (yy < 0 || yy >= h) continue;
          const float* xr = xc + yy * wd;
          for (int64_t j = 0; j < kw; ++j) {
            const float v = tap(o, ic, i, j);
            const int64_t off = j * dw - pw;  // xx = q * sw + off
            // The outputs q whose xx lies in [0, wd).
            const int64_t q0 = off >= 0 ? 0 : (-off + sw - 1) / sw;
            const int64_t q1 = std::min<int64_t>(ow, wd - off <= 0 ? 0 : (wd - off - 1) / sw + 1);
            if (q1 > q0) add(v, xr + q0 * sw + off, sw, acc + q0, q1 - q0);
          }
        }
      }
      float* yr = y + (o * oh + r) * ow;
      for (int64_t q = 0; q < ow; ++q) yr[q] = acc[q] + bias[o];
    }
  }
}

void conv(const float* x, const float* w, const float* bias, const ConvShape& s, int64_t group,
          float* y) {
  const int64_t cg = s.c / group, n = s.m * cg * s.kh * s.kw;
  bool finite = true;
  for (int64_t e = 0; finite && e < n; ++e) finite = std::isfinite(w[e]);

  convolve(x, bias, s, group, finite, y, [&](int64_t o, int64_t ic, int64_t i, int64_t j) {
    return w[((o * cg + ic) * s.kh + i) * s.kw + j];
  });
}

void ternary_conv(const float* x, const int8_t* t, const float* alpha, const float* bias,
                  const ConvShape& s, int64_t group, float* y) {
  const int64_t cg = s.c / group;
  bool finite = true;
  for (int64_t o = 0; finite && o < s.m; ++o) finite = std::isfinite(alpha[o]);
  convolve(x, bias, s, group, finite, y, [&](int64_t o, int64_t ic, int64_t i, int64_t j) {
    return static_cast<float>(t[((o * cg + ic) * s.kh + i) * s.kw + j]) * alpha[o];
  });
}

}  // namespace LOWBIT_FLOAT32_ISA
}  // namespace float32
}  // namespace engine
}  // namespace lowbit
