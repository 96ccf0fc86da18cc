// Reshape and Slice of constants, Pad of activations (floats or packed bits).
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>

#include "../lower.h"
#include "lowbit/engine/kernels/binary.h"
#include "lowbit/engine/kernels/layout.h"

namespace lowbit {
namespace engine {
namespace detail {

// Shape values s[from..] resolved against data of dims x_dims holding n values (ONNX's Reshape: 0
// copies the data's dimension at that index, one -1 is inferred).
std::vector<int64_t> Program::resolve_shape(const std::vector<float>& s, size_t from,
                                            const std::vector<int64_t>& x_dims, int64_t n,
                                            const std::string& where) const {
  std::vector<int64_t> dims;
  int inferred = -1;
  int64_t known = 1;
  for (size_t i = from; i < s.size(); ++i) {
    const float v = s[i];
    if (v != std::floor(v) || v < -1 || v > static_cast<float>(limits.max_tensor_elements))
      bad(where, "shape values must be integers in [-1, " +
                     std::to_string(limits.max_tensor_elements) + "]");
    int64_t d = static_cast<int64_t>(v);
    if (d == 0) {
      if (i >= x_dims.size()) bad(where, "shape copies a dimension the data does not have");
      d = x_dims[i];
    }
    if (d == -1) {
      if (inferred >= 0) bad(where, "shape has more than one -1");
      inferred = static_cast<int>(dims.size());
      d = 1;
    } else {
      known = checked_mul(known, d, limits.max_tensor_elements, where, "the shape");
    }
    dims.push_back(d);
  }
  if (inferred >= 0) {
    if (known == 0 || n % known != 0) bad(where, "no -1 makes the shape hold the data");
    dims[inferred] = n / known;
  } else if (known != n) {
    bad(where,
        "shape " + dims_str(dims) + " does not hold the data's " + std::to_string(n) + " values");
  }
  return dims;
}

// Reshape of a constant (the exports' packed binary kernels, shape arithmetic), or of an
// activation: its first entry is the batch (0, -1, or the batch size the exporter saw), the others
// reshape each image.
void Program::reshape(const Value& x, const Value& shape, const Attrs& a, Value& out,
                      const std::string& where) {
  if (a.i("allowzero", 0) != 0) bad(where, "allowzero is not supported");
  if (shape.dims.size() != 1 || shape.data.size() > 16)
    bad(where, "shape must be a 1-D constant of at most 16 values");
  if (x.constant) {
    out.dims = resolve_shape(shape.data, 0, x.dims, static_cast<int64_t>(x.data.size()), where);
    out.constant = true;
    out.data = x.data;
    return;
  }
  if (shape.data.empty() || !(shape.data[0] >= -1) || shape.data[0] != std::floor(shape.data[0]))
    bad(where, "the shape of an activation must start with its batch (0, -1 or a size)");
  out.dims = resolve_shape(shape.data, 1, x.dims, x.per_image(), where);
  out.dims.insert(out.dims.begin(), 1);
}

// Slice of a constant: starts, ends and optional axes (steps 1), ONNX's clamping of negative and
// out-of-range indices.
void Program::slice(std::vector<const Value*>& in, Value& out, const std::string& where) {
  for (size_t i = 0; i < in.size(); ++i)
    if (in[i] && !in[i]->constant) bad(where, "only constant inputs are supported");
  const Value& x = *in[0];
  const std::vector<float>& starts = in[1]->data;
  const std::vector<float>& ends = in[2]->data;
  const size_t rank = x.dims.size();
  if (starts.size() != ends.size() || starts.size() > rank)
    bad(where, "starts and ends must have one value per sliced axis");
  std::vector<float> axes(starts.size());
  for (size_t i = 0; i < axes.size(); ++i) axes[i] = static_cast<float>(i);
  if (in.size() > 3 && in[3]) axes = in[3]->data;
  if (axes.size() != starts.size()) bad(where, "axes must have one value per sliced axis");
  if (in.size() > 4 && in[4]) {
    for (float v : in[4]->data)
      if (v != 1.0f) bad(where, "only steps of 1 are supported");
  }
  std::vector<int64_t> lo(rank, 0), hi = x.dims;
  std::vector<bool> seen(rank, false);
  for (size_t i = 0; i < axes.size(); ++i) {
    const float av = axes[i];
    if (av != std::floor(av) || av < -static_cast<float>(rank) || av >= static_cast<float>(rank))
      bad(where, "axes must be integers in [-rank, rank)");
    const size_t ax = static_cast<size_t>(av < 0 ? av + static_cast<float>(rank) : av);
    if (seen[ax]) bad(where, "an axis is sliced twice");
    seen[ax] = true;
    const double d = static_cast<double>(x.dims[ax]);
    auto clampi = [&](float v) {
      double e = std::isfinite(v) ? std::floor(v) : (v > 0 ? d : 0.0);
      if (e < 0) e += d;
      return static_cast<int64_t>(std::min(std::max(e, 0.0), d));
    };
    lo[ax] = clampi(starts[i]);
    hi[ax] = std::max(lo[ax], clampi(ends[i]));
  }
  out.dims.resize(rank);
  int64_t count = 1;
  for (size_t d = 0; d < rank; ++d) count *= (out.dims[d] = hi[d] - lo[d]);
  out.constant = true;
  out.data.resize(count);
  std::vector<int64_t> coord(rank, 0);
  for (int64_t e = 0; e < count; ++e) {
    int64_t rem = e, src = 0, stride = 1;
    for (size_t d = rank; d-- > 0;) {
      coord[d] = rem % std::max<int64_t>(out.dims[d], 1);
      rem /= std::max<int64_t>(out.dims[d], 1);
    }
    for (size_t d = rank; d-- > 0;) {
      src += (coord[d] + lo[d]) * stride;
      stride *= x.dims[d];
    }
    out.data[e] = x.data[src];
  }
  in.resize(1);
}

void Program::pad(std::vector<const Value*>& in, const Attrs& a, Value& out, Step& s,
                  const std::string& where, const onnx::NodeProto&) {
  // Pads and the value: inputs from opset 11, attributes before.
  const bool attributes = opset < 11;
  if (in.empty() || !in[0] || in[0]->constant || in[0]->dims.size() != 4 ||
      (!attributes && (in.size() < 2 || in.size() > 3 || !in[1])))
    bad(where, "X must be a 4-D activation, with pads");
  const std::string mode = a.s("mode", "constant");
  if (mode != "constant" && mode != "reflect" && mode != "edge")
    bad(where, "mode " + mode + " is not constant, reflect or edge");
  std::vector<float> given;
  if (attributes) {
    for (int64_t v : a.ints("pads", {})) given.push_back(static_cast<float>(v));
  } else {
    if (!in[1]->constant) bad(where, "pads must be a constant");
    given = in[1]->data;
  }
  if (given.size() != 8) bad(where, "pads must have 8 values");
  std::vector<int64_t> pads(8);
  for (int i = 0; i < 8; ++i) {
    const float v = given[i];
    if (!(v >= 0 && v <= 1024) || v != std::floor(v))
      bad(where, "pads must be integers in [0, 1024]");
    pads[i] = static_cast<int64_t>(v);
  }
  if (pads[0] || pads[1] || pads[4] || pads[5]) bad(where, "only spatial padding is supported");
  float value = attributes ? a.f("value", 0.0f) : 0.0f;
  if (!attributes && in.size() == 3 && in[2]) {
    if (!in[2]->constant || in[2]->data.size() != 1)
      bad(where, "constant_value must be one constant");
    value = in[2]->data[0];
  }
  const auto& d = in[0]->dims;
  const int64_t c = d[1], h = d[2], w = d[3], t = pads[2], l = pads[3], oh = h + t + pads[6],
                ow = w + l + pads[7];
  out.dims = {1, c, oh, ow};
  checked_mul(c * oh, ow, limits.max_tensor_elements, where, "the output");
  out.bipolar = in[0]->bipolar && (value == 1.0f || value == -1.0f);
  if (in[0]->grid.on && value == 0.0f) {  // the zero's code in the padding
    out.grid = in[0]->grid;
    out.grid.lo = std::min<int64_t>(out.grid.lo, static_cast<int64_t>(out.grid.zero));
    out.grid.hi = std::max<int64_t>(out.grid.hi, static_cast<int64_t>(out.grid.zero));
  }
  in.resize(1);
  if (in[0]->packed) {  // words of +1 (0) or -1 (the channels' bits) around the image's
    out.packed = out.bipolar = true;
    out.packed_chw = {c, oh, ow};
    s.info.kernel = "pad_bits";
    const int64_t cw = binary::words(c);
    std::vector<uint64_t> fill(cw, 0);
    for (int64_t k = 0; k < cw && value < 0; ++k) {
      const int64_t bits = std::min<int64_t>(64, c - 64 * k);
      fill[k] = bits == 64 ? ~uint64_t{0} : (uint64_t{1} << bits) - 1;
    }
    s.run = [=](const std::vector<const float*>& xs, float* y, int64_t count) {
      for (int64_t b = 0; b < count / (2 * cw * oh * ow); ++b) {
        const uint64_t* x = reinterpret_cast<const uint64_t*>(xs[0]) + b * cw * h * w;
        uint64_t* o = reinterpret_cast<uint64_t*>(y) + b * cw * oh * ow;
        for (int64_t p = 0; p < oh * ow; ++p) std::copy(fill.begin(), fill.end(), o + p * cw);
        for (int64_t r = 0; r < h; ++r)
          std::copy(x + r * w * cw, x + (r + 1) * w * cw, o + ((r + t) * ow + l) * cw);
      }
    };
    return;
  }
  if (mode != "constant") {  // each output pixel copies one of the input's
    out.grid = in[0]->grid;
    out.bipolar = in[0]->bipolar;
  }
  // Plane by plane, layout.h's kernel, split across threads by planes.
  const layout::PadMode pm = mode == "constant"  ? layout::PadMode::constant
                             : mode == "reflect" ? layout::PadMode::reflect
                                                 : layout::PadMode::edge;
  const layout::Kernels* k = &layout::best();
  s.info.kernel =
      (mode == "constant" ? std::string("pad_f32_") : "pad_" + mode + "_f32_") + k->name;
  split_step(
      s,
      [=](const std::vector<const float*>& xs, float* y, int64_t count, int64_t p, int64_t parts) {
        const int64_t planes = count / (oh * ow);
        for (int64_t pl = planes * p / parts; pl < planes * (p + 1) / parts; ++pl)
          k->pad(xs[0] + pl * h * w, h, w, t, l, oh, ow, pm, value, y + pl * oh * ow);
      },
      c * oh * ow);
}

namespace {

void lower_flatten(Node& d) {
  d.arity(1, 1);
  if (d.a.i("axis", 1) != 1) bad(d.where, "only axis 1 is supported");
  if (d.in[0]->constant) bad(d.where, "a constant input");
  d.out.dims = {1, d.in[0]->per_image()};
  d.out.bipolar = d.in[0]->bipolar;
  d.out.grid = d.in[0]->grid;
  d.out.packed = d.in[0]->packed;  // the same words
  d.out.packed_chw = d.in[0]->packed_chw;
  d.out.codes = d.in[0]->codes;    // the same bytes
  d.out.planes = d.in[0]->planes;  // the same planes
  d.out.planes_scale = d.in[0]->planes_scale;
  d.out.planes_post = d.in[0]->planes_post;
  copy_step(d.s);
}

void lower_reshape(Node& d) {
  d.arity(2, 2);
  const Value& x = *d.in[0];
  d.p.reshape(x, d.constant(1, "shape"), d.a, d.out, d.where);
  d.in.resize(1);
  if (x.constant) return;
  d.out.grid = x.grid;  // the same values
  copy_step(d.s);
}

void lower_slice(Node& d) {
  d.arity(3, 5);
  d.p.slice(d.in, d.out, d.where);
}

void lower_pad(Node& d) { d.p.pad(d.in, d.a, d.out, d.s, d.where, d.n); }

}  // namespace

const std::vector<OpLowering>& shape_ops() {
  static const std::vector<OpLowering> ops = {
      {"Flatten", lower_flatten},
      {"Reshape", lower_reshape},
      {"Slice", lower_slice},
      {"Pad", lower_pad},
  };
  return ops;
}

}  // namespace detail
}  // namespace engine
}  // namespace lowbit
