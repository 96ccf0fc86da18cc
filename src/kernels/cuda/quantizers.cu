// CUDA kernels of every quantizer: element-wise maps over detail/quant_math.h, and deterministic
// two-stage reductions (per-block partials in double, then one block adds them in order).
#include <cmath>
#include <limits>

#include "lowbit/cuda_kernels.h"

namespace lowbit {
namespace cuda {
namespace {

namespace d = ::lowbit::detail;

constexpr int kThreads = 256;
constexpr int kUnroll = 4;
constexpr int64_t kPerBlock = int64_t{kThreads} * kUnroll;
// Blocks of a grid-stride reduction: a fixed number for a given n, so that sums do not depend on
// the device.
constexpr int64_t kReduceBlocks = 1024;
// Row groups of a per-channel reduction (gridDim.y).
constexpr int64_t kRowGroups = 256;
constexpr int kChannelTile = 32;
constexpr int kRowTile = 8;

// ---- launching ----------------------------------------------------------------------------------

template <class F>
__global__ void __launch_bounds__(kThreads) map_kernel(int64_t n, F f) {
  const int64_t base = static_cast<int64_t>(blockIdx.x) * kPerBlock + threadIdx.x;
#pragma unroll
  for (int k = 0; k < kUnroll; ++k) {
    const int64_t i = base + k * kThreads;
    if (i < n) f(i);
  }
}

// f(i) for every i < n.
template <class F>
cudaError_t launch_map(int64_t n, cudaStream_t stream, F f) {
  if (n <= 0) return cudaSuccess;
  const int64_t blocks = (n + kPerBlock - 1) / kPerBlock;
  if (blocks > std::numeric_limits<int>::max()) return cudaErrorInvalidValue;
  map_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(n, f);
  return cudaGetLastError();
}

// f(i, c) for every i < n with c = i % channels, one division per thread and block-stride steps.
template <class F>
__global__ void __launch_bounds__(kThreads) channel_map_kernel(int64_t n, int64_t channels, F f) {
  const int64_t base = static_cast<int64_t>(blockIdx.x) * kPerBlock + threadIdx.x;
  const int64_t step = kThreads % channels;
  int64_t c = base % channels;
#pragma unroll
  for (int k = 0; k < kUnroll; ++k) {
    const int64_t i = base + k * kThreads;
    if (i < n) f(i, c);
    c += step;
    if (c >= channels) c -= channels;
  }
}

template <class F>
cudaError_t launch_channel_map(int64_t n, int64_t channels, cudaStream_t stream, F f) {
  if (n <= 0) return cudaSuccess;
  if (channels <= 0) return cudaErrorInvalidValue;
  const int64_t blocks = (n + kPerBlock - 1) / kPerBlock;
  if (blocks > std::numeric_limits<int>::max()) return cudaErrorInvalidValue;
  channel_map_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(n, channels, f);
  return cudaGetLastError();
}

// ---- reductions ---------------------------------------------------------------------------------

// Two double accumulators (a sum pair, or a sum and a count).
struct Pair {
  double a;
  double b;
};

struct SumOp {
  __device__ Pair operator()(Pair x, Pair y) const { return {x.a + y.a, x.b + y.b}; }
  __device__ static Pair identity() { return {0.0, 0.0}; }
};

// max keeping NaN: once any value is NaN the result is NaN, as the scalar reference.
__device__ double nan_max(double x, double y) {
  return (x != x || y != y) ? (x != x ? x : y) : (x > y ? x : y);
}
struct MaxOp {
  __device__ Pair operator()(Pair x, Pair y) const { return {nan_max(x.a, y.a), 0.0}; }
  __device__ static Pair identity() { return {0.0, 0.0}; }
};

// The block's combination of v, in a fixed order (shuffles, then the warps in order); the result
// is valid in thread 0.
template <class Op>
__device__ Pair block_reduce(Pair v, Op op) {
  __shared__ Pair warps[kThreads / 32];
  for (int off = 16; off > 0; off /= 2) {
    Pair o;
    o.a = __shfl_down_sync(0xffffffffu, v.a, off);
    o.b = __shfl_down_sync(0xffffffffu, v.b, off);
    v = op(v, o);
  }
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warps[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kThreads / 32 ? warps[lane] : Op::identity();
    for (int off = 16; off > 0; off /= 2) {
      Pair o;
      o.a = __shfl_down_sync(0xffffffffu, v.a, off);
      o.b = __shfl_down_sync(0xffffffffu, v.b, off);
      v = op(v, o);
    }
  }
  return v;
}

int64_t reduce_blocks(int64_t n) {
  const int64_t b = (n + kPerBlock - 1) / kPerBlock;
  return b < 1 ? 1 : (b > kReduceBlocks ? kReduceBlocks : b);
}

// Stage 1: block b combines f(i) over its grid-stride share of [0, n) into partial[b].
template <class Op, class F>
__global__ void __launch_bounds__(kThreads) reduce_kernel(int64_t n, Op op, F f, Pair* partial) {
  Pair v = Op::identity();
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < n; i += stride) {
    v = op(v, f(i));
  }
  v = block_reduce(v, op);
  if (threadIdx.x == 0) partial[blockIdx.x] = v;
}

// Stage 2: one block combines the partials in order and hands the result to `done`.
template <class Op, class Done>
__global__ void __launch_bounds__(kThreads)
    finish_kernel(const Pair* partial, int64_t count, Op op, Done done) {
  Pair v = Op::identity();
  for (int64_t i = threadIdx.x; i < count; i += kThreads) v = op(v, partial[i]);
  v = block_reduce(v, op);
  if (threadIdx.x == 0) done(v);
}

// Combines f(i) over [0, n) and calls done(result) on the device. f may also write outputs (a fused
// element-wise pass).
template <class Op, class F, class Done>
cudaError_t launch_reduce(int64_t n, void* workspace, cudaStream_t stream, Op op, F f, Done done) {
  Pair* partial = static_cast<Pair*>(workspace);
  const int64_t blocks = reduce_blocks(n);
  reduce_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(n, op, f, partial);
  finish_kernel<<<1, kThreads, 0, stream>>>(partial, blocks, op, done);
  return cudaGetLastError();
}

// Per-channel sums of a [rows, channels] matrix: thread (c, r) adds rows r, r + R, ... of column c
// (coalesced along c); the kRowTile rows of a block are added in shared memory, the kRowGroups
// row groups by finish_channels.
template <class F>
__global__ void channel_reduce_kernel(int64_t rows, int64_t channels, F f, Pair* partial) {
  __shared__ Pair tile[kRowTile][kChannelTile];
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kChannelTile + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.y) * kRowTile;
  Pair v{0.0, 0.0};
  if (c < channels) {
    for (int64_t r = static_cast<int64_t>(blockIdx.y) * kRowTile + threadIdx.y; r < rows;
         r += stride) {
      const Pair p = f(r * channels + c, c);
      v.a += p.a;
      v.b += p.b;
    }
  }
  tile[threadIdx.y][threadIdx.x] = v;
  __syncthreads();
  if (threadIdx.y == 0 && c < channels) {
    for (int y = 1; y < kRowTile; ++y) {
      v.a += tile[y][threadIdx.x].a;
      v.b += tile[y][threadIdx.x].b;
    }
    partial[static_cast<int64_t>(blockIdx.y) * channels + c] = v;
  }
}

__global__ void finish_channels_kernel(const Pair* partial, int64_t groups, int64_t channels,
                                       double* a, double* b) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (c >= channels) return;
  double sa = 0, sb = 0;
  for (int64_t g = 0; g < groups; ++g) {
    sa += partial[g * channels + c].a;
    sb += partial[g * channels + c].b;
  }
  a[c] = sa;
  b[c] = sb;
}

