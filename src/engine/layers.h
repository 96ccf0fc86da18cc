// The steps of the engine's program (internal): what executes a lowered node, and the layers
// (binary, bit-plane, 8-bit, ternary, float convolutions and dense layers) they are built from.
#pragma once

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ir.h"
#include "lowbit/engine.h"
#include "lowbit/engine/kernels/binary.h"
#include "lowbit/engine/kernels/float32.h"
#include "lowbit/engine/kernels/int8.h"
#include "lowbit/engine/kernels/planes.h"

namespace lowbit {
namespace engine {
namespace detail {

// The convolution of output rows [r0, r1) of s alone: the shape to give a kernel, whose input
// starts at input row `first` (the rows above it, where the window reaches them, are padding, as
// in s). Its sums are s's, exactly, for the kernels that compute sums of integers.
binary::ConvShape row_slice(const binary::ConvShape& s, int64_t r0, int64_t r1, int64_t& first);

struct BinaryLayer {
  binary::ConvShape shape;
  const binary::Kernels* kernels = nullptr;
  std::vector<uint64_t> weights;
  std::vector<float> scale, bias;
  bool input_packed = false;  // reads packed words, else packs the signs of floats
  int64_t input_words() const { return binary::words(shape.c) * shape.h * shape.w; }
  // Image b's packed input: in place, or packed into buffer.
  const uint64_t* input(const float* x, int64_t b, std::vector<uint64_t>& buffer) const {
    if (input_packed) return reinterpret_cast<const uint64_t*>(x) + b * input_words();
    buffer.resize(input_words());
    kernels->signs(x + b * shape.c * shape.h * shape.w, shape.c, shape.h, shape.w,
                   binary::Minus::negative, buffer.data());
    return buffer.data();
  }
};

// An 8-bit convolution or dense layer (int8_conv below): its weights in the kernel's layout and
// what turns its sums into the layer's value.
struct Int8Layer {
  binary::ConvShape shape;
  const int8::Kernels* kernels = nullptr;
  std::vector<int8_t> weights;
  int64_t mc = 0, zx = 0, zw = 0;  // rows of weights (m, plus the row of ones where zw != 0)
  float sx = 1;                    // the input's scale
  std::vector<int64_t> constant;
  std::vector<double> scale;
  std::vector<float> bias;
  bool input_codes = false;  // reads a fused layer's codes, else the codes of floats
  int64_t sum_bound = 0;     // |every sum| (int8.h's, with the zero points' corrections) is below
  int64_t input_bytes() const { return shape.c * shape.h * shape.w; }
  // Image b's padded codes and the raw sums (int8.h) of output rows [r0, r1) ([mc][rows][ow]; all
  // rows by default), in buffers reused by every step of a thread. The padded codes are written
  // out, so a slice of rows is the kernel's run over a slice of the padded rows: the same sums.
  const int32_t* sums(const float* x, int64_t b, int64_t r0 = 0, int64_t r1 = -1) const {
    if (r1 < 0) r1 = shape.oh;
    thread_local std::vector<uint8_t> codes_in;
    thread_local std::vector<int32_t> raw;
    codes_in.resize(int8::padded_channels(shape.c) * int8::padded_rows(shape) *
                    int8::padded_cols(shape));
    raw.resize(mc * (r1 - r0) * shape.ow);
    if (input_codes) {
      const auto* in = reinterpret_cast<const uint8_t*>(x) + b * 4 * ((input_bytes() + 3) / 4);
      kernels->pack_codes(in, static_cast<int>(zx), shape, codes_in.data());
    } else {
      kernels->pack_input(x + b * input_bytes(), sx, static_cast<int>(zx), shape, codes_in.data());
    }
    binary::ConvShape rows = shape;
    rows.oh = r1 - r0;
    kernels->conv(codes_in.data() + r0 * shape.stride_h * int8::padded_cols(shape) *
                                        int8::padded_channels(shape.c),
                  weights.data(), mc, rows, raw.data());
    return raw.data();
  }
};

// A layer of b-bit codes with binary weights (planes.h), its weights in the kernel's layout; its
// value is n * scale[o] + bias[o] for the integer sum n, computed as int8's dequantize does.
struct PlanesLayer {
  binary::ConvShape shape;
  const planes::Kernels* kernels = nullptr;
  std::vector<uint64_t> weights;
  int bits = 0;
  float sx = 1;  // the input's scale (codes of floats: round(x / sx))
  std::vector<double> scale;
  std::vector<float> bias;
  std::vector<int64_t> zeros;  // dequantize's constant
  bool input_planes = false;   // reads a fused layer's planes, else packs the codes of floats
  int64_t input_words() const { return planes::image_words(bits, shape.c, shape.h, shape.w); }
  // Image b's sums of output rows [r0, r1) ([m][rows][ow]; all rows by default), in buffers
  // reused by every step of a thread. The planes are channels last, so a slice of rows is the
  // kernel's run over the input rows it reads (row_slice): the same sums.
  const int32_t* sums(const float* x, int64_t b, int64_t r0 = 0, int64_t r1 = -1) const {
    if (r1 < 0) r1 = shape.oh;
    thread_local std::vector<uint64_t> packed;
    thread_local std::vector<int32_t> raw;
    const uint64_t* in = reinterpret_cast<const uint64_t*>(x) + b * input_words();
    if (!input_planes) {
      packed.resize(input_words());
      planes::pack_floats(x + b * shape.c * shape.h * shape.w, sx, bits, shape.c, shape.h, shape.w,
                          packed.data());
      in = packed.data();
    }
    int64_t first = 0;
    const binary::ConvShape sub = row_slice(shape, r0, r1, first);
    raw.resize(shape.m * sub.oh * shape.ow);
    kernels->sums(in + first * shape.w * bits * binary::words(shape.c), bits, weights.data(), sub,
                  raw.data());
    return raw.data();
  }
};

// A fused 8-bit layer's requantization (int8::requantize's arguments per output channel).
struct Requantization {
  std::vector<int64_t> add;
  std::vector<int32_t> shift, lo, hi;
};

// One executable step: reads value ids, writes one value id, for a chunk of `batch` images.
struct Step {
  PlannedNode info;
  std::vector<int> inputs;
  int output = -1;
  std::function<void(const std::vector<const float*>&, float*, int64_t batch)> run;
  // Where set, `run` split for threads: part(xs, y, count, p, parts) computes the p-th of `parts`
  // disjoint slices of the output (output channels), each with run's operations: one image uses
  // several threads. macs: the multiply-adds per image, to decide whether a split pays.
  using Part =
      std::function<void(const std::vector<const float*>&, float*, int64_t, int64_t, int64_t)>;
  Part part;
  int64_t macs = 0;
  std::shared_ptr<const BinaryLayer> binary;  // binary layers: what a fusion rebuilds them from
  std::shared_ptr<const Int8Layer> int8;      // 8-bit layers: the same
  std::shared_ptr<const PlanesLayer> planes;  // bit-plane layers: the same
  // Float convolutions and dense layers: the activation their kernel applies after the bias, which
  // a Relu or Clip reading only their output sets (fuse_clamp); the step's run reads it.
  std::shared_ptr<float32::Clamp> clamp;
  bool removed = false;  // fused into an earlier step
};

// Makes step s copy its input: the same storage under other dimensions or another grid.
void copy_step(Step& s);
// Gives step s its split form (Step::part, `macs` per image) and, as its run, the one part of one.
void split_step(Step& s, Step::Part part, int64_t macs);
// Copies the output rows [r0, r0 + rows) of m channels, computed as [m][rows][ow], into an image's
// [m][oh][ow].
template <class T>
void copy_rows(const T* slice, int64_t m, int64_t r0, int64_t rows, int64_t oh, int64_t ow,
               T* out) {
  for (int64_t o = 0; o < m; ++o)
    std::copy(slice + o * rows * ow, slice + (o + 1) * rows * ow, out + (o * oh + r0) * ow);
}

// Whether a step of planes of `rows` rows splits across `parts` threads by rows: the one rule of
// float convolutions, pools and element-wise steps (at least 4 rows per part), so that a thread
// reads the rows its part of the step before wrote.
inline bool split_by_rows(int64_t rows, int64_t parts) { return parts > 1 && rows >= 4 * parts; }

// Part p of `parts` of an element-wise step over `count` values that are planes of `rows` rows of
// `cols` values (rows 0: no planes): in every plane its rows [rows * p / parts, rows * (p + 1) /
// parts) where there are at least 4 rows per part (the rows float convolutions and pools give
// that part, so each thread reads what it wrote), else a contiguous slice. run(e0, e1) for each
// range of values.
template <class Run>
void elementwise_part(int64_t count, int64_t rows, int64_t cols, int64_t p, int64_t parts,
                      Run&& run) {
  if (split_by_rows(rows, parts) && cols > 0) {
    const int64_t plane = rows * cols, r0 = rows * p / parts, r1 = rows * (p + 1) / parts;
    for (int64_t at = 0; at + plane <= count; at += plane) run(at + r0 * cols, at + r1 * cols);
    return;
  }
  const int64_t e0 = count * p / parts, e1 = count * (p + 1) / parts;
  if (e1 > e0) run(e0, e1);
}

// Part p of `parts` of a float convolution of one image (float32's ConvFn): a slice of the output
// rows where the plane has enough of them (each part then reads only its rows' input), else a slice
// of the groups (with one group, of the output channels). run(c0, o0, sub, sub_group, r0, r1) runs
// the kernel on input channels from c0, output channels from o0 (weights, bias and output offset
// by them), shape `sub` and output rows [r0, r1).
template <class Run>
void float_conv_part(const binary::ConvShape& shape, int64_t group, int64_t p, int64_t parts,
                     Run&& run) {
  if (parts == 1 || split_by_rows(shape.oh, parts)) {
    const int64_t r0 = shape.oh * p / parts, r1 = shape.oh * (p + 1) / parts;
    if (r1 > r0) run(0, 0, shape, group, r0, r1);
    return;
  }
  const int64_t units = group == 1 ? shape.m : group;
  const int64_t u0 = units * p / parts, u1 = units * (p + 1) / parts;
  if (u0 == u1) return;
  const int64_t mg = shape.m / group, cg = shape.c / group;
  binary::ConvShape sub = shape;
  sub.m = group == 1 ? u1 - u0 : (u1 - u0) * mg;
  sub.c = group == 1 ? shape.c : (u1 - u0) * cg;
  run(group == 1 ? 0 : u0 * cg, group == 1 ? u0 : u0 * mg, sub, group == 1 ? 1 : u1 - u0, 0,
      shape.oh);
}

// Gives an 8-bit or bit-plane layer's step (output [m, oh, ow] of T per image, `stored` floats
// apart) its split form by output rows: emit(raw, plane, out) turns the sums of a slice of `plane`
// pixels (Int8Layer::sums, PlanesLayer::sums) into m x plane outputs, which go to each channel's
// rows of the image.
template <class T, class Layer, class Emit>
void split_layer_rows(Step& s, std::shared_ptr<const Layer> layer, int64_t stored, Emit emit) {
  const binary::ConvShape& sh = layer->shape;
  split_step(
      s,
      [layer, stored, emit](const std::vector<const float*>& xs, float* y, int64_t count, int64_t p,
                            int64_t parts) {
        const Layer& l = *layer;
        const int64_t m = l.shape.m, oh = l.shape.oh, ow = l.shape.ow;
        const int64_t r0 = oh * p / parts, r1 = oh * (p + 1) / parts, rows = r1 - r0;
        if (rows == 0) return;
        thread_local std::vector<T> slice;
        for (int64_t b = 0; b < count / stored; ++b) {
          T* out = reinterpret_cast<T*>(y + b * stored);
          if (parts == 1) {
            emit(l.sums(xs[0], b), oh * ow, out);
            continue;
          }
          slice.resize(m * rows * ow);
          emit(l.sums(xs[0], b, r0, r1), rows * ow, slice.data());
          copy_rows(slice.data(), m, r0, rows, oh, ow, out);
        }
      },
      sh.m * sh.oh * sh.ow * sh.c * sh.kh * sh.kw);
}

// ---- building layers (layers.cpp)

// Whether a kernel of m output channels is s[o] * (±1) (every |w| of a channel equal); its s.
bool binary_scales(const std::vector<float>& w, int64_t m, std::vector<float>& scale);

// The step of a binary convolution (or dense layer): packs each image's signs, then XOR and
// popcount against the packed kernel; exact, as the sums of ±1 products are integers.
void binary_conv(Step& s, const binary::ConvShape& shape, const std::vector<float>& w,
                 std::vector<float> scale, std::vector<float> bias, bool input_packed,
                 const std::string& kind);

// The step of a grouped binary convolution of ±1 floats (each group's signs packed, then the
// binary kernel over the group's channels; exact, as binary_conv).
void grouped_binary_conv(Step& s, const binary::ConvShape& shape, int64_t group,
                         const std::vector<float>& w, const std::vector<float>& scale,
                         const std::vector<float>& bias, const std::string& kind);

// The weights' grid: the one Quant or DequantizeLinear gave them, else codes ±1 where every
// output channel's weights are s[o] * (±1) (binary kernels with 2-bit activations, as in
// Blueoil's A2W1).
Grid weight_grid(const std::vector<float>& w, int64_t m, const Grid& given);

// The step of an 8-bit convolution (or dense layer) where the input and the weights w
// [m, c, kh, kw] lie on integer grids whose codes fit 8 bits (unsigned input codes, signed
// weight codes, each shifted by a constant where its grid's range needs it); false where they
// do not. With input x = (u - zx) sx and weights w = (k - zw) sw[o], the convolution is
//   sx sw[o] (sum u k - zw sum u - zx sum k + taps c zx zw),
// sum k a constant per channel and sum u, where zw != 0, one more row of weights all 1. The
// integer sum is exact; scaled and biased in double, it rounds once to float.
bool int8_conv(Step& s, const binary::ConvShape& shape, const Grid& xg, bool input_codes,
               const std::vector<float>& w, const Grid& wg, const std::vector<float>& bias,
               const std::string& kind);

// The float convolution's step where its weights are ternary (float32::ternary_conv: the float
// kernel's bits from codes of a byte); false where they are not.
bool ternary_conv(Step& s, const binary::ConvShape& shape, int64_t group,
                  const std::vector<float>& w, const std::vector<float>& bias,
                  const std::string& kind);

// The float dense layer's step where its rows are ternary: gemm_f32's operations over the rows
// t * alpha[o] rebuilt from codes of a byte, so its bits.
bool ternary_dense(Step& s, int64_t k, int64_t m, const std::vector<float>& rows,
                   const std::vector<float>& bias);

// The bits of a bit-plane layer's input: its planes, or floats on a grid of one scale, zero 0 and
// codes 0 .. 2^b - 1 for b <= 4 (zero padding is then code 0); 0 where neither.
int planes_bits(const Value& x);

// The step of a bit-plane convolution (or dense layer): b-bit input codes x binary weights w
// (scales sw), exact integer sums scaled and biased as int8's dequantize does.
void planes_conv(Step& s, const binary::ConvShape& shape, const Value& x, int bits,
                 const std::vector<float>& w, const std::vector<float>& sw,
                 const std::vector<float>& bias, const std::string& kind);

}  // namespace detail
}  // namespace engine
}  // namespace lowbit
