// The binary convolution with the POPCNT instruction (compiled with -mpopcnt; chosen at run time).
#define LOWBIT_BINARY_ISA popcnt
#include "binary_body.h"

namespace lowbit {
namespace engine {
namespace binary {
namespace popcnt {
void conv_popcnt(const uint64_t* x, const uint64_t* w, const float* scale, const float* bias,
                 const ConvShape& s, float* y) {
  conv(x, w, scale, bias, s, y);
}
}  // namespace popcnt
}  // namespace binary
}  // namespace engine
}  // namespace lowbit