int64_t row_groups(int64_t rows) {
  const int64_t g = (rows + kRowTile - 1) / kRowTile;
  return g < 1 ? 1 : (g > kRowGroups ? kRowGroups : g);
}

template <class F>
cudaError_t launch_channel_reduce(int64_t rows, int64_t channels, void* workspace, double* a,
                                  double* b, cudaStream_t stream, F f) {
  if (channels <= 0) return cudaSuccess;
  Pair* partial = static_cast<Pair*>(workspace);
  const int64_t groups = row_groups(rows);
  const int64_t tiles = (channels + kChannelTile - 1) / kChannelTile;
  if (tiles > std::numeric_limits<int>::max()) return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(groups));
  const dim3 block(kChannelTile, kRowTile);
  channel_reduce_kernel<<<grid, block, 0, stream>>>(rows, channels, f, partial);
  const int64_t fb = (channels + kThreads - 1) / kThreads;
  finish_channels_kernel<<<static_cast<unsigned>(fb), kThreads, 0, stream>>>(partial, groups,
                                                                             channels, a, b);
  return cudaGetLastError();
}

// mean |x| of one channel of a [outer, channels, inner] view per block (channels > 1).
template <class T>
__global__ void __launch_bounds__(kThreads)
    channel_mean_abs_kernel(const T* x, int64_t outer, int64_t channels, int64_t inner, T* out) {
  const int64_t c = blockIdx.x;
  const int64_t count = outer * inner;
  Pair v{0.0, 0.0};
  for (int64_t t = threadIdx.x; t < count; t += kThreads) {
    const int64_t o = t / inner, j = t % inner;
    v.a += fabs(static_cast<double>(x[(o * channels + c) * inner + j]));
  }
  v = block_reduce(v, SumOp{});
  if (threadIdx.x == 0) {
    out[c] = static_cast<T>(count > 0 ? v.a / static_cast<double>(count)
                                      : std::numeric_limits<double>::quiet_NaN());
  }
}

