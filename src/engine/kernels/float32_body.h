// float32.h's convolution, compiled once per instruction set: included by exactly one file per
// LOWBIT_FLOAT32_ISA namespace, with that file's flags. LOWBIT_FLOAT32_VECTOR: floats per
// register; LOWBIT_FLOAT32_VECTORS: registers of outputs along the plane in the stride-1 block;
// LOWBIT_FLOAT32_MADD(x, w, acc): the instruction set's fused multiply-add of a register by a float
// (where undefined: std::fma lane by lane).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "lowbit/engine/kernels/float32.h"

namespace lowbit {
namespace engine {
namespace float32 {
namespace LOWBIT_FLOAT32_ISA {

// The register blocks of the stride-1 loops: kBlock output channels times kVectors registers of
// kVector outputs along the plane, with GCC's vector extension. Every product and sum is one
// fused multiply-add (one rounding), in every build: the blocks change which outputs share a
// register, not any sum.
constexpr int64_t kBlock = 4, kVector = LOWBIT_FLOAT32_VECTOR, kVectors = LOWBIT_FLOAT32_VECTORS;
constexpr int64_t kSpan = kVector * kVectors;  // outputs along the plane per block
typedef float Vector __attribute__((vector_size(kVector * sizeof(float))));
// Unaligned loads and stores of a register as plain accesses (no address of a register taken, so
// the compiler keeps the blocks in registers).
typedef float Unaligned
    __attribute__((vector_size(kVector * sizeof(float)), aligned(4), may_alias));
inline Vector load(const float* p) { return *reinterpret_cast<const Unaligned*>(p); }
inline void store(float* p, Vector v) { *reinterpret_cast<Unaligned*>(p) = v; }

inline Vector madd(Vector x, float w, Vector acc) {
#ifdef LOWBIT_FLOAT32_MADD
  return LOWBIT_FLOAT32_MADD(x, w, acc);
#else
  for (int64_t l = 0; l < kVector; ++l) acc[l] = std::fma(x[l], w, acc[l]);
  return acc;
#endif
}

inline float clamp(float v, const Clamp& c) { return std::min(std::max(v, c.lo), c.hi); }

// Input floats a tile of output rows reads at most (about a quarter of a 1 MB L2 cache): every
// output channel of a group runs over the tile while it stays in the cache.
constexpr int64_t kTileFloats = 64 * 1024;

// The loops of conv() and ternary_conv() over output rows [r0, r1): tap(o, ic, i, j) is the tap's
// weight; `finite`: every weight finite.
template <class Tap>
void convolve(const float* x, const float* bias, const ConvShape& s, int64_t group, bool finite,
              const Clamp& act, int64_t r0, int64_t r1, float* y, Tap&& tap) {
  const int64_t c = s.c, h = s.h, wd = s.w, m = s.m, kh = s.kh, kw = s.kw, oh = s.oh, ow = s.ow;
  const int64_t sh = s.stride_h, sw = s.stride_w, ph = s.pad_h, pw = s.pad_w, dh = s.dil_h,
                dw = s.dil_w, cg = c / group, per_group = m / group;
  // One tap over n outputs: acc[q] = fma(x[q * step], v, acc[q]).
  auto add = [](float v, const float* xt, int64_t step, float* acc, int64_t n) {
    if (step == 1) {
      for (int64_t q = 0; q < n; ++q) acc[q] = std::fma(xt[q], v, acc[q]);
    } else {
      for (int64_t q = 0; q < n; ++q) acc[q] = std::fma(xt[q * step], v, acc[q]);
    }
  };
  thread_local std::vector<float> row;
  // Stride 1 along rows and finite weights: tiles of output rows, each with the group's input rows
  // it reads copied into zero-padded planes; every tap then adds over whole rows (and with stride 1
  // down the columns too, over the tile's whole plane at once, the columns past ow computed and
  // dropped). A tap in the padding adds 0 * w, which leaves every sum as skipping it would (the
  // sums never hold -0; w finite): the same bits, whatever the tiles.
  if (sw == 1 && finite) {
    const int64_t wp = ow + (kw - 1) * dw, reach = (kh - 1) * dh + 1;  // rows one output row reads
    // Read past the last row by the widest tap, and by a block's span (below).
    const int64_t slack = (kw - 1) * dw + kSpan;
    const int64_t fit = kTileFloats / (cg * wp);
    const int64_t rows = std::max<int64_t>(1, fit > reach ? (fit - reach) / sh + 1 : 1);
    // Stride 1 both ways: the weights of each block of kBlock output channels of a group, tap by
    // tap in (ic, i, j) order, 0 for the channels past the group's end.
    const int64_t blocks = (per_group + kBlock - 1) / kBlock, per_block = cg * kh * kw * kBlock;
    thread_local std::vector<float> xp, wb;
    if (sh == 1) {
      wb.assign(group * blocks * per_block, 0.0f);
      for (int64_t g = 0; g < group; ++g)
        for (int64_t bi = 0; bi < blocks; ++bi) {
          const int64_t o0 = g * per_group + bi * kBlock;
          const int64_t nb = std::min(kBlock, (g + 1) * per_group - o0);
          float* wt = wb.data() + (g * blocks + bi) * per_block;
          for (int64_t ic = 0; ic < cg; ++ic)
            for (int64_t i = 0; i < kh; ++i)
              for (int64_t j = 0; j < kw; ++j)
                for (int64_t b = 0; b < nb; ++b)
                  wt[((ic * kh + i) * kw + j) * kBlock + b] = tap(o0 + b, ic, i, j);
        }
    }
    // The padded columns that hold input (the others are padding).
    const int64_t q0 = std::min(pw, wp), q1 = std::min(wp, wd + pw);
    for (int64_t g = 0; g < group; ++g)
      for (int64_t t0 = r0; t0 < r1; t0 += rows) {
        const int64_t t1 = std::min(r1, t0 + rows), hp = (t1 - t0 - 1) * sh + reach;
        const int64_t top = t0 * sh - ph;  // the input row of the tile's first padded row
        xp.assign(cg * hp * wp + slack, 0.0f);
        for (int64_t ic = 0; ic < cg && q1 > q0; ++ic)
          for (int64_t yp = 0; yp < hp; ++yp) {
            const int64_t yy = top + yp;
            if (yy < 0 || yy >= h) continue;
            const float* xr = x + ((g * cg + ic) * h + yy) * wd;
            std::copy(xr + (q0 - pw), xr + (q1 - pw), xp.data() + (ic * hp + yp) * wp + q0);
          }
        if (sh == 1) {
          // kBlock output channels times kSpan outputs of the tile's padded plane at a time, their
          // sums held in registers over every tap (in the order (ic, i, j), as below), each input
          // register loaded once for the kBlock channels. Channels past a group's end are not
          // stored; outputs past the tile's end (read from the slack) are dropped.
          const int64_t n = (t1 - t0) * wp, nr = (n + kSpan - 1) / kSpan * kSpan;
          row.resize(kBlock * nr);
          for (int64_t bi = 0; bi < blocks; ++bi) {
            const int64_t o0 = g * per_group + bi * kBlock;
            const int64_t nb = std::min(kBlock, (g + 1) * per_group - o0);
            const float* wblock = wb.data() + (g * blocks + bi) * per_block;
            for (int64_t e0 = 0; e0 < n; e0 += kSpan) {
              Vector acc[kBlock][kVectors] = {};
              const float* wt = wblock;
              for (int64_t ic = 0; ic < cg; ++ic) {
                const float* xc = xp.data() + ic * hp * wp + e0;
                for (int64_t i = 0; i < kh; ++i)
                  for (int64_t j = 0; j < kw; ++j, wt += kBlock) {
                    const float* xt = xc + i * dh * wp + j * dw;
                    Vector xv[kVectors];
                    for (int64_t v = 0; v < kVectors; ++v) xv[v] = load(xt + v * kVector);
                    for (int64_t b = 0; b < kBlock; ++b)
                      for (int64_t v = 0; v < kVectors; ++v)
                        acc[b][v] = madd(xv[v], wt[b], acc[b][v]);
                  }
              }
              for (int64_t b = 0; b < kBlock; ++b)
                for (int64_t v = 0; v < kVectors; ++v)
                  if (b < nb) store(row.data() + b * nr + e0 + v * kVector, acc[b][v]);
            }
            for (int64_t b = 0; b < nb; ++b)
              for (int64_t r = t0; r < t1; ++r) {
                float* yr = y + ((o0 + b) * oh + r) * ow;
                const float* ar = row.data() + b * nr + (r - t0) * wp;
                const float bo = bias[o0 + b];
                for (int64_t q = 0; q < ow; ++q) yr[q] = clamp(ar[q] + bo, act);
              }
          }
          continue;
        }
        // Strided down the columns: an output channel at a time, a row of the tile per tap.
        row.resize((t1 - t0) * wp);
        float* acc = row.data();
        for (int64_t o = g * per_group; o < (g + 1) * per_group; ++o) {
          std::fill(acc, acc + (t1 - t0) * wp, 0.0f);
          for (int64_t ic = 0; ic < cg; ++ic) {
            const float* xc = xp.data() + ic * hp * wp;
            for (int64_t i = 0; i < kh; ++i)
              for (int64_t j = 0; j < kw; ++j) {
                const float v = tap(o, ic, i, j);
                for (int64_t r = 0; r < t1 - t0; ++r)
                  add(v, xc + (r * sh + i * dh) * wp + j * dw, 1, acc + r * wp, ow);
              }
          }
          for (int64_t r = t0; r < t1; ++r) {
            float* yr = y + (o * oh + r) * ow;
            const float* ar = acc + (r - t0) * wp;
            for (int64_t q = 0; q < ow; ++q) yr[q] = clamp(ar[q] + bias[o], act);
          }
        }
      }
    return;
  }
  row.resize(ow);
  float* acc = row.data();
  for (int64_t o = 0; o < m; ++o) {
    const int64_t g = o / per_group;
    for (int64_t r = r0; r < r1; ++r) {
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
      for (int64_t q = 0; q < ow; ++q) yr[q] = clamp(acc[q] + bias[o], act);
    }
  }
}

void conv(const float* x, const float* w, const float* bias, const ConvShape& s, int64_t group,
          const Clamp& act, int64_t r0, int64_t r1, float* y) {
  const int64_t cg = s.c / group, n = s.m * cg * s.kh * s.kw;
  bool finite = true;
  for (int64_t e = 0; finite && e < n; ++e) finite = std::isfinite(w[e]);

  convolve(x, bias, s, group, finite, act, r0, r1, y,
           [&](int64_t o, int64_t ic, int64_t i, int64_t j) {
             return w[((o * cg + ic) * s.kh + i) * s.kw + j];
           });
}

void ternary_conv(const float* x, const int8_t* t, const float* alpha, const float* bias,
                  const ConvShape& s, int64_t group, const Clamp& act, int64_t r0, int64_t r1,
                  float* y) {
  const int64_t cg = s.c / group;
  bool finite = true;
  for (int64_t o = 0; finite && o < s.m; ++o) finite = std::isfinite(alpha[o]);
  convolve(x, bias, s, group, finite, act, r0, r1, y,
           [&](int64_t o, int64_t ic, int64_t i, int64_t j) {
             return static_cast<float>(t[((o * cg + ic) * s.kh + i) * s.kw + j]) * alpha[o];
           });
}

void dense(const float* x, const float* wt, int64_t ldw, const float* bias, int64_t k, int64_t m,
           const Clamp& act, float* y) {
  // Blocks of 4 registers of outputs, each summed over the inputs in order from 0.
  constexpr int64_t kOutputs = 4 * kVector;
  int64_t o0 = 0;
  for (; o0 + kOutputs <= m; o0 += kOutputs) {
    Vector acc[4] = {};
    for (int64_t i = 0; i < k; ++i) {
      const float* row = wt + i * ldw + o0;
      const float xi = x[i];
      for (int j = 0; j < 4; ++j) acc[j] = madd(load(row + j * kVector), xi, acc[j]);
    }
    float sums[kOutputs];
    for (int j = 0; j < 4; ++j) store(sums + j * kVector, acc[j]);
    for (int64_t o = 0; o < kOutputs; ++o) y[o0 + o] = clamp(sums[o] + bias[o0 + o], act);
  }
  for (; o0 < m; ++o0) {
    float acc = 0;
    for (int64_t i = 0; i < k; ++i) acc = std::fma(x[i], wt[i * ldw + o0], acc);
    y[o0] = clamp(acc + bias[o0], act);
  }
}

}  // namespace LOWBIT_FLOAT32_ISA
}  // namespace float32
}  // namespace engine
}  // namespace lowbit
