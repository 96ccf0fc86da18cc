// The steps of convolutions and dense layers: binary, bit-plane, 8-bit, ternary and float kernels.
#include "layers.h"

#include <algorithm>
#include <cmath>
#include <memory>

namespace lowbit {
namespace engine {
namespace detail {

// Whether a kernel of m output channels is s[o] * (±1) (every |w| of a channel equal); its s.
bool binary_scales(const std::vector<float>& w, int64_t m, std::vector<float>& scale) {
  if (m <= 0 || w.size() % m != 0 || w.empty()) return false;
  const size_t per = w.size() / m;
  scale.assign(m, 0.0f);
  for (int64_t o = 0; o < m; ++o) {
    const float s = std::fabs(w[o * per]);
    for (size_t e = 0; e < per; ++e) {
      if (std::fabs(w[o * per + e]) != s) return false;
    }
    scale[o] = s;
  }
  return true;
}

// The step of a binary convolution (or dense layer): packs each image's signs, then XOR and
// popcount against the packed kernel; exact, as the sums of ±1 products are integers.
void binary_conv(Step& s, const binary::ConvShape& shape, const std::vector<float>& w,
                 std::vector<float> scale, std::vector<float> bias, bool input_packed,
                 const std::string& kind) {
  auto layer = std::make_shared<BinaryLayer>();
  layer->shape = shape;
  layer->kernels = &binary::best();
  layer->weights = layer->kernels->pack(w.data(), shape.m, shape.c, shape.kh, shape.kw);
  layer->scale = std::move(scale);
  layer->bias = std::move(bias);
  layer->input_packed = input_packed;
  s.info.kernel = kind + layer->kernels->name;
  s.info.parameter_bytes =
      static_cast<int64_t>(layer->weights.size() * sizeof(uint64_t) +
                           (layer->scale.size() + layer->bias.size()) * sizeof(float));
  s.binary = layer;
  // Part p of `parts`: a slice of the output rows (the whole image where there is one part),
  // computed into a buffer and copied to each channel's rows.
  split_step(
      s,
      [layer](const std::vector<const float*>& xs, float* y, int64_t count, int64_t p,
              int64_t parts) {
        const BinaryLayer& l = *layer;
        const binary::ConvShape& sh = l.shape;
        const int64_t per_out = sh.m * sh.oh * sh.ow, r0 = sh.oh * p / parts,
                      r1 = sh.oh * (p + 1) / parts;
        if (r0 == r1) return;
        thread_local std::vector<uint64_t> buffer;
        thread_local std::vector<float> rows;
        for (int64_t b = 0; b < count / per_out; ++b) {
          const uint64_t* in = l.input(xs[0], b, buffer);
          float* out = y + b * per_out;
          if (parts == 1) {
            l.kernels->conv(in, l.weights.data(), l.scale.data(), l.bias.data(), sh, out);
            continue;
          }
          int64_t first = 0;
          const binary::ConvShape sub = row_slice(sh, r0, r1, first);
          rows.resize(sh.m * sub.oh * sh.ow);
          l.kernels->conv(in + first * sh.w * binary::words(sh.c), l.weights.data(), l.scale.data(),
                          l.bias.data(), sub, rows.data());
          copy_rows(rows.data(), sh.m, r0, sub.oh, sh.oh, sh.ow, out);
        }
      },
      shape.m * shape.oh * shape.ow * binary::words(shape.c) * shape.kh * shape.kw);
}

void grouped_binary_conv(Step& s, const binary::ConvShape& shape, int64_t group,
                         const std::vector<float>& w, const std::vector<float>& scale,
                         const std::vector<float>& bias, const std::string& kind) {
  const binary::Kernels* k = &binary::best();
  const int64_t cg = shape.c / group, mg = shape.m / group, taps = shape.kh * shape.kw;
  binary::ConvShape sub = shape;  // one group's convolution
  sub.c = cg, sub.m = mg;
  auto weights = std::make_shared<std::vector<std::vector<uint64_t>>>();
  int64_t bytes = static_cast<int64_t>((scale.size() + bias.size()) * sizeof(float));
  for (int64_t g = 0; g < group; ++g) {
    weights->push_back(k->pack(w.data() + g * mg * cg * taps, mg, cg, shape.kh, shape.kw));
    bytes += static_cast<int64_t>(weights->back().size() * sizeof(uint64_t));
  }
  s.info.kernel = kind + k->name + "_grouped";
  s.info.parameter_bytes = bytes;
  // Part p of `parts`: a slice of the groups, each packing its channels' signs.
  split_step(
      s,
      [k, shape, sub, group, weights, scale, bias](const std::vector<const float*>& xs, float* y,
                                                   int64_t count, int64_t p, int64_t parts) {
        const int64_t plane = shape.h * shape.w, per_in = shape.c * plane;
        const int64_t per_out = shape.m * shape.oh * shape.ow;
        thread_local std::vector<uint64_t> packed;
        packed.resize(binary::words(sub.c) * plane);
        for (int64_t b = 0; b < count / per_out; ++b)
          for (int64_t g = group * p / parts; g < group * (p + 1) / parts; ++g) {
            k->signs(xs[0] + b * per_in + g * sub.c * plane, sub.c, shape.h, shape.w,
                     binary::Minus::negative, packed.data());
            k->conv(packed.data(), (*weights)[g].data(), scale.data() + g * sub.m,
                    bias.data() + g * sub.m, sub,
                    y + b * per_out + g * sub.m * shape.oh * shape.ow);
          }
      },
      shape.m * shape.oh * shape.ow * binary::words(cg) * taps);
}

// The weights' grid: the one Quant or DequantizeLinear gave them, else codes ±1 where every
// output channel's weights are s[o] * (±1) (binary kernels with 2-bit activations, as in
// Blueoil's A2W1).
Grid weight_grid(const std::vector<float>& w, int64_t m, const Grid& given) {
  if (given.on) return given;
  Grid g;
  if (binary_scales(w, m, g.scale)) {
    for (float v : g.scale)
      if (!(v > 0) || !std::isfinite(v)) return Grid();
    g.on = true, g.zero = 0, g.lo = -1, g.hi = 1;
  }
  return g;
}

// The step of an 8-bit convolution (or dense layer) where the input and the weights w
// [m, c, kh, kw] lie on integer grids whose codes fit 8 bits (unsigned input codes, signed
// weight codes, each shifted by a constant where its grid's range needs it); false where they
// do not. With input x = (u - zx) sx and weights w = (k - zw) sw[o], the convolution is
//   sx sw[o] (sum u k - zw sum u - zx sum k + taps c zx zw),
// sum k a constant per channel and sum u, where zw != 0, one more row of weights all 1. The
// integer sum is exact; scaled and biased in double, it rounds once to float.
bool int8_conv(Step& s, const binary::ConvShape& shape, const Grid& xg, bool input_codes,
               const std::vector<float>& w, const Grid& wg, const std::vector<float>& bias,
               const std::string& kind) {
  if (!xg.on || !wg.on || xg.scale.size() != 1) return false;
  const int64_t zx = static_cast<int64_t>(xg.zero) - xg.lo;  // the input's zero, shifted
  if (xg.hi - xg.lo > 255 || zx < 0 || zx > 255) return false;
  const int64_t shift = wg.lo >= -128 && wg.hi <= 127 ? 0 : wg.lo + 128;
  if (wg.hi - shift > 127) return false;
  const int64_t zw = static_cast<int64_t>(wg.zero) - shift;
  const int64_t taps = shape.kh * shape.kw, terms = taps * shape.c, m = shape.m;
  if (terms > int8::kMaxTerms) return false;
  const int64_t cp = int8::padded_channels(shape.c), mc = m + (zw != 0 ? 1 : 0);
  std::vector<int8_t> codes(mc * taps * cp, 0);
  auto l = std::make_shared<Int8Layer>();
  l->constant.resize(m), l->scale.resize(m);
  int64_t widest = 0;  // |weight code - zw|
  for (int64_t o = 0; o < m; ++o) {
    const float sw = wg.scale[wg.scale.size() == 1 ? 0 : o];
    int64_t sum = 0;
    for (int64_t ch = 0; ch < shape.c; ++ch) {
      for (int64_t t = 0; t < taps; ++t) {
        const float v = w[(o * shape.c + ch) * taps + t];
        const double k = std::nearbyint(static_cast<double>(v) / sw) + wg.zero;
        // On the grid exactly as Quant and DequantizeLinear compute it.
        if (!(k >= wg.lo && k <= wg.hi) ||
            (static_cast<float>(k) - static_cast<float>(wg.zero)) * sw != v)
          return false;
        const int64_t kc = static_cast<int64_t>(k) - shift;
        codes[(o * taps + t) * cp + ch] = static_cast<int8_t>(kc);
        sum += kc;
        widest = std::max<int64_t>(widest, std::abs(kc - zw));
      }
    }
    l->constant[o] = terms * zx * zw - zx * sum;
    l->scale[o] = static_cast<double>(xg.scale[0]) * sw;
  }
  for (int64_t t = 0; t < taps && mc > m; ++t)
    for (int64_t ch = 0; ch < shape.c; ++ch) codes[(m * taps + t) * cp + ch] = 1;
  const int8::Kernels& k = int8::best();
  l->shape = shape, l->kernels = &k, l->weights = k.pack(codes, mc, shape);
  l->mc = mc, l->zx = zx, l->zw = zw, l->sx = xg.scale[0], l->bias = bias;
  l->input_codes = input_codes;
  l->sum_bound = terms * 255 * widest + 1;  // |input code - zx| <= 255
  s.info.kernel = kind + k.name;
  s.info.parameter_bytes = static_cast<int64_t>(
      l->weights.size() + m * (sizeof(int64_t) + sizeof(double)) + bias.size() * sizeof(float));
  s.int8 = l;
  // Part p of `parts`: a slice of the output rows.
  const Int8Layer* raw = l.get();
  split_layer_rows<float, Int8Layer>(
      s, l, shape.m * shape.oh * shape.ow, [raw](const int32_t* sums, int64_t plane, float* out) {
        raw->kernels->dequantize(sums, raw->shape.m, plane, raw->constant.data(), raw->zw,
                                 raw->scale.data(), raw->bias.data(), out);
      });
  return true;
}

namespace {

// Whether w [m, ...] is ternary, alpha[o] * {-1, 0, 1} per output channel; its codes and scales.
bool ternary_weights(const std::vector<float>& w, int64_t m, std::vector<int8_t>& t,
                     std::vector<float>& alpha) {
  if (m <= 0 || w.empty() || w.size() % m != 0) return false;
  const int64_t per = static_cast<int64_t>(w.size()) / m;
  alpha.assign(m, 0.0f);
  t.resize(w.size());
  for (int64_t o = 0; o < m; ++o) {
    for (int64_t e = 0; e < per; ++e) alpha[o] = std::max(alpha[o], std::fabs(w[o * per + e]));
    if (!std::isfinite(alpha[o])) return false;
    for (int64_t e = 0; e < per; ++e) {
      const float v = w[o * per + e];
      if (v == 0) {
        t[o * per + e] = 0;
      } else if (v == alpha[o] || v == -alpha[o]) {
        t[o * per + e] = v > 0 ? 1 : -1;
      } else {
        return false;
      }
    }
  }
  return true;
}

}  // namespace

// The float convolution's step where its weights are ternary (float32::ternary_conv: the float
// kernel's bits from codes of a byte); false where they are not.
bool ternary_conv(Step& s, const binary::ConvShape& shape, int64_t group,
                  const std::vector<float>& w, const std::vector<float>& bias,
                  const std::string& kind) {
  std::vector<int8_t> t;
  std::vector<float> alpha;
  if (!ternary_weights(w, shape.m, t, alpha)) return false;
  const float32::Kernels* k = &float32::best();
  s.info.kernel = kind + k->name;
  s.info.parameter_bytes = static_cast<int64_t>(t.size() + (alpha.size() + bias.size()) * 4);
  const int64_t taps = shape.c / group * shape.kh * shape.kw;
  split_step(
      s,
      [k, shape, group, taps, t, alpha, bias](const std::vector<const float*>& xs, float* y,
                                              int64_t count, int64_t p, int64_t parts) {
        const int64_t per_in = shape.c * shape.h * shape.w, per_out = shape.m * shape.oh * shape.ow;
        for (int64_t b = 0; b < count / per_out; ++b)
          float_conv_part(shape, group, p, parts,
                          [&](int64_t c0, int64_t o0, const binary::ConvShape& sub,
                              int64_t sub_group, int64_t r0, int64_t r1) {
                            k->ternary_conv(xs[0] + b * per_in + c0 * shape.h * shape.w,
                                            t.data() + o0 * taps, alpha.data() + o0,
                                            bias.data() + o0, sub, sub_group, {}, r0, r1,
                                            y + b * per_out + o0 * shape.oh * shape.ow);
                          });
      },
      shape.m * shape.oh * shape.ow * taps);
  return true;
}

// The float dense layer's step where its rows are ternary: gemm_f32's operations over the rows
// t * alpha[o] rebuilt from codes of a byte, so its bits.
bool ternary_dense(Step& s, int64_t k, int64_t m, const std::vector<float>& rows,
                   const std::vector<float>& bias) {
  std::vector<int8_t> t;
  std::vector<float> alpha;
  if (!ternary_weights(rows, m, t, alpha)) return false;
  s.info.kernel = "ternary_gemm_f32";
  s.info.parameter_bytes = static_cast<int64_t>(t.size() + (alpha.size() + bias.size()) * 4);
  s.run = [t, alpha, bias, k, m](const std::vector<const float*>& xs, float* y, int64_t count) {
    for (int64_t b = 0; b < count / m; ++b) {
      const float* xi = xs[0] + b * k;
      for (int64_t o = 0; o < m; ++o) {
        float acc = 0;
        const int8_t* r = t.data() + o * k;
        for (int64_t i = 0; i < k; ++i)
          acc = std::fma(xi[i], static_cast<float>(r[i]) * alpha[o], acc);
        y[b * m + o] = acc + bias[o];
      }
    }
  };
  return true;
}

// The bits of a bit-plane layer's input: its planes, or floats on a grid of one scale, zero 0 and
// codes 0 .. 2^b - 1 for b <= 4 (zero padding is then code 0); 0 where neither.
int planes_bits(const Value& x) {
  if (x.planes) return x.planes;
  const Grid& g = x.grid;
  if (x.packed || x.codes || !g.on || g.scale.size() != 1 || g.zero != 0 || g.lo != 0 || g.hi < 1 ||
      g.hi > 15)
    return 0;
  return g.hi <= 1 ? 1 : g.hi <= 3 ? 2 : g.hi <= 7 ? 3 : 4;
}

void planes_conv(Step& s, const binary::ConvShape& shape, const Value& x, int bits,
                 const std::vector<float>& w, const std::vector<float>& sw,
                 const std::vector<float>& bias, const std::string& kind) {
  auto l = std::make_shared<PlanesLayer>();
  const planes::Kernels& k = planes::best();
  l->shape = shape, l->kernels = &k, l->bits = bits, l->bias = bias;
  l->weights = k.pack(w.data(), shape.m, shape.c, shape.kh, shape.kw);
  l->sx = x.grid.scale[0];
  l->input_planes = x.planes > 0;
  l->zeros.assign(shape.m, 0);
  l->scale.resize(shape.m);
  for (int64_t o = 0; o < shape.m; ++o) l->scale[o] = static_cast<double>(l->sx) * sw[o];
  s.info.kernel = kind + k.name;
  s.info.parameter_bytes = static_cast<int64_t>(l->weights.size() * sizeof(uint64_t) +
                                                shape.m * (sizeof(double) + sizeof(float)));
  s.planes = l;
  // Part p of `parts`: a slice of the output rows.
  const PlanesLayer* raw = l.get();
  split_layer_rows<float, PlanesLayer>(
      s, l, shape.m * shape.oh * shape.ow, [raw](const int32_t* sums, int64_t plane, float* out) {
        int8::best().dequantize(sums, raw->shape.m, plane, raw->zeros.data(), 0, raw->scale.data(),
                                raw->bias.data(), out);
      });
}

void copy_step(Step& s) {
  s.info.kernel = "copy";
  s.run = [](const std::vector<const float*>& xs, float* y, int64_t count) {
    std::copy(xs[0], xs[0] + count, y);
  };
}

void split_step(Step& s, Step::Part part, int64_t macs) {
  s.macs = macs;
  s.part = std::move(part);
  s.run = [part = s.part](const std::vector<const float*>& xs, float* y, int64_t count) {
    part(xs, y, count, 0, 1);
  };
}

binary::ConvShape row_slice(const binary::ConvShape& s, int64_t r0, int64_t r1, int64_t& first) {
  binary::ConvShape sub = s;
  const int64_t start = r0 * s.stride_h - s.pad_h;  // the input row of the slice's first tap
  first = std::max<int64_t>(start, 0);
  sub.pad_h = first - start;
  sub.h = s.h - first;
  sub.oh = r1 - r0;
  return sub;
}

}  // namespace detail
}  // namespace engine
}  // namespace lowbit