template <class T>
__device__ T scale_at(const T* scale, int64_t i, int64_t channels, int64_t inner) {
  return scale[(i / inner) % channels];
}

}  // namespace

size_t reduce_workspace_bytes(int64_t) { return sizeof(Pair) * kReduceBlocks; }
size_t channel_workspace_bytes(int64_t rows, int64_t channels) {
  return sizeof(Pair) * static_cast<size_t>(row_groups(rows)) *
         static_cast<size_t>(channels < 1 ? 1 : channels);
}
// The reduction's partials, then the mean and the TWN scale a.
size_t twn_workspace_bytes(int64_t n) { return reduce_workspace_bytes(n) + 2 * sizeof(double); }

// ---- element-wise forwards ----------------------------------------------------------------------

template <class T>
cudaError_t sign(const T* x, T* y, int64_t n, const T* scale, cudaStream_t stream) {
  return launch_map(n, stream, [=] __device__(int64_t i) {
    y[i] = d::sign0_scaled(x[i], scale ? *scale : T(1));
  });
}

template <class T>
cudaError_t sign_per_axis(const T* x, T* y, int64_t outer, int64_t channels, int64_t inner,
                          const T* scale, cudaStream_t stream) {
  return launch_map(outer * channels * inner, stream, [=] __device__(int64_t i) {
    y[i] = d::sign0_scaled(x[i], scale_at(scale, i, channels, inner));
  });
}

template <class T>
cudaError_t sign_coded(const T* x, T* y, uint8_t* code, int64_t n, T lo, T hi,
                       cudaStream_t stream) {
  return launch_map(n, stream, [=] __device__(int64_t i) {
    const T v = x[i];
    y[i] = d::sign0_scaled(v, T(1));
    code[i] = d::window_code(v, lo, hi);
  });
}

template <class T>
cudaError_t heaviside(const T* x, T* y, int64_t n, cudaStream_t stream) {
  return launch_map(n, stream, [=] __device__(int64_t i) { y[i] = d::heaviside(x[i]); });
}

template <class T>
cudaError_t ternary(const T* x, T* y, int64_t n, T factor, const T* mean_abs, cudaStream_t stream) {
  return launch_map(n, stream, [=] __device__(int64_t i) {
    y[i] = d::ternary(x[i], mean_abs ? factor * *mean_abs : factor);
  });
}

template <class T>
cudaError_t dorefa_activations(const T* x, T* y, int64_t n, T levels, cudaStream_t stream) {
  return launch_map(n, stream,
                    [=] __device__(int64_t i) { y[i] = d::dorefa_activations(x[i], levels); });
}

template <class T>
cudaError_t dorefa_weights(const T* x, T* y, int64_t n, T levels, const T* max_abs_tanh,
                           cudaStream_t stream) {
  return launch_map(n, stream, [=] __device__(int64_t i) {
    y[i] = d::dorefa_weight(x[i], levels, *max_abs_tanh);
  });
}

template <class T>
cudaError_t linear_mid_tread(const T* x, T* y, int64_t n, T levels, T max_value,
                             cudaStream_t stream) {
  return launch_map(n, stream, [=] __device__(int64_t i) {
    y[i] = d::linear_mid_tread(x[i], levels, max_value);
  });
}

