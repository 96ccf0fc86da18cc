// The element-wise math of every quantizer, written once for the scalar reference, SIMD tails and
// GPU. Formulas and rounding rules: ../shared/spec/quantizers.md and docs/quantizers.md.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#if defined(__CUDACC__)
#define LOWBIT_HD __host__ __device__ __forceinline__
#else
// Internal linkage on the host: the kernel sets compile these with their own instruction flags
// (-mavx2, -mavx512f), and an inline function of external linkage could be merged by the linker
// into one copy built for the widest set, which the reference set would then run.
#define LOWBIT_HD static inline
#endif

namespace lowbit {
namespace detail {

// Nudged range of a TF fake quant (spec section 1). `degenerate` marks min == max == 0, where the
// output is 0 and the input gradient passes through; its other fields are then all 0.
template <class T>
struct FakeQuantParams {
  T nudged_min = 0;
  T nudged_max = 0;
  T scale = 0;
  T inv_scale = 0;
  T quant_zero = 0;
  bool degenerate = false;
};

// TF's nudging (spec section 1) in T, exactly in the spec's order. The caller checks num_bits and
// that the range is valid (valid_range); min == max == 0 gives the degenerate parameters.
template <class T>
LOWBIT_HD FakeQuantParams<T> nudge_unchecked(T min, T max, int num_bits, bool narrow_range) {
  FakeQuantParams<T> p;
  if (min == T(0) && max == T(0)) {
    p.degenerate = true;
    return p;
  }
  const T qmin = narrow_range ? T(1) : T(0);
  const T qmax = static_cast<T>((1 << num_bits) - 1);
  p.scale = (max - min) / (qmax - qmin);
  p.inv_scale = (qmax - qmin) / (max - min);
  const T zp_from_min = qmin - min / p.scale;
  const T zp = zp_from_min < qmin ? qmin : (zp_from_min > qmax ? qmax : std::round(zp_from_min));
  p.nudged_min = (qmin - zp) * p.scale;
  p.nudged_max = (qmax - zp) * p.scale;
  p.quant_zero = std::floor(-p.nudged_min * p.inv_scale + T(0.5));
  return p;
}

// min and max are both finite: neither NaN nor infinite (every range operator requires it).
template <class T>
LOWBIT_HD bool finite_range(T min, T max) {
  const T inf = std::numeric_limits<T>::infinity();
  return min > -inf && min < inf && max > -inf && max < inf;
}

// A range TF's fake quant accepts: finite, and min < max or the degenerate min == max == 0.
template <class T>
LOWBIT_HD bool valid_range(T min, T max) {
  return finite_range(min, max) && ((min == T(0) && max == T(0)) || min < max);
}

// ceil(log2(v)) for v > 0, exactly: v = m * 2^p with m in [0.5, 1).
template <class T>
LOWBIT_HD int ceil_log2(T v) {
  int p = 0;
  const T m = std::frexp(v, &p);
  return m == T(0.5) ? p - 1 : p;
}

// The power-of-2 symmetric range of [min, max] (spec section 4) for finite, non-NaN min and max:
// [-2^e, 2^e - 2^(e + 1 - num_bits)], e = ceil(log2(max(|min|, |max|, 1e-7))), capped at
// max_exponent unless has_max_exponent is false. Writes e when exponent is not null.
template <class T>
LOWBIT_HD void pow2_range_unchecked(T min, T max, int num_bits, bool has_max_exponent,
                                    int max_exponent, T* lo_out, T* hi_out, int* exponent) {
  const T tiny = static_cast<T>(1e-7);
  const T lo = min < -tiny ? min : -tiny;
  const T hi = max > tiny ? max : tiny;
  const int el = ceil_log2(std::fabs(lo)), eh = ceil_log2(std::fabs(hi));
  int e = el > eh ? el : eh;
  if (has_max_exponent && max_exponent < e) e = max_exponent;
  if (exponent) *exponent = e;
  *lo_out = -std::ldexp(T(1), e);
  *hi_out = std::ldexp(T(1), e) - std::ldexp(T(1), e + 1 - num_bits);
}

// NaN goes through every forward: each function below returns x itself for a NaN x.
template <class T>
LOWBIT_HD T sign0_scaled(T x, T s) {
  return x >= T(0) ? s : (x < T(0) ? -s : x);
}

template <class T>
LOWBIT_HD T tfsign(T x) {
  return x > T(0) ? T(1) : (x < T(0) ? T(-1) : (x == T(0) ? T(0) : x));
}

template <class T>
LOWBIT_HD T heaviside(T x) {
  return x > T(0) ? T(1) : (x <= T(0) ? T(0) : x);
}

// Larq's ste_tern: tfsign(tfsign(x + D) + tfsign(x - D)).
template <class T>
LOWBIT_HD T ternary(T x, T threshold) {
  return tfsign(tfsign(x + threshold) + tfsign(x - threshold));
}

// TF's clamp order: min first, then max. Written so that a NaN x stays NaN.
template <class T>
LOWBIT_HD T clamp_tf(T x, T lo, T hi) {
  const T a = (hi < x) ? hi : x;
  return (lo > a) ? lo : a;
}

// args and per-channel: multiply by the inverse scale.
template <class T>
LOWBIT_HD T fake_quant_mul(T x, const FakeQuantParams<T>& p) {
  const T shifted = clamp_tf(x, p.nudged_min, p.nudged_max) - p.nudged_min;
  const T v = shifted * p.inv_scale - p.quant_zero + T(0.5);
  return std::floor(v) * p.scale;
}

// vars: divide by the scale.
template <class T>
LOWBIT_HD T fake_quant_div(T x, const FakeQuantParams<T>& p) {
  const T shifted = clamp_tf(x, p.nudged_min, p.nudged_max) - p.nudged_min;
  const T v = shifted / p.scale - p.quant_zero + T(0.5);
  return std::floor(v) * p.scale;
}

// g * 1[lo <= x <= hi] (closed) or g * 1[lo < x < hi] (open), as a multiplication like the sources.
template <class T>
LOWBIT_HD T masked_grad(T g, T x, T lo, T hi, bool open) {
  const bool in = open ? (lo < x && x < hi) : (lo <= x && x <= hi);
  return g * (in ? T(1) : T(0));
}

// The window code of x, which the forward saves for the backward (so the backward reads a byte, or
// 2 bits packed, per element instead of x): in [lo, hi] (closed), below lo, above hi, or none of
// them (NaN).
constexpr uint8_t kCodeIn = 1;
constexpr uint8_t kCodeBelow = 2;
constexpr uint8_t kCodeAbove = 4;

template <class T>
LOWBIT_HD uint8_t window_code(T x, T lo, T hi) {
  return (lo <= x && x <= hi) ? kCodeIn : (x < lo ? kCodeBelow : (x > hi ? kCodeAbove : 0));
}

// The masked gradient from a window code: g * 1[in], as masked_grad computes it from x.
template <class T>
LOWBIT_HD T coded_grad(T g, uint8_t code) {
  return g * ((code & kCodeIn) ? T(1) : T(0));
}

template <class T>
LOWBIT_HD T approx_sign_grad(T g, T x) {
  const T ax = std::fabs(x);
  return g * (ax <= T(1) ? T(2) - T(2) * ax : T(0));
}

// exp(-a) for 0 <= a <= kExpNegMax in float32, by IEEE multiplies, adds and fused multiply-adds
// only (Cephes' method: a = n ln2 + r with n an integer, a polynomial for exp(-r) on |r| <= ln2 /
// 2, then the exponent), so that every kernel set computes it bit for bit alike (within 1-2 ulp of
// the true value). The fused multiply-adds are written out (std::fma; the build never contracts a *
// b + c by itself): one rounding each, on every CPU kernel set and on CUDA alike.
constexpr float kExpNegMax = 87.0f;
LOWBIT_HD float exp_neg_poly(float a) {
  const float t = -a;
  const float n = std::floor(std::fma(t, 1.44269504f, 0.5f));
  const float r = std::fma(n, 2.12194440e-4f, std::fma(n, -0.693359375f, t));
  float p = 1.9875691500e-4f;
  p = std::fma(p, r, 1.3981999507e-3f);
  p = std::fma(p, r, 8.3334519073e-3f);
  p = std::fma(p, r, 4.1665795894e-2f);
  p = std::fma(p, r, 1.6666665459e-1f);
  p = std::fma(p, r, 5.0000001201e-1f);
  p = std::fma(p, r * r, r) + 1.0f;
  // n in [-126, 0]: an exact power of 2. A NaN n (a NaN a) would be undefined as an int: p is
  // NaN then, and any power gives it back.
  return p * std::ldexp(1.0f, n >= -126.0f ? static_cast<int>(n) : -126);
}

// swish_sign's gradient, g * beta * (2 - bx tanh(bx / 2)) / (1 + cosh(bx)) with bx = beta x,
// written with e = exp(-|bx|): tanh(|bx| / 2) = (1 - e) / (1 + e) and 1 / (1 + cosh(bx)) = 2e / (1
// + e)^2, so that one exponential (exp_neg_poly in float32) does and nothing overflows. NaN x: g *
// x.
template <class T>
LOWBIT_HD T swish_sign_grad(T g, T x, T beta) {
  if (x != x) return g * x;
  // |bx| capped where the gradient is below 1e-34 * beta anyway (and infinities stay finite).
  const T a = T(kExpNegMax) < std::fabs(beta * x) ? T(kExpNegMax) : std::fabs(beta * x);
  T e;
  if constexpr (sizeof(T) == 4) {
    e = exp_neg_poly(a);
  } else {
    e = std::exp(-a);
  }
  const T r = T(1) / (T(1) + e);  // one division
  const T num = std::fma(-a, (T(1) - e) * r, T(2));
  return g * ((beta * num) * ((T(2) * e) * (r * r)));
}

// Larq's dorefa, activations: half-even rounding of clip(x, 0, 1) * n, divided by n.
template <class T>
LOWBIT_HD T dorefa_activations(T x, T levels) {
  return std::nearbyint(clamp_tf(x, T(0), T(1)) * levels) / levels;
}

// Blueoil's linear mid-tread half, in the source's order of operations.
template <class T>
LOWBIT_HD T linear_mid_tread(T x, T levels, T max_value) {
  const T c = clamp_tf(x, T(0), max_value);
  return std::floor((c / max_value) * levels + T(0.5)) / levels * max_value;
}

// tanh(x) in float32 by IEEE operations and written-out fused multiply-adds only, so that every
// kernel set computes it bit for bit alike (within 2 ulp of the true value): x itself below 2^-12,
// Cephes' odd polynomial below 0.625, else (1 - e) / (1 + e) with e = exp(-2|x|) (exp_neg_poly;
// 2|x| capped at kExpNegMax, where tanh rounds to 1), the sign of x put back. NaN gives x.
LOWBIT_HD float tanh_poly(float x) {
  if (x != x) return x;
  const float a = std::fabs(x);
  if (a < 0.000244140625f) return x;  // |x| < 2^-12: tanh(x) rounds to x (and keeps -0)
  if (a < 0.625f) {
    const float z = x * x;
    float p = -5.70498872745e-3f;
    p = std::fma(p, z, 2.06390887954e-2f);
    p = std::fma(p, z, -5.37397155531e-2f);
    p = std::fma(p, z, 1.33314422036e-1f);
    p = std::fma(p, z, -3.33332819422e-1f);
    return std::fma(p * z, x, x);
  }
  const float b = a + a;
  const float e = exp_neg_poly(kExpNegMax < b ? kExpNegMax : b);
  return std::copysign((1.0f - e) / (1.0f + e), x);
}

// tanh as the dorefa weights mode computes it: tanh_poly in float32, std::tanh otherwise.
template <class T>
LOWBIT_HD T dorefa_tanh(T x) {
  if constexpr (sizeof(T) == 4) {
    return tanh_poly(x);
  } else {
    return std::tanh(x);
  }
}

// dorefa's weights mode in two steps: the rounded level half_even((tanh(x) / (2M) + 0.5) * n), then
// the output 2 * level / n - 1 (the kernels' thresholds step through the levels).
template <class T>
LOWBIT_HD T dorefa_weight_level(T x, T levels, T max_abs_tanh) {
  const T p = max_abs_tanh == T(0) ? T(0.5) : dorefa_tanh(x) / (T(2) * max_abs_tanh) + T(0.5);
  return std::nearbyint(p * levels);
}
template <class T>
LOWBIT_HD T dorefa_weight_of_level(T level, T levels) {
  return T(2) * level / levels - T(1);
}

// Larq's dorefa, weights: 2 * half_even((tanh(x) / (2M) + 0.5) * n) / n - 1, M = max|tanh(x)|.
template <class T>
LOWBIT_HD T dorefa_weight(T x, T levels, T max_abs_tanh) {
  return dorefa_weight_of_level(dorefa_weight_level(x, levels, max_abs_tanh), levels);
}

template <class T>
LOWBIT_HD T dorefa_weight_grad(T g, T x, T max_abs_tanh) {
  if (max_abs_tanh == T(0)) return g * T(0);
  const T t = dorefa_tanh(x);
  return g * (T(1) - t * t) / max_abs_tanh;
}

// Blueoil's TWN: a * tfsign(x) where |x| > D, else 0 (NaN stays NaN).
template <class T>
LOWBIT_HD T twn_value(T x, T threshold_abs, T a) {
  return x != x ? x : (std::fabs(x) > threshold_abs ? a * tfsign(x) : T(0));
}

// magnitude_aware_sign's gradient: (g * 1[-clip <= x <= clip]) * s, or g * s when not clipped.
template <class T>
LOWBIT_HD T clipped_grad_scaled(T g, T x, bool clipped, T clip, T s) {
  return (g * ((!clipped || (-clip <= x && x <= clip)) ? T(1) : T(0))) * s;
}

// Blueoil's TTQ: positive above D, -negative below -D, else 0 (NaN stays NaN).
template <class T>
LOWBIT_HD T ttq_value(T x, T positive, T negative, T threshold_abs) {
  return x > threshold_abs ? positive : (x < -threshold_abs ? -negative : (x != x ? x : T(0)));
}

// TTQ's gradient w.r.t. x: positive * g above D, negative * g below -D, g between.
template <class T>
LOWBIT_HD T ttq_grad(T g, T x, T positive, T negative, T threshold_abs) {
  return x > threshold_abs ? positive * g : (x < -threshold_abs ? negative * g : g);
}

}  // namespace detail
}  // namespace lowbit
