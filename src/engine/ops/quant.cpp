// Quantizers: QONNX's Quant and BipolarQuant (fused into the layer before them where they can
// be), ONNX's QuantizeLinear and DequantizeLinear, and the integer grids they put values on.
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <tuple>

#include "../lower.h"

namespace lowbit {
namespace engine {
namespace detail {
namespace {

// elementwise::Rounding lists QONNX's modes in kRoundingModes' order.
static_assert(sizeof(kRoundingModes) / sizeof(kRoundingModes[0]) ==
                  static_cast<size_t>(elementwise::Rounding::down) + 1,
              "a Rounding for every QONNX rounding mode");

// QONNX's rounding_mode attribute (upper or lower case), as an index into kRoundingModes.
int rounding_mode(const Node& d, const char* fallback) {
  std::string mode = d.a.s("rounding_mode", fallback);
  for (char& ch : mode) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  const auto found = std::find(std::begin(kRoundingModes), std::end(kRoundingModes), mode);
  if (found == std::end(kRoundingModes)) bad(d.where, "unknown rounding_mode '" + mode + "'");
  return static_cast<int>(found - std::begin(kRoundingModes));
}

void lower_bipolar_quant(Node& d) {
  d.arity(2, 2);
  const Value& sc = d.constant(1, "scale");
  const Value& x = *d.in[0];
  d.out.dims = x.dims;
  d.s.info.kernel = "bipolar_quant_f32";
  if (!x.constant && x.chain && sc.data.size() == 1 && sc.data[0] == 1.0f &&
      d.p.fuse(*x.chain, d.fused_into)) {
    d.fused = true;
    d.out.packed = d.out.bipolar = true;
    d.out.packed_chw = x.chain->chw;
  } else if (!x.constant && sc.data.size() == 1 && sc.data[0] == 1.0f && x.dims.size() == 4 &&
             d.p.read_packed_everywhere(d.n.output(0), x.dims)) {
    // Only binary layers, pads of ±1, max-pools and Flatten read it: packed at once.
    d.p.pack_signs(d.s, x, d.out, false);
  } else if (!x.constant) {
    const Broadcast index = make_broadcast(x.dims, sc.dims, d.where);
    const std::vector<float> sd = sc.data;
    d.s.info.parameter_bytes = index.bytes() + static_cast<int64_t>(sd.size() * sizeof(float));
    d.s.run = [index, sd](const std::vector<const float*>& xs, float* y, int64_t count) {
      index.each(count,
                 [&](int64_t e, int64_t k) { y[e] = (xs[0][e] >= 0 ? 1.0f : -1.0f) * sd[k]; });
    };
  }
  d.out.bipolar = d.out.packed || (!x.constant && sc.data.size() == 1 && sc.data[0] == 1.0f);
  d.p.fold_if_constant(d.in, d.out, d.where, [&](std::vector<float>& y) {
    const auto index = broadcast_constant(x.dims, sc.dims, d.where);
    for (size_t e = 0; e < y.size(); ++e)
      y[e] = (x.data[e] >= 0 ? 1.0f : -1.0f) * sc.data[index[e]];
  });
  d.in.resize(1);
}

void lower_quant(Node& d) {
  d.arity(4, 4);
  const Value& sc = d.constant(1, "scale");
  const Value& zp = d.constant(2, "zeropt");
  const float bits = d.scalar(3, "bitwidth");
  if (!(bits >= 1 && bits <= 32) || bits != std::floor(bits))
    bad(d.where, "bitwidth must be an integer in [1, 32]");
  const bool is_signed = d.a.i("signed", 1) != 0, narrow = d.a.i("narrow", 0) != 0;
  const int rounding = rounding_mode(d, "ROUND");
  const double b = bits;
  const float lo = static_cast<float>(
      is_signed ? -std::ldexp(1.0, static_cast<int>(b) - 1) + (narrow ? 1 : 0) : 0.0);
  const float hi =
      static_cast<float>(is_signed ? std::ldexp(1.0, static_cast<int>(b) - 1) - 1
                                   : std::ldexp(1.0, static_cast<int>(b)) - (narrow ? 2 : 1));
  const Value& x = *d.in[0];
  d.out.dims = x.dims;
  d.s.info.kernel = "quant_f32";
  auto q = [lo, hi, rounding](float v, float scale, float zero) {
    float u = v / scale + zero;
    u = u > hi ? hi : (u < lo ? lo : u);
    return (round_mode(u, rounding) - zero) * scale;
  };
  d.out.grid = quant_grid(x, sc, zp, lo, hi);
  if (!x.constant && x.chain && x.chain->int8 && sc.data.size() == 1 && zp.data.size() == 1 &&
      d.p.fuse_int8(*x.chain, sc.data[0], zp.data[0], lo, hi, rounding, d.out.grid, d.fused_into)) {
    d.fused = d.out.codes = true;
  } else if (!x.constant && x.chain && x.chain->planes && sc.data.size() == 1 &&
             zp.data.size() == 1 && zp.data[0] == 0 && lo == 0 && hi >= 1 && hi <= 15 &&
             d.p.fuse_planes(*x.chain, sc.data[0], hi, rounding, d.fused_into)) {
    d.fused = true;
    d.out.planes = hi <= 1 ? 1 : hi <= 3 ? 2 : hi <= 7 ? 3 : 4;
    d.out.planes_scale = sc.data[0];
    d.out.packed_chw = x.chain->chw;
  } else if (!x.constant &&
             d.quant_rows(static_cast<elementwise::Rounding>(rounding), lo, hi, sc, zp)) {
    // Scalar or per-channel scale and zero point: the element-wise kernel list's Quant.
  } else if (!x.constant) {
    // Other broadcasts: index maps into the scale and the zero point.
    const auto si = broadcast_index(x.dims, sc.dims, d.where);
    const auto zi = broadcast_index(x.dims, zp.dims, d.where);
    const std::vector<float> sd = sc.data, zd = zp.data;
    const int64_t per = x.per_image();
    d.s.info.parameter_bytes = static_cast<int64_t>((si.size() + zi.size()) * sizeof(int64_t) +
                                                    (sd.size() + zd.size()) * sizeof(float));
    d.s.run = [q, si, zi, sd, zd, per](const std::vector<const float*>& xs, float* y,
                                       int64_t count) {
      for (int64_t b = 0; per > 0 && b < count; b += per)
        for (int64_t e = 0; e < per; ++e) y[b + e] = q(xs[0][b + e], sd[si[e]], zd[zi[e]]);
    };
  }
  d.p.fold_if_constant(d.in, d.out, d.where, [&](std::vector<float>& y) {
    const auto si = broadcast_constant(x.dims, sc.dims, d.where);
    const auto zi = broadcast_constant(x.dims, zp.dims, d.where);
    for (size_t e = 0; e < y.size(); ++e) y[e] = q(x.data[e], sc.data[si[e]], zp.data[zi[e]]);
  });
  d.in.resize(1);
}

void lower_quantize_linear(Node& d) {
  d.arity(2, 3);
  const float sc = d.scalar(1, "y_scale");
  const float zp = d.in.size() > 2 && d.in[2] ? d.scalar(2, "zero_point") : 0.0f;
  // QuantizeLinear saturates to its zero point's type: uint8 without one (ONNX's default).
  float lo = 0, hi = 255;
  const bool dequant = d.op == "DequantizeLinear";
  const auto range = d.p.zero_point_ranges.find(d.n.input_size() > 2 ? d.n.input(2) : "");
  if (range != d.p.zero_point_ranges.end()) std::tie(lo, hi) = range->second;
  d.in.resize(1);
  const Value& x = *d.in[0];
  const bool codes_grid = small_integer(zp) && sc > 0 && std::isfinite(sc);
  if (dequant && d.p.dequantizes_codes(d.n)) {
    // A fused QuantizeLinear's codes: the same bytes, read on this node's grid.
    d.out.dims = x.dims;
    d.out.codes = true;
    d.out.grid = x.grid;
    d.out.grid.scale = {sc}, d.out.grid.zero = zp;
    copy_step(d.s);
    return;
  }
  if (!dequant && !x.constant && x.chain && x.chain->int8 && codes_grid) {
    // An 8-bit layer's chain ending here (the standard format's requantization) writes the codes.
    Grid g;
    g.on = true, g.scale = {1.0f}, g.zero = 0;
    g.lo = static_cast<int64_t>(lo), g.hi = static_cast<int64_t>(hi);
    if (d.p.fuse_int8(*x.chain, sc, zp, lo, hi, /*rounding=*/1, g, d.fused_into, /*linear=*/true)) {
      d.fused = d.out.codes = d.out.integral = true;
      d.out.dims = x.dims;
      d.out.grid = g;
      return;
    }
  }
  if (dequant && codes_grid && (x.integral || (x.constant && integral_in(x.data, lo, hi)))) {
    d.out.grid.on = true, d.out.grid.scale = {sc}, d.out.grid.zero = zp;
    d.out.grid.lo = static_cast<int64_t>(lo), d.out.grid.hi = static_cast<int64_t>(hi);
  }
  if (!dequant && !x.constant) d.out.integral = true;
  if (dequant) {
    d.map([sc, zp](float v) { return (v - zp) * sc; });
  } else {
    d.map([sc, zp, lo, hi](float v) {
      return std::min(std::max(std::nearbyint(v / sc) + zp, lo), hi);
    });
  }
  d.p.fold_if_constant(d.in, d.out, d.where, [&](std::vector<float>& y) {
    for (size_t e = 0; e < y.size(); ++e) {
      const float v = d.in[0]->data[e];
      y[e] = dequant ? (v - zp) * sc : std::min(std::max(std::nearbyint(v / sc) + zp, lo), hi);
    }
  });
}

// QONNX's Trunc, as its documentation's sample implementations define it: version 1 (inputs X,
// scale, zeropt, in_bitwidth, out_bitwidth) divides the rounded codes by 2^(in - out bits);
// version 2 (X, scale, zeropt, in_bitwidth, out_scale, out_bitwidth) by the power of 2 nearest
// out_scale / scale, clamps to the output's integer range (signed, narrow) and rescales by
// out_scale. Scalar scales and zero points.
void lower_trunc(Node& d) {
  d.arity(5, 6);
  const bool v2 = d.in.size() == 6;
  const float scale = d.scalar(1, "scale"), zero = d.scalar(2, "zeropt");
  const float in_bits = d.scalar(3, "in_bitwidth"), out_bits = d.scalar(v2 ? 5 : 4, "out_bitwidth");
  for (float b : {in_bits, out_bits})
    if (!(b >= 1 && b <= 32) || b != std::floor(b))
      bad(d.where, "bit widths must be integers in [1, 32]");
  if (!(scale > 0) || !std::isfinite(scale)) bad(d.where, "scale must be positive and finite");
  const int rounding = rounding_mode(d, "FLOOR");
  if (rounding != 0 && rounding != 1 && rounding != 2 && rounding != 3)
    bad(d.where, "rounding_mode must be ROUND, CEIL or FLOOR");
  float trunc_scale, out_scale = scale, out_zero = zero;
  float lo = -std::numeric_limits<float>::infinity(), hi = std::numeric_limits<float>::infinity();
  if (v2) {
    out_scale = d.scalar(4, "out_scale");
    if (!(out_scale > 0) || !std::isfinite(out_scale))
      bad(d.where, "out_scale must be positive and finite");
    trunc_scale = std::exp2(std::nearbyint(std::log2(out_scale / scale)));
    out_zero = zero / trunc_scale;
    const bool is_signed = d.a.i("signed", 1) != 0, narrow = d.a.i("narrow", 0) != 0;
    const int b = static_cast<int>(out_bits);
    lo = static_cast<float>(is_signed ? -std::ldexp(1.0, b - 1) + (narrow ? 1 : 0) : 0.0);
    hi = static_cast<float>(is_signed ? std::ldexp(1.0, b - 1) - 1
                                      : std::ldexp(1.0, b) - (narrow ? 2 : 1));
  } else {
    trunc_scale = std::exp2(in_bits - out_bits);
  }
  d.in.resize(1);
  d.map([=](float v) {
    float y = std::nearbyint(v / scale + zero) / trunc_scale;
    y = y > hi ? hi : (y < lo ? lo : y);
    return (round_mode(y, rounding) - out_zero) * out_scale;
  });
  d.s.info.kernel = "trunc_f32";
}

}  // namespace

const std::vector<OpLowering>& quant_ops() {
  static const std::vector<OpLowering> ops = {
      {"BipolarQuant", lower_bipolar_quant},
      {"Quant", lower_quant},
      {"Trunc", lower_trunc},
      {"QuantizeLinear", lower_quantize_linear},
      {"DequantizeLinear", lower_quantize_linear},
  };
  return ops;
}

}  // namespace detail
}  // namespace engine
}  // namespace lowbit
