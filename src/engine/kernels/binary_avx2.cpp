// The binary convolution with AVX2: four output channels per vector, popcount by nibble lookup
// (PSHUFB) summed with PSADBW. Weights interleaved by four output channels:
// w[((t * cw + k) * mp) + o] (mp: m rounded up to 4). Compiled with -mavx2; chosen at run time.
#include <immintrin.h>

#include <algorithm>

#include "lowbit/engine/kernels/binary.h"
#include "popcount_avx2.h"

namespace lowbit {
namespace engine {
namespace binary {
namespace avx2 {
namespace {

constexpr int64_t kLanes = 4;

}  // namespace

void conv(const uint64_t* x, const uint64_t* w, const float* scale, const float* bias,
          const ConvShape& s, float* y) {
  const int64_t cw = words(s.c), mp = (s.m + kLanes - 1) / kLanes * kLanes;
  const int64_t plane = s.oh * s.ow;
  alignas(32) int64_t mism[kLanes];
  for (int64_t r = 0; r < s.oh; ++r) {
    for (int64_t q = 0; q < s.ow; ++q) {
      for (int64_t o0 = 0; o0 < mp; o0 += kLanes) {
        __m256i acc = _mm256_setzero_si256();
        int64_t taps = 0;
        for_each_tap_inside(s, r, q, [&](int64_t yy, int64_t xx, int64_t t) {
          const uint64_t* xp = x + (yy * s.w + xx) * cw;
          const uint64_t* wp = w + (t * cw) * mp + o0;
          for (int64_t k = 0; k < cw; ++k) {
            const __m256i xv = _mm256_set1_epi64x(static_cast<long long>(xp[k]));
            const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp + k * mp));
            acc = _mm256_add_epi64(acc, popcount64(_mm256_xor_si256(xv, wv)));
          }
          ++taps;
        });
        _mm256_store_si256(reinterpret_cast<__m256i*>(mism), acc);
        const int64_t n = std::min<int64_t>(kLanes, s.m - o0);
        for (int64_t l = 0; l < n; ++l) {
          const int64_t o = o0 + l, sum = taps * s.c - 2 * mism[l];
          y[o * plane + r * s.ow + q] = static_cast<float>(sum) * scale[o] + bias[o];
        }
      }
    }
  }
}

void signs(const float* x, int64_t c, int64_t h, int64_t w, Minus minus, uint64_t* out) {
  LOWBIT_BINARY_SIGNS_BODY(x, c, h, w, minus, out)
}

}  // namespace avx2
}  // namespace binary
}  // namespace engine
}  // namespace lowbit
