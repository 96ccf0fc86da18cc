// Pooling and reductions: MaxPool of floats, packed bits (AND) and 8-bit codes; AveragePool,
// GlobalAveragePool, GlobalMaxPool and ReduceMean / Max / Min / Sum over the axes of one image.
#include "lowbit/engine/kernels/pool.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "../lower.h"
#include "lowbit/engine/kernels/binary.h"

namespace lowbit {
namespace engine {
namespace detail {

namespace {

// Part `part` of `parts` of a pooling step over `planes` planes of one window: output rows
// [r0, r1) of every plane where they split by rows (split_by_rows, as float convolutions split
// theirs: each thread then pools the rows its own part of the convolution wrote), else a slice of
// the planes. run(window, input offset, output offset) pools one plane's part.
template <class Run>
void pool_part(const pool::Window& s, int64_t planes, int64_t part, int64_t parts, Run&& run) {
  const int64_t in_plane = s.h * s.w, out_plane = s.oh * s.ow;
  if (split_by_rows(s.oh, parts)) {
    const int64_t r0 = s.oh * part / parts, r1 = s.oh * (part + 1) / parts;
    // The rows' windows start at input row r * stride - pad_top: the slice's input starts at the
    // first of them inside the plane, the rest above it is padding, as in s.
    const int64_t start = r0 * s.stride_h - s.pad_top, first = std::max<int64_t>(start, 0);
    pool::Window sub = s;
    sub.pad_top = first - start, sub.h = s.h - first, sub.oh = r1 - r0;
    for (int64_t p = 0; p < planes; ++p)
      run(sub, p * in_plane + first * s.w, p * out_plane + r0 * s.ow);
    return;
  }
  for (int64_t p = planes * part / parts; p < planes * (part + 1) / parts; ++p)
    run(s, p * in_plane, p * out_plane);
}

}  // namespace

void Program::max_pool(std::vector<const Value*>& in, const Attrs& a, Value& out, Step& s,
                       const std::string& where) {
  if (in.size() != 1 || !in[0] || in[0]->constant || in[0]->dims.size() != 4)
    bad(where, "X must be a 4-D activation");
  const auto& d = in[0]->dims;
  const auto ks = a.ints("kernel_shape", {});
  if (ks.size() != 2) bad(where, "kernel_shape must have 2 values");
  for (int64_t v : ks)
    if (v < 1 || v > 1024) bad(where, "kernel_shape must be in [1, 1024]");
  const Window win = window(a, where, {d[2], d[3]}, ks);
  const std::vector<int64_t>&st = win.strides, &pd = win.pads, &dl = win.dilations;

  if (a.i("storage_order", 0) != 0) bad(where, "storage_order 1 is not supported");
  const bool ceil_mode = a.i("ceil_mode", 0) != 0;
  auto extent = [&](int64_t size, int axis) {
    const int64_t span = size + pd[axis] + pd[axis + 2] - dl[axis] * (ks[axis] - 1) - 1;
    if (span < 0) bad(where, "the window is larger than the input");
    int64_t o = (ceil_mode ? (span + st[axis] - 1) / st[axis] : span / st[axis]) + 1;
    if (ceil_mode && (o - 1) * st[axis] >= size + pd[axis]) --o;  // windows start inside
    return o;
  };
  const int64_t c = d[1], h = d[2], w = d[3], oh = extent(h, 0), ow = extent(w, 1);
  out.dims = {1, c, oh, ow};
  out.grid = in[0]->grid;  // the maximum of codes on one grid
  const int64_t kh = ks[0], kw = ks[1], sh = st[0], sw = st[1];
  pool::Window plane;
  plane.h = h, plane.w = w, plane.kh = kh, plane.kw = kw, plane.stride_h = sh, plane.stride_w = sw;
  plane.dil_h = dl[0], plane.dil_w = dl[1], plane.pad_top = pd[0], plane.pad_left = pd[1];
  plane.pad_bottom = pd[2], plane.pad_right = pd[3], plane.oh = oh, plane.ow = ow;
  const pool::Kernels* kern = &pool::best();
  if (in[0]->packed) {  // the maximum of ±1 values is -1 where all are: AND of the bits
    out.packed = out.bipolar = true;
    out.packed_chw = {c, oh, ow};
    s.info.kernel = "maxpool_bits";
    const int64_t cw = binary::words(c);
    s.run = [=](const std::vector<const float*>& xs, float* y, int64_t count) {
      for (int64_t b = 0; b < count / (2 * cw * oh * ow); ++b) {
        const uint64_t* x = reinterpret_cast<const uint64_t*>(xs[0]) + b * cw * h * w;
        uint64_t* o = reinterpret_cast<uint64_t*>(y) + b * cw * oh * ow;
        for (int64_t r = 0; r < oh; ++r)
          for (int64_t q = 0; q < ow; ++q)
            for (int64_t k = 0; k < cw; ++k) {
              uint64_t v = ~uint64_t{0};
              for (int64_t i = 0; i < kh; ++i)
                for (int64_t j = 0; j < kw; ++j) v &= x[((r * sh + i) * w + q * sw + j) * cw + k];
              o[(r * ow + q) * cw + k] = v;
            }
      }
    };
    return;
  }
  if (in[0]->codes) {  // the largest code is the code of the largest value (reads_codes: no pads)
    out.codes = true;
    const int64_t stored_in = 4 * ((c * h * w + 3) / 4), stored_out = (c * oh * ow + 3) / 4;
    s.info.kernel = "maxpool_codes_" + kern->name;
    s.run = [=](const std::vector<const float*>& xs, float* y, int64_t count) {
      for (int64_t b = 0; b < count / stored_out; ++b) {
        const uint8_t* x = reinterpret_cast<const uint8_t*>(xs[0]) + b * stored_in;
        uint8_t* o = reinterpret_cast<uint8_t*>(y) + b * 4 * stored_out;
        for (int64_t ch = 0; ch < c; ++ch) kern->max_codes(x + ch * h * w, plane, o + ch * oh * ow);
      }
    };
    return;
  }
  s.info.kernel = "maxpool_f32_" + kern->name;
  split_step(
      s,
      [=](const std::vector<const float*>& xs, float* y, int64_t count, int64_t part,
          int64_t parts) {
        pool_part(plane, count / (oh * ow), part, parts,
                  [&](const pool::Window& win, int64_t in_at, int64_t out_at) {
                    kern->max(xs[0] + in_at, win, y + out_at);
                  });
      },
      c * oh * ow * kh * kw);
}

namespace {

// AveragePool as ONNX (and onnxruntime) define it: windows clipped to the padded input, divided by
// the number of their elements inside the input, or with count_include_pad by those inside the
// padded input.
void lower_average_pool(Node& d) {
  d.arity(1, 1);
  const Value& x = *d.in[0];
  if (x.constant || x.dims.size() != 4) bad(d.where, "X must be a 4-D activation");
  const auto ks = d.a.ints("kernel_shape", {});
  if (ks.size() != 2) bad(d.where, "kernel_shape must have 2 values");
  for (int64_t v : ks)
    if (v < 1 || v > 1024) bad(d.where, "kernel_shape must be in [1, 1024]");
  const int64_t c = x.dims[1], h = x.dims[2], w = x.dims[3];
  const Window win = window(d.a, d.where, {h, w}, ks);
  if (win.dilations != std::vector<int64_t>{1, 1}) bad(d.where, "dilations are not supported");
  const bool ceil_mode = d.a.i("ceil_mode", 0) != 0, include = d.a.i("count_include_pad", 0) != 0;
  const auto& st = win.strides;
  const auto& pd = win.pads;
  auto extent = [&](int64_t size, int axis) {
    const int64_t span = size + pd[axis] + pd[axis + 2] - ks[axis];
    if (span < 0) bad(d.where, "the window is larger than the input");
    int64_t o = (ceil_mode ? (span + st[axis] - 1) / st[axis] : span / st[axis]) + 1;
    if (ceil_mode && (o - 1) * st[axis] >= size + pd[axis]) --o;  // windows start inside
    return o;
  };
  const int64_t oh = extent(h, 0), ow = extent(w, 1);
  d.out.dims = {1, c, oh, ow};
  const pool::Kernels* kern = &pool::best();
  d.s.info.kernel = "avgpool_f32_" + kern->name;
  pool::Window plane;
  plane.h = h, plane.w = w, plane.kh = ks[0], plane.kw = ks[1], plane.stride_h = st[0];
  plane.stride_w = st[1], plane.pad_top = pd[0], plane.pad_left = pd[1], plane.pad_bottom = pd[2];
  plane.pad_right = pd[3], plane.oh = oh, plane.ow = ow;
  split_step(
      d.s,
      [=](const std::vector<const float*>& xs, float* y, int64_t count, int64_t part,
          int64_t parts) {
        pool_part(plane, count / (oh * ow), part, parts,
                  [&](const pool::Window& win, int64_t in_at, int64_t out_at) {
                    kern->average(xs[0] + in_at, win, include, y + out_at);
                  });
      },
      c * oh * ow * ks[0] * ks[1]);
}

// The axes of a reduction (an attribute, or from opset 18, and ReduceSum's from 13, an input),
// normalised; empty means all (an error for activations: the batch's too) or, with
// noop_with_empty_axes, none.
std::vector<bool> reduced_axes(Node& d, const Value& x) {
  const int64_t rank = static_cast<int64_t>(x.dims.size());
  const bool input = d.p.opset >= 18 || (d.op == "ReduceSum" && d.p.opset >= 13);
  std::vector<int64_t> axes;
  if (input) {
    if (d.in.size() > 1 && d.in[1]) axes = d.integers(1, "axes");
  } else {
    axes = d.a.ints("axes", {});
  }
  std::vector<bool> reduce(rank, false);
  if (axes.empty() && d.a.i("noop_with_empty_axes", 0) == 0)
    for (int64_t k = 0; k < rank; ++k) reduce[k] = true;
  for (int64_t a : axes) {
    if (a < -rank || a >= rank) bad(d.where, "axis " + std::to_string(a) + " is out of range");
    reduce[a < 0 ? a + rank : a] = true;
  }
  if (!x.constant && rank > 0 && reduce[0]) {
    bad(d.where, axes.empty() ? "reduces every axis, the batch's too: a reduction across images "
                                "(give the axes of one image)"
                              : "axis 0 is the batch: a reduction across images");
  }
  return reduce;
}

// The step reducing the axes `reduce` of each image: start, then acc = step(acc, value) in the
// order of the values, then finish(acc, values per output).
// `block`: the pooling kernel (pool.h) that reduces a contiguous block as step does, in its lanes.
template <class Step, class Finish>
void reduction(Node& d, const std::vector<bool>& reduce, bool keep, float start, Step step,
               Finish finish, pool::ReduceFn pool::Kernels::*block) {
  const Value& x = *d.in[0];
  if (x.constant) bad(d.where, "a constant input");
  const int64_t rank = static_cast<int64_t>(x.dims.size());
  std::vector<int64_t> kept(rank);  // the output's dimensions with keepdims
  for (int64_t k = 0; k < rank; ++k) {
    kept[k] = reduce[k] ? 1 : x.dims[k];
    if (!reduce[k] || keep) d.out.dims.push_back(kept[k]);
  }
  // For every element of an image, the output element it goes to.
  const int64_t per = x.per_image(), out_per = product(kept, 1);
  std::vector<int64_t> target(per), coord(rank, 0);
  for (int64_t e = 0; e < per; ++e) {
    int64_t t = 0;
    for (int64_t k = 1; k < rank; ++k) t = t * kept[k] + (reduce[k] ? 0 : coord[k]);
    target[e] = t;
    for (int64_t k = rank; k-- > 1;) {
      if (++coord[k] < x.dims[k]) break;
      coord[k] = 0;
    }
  }
  const float n = static_cast<float>(out_per > 0 ? per / out_per : 0);
  d.in.resize(1);
  d.s.info.kernel = "reduce_f32";
  d.s.info.parameter_bytes = static_cast<int64_t>(target.size() * sizeof(int64_t));
  d.s.run = [=](const std::vector<const float*>& xs, float* y, int64_t count) {
    for (int64_t b = 0; b < count / std::max<int64_t>(out_per, 1); ++b) {
      float* yb = y + b * out_per;
      for (int64_t o = 0; o < out_per; ++o) yb[o] = start;
      const float* xb = xs[0] + b * per;
      for (int64_t e = 0; e < per; ++e) yb[target[e]] = step(yb[target[e]], xb[e]);
      for (int64_t o = 0; o < out_per; ++o) yb[o] = finish(yb[o], n);
    }
  };
  // Reducing the innermost axes (global pooling): each output reduces a contiguous block of its
  // own, by the pooling kernel's reduction (pool.h: 16 lanes, then folded), the same at every
  // thread count (threads take slices of the outputs).
  const int64_t inner = out_per > 0 ? per / out_per : 0;
  bool blocks = inner > 0;
  for (int64_t e = 0; blocks && e < per; ++e) blocks = target[e] == e / inner;
  if (!blocks) return;
  const pool::Kernels* kern = &pool::best();
  const pool::ReduceFn reduce_block = kern->*block;
  d.s.info.kernel = "reduce_f32_" + kern->name;
  d.s.info.parameter_bytes = 0;
  split_step(
      d.s,
      [=](const std::vector<const float*>& xs, float* y, int64_t count, int64_t p, int64_t parts) {
        for (int64_t b = 0; b < count / out_per; ++b) {
          float* yb = y + b * out_per;
          const float* xb = xs[0] + b * per;
          const int64_t o0 = out_per * p / parts, o1 = out_per * (p + 1) / parts;
          reduce_block(xb + o0 * inner, inner, o1 - o0, yb + o0);
          for (int64_t o = o0; o < o1; ++o) yb[o] = finish(yb[o], n);
        }
      },
      per);
}

constexpr float kInf = std::numeric_limits<float>::infinity();
// Lambdas, so that each reduction's loops inline them.
constexpr auto sum_of = [](float acc, float v) { return acc + v; };
constexpr auto max_of = [](float acc, float v) { return v > acc || v != v ? v : acc; };
constexpr auto min_of = [](float acc, float v) { return v < acc || v != v ? v : acc; };
constexpr auto same = [](float v, float) { return v; };
constexpr auto mean = [](float v, float n) { return v / n; };

template <class Step, class Finish>
void reduce_node(Node& d, float start, Step step, Finish finish,
                 pool::ReduceFn pool::Kernels::*block) {
  d.arity(1, 2);
  reduction(d, reduced_axes(d, *d.in[0]), d.a.i("keepdims", 1) != 0, start, step, finish, block);
}

void lower_reduce_mean(Node& d) { reduce_node(d, 0.0f, sum_of, mean, &pool::Kernels::sum); }
void lower_reduce_sum(Node& d) { reduce_node(d, 0.0f, sum_of, same, &pool::Kernels::sum); }
void lower_reduce_max(Node& d) { reduce_node(d, -kInf, max_of, same, &pool::Kernels::maximum); }
void lower_reduce_min(Node& d) { reduce_node(d, kInf, min_of, same, &pool::Kernels::minimum); }

// GlobalAveragePool and GlobalMaxPool: every axis after the channels, kept as 1.
std::vector<bool> spatial_axes(Node& d) {
  d.arity(1, 1);
  const size_t rank = d.in[0]->dims.size();
  if (rank < 3) bad(d.where, "X must have spatial dimensions");
  std::vector<bool> reduce(rank, true);
  reduce[0] = reduce[1] = false;
  return reduce;
}

void lower_global_average_pool(Node& d) {
  reduction(d, spatial_axes(d), true, 0.0f, sum_of, mean, &pool::Kernels::sum);
}

void lower_global_max_pool(Node& d) {
  reduction(d, spatial_axes(d), true, -kInf, max_of, same, &pool::Kernels::maximum);
}

void lower_max_pool(Node& d) { d.p.max_pool(d.in, d.a, d.out, d.s, d.where); }

}  // namespace

const std::vector<OpLowering>& pool_ops() {
  static const std::vector<OpLowering> ops = {
      {"MaxPool", lower_max_pool},
      {"AveragePool", lower_average_pool},
      {"GlobalAveragePool", lower_global_average_pool},
      {"GlobalMaxPool", lower_global_max_pool},
      {"ReduceMean", lower_reduce_mean},
      {"ReduceSum", lower_reduce_sum},
      {"ReduceMax", lower_reduce_max},
      {"ReduceMin", lower_reduce_min},
  };
  return ops;
}

}  // namespace detail
}  // namespace engine
}  // namespace lowbit
