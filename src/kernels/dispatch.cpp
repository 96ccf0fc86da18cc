// Chooses the float32 kernel set at run time from the CPU's features (or LOWBIT_ISA).
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

#include "lowbit/kernels.h"

namespace lowbit {
namespace kernels {

#if defined(LOWBIT_HAVE_X86_KERNELS)
namespace avx2 {
extern const F32Kernels kKernels;
extern const F32Kernels kStreamingKernels;
}  // namespace avx2
namespace avx512 {
extern const F32Kernels kKernels;
extern const F32Kernels kStreamingKernels;
}  // namespace avx512
#endif

namespace {

const F32Kernels kRefKernels{"ref",
                             &ref::fake_quant<float>,
                             &ref::fake_quant_per_channel<float>,
                             &ref::masked_grad<float>,
                             &ref::masked_grad_per_channel<float>,
                             &ref::sign<float>,
                             &ref::sign_per_channel<float>,
                             &ref::heaviside<float>,
                             &ref::ternary<float>,
                             &ref::dorefa_activations<float>,
                             &ref::linear_mid_tread<float>,
                             &ref::approx_sign_grad<float>,
                             &ref::fake_quant_packed<float>,
                             &ref::fake_quant_per_channel_packed<float>,
                             &ref::sign_packed<float>,
                             &ref::packed_grad<float>,
                             &ref::packed_grad_per_channel<float>,
                             &ref::sum_abs<float>,
                             &ref::sum_abs_rows<float>,
                             &ref::max_abs<float>,
                             &ref::sum_abs_above<float>,
                             &ref::twn<float>,
                             &ref::ttq_weight<float>,
                             &ref::ttq_weight_grad<float>,
                             &ref::clipped_grad_scaled_rows<float>,
                             &ref::swish_sign_grad<float>,
                             &ref::max_abs_tanh<float>,
                             &ref::dorefa_weights<float>,
                             &ref::dorefa_weights_grad<float>};

std::vector<const F32Kernels*> detect() {
  std::vector<const F32Kernels*> sets{&kRefKernels};
#if defined(LOWBIT_HAVE_X86_KERNELS)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    sets.push_back(&avx2::kKernels);
    sets.push_back(&avx2::kStreamingKernels);
  }
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")) {
    sets.push_back(&avx512::kKernels);
    sets.push_back(&avx512::kStreamingKernels);
  }
#endif
  return sets;
}

const F32Kernels* find(const std::string& isa) {
  for (const F32Kernels* k : supported_f32_kernels()) {
    if (isa == k->isa) return k;
  }
  return nullptr;
}

bool is_streaming(const F32Kernels& k) {
  const std::string isa = k.isa;
  return isa.size() > 3 && isa.compare(isa.size() - 3, 3, "_nt") == 0;
}

// {regular, streaming}: the widest supported set, or LOWBIT_ISA's.
std::pair<const F32Kernels*, const F32Kernels*> choose() {
  const auto& sets = supported_f32_kernels();
  const char* wanted = std::getenv("LOWBIT_ISA");
  const F32Kernels* base = nullptr;
  if (wanted == nullptr || *wanted == '\0') {
    for (const F32Kernels* k : sets) {
      if (!is_streaming(*k)) base = k;
    }
  } else {
    base = find(wanted);
    if (base == nullptr) {
      std::string names;
      for (const F32Kernels* k : sets) names += std::string(names.empty() ? "" : ", ") + k->isa;
      throw std::runtime_error("LOWBIT_ISA=" + std::string(wanted) +
                               " is not a kernel set this CPU supports (" + names + ")");
    }
    if (is_streaming(*base)) return {base, base};
  }
  const F32Kernels* streaming = find(std::string(base->isa) + "_nt");
  return {base, streaming != nullptr ? streaming : base};
}

}  // namespace

const std::vector<const F32Kernels*>& supported_f32_kernels() {
  static const std::vector<const F32Kernels*> sets = detect();
  return sets;
}

const F32Kernels& f32_kernels(int64_t output_elements) {
  static const auto chosen = choose();
  return output_elements >= kStreamingElements ? *chosen.second : *chosen.first;
}

}  // namespace kernels
}  // namespace lowbit
