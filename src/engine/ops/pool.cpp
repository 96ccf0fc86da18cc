// MaxPool of floats, packed bits (AND) and 8-bit codes.
#include <algorithm>
#include <limits>

#include "../lower.h"
#include "lowbit/engine/kernels/binary.h"

namespace lowbit {
namespace engine {
namespace detail {

void Program::max_pool(std::vector<const Value*>& in, const Attrs& a, Value& out, Step& s,
                       const std::string& where) {
  if (in.size() != 1 || !in[0] || in[0]->constant || in[0]->dims.size() != 4)
    bad(where, "X must be a 4-D activation");
  const auto& d = in[0]->dims;
  const auto ks = a.ints("kernel_shape", {});
  const Window win = window(a, where);
  const std::vector<int64_t>&st = win.strides, &pd = win.pads, &dl = win.dilations;
  if (ks.size() != 2) bad(where, "kernel_shape must have 2 values");
  for (int64_t v : ks)
    if (v < 1 || v > 1024) bad(where, "kernel_shape must be in [1, 1024]");

  if (a.i("storage_order", 0) != 0 || a.s("auto_pad", "NOTSET") != "NOTSET")
    bad(where, "storage_order and auto_pad are not supported");
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
  s.info.kernel = "maxpool_f32";
  const int64_t kh = ks[0], kw = ks[1], sh = st[0], sw = st[1], ph = pd[0], pw = pd[1], dh = dl[0],
                dw = dl[1];
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
    s.info.kernel = "maxpool_codes";
    const int64_t stored_in = 4 * ((c * h * w + 3) / 4), stored_out = (c * oh * ow + 3) / 4;
    s.run = [=](const std::vector<const float*>& xs, float* y, int64_t count) {
      for (int64_t b = 0; b < count / stored_out; ++b) {
        const uint8_t* x = reinterpret_cast<const uint8_t*>(xs[0]) + b * stored_in;
        uint8_t* o = reinterpret_cast<uint8_t*>(y) + b * 4 * stored_out;
        for (int64_t ch = 0; ch < c; ++ch)
          for (int64_t r = 0; r < oh; ++r)
            for (int64_t q = 0; q < ow; ++q) {
              uint8_t best = 0;
              for (int64_t i = 0; i < kh; ++i)
                for (int64_t j = 0; j < kw; ++j)
                  best = std::max(best, x[(ch * h + r * sh + i) * w + q * sw + j]);
              o[(ch * oh + r) * ow + q] = best;
            }
      }
    };
    return;
  }
  // Every window inside the input: no bounds checks (the recipes' 2x2 pools).
  const bool inside = ph == 0 && pw == 0 && pd[2] == 0 && pd[3] == 0 && !ceil_mode;
  s.run = [=](const std::vector<const float*>& xs, float* y, int64_t count) {
    const int64_t planes = count / (oh * ow);
    auto take = [](float& best, float v) {  // NaN propagates, as in LibTorch
      best = (v > best || v != v) ? v : best;
    };
    for (int64_t p = 0; p < planes; ++p) {
      const float* xp = xs[0] + p * h * w;
      if (inside) {
        for (int64_t r = 0; r < oh; ++r) {
          for (int64_t q = 0; q < ow; ++q) {
            float best = -std::numeric_limits<float>::infinity();
            const float* x0 = xp + (r * sh) * w + q * sw;
            for (int64_t i = 0; i < kh; ++i)
              for (int64_t j = 0; j < kw; ++j) take(best, x0[i * dh * w + j * dw]);
            y[(p * oh + r) * ow + q] = best;
          }
        }
        continue;
      }
      for (int64_t r = 0; r < oh; ++r) {
        for (int64_t q = 0; q < ow; ++q) {
          float best = -std::numeric_limits<float>::infinity();
          for (int64_t i = 0; i < kh; ++i) {
            const int64_t yy = r * sh - ph + i * dh;
            if (yy < 0 || yy >= h) continue;
            for (int64_t j = 0; j < kw; ++j) {
              const int64_t xx = q * sw - pw + j * dw;
              if (xx < 0 || xx >= w) continue;
              take(best, xp[yy * w + xx]);
            }
          }
          y[(p * oh + r) * ow + q] = best;
        }
      }
    }
  };
}

namespace {

void lower_max_pool(Node& d) { d.p.max_pool(d.in, d.a, d.out, d.s, d.where); }

}  // namespace

const std::vector<OpLowering>& pool_ops() {
  static const std::vector<OpLowering> ops = {
      {"MaxPool", lower_max_pool},
  };
  return ops;
}

}  // namespace detail
}  // namespace engine
}  // namespace lowbit
