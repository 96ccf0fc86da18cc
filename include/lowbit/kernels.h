// Torch-free quantizer kernels: raw pointers and sizes, a scalar reference and run-time chosen
// SIMD.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lowbit/detail/quant_math.h"

namespace lowbit {
namespace kernels {

using detail::FakeQuantParams;

enum class FakeQuantRounding { kMulInvScale, kDivScale };
enum class Interval { kClosed, kOpen };

// Lanes of a kernel's partial sums: element i of a call's span adds to lane i % kSumLanes, in
// order, and the lanes are added in lane order in double. Every kernel set does exactly this, so
// sums are bit-identical across instruction sets; callers split work into fixed spans for the same
// reason.
constexpr int kSumLanes = 16;

// TF's nudging (spec section 1), in T. Throws std::invalid_argument on a bad num_bits or range.
template <class T>
FakeQuantParams<T> nudge(T min, T max, int num_bits, bool narrow_range);

// The float32 kernels of one instruction set. Arrays are contiguous; "rows x channels" is a
// row-major matrix whose last dimension is the channel. Per-channel sums accumulate into the
// caller's arrays.
struct F32Kernels {
  const char* isa;  // "ref", "avx2", "avx512"
  void (*fake_quant)(const float* x, float* y, int64_t n, const FakeQuantParams<float>& p,
                     FakeQuantRounding r);
  void (*fake_quant_per_channel)(const float* x, float* y, int64_t rows, int64_t channels,
                                 const FakeQuantParams<float>* p, FakeQuantRounding r);
  // dx = g * 1[x in (lo, hi)]; *below += sum(g * 1[x < lo]), *above += sum(g * 1[x > hi]) when not
  // null.
  void (*masked_grad)(const float* g, const float* x, float* dx, int64_t n, float lo, float hi,
                      Interval iv, double* below, double* above);
  void (*masked_grad_per_channel)(const float* g, const float* x, float* dx, int64_t rows,
                                  int64_t channels, const float* lo, const float* hi, float* below,
                                  float* above);
  void (*sign)(const float* x, float* y, int64_t n, float scale);
  void (*sign_per_channel)(const float* x, float* y, int64_t rows, int64_t channels,
                           const float* scale);
  void (*heaviside)(const float* x, float* y, int64_t n);
  void (*ternary)(const float* x, float* y, int64_t n, float threshold);
  void (*dorefa_activations)(const float* x, float* y, int64_t n, float levels);
  void (*linear_mid_tread)(const float* x, float* y, int64_t n, float levels, float max_value);
  void (*approx_sign_grad)(const float* g, const float* x, float* dx, int64_t n);
  // Forwards that also write each element's window code for [lo, hi] (detail::window_code; a null
  // code array writes none), and the backward from those codes: the same dx and sums as
  // masked_grad with the closed window. The codes are packed, 2 bits per element (see
  // packed_code_bytes below), per channel too: element (row, c) of a call is its element
  // row * channels + c, so a call's first row starts a group.
  void (*fake_quant_packed)(const float* x, float* y, uint8_t* code, int64_t n,
                            const FakeQuantParams<float>& p, FakeQuantRounding r, float lo,
                            float hi);
  void (*fake_quant_per_channel_packed)(const float* x, float* y, uint8_t* code, int64_t rows,
                                        int64_t channels, const FakeQuantParams<float>* p,
                                        FakeQuantRounding r, const float* lo, const float* hi);
  void (*sign_packed)(const float* x, float* y, uint8_t* code, int64_t n, float scale, float lo,
                      float hi);
  void (*packed_grad)(const float* g, const uint8_t* code, float* dx, int64_t n, double* below,
                      double* above);
  void (*packed_grad_per_channel)(const float* g, const uint8_t* code, float* dx, int64_t rows,
                                  int64_t channels, float* below, float* above);
  // Reductions of |x| (src/kernels/reduce_body.h: the same lanes in every set, so the same result):
  // the sum in double; per channel of a [rows, channels] block, acc[c] += the rows' sum; the
  // maximum (the default quiet NaN when any element is NaN); the sum and count of the elements with
  // |x| > d.
  double (*sum_abs)(const float* x, int64_t n);
  void (*sum_abs_rows)(const float* x, int64_t rows, int64_t channels, double* acc);
  float (*max_abs)(const float* x, int64_t n);
  void (*sum_abs_above)(const float* x, int64_t n, float d, double* sum, int64_t* count);
  // Blueoil's TWN and TTQ forwards (detail::twn_value, detail::ttq_value) and TTQ's gradient (its
  // sums in the lanes of masked_grad); magnitude_aware_sign's backward over rows of channels.
  void (*twn)(const float* x, float* y, int64_t n, float threshold_abs, float a);
  void (*ttq)(const float* x, float* y, int64_t n, float positive, float negative,
              float threshold_abs);
  void (*ttq_grad)(const float* g, const float* x, float* dx, int64_t n, float positive,
                   float negative, float threshold_abs, double* d_positive, double* d_negative);
  void (*clipped_grad_scaled_rows)(const float* g, const float* x, float* dx, int64_t rows,
                                   int64_t channels, bool clipped, float clip, const float* scale);
  // swish_sign's gradient (detail::swish_sign_grad: one exponential, detail::exp_neg_poly).
  void (*swish_sign_grad)(const float* g, const float* x, float* dx, int64_t n, float beta);
  // dorefa's weights mode (tanh by detail::tanh_poly): max(|tanh(x)|), the forward and its
  // gradient.
  float (*max_abs_tanh)(const float* x, int64_t n);
  void (*dorefa_weights)(const float* x, float* y, int64_t n, float levels, float max_abs_tanh);
  void (*dorefa_weights_grad)(const float* g, const float* x, float* dx, int64_t n,
                              float max_abs_tanh);
};

// Packed window codes: 2 bits per element, so that a forward saves a quarter byte per element for
// its backward. Element i of a call (counted from the call's first element, which the caller keeps
// at a multiple of kPackedCodeGroup elements from the array's start) is in group i / 16, the 4
// bytes from 4 * (i / 16): byte (i % 16) / 8 of the group holds plane 0, "in the window or above
// it", and byte 2 + (i % 16) / 8 plane 1, "below or above", at bit i % 8. So in = plane 0 alone,
// below = plane 1 alone, above = both, neither = NaN. A call writes the 4 bytes of every group it
// has begun (bits past its end 0) and no others.
constexpr int64_t kPackedCodeGroup = 16;
// The bytes of the packed codes of n elements (whole groups).
inline int64_t packed_code_bytes(int64_t n) { return (n + 15) / 16 * 4; }
// The plane-0 byte of the 8 elements from i (i % 8 == 0); plane 1 is 2 bytes further.
inline int64_t packed_code_offset(int64_t i) { return 4 * (i / 16) + (i / 8) % 2; }
// The window code (detail::kCodeIn, kCodeBelow, kCodeAbove or 0) of element i.
inline uint8_t packed_code(const uint8_t* code, int64_t i) {
  const uint8_t* h = code + packed_code_offset(i - i % 8);
  const bool p0 = ((h[0] >> (i % 8)) & 1) != 0, p1 = ((h[2] >> (i % 8)) & 1) != 0;
  return p0 ? (p1 ? detail::kCodeAbove : detail::kCodeIn) : (p1 ? detail::kCodeBelow : 0);
}
// Writes the packed window codes code_of(i) (detail::window_code values) of the elements [from, n)
// (from % 8 == 0), and zeros to the end of the last group. code_of is called once per element, in
// increasing order of i.
template <class CodeOf>
inline void pack_codes(int64_t from, int64_t n, CodeOf&& code_of, uint8_t* code) {
  for (int64_t i = from; i < (n + 15) / 16 * 16; i += 8) {
    unsigned p0 = 0, p1 = 0;
    for (int64_t k = 0; k < 8 && i + k < n; ++k) {
      const uint8_t c = code_of(i + k);
      p0 |= ((c & (detail::kCodeIn | detail::kCodeAbove)) != 0 ? 1u : 0u) << k;
      p1 |= ((c & (detail::kCodeBelow | detail::kCodeAbove)) != 0 ? 1u : 0u) << k;
    }
    uint8_t* h = code + packed_code_offset(i);
    h[0] = static_cast<uint8_t>(p0);
    h[2] = static_cast<uint8_t>(p1);
  }
}
// The packed window codes of [lo, hi] of the elements [from, n) of x, as pack_codes.
template <class T>
inline void pack_window_codes(const T* x, int64_t from, int64_t n, T lo, T hi, uint8_t* code) {
  pack_codes(
      from, n, [&](int64_t i) { return detail::window_code(x[i], lo, hi); }, code);
}

// Every kernel set this CPU can run, the scalar reference first; each SIMD set is followed by its
// "_nt" variant, which writes float outputs with non-temporal stores. Tests and benchmarks walk
// this.
const std::vector<const F32Kernels*>& supported_f32_kernels();

// From this many output floats (16 MiB) on, the operators write with non-temporal stores: such an
// output does not fit in cache, and bypassing it saves reading each line before it is written.
constexpr int64_t kStreamingElements = int64_t{1} << 22;

// The set the operators use for an output of `output_elements` floats: the widest supported set (or
// the one named by LOWBIT_ISA: ref, avx2, avx512, or an _nt set to force non-temporal stores), as
// its _nt variant from kStreamingElements on.
const F32Kernels& f32_kernels(int64_t output_elements = 0);

// The scalar reference in any floating type: the contract every other kernel is tested against.
namespace ref {
template <class T>
void fake_quant(const T* x, T* y, int64_t n, const FakeQuantParams<T>& p, FakeQuantRounding r);
template <class T>
void fake_quant_per_channel(const T* x, T* y, int64_t rows, int64_t channels,
                            const FakeQuantParams<T>* p, FakeQuantRounding r);
template <class T>
void masked_grad(const T* g, const T* x, T* dx, int64_t n, T lo, T hi, Interval iv, double* below,
                 double* above);
template <class T>
void masked_grad_per_channel(const T* g, const T* x, T* dx, int64_t rows, int64_t channels,
                             const T* lo, const T* hi, T* below, T* above);
template <class T>
void sign(const T* x, T* y, int64_t n, T scale);
template <class T>
void sign_per_channel(const T* x, T* y, int64_t rows, int64_t channels, const T* scale);
template <class T>
void heaviside(const T* x, T* y, int64_t n);
template <class T>
void ternary(const T* x, T* y, int64_t n, T threshold);
template <class T>
void dorefa_activations(const T* x, T* y, int64_t n, T levels);
template <class T>
void linear_mid_tread(const T* x, T* y, int64_t n, T levels, T max_value);
template <class T>
void approx_sign_grad(const T* g, const T* x, T* dx, int64_t n);
template <class T>
void fake_quant_packed(const T* x, T* y, uint8_t* code, int64_t n, const FakeQuantParams<T>& p,
                       FakeQuantRounding r, T lo, T hi);
template <class T>
void fake_quant_per_channel_packed(const T* x, T* y, uint8_t* code, int64_t rows, int64_t channels,
                                   const FakeQuantParams<T>* p, FakeQuantRounding r, const T* lo,
                                   const T* hi);
// The same with one byte of window code per element: the layout of the CUDA kernels, whose tests
// take it as their reference.
template <class T>
void fake_quant_per_channel_coded(const T* x, T* y, uint8_t* code, int64_t rows, int64_t channels,
                                  const FakeQuantParams<T>* p, FakeQuantRounding r, const T* lo,
                                  const T* hi);
template <class T>
void sign_packed(const T* x, T* y, uint8_t* code, int64_t n, T scale, T lo, T hi);
template <class T>
void packed_grad(const T* g, const uint8_t* code, T* dx, int64_t n, double* below, double* above);
template <class T>
void packed_grad_per_channel(const T* g, const uint8_t* code, T* dx, int64_t rows, int64_t channels,
                             T* below, T* above);

// Scalar-only kernels (transcendentals or whole-tensor statistics of weights).
template <class T>
void swish_sign_grad(const T* g, const T* x, T* dx, int64_t n, T beta);
// dorefa weights: y = 2 * half_even((tanh(x) / (2M) + 0.5) * n) / n - 1 with M = max|tanh(x)|.
template <class T>
void dorefa_weights(const T* x, T* y, int64_t n, T levels, T max_abs_tanh);
template <class T>
void dorefa_weights_grad(const T* g, const T* x, T* dx, int64_t n, T max_abs_tanh);
template <class T>
T max_abs_tanh(const T* x, int64_t n);
template <class T>
T max_abs(const T* x, int64_t n);
// mean(|x|) over [outer, channels, inner] for each channel (channels == 1: over everything).
template <class T>
void mean_abs_per_channel(const T* x, int64_t outer, int64_t channels, int64_t inner, T* out);
// The reductions of the float32 sets (their lanes and order, so the same results) in any type.
template <class T>
double sum_abs(const T* x, int64_t n);
template <class T>
void sum_abs_rows(const T* x, int64_t rows, int64_t channels, double* acc);
template <class T>
void sum_abs_above(const T* x, int64_t n, T d, double* sum, int64_t* count);
template <class T>
void twn(const T* x, T* y, int64_t n, T threshold_abs, T a);
template <class T>
void clipped_grad_scaled_rows(const T* g, const T* x, T* dx, int64_t rows, int64_t channels,
                              bool clipped, T clip, const T* scale);
// Blueoil's TWN: y = a * tfsign(x) where |x| > D, else 0; a = mean(|x|) over those elements.
template <class T>
void twn_weight(const T* x, T* y, int64_t n, T threshold);
// Blueoil's TTQ forward and gradient (sums into d_positive / d_negative, in double).
template <class T>
void ttq_weight(const T* x, T* y, int64_t n, T positive, T negative, T threshold_abs);
template <class T>
void ttq_weight_grad(const T* g, const T* x, T* dx, int64_t n, T positive, T negative,
                     T threshold_abs, double* d_positive, double* d_negative);
}  // namespace ref

// Power-of-2 symmetric range (spec section 4), computed in T; kNoMaxExponent means "none".
template <class T>
struct Pow2Range {
  T min;
  T max;
  int exponent;
};
constexpr int kNoMaxExponent = INT32_MIN;
template <class T>
Pow2Range<T> pow2_range(T min, T max, int num_bits, int max_exponent);

}  // namespace kernels
}  // namespace lowbit
