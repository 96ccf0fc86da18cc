// The scalar-ISA element-wise kernels (the reference, baseline flags), the functions' names and
// the dispatch list.
#define LOWBIT_ELEMENTWISE_ISA scalar
#include "dispatch.h"
#include "elementwise_body.h"

namespace lowbit {
namespace engine {
namespace elementwise {

#if defined(__x86_64__)
#define LOWBIT_ELEMENTWISE_DECLARE(isa)                                                          \
  namespace isa {                                                                                \
  void unary(Unary, float, float, const float*, int64_t, float*);                                \
  void binary(Binary, const float*, const float*, int64_t, float*);                              \
  void rows(Binary, const float*, const float*, int64_t, int64_t, bool, float*);                 \
  void quant(Rounding, float, float, const float*, const float*, const float*, int64_t, int64_t, \
             float*);                                                                            \
  }
LOWBIT_ELEMENTWISE_DECLARE(avx2)
LOWBIT_ELEMENTWISE_DECLARE(avx512)
#undef LOWBIT_ELEMENTWISE_DECLARE
#endif

namespace {
// The names, in the enums' order.
const char* const kUnaryNames[] = {
    "copy",  "relu",     "clamp", "leaky_relu", "elu",     "hard_sigmoid", "hard_swish", "sigmoid",
    "tanh",  "softplus", "exp",   "sqrt",       "erf",     "neg",          "abs",        "sign",
    "round", "floor",    "ceil",  "trunc",      "nonzero", "select"};
const char* const kBinaryNames[] = {"add",  "sub", "mul", "div", "min",  "max",
                                    "mean", "pow", "ge",  "gt",  "prelu"};
constexpr int kUnaryCount = sizeof(kUnaryNames) / sizeof(kUnaryNames[0]);
constexpr int kBinaryCount = sizeof(kBinaryNames) / sizeof(kBinaryNames[0]);
static_assert(static_cast<int>(Unary::select) == kUnaryCount - 1, "a name for every Unary");
static_assert(static_cast<int>(Binary::prelu) == kBinaryCount - 1, "a name for every Binary");
}  // namespace

const char* name(Unary f) { return kUnaryNames[static_cast<int>(f)]; }
const char* name(Binary f) { return kBinaryNames[static_cast<int>(f)]; }

const std::vector<Unary>& unary_functions() {
  static const std::vector<Unary> list = [] {
    std::vector<Unary> v;
    for (int i = 0; i < kUnaryCount; ++i) v.push_back(static_cast<Unary>(i));
    return v;
  }();
  return list;
}

const std::vector<Binary>& binary_functions() {
  static const std::vector<Binary> list = [] {
    std::vector<Binary> v;
    for (int i = 0; i < kBinaryCount; ++i) v.push_back(static_cast<Binary>(i));
    return v;
  }();
  return list;
}

const std::vector<Kernels>& all() {
  static const std::vector<Kernels> list = {
    {"scalar", [] { return true; }, &scalar::unary, &scalar::binary, &scalar::rows, &scalar::quant},
#if defined(__x86_64__)
    {"avx2", [] { return __builtin_cpu_supports("avx2") != 0; }, &avx2::unary, &avx2::binary,
     &avx2::rows, &avx2::quant},
    {"avx512", [] { return __builtin_cpu_supports("avx512f") != 0; }, &avx512::unary,
     &avx512::binary, &avx512::rows, &avx512::quant},
#endif
  };
  return list;
}

const Kernels& best() {
  static const Kernels& k = best_of(all());
  return k;
}

}  // namespace elementwise
}  // namespace engine
}  // namespace lowbit
