// The C++ entry points of lowbit's operators: typed calls through the PyTorch dispatcher.
#include <ATen/core/dispatch/Dispatcher.h>

#include "lowbit/ops.h"

namespace lowbit {
namespace {
template <class Sig>
c10::TypedOperatorHandle<Sig> handle(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Sig>();
}
}  // namespace

at::Tensor fake_quant_with_min_max_args(const at::Tensor& inputs, double min, double max,
                                        int64_t num_bits, bool narrow_range) {
  static const auto op = handle<at::Tensor(const at::Tensor&, double, double, int64_t, bool)>(
      "lowbit::fake_quant_with_min_max_args");
  return op.call(inputs, min, max, num_bits, narrow_range);
}

at::Tensor fake_quant_with_min_max_args_gradient(const at::Tensor& gradients,
                                                 const at::Tensor& inputs, double min, double max,
                                                 int64_t num_bits, bool narrow_range) {
  static const auto op =
      handle<at::Tensor(const at::Tensor&, const at::Tensor&, double, double, int64_t, bool)>(
          "lowbit::fake_quant_with_min_max_args_gradient");
  return op.call(gradients, inputs, min, max, num_bits, narrow_range);
}

at::Tensor fake_quant_with_min_max_vars(const at::Tensor& inputs, const at::Tensor& min,
                                        const at::Tensor& max, int64_t num_bits,
                                        bool narrow_range) {
  static const auto op =
      handle<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, bool)>(
          "lowbit::fake_quant_with_min_max_vars");
  return op.call(inputs, min, max, num_bits, narrow_range);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> fake_quant_with_min_max_vars_gradient(
    const at::Tensor& gradients, const at::Tensor& inputs, const at::Tensor& min,
    const at::Tensor& max, int64_t num_bits, bool narrow_range) {
  static const auto op = handle<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
      const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, bool)>(
      "lowbit::fake_quant_with_min_max_vars_gradient");
  return op.call(gradients, inputs, min, max, num_bits, narrow_range);
}

at::Tensor fake_quant_with_min_max_vars_per_channel(const at::Tensor& inputs, const at::Tensor& min,
                                                    const at::Tensor& max, int64_t num_bits,
                                                    bool narrow_range) {
  static const auto op =
      handle<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, bool)>(
          "lowbit::fake_quant_with_min_max_vars_per_channel");
  return op.call(inputs, min, max, num_bits, narrow_range);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> fake_quant_with_min_max_vars_per_channel_gradient(
    const at::Tensor& gradients, const at::Tensor& inputs, const at::Tensor& min,
    const at::Tensor& max, int64_t num_bits, bool narrow_range) {
  static const auto op = handle<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
      const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, bool)>(
      "lowbit::fake_quant_with_min_max_vars_per_channel_gradient");
  return op.call(gradients, inputs, min, max, num_bits, narrow_range);
}

at::Tensor ste_sign(const at::Tensor& x, c10::optional<double> clip_value) {
  static const auto op =
      handle<at::Tensor(const at::Tensor&, c10::optional<double>)>("lowbit::ste_sign");
  return op.call(x, clip_value);
}

at::Tensor approx_sign(const at::Tensor& x) {
  static const auto op = handle<at::Tensor(const at::Tensor&)>("lowbit::approx_sign");
  return op.call(x);
}

at::Tensor swish_sign(const at::Tensor& x, double beta) {
  static const auto op = handle<at::Tensor(const at::Tensor&, double)>("lowbit::swish_sign");
  return op.call(x, beta);
}

at::Tensor ste_heaviside(const at::Tensor& x, c10::optional<double> clip_value) {
  static const auto op =
      handle<at::Tensor(const at::Tensor&, c10::optional<double>)>("lowbit::ste_heaviside");
  return op.call(x, clip_value);
}

at::Tensor magnitude_aware_sign(const at::Tensor& x, c10::optional<double> clip_value,
                                int64_t axis) {
  static const auto op = handle<at::Tensor(const at::Tensor&, c10::optional<double>, int64_t)>(
      "lowbit::magnitude_aware_sign");
  return op.call(x, clip_value, axis);
}

at::Tensor ste_tern(const at::Tensor& x, double threshold_value, bool ternary_weight_networks,
                    c10::optional<double> clip_value) {
  static const auto op = handle<at::Tensor(const at::Tensor&, double, bool, c10::optional<double>)>(
      "lowbit::ste_tern");
  return op.call(x, threshold_value, ternary_weight_networks, clip_value);
}

at::Tensor dorefa(const at::Tensor& x, int64_t k_bit, const std::string& mode) {
  static const auto op =
      handle<at::Tensor(const at::Tensor&, int64_t, c10::string_view)>("lowbit::dorefa");
  return op.call(x, k_bit, c10::string_view(mode));
}