template <class T>
cudaError_t clamp(const T* x, T* y, int64_t n, T lo, T hi, cudaStream_t stream) {
  return launch_map(n, stream, [=] __device__(int64_t i) { y[i] = d::clamp_tf(x[i], lo, hi); });
}

template <class T>
cudaError_t ttq_weight(const T* x, T* y, int64_t n, const T* positive, const T* negative,
                       T threshold, const T* max_abs, cudaStream_t stream) {
  return launch_map(n, stream, [=] __device__(int64_t i) {
    y[i] = d::ttq_value(x[i], *positive, *negative, threshold * *max_abs);
  });
}

template <class T>
cudaError_t twn_weight(const T* x, T* y, int64_t n, T threshold, void* workspace,
                       cudaStream_t stream) {
  double* stats =
      reinterpret_cast<double*>(static_cast<char*>(workspace) + reduce_workspace_bytes(n));
  // Pass 1: D = threshold * mean|x| (the mean rounded to T, as the reference).
  cudaError_t e = launch_reduce(
      n, workspace, stream, SumOp{},
      [=] __device__(int64_t i) {
        return Pair{fabs(static_cast<double>(x[i])), 0.0};
      },
      [=] __device__(Pair v) {
        const T mean = static_cast<T>(n > 0 ? v.a / static_cast<double>(n)
                                            : std::numeric_limits<double>::quiet_NaN());
        stats[0] = static_cast<double>(threshold * mean);
      });
  if (e != cudaSuccess) return e;
  // Pass 2: a = mean |x| over |x| > D.
  e = launch_reduce(
      n, workspace, stream, SumOp{},
      [=] __device__(int64_t i) {
        const T dd = static_cast<T>(stats[0]);
        return fabs(x[i]) > dd ? Pair{fabs(static_cast<double>(x[i])), 1.0} : Pair{0.0, 0.0};
      },
      [=] __device__(Pair v) { stats[1] = v.b > 0 ? v.a / v.b : 0.0; });
  if (e != cudaSuccess) return e;
  return launch_map(n, stream, [=] __device__(int64_t i) {
    y[i] = d::twn_value(x[i], static_cast<T>(stats[0]), static_cast<T>(stats[1]));
  });
}

// ---- fake quant ---------------------------------------------------------------------------------

namespace {

template <class T>
__device__ void store_params(const d::FakeQuantParams<T>& p, bool valid, FakeQuantParams<T>* out,
                             T* lo, T* hi) {
  d::FakeQuantParams<T> q = p;
  if (!valid) {
    const T nan = std::numeric_limits<T>::quiet_NaN();
    q.nudged_min = q.nudged_max = q.scale = q.inv_scale = q.quant_zero = nan;
    q.degenerate = false;
  }
  *out = q;
  *lo = q.degenerate ? -std::numeric_limits<T>::infinity() : q.nudged_min;
  *hi = q.degenerate ? std::numeric_limits<T>::infinity() : q.nudged_max;
}

}  // namespace

template <class T>
cudaError_t nudge(const T* min, const T* max, int64_t channels, int num_bits, bool narrow_range,
                  FakeQuantParams<T>* params, T* lo, T* hi, cudaStream_t stream) {
  return launch_map(channels, stream, [=] __device__(int64_t c) {
    const T mn = min[c], mx = max[c];
    const bool valid = d::valid_range(mn, mx);
    store_params(
        valid ? d::nudge_unchecked(mn, mx, num_bits, narrow_range) : d::FakeQuantParams<T>{}, valid,
        params + c, lo + c, hi + c);
  });
}

template <class T>
cudaError_t nudge_pow2(const T* min, const T* max, int64_t channels, int num_bits,
                       bool has_max_exponent, int max_exponent, FakeQuantParams<T>* params, T* lo,
                       T* hi, T* range_lo, T* range_hi, cudaStream_t stream) {
  return launch_map(channels, stream, [=] __device__(int64_t c) {
    const T mn = min[c], mx = max[c];
    const bool finite = d::finite_range(mn, mx);
    T plo = std::numeric_limits<T>::quiet_NaN(), phi = plo;
    if (finite) {
      d::pow2_range_unchecked(mn, mx, num_bits, has_max_exponent, max_exponent, &plo, &phi,
                              static_cast<int*>(nullptr));
    }
    if (range_lo) range_lo[c] = plo;
    if (range_hi) range_hi[c] = phi;
    store_params(finite ? d::nudge_unchecked(plo, phi, num_bits, false) : d::FakeQuantParams<T>{},
                 finite, params + c, lo + c, hi + c);
  });
}

