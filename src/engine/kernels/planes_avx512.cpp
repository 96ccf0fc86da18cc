// The bit-plane sums with AVX-512 VPOPCNTDQ: eight output channels per vector (binary.h's
// interleaved weights, w[((t * cw + k) * mp) + o]). The planes are first copied into an image
// padded with zero words (code 0: nothing to correct), so that tiles of 4 output pixels x 16
// channels run without bounds checks; each weight vector meets every plane of the 4 pixels, each
// plane's popcounts in its own accumulators, weighted by 2^k once at the end. The popcounts of the
// input alone (the same for every output channel) are summed once per pixel. Compiled with
// -mavx512f -mavx512vpopcntdq; chosen at run time.
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "lowbit/engine/kernels/planes.h"

namespace lowbit {
namespace engine {
namespace planes {
namespace avx512 {

namespace {

constexpr int kPixels = 4;

// Plane k's popcounts in their own accumulators (no shift per step), weighted once at the end.
template <int B, int NB, int NP>
void tile(const uint64_t* const* base, const uint64_t* w, const ConvShape& s,
          const int64_t* tap_offset, int64_t cw, int64_t mp, int64_t o0, const int64_t* ones,
          int64_t p0, int32_t* n) {
  const int64_t taps = s.kh * s.kw, plane = s.oh * s.ow;
  __m512i acc[B][NP][NB];
  for (int k = 0; k < B; ++k)
    for (int p = 0; p < NP; ++p)
      for (int b = 0; b < NB; ++b) acc[k][p][b] = _mm512_setzero_si512();
  for (int64_t t = 0; t < taps; ++t) {
    for (int64_t e = 0; e < cw; ++e) {
      __m512i wv[NB];
      for (int b = 0; b < NB; ++b) wv[b] = _mm512_loadu_si512(w + (t * cw + e) * mp + o0 + 8 * b);
      for (int k = 0; k < B; ++k) {
        for (int p = 0; p < NP; ++p) {
          const __m512i x =
              _mm512_set1_epi64(static_cast<long long>(base[p][tap_offset[t] + k * cw + e]));
          for (int b = 0; b < NB; ++b) {
            acc[k][p][b] =
                _mm512_add_epi64(acc[k][p][b], _mm512_popcnt_epi64(_mm512_and_si512(x, wv[b])));
          }
        }
      }
    }
  }
  for (int p = 0; p < NP; ++p) {
    for (int b = 0; b < NB; ++b) {
      __m512i sum = acc[B - 1][p][b];
      for (int k = B - 2; k >= 0; --k)
        sum = _mm512_add_epi64(_mm512_add_epi64(sum, sum), acc[k][p][b]);
      alignas(64) int64_t v[8];
      _mm512_store_si512(v, sum);
      for (int l = 0; l < 8; ++l) {
        const int64_t o = o0 + 8 * b + l;
        if (o < s.m) n[o * plane + p0 + p] = static_cast<int32_t>(ones[p] - 2 * v[l]);
      }
    }
  }
}

template <int B>
void all_tiles(const std::vector<const uint64_t*>& base, const uint64_t* w, const ConvShape& s,
               const int64_t* tap_offset, int64_t cw, int64_t mp, const int64_t* ones, int32_t* n) {
  const int64_t blocks = mp / 8, plane = s.oh * s.ow;
  for (int64_t b = 0; b < blocks; b += 2) {
    const int64_t o0 = b * 8;
    const bool two = b + 1 < blocks;
    int64_t p = 0;
    for (; p + kPixels <= plane; p += kPixels) {
      if (two) {
        tile<B, 2, kPixels>(&base[p], w, s, tap_offset, cw, mp, o0, &ones[p], p, n);
      } else {
        tile<B, 1, kPixels>(&base[p], w, s, tap_offset, cw, mp, o0, &ones[p], p, n);
      }
    }
    for (; p < plane; ++p) {
      if (two) {
        tile<B, 2, 1>(&base[p], w, s, tap_offset, cw, mp, o0, &ones[p], p, n);
      } else {
        tile<B, 1, 1>(&base[p], w, s, tap_offset, cw, mp, o0, &ones[p], p, n);
      }
    }
  }
}

}  // namespace

void sums(const uint64_t* x, int bits, const uint64_t* w, const ConvShape& s, int32_t* n) {
  const int64_t cw = binary::words(s.c), mp = (s.m + 7) / 8 * 8, plane = s.oh * s.ow;
  const int64_t hp = (s.oh - 1) * s.stride_h + (s.kh - 1) * s.dil_h + 1;
  const int64_t wp = (s.ow - 1) * s.stride_w + (s.kw - 1) * s.dil_w + 1;
  const int64_t pixel = bits * cw;  // words per pixel
  thread_local std::vector<uint64_t> padded;
  thread_local std::vector<int64_t> ones;
  padded.assign(hp * wp * pixel, 0);
  for (int64_t y = 0; y < s.h; ++y) {
    const int64_t yp = y + s.pad_h;
    if (yp >= hp) break;
    const int64_t x0 = std::max<int64_t>(0, -s.pad_w), x1 = std::min(s.w, wp - s.pad_w);
    if (x1 > x0)
      std::copy(x + (y * s.w + x0) * pixel, x + (y * s.w + x1) * pixel,
                padded.data() + (yp * wp + x0 + s.pad_w) * pixel);
  }
  thread_local std::vector<int64_t> tap_offset;
  thread_local std::vector<const uint64_t*> base;
  tap_offset.resize(s.kh * s.kw);
  for (int64_t i = 0; i < s.kh; ++i)
    for (int64_t j = 0; j < s.kw; ++j)
      tap_offset[i * s.kw + j] = (i * s.dil_h * wp + j * s.dil_w) * pixel;
  ones.assign(plane, 0);
  base.resize(plane);
  for (int64_t p = 0; p < plane; ++p) {
    const int64_t r = p / s.ow, q = p % s.ow;
    base[p] = padded.data() + (r * s.stride_h * wp + q * s.stride_w) * pixel;
    int64_t sum = 0;
    for (int64_t t = 0; t < s.kh * s.kw; ++t)
      for (int bit = 0; bit < bits; ++bit)
        for (int64_t k = 0; k < cw; ++k)
          sum += static_cast<int64_t>(__builtin_popcountll(base[p][tap_offset[t] + bit * cw + k]))
                 << bit;
    ones[p] = sum;
  }
  switch (bits) {
    case 1:
      all_tiles<1>(base, w, s, tap_offset.data(), cw, mp, ones.data(), n);
      break;
    case 2:
      all_tiles<2>(base, w, s, tap_offset.data(), cw, mp, ones.data(), n);
      break;
    case 3:
      all_tiles<3>(base, w, s, tap_offset.data(), cw, mp, ones.data(), n);
      break;
    default:
      all_tiles<4>(base, w, s, tap_offset.data(), cw, mp, ones.data(), n);
      break;
  }
}

}  // namespace avx512
}  // namespace planes
}  // namespace engine
}  // namespace lowbit