at::Tensor binary_mean_scaling(const at::Tensor& x) {
  static const auto op = handle<at::Tensor(const at::Tensor&)>("lowbit::binary_mean_scaling");
  return op.call(x);
}

at::Tensor binary_channel_wise_mean_scaling(const at::Tensor& x, int64_t axis) {
  static const auto op =
      handle<at::Tensor(const at::Tensor&, int64_t)>("lowbit::binary_channel_wise_mean_scaling");
  return op.call(x, axis);
}

at::Tensor linear_mid_tread_half(const at::Tensor& x, int64_t bit, double max_value) {
  static const auto op =
      handle<at::Tensor(const at::Tensor&, int64_t, double)>("lowbit::linear_mid_tread_half");
  return op.call(x, bit, max_value);
}

at::Tensor twn_weight(const at::Tensor& x, double threshold) {
  static const auto op = handle<at::Tensor(const at::Tensor&, double)>("lowbit::twn_weight");
  return op.call(x, threshold);
}

at::Tensor ttq_weight(const at::Tensor& x, const at::Tensor& positive, const at::Tensor& negative,
                      double threshold) {
  static const auto op =
      handle<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, double)>(
          "lowbit::ttq_weight");
  return op.call(x, positive, negative, threshold);
}

std::tuple<at::Tensor, at::Tensor> pow2_range(const at::Tensor& min, const at::Tensor& max,
                                              int64_t num_bits,
                                              c10::optional<int64_t> max_exponent) {
  static const auto op = handle<std::tuple<at::Tensor, at::Tensor>(
      const at::Tensor&, const at::Tensor&, int64_t, c10::optional<int64_t>)>("lowbit::pow2_range");
  return op.call(min, max, num_bits, max_exponent);
}

at::Tensor fake_quant_pow2(const at::Tensor& x, const at::Tensor& min, const at::Tensor& max,
                           int64_t num_bits, c10::optional<int64_t> max_exponent) {
  static const auto op =
      handle<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t,
                        c10::optional<int64_t>)>("lowbit::fake_quant_pow2");
  return op.call(x, min, max, num_bits, max_exponent);
}

namespace internal {

at::Tensor mean_abs(const at::Tensor& x, c10::optional<int64_t> axis) {
  static const auto op =
      handle<at::Tensor(const at::Tensor&, c10::optional<int64_t>)>("lowbit::_mean_abs");
  return op.call(x, axis);
}

at::Tensor clipped_ste_backward(const at::Tensor& grad, const at::Tensor& x,
                                c10::optional<double> clip_value) {
  static const auto op =
      handle<at::Tensor(const at::Tensor&, const at::Tensor&, c10::optional<double>)>(
          "lowbit::_clipped_ste_backward");
  return op.call(grad, x, clip_value);
}

at::Tensor approx_sign_backward(const at::Tensor& grad, const at::Tensor& x) {
  static const auto op =
      handle<at::Tensor(const at::Tensor&, const at::Tensor&)>("lowbit::_approx_sign_backward");
  return op.call(grad, x);
}

at::Tensor magnitude_aware_sign_backward(const at::Tensor& grad, const at::Tensor& x,
                                         c10::optional<double> clip_value, int64_t axis) {
  static const auto op =
      handle<at::Tensor(const at::Tensor&, const at::Tensor&, c10::optional<double>, int64_t)>(
          "lowbit::_magnitude_aware_sign_backward");
  return op.call(grad, x, clip_value, axis);
}

std::tuple<at::Tensor, at::Tensor> magnitude_aware_sign_with_scale(const at::Tensor& x,
                                                                   int64_t axis) {
  static const auto op = handle<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, int64_t)>(
      "lowbit::_magnitude_aware_sign_with_scale");
  return op.call(x, axis);
}

at::Tensor magnitude_aware_sign_backward_scaled(const at::Tensor& grad, const at::Tensor& x,
                                                const at::Tensor& scale,
                                                c10::optional<double> clip_value, int64_t axis) {
  static const auto op = handle<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                           c10::optional<double>, int64_t)>(
      "lowbit::_magnitude_aware_sign_backward_scaled");
  return op.call(grad, x, scale, clip_value, axis);
}

at::Tensor swish_sign_backward(const at::Tensor& grad, const at::Tensor& x, double beta) {
  static const auto op = handle<at::Tensor(const at::Tensor&, const at::Tensor&, double)>(
      "lowbit::_swish_sign_backward");
  return op.call(grad, x, beta);
}

