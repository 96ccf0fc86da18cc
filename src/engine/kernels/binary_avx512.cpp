// The binary convolution with AVX-512 VPOPCNTDQ: eight output channels per vector. The weights
// are packed in blocks of eight channels (binary.h's pack_blocked), so that one block's window is
// one stream of 64-byte rows, w[(o / 8 * taps * cw + t * cw + k) * 8 + o % 8] for tap t, word k and
// output channel o (m rounded up to 8, the extra channels' words 0), followed by each channel's
// sum over each tap (below). Compiled with -mavx512f -mavx512dq -mavx512vl -mavx512vpopcntdq;
// chosen at run time.
//
// The input is first copied into a padded image whose padding holds +1 (words of 0), so that every
// window is whole and tiles of 8 or 16 output pixels (in row-major order, across rows) share each
// weight load without bounds checks. A tap in the padding then adds the kernel's own sum over that
// tap, c - 2 popcount(w) (computed when the weights are packed): the pixels at the border fall in a
// few classes (which kernel rows and columns lie inside the image), and each class's sum of those
// sums is subtracted again (zero padding contributes nothing). A tile's sums of two pixels at a
// time become floats in one vector of 16, and the tile is transposed in registers so that each
// channel's outputs are one store; as bits, each pixel's 8 channels are one byte.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "lowbit/engine/kernels/binary.h"

namespace lowbit {
namespace engine {
namespace binary {
namespace avx512 {

namespace {

// What the tiles share: the padded input, the weights, the corrections at the border and the
// output.
struct Plan {
  const ConvShape* s = nullptr;
  const uint64_t* xp = nullptr;  // the padded input
  const uint64_t* w = nullptr;
  int64_t cw = 0, mp = 0, wp = 0;
  const int64_t* offs = nullptr;   // the input offset of each word of a window
  const int64_t* pixel = nullptr;  // each output pixel's window in the input (then P repeats)
  // The border: each output pixel's class (0: its window inside the image; P zeros follow the
  // plane) and each class's correction per channel, [class][mp] (what its padding taps added).
  const int32_t* cls = nullptr;
  const int32_t* corr = nullptr;
  const float *scale = nullptr, *bias = nullptr;
  const int32_t* t = nullptr;
  const uint8_t* below = nullptr;
  float* y = nullptr;
  uint64_t* bits = nullptr;
};

// Four registers of 16 floats as 4x4 blocks in each 128-bit lane, each block transposed:
// r[i] lane block j, element e becomes r[e] lane block j, element i.
inline void transpose_blocks(__m512& r0, __m512& r1, __m512& r2, __m512& r3) {
  const __m512d a0 = _mm512_castps_pd(_mm512_unpacklo_ps(r0, r1));
  const __m512d a1 = _mm512_castps_pd(_mm512_unpackhi_ps(r0, r1));
  const __m512d a2 = _mm512_castps_pd(_mm512_unpacklo_ps(r2, r3));
  const __m512d a3 = _mm512_castps_pd(_mm512_unpackhi_ps(r2, r3));
  r0 = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a2));
  r1 = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a2));
  r2 = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, a3));
  r3 = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, a3));
}

// 16 pixels x 8 channels: z[k] holds pixel k (channels 0-7) then pixel k + 4 for k < 4, and
// pixel k + 4 then k + 8 for k >= 4 (pairs (p, p + 4)); after, z[c] holds channel c at pixels
// 0-15. In-lane shuffles, then one block shuffle per register.
inline void transpose16x8(__m512 z[8]) {
  transpose_blocks(z[0], z[1], z[2], z[3]);  // z[i]: channels i, i + 4 at pixels 0-3, 4-7
  transpose_blocks(z[4], z[5], z[6], z[7]);  // the same at pixels 8-11, 12-15
  __m512 out[8];
  for (int i = 0; i < 4; ++i) {
    out[i] = _mm512_shuffle_f32x4(z[i], z[i + 4], _MM_SHUFFLE(2, 0, 2, 0));
    out[i + 4] = _mm512_shuffle_f32x4(z[i], z[i + 4], _MM_SHUFFLE(3, 1, 3, 1));
  }
  for (int i = 0; i < 8; ++i) z[i] = out[i];
}
// 8 pixels x 8 channels: z[k] holds pixel k then pixel k + 4; after, z[c] holds channel c at
// pixels 0-7, then channel c + 4.
inline void transpose8x8(__m512 z[4]) {
  transpose_blocks(z[0], z[1], z[2], z[3]);
  for (int i = 0; i < 4; ++i) z[i] = _mm512_shuffle_f32x4(z[i], z[i], _MM_SHUFFLE(3, 1, 2, 0));
}

