// The binary convolution with AVX-512 VPOPCNTDQ: eight output channels per vector. The weights are
// interleaved so that the eight channels' words of one tap and word index are adjacent:
// w[((t * cw + k) * mp) + o] for tap t, word k and output channel o (mp: m rounded up to 8, the
// extra channels' words 0). Compiled with -mavx512f -mavx512dq -mavx512vl -mavx512vpopcntdq;
// chosen at run time.
//
// The input is first copied into a padded image whose padding holds +1 (words of 0), so that every
// window is whole and tiles of 8 or 16 output pixels (in row-major order, across rows) share each
// weight load without bounds checks. A tap in the padding then adds the kernel's own sum over that
// tap, c - 2 popcount(w), which is subtracted again for the pixels at the border (zero padding
// contributes nothing). Each 8 pixels x 8 channels of a tile are transposed in registers, so that
// each channel's 8 adjacent outputs are one store.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "lowbit/engine/kernels/binary.h"

namespace lowbit {
namespace engine {
namespace binary {
namespace avx512 {

namespace {

// Rows of an 8x8 matrix of floats become its columns.
inline void transpose8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20), r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20), r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31), r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31), r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// NB blocks of 8 output channels from o0 over every pixel, in tiles of P pixels (8 or 16): each
// broadcast input word meets NB weight vectors, each weight vector P input words (with NB = 1 the
// broadcast folds into the XOR as a memory operand).
// kBits: the sums' thresholded signs as bits (one byte of 8 channels per pixel) instead of floats.
template <int NB, int P, bool kBits>
void tile_channels(const uint64_t* xp, const uint64_t* w, const float* scale, const float* bias,
                   const ConvShape& s, const int32_t* tap_sum, const uint8_t* border, int64_t cw,
                   int64_t mp, int64_t wp, const int64_t* offs, int64_t o0, float* y,
                   const int32_t* t, const uint8_t* below, uint64_t* bits) {
  const int64_t plane = s.oh * s.ow, taps = s.kh * s.kw, words_per_window = taps * cw;
  const bool narrow = taps * s.c < (int64_t{1} << 31);  // every sum fits int32
  const __m512i all = _mm512_set1_epi64(taps * s.c);
  __m256 scale8[NB], bias8[NB];
  __m512i t8[NB];
  __mmask8 below8[NB], valid8[NB];
  const int64_t mw = words(s.m);
  for (int k = 0; k < NB && kBits; ++k) {
    alignas(64) int64_t tv[8];
    unsigned lanes = 0, valid = 0;
    for (int l = 0; l < 8; ++l) {
      const int64_t o = o0 + 8 * k + l;
      tv[l] = o < s.m ? t[o] : 0;
      lanes |= (o < s.m && below[o] ? 1u : 0u) << l;
      valid |= (o < s.m ? 1u : 0u) << l;
    }
    t8[k] = _mm512_load_si512(tv);
    below8[k] = static_cast<__mmask8>(lanes), valid8[k] = static_cast<__mmask8>(valid);
  }
  for (int k = 0; k < NB && !kBits; ++k) {
    alignas(32) float sv[8], bv[8];
    for (int l = 0; l < 8; ++l) {
      const int64_t o = o0 + 8 * k + l;
      sv[l] = o < s.m ? scale[o] : 0.0f;
      bv[l] = o < s.m ? bias[o] : 0.0f;
    }
    scale8[k] = _mm256_load_ps(sv), bias8[k] = _mm256_load_ps(bv);
  }
  for (int64_t p0 = 0; p0 < plane; p0 += P) {
    const int64_t np = std::min<int64_t>(P, plane - p0);
    const uint64_t* base[P];
    int64_t rows[P], cols[P];
    int64_t r = p0 / s.ow, q = p0 % s.ow;  // one division per tile, then steps
    for (int p = 0; p < P; ++p) {
      rows[p] = r, cols[p] = q;
      base[p] = xp + (r * s.stride_h * wp + q * s.stride_w) * cw;
      if (p + 1 < np && ++q == s.ow) q = 0, ++r;  // extra pixels repeat the last
    }
    __m512i acc[P][NB];
    for (auto& row : acc)
      for (auto& a : row) a = _mm512_setzero_si512();
    // Every tap's words in one loop: word e = t * cw + k of the window at offset offs[e], its
    // weights at row e of the interleaved kernel.
    const uint64_t* wt = w + o0;
    for (int64_t e = 0; e < words_per_window; ++e, wt += mp) {
      const int64_t off = offs[e];
      __m512i wv[NB];
      for (int b = 0; b < NB; ++b) wv[b] = _mm512_loadu_si512(wt + 8 * b);
      for (int p = 0; p < P; ++p) {
        const __m512i xv = _mm512_set1_epi64(static_cast<long long>(base[p][off]));
        for (int b = 0; b < NB; ++b)
          acc[p][b] = _mm512_add_epi64(acc[p][b], _mm512_popcnt_epi64(_mm512_xor_epi64(xv, wv[b])));
      }
    }
    uint64_t flags[P / 8];  // one flag byte per pixel of the tile (16 more after the plane)
    std::memcpy(flags, border + p0, sizeof flags);
    uint64_t any_border = 0;
    for (uint64_t f : flags) any_border |= f;
    for (int b = 0; b < NB; ++b) {
      const int64_t ob = o0 + 8 * b;
      __m256 v[P];
      for (int p = 0; p < P; ++p) {
        __m512i sum = _mm512_sub_epi64(all, _mm512_slli_epi64(acc[p][b], 1));
        // A pixel whose window leaves the image: its padding taps' sums go back out.
        if (any_border != 0 && border[p0 + std::min<int64_t>(p, np - 1)] != 0) {
          const int64_t y0 = rows[p] * s.stride_h - s.pad_h, x0 = cols[p] * s.stride_w - s.pad_w;
          __m256i outside = _mm256_setzero_si256();
          for (int64_t i = 0; i < s.kh; ++i) {
            const int64_t yy = y0 + i * s.dil_h;
            for (int64_t j = 0; j < s.kw; ++j) {
              const int64_t xx = x0 + j * s.dil_w;
              if (yy >= 0 && yy < s.h && xx >= 0 && xx < s.w) continue;
              outside =
                  _mm256_add_epi32(outside, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(
                                                tap_sum + (i * s.kw + j) * mp + ob)));
            }
          }
          sum = _mm512_sub_epi64(sum, _mm512_cvtepi32_epi64(outside));
        }
        if (kBits) {
          if (p < np) {
            const __mmask8 lt = _mm512_cmplt_epi64_mask(sum, t8[b]),
                           gt = _mm512_cmpgt_epi64_mask(sum, t8[b]);
            reinterpret_cast<uint8_t*>(bits + (p0 + p) * mw)[ob / 8] =
                static_cast<uint8_t>(((lt & below8[b]) | (gt & ~below8[b])) & valid8[b]);
          }
          continue;
        }
        // |sum| <= taps * c: below 2^31 (every layer within the default limits) through int32,
        // cheaper than the 64-bit conversion; both round to nearest (exact below 2^24), and the
        // product and the sum round once each, as the scalar kernel's do.
        const __m256 f =
            narrow ? _mm256_cvtepi32_ps(_mm512_cvtepi64_epi32(sum)) : _mm512_cvtepi64_ps(sum);
        v[p] = _mm256_add_ps(_mm256_mul_ps(f, scale8[b]), bias8[b]);
      }
      if (kBits) continue;
      for (int h = 0; h < P; h += 8) {
        transpose8(v + h);  // v[h + l]: channel ob + l at the tile's pixels h .. h + 7
        const int64_t n = std::min<int64_t>(8, np - h);
        if (n <= 0) break;
        const __mmask8 keep = static_cast<__mmask8>((1u << n) - 1);
        for (int64_t l = 0; l < 8 && ob + l < s.m; ++l) {
          float* out = y + (ob + l) * plane + p0 + h;
          if (n == 8) {
            _mm256_storeu_ps(out, v[h + l]);
          } else {
            _mm256_mask_storeu_ps(out, keep, v[h + l]);
          }
        }
      }
    }
  }
}