at::Tensor dorefa_backward(const at::Tensor& grad, const at::Tensor& x, int64_t k_bit,
                           const std::string& mode) {
  static const auto op =
      handle<at::Tensor(const at::Tensor&, const at::Tensor&, int64_t, c10::string_view)>(
          "lowbit::_dorefa_backward");
  return op.call(grad, x, k_bit, c10::string_view(mode));
}

std::tuple<at::Tensor, at::Tensor> dorefa_weights_with_max(const at::Tensor& x, int64_t k_bit) {
  static const auto op = handle<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, int64_t)>(
      "lowbit::_dorefa_weights_with_max");
  return op.call(x, k_bit);
}

at::Tensor dorefa_weights_backward(const at::Tensor& grad, const at::Tensor& x,
                                   const at::Tensor& max_abs_tanh) {
  static const auto op =
      handle<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&)>(
          "lowbit::_dorefa_weights_backward");
  return op.call(grad, x, max_abs_tanh);
}

at::Tensor linear_mid_tread_half_backward(const at::Tensor& grad, const at::Tensor& x, int64_t bit,
                                          double max_value) {
  static const auto op = handle<at::Tensor(const at::Tensor&, const at::Tensor&, int64_t, double)>(
      "lowbit::_linear_mid_tread_half_backward");
  return op.call(grad, x, bit, max_value);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ttq_weight_backward(const at::Tensor& grad,
                                                                   const at::Tensor& x,
                                                                   const at::Tensor& positive,
                                                                   const at::Tensor& negative,
                                                                   double threshold) {
  static const auto op = handle<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
      const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, double)>(
      "lowbit::_ttq_weight_backward");
  return op.call(grad, x, positive, negative, threshold);
}

std::tuple<at::Tensor, at::Tensor> ttq_weight_with_max(const at::Tensor& x,
                                                       const at::Tensor& positive,
                                                       const at::Tensor& negative,
                                                       double threshold) {
  static const auto op = handle<std::tuple<at::Tensor, at::Tensor>(
      const at::Tensor&, const at::Tensor&, const at::Tensor&, double)>(
      "lowbit::_ttq_weight_with_max");
  return op.call(x, positive, negative, threshold);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ttq_weight_backward_from_max(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& positive,
    const at::Tensor& negative, double threshold, const at::Tensor& max_abs) {
  static const auto op = handle<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
      const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, double,
      const at::Tensor&)>("lowbit::_ttq_weight_backward_from_max");
  return op.call(grad, x, positive, negative, threshold, max_abs);
}

std::tuple<at::Tensor, at::Tensor> fake_quant_with_min_max_args_coded(const at::Tensor& inputs,
                                                                      double min, double max,
                                                                      int64_t num_bits,
                                                                      bool narrow_range) {
  static const auto op =
      handle<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, double, double, int64_t, bool)>(
          "lowbit::_fake_quant_with_min_max_args_coded");
  return op.call(inputs, min, max, num_bits, narrow_range);
}

std::tuple<at::Tensor, at::Tensor> fake_quant_with_min_max_vars_coded(const at::Tensor& inputs,
                                                                      const at::Tensor& min,
                                                                      const at::Tensor& max,
                                                                      int64_t num_bits,
                                                                      bool narrow_range) {
  static const auto op = handle<std::tuple<at::Tensor, at::Tensor>(
      const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, bool)>(
      "lowbit::_fake_quant_with_min_max_vars_coded");
  return op.call(inputs, min, max, num_bits, narrow_range);
}

std::tuple<at::Tensor, at::Tensor> fake_quant_with_min_max_vars_per_channel_coded(
    const at::Tensor& inputs, const at::Tensor& min, const at::Tensor& max, int64_t num_bits,
    bool narrow_range) {
  static const auto op = handle<std::tuple<at::Tensor, at::Tensor>(
      const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, bool)>(
      "lowbit::_fake_quant_with_min_max_vars_per_channel_coded");
  return op.call(inputs, min, max, num_bits, narrow_range);
}

std::tuple<at::Tensor, at::Tensor> ste_sign_coded(const at::Tensor& x, double clip_value) {
  static const auto op = handle<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, double)>(
      "lowbit::_ste_sign_coded");
  return op.call(x, clip_value);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> coded_backward(const at::Tensor& grad,
                                                              const at::Tensor& code, bool sums) {
  static const auto op = handle<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
      const at::Tensor&, const at::Tensor&, bool)>("lowbit::_coded_backward");
  return op.call(grad, code, sums);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> coded_backward_per_channel(const at::Tensor& grad,
                                                                          const at::Tensor& code) {
  static const auto op =
      handle<std::tuple<at::Tensor, at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&)>(
          "lowbit::_coded_backward_per_channel");
  return op.call(grad, code);
}

}  // namespace internal
}  // namespace lowbit
