// Torch-free CUDA kernels of the quantizers: device pointers, sizes and a stream. The per-element
// math is detail/quant_math.h, the same code the CPU kernels run; docs/cuda.md has the design.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "lowbit/detail/quant_math.h"

namespace lowbit {
namespace cuda {

using detail::FakeQuantParams;

// Every function launches on `stream` and returns without waiting; scalars that depend on the data
// (scales, ranges, thresholds) are read from device memory, so nothing synchronises with the host.
// Errors of a launch are returned (cudaGetLastError), never thrown. T is float or double.

// ---- element-wise forwards ----------------------------------------------------------------------

// y = sign0(x) * s, s = *scale (device) or 1 when scale is null.
template <class T>
cudaError_t sign(const T* x, T* y, int64_t n, const T* scale, cudaStream_t stream);
// y = sign0(x) * scale[(i / inner) % channels]: one scale per index of a [outer, channels, inner]
// view.
template <class T>
cudaError_t sign_per_axis(const T* x, T* y, int64_t outer, int64_t channels, int64_t inner,
                          const T* scale, cudaStream_t stream);
// ste_sign's forward with the window codes of [lo, hi] for its backward.
template <class T>
cudaError_t sign_coded(const T* x, T* y, uint8_t* code, int64_t n, T lo, T hi, cudaStream_t stream);
template <class T>
cudaError_t heaviside(const T* x, T* y, int64_t n, cudaStream_t stream);
// Larq's ste_tern with D = factor * *mean_abs (device) or D = factor when mean_abs is null.
template <class T>
cudaError_t ternary(const T* x, T* y, int64_t n, T factor, const T* mean_abs, cudaStream_t stream);
template <class T>
cudaError_t dorefa_activations(const T* x, T* y, int64_t n, T levels, cudaStream_t stream);
// M = *max_abs_tanh (device).
template <class T>
cudaError_t dorefa_weights(const T* x, T* y, int64_t n, T levels, const T* max_abs_tanh,
                           cudaStream_t stream);
template <class T>
cudaError_t linear_mid_tread(const T* x, T* y, int64_t n, T levels, T max_value,
                             cudaStream_t stream);
// y = clamp(x, lo, hi) in TF's order (linear_mid_tread_half with bit = 32).
template <class T>
cudaError_t clamp(const T* x, T* y, int64_t n, T lo, T hi, cudaStream_t stream);
// Blueoil's TTQ: D = threshold * *max_abs, positive and negative on the device.
template <class T>
cudaError_t ttq_weight(const T* x, T* y, int64_t n, const T* positive, const T* negative,
                       T threshold, const T* max_abs, cudaStream_t stream);
// Blueoil's TWN: three passes over x (mean |x|, then the mean of |x| > D, then y). `workspace`
// holds twn_workspace_bytes(n) bytes of device memory.
size_t twn_workspace_bytes(int64_t n);
template <class T>
cudaError_t twn_weight(const T* x, T* y, int64_t n, T threshold, void* workspace,
                       cudaStream_t stream);

// ---- fake quant ---------------------------------------------------------------------------------

// The nudged parameters of [min[c], max[c]] for c < channels, from device min and max, into device
// params[c] (also the gradient window in lo[c], hi[c]: the nudged range, or everything when
// degenerate). An invalid range (min >= max other than 0 == 0, or NaN) cannot be reported without
// a synchronisation: its parameters are all NaN, so that its outputs are NaN.
template <class T>
cudaError_t nudge(const T* min, const T* max, int64_t channels, int num_bits, bool narrow_range,
                  FakeQuantParams<T>* params, T* lo, T* hi, cudaStream_t stream);
// The same for power-of-2 ranges (spec section 4): [min, max] becomes the symmetric power-of-2
// range first (written to range_lo / range_hi when not null). A NaN or infinite min/max gives NaN
// parameters.
template <class T>
cudaError_t nudge_pow2(const T* min, const T* max, int64_t channels, int num_bits,
                       bool has_max_exponent, int max_exponent, FakeQuantParams<T>* params, T* lo,
                       T* hi, T* range_lo, T* range_hi, cudaStream_t stream);

// y = fake quant of x with params[c], c = i % channels (channels == 1: per tensor); divide by the
// scale (vars) when `divide`, else multiply by its inverse (args, per channel). When code is not
// null it also gets each element's window code for [lo[c], hi[c]].
template <class T>
cudaError_t fake_quant(const T* x, T* y, uint8_t* code, int64_t n, int64_t channels,
                       const FakeQuantParams<T>* params, bool divide, const T* lo, const T* hi,
                       cudaStream_t stream);
// The same with one range given by value (args: computed on the host from float arguments).
template <class T>
cudaError_t fake_quant_host_params(const T* x, T* y, uint8_t* code, int64_t n,
                                   FakeQuantParams<T> params, T lo, T hi, cudaStream_t stream);

// ---- backward passes ----------------------------------------------------------------------------

// dx = g * 1[lo <= x <= hi] (closed) or 1[lo < x < hi] (open). lo/hi by value.
template <class T>
cudaError_t masked_grad(const T* g, const T* x, T* dx, int64_t n, T lo, T hi, bool open,
                        cudaStream_t stream);
template <class T>
cudaError_t approx_sign_grad(const T* g, const T* x, T* dx, int64_t n, cudaStream_t stream);
template <class T>
cudaError_t swish_sign_grad(const T* g, const T* x, T* dx, int64_t n, T beta, cudaStream_t stream);
template <class T>
cudaError_t dorefa_weights_grad(const T* g, const T* x, T* dx, int64_t n, const T* max_abs_tanh,
                                cudaStream_t stream);
// magnitude_aware_sign's backward: dx = (g * 1[|x| <= clip]) * scale[(i / inner) % channels], or
// g * scale[...] without a clip (has_clip false).
template <class T>
cudaError_t scaled_ste_grad(const T* g, const T* x, T* dx, int64_t outer, int64_t channels,
                            int64_t inner, const T* scale, bool has_clip, T clip,
                            cudaStream_t stream);

// Partial sums of the reductions: callers give reduce_workspace_bytes(n) bytes of device memory.
size_t reduce_workspace_bytes(int64_t n);

// dx from window codes, and (when sums is not null) sums[0] = sum(g * 1[below]), sums[1] =
// sum(g * 1[above]) in double, in one pass over g and code (plus a small pass over per-block
// partials). The window closed, as the fake quant forwards save it.
template <class T>
cudaError_t coded_grad(const T* g, const uint8_t* code, T* dx, int64_t n, double* sums,
                       void* workspace, cudaStream_t stream);
// The same per channel (the last dimension of a [rows, channels] matrix): below[c], above[c] in
// double. `workspace` holds channel_workspace_bytes(rows, channels) bytes.
size_t channel_workspace_bytes(int64_t rows, int64_t channels);
template <class T>
cudaError_t coded_grad_per_channel(const T* g, const uint8_t* code, T* dx, int64_t rows,
                                   int64_t channels, double* below, double* above, void* workspace,
                                   cudaStream_t stream);
// Per-tensor masked gradient with the window of a device FakeQuantParams' gradient window lo/hi
// (channels == 1) or per channel, and the sums below/above the window (as coded_grad*).
template <class T>
cudaError_t window_grad(const T* g, const T* x, T* dx, int64_t n, const T* lo, const T* hi,
                        double* sums, void* workspace, cudaStream_t stream);
template <class T>
cudaError_t window_grad_per_channel(const T* g, const T* x, T* dx, int64_t rows, int64_t channels,
                                    const T* lo, const T* hi, double* below, double* above,
                                    void* workspace, cudaStream_t stream);
// TTQ's backward: dx and d_positive, d_negative (double) sums.
template <class T>
cudaError_t ttq_weight_grad(const T* g, const T* x, T* dx, int64_t n, const T* positive,
                            const T* negative, T threshold, const T* max_abs, double* d_positive,
                            double* d_negative, void* workspace, cudaStream_t stream);

// ---- statistics ---------------------------------------------------------------------------------

// out[c] = mean(|x|) over each channel of a [outer, channels, inner] view (channels == 1: the whole
// tensor), in T, summed in double; NaN for an empty channel. `workspace`: reduce_workspace_bytes.
template <class T>
cudaError_t mean_abs(const T* x, int64_t outer, int64_t channels, int64_t inner, T* out,
                     void* workspace, cudaStream_t stream);
// *out = max |tanh(x)| and max |x| (NaN when any element is NaN; 0 for an empty tensor).
template <class T>
cudaError_t max_abs_tanh(const T* x, int64_t n, T* out, void* workspace, cudaStream_t stream);
template <class T>
cudaError_t max_abs(const T* x, int64_t n, T* out, void* workspace, cudaStream_t stream);

}  // namespace cuda
}  // namespace lowbit
