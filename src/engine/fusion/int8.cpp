// 8-bit codes between layers: an 8-bit layer's chain ending in Quant writes the codes.
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "chains.h"

namespace lowbit {
namespace engine {
namespace detail {

// Whether node n reads its input i as codes (Value::codes): 8-bit convolutions and dense layers
// (which decode where they take another kernel), Flatten, and max-pools without padding.
bool Program::reads_codes(const onnx::NodeProto& n, int i) const {
  if (i != 0) return false;
  const std::string& op = n.op_type();
  if (op == "Conv" || op == "Gemm") return true;
  if (op == "DequantizeLinear") return dequantizes_codes(n);
  const Attrs a = attrs_of(n);
  return flattens(n, a) || pools_unpadded(n, a);
}

bool Program::dequantizes_codes(const onnx::NodeProto& n) const {
  if (n.op_type() != "DequantizeLinear" || n.input_size() < 2 || !ids.count(n.input(0)))
    return false;
  const Value& x = values[ids.at(n.input(0))];
  const Value* sc = constant_input(n, 1);
  const Value* zp = constant_input(n, 2);
  return x.codes && x.grid.scale.size() == 1 && x.grid.scale[0] == 1.0f && x.grid.zero == 0 && sc &&
         sc->data.size() == 1 && sc->data[0] > 0 && std::isfinite(sc->data[0]) &&
         (n.input_size() < 3 || n.input(2).empty() ||
          (zp && zp->data.size() == 1 && small_integer(zp->data[0])));
}

// The floats of codes: (code - zero) * scale, as Quant computes them.
void decode_codes(const uint8_t* codes, int64_t count, const Grid& g, float* y) {
  const float lo = static_cast<float>(g.lo), zero = static_cast<float>(g.zero), sc = g.scale[0];
  for (int64_t e = 0; e < count; ++e) y[e] = (static_cast<float>(codes[e]) + lo - zero) * sc;
}

// Plans a step that turns codes value `name` into floats and makes the name refer to them.
void Program::decode(const std::string& name) {
  const int codes_id = ids.at(name);
  Value f;
  f.dims = values[codes_id].dims;
  f.grid = values[codes_id].grid;
  const Grid g = f.grid;
  const int64_t per = f.per_image(), stored = 4 * ((per + 3) / 4);
  convert(name, std::move(f), "decode_codes",
          [g, per, stored](const std::vector<const float*>& xs, float* y, int64_t count) {
            const auto* in = reinterpret_cast<const uint8_t*>(xs[0]);
            for (int64_t b = 0; b < count / per; ++b)
              decode_codes(in + b * stored, per, g, y + b * per);
          });
}

// Makes step s, planned for a float input, read codes value x (out_storage: the floats of its
// output per image).
void decode_input(Step& s, const Value& x, int64_t out_storage) {
  const Grid g = x.grid;
  const int64_t per = x.per_image(), stored = 4 * ((per + 3) / 4);
  auto inner = s.run;
  s.part = nullptr;  // the wrapper runs whole
  s.info.kernel = "decode_codes+" + s.info.kernel;
  s.run = [inner, g, per, stored, out_storage](const std::vector<const float*>& xs, float* y,
                                               int64_t count) {
    const int64_t images = count / out_storage;
    thread_local std::vector<float> floats;  // the inner step does not use it
    floats.resize(images * per);
    const auto* in = reinterpret_cast<const uint8_t*>(xs[0]);
    for (int64_t b = 0; b < images; ++b)
      decode_codes(in + b * stored, per, g, floats.data() + b * per);
    std::vector<const float*> with = xs;
    with[0] = floats.data();
    inner(with, y, count);
  };
}

// Fuses an 8-bit layer's chain ending in Quant (scalar scale and zero point, codes in [lo, hi])
// into the layer's step, which then writes the Quant's codes (Value::codes) by the spec's integer
// step: clamp((sum + add) >> shift). Every function of the chain is nondecreasing (extend_chain
// admits no other), so the chain's codes are a nondecreasing function of the layer's integer sum
// n; its steps, found by bisection evaluating the chain's own float operations (as the unfused
// steps compute them), must lie 2^shift apart, which makes the shift exact for every n; false
// (no fusion) where they do not, or a value of the chain is read elsewhere.
namespace {

// An 8-bit layer's codes as thresholds on its sums: code = first[o] + #{j : n >= t[o][j]} over
// channel o's kSize thresholds (ascending, the unused ones INT64_MAX).
struct StepTable {
  static constexpr int64_t kSize = 256;
  std::vector<uint8_t> first;
  std::vector<int64_t> t;
};

}  // namespace

bool Program::fuse_int8(const SumChain& chain, float qscale, float qzero, float qlo, float qhi,
                        int rounding, const Grid& grid, size_t& into, bool linear) {
  if (!read_once(chain)) return false;
  if (!grid.on || grid.hi - grid.lo > 255 || !chain.after_pool.empty()) return false;
  Step& conv = steps[chain.conv_step];
  const std::shared_ptr<const Int8Layer> layer = conv.int8;
  const Int8Layer& l = *layer;
  const int64_t m = l.shape.m, levels = grid.hi - grid.lo, bound = l.sum_bound;
  // At most 256 bisections of 64 steps per channel: bounded work for any file.
  if (m > 4096 || !spend(m * (levels + 1) * 64)) return false;
  auto code = [&](int64_t o, int64_t n) {
    const float v = apply_ops(chain.before_pool, o,
                              static_cast<float>(static_cast<double>(n) * l.scale[o] + l.bias[o]));
    if (linear) {  // as the unfused QuantizeLinear
      const float u = std::min(std::max(std::nearbyint(v / qscale) + qzero, qlo), qhi);
      return static_cast<int64_t>(u) - grid.lo;
    }
    float u = v / qscale + qzero;
    u = u > qhi ? qhi : (u < qlo ? qlo : u);
    return static_cast<int64_t>(round_mode(u, rounding)) - grid.lo;  // the stored code
  };
  auto q = std::make_shared<Requantization>();
  q->add.resize(m), q->shift.resize(m), q->lo.resize(m), q->hi.resize(m);
  // Where the steps are not 2^k apart (affine scales): per channel, the first code and the sums
  // at which the code steps up (thresholds), searched per output.
  auto table = std::make_shared<StepTable>();
  table->first.resize(m);
  bool shifts = true;
  std::vector<int64_t> steps_at;
  for (int64_t o = 0; o < m; ++o) {
    if (!std::isfinite(l.bias[o]) || !(l.scale[o] > 0) || !std::isfinite(l.scale[o])) return false;
    const int64_t first = code(o, -bound), last = code(o, bound);
    if (first < 0 || last > levels || first > last) return false;
    // steps_at[j]: the least n whose code exceeds first + j.
    steps_at.clear();
    for (int64_t j = first + 1; j <= last; ++j) {
      int64_t below = -bound, at = bound;  // code(below) < j <= code(at)
      while (at - below > 1) {
        const int64_t mid = below + (at - below) / 2;
        (code(o, mid) >= j ? at : below) = mid;
      }
      steps_at.push_back(at);
    }
    table->first[o] = static_cast<uint8_t>(first);
    table->t.insert(table->t.end(), steps_at.begin(), steps_at.end());
    table->t.resize((o + 1) * StepTable::kSize, std::numeric_limits<int64_t>::max());
    int64_t step = 1;
    if (steps_at.size() > 1) step = steps_at[1] - steps_at[0];
    bool uniform = step >= 1 && (step & (step - 1)) == 0 && step <= (int64_t{1} << 30);
    for (size_t j = 1; uniform && j < steps_at.size(); ++j)
      uniform = steps_at[j] - steps_at[j - 1] == step;
    shifts = shifts && uniform;
    if (!uniform) continue;
    int k = 0;
    while ((int64_t{1} << k) < step) ++k;
    // code = first + 1 + floor((n - steps_at[0]) / 2^k) from steps_at[0] on, clamped; n is the
    // kernel's raw sum plus the layer's constant.
    const int64_t start = steps_at.empty() ? 0 : steps_at[0];
    q->add[o] = l.constant[o] + (first + 1) * step - start;
    q->shift[o] = k, q->lo[o] = static_cast<int32_t>(first), q->hi[o] = static_cast<int32_t>(last);
  }
  const int64_t plane = l.shape.oh * l.shape.ow, stored = (m * plane + 3) / 4;
  if (shifts) {
    // Part p of `parts`: a slice of the output rows.
    const Int8Layer* lp = layer.get();
    split_layer_rows<uint8_t, Int8Layer>(
        conv, layer, stored, [lp, q, m](const int32_t* sums, int64_t rows_plane, uint8_t* out) {
          lp->kernels->requantize(sums, m, rows_plane, q->add.data(), lp->zw, q->shift.data(),
                                  q->lo.data(), q->hi.data(), out);
        });
    conv.info.kernel += "+requantize";
    conv.info.parameter_bytes += m * static_cast<int64_t>(sizeof(int64_t) + 3 * sizeof(int32_t));
    return fused(chain, into);
  }
  const Int8Layer* lp = layer.get();
  if (!linear && levels <= 15 && bound < std::numeric_limits<int32_t>::max()) {
    // Codes of at most 4 bits (Brevitas's W4A4 and below, scales not powers of 2): the code is
    // first[o] plus the number of the channel's thresholds at or below n, counted threshold by
    // threshold over a row of sums in int32 (|n| <= the layer's bound; vectorized compares, no
    // dependent loads): faster than dequantizing, the chain's float steps and Quant.
    auto small = std::make_shared<std::vector<int32_t>>(m * levels);
    auto count = std::make_shared<std::vector<int32_t>>(m);
    for (int64_t o = 0; o < m; ++o) {
      const int64_t* t = table->t.data() + o * StepTable::kSize;
      int32_t k = 0;
      while (k < levels && t[k] != std::numeric_limits<int64_t>::max()) {
        (*small)[o * levels + k] = static_cast<int32_t>(t[k]);
        ++k;
      }
      (*count)[o] = k;
    }
    split_layer_rows<uint8_t, Int8Layer>(
        conv, layer, stored,
        [lp, table, small, count, m, levels](const int32_t* raw, int64_t plane, uint8_t* out) {
          thread_local std::vector<int32_t> n, c;  // sums and codes of one channel's row
          n.resize(plane), c.resize(plane);
          const int32_t* ones = raw + m * plane;  // the sums of the codes, where zw != 0
          const int32_t zw = static_cast<int32_t>(lp->zw);
          for (int64_t o = 0; o < m; ++o) {
            const int64_t add = lp->constant[o];
            const int32_t* ro = raw + o * plane;
            if (zw != 0) {  // the terms in int64, the corrected sum within the bound
              for (int64_t p = 0; p < plane; ++p)
                n[p] = static_cast<int32_t>(int64_t{ro[p]} + add - int64_t{zw} * ones[p]);
            } else {
              for (int64_t p = 0; p < plane; ++p) n[p] = static_cast<int32_t>(ro[p] + add);
            }
            std::fill(c.begin(), c.end(), int32_t{table->first[o]});
            const int32_t* t = small->data() + o * levels;
            for (int32_t j = 0; j < (*count)[o]; ++j) {
              const int32_t tj = t[j];
              for (int64_t p = 0; p < plane; ++p) c[p] += n[p] >= tj ? 1 : 0;
            }
            uint8_t* co = out + o * plane;
            for (int64_t p = 0; p < plane; ++p) co[p] = static_cast<uint8_t>(c[p]);
          }
        });
    conv.info.kernel += "+thresholds";
    conv.info.parameter_bytes += m * static_cast<int64_t>((levels + 1) * sizeof(int32_t) + 1);
    return fused(chain, into);
  }
  // The table's 8 dependent loads per output are slower than dequantizing and one float Quant
  // (measured on the tf-int8 recipe: 0.054 against 0.032 ms), faster than the standard format's
  // eight float steps (0.072 against 0.12 ms): tables for QuantizeLinear only.
  if (!linear) return false;
  split_layer_rows<uint8_t, Int8Layer>(
      conv, layer, stored, [lp, table, m](const int32_t* raw, int64_t plane, uint8_t* out) {
        for (int64_t o = 0; o < m; ++o) {
          const int64_t* t = table->t.data() + o * StepTable::kSize;
          for (int64_t p = 0; p < plane; ++p) {
            const int64_t n = raw[o * plane + p] + lp->constant[o] -
                              (lp->zw != 0 ? lp->zw * int64_t{raw[m * plane + p]} : 0);
            // The number of thresholds <= n, by a branchless binary search of 8 steps.
            int64_t at = 0;
            for (int64_t half = StepTable::kSize / 2; half > 0; half /= 2)
              at += t[at + half - 1] <= n ? half : 0;
            out[o * plane + p] = static_cast<uint8_t>(table->first[o] + at);
          }
        }
      });
  conv.info.kernel += "+thresholds";
  conv.info.parameter_bytes +=
      static_cast<int64_t>(table->t.size() * sizeof(int64_t) + m * (1 + sizeof(int64_t)));
  return fused(chain, into);
}

}  // namespace detail
}  // namespace engine
}  // namespace lowbit
