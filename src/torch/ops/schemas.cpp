// The schemas of every lowbit operator: names, arguments and defaults of
// ../shared/spec/quantizers.md. Backends register their kernels in ops/cpu/, ops/autograd/ (and
// ops/cuda/) with TORCH_LIBRARY_IMPL.
#include <torch/library.h>

TORCH_LIBRARY(lowbit, m) {
  // TensorFlow fake quantization (seed 004).
  m.def(
      "fake_quant_with_min_max_args(Tensor inputs, float min=-6.0, float max=6.0, int num_bits=8, "
      "bool narrow_range=False) -> Tensor");
  m.def(
      "fake_quant_with_min_max_args_gradient(Tensor gradients, Tensor inputs, float min=-6.0, "
      "float max=6.0, int num_bits=8, bool narrow_range=False) -> Tensor");
  m.def(
      "fake_quant_with_min_max_vars(Tensor inputs, Tensor min, Tensor max, int num_bits=8, "
      "bool narrow_range=False) -> Tensor");
  m.def(
      "fake_quant_with_min_max_vars_gradient(Tensor gradients, Tensor inputs, Tensor min, "
      "Tensor max, int num_bits=8, bool narrow_range=False) -> (Tensor, Tensor, Tensor)");
  m.def(
      "fake_quant_with_min_max_vars_per_channel(Tensor inputs, Tensor min, Tensor max, "
      "int num_bits=8, bool narrow_range=False) -> Tensor");
  m.def(
      "fake_quant_with_min_max_vars_per_channel_gradient(Tensor gradients, Tensor inputs, "
      "Tensor min, Tensor max, int num_bits=8, bool narrow_range=False) -> (Tensor, Tensor, "
      "Tensor)");
  // Larq (seed 002).
  m.def("ste_sign(Tensor x, float? clip_value=1.0) -> Tensor");
  m.def("approx_sign(Tensor x) -> Tensor");
  m.def("swish_sign(Tensor x, float beta=5.0) -> Tensor");
  m.def("ste_heaviside(Tensor x, float? clip_value=1.0) -> Tensor");
  m.def("magnitude_aware_sign(Tensor x, float? clip_value=1.0, int axis=-1) -> Tensor");
  m.def(
      "ste_tern(Tensor x, float threshold_value=0.05, bool ternary_weight_networks=False, "
      "float? clip_value=1.0) -> Tensor");
  m.def("dorefa(Tensor x, int k_bit=2, str mode=\"activations\") -> Tensor");
  // Blueoil (seeds 000, 001).
  m.def("binary_mean_scaling(Tensor x) -> Tensor");
  m.def("binary_channel_wise_mean_scaling(Tensor x, int axis=-1) -> Tensor");
  m.def("linear_mid_tread_half(Tensor x, int bit=2, float max_value=2.0) -> Tensor");
  m.def("twn_weight(Tensor x, float threshold=0.7) -> Tensor");
  m.def("ttq_weight(Tensor x, Tensor positive, Tensor negative, float threshold=0.05) -> Tensor");
  // Power-of-2 symmetric fixed point (seed 003).
  m.def(
      "pow2_range(Tensor min, Tensor max, int num_bits=8, int? max_exponent=None) -> (Tensor, "
      "Tensor)");
  m.def(
      "fake_quant_pow2(Tensor x, Tensor min, Tensor max, int num_bits=8, int? max_exponent=None) "
      "-> Tensor");

  // Private building blocks: backward passes and the scale statistics.
  m.def("_mean_abs(Tensor x, int? axis=None) -> Tensor");
  m.def("_clipped_ste_backward(Tensor grad, Tensor x, float? clip_value) -> Tensor");
  m.def("_approx_sign_backward(Tensor grad, Tensor x) -> Tensor");
  m.def(
      "_magnitude_aware_sign_backward(Tensor grad, Tensor x, float? clip_value, int axis) -> "
      "Tensor");
  // magnitude_aware_sign with its scales mean(|x|) along axis (compute type), and the backward
  // from them.
  m.def("_magnitude_aware_sign_with_scale(Tensor x, int axis) -> (Tensor, Tensor)");
  m.def(
      "_magnitude_aware_sign_backward_scaled(Tensor grad, Tensor x, Tensor scale, float? "
      "clip_value, int axis) -> Tensor");
  m.def("_swish_sign_backward(Tensor grad, Tensor x, float beta) -> Tensor");
  m.def("_dorefa_backward(Tensor grad, Tensor x, int k_bit, str mode) -> Tensor");
  // dorefa's weights mode with M = max|tanh(x)| (1 element, compute type) for its backward.
  m.def("_dorefa_weights_with_max(Tensor x, int k_bit) -> (Tensor, Tensor)");
  m.def("_dorefa_weights_backward(Tensor grad, Tensor x, Tensor max_abs_tanh) -> Tensor");
  m.def(
      "_linear_mid_tread_half_backward(Tensor grad, Tensor x, int bit, float max_value) -> Tensor");
  // Forwards that also return the window codes of x (uint8), and the backward from those codes.
  m.def(
      "_fake_quant_with_min_max_args_coded(Tensor inputs, float min, float max, int num_bits, "
      "bool narrow_range) -> (Tensor, Tensor)");
  m.def(
      "_fake_quant_with_min_max_vars_coded(Tensor inputs, Tensor min, Tensor max, int num_bits, "
      "bool narrow_range) -> (Tensor, Tensor)");
  m.def(
      "_fake_quant_with_min_max_vars_per_channel_coded(Tensor inputs, Tensor min, Tensor max, "
      "int num_bits, bool narrow_range) -> (Tensor, Tensor)");
  m.def("_ste_sign_coded(Tensor x, float clip_value) -> (Tensor, Tensor)");
  m.def("_coded_backward(Tensor grad, Tensor code, bool sums) -> (Tensor, Tensor, Tensor)");
  m.def("_coded_backward_per_channel(Tensor grad, Tensor code) -> (Tensor, Tensor, Tensor)");
  m.def(
      "_ttq_weight_backward(Tensor grad, Tensor x, Tensor positive, Tensor negative, "
      "float threshold) -> (Tensor, Tensor, Tensor)");
  // ttq_weight with max|x| (0-dim, compute type), and the backward from it.
  m.def(
      "_ttq_weight_with_max(Tensor x, Tensor positive, Tensor negative, float threshold) -> "
      "(Tensor, Tensor)");
  m.def(
      "_ttq_weight_backward_from_max(Tensor grad, Tensor x, Tensor positive, Tensor negative, "
      "float threshold, Tensor max_abs) -> (Tensor, Tensor, Tensor)");
}
