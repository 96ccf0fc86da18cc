// The binary convolution with AVX-512 VPOPCNTDQ: eight output channels per vector. The weights are
// interleaved so that the eight channels' words of one tap and word index are adjacent:
// w[((t * cw + k) * mp) + o] for tap t, word k and output channel o (mp: m rounded up to 8, the
// extra channels' words 0). Compiled with -mavx512f -mavx512vpopcntdq; chosen at run time.
#include <immintrin.h>

#include <algorithm>

#include "binary.h"

namespace lowbit {
namespace engine {
namespace binary {
namespace avx512 {

namespace {

// Writes float(taps * c - 2 * mismatches) * scale + bias of eight channels o0.. at one pixel.
inline void store8(__m512i mism, int64_t taps, const ConvShape& s, const float* scale,
                   const float* bias, int64_t o0, int64_t pixel, float* y) {
  const int64_t plane = s.oh * s.ow, n = std::min<int64_t>(8, s.m - o0);
  const __m512i sum = _mm512_sub_epi64(_mm512_set1_epi64(taps * s.c), _mm512_slli_epi64(mism, 1));
  alignas(32) float out[8];
  // |sum| < 2^24 for any realistic layer, so the conversion is exact; the product and the sum
  // round once each, as the scalar kernel's do.
  const __m256 v = _mm512_cvtepi64_ps(sum);
  if (n == 8) {
    _mm256_store_ps(out, _mm256_add_ps(_mm256_mul_ps(v, _mm256_loadu_ps(scale + o0)),
                                       _mm256_loadu_ps(bias + o0)));
  } else {
    _mm256_store_ps(out, v);
    for (int64_t l = 0; l < n; ++l) out[l] = out[l] * scale[o0 + l] + bias[o0 + l];
  }
  for (int64_t l = 0; l < n; ++l) y[(o0 + l) * plane + pixel] = out[l];
}

}  // namespace

void conv(const uint64_t* x, const uint64_t* w, const float* scale, const float* bias,
          const ConvShape& s, float* y) {
  const int64_t cw = words(s.c), mp = (s.m + 7) / 8 * 8;
  constexpr int64_t kBlock = 4;  // output pixels sharing each weight load
  for (int64_t r = 0; r < s.oh; ++r) {
    int64_t i0 = 0, i1 = s.kh;  // the kernel rows inside the image
    while (i0 < i1 && r * s.stride_h - s.pad_h + i0 * s.dil_h < 0) ++i0;
    while (i1 > i0 && r * s.stride_h - s.pad_h + (i1 - 1) * s.dil_h >= s.h) --i1;
    for (int64_t o0 = 0; o0 < mp; o0 += 8) {
      int64_t q = 0;
      while (q < s.ow) {
        const int64_t first = q * s.stride_w - s.pad_w;
        const int64_t last = (q + kBlock - 1) * s.stride_w - s.pad_w + (s.kw - 1) * s.dil_w;
        if (q + kBlock <= s.ow && first >= 0 && last < s.w) {
          // kBlock pixels whose every tap column is inside the image.
          __m512i acc[kBlock];
          for (auto& a : acc) a = _mm512_setzero_si512();
          for (int64_t i = i0; i < i1; ++i) {
            const int64_t yy = r * s.stride_h - s.pad_h + i * s.dil_h;
            for (int64_t j = 0; j < s.kw; ++j) {
              const uint64_t* wp = w + ((i * s.kw + j) * cw) * mp + o0;
              const uint64_t* xp = x + (yy * s.w + first + j * s.dil_w) * cw;
              for (int64_t k = 0; k < cw; ++k) {
                const __m512i wv = _mm512_loadu_si512(wp + k * mp);
                for (int64_t u = 0; u < kBlock; ++u) {
                  const __m512i xv =
                      _mm512_set1_epi64(static_cast<long long>(xp[u * s.stride_w * cw + k]));
                  acc[u] = _mm512_add_epi64(acc[u], _mm512_popcnt_epi64(_mm512_xor_si512(xv, wv)));
                }
              }
            }
          }
          const int64_t taps = (i1 - i0) * s.kw;
          for (int64_t u = 0; u < kBlock; ++u) {
            store8(acc[u], taps, s, scale, bias, o0, r * s.ow + q + u, y);
          }
          q += kBlock;
          continue;
        }
        // One pixel near the border: the taps inside the image only.
        __m512i acc = _mm512_setzero_si512();
        int64_t taps = 0;
        for (int64_t i = i0; i < i1; ++i) {
          const int64_t yy = r * s.stride_h - s.pad_h + i * s.dil_h;
          for (int64_t j = 0; j < s.kw; ++j) {
            const int64_t xx = first + j * s.dil_w;
            if (xx < 0 || xx >= s.w) continue;
            const uint64_t* xp = x + (yy * s.w + xx) * cw;
            const uint64_t* wp = w + ((i * s.kw + j) * cw) * mp + o0;
            for (int64_t k = 0; k < cw; ++k) {
              const __m512i xv = _mm512_set1_epi64(static_cast<long long>(xp[k]));
              const __m512i wv = _mm512_loadu_si512(wp + k * mp);
              acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(xv, wv)));
            }
            ++taps;
          }
        }
        store8(acc, taps, s, scale, bias, o0, r * s.ow + q, y);
        ++q;
      }
    }
  }
}

}  // namespace avx512
}  // namespace binary
}  // namespace engine
}  // namespace lowbit
