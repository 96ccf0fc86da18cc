// The 8-bit convolution with AVX-512 VNNI (vpdpbusd: four u8 x s8 products summed into each int32
// lane). Weights in blocks of 16 output channels, the four codes of a channel group adjacent:
// w[((b * taps + t) * groups + g) * 64 + lane * 4 + k] for block b, tap t and channel 4g + k.
// A tile of 12 output pixels (in row-major order, across rows) times 32 output channels holds 24
// accumulators; each step broadcasts 4 input codes of a pixel against two weight vectors.
// Compiled with -mavx512f -mavx512bw -mavx512vnni; chosen at run time.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#define LOWBIT_INT8_ISA avx512
#include "int8_body.h"
#include "lowbit/engine/kernels/int8.h"

namespace lowbit {
namespace engine {
namespace int8 {
namespace avx512 {

std::vector<int8_t> pack(const std::vector<int8_t>& codes, int64_t mc, const ConvShape& s) {
  const int64_t cp = padded_channels(s.c), taps = s.kh * s.kw, groups = cp / 4;
  const int64_t blocks = (mc + 15) / 16;
  std::vector<int8_t> out(blocks * taps * groups * 64, 0);
  for (int64_t o = 0; o < mc; ++o)
    for (int64_t t = 0; t < taps; ++t)
      for (int64_t ch = 0; ch < cp; ++ch)
        out[(((o / 16) * taps + t) * groups + ch / 4) * 64 + (o % 16) * 4 + ch % 4] =
            codes[(o * taps + t) * cp + ch];
  return out;
}

namespace {

template <int NB, int kPixels>
void tile(const uint8_t* x, const int8_t* w, int64_t b0, int64_t mc, int64_t p0, const ConvShape& s,
          int32_t* raw) {
  const int64_t cp = padded_channels(s.c), wp = padded_cols(s), groups = cp / 4;
  const int64_t taps = s.kh * s.kw, plane = s.oh * s.ow, block = taps * groups * 64;
  const uint8_t* base[kPixels];
  for (int p = 0; p < kPixels; ++p) {
    const int64_t pix = p0 + p;
    const int64_t r = pix / s.ow, q = pix % s.ow;
    base[p] = x + (r * s.stride_h * wp + q * s.stride_w) * cp;
  }
  __m512i acc[kPixels][NB];
  for (auto& row : acc)
    for (auto& a : row) a = _mm512_setzero_si512();
  for (int64_t i = 0; i < s.kh; ++i) {
    for (int64_t j = 0; j < s.kw; ++j) {
      const int64_t t = i * s.kw + j, off = (i * s.dil_h * wp + j * s.dil_w) * cp;
      const int8_t* wt = w + b0 * block + t * groups * 64;
      for (int64_t g = 0; g < groups; ++g) {
        __m512i b[NB];
        for (int k = 0; k < NB; ++k) b[k] = _mm512_loadu_si512(wt + k * block + g * 64);
        for (int p = 0; p < kPixels; ++p) {
          int32_t four;
          std::memcpy(&four, base[p] + off + g * 4, 4);
          const __m512i a = _mm512_set1_epi32(four);
          for (int k = 0; k < NB; ++k) acc[p][k] = _mm512_dpbusd_epi32(acc[p][k], a, b[k]);
        }
      }
    }
  }
  // Channel-major stores: the pixels of a channel are adjacent in raw.
  alignas(64) int32_t lanes[kPixels][16];
  for (int k = 0; k < NB; ++k) {
    for (int p = 0; p < kPixels; ++p) _mm512_store_si512(lanes[p], acc[p][k]);
    const int64_t o0 = (b0 + k) * 16, n = std::min<int64_t>(16, mc - o0);
    for (int64_t l = 0; l < n; ++l) {
      int32_t* out = raw + (o0 + l) * plane + p0;
      for (int p = 0; p < kPixels; ++p) out[p] = lanes[p][l];
    }
  }
}

}  // namespace

void conv(const uint8_t* x, const int8_t* w, int64_t mc, const ConvShape& s, int32_t* raw) {
  for_each_tile<16, 12>(mc, s, [&](auto nb, auto np, int64_t b, int64_t p0) {
    tile<decltype(nb)::value, decltype(np)::value>(x, w, b, mc, p0, s, raw);
  });
}

}  // namespace avx512
}  // namespace int8
}  // namespace engine
}  // namespace lowbit