// One output pixel whose window lies inside the image (dense layers planned as convolutions by a
// kernel as large as the image): the window's words in order against eight channels at a time,
// no padding, tiles or border corrections; the same sums and the same conversion as the tiles'.
template <bool kBits>
void single_pixel(const uint64_t* x, const uint64_t* w, const float* scale, const float* bias,
                  const int32_t* t, const uint8_t* below, const ConvShape& s, int64_t cw,
                  int64_t mp, float* y, uint64_t* bits) {
  const __m512i all = _mm512_set1_epi64(s.kh * s.kw * s.c);
  for (int64_t ob = 0; ob < mp; ob += 8) {
    __m512i acc = _mm512_setzero_si512();
    for (int64_t i = 0; i < s.kh; ++i)
      for (int64_t j = 0; j < s.kw; ++j) {
        const uint64_t* xt = x + (i * s.dil_h * s.w + j * s.dil_w) * cw;
        const uint64_t* wt = w + (i * s.kw + j) * cw * mp + ob;
        for (int64_t k = 0; k < cw; ++k) {
          const __m512i xv = _mm512_set1_epi64(static_cast<long long>(xt[k]));
          acc = _mm512_add_epi64(
              acc, _mm512_popcnt_epi64(_mm512_xor_si512(xv, _mm512_loadu_si512(wt + k * mp))));
        }
      }
    const __m512i sum = _mm512_sub_epi64(all, _mm512_slli_epi64(acc, 1));
    const int64_t n = std::min<int64_t>(8, s.m - ob);
    const __mmask8 valid = static_cast<__mmask8>((1u << n) - 1);
    if (kBits) {
      alignas(64) int64_t tv[8] = {};
      unsigned lanes = 0;
      for (int64_t l = 0; l < n; ++l) tv[l] = t[ob + l], lanes |= (below[ob + l] ? 1u : 0u) << l;
      const __m512i t8 = _mm512_load_si512(tv);
      const __mmask8 lt = _mm512_cmplt_epi64_mask(sum, t8), gt = _mm512_cmpgt_epi64_mask(sum, t8);
      const __mmask8 b8 = static_cast<__mmask8>(lanes);
      reinterpret_cast<uint8_t*>(bits)[ob / 8] =
          static_cast<uint8_t>(((lt & b8) | (gt & ~b8)) & valid);
      continue;
    }
    const __m256 v = _mm256_add_ps(
        _mm256_mul_ps(_mm512_cvtepi64_ps(sum), _mm256_maskz_loadu_ps(valid, scale + ob)),
        _mm256_maskz_loadu_ps(valid, bias + ob));
    _mm256_mask_storeu_ps(y + ob, valid, v);
  }
}

