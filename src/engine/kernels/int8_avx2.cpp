// The 8-bit convolution with AVX2: codes widened to 16 bits and vpmaddwd (pairs of products
// summed into each int32 lane: exact, where vpmaddubsw's 16-bit sums would saturate). Weights in
// blocks of 8 output channels, the two codes of a channel pair adjacent:
// w[((b * taps + t) * pairs + g) * 16 + lane * 2 + k] (int16) for block b, tap t and channel 2g +
// k. A tile of 6 output pixels times 16 output channels holds 12 accumulators. Compiled with
// -mavx2; chosen at run time.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#define LOWBIT_INT8_ISA avx2
#include "int8_body.h"
#include "lowbit/engine/kernels/int8.h"

namespace lowbit {
namespace engine {
namespace int8 {
namespace avx2 {

// The int16 codes, stored in the bytes of the returned vector.
std::vector<int8_t> pack(const std::vector<int8_t>& codes, int64_t mc, const ConvShape& s) {
  const int64_t cp = padded_channels(s.c), taps = s.kh * s.kw, pairs = cp / 2;
  const int64_t blocks = (mc + 7) / 8;
  std::vector<int16_t> wide(blocks * taps * pairs * 16, 0);
  for (int64_t o = 0; o < mc; ++o)
    for (int64_t t = 0; t < taps; ++t)
      for (int64_t ch = 0; ch < cp; ++ch)
        wide[(((o / 8) * taps + t) * pairs + ch / 2) * 16 + (o % 8) * 2 + ch % 2] =
            codes[(o * taps + t) * cp + ch];
  std::vector<int8_t> out(wide.size() * sizeof(int16_t));
  std::memcpy(out.data(), wide.data(), out.size());
  return out;
}

namespace {

template <int NB, int kPixels>
void tile(const uint8_t* x, const int16_t* w, int64_t b0, int64_t mc, int64_t p0,
          const ConvShape& s, int32_t* raw) {
  const int64_t cp = padded_channels(s.c), wp = padded_cols(s), pairs = cp / 2;
  const int64_t taps = s.kh * s.kw, plane = s.oh * s.ow, block = taps * pairs * 16;
  const uint8_t* base[kPixels];
  for (int p = 0; p < kPixels; ++p) {
    const int64_t pix = p0 + p;
    const int64_t r = pix / s.ow, q = pix % s.ow;
    base[p] = x + (r * s.stride_h * wp + q * s.stride_w) * cp;
  }
  __m256i acc[kPixels][NB];
  for (auto& row : acc)
    for (auto& a : row) a = _mm256_setzero_si256();
  for (int64_t i = 0; i < s.kh; ++i) {
    for (int64_t j = 0; j < s.kw; ++j) {
      const int64_t t = i * s.kw + j, off = (i * s.dil_h * wp + j * s.dil_w) * cp;
      const int16_t* wt = w + b0 * block + t * pairs * 16;
      for (int64_t g = 0; g < pairs; ++g) {
        __m256i b[NB];
        for (int k = 0; k < NB; ++k)
          b[k] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wt + k * block + g * 16));
        for (int p = 0; p < kPixels; ++p) {
          const uint8_t* u = base[p] + off + g * 2;
          const __m256i a = _mm256_set1_epi32(static_cast<int32_t>(u[0] | (uint32_t{u[1]} << 16)));
          for (int k = 0; k < NB; ++k)
            acc[p][k] = _mm256_add_epi32(acc[p][k], _mm256_madd_epi16(a, b[k]));
        }
      }
    }
  }
  alignas(32) int32_t lanes[kPixels][8];
  for (int k = 0; k < NB; ++k) {
    for (int p = 0; p < kPixels; ++p)
      _mm256_store_si256(reinterpret_cast<__m256i*>(lanes[p]), acc[p][k]);
    const int64_t o0 = (b0 + k) * 8, n = std::min<int64_t>(8, mc - o0);
    for (int64_t l = 0; l < n; ++l) {
      int32_t* out = raw + (o0 + l) * plane + p0;
      for (int p = 0; p < kPixels; ++p) out[p] = lanes[p][l];
    }
  }
}

}  // namespace

void conv(const uint8_t* x, const int8_t* w, int64_t mc, const ConvShape& s, int32_t* raw) {
  const int16_t* wide = reinterpret_cast<const int16_t*>(w);
  for_each_tile<8, 6>(mc, s, [&](auto nb, auto np, int64_t b, int64_t p0) {
    tile<decltype(nb)::value, decltype(np)::value>(x, wide, b, mc, p0, s, raw);
  });
}

}  // namespace avx2
}  // namespace int8
}  // namespace engine
}  // namespace lowbit
