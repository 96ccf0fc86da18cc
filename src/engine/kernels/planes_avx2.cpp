// The bit-plane sums with AVX2: four output channels per vector (binary.h's interleaved weights,
// w[((t * cw + k) * mp) + o], mp: m rounded up to 4), popcount by nibble lookup; each pixel's taps
// inside the image, plane k's popcounts weighted by 2^k, the input's own popcounts once per pixel.
// Compiled with -mavx2; chosen at run time.
#include <immintrin.h>

#include <algorithm>

#include "lowbit/engine/kernels/planes.h"
#include "popcount_avx2.h"

namespace lowbit {
namespace engine {
namespace planes {
namespace avx2 {

void sums(const uint64_t* x, int bits, const uint64_t* w, const ConvShape& s, int32_t* n) {
  constexpr int64_t kLanes = 4;
  const int64_t cw = binary::words(s.c), mp = (s.m + kLanes - 1) / kLanes * kLanes;
  const int64_t plane = s.oh * s.ow;
  alignas(32) int64_t lanes[kLanes];
  for (int64_t r = 0; r < s.oh; ++r) {
    for (int64_t q = 0; q < s.ow; ++q) {
      int64_t ones = 0;
      binary::for_each_tap_inside(s, r, q, [&](int64_t yy, int64_t xx, int64_t) {
        const uint64_t* xp = x + (yy * s.w + xx) * bits * cw;
        for (int k = 0; k < bits; ++k)
          for (int64_t e = 0; e < cw; ++e)
            ones += static_cast<int64_t>(__builtin_popcountll(xp[k * cw + e])) << k;
      });
      for (int64_t o0 = 0; o0 < mp; o0 += kLanes) {
        __m256i acc = _mm256_setzero_si256();
        binary::for_each_tap_inside(s, r, q, [&](int64_t yy, int64_t xx, int64_t t) {
          const uint64_t* xp = x + (yy * s.w + xx) * bits * cw;
          const uint64_t* wp = w + (t * cw) * mp + o0;
          for (int64_t e = 0; e < cw; ++e) {
            const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp + e * mp));
            for (int k = 0; k < bits; ++k) {
              const __m256i xv = _mm256_set1_epi64x(static_cast<long long>(xp[k * cw + e]));
              acc =
                  _mm256_add_epi64(acc, _mm256_slli_epi64(popcount64(_mm256_and_si256(xv, wv)), k));
            }
          }
        });
        _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), acc);
        for (int64_t l = 0; l < kLanes && o0 + l < s.m; ++l)
          n[(o0 + l) * plane + r * s.ow + q] = static_cast<int32_t>(ones - 2 * lanes[l]);
      }
    }
  }
}

}  // namespace avx2
}  // namespace planes
}  // namespace engine
}  // namespace lowbit