// NB blocks of 8 output channels from o0 over every pixel, in tiles of P pixels (8 or 16): each
// broadcast input word meets NB weight vectors, each weight vector P input words (with NB = 1 the
// broadcast folds into the XOR as a memory operand).
// kBits: the sums' thresholded signs as bits (one byte of 8 channels per pixel) instead of floats.
template <int NB, int P, bool kBits>
void tile_channels(const Plan& g, int64_t o0) {
  const ConvShape& s = *g.s;
  const int64_t plane = s.oh * s.ow, taps = s.kh * s.kw, words_per_window = taps * g.cw;
  const __m512i all = _mm512_set1_epi64(taps * s.c), all32 = _mm512_set1_epi32(taps * s.c);
  const int64_t mw = words(s.m);
  const __m512i low_halves =
      _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  __m512 scale16[NB], bias16[NB];
  __m512i t8[NB], flip8[NB], ta8[NB];
  __mmask8 below8[NB], valid8[NB];
  for (int k = 0; k < NB; ++k) {
    // ta: the thresholds on the popcounts a of a window inside the image (n = taps c - 2a,
    // u = taps c - t): n < t is a > floor(u / 2); n > t is a < ceil(u / 2), that is
    // ~a > ~ceil(u / 2): one comparison of a ^ flip with ta.
    alignas(64) int64_t tv[8] = {}, ta[8] = {};
    alignas(64) float sv[16] = {}, bv[16] = {};
    unsigned lanes = 0, valid = 0;
    for (int l = 0; l < 8; ++l) {
      const int64_t o = o0 + 8 * k + l;
      if (o >= s.m) continue;
      valid |= 1u << l;
      if (kBits) {
        tv[l] = g.t[o];
        const int64_t u = taps * s.c - tv[l];
        ta[l] = g.below[o] ? u >> 1 : ~-((-u) >> 1);
        lanes |= (g.below[o] ? 1u : 0u) << l;
      } else {
        sv[l] = sv[l + 8] = g.scale[o], bv[l] = bv[l + 8] = g.bias[o];
      }
    }
    t8[k] = _mm512_load_si512(tv), ta8[k] = _mm512_load_si512(ta);
    below8[k] = static_cast<__mmask8>(lanes), valid8[k] = static_cast<__mmask8>(valid);
    flip8[k] = _mm512_maskz_set1_epi64(static_cast<__mmask8>(~lanes), -1);
    scale16[k] = _mm512_load_ps(sv), bias16[k] = _mm512_load_ps(bv);
  }
  for (int64_t p0 = 0; p0 < plane; p0 += P) {
    const int64_t np = std::min<int64_t>(P, plane - p0);
    const uint64_t* base[P];
#pragma GCC unroll 16
    for (int p = 0; p < P; ++p) base[p] = g.xp + g.pixel[p0 + p];
    __m512i acc[P][NB];  // in registers: every loop over it unrolled
#pragma GCC unroll 16
    for (int p = 0; p < P; ++p)
#pragma GCC unroll 4
      for (int b = 0; b < NB; ++b) acc[p][b] = _mm512_setzero_si512();
    // Every tap's words in one loop: word e = t * cw + k of the window at offset offs[e], its
    // weights at row e of the block.
    const uint64_t* wt = g.w + o0 * words_per_window;
    for (int64_t e = 0; e < words_per_window; ++e, wt += 8) {
      const int64_t off = g.offs[e];
      __m512i wv[NB];
#pragma GCC unroll 4
      for (int b = 0; b < NB; ++b) wv[b] = _mm512_loadu_si512(wt + 8 * b * words_per_window);
#pragma GCC unroll 16
      for (int p = 0; p < P; ++p) {
        const __m512i xv = _mm512_set1_epi64(static_cast<long long>(base[p][off]));
#pragma GCC unroll 4
        for (int b = 0; b < NB; ++b)
          acc[p][b] = _mm512_add_epi64(acc[p][b], _mm512_popcnt_epi64(_mm512_xor_epi64(xv, wv[b])));
      }
    }
    const int32_t* cls = g.cls + p0;
    int32_t any_border = 0;
#pragma GCC unroll 16
    for (int p = 0; p < P; ++p) any_border |= cls[p];
#pragma GCC unroll 4
    for (int b = 0; b < NB; ++b) {
      const int64_t ob = o0 + 8 * b;
      const int32_t* corr = g.corr + ob;  // + class * mp
      if (kBits) {
        auto* out = reinterpret_cast<uint8_t*>(g.bits + p0 * mw) + ob / 8;
#pragma GCC unroll 16
        for (int p = 0; p < P; ++p) {
          if (p >= np) break;
          __mmask8 sign;
          if (any_border == 0 || cls[p] == 0) {
            sign = _mm512_cmpgt_epi64_mask(_mm512_xor_si512(acc[p][b], flip8[b]), ta8[b]);
          } else {  // its padding taps' sums go back out, then n and t compared
            const __m512i n = _mm512_sub_epi64(
                _mm512_sub_epi64(all, _mm512_slli_epi64(acc[p][b], 1)),
                _mm512_cvtepi32_epi64(
                    _mm256_loadu_si256(reinterpret_cast<const __m256i*>(corr + cls[p] * g.mp))));
            sign = (_mm512_cmplt_epi64_mask(n, t8[b]) & below8[b]) |
                   (_mm512_cmpgt_epi64_mask(n, t8[b]) & ~below8[b]);
          }
          out[p * mw * 8] = static_cast<uint8_t>(sign & valid8[b]);
        }
        continue;
      }
      // Pixels p and p + 4 side by side: n = taps c - 2a less the padding's sums, then
      // n * scale + bias (the product and the sum round once each, as the scalar kernel's).
      __m512 z[P / 2];
#pragma GCC unroll 8
      for (int k = 0; k < P / 2; ++k) {
        const int p = k % 4 + k / 4 * 8;  // pixels p and p + 4 (the transposes' pairs)
        const int32_t c0 = cls[p], c1 = cls[p + 4];
        const auto* corr0 = reinterpret_cast<const __m256i*>(corr + c0 * g.mp);
        const auto* corr1 = reinterpret_cast<const __m256i*>(corr + c1 * g.mp);
        // |n| <= taps c < 2^31 (run() checks): int32 lanes, 16 at a time. The low halves of
        // both pixels' 64-bit popcounts, one permute.
        __m512i n = _mm512_permutex2var_epi32(acc[p][b], low_halves, acc[p + 4][b]);
        n = _mm512_sub_epi32(all32, _mm512_slli_epi32(n, 1));
        if ((c0 | c1) != 0)
          n = _mm512_sub_epi32(n,
                               _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(corr0)),
                                                  _mm256_loadu_si256(corr1), 1));
        const __m512 f = _mm512_cvtepi32_ps(n);
        z[k] = _mm512_add_ps(_mm512_mul_ps(f, scale16[b]), bias16[b]);
      }
      float* out = g.y + ob * plane + p0;
      if (P == 16) {
        transpose16x8(z);  // z[c]: channel ob + c at the tile's 16 pixels
        const __mmask16 keep = static_cast<__mmask16>((1u << np) - 1);
#pragma GCC unroll 8
        for (int c = 0; c < 8; ++c) {
          if (ob + c >= s.m) break;
          if (np == 16) {
            _mm512_storeu_ps(out + c * plane, z[c]);
          } else {
            _mm512_mask_storeu_ps(out + c * plane, keep, z[c]);
          }
        }
      } else {
        transpose8x8(z);  // z[c]: channel ob + c at the tile's 8 pixels, then channel ob + c + 4
        const __mmask8 keep = static_cast<__mmask8>((1u << np) - 1);
#pragma GCC unroll 8
        for (int c = 0; c < 8; ++c) {
          if (ob + c >= s.m) break;
          const __m256 v =
              c < 4 ? _mm512_castps512_ps256(z[c % 4]) : _mm512_extractf32x8_ps(z[c % 4], 1);
          if (np == 8) {
            _mm256_storeu_ps(out + c * plane, v);
          } else {
            _mm256_mask_storeu_ps(out + c * plane, keep, v);
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
        const uint64_t* wt = w + ob * s.kh * s.kw * cw + (i * s.kw + j) * cw * 8;
        for (int64_t k = 0; k < cw; ++k) {
          const __m512i xv = _mm512_set1_epi64(static_cast<long long>(xt[k]));
          acc = _mm512_add_epi64(
              acc, _mm512_popcnt_epi64(_mm512_xor_si512(xv, _mm512_loadu_si512(wt + k * 8))));
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
  if (s.oh * s.ow == 0) return;
  // Every sum, and every border class's correction, within int32 (layers within the engine's
  // default limits are far below).
  if (taps * s.c >= (int64_t{1} << 31))
    throw std::invalid_argument("binary avx512 kernel: kh * kw * c must be below 2^31, got " +
                                std::to_string(taps * s.c));
  // One output pixel whose window lies wholly inside the image (no padding on any side).
  if (s.oh * s.ow == 1 && s.pad_h == 0 && s.pad_w == 0 && (s.kh - 1) * s.dil_h < s.h &&
      (s.kw - 1) * s.dil_w < s.w) {
    single_pixel<kBits>(x, w, scale, bias, t, below, s, cw, mp, y, bits);
    return;
  }
  using aliased_int32 = int32_t __attribute__((may_alias));  // read from uint64_t storage
  const aliased_int32* tap_sums = reinterpret_cast<const aliased_int32*>(w + taps * cw * mp);
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
  const uint64_t* xp = padded.data();
  // The border: an output row's taps inside the image are a range of kernel rows, a column's a
  // range of kernel columns; each pair of ranges met at the border is a class, with what its
  // padding taps added per channel.
  auto inside = [](int64_t start, int64_t step, int64_t taps, int64_t size) {
    int64_t lo = 0, hi = taps;  // taps [lo, hi) inside [0, size)
    while (lo < taps && start + lo * step < 0) ++lo;
    while (hi > lo && start + (hi - 1) * step >= size) --hi;
    return std::make_pair(lo, hi);
  };
  std::vector<std::pair<int64_t, int64_t>> row_ranges, col_ranges;
  auto id = [](std::vector<std::pair<int64_t, int64_t>>& ranges, std::pair<int64_t, int64_t> r) {
    const auto it = std::find(ranges.begin(), ranges.end(), r);
    if (it != ranges.end()) return static_cast<int32_t>(it - ranges.begin());
    ranges.push_back(r);
    return static_cast<int32_t>(ranges.size() - 1);
  };
  thread_local std::vector<int32_t> row_id, col_id, cls, corr;
  row_ranges.emplace_back(0, s.kh), col_ranges.emplace_back(0, s.kw);  // id 0: whole
  row_id.resize(s.oh), col_id.resize(s.ow);
  for (int64_t r = 0; r < s.oh; ++r)
    row_id[r] = id(row_ranges, inside(r * s.stride_h - s.pad_h, s.dil_h, s.kh, s.h));
  for (int64_t q = 0; q < s.ow; ++q)
    col_id[q] = id(col_ranges, inside(q * s.stride_w - s.pad_w, s.dil_w, s.kw, s.w));
  const int64_t ncol = static_cast<int64_t>(col_ranges.size());
  const int64_t oh = s.oh, ow = s.ow;  // locals: the stores below may alias s for the compiler
  cls.assign(oh * ow + 16, 0);
  for (int64_t r = 0; r < oh; ++r)
    for (int64_t q = 0; q < ow; ++q) cls[r * ow + q] = row_id[r] * ncol + col_id[q];
  corr.assign(row_ranges.size() * ncol * mp, 0);
  for (size_t ri = 0; ri < row_ranges.size(); ++ri)
    for (int64_t ci = 0; ci < ncol; ++ci) {
      int32_t* c = corr.data() + (ri * ncol + ci) * mp;
      for (int64_t i = 0; i < s.kh; ++i)
        for (int64_t j = 0; j < s.kw; ++j) {
          if (i >= row_ranges[ri].first && i < row_ranges[ri].second && j >= col_ranges[ci].first &&
              j < col_ranges[ci].second)
            continue;
          const aliased_int32* ts = tap_sums + (i * s.kw + j) * mp;
          for (int64_t o = 0; o < mp; ++o) c[o] += ts[o];
        }
    }
  // The input offset of each word of a window, taps (i, j) then words in order.
  thread_local std::vector<int64_t> offs;
  offs.resize(taps * cw);
  for (int64_t i = 0; i < s.kh; ++i)
    for (int64_t j = 0; j < s.kw; ++j)
      for (int64_t k = 0; k < cw; ++k)
        offs[(i * s.kw + j) * cw + k] = (i * s.dil_h * wp + j * s.dil_w) * cw + k;
  Plan g;
  g.s = &s, g.xp = xp, g.w = w, g.cw = cw, g.mp = mp, g.wp = wp, g.offs = offs.data();
  // Each output pixel's window, the last repeated for the extra pixels of the last tile.
  thread_local std::vector<int64_t> pixel;
  pixel.resize(oh * ow + 16);
  const int64_t row_step = s.stride_h * wp * cw, col_step = s.stride_w * cw;
  for (int64_t r = 0; r < oh; ++r)
    for (int64_t q = 0; q < ow; ++q) pixel[r * ow + q] = r * row_step + q * col_step;
  std::fill(pixel.begin() + oh * ow, pixel.end(), pixel[oh * ow - 1]);
  g.pixel = pixel.data(), g.cls = cls.data(), g.corr = corr.data();
  g.scale = scale, g.bias = bias, g.t = t, g.below = below, g.y = y, g.bits = bits;
  // Floats on planes of 64 pixels or more: 8 channels x 16 pixels per tile (one weight vector
  // meets 16 words, each broadcast folded into its XOR; measured faster at 56x56); otherwise 16
  // channels x 8 pixels (less of a last tile wasted; bits at 76-89% of the peak against 70-83%).
  const bool wide = !kBits && s.oh * s.ow >= 64;
  for (int64_t o0 = 0; o0 < mp; o0 += wide ? 8 : 16) {
    if (wide) {
      tile_channels<1, 16, kBits>(g, o0);
    } else if (o0 + 8 < mp) {
      tile_channels<2, 8, kBits>(g, o0);
    } else {
      tile_channels<1, 8, kBits>(g, o0);
    }
  }
}

}  // namespace

std::vector<uint64_t> pack(const float* w, int64_t m, int64_t c, int64_t kh, int64_t kw) {
  std::vector<uint64_t> out = pack_blocked(w, m, c, kh, kw, 8);
  // Then each channel's sum over each tap, c - 2 popcount(w) (what a +1 padding tap adds), as
  // int32 [tap][channel] (mp channels).
  const int64_t cw = words(c), mp = (m + 7) / 8 * 8, taps = kh * kw, window = out.size();
  std::vector<int32_t> sums(taps * mp);
  for (int64_t t = 0; t < taps; ++t)
    for (int64_t o = 0; o < mp; ++o) {
      int64_t ones = 0;
      for (int64_t k = 0; k < cw; ++k)
        ones += __builtin_popcountll(out[(o / 8 * taps * cw + t * cw + k) * 8 + o % 8]);
      sums[t * mp + o] = static_cast<int32_t>(c - 2 * ones);
    }
  out.resize(window + (sums.size() + 1) / 2, 0);
  std::memcpy(out.data() + window, sums.data(), sums.size() * sizeof(int32_t));
  return out;
}

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
