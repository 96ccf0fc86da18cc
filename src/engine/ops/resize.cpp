// Resize of images (opset 11 on): nearest and linear (bilinear) modes over the height and width of
// [N, C, H, W], scales or sizes constant, the coordinate transformations and nearest modes ONNX
// defines, computed in float as onnxruntime does.
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>

#include "../lower.h"
#include "lowbit/engine/kernels/layout.h"

namespace lowbit {
namespace engine {
namespace detail {
namespace {

// The input coordinate of output coordinate o along an axis of in -> out values at `scale`.
float source(const std::string& mode, int64_t o, int64_t in, int64_t out, float scale) {
  const float x = static_cast<float>(o);
  if (mode == "asymmetric") return x / scale;
  if (mode == "align_corners")
    return out == 1 ? 0.0f : x * static_cast<float>(in - 1) / static_cast<float>(out - 1);
  if (mode == "pytorch_half_pixel") return out > 1 ? (x + 0.5f) / scale - 0.5f : 0.0f;
  return (x + 0.5f) / scale - 0.5f;  // half_pixel
}

int64_t nearest(const std::string& mode, float x, int64_t in) {
  float r;
  if (mode == "floor") {
    r = std::floor(x);
  } else if (mode == "ceil") {
    r = std::ceil(x);
  } else if (x - std::floor(x) == 0.5f) {
    r = mode == "round_prefer_ceil" ? std::ceil(x) : std::floor(x);
  } else {
    r = std::round(x);
  }
  return static_cast<int64_t>(std::min(std::max(r, 0.0f), static_cast<float>(in - 1)));
}

void lower_resize(Node& d) {
  if (d.p.opset < 11) bad(d.where, "Resize before opset 11 is not supported");
  d.arity(1, 4);
  const Value& x = *d.in[0];
  if (x.constant || x.dims.size() != 4) bad(d.where, "X must be a 4-D activation");
  const std::string mode = d.a.s("mode", "nearest");
  const std::string coords = d.a.s("coordinate_transformation_mode", "half_pixel");
  const std::string near = d.a.s("nearest_mode", "round_prefer_floor");
  if (mode != "nearest" && mode != "linear")
    bad(d.where, "mode " + mode + " is not supported (nearest, linear)");
  if (coords != "half_pixel" && coords != "asymmetric" && coords != "align_corners" &&
      coords != "pytorch_half_pixel")
    bad(d.where, "coordinate_transformation_mode " + coords + " is not supported");
  if (near != "round_prefer_floor" && near != "round_prefer_ceil" && near != "floor" &&
      near != "ceil")
    bad(d.where, "nearest_mode " + near + " is not supported");
  if (d.a.i("antialias", 0) != 0 || d.a.map.count("axes") ||
      d.a.s("keep_aspect_ratio_policy", "stretch") != "stretch")
    bad(d.where, "antialias, axes and keep_aspect_ratio_policy are not supported");
  const int64_t h = x.dims[2], w = x.dims[3];
  float scale_h = 0, scale_w = 0;
  int64_t oh = 0, ow = 0;
  const Value* scales = d.in.size() > 2 && d.in[2] && !d.in[2]->data.empty() ? d.in[2] : nullptr;
  const Value* sizes = d.in.size() > 3 && d.in[3] && !d.in[3]->data.empty() ? d.in[3] : nullptr;
  if ((scales == nullptr) == (sizes == nullptr)) bad(d.where, "give either scales or sizes");
  if (scales) {
    const auto& v = d.constant(2, "scales").data;
    if (v.size() != 4 || v[0] != 1 || v[1] != 1 || !(v[2] > 0) || !(v[3] > 0) ||
        !std::isfinite(v[2]) || !std::isfinite(v[3]))
      bad(d.where, "scales must be 4 values [1, 1, height, width], positive and finite");
    scale_h = v[2], scale_w = v[3];
    const float fh = std::floor(static_cast<float>(h) * scale_h);
    const float fw = std::floor(static_cast<float>(w) * scale_w);
    if (!(fh >= 1 && fh <= 65536 && fw >= 1 && fw <= 65536))
      bad(d.where, "the output size is out of range (1 to 65536 rows and columns)");
    oh = static_cast<int64_t>(fh), ow = static_cast<int64_t>(fw);
  } else {
    const auto& v = d.constant(3, "sizes").data;
    if (v.size() != 4 || !(v[0] >= 1) || v[1] != x.dims[1] || !(v[2] >= 1) || !(v[3] >= 1) ||
        v[2] > 65536 || v[3] > 65536)
      bad(d.where,
          "sizes must be 4 values [batch, channels, height, width] changing only the "
          "height and width");
    oh = static_cast<int64_t>(v[2]), ow = static_cast<int64_t>(v[3]);
    scale_h = static_cast<float>(oh) / static_cast<float>(h);
    scale_w = static_cast<float>(ow) / static_cast<float>(w);
  }
  if (oh < 1 || ow < 1 || oh > 65536 || ow > 65536) bad(d.where, "the output size is out of range");
  checked_mul(x.dims[1] * oh, ow, d.p.limits.max_tensor_elements, d.where, "the output");
  d.out.dims = {1, x.dims[1], oh, ow};
  // Per output row and column: the source indices and, for linear, the weight of the second.
  std::vector<int64_t> r0(oh), r1(oh), c0(ow), c1(ow);
  std::vector<float> fr(oh), fc(ow);
  auto axis = [&](int64_t in, int64_t out, float scale, std::vector<int64_t>& i0,
                  std::vector<int64_t>& i1, std::vector<float>& f) {
    for (int64_t o = 0; o < out; ++o) {
      const float s = source(coords, o, in, out, scale);
      if (mode == "nearest") {
        i0[o] = i1[o] = nearest(near, s, in);
        f[o] = 0;
      } else {
        const float c = std::min(std::max(s, 0.0f), static_cast<float>(in - 1));
        i0[o] = static_cast<int64_t>(c);
        i1[o] = std::min(i0[o] + 1, in - 1);
        f[o] = c - static_cast<float>(i0[o]);
      }
    }
  };
  axis(h, oh, scale_h, r0, r1, fr);
  axis(w, ow, scale_w, c0, c1, fc);
  // Plane by plane, layout.h's kernels, split across threads by planes.
  const bool linear = mode == "linear";
  const layout::Kernels* k = &layout::best();
  d.s.info.kernel = (linear ? "resize_linear_f32_" : "resize_nearest_f32_") + k->name;
  d.s.info.parameter_bytes =
      static_cast<int64_t>((oh + ow) * (2 * sizeof(int64_t) + sizeof(float)));
  split_step(
      d.s,
      [=](const std::vector<const float*>& xs, float* y, int64_t count, int64_t p, int64_t parts) {
        const int64_t planes = count / (oh * ow);
        for (int64_t pl = planes * p / parts; pl < planes * (p + 1) / parts; ++pl) {
          const float* xp = xs[0] + pl * h * w;
          float* yp = y + pl * oh * ow;
          if (linear) {
            k->linear(xp, w, r0.data(), r1.data(), fr.data(), oh, c0.data(), c1.data(), fc.data(),
                      ow, yp);
          } else {
            k->nearest(xp, w, r0.data(), oh, c0.data(), ow, yp);
          }
        }
      },
      x.dims[1] * oh * ow * (linear ? 6 : 1));
  d.in.resize(1);
}

}  // namespace

const std::vector<OpLowering>& resize_ops() {
  static const std::vector<OpLowering> ops = {{"Resize", lower_resize}};
  return ops;
}

}  // namespace detail
}  // namespace engine
}  // namespace lowbit
