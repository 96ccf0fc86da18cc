// Bit-plane kernels of the engine: layers of b-bit unsigned activation codes (b <= 4, Blueoil's
// 2-bit activations) with binary weights. A code u = sum_k 2^k u_k is stored as b bit planes, each
// packed along channels as binary.h packs signs (bit i of word k: channel 64k + i; padding bits 0);
// with the weights' bits (1 means -1) the products sum as
//   sum_c u w = sum_k 2^k (popcount(u_k) - 2 popcount(u_k AND w_bits)),
// and zero padding (code 0, every plane 0) contributes nothing, with no correction. One list of
// implementations (scalar, avx2, avx512) drives dispatch, tests and benchmarks (docs/engine.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lowbit/engine/kernels/binary.h"  // ConvShape, words, pack_kernel, pack_interleaved

namespace lowbit {
namespace engine {
namespace planes {

using ConvShape = binary::ConvShape;

constexpr int kMaxBits = 4;

// The planes of one image's codes, channels last: out[((y * w + x) * bits + k) * words(c) + j]
// holds bit k of the codes of channels 64j .. 64j + 63 at (y, x).
inline int64_t image_words(int64_t bits, int64_t c, int64_t h, int64_t w) {
  return bits * binary::words(c) * h * w;
}

// The codes of floats x [c, h, w] that are integer multiples of scale (the caller's planning checks
// that), round(x / scale) clamped to [0, 2^bits - 1] (NaN read as 0), written as planes.
void pack_floats(const float* x, float scale, int bits, int64_t c, int64_t h, int64_t w,
                 uint64_t* out);
// Codes [c, h, w] (each below 2^bits) written as planes.
void pack_codes(const uint8_t* codes, int bits, int64_t c, int64_t h, int64_t w, uint64_t* out);

// n[o * oh * ow + p] = sum over the taps inside the image and the channels of u * (±1 weight), for
// the planes x of one image (pack_floats' layout) and weights w in the kernel's layout.
using SumsFn = void (*)(const uint64_t* x, int bits, const uint64_t* w, const ConvShape& s,
                        int32_t* n);
// The kernel's layout of the weights' signs, from w [m, c, kh, kw].
using PackFn = std::vector<uint64_t> (*)(const float* w, int64_t m, int64_t c, int64_t kh,
                                         int64_t kw);

struct Kernels {
  std::string name;
  bool (*supported)();
  PackFn pack;
  SumsFn sums;
};
// Every implementation, the reference first; and the best one this CPU runs.
const std::vector<Kernels>& all();
const Kernels& best();

}  // namespace planes
}  // namespace engine
}  // namespace lowbit
