// Conv, Gemm and MatMul: the kernel each layer gets (binary, bit planes, 8-bit, ternary, float);
// ConvTranspose (float).
#include <algorithm>

#include "../fusion/chains.h"
#include "../layers.h"
#include "../lower.h"

namespace lowbit {
namespace engine {
namespace detail {

void Program::conv(std::vector<const Value*>& in, const Attrs& a, Value& out, Step& s,
                   const std::string& where) {
  if (in.size() < 2 || in.size() > 3 || !in[0] || !in[1])
    bad(where, "takes X, W and an optional B");
  const Value& x = *in[0];
  if (x.constant || x.dims.size() != 4) bad(where, "X must be a 4-D activation");
  if (!in[1]->constant || in[1]->dims.size() != 4) bad(where, "W must be a 4-D constant");
  const Value& w = *in[1];
  const int64_t group = a.i("group", 1);
  const int64_t c = x.dims[1], h = x.dims[2], wd = x.dims[3];
  const int64_t m = w.dims[0], cg = w.dims[1], kh = w.dims[2], kw = w.dims[3];
  if (group < 1 || c % group != 0 || m % group != 0 || cg != c / group)
    bad(where, "W " + dims_str(w.dims) + " does not match X " + dims_str(x.dims) + " with group " +
                   std::to_string(group));
  const auto ks = a.ints("kernel_shape", {kh, kw});
  const Window win = window(a, where, {h, wd}, {kh, kw});
  const std::vector<int64_t>&st = win.strides, &pd = win.pads, &dl = win.dilations;
  if (ks != std::vector<int64_t>{kh, kw}) bad(where, "kernel_shape does not match W");
  if (kh < 1 || kw < 1 || kh > 1024 || kw > 1024) bad(where, "kernel sizes must be in [1, 1024]");
  const int64_t oh = (h + pd[0] + pd[2] - dl[0] * (kh - 1) - 1) / st[0] + 1;
  const int64_t ow = (wd + pd[1] + pd[3] - dl[1] * (kw - 1) - 1) / st[1] + 1;
  if (oh < 1 || ow < 1) bad(where, "the output would be empty");
  std::vector<float> bias(m, 0.0f);
  if (in.size() == 3 && in[2]) {
    if (!in[2]->constant || in[2]->data.size() != static_cast<size_t>(m))
      bad(where, "B must be a constant of " + std::to_string(m) + " values");
    bias = in[2]->data;
  }
  out.dims = {1, m, oh, ow};
  checked_mul(m * oh, ow, limits.max_tensor_elements, where, "the output");
  in.resize(1);
  binary::ConvShape shape;
  shape.c = c, shape.h = h, shape.w = wd, shape.m = m, shape.kh = kh, shape.kw = kw;
  shape.stride_h = st[0], shape.stride_w = st[1], shape.pad_h = pd[0], shape.pad_w = pd[1];
  shape.dil_h = dl[0], shape.dil_w = dl[1], shape.oh = oh, shape.ow = ow;
  std::vector<float> scale;
  if (group == 1 && !x.codes && x.bipolar && binary_scales(w.data, m, scale)) {
    binary_conv(s, shape, w.data, scale, bias, x.packed, "binary_conv2d_");
    return;
  }
  // Grouped, on ±1 floats: the binary kernel group by group where a group has at least 16 channels
  // (below that, depthwise above all, the float kernel's few multiply-adds per output are faster
  // than the binary kernel's lanes and words mostly empty).
  if (group > 1 && cg >= 16 && !x.codes && !x.packed && x.bipolar &&
      binary_scales(w.data, m, scale)) {
    grouped_binary_conv(s, shape, group, w.data, scale, bias, "binary_conv2d_");
    return;
  }
  if (x.packed) bad(where, "internal: a packed input reached a float convolution");
  const int bits = planes_bits(x);
  if (group == 1 && bits > 0 && binary_scales(w.data, m, scale)) {
    planes_conv(s, shape, x, bits, w.data, scale, bias, "bitplane_conv2d_");
    return;
  }
  if (x.planes) bad(where, "internal: bit planes reached a float convolution");
  if (group == 1 && int8_conv(s, shape, x.grid, x.codes, w.data, weight_grid(w.data, m, w.grid),
                              bias, "int8_conv2d_"))
    return;
  if (ternary_conv(s, shape, group, w.data, bias, "ternary_conv2d_f32_")) return;
  const float32::Kernels* k = &float32::best();
  s.info.kernel = "conv2d_f32_" + k->name;
  const std::vector<float> wdata = w.data;
  s.info.parameter_bytes = static_cast<int64_t>((wdata.size() + bias.size()) * sizeof(float));
  s.clamp = std::make_shared<float32::Clamp>();
  split_step(
      s,
      [k, shape, group, wdata, bias, clamp = s.clamp](const std::vector<const float*>& xs, float* y,
                                                      int64_t count, int64_t p, int64_t parts) {
        const int64_t per_in = shape.c * shape.h * shape.w, per_out = shape.m * shape.oh * shape.ow;
        const int64_t cg = shape.c / group, taps = cg * shape.kh * shape.kw;
        for (int64_t b = 0; b < count / per_out; ++b)
          float_conv_part(shape, group, p, parts,
                          [&](int64_t c0, int64_t o0, const binary::ConvShape& sub,
                              int64_t sub_group, int64_t r0, int64_t r1) {
                            k->conv(xs[0] + b * per_in + c0 * shape.h * shape.w,
                                    wdata.data() + o0 * taps, bias.data() + o0, sub, sub_group,
                                    *clamp, r0, r1, y + b * per_out + o0 * shape.oh * shape.ow);
                          });
      },
      m * oh * ow * cg * kh * kw);
}

void Program::gemm(std::vector<const Value*>& in, const Attrs& a, Value& out, Step& s,
                   const std::string& where) {
  if (in.size() < 2 || in.size() > 3 || !in[0] || !in[1])
    bad(where, "takes A, B and an optional C");
  const Value& x = *in[0];
  if (x.constant || x.dims.size() != 2) bad(where, "A must be a [batch, features] activation");
  if (!in[1]->constant || in[1]->dims.size() != 2) bad(where, "B must be a 2-D constant");
  if (a.i("transA", 0) != 0)
    bad(where, "only transA = 0 is supported (transA 1 puts the batch in A's second dimension)");
  // Y = alpha A B + beta C: alpha folded into B's rows, beta into C (exact for powers of 2, one
  // rounding each otherwise).
  const float alpha = a.f("alpha", 1.0f), beta = a.f("beta", 1.0f);
  const bool tb = a.i("transB", 0) != 0;
  const int64_t k = x.dims[1];
  const Value& w = *in[1];
  const int64_t wk = tb ? w.dims[1] : w.dims[0], m = tb ? w.dims[0] : w.dims[1];
  if (wk != k) bad(where, "B " + dims_str(w.dims) + " does not match A " + dims_str(x.dims));
  std::vector<float> bias(m, 0.0f);
  if (in.size() == 3 && in[2]) {
    if (!in[2]->constant ||
        (in[2]->data.size() != static_cast<size_t>(m) && in[2]->data.size() != 1))
      bad(where, "C must be a constant of " + std::to_string(m) + " values");
    for (int64_t o = 0; o < m; ++o)
      bias[o] = beta * (in[2]->data.size() == 1 ? in[2]->data[0] : in[2]->data[o]);
  }
  // Rows of the weight for each output, whatever transB says.
  std::vector<float> rows(m * k);
  for (int64_t o = 0; o < m; ++o) {
    for (int64_t i = 0; i < k; ++i)
      rows[o * k + i] = alpha * (tb ? w.data[o * k + i] : w.data[i * m + o]);
  }
  out.dims = {1, m};
  in.resize(1);
  std::vector<float> scale;
  binary::ConvShape shape;  // a 1x1 convolution of a 1x1 image
  shape.c = k, shape.h = shape.w = 1, shape.m = m, shape.kh = shape.kw = 1;
  shape.oh = shape.ow = 1;
  if (x.packed) {
    // Bits in channels-last order: the dense layer is the convolution of the [C, H, W] input
    // by a kernel [m, C, H, W], which is what the rows hold.
    if (!binary_scales(rows, m, scale)) bad(where, "internal: a packed input of float weights");
    const auto& chw = x.packed_chw;
    shape.c = chw[0], shape.h = shape.kh = chw[1], shape.w = shape.kw = chw[2];
    binary_conv(s, shape, rows, scale, bias, true, "binary_gemm_");
    return;
  }
  if (x.planes) {  // as for packed bits: the convolution by a kernel as large as the image
    if (!binary_scales(rows, m, scale)) bad(where, "internal: bit planes of float weights");
    const auto& chw = x.packed_chw;
    shape.c = chw[0], shape.h = shape.kh = chw[1], shape.w = shape.kw = chw[2];
    planes_conv(s, shape, x, x.planes, rows, scale, bias, "bitplane_gemm_");
    return;
  }
  if (const int bits = planes_bits(x); bits > 0 && binary_scales(rows, m, scale)) {
    planes_conv(s, shape, x, bits, rows, scale, bias, "bitplane_gemm_");
    return;
  }
  if (!x.codes && x.bipolar && binary_scales(rows, m, scale)) {
    binary_conv(s, shape, rows, scale, bias, false, "binary_gemm_");
    return;
  }
  // Per-channel weight scales apply to rows only where B holds them (transB).
  const Grid wg = weight_grid(rows, m, tb || w.grid.scale.size() == 1 ? w.grid : Grid());
  if (int8_conv(s, shape, x.grid, x.codes, rows, wg, bias, "int8_gemm_")) return;
  if (ternary_dense(s, k, m, rows, bias)) return;
  const float32::Kernels* kern = &float32::best();
  s.info.kernel = "gemm_f32_" + kern->name;
  s.info.parameter_bytes = static_cast<int64_t>((rows.size() + bias.size()) * sizeof(float));
  std::vector<float> wt(k * m);  // the kernel's layout: transposed
  for (int64_t o = 0; o < m; ++o)
    for (int64_t i = 0; i < k; ++i) wt[i * m + o] = rows[o * k + i];
  s.clamp = std::make_shared<float32::Clamp>();
  split_step(
      s,
      [kern, wt, bias, k, m, clamp = s.clamp](const std::vector<const float*>& xs, float* y,
                                              int64_t count, int64_t p, int64_t parts) {
        const int64_t o0 = m * p / parts, o1 = m * (p + 1) / parts;
        if (o0 == o1) return;
        for (int64_t b = 0; b < count / m; ++b)
          kern->dense(xs[0] + b * k, wt.data() + o0, m, bias.data() + o0, k, o1 - o0, *clamp,
                      y + b * m + o0);
      },
      k * m);
}

namespace {

void lower_conv(Node& d) {
  d.p.conv(d.in, d.a, d.out, d.s, d.where);
  // A convolution or dense layer on codes that did not take the 8-bit kernels reads floats.
  if (d.in[0] && d.in[0]->codes && !d.s.int8)
    decode_input(d.s, *d.in[0], d.out.storage_per_image());
}

void lower_gemm(Node& d) {
  d.p.gemm(d.in, d.a, d.out, d.s, d.where);
  // A convolution or dense layer on codes that did not take the 8-bit kernels reads floats.
  if (d.in[0] && d.in[0]->codes && !d.s.int8)
    decode_input(d.s, *d.in[0], d.out.storage_per_image());
}

// ConvTranspose (float): each input value scattered through the kernel into the output, plus the
// bias; groups, strides, pads, dilations and output_padding.
void lower_conv_transpose(Node& d) {
  d.arity(2, 3);
  const Value& x = *d.in[0];
  const Value& w = d.constant(1, "W");
  if (x.constant || x.dims.size() != 4) bad(d.where, "X must be a 4-D activation");
  if (w.dims.size() != 4) bad(d.where, "W must be a 4-D constant");
  if (d.a.s("auto_pad", "NOTSET") != "NOTSET" || d.a.map.count("output_shape"))
    bad(d.where, "auto_pad and output_shape are not supported (give pads)");
  const int64_t group = d.a.i("group", 1), c = x.dims[1], h = x.dims[2], wd = x.dims[3];
  if (group < 1 || c % group != 0 || w.dims[0] != c)
    bad(d.where, "W " + dims_str(w.dims) + " does not match X " + dims_str(x.dims) +
                     " with group " + std::to_string(group));
  const int64_t mg = w.dims[1], m = mg * group, kh = w.dims[2], kw = w.dims[3], cg = c / group;
  const auto ks = d.a.ints("kernel_shape", {kh, kw});
  if (ks != std::vector<int64_t>{kh, kw}) bad(d.where, "kernel_shape does not match W");
  const Window win = window(d.a, d.where, {h, wd}, {kh, kw});
  const auto op = d.a.ints("output_padding", {0, 0});
  if (op.size() != 2 || op[0] < 0 || op[1] < 0 ||
      op[0] >= std::max(win.strides[0], win.dilations[0]) ||
      op[1] >= std::max(win.strides[1], win.dilations[1]))
    bad(d.where, "output_padding must have 2 values below the strides or dilations");
  const int64_t sh = win.strides[0], sw = win.strides[1], dh = win.dilations[0],
                dw = win.dilations[1], pt = win.pads[0], pl = win.pads[1];
  const int64_t oh = sh * (h - 1) + op[0] + (kh - 1) * dh + 1 - pt - win.pads[2];
  const int64_t ow = sw * (wd - 1) + op[1] + (kw - 1) * dw + 1 - pl - win.pads[3];
  if (oh < 1 || ow < 1) bad(d.where, "the output would be empty");
  checked_mul(m * oh, ow, d.p.limits.max_tensor_elements, d.where, "the output");
  std::vector<float> bias(m, 0.0f);
  if (d.in.size() == 3 && d.in[2]) {
    bias = d.constant(2, "B").data;
    if (static_cast<int64_t>(bias.size()) != m)
      bad(d.where, "B must hold " + std::to_string(m) + " values");
  }
  d.out.dims = {1, m, oh, ow};
  const std::vector<float> k = w.data;
  d.s.info.kernel = "conv_transpose_f32";
  d.s.info.parameter_bytes = static_cast<int64_t>((k.size() + bias.size()) * sizeof(float));
  d.s.run = [=](const std::vector<const float*>& xs, float* y, int64_t count) {
    const int64_t per_out = m * oh * ow, per_in = c * h * wd;
    for (int64_t b = 0; b < count / per_out; ++b) {
      const float* xb = xs[0] + b * per_in;
      float* yb = y + b * per_out;
      for (int64_t o = 0; o < m; ++o) std::fill(yb + o * oh * ow, yb + (o + 1) * oh * ow, bias[o]);
      for (int64_t ch = 0; ch < c; ++ch) {
        const int64_t g = ch / cg;
        for (int64_t r = 0; r < h; ++r)
          for (int64_t q = 0; q < wd; ++q) {
            const float v = xb[(ch * h + r) * wd + q];
            for (int64_t ol = 0; ol < mg; ++ol) {
              const float* kk = k.data() + ((ch * mg + ol) * kh) * kw;
              float* yo = yb + (g * mg + ol) * oh * ow;
              for (int64_t i = 0; i < kh; ++i) {
                const int64_t yy = r * sh - pt + i * dh;
                if (yy < 0 || yy >= oh) continue;
                for (int64_t j = 0; j < kw; ++j) {
                  const int64_t xx = q * sw - pl + j * dw;
                  if (xx >= 0 && xx < ow) yo[yy * ow + xx] += v * kk[i * kw + j];
                }
              }
            }
          }
      }
    }
  };
  d.in.resize(1);
}

// MatMul of an activation [batch, ..., K] by a constant [K, N]: a rank-2 activation is a Gemm (and
// gets its binary, bit-plane and 8-bit kernels), a larger one multiplies each row of each image.
void lower_matmul(Node& d) {
  d.arity(2, 2);
  const Value& x = *d.in[0];
  const Value& w = d.constant(1, "B");
  if (x.constant) bad(d.where, "A must be an activation (a constant A is not supported)");
  if (w.dims.size() != 2) bad(d.where, "B must be a 2-D constant");
  if (x.dims.size() < 2 || x.dims.back() != w.dims[0])
    bad(d.where, "B " + dims_str(w.dims) + " does not match A " + dims_str(x.dims));
  if (x.dims.size() == 2) {
    Attrs defaults;
    defaults.where = d.where;
    d.p.gemm(d.in, defaults, d.out, d.s, d.where);
    if (d.in[0]->codes && !d.s.int8) decode_input(d.s, *d.in[0], d.out.storage_per_image());
    return;
  }
  const int64_t k = w.dims[0], n = w.dims[1];
  d.out.dims = x.dims;
  d.out.dims.back() = n;
  const std::vector<float> b = w.data;
  d.s.info.kernel = "matmul_f32";
  d.s.info.parameter_bytes = static_cast<int64_t>(b.size() * sizeof(float));
  d.s.run = [b, k, n](const std::vector<const float*>& xs, float* y, int64_t count) {
    for (int64_t r = 0; r < count / n; ++r) {
      const float* a = xs[0] + r * k;
      float* yr = y + r * n;
      for (int64_t j = 0; j < n; ++j) yr[j] = 0;
      for (int64_t i = 0; i < k; ++i)
        for (int64_t j = 0; j < n; ++j) yr[j] += a[i] * b[i * n + j];
    }
  };
  d.in.resize(1);
}

}  // namespace

const std::vector<OpLowering>& conv_ops() {
  static const std::vector<OpLowering> ops = {
      {"Conv", lower_conv},
      {"Gemm", lower_gemm},
      {"MatMul", lower_matmul},
      {"ConvTranspose", lower_conv_transpose},
  };
  return ops;
}

}  // namespace detail
}  // namespace engine
}  // namespace lowbit
