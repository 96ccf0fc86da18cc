// The scalar-ISA float32 convolution (the reference, baseline flags) and the dispatch list.
#define LOWBIT_FLOAT32_ISA scalar
#include "dispatch.h"
#define LOWBIT_FLOAT32_VECTOR 4   // floats per register
#define LOWBIT_FLOAT32_VECTORS 2  // registers of outputs per channel in a block
#include "float32_body.h"

namespace lowbit {
namespace engine {
namespace float32 {

#if defined(__x86_64__)
namespace avx2 {
void conv(const float*, const float*, const float*, const ConvShape&, int64_t, const Clamp&,
          int64_t, int64_t, float*);
void ternary_conv(const float*, const int8_t*, const float*, const float*, const ConvShape&,
                  int64_t, const Clamp&, int64_t, int64_t, float*);
void dense(const float*, const float*, int64_t, const float*, int64_t, int64_t, const Clamp&,
           float*);
}  // namespace avx2
namespace avx512 {
void conv(const float*, const float*, const float*, const ConvShape&, int64_t, const Clamp&,
          int64_t, int64_t, float*);
void ternary_conv(const float*, const int8_t*, const float*, const float*, const ConvShape&,
                  int64_t, const Clamp&, int64_t, int64_t, float*);
void dense(const float*, const float*, int64_t, const float*, int64_t, int64_t, const Clamp&,
           float*);
}  // namespace avx512
#endif

const std::vector<Kernels>& all() {
  static const std::vector<Kernels> list = {
    {"scalar", [] { return true; }, &scalar::conv, &scalar::ternary_conv, &scalar::dense},
#if defined(__x86_64__)
    {"avx2", [] { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); },
     &avx2::conv, &avx2::ternary_conv, &avx2::dense},
    {"avx512", [] { return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma"); },
     &avx512::conv, &avx512::ternary_conv, &avx512::dense},
#endif
  };
  return list;
}

const Kernels& best() {
  static const Kernels& k = best_of(all());
  return k;
}

}  // namespace float32
}  // namespace engine
}  // namespace lowbit