template <class T>
cudaError_t fake_quant(const T* x, T* y, uint8_t* code, int64_t n, int64_t channels,
                       const FakeQuantParams<T>* params, bool divide, const T* lo, const T* hi,
                       cudaStream_t stream) {
  return launch_channel_map(n, channels, stream, [=] __device__(int64_t i, int64_t c) {
    const FakeQuantParams<T> p = params[c];
    const T v = x[i];
    // The degenerate range has all-zero parameters: multiplying gives exactly 0.
    y[i] = (divide && !p.degenerate) ? d::fake_quant_div(v, p) : d::fake_quant_mul(v, p);
    if (code) code[i] = d::window_code(v, lo[c], hi[c]);
  });
}

template <class T>
cudaError_t fake_quant_host_params(const T* x, T* y, uint8_t* code, int64_t n,
                                   FakeQuantParams<T> params, T lo, T hi, cudaStream_t stream) {
  return launch_map(n, stream, [=] __device__(int64_t i) {
    const T v = x[i];
    y[i] = d::fake_quant_mul(v, params);
    if (code) code[i] = d::window_code(v, lo, hi);
  });
}

// ---- backward passes ----------------------------------------------------------------------------

template <class T>
cudaError_t masked_grad(const T* g, const T* x, T* dx, int64_t n, T lo, T hi, bool open,
                        cudaStream_t stream) {
  return launch_map(
      n, stream, [=] __device__(int64_t i) { dx[i] = d::masked_grad(g[i], x[i], lo, hi, open); });
}

template <class T>
cudaError_t approx_sign_grad(const T* g, const T* x, T* dx, int64_t n, cudaStream_t stream) {
  return launch_map(n, stream,
                    [=] __device__(int64_t i) { dx[i] = d::approx_sign_grad(g[i], x[i]); });
}

template <class T>
cudaError_t swish_sign_grad(const T* g, const T* x, T* dx, int64_t n, T beta, cudaStream_t stream) {
  return launch_map(n, stream,
                    [=] __device__(int64_t i) { dx[i] = d::swish_sign_grad(g[i], x[i], beta); });
}

template <class T>
cudaError_t dorefa_weights_grad(const T* g, const T* x, T* dx, int64_t n, const T* max_abs_tanh,
                                cudaStream_t stream) {
  return launch_map(n, stream, [=] __device__(int64_t i) {
    dx[i] = d::dorefa_weight_grad(g[i], x[i], *max_abs_tanh);
  });
}

template <class T>
cudaError_t scaled_ste_grad(const T* g, const T* x, T* dx, int64_t outer, int64_t channels,
                            int64_t inner, const T* scale, bool has_clip, T clip,
                            cudaStream_t stream) {
  return launch_map(outer * channels * inner, stream, [=] __device__(int64_t i) {
    const T ste = has_clip ? d::masked_grad(g[i], x[i], -clip, clip, false) : g[i];
    dx[i] = ste * scale_at(scale, i, channels, inner);
  });
}

template <class T>
cudaError_t coded_grad(const T* g, const uint8_t* code, T* dx, int64_t n, double* sums,
                       void* workspace, cudaStream_t stream) {
  if (sums == nullptr) {
    return launch_map(n, stream,
                      [=] __device__(int64_t i) { dx[i] = d::coded_grad(g[i], code[i]); });
  }
  return launch_reduce(
      n, workspace, stream, SumOp{},
      [=] __device__(int64_t i) {
        const T gi = g[i];
        const uint8_t ci = code[i];
        dx[i] = d::coded_grad(gi, ci);
        return Pair{(ci & d::kCodeBelow) ? static_cast<double>(gi) : 0.0,
                    (ci & d::kCodeAbove) ? static_cast<double>(gi) : 0.0};
      },
      [=] __device__(Pair v) {
        sums[0] = v.a;
        sums[1] = v.b;
      });
}

template <class T>
cudaError_t coded_grad_per_channel(const T* g, const uint8_t* code, T* dx, int64_t rows,
                                   int64_t channels, double* below, double* above, void* workspace,
                                   cudaStream_t stream) {
  return launch_channel_reduce(rows, channels, workspace, below, above, stream,
                               [=] __device__(int64_t i, int64_t) {
                                 const T gi = g[i];
                                 const uint8_t ci = code[i];
                                 dx[i] = d::coded_grad(gi, ci);
                                 return Pair{(ci & d::kCodeBelow) ? static_cast<double>(gi) : 0.0,
                                             (ci & d::kCodeAbove) ? static_cast<double>(gi) : 0.0};
                               });
}

