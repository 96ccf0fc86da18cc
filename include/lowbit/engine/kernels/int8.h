// 8-bit integer kernels of the engine: convolutions (and dense layers, the 1x1 convolution of a
// 1x1 image) of unsigned 8-bit activation codes with signed 8-bit weight codes, summed exactly in
// int32. The offsets of the codes (zero points) and the scales are the caller's (layers.cpp): the
// kernels only sum code products. One list of implementations (scalar, avx2, avx512_vnni) drives
// dispatch, tests and benchmarks (docs/engine.md).
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "lowbit/engine/kernels/binary.h"  // ConvShape

namespace lowbit {
namespace engine {
namespace int8 {

using ConvShape = binary::ConvShape;

// Channels rounded up to whole groups of 4 (the VNNI dot product's).
inline int64_t padded_channels(int64_t c) { return (c + 3) / 4 * 4; }
// The padded input's rows and columns: as many as the windows reach.
inline int64_t padded_rows(const ConvShape& s) {
  return (s.oh - 1) * s.stride_h + (s.kh - 1) * s.dil_h + 1;
}
inline int64_t padded_cols(const ConvShape& s) {
  return (s.ow - 1) * s.stride_w + (s.kw - 1) * s.dil_w + 1;
}

// The codes of one image x [c, h, w] channels last with the padding written out:
// out[(yp * padded_cols + xp) * padded_channels(c) + ch] = x[ch, yp - pad_h, xp - pad_w] / scale
// + zero where that is inside the image, `zero` in the padding, 0 in the extra channels. The values
// are integer multiples of scale with codes in [0, 255] (the caller's planning checks that); NaN
// is read as 0 and anything else off the range is clamped to it, so every code is defined.
void pack_input(const float* x, float scale, int zero, const ConvShape& s, uint8_t* out);

// Weights: codes [mc][kh][kw][padded_channels(c)] (extra channels 0), mc rows of output channels.
// raw[o * oh * ow + p] = sum over the taps and channels of input code * weight code for o < mc:
// the padding's codes included (so a zero point of the input is corrected as a constant).
using ConvFn = void (*)(const uint8_t* x, const int8_t* w, int64_t mc, const ConvShape& s,
                        int32_t* raw);
// The kernel's layout of the weights, from the codes above.
using PackFn = std::vector<int8_t> (*)(const std::vector<int8_t>& codes, int64_t mc,
                                       const ConvShape& s);

using PackInputFn = void (*)(const float* x, float scale, int zero, const ConvShape& s,
                             uint8_t* out);
using DequantizeFn = void (*)(const int32_t* raw, int64_t m, int64_t plane, const int64_t* constant,
                              int64_t zw, const double* scale, const float* bias, float* y);
using PackCodesFn = void (*)(const uint8_t* codes, int zero, const ConvShape& s, uint8_t* out);
using RequantizeFn = void (*)(const int32_t* raw, int64_t m, int64_t plane, const int64_t* add,
                              int64_t zw, const int32_t* shift, const int32_t* lo,
                              const int32_t* hi, uint8_t* out);

struct Kernels {
  std::string name;
  bool (*supported)();
  PackFn pack;
  ConvFn conv;
  PackInputFn pack_input;   // pack_input, dequantize, pack_codes and requantize below, compiled
  DequantizeFn dequantize;  // for the kernel's ISA
  PackCodesFn pack_codes;
  RequantizeFn requantize;
};
// Every implementation, the reference first; and the best one this CPU runs.
const std::vector<Kernels>& all();
const Kernels& best();

// The layer's float output from the sums: y[o, p] = (raw[o, p] + constant[o] - zw * raw[m, p]) *
// scale[o] + bias[o], in double and rounded once to float (raw[m] is the row of the weights all 1,
// read only where zw != 0).
void dequantize(const int32_t* raw, int64_t m, int64_t plane, const int64_t* constant, int64_t zw,
                const double* scale, const float* bias, float* y);

// pack_input's layout from codes already stored as bytes, codes[ch * h * w + y * w + x] (a fused
// layer's output): the same codes, `zero` in the padding, 0 in the extra channels.
void pack_codes(const uint8_t* codes, int zero, const ConvShape& s, uint8_t* out);

// The spec's integer requantization (docs/engine.md), the sums to the next layer's codes:
//   out[o, p] = clamp((raw[o, p] - zw * raw[m, p] + add[o]) >> shift[o], lo[o], hi[o])
// with an arithmetic right shift (floor division by 2^shift, so that an add holding 2^(shift-1)
// rounds ties up) and 0 <= lo[o] <= hi[o] <= 255; raw[m] is read only where zw != 0.
void requantize(const int32_t* raw, int64_t m, int64_t plane, const int64_t* add, int64_t zw,
                const int32_t* shift, const int32_t* lo, const int32_t* hi, uint8_t* out);

// The vector kernels' walk over their tiles: pairs of blocks of `lanes` output channels (one
// block at the end), times tiles of kPixels output pixels in row-major order, then of 4 and 1
// (a dense layer has one). tile(blocks, pixels, first block, first pixel) with the two counts as
// std::integral_constant, so that each size is its own instantiation.
template <int kLanes, int kPixels, class Tile>
void for_each_tile(int64_t mc, const ConvShape& s, Tile&& tile) {
  using std::integral_constant;
  const int64_t blocks = (mc + kLanes - 1) / kLanes, plane = s.oh * s.ow;
  for (int64_t b = 0; b < blocks; b += 2) {
    auto pixels = [&](auto np, int64_t& p0) {
      for (; p0 + np <= plane; p0 += np) {
        if (b + 1 < blocks) {
          tile(integral_constant<int, 2>(), np, b, p0);
        } else {
          tile(integral_constant<int, 1>(), np, b, p0);
        }
      }
    };
    int64_t p0 = 0;
    pixels(integral_constant<int, kPixels>(), p0);
    pixels(integral_constant<int, 4>(), p0);
    pixels(integral_constant<int, 1>(), p0);
  }
}

// The largest number of taps * channels for which no sum can overflow int32 (255 * 128 per term).
constexpr int64_t kMaxTerms = 65793;

}  // namespace int8
}  // namespace engine
}  // namespace lowbit
