// Bitpacked binary kernels of the engine: ±1 values packed along channels (bit 1 means -1, least
// significant bit first, padding bits 0), products summed by XOR and popcount. One list of
// implementations (scalar, popcnt) drives dispatch and tests (docs/engine.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lowbit {
namespace engine {
namespace binary {

// 64-bit words holding c channels.
inline int64_t words(int64_t c) { return (c + 63) / 64; }

// Packs one image x [c, h, w] channels-last: out[(y * w + x) * words(c) + k] holds channels
// 64k .. 64k + 63 at (y, x); bit i is 1 where minus(value) (the value stands for -1).
template <class Minus>
void pack_chw_by(const float* x, int64_t c, int64_t h, int64_t w, uint64_t* out, Minus minus) {
  const int64_t cw = words(c), plane = h * w;
  // Eight pixels' words at a time in registers, their 64 channels read down the planes (the same
  // cache lines for consecutive pixels), each word stored once.
  constexpr int64_t kBlock = 8;
  for (int64_t p0 = 0; p0 < plane; p0 += kBlock) {
    const int64_t n = plane - p0 < kBlock ? plane - p0 : kBlock;
    for (int64_t k = 0; k < cw; ++k) {
      uint64_t acc[kBlock] = {};
      const int64_t bits = c - 64 * k < 64 ? c - 64 * k : 64;
      for (int64_t b = 0; b < bits; ++b) {
        const float* xc = x + (64 * k + b) * plane + p0;
        for (int64_t t = 0; t < n; ++t) acc[t] |= static_cast<uint64_t>(minus(xc[t])) << b;
      }
      for (int64_t t = 0; t < n; ++t) out[(p0 + t) * cw + k] = acc[t];
    }
  }
}
// pack_chw_by with bit 1 where the value is negative.
void pack_chw(const float* x, int64_t c, int64_t h, int64_t w, uint64_t* out);

// The values a packed bit 1 stands for (-1), for the kernels' own builds of pack_chw_by.
enum class Minus {
  negative,         // v < 0 (a binary layer's float input: 0 is +1)
  not_nonnegative,  // !(v >= 0): BipolarQuant's -1 (negative or NaN)
  zero,             // v == 0: Where(x >= 0, 1, -1)'s condition false
};
// pack_chw_by of one image with that predicate, compiled with the kernel's instruction set.
using SignsFn = void (*)(const float* x, int64_t c, int64_t h, int64_t w, Minus minus,
                         uint64_t* out);
// The body of every build's SignsFn (called from each build's own translation unit, so that each
// is compiled with that build's flags).
#define LOWBIT_BINARY_SIGNS_BODY(x, c, h, w, minus, out)                               \
  switch (minus) {                                                                     \
    case ::lowbit::engine::binary::Minus::negative:                                    \
      return ::lowbit::engine::binary::pack_chw_by(x, c, h, w, out,                    \
                                                   [](float v) { return v < 0; });     \
    case ::lowbit::engine::binary::Minus::not_nonnegative:                             \
      return ::lowbit::engine::binary::pack_chw_by(x, c, h, w, out,                    \
                                                   [](float v) { return !(v >= 0); }); \
    case ::lowbit::engine::binary::Minus::zero:                                        \
      return ::lowbit::engine::binary::pack_chw_by(x, c, h, w, out,                    \
                                                   [](float v) { return v == 0; });    \
  }
// Packs the signs of a kernel w [m, c, kh, kw]: out[((o * kh + i) * kw + j) * words(c) + k].
std::vector<uint64_t> pack_kernel(const float* w, int64_t m, int64_t c, int64_t kh, int64_t kw);
// The AVX2 and bit-plane kernels' layout: the words of `lanes` output channels side by side,
// out[((t * words(c) + k) * mp) + o] for tap t and word k (mp: m rounded up to lanes, extra
// channels 0).
std::vector<uint64_t> pack_interleaved(const float* w, int64_t m, int64_t c, int64_t kh, int64_t kw,
                                       int64_t lanes);

// The same words in blocks of `lanes` output channels, each block's window contiguous:
// out[((o / lanes) * kh * kw * words(c) + t * words(c) + k) * lanes + o % lanes] (a block's weights
// read in one stream, not one line every mp words).
std::vector<uint64_t> pack_blocked(const float* w, int64_t m, int64_t c, int64_t kh, int64_t kw,
                                   int64_t lanes);

struct ConvShape {
  int64_t c = 0, h = 0, w = 0;  // input
  int64_t m = 0, kh = 0, kw = 0;
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dil_h = 1, dil_w = 1;
  int64_t oh = 0, ow = 0;
};

// f(yy, xx, t) for the taps t = i * kw + j of output pixel (r, q) whose input pixel (yy, xx) lies
// inside the image (the scalar kernels' window walk).
template <class F>
inline void for_each_tap_inside(const ConvShape& s, int64_t r, int64_t q, F&& f) {
  for (int64_t i = 0; i < s.kh; ++i) {
    const int64_t yy = r * s.stride_h - s.pad_h + i * s.dil_h;
    if (yy < 0 || yy >= s.h) continue;
    for (int64_t j = 0; j < s.kw; ++j) {
      const int64_t xx = q * s.stride_w - s.pad_w + j * s.dil_w;
      if (xx >= 0 && xx < s.w) f(yy, xx, i * s.kw + j);
    }
  }
}

// y[o, r, q] = scale[o] * sum over the taps inside the image of sum_c x * w (±1 products), plus
// bias[o]: taps in the zero padding contribute nothing. x: pack_chw of one image; w: pack_kernel.
// The AVX-512 build requires kh * kw * c < 2^31 (std::invalid_argument otherwise; the engine's
// default limits keep every layer far below).
using ConvFn = void (*)(const uint64_t* x, const uint64_t* w, const float* scale, const float* bias,
                        const ConvShape& s, float* y);

// The thresholded signs of the same sums n (before scale and bias) as bits, in pack_chw's layout
// for the next binary layer: bit o of pixel p (out[p * words(m) + o / 64], bit o % 64) is 1 where
// below[o] ? n < t[o] : n > t[o]. Writes every word of out (words(m) * oh * ow, padding bits 0).
using ConvBitsFn = void (*)(const uint64_t* x, const uint64_t* w, const int32_t* t,
                            const uint8_t* below, const ConvShape& s, uint64_t* out);

// The kernel's layout of the packed weights, from w [m, c, kh, kw].
using PackFn = std::vector<uint64_t> (*)(const float* w, int64_t m, int64_t c, int64_t kh,
                                         int64_t kw);

struct Kernels {
  std::string name;
  bool (*supported)();
  PackFn pack;    // pack_kernel, or the kernel's own layout
  SignsFn signs;  // activations packed (the same bits in every build)
  ConvFn conv;
  ConvBitsFn conv_bits;  // the kernel's own, or conv's sums thresholded (bits_from_sums)
};
// Every implementation, the reference first; and the best one this CPU runs.
const std::vector<Kernels>& all();
const Kernels& best();

}  // namespace binary
}  // namespace engine
}  // namespace lowbit