// Pads the input, then runs the tiles of every 16 channels.
template <bool kBits>
void run(const uint64_t* x, const uint64_t* w, const float* scale, const float* bias,
         const int32_t* t, const uint8_t* below, const ConvShape& s, float* y, uint64_t* bits) {
  const int64_t cw = words(s.c), mp = (s.m + 7) / 8 * 8, taps = s.kh * s.kw;
  if (s.oh * s.ow == 1 && s.pad_h == 0 && s.pad_w == 0) {
    single_pixel<kBits>(x, w, scale, bias, t, below, s, cw, mp, y, bits);
    return;
  }
  const int64_t hp = (s.oh - 1) * s.stride_h + (s.kh - 1) * s.dil_h + 1;
  const int64_t wp = (s.ow - 1) * s.stride_w + (s.kw - 1) * s.dil_w + 1;
  // The padded input (+1 outside the image).
  thread_local std::vector<uint64_t> padded;
  padded.assign(hp * wp * cw, 0);
  for (int64_t yy = 0; yy < s.h; ++yy) {
    const int64_t yp = yy + s.pad_h;
    if (yp >= hp) break;
    const int64_t n = std::min<int64_t>(s.w, wp - s.pad_w);
    if (n > 0)
      std::copy(x + yy * s.w * cw, x + (yy * s.w + n) * cw,
                padded.data() + (yp * wp + s.pad_w) * cw);
  }
  // Each channel's sum over each tap, c - 2 popcount(w): what a +1 padding tap adds.
  thread_local std::vector<int32_t> tap_sum;
  tap_sum.assign(taps * mp, 0);
  for (int64_t t = 0; t < taps; ++t)
    for (int64_t o = 0; o < mp; ++o) {
      int64_t ones = 0;
      for (int64_t k = 0; k < cw; ++k) ones += __builtin_popcountll(w[(t * cw + k) * mp + o]);
      tap_sum[t * mp + o] = static_cast<int32_t>(s.c - 2 * ones);
    }
  const uint64_t* xp = padded.data();
  // Which output pixels' windows leave the image.
  thread_local std::vector<uint8_t> border;
  border.assign(s.oh * s.ow + 16, 0);
  for (int64_t r = 0; r < s.oh; ++r)
    for (int64_t q = 0; q < s.ow; ++q) {
      const int64_t y0 = r * s.stride_h - s.pad_h, x0 = q * s.stride_w - s.pad_w;
      border[r * s.ow + q] =
          y0 < 0 || x0 < 0 || y0 + (s.kh - 1) * s.dil_h >= s.h || x0 + (s.kw - 1) * s.dil_w >= s.w;
    }
  // The input offset of each word of a window, taps (i, j) then words in order.
  thread_local std::vector<int64_t> offs;
  offs.resize(taps * cw);
  for (int64_t i = 0; i < s.kh; ++i)
    for (int64_t j = 0; j < s.kw; ++j)
      for (int64_t k = 0; k < cw; ++k)
        offs[(i * s.kw + j) * cw + k] = (i * s.dil_h * wp + j * s.dil_w) * cw + k;
  // Planes of 64 pixels or more: 8 channels x 16 pixels per tile (one weight vector meets 16
  // words, each broadcast folded into its XOR); smaller ones: 16 channels x 8 pixels (less of a
  // last tile wasted).
  const bool wide = s.oh * s.ow >= 64;
  for (int64_t o0 = 0; o0 < mp; o0 += wide ? 8 : 16) {
    if (wide) {
      tile_channels<1, 16, kBits>(xp, w, scale, bias, s, tap_sum.data(), border.data(), cw, mp, wp,
                                  offs.data(), o0, y, t, below, bits);
    } else if (o0 + 8 < mp) {
      tile_channels<2, 8, kBits>(xp, w, scale, bias, s, tap_sum.data(), border.data(), cw, mp, wp,
                                 offs.data(), o0, y, t, below, bits);
    } else {
      tile_channels<1, 8, kBits>(xp, w, scale, bias, s, tap_sum.data(), border.data(), cw, mp, wp,
                                 offs.data(), o0, y, t, below, bits);
    }
  }
}

}  // namespace

void conv(const uint64_t* x, const uint64_t* w, const float* scale, const float* bias,
          const ConvShape& s, float* y) {
  run<false>(x, w, scale, bias, nullptr, nullptr, s, y, nullptr);
}

void conv_bits(const uint64_t* x, const uint64_t* w, const int32_t* t, const uint8_t* below,
               const ConvShape& s, uint64_t* out) {
  std::fill(out, out + words(s.m) * s.oh * s.ow, uint64_t{0});
  run<true>(x, w, nullptr, nullptr, t, below, s, nullptr, out);
}

void signs(const float* x, int64_t c, int64_t h, int64_t w, Minus minus, uint64_t* out) {
  LOWBIT_BINARY_SIGNS_BODY(x, c, h, w, minus, out)
}

}  // namespace avx512
}  // namespace binary
}  // namespace engine
}  // namespace lowbit
