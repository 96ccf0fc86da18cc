// The CUDA backend of every operator: argument checks shared with the CPU (op_checks.h), then the
// torch-free kernels of lowbit/cuda_kernels.h on the current stream. Nothing here reads a tensor's
// value on the host: ranges, scales and thresholds stay on the device (docs/cuda.md).
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <string>
#include <tuple>

#include "../op_checks.h"
#include "lowbit/cuda_kernels.h"
#include "lowbit/kernels.h"

namespace lowbit {
namespace cuda_ops {
namespace {

using namespace ::lowbit::ops;  // NOLINT: the shared checks
namespace kc = ::lowbit::cuda;

cudaStream_t stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

void ok(cudaError_t e, const char* op) {
  TORCH_CHECK(e == cudaSuccess, "lowbit::", op,
              ": CUDA kernel launch failed: ", cudaGetErrorString(e));
}

// A floating tensor on the CUDA device of `ref` (the first tensor argument).
void check_input(const at::Tensor& t, const char* name, const at::Tensor& ref) {
  check_floating_dtype(t, name);
  TORCH_CHECK(t.is_cuda() && t.device() == ref.device(), name, " must be on ", ref.device(),
              " like the other tensors, got ", t.device());
}

// A 1-element tensor argument (min, max, positive, negative) as a device tensor in the compute
// type: a CPU scalar is copied to the device, everything else is checked and converted there.
at::Tensor scalar_arg(const at::Tensor& t, const char* name, const at::Tensor& x,
                      at::ScalarType ct) {
  TORCH_CHECK_VALUE(t.numel() == 1, name, " must be a 0-dim or 1-element tensor, got shape ",
                    t.sizes());
  TORCH_CHECK_TYPE(at::isFloatingType(t.scalar_type()), name,
                   " must be a floating point tensor, got ", t.scalar_type());
  return t.to(x.device(), ct).reshape({1}).contiguous();
}

at::Tensor bytes(size_t n, const at::Tensor& like) {
  return at::empty({static_cast<int64_t>(n < 1 ? 1 : n)}, like.options().dtype(at::kByte));
}

template <class T>
T* ptr(const at::Tensor& t) {
  return t.data_ptr<T>();
}

// y = f(T{}, x, y, n) for an element-wise forward in the compute type of x.
template <class F>
at::Tensor map_unary(const at::Tensor& x, const char* op, F&& f) {
  check_input(x, "x", x);
  const c10::cuda::CUDAGuard guard(x.device());
  const auto ct = compute_type(x.scalar_type());
  const at::Tensor xc = to_compute(x, ct);
  at::Tensor y = at::empty(xc.sizes(), xc.options());
  with_compute_type(ct, [&](auto tag) {
    using T = decltype(tag);
    ok(f(tag, ptr<T>(xc), ptr<T>(y), xc.numel()), op);
  });
  return y.to(x.scalar_type());
}

// dx = f(T{}, g, x, dx, n) for an element-wise backward.
template <class F>
at::Tensor map_grad(const at::Tensor& grad, const at::Tensor& x, const char* op, F&& f) {
  check_input(x, "x", x);
  check_input(grad, "gradients", x);
  check_same_size(grad, x);
  const c10::cuda::CUDAGuard guard(x.device());
  const auto ct = compute_type(x.scalar_type());
  const at::Tensor gc = to_compute(grad, ct), xc = to_compute(x, ct);
  at::Tensor dx = at::empty(xc.sizes(), xc.options());
  with_compute_type(ct, [&](auto tag) {
    using T = decltype(tag);
    ok(f(tag, ptr<T>(gc), ptr<T>(xc), ptr<T>(dx), xc.numel()), op);
  });
  return dx.to(x.scalar_type());
}

// mean |x| of xc (compute type, contiguous) over everything (0-dim) or per index of `axis`.
at::Tensor mean_abs_compute(const at::Tensor& xc, c10::optional<int64_t> axis) {
  ChannelLayout l;
  l.inner = xc.numel();
  if (axis) l = channel_layout(xc, *axis);
  at::Tensor s = axis ? at::empty({l.channels}, xc.options()) : at::empty({}, xc.options());
  at::Tensor ws = bytes(kc::reduce_workspace_bytes(xc.numel()), xc);
  with_compute_type(xc.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    ok(kc::mean_abs<T>(ptr<T>(xc), l.outer, l.channels, l.inner, ptr<T>(s), ws.data_ptr(),
                       stream()),
       "mean_abs");
  });
  return s;
}

// ---- TF fake quant ------------------------------------------------------------------------------

// args: the range is a pair of floats, nudged on the host (ops::args_range, as on the CPU).
std::tuple<at::Tensor, at::Tensor> args_forward(const at::Tensor& inputs, double min, double max,
                                                int64_t num_bits, bool narrow_range,
                                                bool with_codes) {
  check_input(inputs, "inputs", inputs);
  const Nudged r = args_range(min, max, num_bits, narrow_range);
  const c10::cuda::CUDAGuard guard(inputs.device());
  const auto ct = compute_type(inputs.scalar_type());
  const at::Tensor xc = to_compute(inputs, ct);
  at::Tensor y = at::empty(xc.sizes(), xc.options());
  at::Tensor code =
      with_codes ? at::empty(xc.sizes(), xc.options().dtype(at::kByte)) : at::Tensor();
  with_compute_type(ct, [&](auto tag) {
    using T = decltype(tag);
    const auto& p = r.get(T{});
    ok(kc::fake_quant_host_params<T>(ptr<T>(xc), ptr<T>(y),
                                     with_codes ? code.data_ptr<uint8_t>() : nullptr, xc.numel(), p,
                                     p.nudged_min, p.nudged_max, stream()),
       "fake_quant_with_min_max_args");
  });
  return {y.to(inputs.scalar_type()), code};
}

at::Tensor fq_args(const at::Tensor& inputs, double min, double max, int64_t num_bits,
                   bool narrow_range) {
  return std::get<0>(args_forward(inputs, min, max, num_bits, narrow_range, false));
}

std::tuple<at::Tensor, at::Tensor> fq_args_coded(const at::Tensor& inputs, double min, double max,
                                                 int64_t num_bits, bool narrow_range) {
  return args_forward(inputs, min, max, num_bits, narrow_range, true);
}

at::Tensor fq_args_gradient(const at::Tensor& gradients, const at::Tensor& inputs, double min,
                            double max, int64_t num_bits, bool narrow_range) {
  const Nudged r = args_range(min, max, num_bits, narrow_range);
  return map_grad(gradients, inputs, "fake_quant_with_min_max_args_gradient",
                  [&](auto tag, const auto* g, const auto* x, auto* dx, int64_t n) {
                    using T = decltype(tag);
                    const auto& p = r.get(T{});
                    return kc::masked_grad<T>(g, x, dx, n, p.nudged_min, p.nudged_max, false,
                                              stream());
                  });
}

// vars and per channel: the ranges are device tensors, nudged on the device.
struct DeviceRanges {
  at::Tensor params;  // FakeQuantParams<T>[channels], as bytes
  at::Tensor lo, hi;  // the gradient windows, [channels] in T
};

DeviceRanges nudge_device(const at::Tensor& min, const at::Tensor& max, int64_t channels,
                          int64_t num_bits, bool narrow_range, at::ScalarType ct,
                          const at::Tensor& x) {
  DeviceRanges r;
  r.lo = at::empty({channels}, x.options().dtype(ct));
  r.hi = at::empty({channels}, x.options().dtype(ct));
  with_compute_type(ct, [&](auto tag) {
    using T = decltype(tag);
    r.params = bytes(sizeof(kc::FakeQuantParams<T>) * static_cast<size_t>(channels), x);
    ok(kc::nudge<T>(ptr<T>(min), ptr<T>(max), channels, static_cast<int>(num_bits), narrow_range,
                    reinterpret_cast<kc::FakeQuantParams<T>*>(r.params.data_ptr()), ptr<T>(r.lo),
                    ptr<T>(r.hi), stream()),
       "nudge");
  });
  return r;
}

// The checked min and max of vars (one range) or per channel (one per index of the last dimension)
// as contiguous device tensors in the compute type.
struct RangeArgs {
  at::Tensor min, max;
  int64_t channels = 1;
};

RangeArgs range_args(const at::Tensor& inputs, const at::Tensor& min, const at::Tensor& max,
                     int64_t num_bits, bool per_channel, at::ScalarType ct) {
  RangeArgs a;
  if (per_channel) {
    check_per_channel_args(inputs, min, max, num_bits);
    a.channels = inputs.size(-1);
    a.min = min.to(inputs.device(), ct).contiguous();
    a.max = max.to(inputs.device(), ct).contiguous();
  } else {
    check_num_bits(num_bits);
    a.min = scalar_arg(min, "min", inputs, ct);
    a.max = scalar_arg(max, "max", inputs, ct);
  }
  return a;
}

// The forward of vars (channels == 1, dividing) or per channel (the last dimension, multiplying).
std::tuple<at::Tensor, at::Tensor> vars_forward(const at::Tensor& inputs, const at::Tensor& min,
                                                const at::Tensor& max, int64_t num_bits,
                                                bool narrow_range, bool per_channel,
                                                bool with_codes) {
  check_input(inputs, "inputs", inputs);
  const c10::cuda::CUDAGuard guard(inputs.device());
  const auto ct = compute_type(inputs.scalar_type());
  const RangeArgs a = range_args(inputs, min, max, num_bits, per_channel, ct);
  const at::Tensor &mn = a.min, &mx = a.max;
  const int64_t channels = a.channels;
  const at::Tensor xc = to_compute(inputs, ct);
  at::Tensor y = at::empty(xc.sizes(), xc.options());
  at::Tensor code =
      with_codes ? at::empty(xc.sizes(), xc.options().dtype(at::kByte)) : at::Tensor();
  if (channels == 0 || xc.numel() == 0) return {y.to(inputs.scalar_type()), code};
  const DeviceRanges r = nudge_device(mn, mx, channels, num_bits, narrow_range, ct, inputs);
  with_compute_type(ct, [&](auto tag) {
    using T = decltype(tag);
    ok(kc::fake_quant<T>(ptr<T>(xc), ptr<T>(y), with_codes ? code.data_ptr<uint8_t>() : nullptr,
                         xc.numel(), channels,
                         reinterpret_cast<const kc::FakeQuantParams<T>*>(r.params.data_ptr()),
                         !per_channel, ptr<T>(r.lo), ptr<T>(r.hi), stream()),
       per_channel ? "fake_quant_with_min_max_vars_per_channel" : "fake_quant_with_min_max_vars");
  });
  return {y.to(inputs.scalar_type()), code};
}

at::Tensor fq_vars(const at::Tensor& inputs, const at::Tensor& min, const at::Tensor& max,
                   int64_t num_bits, bool narrow_range) {
  return std::get<0>(vars_forward(inputs, min, max, num_bits, narrow_range, false, false));
}
std::tuple<at::Tensor, at::Tensor> fq_vars_coded(const at::Tensor& inputs, const at::Tensor& min,
                                                 const at::Tensor& max, int64_t num_bits,
                                                 bool narrow_range) {
  return vars_forward(inputs, min, max, num_bits, narrow_range, false, true);
}
at::Tensor fq_per_channel(const at::Tensor& inputs, const at::Tensor& min, const at::Tensor& max,
                          int64_t num_bits, bool narrow_range) {
  return std::get<0>(vars_forward(inputs, min, max, num_bits, narrow_range, true, false));
}
std::tuple<at::Tensor, at::Tensor> fq_per_channel_coded(const at::Tensor& inputs,
                                                        const at::Tensor& min,
                                                        const at::Tensor& max, int64_t num_bits,
                                                        bool narrow_range) {
  return vars_forward(inputs, min, max, num_bits, narrow_range, true, true);
}

// A device sum (double) as a tensor of the dtype, shape and device of `like`.
at::Tensor sum_like(const at::Tensor& sum, const at::Tensor& like) {
  return sum.to(like.device(), like.scalar_type()).reshape(like.sizes()).clone();
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> vars_gradient(
    const at::Tensor& gradients, const at::Tensor& inputs, const at::Tensor& min,
    const at::Tensor& max, int64_t num_bits, bool narrow_range, bool per_channel) {
  check_input(inputs, "inputs", inputs);
  check_input(gradients, "gradients", inputs);
  check_same_size(gradients, inputs);
  const c10::cuda::CUDAGuard guard(inputs.device());
  const auto ct = compute_type(inputs.scalar_type());
  const RangeArgs a = range_args(inputs, min, max, num_bits, per_channel, ct);
  const at::Tensor &mn = a.min, &mx = a.max;
  const int64_t channels = a.channels;
  const at::Tensor gc = to_compute(gradients, ct), xc = to_compute(inputs, ct);
  at::Tensor dx = at::empty(xc.sizes(), xc.options());
  const auto f64 = xc.options().dtype(at::kDouble);
  at::Tensor below = at::zeros({channels}, f64), above = at::zeros({channels}, f64);
  if (channels > 0 && xc.numel() > 0) {
    const DeviceRanges r = nudge_device(mn, mx, channels, num_bits, narrow_range, ct, inputs);
    with_compute_type(ct, [&](auto tag) {
      using T = decltype(tag);
      if (per_channel) {
        const int64_t rows = xc.numel() / channels;
        at::Tensor ws = bytes(kc::channel_workspace_bytes(rows, channels), xc);
        ok(kc::window_grad_per_channel<T>(ptr<T>(gc), ptr<T>(xc), ptr<T>(dx), rows, channels,
                                          ptr<T>(r.lo), ptr<T>(r.hi), ptr<double>(below),
                                          ptr<double>(above), ws.data_ptr(), stream()),
           "fake_quant_with_min_max_vars_per_channel_gradient");
      } else {
        at::Tensor ws = bytes(kc::reduce_workspace_bytes(xc.numel()), xc);
        at::Tensor sums = at::empty({2}, f64);
        ok(kc::window_grad<T>(ptr<T>(gc), ptr<T>(xc), ptr<T>(dx), xc.numel(), ptr<T>(r.lo),
                              ptr<T>(r.hi), ptr<double>(sums), ws.data_ptr(), stream()),
           "fake_quant_with_min_max_vars_gradient");
        below = sums.narrow(0, 0, 1);
        above = sums.narrow(0, 1, 1);
      }
    });
  }
  return {dx.to(inputs.scalar_type()), sum_like(below, min), sum_like(above, max)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> fq_vars_gradient(
    const at::Tensor& gradients, const at::Tensor& inputs, const at::Tensor& min,
    const at::Tensor& max, int64_t num_bits, bool narrow_range) {
  return vars_gradient(gradients, inputs, min, max, num_bits, narrow_range, false);
}
std::tuple<at::Tensor, at::Tensor, at::Tensor> fq_per_channel_gradient(
    const at::Tensor& gradients, const at::Tensor& inputs, const at::Tensor& min,
    const at::Tensor& max, int64_t num_bits, bool narrow_range) {
  return vars_gradient(gradients, inputs, min, max, num_bits, narrow_range, true);
}

// (dx, sum below, sum above) from window codes; the sums are 0-dim float64 (zeros unless `sums`).
std::tuple<at::Tensor, at::Tensor, at::Tensor> coded_backward(const at::Tensor& grad,
                                                              const at::Tensor& code, bool sums) {
  check_codes(grad, code);
  check_input(grad, "grad", grad);
  TORCH_CHECK(code.device() == grad.device(), "code must be on ", grad.device(), ", got ",
              code.device());
  const c10::cuda::CUDAGuard guard(grad.device());
  const auto ct = compute_type(grad.scalar_type());
  const at::Tensor gc = to_compute(grad, ct), cc = code.contiguous();
  at::Tensor dx = at::empty(gc.sizes(), gc.options());
  at::Tensor s = at::zeros({2}, gc.options().dtype(at::kDouble));
  at::Tensor ws = bytes(sums ? kc::reduce_workspace_bytes(gc.numel()) : 1, gc);
  with_compute_type(ct, [&](auto tag) {
    using T = decltype(tag);
    ok(kc::coded_grad<T>(ptr<T>(gc), cc.data_ptr<uint8_t>(), ptr<T>(dx), gc.numel(),
                         sums ? ptr<double>(s) : nullptr, ws.data_ptr(), stream()),
       "coded_backward");
  });
  return {dx.to(grad.scalar_type()), s.select(0, 0), s.select(0, 1)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> coded_backward_per_channel(const at::Tensor& grad,
                                                                          const at::Tensor& code) {
  check_codes(grad, code);
  check_input(grad, "grad", grad);
  TORCH_CHECK(code.device() == grad.device(), "code must be on ", grad.device(), ", got ",
              code.device());
  TORCH_CHECK_VALUE(grad.dim() >= 1, "grad must have rank >= 1 for the per-channel backward");
  const c10::cuda::CUDAGuard guard(grad.device());
  const int64_t depth = grad.size(-1);
  const auto ct = compute_type(grad.scalar_type());
  const at::Tensor gc = to_compute(grad, ct), cc = code.contiguous();
  at::Tensor dx = at::empty(gc.sizes(), gc.options());
  const auto f64 = gc.options().dtype(at::kDouble);
  at::Tensor below = at::zeros({depth}, f64), above = at::zeros({depth}, f64);
  const int64_t rows = depth == 0 ? 0 : gc.numel() / depth;
  if (depth > 0) {
    at::Tensor ws = bytes(kc::channel_workspace_bytes(rows, depth), gc);
    with_compute_type(ct, [&](auto tag) {
      using T = decltype(tag);
      ok(kc::coded_grad_per_channel<T>(ptr<T>(gc), cc.data_ptr<uint8_t>(), ptr<T>(dx), rows, depth,
                                       ptr<double>(below), ptr<double>(above), ws.data_ptr(),
                                       stream()),
         "coded_backward_per_channel");
    });
  }
  return {dx.to(grad.scalar_type()), below, above};
}

// ---- power of 2 ---------------------------------------------------------------------------------

std::tuple<at::Tensor, at::Tensor> pow2_range(const at::Tensor& min, const at::Tensor& max,
                                              int64_t num_bits,
                                              c10::optional<int64_t> max_exponent) {
  check_num_bits(num_bits);
  check_input(min, "min", min);
  check_input(max, "max", min);
  TORCH_CHECK_VALUE(min.sizes() == max.sizes(), "min and max must have the same shape, got ",
                    min.sizes(), " and ", max.sizes());
  const c10::cuda::CUDAGuard guard(min.device());
  const auto ct = compute_type(min.scalar_type());
  const at::Tensor mn = to_compute(min, ct), mx = to_compute(max.to(min.scalar_type()), ct);
  at::Tensor lo = at::empty(mn.sizes(), mn.options()), hi = at::empty(mn.sizes(), mn.options());
  const int64_t n = mn.numel();
  if (n > 0) {
    at::Tensor wlo = at::empty({n}, mn.options()), whi = at::empty({n}, mn.options());
    with_compute_type(ct, [&](auto tag) {
      using T = decltype(tag);
      at::Tensor params = bytes(sizeof(kc::FakeQuantParams<T>) * static_cast<size_t>(n), mn);
      ok(kc::nudge_pow2<T>(ptr<T>(mn), ptr<T>(mx), n, static_cast<int>(num_bits),
                           max_exponent.has_value(),
                           max_exponent ? static_cast<int>(*max_exponent) : 0,
                           reinterpret_cast<kc::FakeQuantParams<T>*>(params.data_ptr()),
                           ptr<T>(wlo), ptr<T>(whi), ptr<T>(lo), ptr<T>(hi), stream()),
         "pow2_range");
    });
  }
  return {lo.to(min.scalar_type()), hi.to(min.scalar_type())};
}

at::Tensor fq_pow2(const at::Tensor& x, const at::Tensor& min, const at::Tensor& max,
                   int64_t num_bits, c10::optional<int64_t> max_exponent) {
  check_input(x, "x", x);
  auto [lo, hi] = pow2_range(min.to(x.device()), max.to(x.device()), num_bits, max_exponent);
  if (lo.numel() == 1) return fq_vars(x, lo, hi, num_bits, false);
  return fq_per_channel(x, lo, hi, num_bits, false);
}

// ---- Larq ---------------------------------------------------------------------------------------

at::Tensor sign_unit(const at::Tensor& x, const char* op) {
  return map_unary(x, op, [](auto tag, const auto* xp, auto* yp, int64_t n) {
    using T = decltype(tag);
    return kc::sign<T>(xp, yp, n, nullptr, stream());
  });
}

at::Tensor ste_sign(const at::Tensor& x, c10::optional<double>) { return sign_unit(x, "ste_sign"); }
at::Tensor approx_sign(const at::Tensor& x) { return sign_unit(x, "approx_sign"); }
at::Tensor swish_sign(const at::Tensor& x, double) { return sign_unit(x, "swish_sign"); }

std::tuple<at::Tensor, at::Tensor> ste_sign_coded(const at::Tensor& x, double clip_value) {
  check_clip_value(clip_value);
  check_input(x, "x", x);
  const c10::cuda::CUDAGuard guard(x.device());
  const auto ct = compute_type(x.scalar_type());
  const at::Tensor xc = to_compute(x, ct);
  at::Tensor y = at::empty(xc.sizes(), xc.options());
  at::Tensor code = at::empty(xc.sizes(), xc.options().dtype(at::kByte));
  with_compute_type(ct, [&](auto tag) {
    using T = decltype(tag);
    const T c = static_cast<T>(clip_value);
    ok(kc::sign_coded<T>(ptr<T>(xc), ptr<T>(y), code.data_ptr<uint8_t>(), xc.numel(), -c, c,
                         stream()),
       "ste_sign");
  });
  return {y.to(x.scalar_type()), code};
}

at::Tensor ste_heaviside(const at::Tensor& x, c10::optional<double>) {
  return map_unary(x, "ste_heaviside", [](auto tag, const auto* xp, auto* yp, int64_t n) {
    using T = decltype(tag);
    return kc::heaviside<T>(xp, yp, n, stream());
  });
}

// y = sign0(x) * mean|x| along every index of `axis`.
// sign(x) * mean(|x|) along `axis`, and those means (compute type, on the device).
std::tuple<at::Tensor, at::Tensor> sign_by_axis_mean(const at::Tensor& x, int64_t axis,
                                                     const char* op) {
  check_input(x, "x", x);
  const c10::cuda::CUDAGuard guard(x.device());
  const auto ct = compute_type(x.scalar_type());
  const at::Tensor xc = to_compute(x, ct);
  const ChannelLayout l = channel_layout(xc, axis);
  const at::Tensor s = mean_abs_compute(xc, axis);
  at::Tensor y = at::empty(xc.sizes(), xc.options());
  with_compute_type(ct, [&](auto tag) {
    using T = decltype(tag);
    ok(kc::sign_per_axis<T>(ptr<T>(xc), ptr<T>(y), l.outer, l.channels, l.inner, ptr<T>(s),
                            stream()),
       op);
  });
  return {y.to(x.scalar_type()), s};
}

at::Tensor magnitude_aware_sign(const at::Tensor& x, c10::optional<double>, int64_t axis) {
  return std::get<0>(sign_by_axis_mean(x, axis, "magnitude_aware_sign"));
}

std::tuple<at::Tensor, at::Tensor> magnitude_aware_sign_with_scale(const at::Tensor& x,
                                                                   int64_t axis) {
  return sign_by_axis_mean(x, axis, "magnitude_aware_sign");
}

at::Tensor ste_tern(const at::Tensor& x, double threshold_value, bool ternary_weight_networks,
                    c10::optional<double>) {
  check_input(x, "x", x);
  const c10::cuda::CUDAGuard guard(x.device());
  const auto ct = compute_type(x.scalar_type());
  const at::Tensor xc = to_compute(x, ct);
  const at::Tensor mean =
      ternary_weight_networks ? mean_abs_compute(xc, c10::nullopt) : at::Tensor();
  at::Tensor y = at::empty(xc.sizes(), xc.options());
  with_compute_type(ct, [&](auto tag) {
    using T = decltype(tag);
    // TWN's D = 0.7 * mean|x| in T, as on the CPU; otherwise the given threshold.
    const T factor = ternary_weight_networks ? T(0.7) : static_cast<T>(threshold_value);
    ok(kc::ternary<T>(ptr<T>(xc), ptr<T>(y), xc.numel(), factor,
                      ternary_weight_networks ? ptr<T>(mean) : nullptr, stream()),
       "ste_tern");
  });
  return y.to(x.scalar_type());
}

// max |tanh(x)| (of_tanh) or max |x| of xc on the device, 1 element in the compute type.
at::Tensor device_max(const at::Tensor& xc, bool of_tanh, const char* op) {
  at::Tensor m = at::empty({1}, xc.options());
  at::Tensor ws = bytes(kc::reduce_workspace_bytes(xc.numel()), xc);
  with_compute_type(xc.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    const auto f = of_tanh ? &kc::max_abs_tanh<T> : &kc::max_abs<T>;
    ok(f(ptr<T>(xc), xc.numel(), ptr<T>(m), ws.data_ptr(), stream()), op);
  });
  return m;
}

// dorefa's weights mode, y in x's dtype and M = max|tanh(x)| (0-dim, compute type, on the device).
std::tuple<at::Tensor, at::Tensor> dorefa_weights_with_max(const at::Tensor& x, int64_t k_bit) {
  check_dorefa(k_bit, "weights");
  check_input(x, "x", x);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor m = device_max(to_compute(x, compute_type(x.scalar_type())), true, "dorefa");
  at::Tensor y = map_unary(x, "dorefa", [&](auto tag, const auto* xp, auto* yp, int64_t n) {
    using T = decltype(tag);
    return kc::dorefa_weights<T>(xp, yp, n, dorefa_levels<T>(k_bit), ptr<T>(m), stream());
  });
  return {y, m.reshape({})};
}

at::Tensor dorefa(const at::Tensor& x, int64_t k_bit, c10::string_view mode_view) {
  const std::string mode(mode_view.data(), mode_view.size());
  check_dorefa(k_bit, mode);
  if (mode == "activations") {
    return map_unary(x, "dorefa", [&](auto tag, const auto* xp, auto* yp, int64_t n) {
      using T = decltype(tag);
      return kc::dorefa_activations<T>(xp, yp, n, dorefa_levels<T>(k_bit), stream());
    });
  }
  return std::get<0>(dorefa_weights_with_max(x, k_bit));
}

// ---- Blueoil ------------------------------------------------------------------------------------

at::Tensor binary_mean_scaling(const at::Tensor& x) {
  check_input(x, "x", x);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor s = mean_abs_compute(to_compute(x, compute_type(x.scalar_type())), c10::nullopt);
  return map_unary(x, "binary_mean_scaling", [&](auto tag, const auto* xp, auto* yp, int64_t n) {
    using T = decltype(tag);
    return kc::sign<T>(xp, yp, n, ptr<T>(s), stream());
  });
}

at::Tensor binary_channel_wise_mean_scaling(const at::Tensor& x, int64_t axis) {
  return std::get<0>(sign_by_axis_mean(x, axis, "binary_channel_wise_mean_scaling"));
}

at::Tensor linear_mid_tread_half(const at::Tensor& x, int64_t bit, double max_value) {
  check_linear_mid_tread(bit, max_value);
  return map_unary(x, "linear_mid_tread_half", [&](auto tag, const auto* xp, auto* yp, int64_t n) {
    using T = decltype(tag);
    const T mv = static_cast<T>(max_value);
    if (bit == 32) return kc::clamp<T>(xp, yp, n, T(0), mv, stream());
    return kc::linear_mid_tread<T>(xp, yp, n, dorefa_levels<T>(bit), mv, stream());
  });
}

at::Tensor twn_weight(const at::Tensor& x, double threshold) {
  check_input(x, "x", x);
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor ws = bytes(kc::twn_workspace_bytes(x.numel()), x);
  return map_unary(x, "twn_weight", [&](auto tag, const auto* xp, auto* yp, int64_t n) {
    using T = decltype(tag);
    return kc::twn_weight<T>(xp, yp, n, static_cast<T>(threshold), ws.data_ptr(), stream());
  });
}

// ttq_weight and max|x| (0-dim, compute type, on the device) for its backward.
std::tuple<at::Tensor, at::Tensor> ttq_weight_with_max(const at::Tensor& x,
                                                       const at::Tensor& positive,
                                                       const at::Tensor& negative,
                                                       double threshold) {
  check_input(x, "x", x);
  const c10::cuda::CUDAGuard guard(x.device());
  const auto ct = compute_type(x.scalar_type());
  const at::Tensor wp = scalar_arg(positive, "positive", x, ct);
  const at::Tensor wn = scalar_arg(negative, "negative", x, ct);
  const at::Tensor m = device_max(to_compute(x, ct), false, "ttq_weight");
  at::Tensor y = map_unary(x, "ttq_weight", [&](auto tag, const auto* xp, auto* yp, int64_t n) {
    using T = decltype(tag);
    return kc::ttq_weight<T>(xp, yp, n, ptr<T>(wp), ptr<T>(wn), static_cast<T>(threshold),
                             ptr<T>(m), stream());
  });
  return {y, m.reshape({})};
}

at::Tensor ttq_weight(const at::Tensor& x, const at::Tensor& positive, const at::Tensor& negative,
                      double threshold) {
  return std::get<0>(ttq_weight_with_max(x, positive, negative, threshold));
}

at::Tensor mean_abs(const at::Tensor& x, c10::optional<int64_t> axis) {
  check_input(x, "x", x);
  const c10::cuda::CUDAGuard guard(x.device());
  return mean_abs_compute(to_compute(x, compute_type(x.scalar_type())), axis).to(x.scalar_type());
}

// ---- backward passes ----------------------------------------------------------------------------

at::Tensor clipped_ste_backward(const at::Tensor& grad, const at::Tensor& x,
                                c10::optional<double> clip_value) {
  check_clip_value(clip_value);
  if (!clip_value) {
    check_input(x, "x", x);
    check_input(grad, "gradients", x);
    check_same_size(grad, x);
    return grad.to(x.scalar_type()).clone(at::MemoryFormat::Contiguous);
  }
  const double c = *clip_value;
  return map_grad(grad, x, "_clipped_ste_backward",
                  [&](auto tag, const auto* g, const auto* xp, auto* dx, int64_t n) {
                    using T = decltype(tag);
                    return kc::masked_grad<T>(g, xp, dx, n, static_cast<T>(-c), static_cast<T>(c),
                                              false, stream());
                  });
}

// s * clipped STE with s the scales of the channels along `axis` (compute type, on the device).
at::Tensor magnitude_aware_sign_grad_of(const at::Tensor& grad, const at::Tensor& x,
                                        const at::Tensor& s, c10::optional<double> clip_value,
                                        int64_t axis) {
  const ChannelLayout l = channel_layout(x, axis);
  return map_grad(grad, x, "_magnitude_aware_sign_backward",
                  [&](auto tag, const auto* g, const auto* xp, auto* dx, int64_t) {
                    using T = decltype(tag);
                    return kc::scaled_ste_grad<T>(
                        g, xp, dx, l.outer, l.channels, l.inner, ptr<T>(s), clip_value.has_value(),
                        static_cast<T>(clip_value.value_or(0.0)), stream());
                  });
}

at::Tensor magnitude_aware_sign_backward(const at::Tensor& grad, const at::Tensor& x,
                                         c10::optional<double> clip_value, int64_t axis) {
  check_input(x, "x", x);
  check_clip_value(clip_value);
  const c10::cuda::CUDAGuard guard(x.device());
  channel_layout(x, axis);  // the axis checked before the reduction
  const at::Tensor s = mean_abs_compute(to_compute(x, compute_type(x.scalar_type())), axis);
  return magnitude_aware_sign_grad_of(grad, x, s, clip_value, axis);
}

// The same from the forward's scales (_magnitude_aware_sign_with_scale).
at::Tensor magnitude_aware_sign_backward_scaled(const at::Tensor& grad, const at::Tensor& x,
                                                const at::Tensor& scale,
                                                c10::optional<double> clip_value, int64_t axis) {
  check_input(x, "x", x);
  check_clip_value(clip_value);
  check_saved_statistic(scale, "scale", x, channel_layout(x, axis).channels);
  const c10::cuda::CUDAGuard guard(x.device());
  return magnitude_aware_sign_grad_of(grad, x, scale.contiguous(), clip_value, axis);
}

at::Tensor approx_sign_backward(const at::Tensor& grad, const at::Tensor& x) {
  return map_grad(grad, x, "_approx_sign_backward",
                  [](auto tag, const auto* g, const auto* xp, auto* dx, int64_t n) {
                    using T = decltype(tag);
                    return kc::approx_sign_grad<T>(g, xp, dx, n, stream());
                  });
}

at::Tensor swish_sign_backward(const at::Tensor& grad, const at::Tensor& x, double beta) {
  return map_grad(grad, x, "_swish_sign_backward",
                  [&](auto tag, const auto* g, const auto* xp, auto* dx, int64_t n) {
                    using T = decltype(tag);
                    return kc::swish_sign_grad<T>(g, xp, dx, n, static_cast<T>(beta), stream());
                  });
}

// g * (1 - tanh(x)^2) / m, m 1 element of x's compute type on the device.
at::Tensor dorefa_weights_grad_of(const at::Tensor& grad, const at::Tensor& x,
                                  const at::Tensor& m) {
  return map_grad(grad, x, "_dorefa_backward",
                  [&](auto tag, const auto* g, const auto* xp, auto* dx, int64_t n) {
                    using T = decltype(tag);
                    return kc::dorefa_weights_grad<T>(g, xp, dx, n, ptr<T>(m), stream());
                  });
}

at::Tensor dorefa_backward(const at::Tensor& grad, const at::Tensor& x, int64_t k_bit,
                           c10::string_view mode_view) {
  const std::string mode(mode_view.data(), mode_view.size());
  check_dorefa(k_bit, mode);
  if (mode == "activations") {
    return map_grad(grad, x, "_dorefa_backward",
                    [](auto tag, const auto* g, const auto* xp, auto* dx, int64_t n) {
                      using T = decltype(tag);
                      return kc::masked_grad<T>(g, xp, dx, n, T(0), T(1), false, stream());
                    });
  }
  check_input(x, "x", x);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor m = device_max(to_compute(x, compute_type(x.scalar_type())), true, "dorefa");
  return dorefa_weights_grad_of(grad, x, m);
}

// The weights mode's backward from the forward's M: 1 element of x's compute type on x's device.
at::Tensor dorefa_weights_backward(const at::Tensor& grad, const at::Tensor& x,
                                   const at::Tensor& max_abs_tanh) {
  check_input(x, "x", x);
  check_saved_statistic(max_abs_tanh, "max_abs_tanh", x, 1);
  const c10::cuda::CUDAGuard guard(x.device());
  return dorefa_weights_grad_of(grad, x, max_abs_tanh.contiguous());
}

at::Tensor linear_mid_tread_half_backward(const at::Tensor& grad, const at::Tensor& x, int64_t bit,
                                          double max_value) {
  check_linear_mid_tread(bit, max_value);
  return map_grad(grad, x, "_linear_mid_tread_half_backward",
                  [&](auto tag, const auto* g, const auto* xp, auto* dx, int64_t n) {
                    using T = decltype(tag);
                    return kc::masked_grad<T>(g, xp, dx, n, T(0), static_cast<T>(max_value), true,
                                              stream());
                  });
}

// TTQ's gradients with D = threshold * max|x|: the forward's max|x| when given, else computed here.
std::tuple<at::Tensor, at::Tensor, at::Tensor> ttq_weight_grad_of(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& positive,
    const at::Tensor& negative, double threshold, const c10::optional<at::Tensor>& max_abs) {
  check_input(x, "x", x);
  check_input(grad, "gradients", x);
  check_same_size(grad, x);
  if (max_abs) check_saved_statistic(*max_abs, "max_abs", x, 1);
  const c10::cuda::CUDAGuard guard(x.device());
  const auto ct = compute_type(x.scalar_type());
  const at::Tensor wp = scalar_arg(positive, "positive", x, ct);
  const at::Tensor wn = scalar_arg(negative, "negative", x, ct);
  const at::Tensor gc = to_compute(grad, ct), xc = to_compute(x, ct);
  const at::Tensor m =
      max_abs ? max_abs->contiguous() : device_max(xc, false, "_ttq_weight_backward");
  at::Tensor dx = at::empty(xc.sizes(), xc.options());
  at::Tensor sums = at::empty({2}, xc.options().dtype(at::kDouble));
  at::Tensor ws = bytes(kc::reduce_workspace_bytes(xc.numel()), xc);
  with_compute_type(ct, [&](auto tag) {
    using T = decltype(tag);
    ok(kc::ttq_weight_grad<T>(ptr<T>(gc), ptr<T>(xc), ptr<T>(dx), xc.numel(), ptr<T>(wp),
                              ptr<T>(wn), static_cast<T>(threshold), ptr<T>(m), ptr<double>(sums),
                              ptr<double>(sums) + 1, ws.data_ptr(), stream()),
       "_ttq_weight_backward");
  });
  return {dx.to(x.scalar_type()), sum_like(sums.narrow(0, 0, 1), positive),
          sum_like(sums.narrow(0, 1, 1), negative)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ttq_weight_backward(const at::Tensor& grad,
                                                                   const at::Tensor& x,
                                                                   const at::Tensor& positive,
                                                                   const at::Tensor& negative,
                                                                   double threshold) {
  return ttq_weight_grad_of(grad, x, positive, negative, threshold, c10::nullopt);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ttq_weight_backward_from_max(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& positive,
    const at::Tensor& negative, double threshold, const at::Tensor& max_abs) {
  return ttq_weight_grad_of(grad, x, positive, negative, threshold, max_abs);
}

}  // namespace

TORCH_LIBRARY_IMPL(lowbit, CUDA, m) {
  m.impl("fake_quant_with_min_max_args", fq_args);
  m.impl("fake_quant_with_min_max_args_gradient", fq_args_gradient);
  m.impl("fake_quant_with_min_max_vars", fq_vars);
  m.impl("fake_quant_with_min_max_vars_gradient", fq_vars_gradient);
  m.impl("fake_quant_with_min_max_vars_per_channel", fq_per_channel);
  m.impl("fake_quant_with_min_max_vars_per_channel_gradient", fq_per_channel_gradient);
  m.impl("pow2_range", pow2_range);
  m.impl("fake_quant_pow2", fq_pow2);
  m.impl("_fake_quant_with_min_max_args_coded", fq_args_coded);
  m.impl("_fake_quant_with_min_max_vars_coded", fq_vars_coded);
  m.impl("_fake_quant_with_min_max_vars_per_channel_coded", fq_per_channel_coded);
  m.impl("_coded_backward", coded_backward);
  m.impl("_coded_backward_per_channel", coded_backward_per_channel);
  m.impl("ste_sign", ste_sign);
  m.impl("approx_sign", approx_sign);
  m.impl("swish_sign", swish_sign);
  m.impl("ste_heaviside", ste_heaviside);
  m.impl("magnitude_aware_sign", magnitude_aware_sign);
  m.impl("ste_tern", ste_tern);
  m.impl("dorefa", dorefa);
  m.impl("binary_mean_scaling", binary_mean_scaling);
  m.impl("binary_channel_wise_mean_scaling", binary_channel_wise_mean_scaling);
  m.impl("linear_mid_tread_half", linear_mid_tread_half);
  m.impl("twn_weight", twn_weight);
  m.impl("ttq_weight", ttq_weight);
  m.impl("_mean_abs", mean_abs);
  m.impl("_ste_sign_coded", ste_sign_coded);
  m.impl("_clipped_ste_backward", clipped_ste_backward);
  m.impl("_approx_sign_backward", approx_sign_backward);
  m.impl("_magnitude_aware_sign_backward", magnitude_aware_sign_backward);
  m.impl("_magnitude_aware_sign_with_scale", magnitude_aware_sign_with_scale);
  m.impl("_magnitude_aware_sign_backward_scaled", magnitude_aware_sign_backward_scaled);
  m.impl("_swish_sign_backward", swish_sign_backward);
  m.impl("_dorefa_backward", dorefa_backward);
  m.impl("_dorefa_weights_with_max", dorefa_weights_with_max);
  m.impl("_dorefa_weights_backward", dorefa_weights_backward);
  m.impl("_linear_mid_tread_half_backward", linear_mid_tread_half_backward);
  m.impl("_ttq_weight_backward", ttq_weight_backward);
  m.impl("_ttq_weight_with_max", ttq_weight_with_max);
  m.impl("_ttq_weight_backward_from_max", ttq_weight_backward_from_max);
}

}  // namespace cuda_ops
}  // namespace lowbit
