// The scalar-ISA layout kernels (the reference, baseline flags) and the dispatch list.
#define LOWBIT_LAYOUT_ISA scalar
#include "dispatch.h"
#include "layout_body.h"

namespace lowbit {
namespace engine {
namespace layout {

#if defined(__x86_64__)
#define LOWBIT_LAYOUT_DECLARE(isa)                                                               \
  namespace isa {                                                                                \
  void pad(const float*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, PadMode, float,   \
           float*);                                                                              \
  void nearest(const float*, int64_t, const int64_t*, int64_t, const int64_t*, int64_t, float*); \
  void linear(const float*, int64_t, const int64_t*, const int64_t*, const float*, int64_t,      \
              const int64_t*, const int64_t*, const float*, int64_t, float*);                    \
  }
LOWBIT_LAYOUT_DECLARE(avx2)
LOWBIT_LAYOUT_DECLARE(avx512)
#undef LOWBIT_LAYOUT_DECLARE
#endif

const std::vector<Kernels>& all() {
  static const std::vector<Kernels> list = {
    {"scalar", [] { return true; }, &scalar::pad, &scalar::nearest, &scalar::linear},
#if defined(__x86_64__)
    {"avx2", [] { return __builtin_cpu_supports("avx2") != 0; }, &avx2::pad, &avx2::nearest,
     &avx2::linear},
    {"avx512", [] { return __builtin_cpu_supports("avx512f") != 0; }, &avx512::pad,
     &avx512::nearest, &avx512::linear},
#endif
  };
  return list;
}

const Kernels& best() {
  static const Kernels& k = best_of(all());
  return k;
}

}  // namespace layout
}  // namespace engine
}  // namespace lowbit
