// AVX2 popcount of 64-bit lanes (nibble lookup with PSHUFB, summed by PSADBW), for the kernel files
// compiled with -mavx2 (binary_avx2.cpp, planes_avx2.cpp); internal to each.
#pragma once

#include <immintrin.h>

namespace lowbit {
namespace engine {
namespace {

// Per 64-bit lane, the number of set bits of v.
inline __m256i popcount64(__m256i v) {
  const __m256i table = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2,
                                         1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i low = _mm256_set1_epi8(0x0f);
  const __m256i lo = _mm256_shuffle_epi8(table, _mm256_and_si256(v, low));
  const __m256i hi = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(v, 4), low));
  return _mm256_sad_epu8(_mm256_add_epi8(lo, hi), _mm256_setzero_si256());
}

}  // namespace
}  // namespace engine
}  // namespace lowbit
