// The scalar-ISA pooling kernels (the reference, baseline flags) and the dispatch list.
#define LOWBIT_POOL_ISA scalar
#include "dispatch.h"
#include "pool_body.h"

namespace lowbit {
namespace engine {
namespace pool {

#if defined(__x86_64__)
#define LOWBIT_POOL_DECLARE(isa)                           \
  namespace isa {                                          \
  void max(const float*, const Window&, float*);           \
  void max_codes(const uint8_t*, const Window&, uint8_t*); \
  void average(const float*, const Window&, bool, float*); \
  void sum(const float*, int64_t, int64_t, float*);        \
  void maximum(const float*, int64_t, int64_t, float*);    \
  void minimum(const float*, int64_t, int64_t, float*);    \
  }
LOWBIT_POOL_DECLARE(avx2)
LOWBIT_POOL_DECLARE(avx512)
#undef LOWBIT_POOL_DECLARE
#endif

const std::vector<Kernels>& all() {
  static const std::vector<Kernels> list = {
    {"scalar", [] { return true; }, &scalar::max, &scalar::max_codes, &scalar::average,
     &scalar::sum, &scalar::maximum, &scalar::minimum},
#if defined(__x86_64__)
    {"avx2", [] { return __builtin_cpu_supports("avx2") != 0; }, &avx2::max, &avx2::max_codes,
     &avx2::average, &avx2::sum, &avx2::maximum, &avx2::minimum},
    {"avx512",
     [] { return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw"); },
     &avx512::max, &avx512::max_codes, &avx512::average, &avx512::sum, &avx512::maximum,
     &avx512::minimum},
#endif
  };
  return list;
}

const Kernels& best() {
  static const Kernels& k = best_of(all());
  return k;
}

}  // namespace pool
}  // namespace engine
}  // namespace lowbit
