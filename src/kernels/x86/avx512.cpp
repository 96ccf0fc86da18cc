// The AVX-512 kernel set (compiled with -mavx512f/bw/dq/vl; only run where the CPU has them).
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
namespace avx512 {
namespace {

struct V {
  using reg = __m512;
  using mask = __mmask16;
  static constexpr int W = 16;
  static reg load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, reg v) { _mm512_storeu_ps(p, v); }
  static void stream(float* p, reg v) { _mm512_stream_ps(p, v); }
  static void fence() { _mm_sfence(); }
  static reg set1(float v) { return _mm512_set1_ps(v); }
  static reg zero() { return _mm512_setzero_ps(); }
  static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static reg sub(reg a, reg b) { return _mm512_sub_ps(a, b); }
  static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
  static reg fma(reg a, reg b, reg c) {
    return _mm512_fmadd_ps(a, b, c);
  }  // a * b + c, one rounding
  // -(a * b) + c and a * b - c, one rounding: fma(-a, b, c) and fma(a, b, -c) without the negation.
  static reg fnma(reg a, reg b, reg c) { return _mm512_fnmadd_ps(a, b, c); }
  static reg fms(reg a, reg b, reg c) { return _mm512_fmsub_ps(a, b, c); }
  static reg div(reg a, reg b) { return _mm512_div_ps(a, b); }
  static reg min(reg a, reg b) { return _mm512_min_ps(a, b); }
  static reg max(reg a, reg b) { return _mm512_max_ps(a, b); }
  static reg abs(reg a) { return _mm512_abs_ps(a); }
  static reg neg(reg a) { return _mm512_xor_ps(_mm512_set1_ps(-0.0f), a); }
  // 2^n for integer-valued n in [-126, 127], exactly.
  static reg pow2(reg n) { return _mm512_scalef_ps(_mm512_set1_ps(1.0f), n); }
  static reg floor(reg a) {
    return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  }
  static reg nearbyint(reg a) {
    return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  static mask lt(reg a, reg b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
  static mask le(reg a, reg b) { return _mm512_cmp_ps_mask(a, b, _CMP_LE_OQ); }
  static mask eq(reg a, reg b) { return _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ); }
  static mask and_mask(mask a, mask b) { return static_cast<mask>(a & b); }
  // Masks as the bits of lanes 0..W-1 and back.
  static uint32_t bits(mask m) { return static_cast<uint32_t>(m); }
  static mask from_bits(uint32_t b) { return static_cast<mask>(b); }
  static reg select(mask m, reg a, reg b) { return _mm512_mask_blend_ps(m, b, a); }
  static reg one_if(mask m) { return _mm512_maskz_mov_ps(m, _mm512_set1_ps(1.0f)); }
};

#include "simd_body.h"

}  // namespace

extern const F32Kernels kKernels;
extern const F32Kernels kStreamingKernels;
const F32Kernels kKernels = make_kernel_set<V, false>("avx512");
const F32Kernels kStreamingKernels = make_kernel_set<V, true>("avx512_nt");

}  // namespace avx512
}  // namespace kernels
}  // namespace lowbit