namespace {
template <class T>
__device__ Pair window_step(const T* g, const T* x, T* dx, int64_t i, T lo, T hi) {
  const T gi = g[i], xi = x[i];
  dx[i] = d::masked_grad(gi, xi, lo, hi, false);
  return Pair{xi < lo ? static_cast<double>(gi) : 0.0, xi > hi ? static_cast<double>(gi) : 0.0};
}
}  // namespace

template <class T>
cudaError_t window_grad(const T* g, const T* x, T* dx, int64_t n, const T* lo, const T* hi,
                        double* sums, void* workspace, cudaStream_t stream) {
  return launch_reduce(
      n, workspace, stream, SumOp{},
      [=] __device__(int64_t i) { return window_step(g, x, dx, i, *lo, *hi); },
      [=] __device__(Pair v) {
        sums[0] = v.a;
        sums[1] = v.b;
      });
}

template <class T>
cudaError_t window_grad_per_channel(const T* g, const T* x, T* dx, int64_t rows, int64_t channels,
                                    const T* lo, const T* hi, double* below, double* above,
                                    void* workspace, cudaStream_t stream) {
  return launch_channel_reduce(
      rows, channels, workspace, below, above, stream,
      [=] __device__(int64_t i, int64_t c) { return window_step(g, x, dx, i, lo[c], hi[c]); });
}

template <class T>
cudaError_t ttq_weight_grad(const T* g, const T* x, T* dx, int64_t n, const T* positive,
                            const T* negative, T threshold, const T* max_abs, double* d_positive,
                            double* d_negative, void* workspace, cudaStream_t stream) {
  return launch_reduce(
      n, workspace, stream, SumOp{},
      [=] __device__(int64_t i) {
        const T dd = threshold * *max_abs, gi = g[i], xi = x[i];
        dx[i] = d::ttq_grad(gi, xi, *positive, *negative, dd);
        return Pair{xi > dd ? static_cast<double>(gi) : 0.0,
                    xi < -dd ? static_cast<double>(gi) : 0.0};
      },
      [=] __device__(Pair v) {
        *d_positive = v.a;
        *d_negative = v.b;
      });
}

// ---- statistics ---------------------------------------------------------------------------------

template <class T>
cudaError_t mean_abs(const T* x, int64_t outer, int64_t channels, int64_t inner, T* out,
                     void* workspace, cudaStream_t stream) {
  if (channels <= 0) return cudaSuccess;
  if (channels > 1) {
    if (channels > std::numeric_limits<int>::max()) return cudaErrorInvalidValue;
    channel_mean_abs_kernel<T>
        <<<static_cast<unsigned>(channels), kThreads, 0, stream>>>(x, outer, channels, inner, out);
    return cudaGetLastError();
  }
  const int64_t n = outer * inner;
  return launch_reduce(
      n, workspace, stream, SumOp{},
      [=] __device__(int64_t i) {
        return Pair{fabs(static_cast<double>(x[i])), 0.0};
      },
      [=] __device__(Pair v) {
        *out = static_cast<T>(n > 0 ? v.a / static_cast<double>(n)
                                    : std::numeric_limits<double>::quiet_NaN());
      });
}

template <class T>
cudaError_t max_abs_tanh(const T* x, int64_t n, T* out, void* workspace, cudaStream_t stream) {
  return launch_reduce(
      n, workspace, stream, MaxOp{},
      [=] __device__(int64_t i) {
        return Pair{static_cast<double>(fabs(d::dorefa_tanh(x[i]))), 0.0};  // the outputs' tanh
      },
      [=] __device__(Pair v) { *out = static_cast<T>(v.a); });
}

template <class T>
cudaError_t max_abs(const T* x, int64_t n, T* out, void* workspace, cudaStream_t stream) {
  return launch_reduce(
      n, workspace, stream, MaxOp{},
      [=] __device__(int64_t i) {
        return Pair{static_cast<double>(fabs(x[i])), 0.0};
      },
      [=] __device__(Pair v) { *out = static_cast<T>(v.a); });
}

// ---- instantiations -----------------------------------------------------------------------------

