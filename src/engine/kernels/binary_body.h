// The binary convolution's body, compiled once per instruction set (binary.cpp: scalar,
// binary_popcnt.cpp: with -mpopcnt). A dense layer is the 1x1 convolution of a 1x1 image.
#pragma once

#include "lowbit/engine/kernels/binary.h"

namespace lowbit {
namespace engine {
namespace binary {
namespace LOWBIT_BINARY_ISA {

inline void conv(const uint64_t* x, const uint64_t* w, const float* scale, const float* bias,
                 const ConvShape& s, float* y) {
  const int64_t cw = words(s.c);
  for (int64_t o = 0; o < s.m; ++o) {
    const uint64_t* wo = w + o * s.kh * s.kw * cw;
    for (int64_t r = 0; r < s.oh; ++r) {
      for (int64_t q = 0; q < s.ow; ++q) {
        int64_t mismatches = 0, taps = 0;
        for_each_tap_inside(s, r, q, [&](int64_t yy, int64_t xx, int64_t t) {
          const uint64_t* xp = x + (yy * s.w + xx) * cw;
          const uint64_t* wp = wo + t * cw;
          for (int64_t k = 0; k < cw; ++k) mismatches += __builtin_popcountll(xp[k] ^ wp[k]);
          ++taps;
        });
        const int64_t sum = taps * s.c - 2 * mismatches;  // matches - mismatches
        y[(o * s.oh + r) * s.ow + q] = static_cast<float>(sum) * scale[o] + bias[o];
      }
    }
  }
}

}  // namespace LOWBIT_BINARY_ISA
}  // namespace binary
}  // namespace engine
}  // namespace lowbit
