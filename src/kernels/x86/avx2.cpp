// The AVX2 kernel set (compiled with -mavx2 -mfma; only run where the CPU has AVX2 and FMA).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "lowbit/kernels.h"

namespace lowbit {
namespace kernels {
namespace avx2 {
namespace {

struct V {
  using reg = __m256;
  using mask = __m256;
  static constexpr int W = 8;
  static reg load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, reg v) { _mm256_storeu_ps(p, v); }
  static void stream(float* p, reg v) { _mm256_stream_ps(p, v); }
  static void fence() { _mm_sfence(); }
  static reg set1(float v) { return _mm256_set1_ps(v); }
  static reg zero() { return _mm256_setzero_ps(); }
  static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  static reg sub(reg a, reg b) { return _mm256_sub_ps(a, b); }
  static reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
  static reg fma(reg a, reg b, reg c) {
    return _mm256_fmadd_ps(a, b, c);
  }  // a * b + c, one rounding
  // -(a * b) + c and a * b - c, one rounding: fma(-a, b, c) and fma(a, b, -c) without the negation.
  static reg fnma(reg a, reg b, reg c) { return _mm256_fnmadd_ps(a, b, c); }
  static reg fms(reg a, reg b, reg c) { return _mm256_fmsub_ps(a, b, c); }
  static reg div(reg a, reg b) { return _mm256_div_ps(a, b); }
  static reg min(reg a, reg b) { return _mm256_min_ps(a, b); }
  static reg max(reg a, reg b) { return _mm256_max_ps(a, b); }
  static reg abs(reg a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
  static reg neg(reg a) { return _mm256_xor_ps(_mm256_set1_ps(-0.0f), a); }
  // 2^n for integer-valued n in [-126, 127], exactly: the exponent field n + 127.
  static reg pow2(reg n) {
    const __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
  }
  static reg floor(reg a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
  static reg nearbyint(reg a) {
    return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  static mask lt(reg a, reg b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
  static mask le(reg a, reg b) { return _mm256_cmp_ps(a, b, _CMP_LE_OQ); }
  static mask eq(reg a, reg b) { return _mm256_cmp_ps(a, b, _CMP_EQ_OQ); }
  static mask and_mask(mask a, mask b) { return _mm256_and_ps(a, b); }
  // Masks as the bits of lanes 0..W-1 and back.
  static uint32_t bits(mask m) { return static_cast<uint32_t>(_mm256_movemask_ps(m)); }
  static mask from_bits(uint32_t b) {
    const __m256i lane = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    const __m256i v = _mm256_and_si256(_mm256_set1_epi32(static_cast<int>(b)), lane);
    return _mm256_castsi256_ps(_mm256_cmpeq_epi32(v, lane));
  }
  static reg select(mask m, reg a, reg b) { return _mm256_blendv_ps(b, a, m); }
  static reg one_if(mask m) { return _mm256_and_ps(m, _mm256_set1_ps(1.0f)); }
};

#include "simd_body.h"

}  // namespace

extern const F32Kernels kKernels;
extern const F32Kernels kStreamingKernels;
const F32Kernels kKernels = make_kernel_set<V, false>("avx2");
const F32Kernels kStreamingKernels = make_kernel_set<V, true>("avx2_nt");

}  // namespace avx2
}  // namespace kernels
}  // namespace lowbit