#define LOWBIT_INSTANTIATE_CUDA(T)                                                                \
  template cudaError_t sign<T>(const T*, T*, int64_t, const T*, cudaStream_t);                    \
  template cudaError_t sign_per_axis<T>(const T*, T*, int64_t, int64_t, int64_t, const T*,        \
                                        cudaStream_t);                                            \
  template cudaError_t sign_coded<T>(const T*, T*, uint8_t*, int64_t, T, T, cudaStream_t);        \
  template cudaError_t heaviside<T>(const T*, T*, int64_t, cudaStream_t);                         \
  template cudaError_t ternary<T>(const T*, T*, int64_t, T, const T*, cudaStream_t);              \
  template cudaError_t dorefa_activations<T>(const T*, T*, int64_t, T, cudaStream_t);             \
  template cudaError_t dorefa_weights<T>(const T*, T*, int64_t, T, const T*, cudaStream_t);       \
  template cudaError_t linear_mid_tread<T>(const T*, T*, int64_t, T, T, cudaStream_t);            \
  template cudaError_t clamp<T>(const T*, T*, int64_t, T, T, cudaStream_t);                       \
  template cudaError_t ttq_weight<T>(const T*, T*, int64_t, const T*, const T*, T, const T*,      \
                                     cudaStream_t);                                               \
  template cudaError_t twn_weight<T>(const T*, T*, int64_t, T, void*, cudaStream_t);              \
  template cudaError_t nudge<T>(const T*, const T*, int64_t, int, bool, FakeQuantParams<T>*, T*,  \
                                T*, cudaStream_t);                                                \
  template cudaError_t nudge_pow2<T>(const T*, const T*, int64_t, int, bool, int,                 \
                                     FakeQuantParams<T>*, T*, T*, T*, T*, cudaStream_t);          \
  template cudaError_t fake_quant<T>(const T*, T*, uint8_t*, int64_t, int64_t,                    \
                                     const FakeQuantParams<T>*, bool, const T*, const T*,         \
                                     cudaStream_t);                                               \
  template cudaError_t fake_quant_host_params<T>(const T*, T*, uint8_t*, int64_t,                 \
                                                 FakeQuantParams<T>, T, T, cudaStream_t);         \
  template cudaError_t masked_grad<T>(const T*, const T*, T*, int64_t, T, T, bool, cudaStream_t); \
  template cudaError_t approx_sign_grad<T>(const T*, const T*, T*, int64_t, cudaStream_t);        \
  template cudaError_t swish_sign_grad<T>(const T*, const T*, T*, int64_t, T, cudaStream_t);      \
  template cudaError_t dorefa_weights_grad<T>(const T*, const T*, T*, int64_t, const T*,          \
                                              cudaStream_t);                                      \
  template cudaError_t scaled_ste_grad<T>(const T*, const T*, T*, int64_t, int64_t, int64_t,      \
                                          const T*, bool, T, cudaStream_t);                       \
  template cudaError_t coded_grad<T>(const T*, const uint8_t*, T*, int64_t, double*, void*,       \
                                     cudaStream_t);                                               \
  template cudaError_t coded_grad_per_channel<T>(const T*, const uint8_t*, T*, int64_t, int64_t,  \
                                                 double*, double*, void*, cudaStream_t);          \
  template cudaError_t window_grad<T>(const T*, const T*, T*, int64_t, const T*, const T*,        \
                                      double*, void*, cudaStream_t);                              \
  template cudaError_t window_grad_per_channel<T>(const T*, const T*, T*, int64_t, int64_t,       \
                                                  const T*, const T*, double*, double*, void*,    \
                                                  cudaStream_t);                                  \
  template cudaError_t ttq_weight_grad<T>(const T*, const T*, T*, int64_t, const T*, const T*, T, \
                                          const T*, double*, double*, void*, cudaStream_t);       \
  template cudaError_t mean_abs<T>(const T*, int64_t, int64_t, int64_t, T*, void*, cudaStream_t); \
  template cudaError_t max_abs_tanh<T>(const T*, int64_t, T*, void*, cudaStream_t);               \
  template cudaError_t max_abs<T>(const T*, int64_t, T*, void*, cudaStream_t);

LOWBIT_INSTANTIATE_CUDA(float)
LOWBIT_INSTANTIATE_CUDA(double)
#undef LOWBIT_INSTANTIATE_CUDA

}  // namespace cuda
}  // namespace lowbit
