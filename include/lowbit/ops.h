// lowbit's quantizer operators from C++: each call goes through the PyTorch dispatcher (so
// autograd, CPU and CUDA kernels apply), with the names and defaults of
// ../shared/spec/quantizers.md.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <string>
#include <tuple>

namespace lowbit {

// TensorFlow fake quantization.
at::Tensor fake_quant_with_min_max_args(const at::Tensor& inputs, double min = -6.0,
                                        double max = 6.0, int64_t num_bits = 8,
                                        bool narrow_range = false);
at::Tensor fake_quant_with_min_max_args_gradient(const at::Tensor& gradients,
                                                 const at::Tensor& inputs, double min = -6.0,
                                                 double max = 6.0, int64_t num_bits = 8,
                                                 bool narrow_range = false);
at::Tensor fake_quant_with_min_max_vars(const at::Tensor& inputs, const at::Tensor& min,
                                        const at::Tensor& max, int64_t num_bits = 8,
                                        bool narrow_range = false);
std::tuple<at::Tensor, at::Tensor, at::Tensor> fake_quant_with_min_max_vars_gradient(
    const at::Tensor& gradients, const at::Tensor& inputs, const at::Tensor& min,
    const at::Tensor& max, int64_t num_bits = 8, bool narrow_range = false);
at::Tensor fake_quant_with_min_max_vars_per_channel(const at::Tensor& inputs, const at::Tensor& min,
                                                    const at::Tensor& max, int64_t num_bits = 8,
                                                    bool narrow_range = false);
std::tuple<at::Tensor, at::Tensor, at::Tensor> fake_quant_with_min_max_vars_per_channel_gradient(
    const at::Tensor& gradients, const at::Tensor& inputs, const at::Tensor& min,
    const at::Tensor& max, int64_t num_bits = 8, bool narrow_range = false);

// Larq.
at::Tensor ste_sign(const at::Tensor& x, c10::optional<double> clip_value = 1.0);
at::Tensor approx_sign(const at::Tensor& x);
at::Tensor swish_sign(const at::Tensor& x, double beta = 5.0);
at::Tensor ste_heaviside(const at::Tensor& x, c10::optional<double> clip_value = 1.0);
at::Tensor magnitude_aware_sign(const at::Tensor& x, c10::optional<double> clip_value = 1.0,
                                int64_t axis = -1);
at::Tensor ste_tern(const at::Tensor& x, double threshold_value = 0.05,
                    bool ternary_weight_networks = false, c10::optional<double> clip_value = 1.0);
at::Tensor dorefa(const at::Tensor& x, int64_t k_bit = 2, const std::string& mode = "activations");

// Blueoil.
at::Tensor binary_mean_scaling(const at::Tensor& x);
at::Tensor binary_channel_wise_mean_scaling(const at::Tensor& x, int64_t axis = -1);
at::Tensor linear_mid_tread_half(const at::Tensor& x, int64_t bit = 2, double max_value = 2.0);
at::Tensor twn_weight(const at::Tensor& x, double threshold = 0.7);
at::Tensor ttq_weight(const at::Tensor& x, const at::Tensor& positive, const at::Tensor& negative,
                      double threshold = 0.05);

// Power-of-2 symmetric fixed point.
std::tuple<at::Tensor, at::Tensor> pow2_range(const at::Tensor& min, const at::Tensor& max,
                                              int64_t num_bits = 8,
                                              c10::optional<int64_t> max_exponent = c10::nullopt);
at::Tensor fake_quant_pow2(const at::Tensor& x, const at::Tensor& min, const at::Tensor& max,
                           int64_t num_bits = 8,
                           c10::optional<int64_t> max_exponent = c10::nullopt);

// Blueoil's `backward=` override: y = forward(x) with d/dx replaced by backward(x, grad_y).
// Gradients of anything else `forward` uses (min, max, positive, ...) keep their defaults. Example:
//   auto y = lowbit::with_backward(x, [](const at::Tensor& t) { return lowbit::ste_sign(t); },
//                                  [](const at::Tensor& x, const at::Tensor& g) { return g * 2; });
using ForwardFn = std::function<at::Tensor(const at::Tensor& x)>;
using BackwardFn = std::function<at::Tensor(const at::Tensor& x, const at::Tensor& grad_y)>;
at::Tensor with_backward(const at::Tensor& x, const ForwardFn& forward, const BackwardFn& backward);

// Building blocks of the operators' backward passes (private ops `lowbit::_name`).
namespace internal {
at::Tensor mean_abs(const at::Tensor& x, c10::optional<int64_t> axis);
at::Tensor clipped_ste_backward(const at::Tensor& grad, const at::Tensor& x,
                                c10::optional<double> clip_value);
at::Tensor approx_sign_backward(const at::Tensor& grad, const at::Tensor& x);
at::Tensor magnitude_aware_sign_backward(const at::Tensor& grad, const at::Tensor& x,
                                         c10::optional<double> clip_value, int64_t axis);
// magnitude_aware_sign with its scales s = mean(|x|) along `axis` (x's compute type), and the
// backward from those s, so that autograd's backward does not read x once more for them.
std::tuple<at::Tensor, at::Tensor> magnitude_aware_sign_with_scale(const at::Tensor& x,
                                                                   int64_t axis);
at::Tensor magnitude_aware_sign_backward_scaled(const at::Tensor& grad, const at::Tensor& x,
                                                const at::Tensor& scale,
                                                c10::optional<double> clip_value, int64_t axis);
at::Tensor swish_sign_backward(const at::Tensor& grad, const at::Tensor& x, double beta);
at::Tensor dorefa_backward(const at::Tensor& grad, const at::Tensor& x, int64_t k_bit,
                           const std::string& mode);
// dorefa's weights mode: (y, M) with M = max|tanh(x)| as a 0-dim tensor in x's compute type
// (float64 for float64 x, else float32), and the backward from that M, so that autograd's backward
// does not read x once more for it.
std::tuple<at::Tensor, at::Tensor> dorefa_weights_with_max(const at::Tensor& x, int64_t k_bit);
at::Tensor dorefa_weights_backward(const at::Tensor& grad, const at::Tensor& x,
                                   const at::Tensor& max_abs_tanh);
at::Tensor linear_mid_tread_half_backward(const at::Tensor& grad, const at::Tensor& x, int64_t bit,
                                          double max_value);
std::tuple<at::Tensor, at::Tensor, at::Tensor> ttq_weight_backward(const at::Tensor& grad,
                                                                   const at::Tensor& x,
                                                                   const at::Tensor& positive,
                                                                   const at::Tensor& negative,
                                                                   double threshold);
// ttq_weight with max|x| (0-dim, x's compute type), and the backward from it: D = threshold *
// max|x| without a pass over x.
std::tuple<at::Tensor, at::Tensor> ttq_weight_with_max(const at::Tensor& x,
                                                       const at::Tensor& positive,
                                                       const at::Tensor& negative,
                                                       double threshold);
std::tuple<at::Tensor, at::Tensor, at::Tensor> ttq_weight_backward_from_max(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& positive,
    const at::Tensor& negative, double threshold, const at::Tensor& max_abs);
// Forwards that also return the window codes of x (uint8, see detail::window_code), and the
// backward from them: (dx, sum of grad below the window, sum above), sums as float64 tensors. On
// the CPU the codes are packed, per tensor and per channel (kernels::packed_code_bytes(numel)
// bytes, 2 bits per element); on CUDA they are one byte per element, in the shape of x. Codes are
// for the backward of the device whose forward wrote them.
std::tuple<at::Tensor, at::Tensor> fake_quant_with_min_max_args_coded(const at::Tensor& inputs,
                                                                      double min, double max,
                                                                      int64_t num_bits,
                                                                      bool narrow_range);
std::tuple<at::Tensor, at::Tensor> fake_quant_with_min_max_vars_coded(const at::Tensor& inputs,
                                                                      const at::Tensor& min,
                                                                      const at::Tensor& max,
                                                                      int64_t num_bits,
                                                                      bool narrow_range);
std::tuple<at::Tensor, at::Tensor> fake_quant_with_min_max_vars_per_channel_coded(
    const at::Tensor& inputs, const at::Tensor& min, const at::Tensor& max, int64_t num_bits,
    bool narrow_range);
std::tuple<at::Tensor, at::Tensor> ste_sign_coded(const at::Tensor& x, double clip_value);
std::tuple<at::Tensor, at::Tensor, at::Tensor> coded_backward(const at::Tensor& grad,
                                                              const at::Tensor& code, bool sums);
std::tuple<at::Tensor, at::Tensor, at::Tensor> coded_backward_per_channel(const at::Tensor& grad,
                                                                          const at::Tensor& code);
// How many threads the CPU operators' at::parallel_for uses for `tasks` tasks (at most
// at::get_num_threads()): 1 in a build without LibTorch's OpenMP flags.
int64_t parallel_threads(int64_t tasks);
}  // namespace internal

}  // namespace lowbit
