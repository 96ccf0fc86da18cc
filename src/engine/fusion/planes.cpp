// Bit planes between layers: a bit-plane layer's chain ending in Quant writes its codes as planes.
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "chains.h"

namespace lowbit {
namespace engine {
namespace detail {

// Whether node n reads its input i as bit planes: bit-plane convolutions and dense layers
// (binary weights), Flatten, and Mul / Div by a positive scalar (recorded, applied when decoded).
bool Program::reads_planes(const onnx::NodeProto& n, int i) const {
  if (i != 0) return false;
  if (n.op_type() == "Mul" || n.op_type() == "Div") return planes_scalar(n);
  const Attrs a = attrs_of(n);
  return flattens(n, a) || binary_layer(n, a);
}

// Mul or Div of a bit-plane value (input 0) by a positive finite scalar constant.
bool Program::planes_scalar(const onnx::NodeProto& n) const {
  if (n.input_size() != 2 || !ids.count(n.input(0)) || !ids.count(n.input(1))) return false;
  const Value &x = values[ids.at(n.input(0))], &c = values[ids.at(n.input(1))];
  return x.planes && c.constant && c.data.size() == 1 && c.data[0] > 0 && std::isfinite(c.data[0]);
}

void Program::planes_scaled(std::vector<const Value*>& in, Value& out, Step& s, char kind) {
  const Value& x = *in[0];
  out.dims = x.dims, out.planes = x.planes, out.planes_scale = x.planes_scale;
  out.packed_chw = x.packed_chw;
  out.planes_post = x.planes_post;
  out.planes_post.emplace_back(kind, in[1]->data[0]);
  scale_grid(in, out, kind == '/');
  copy_step(s);
  in.resize(1);
}

// Plans a step that turns bit-plane value `name` into the floats the graph computes for it.
void Program::decode_planes(const std::string& name) {
  const Value& p = values[ids.at(name)];
  Value f;
  f.dims = p.dims;
  f.grid = p.grid;
  const std::vector<int64_t> chw = p.packed_chw;
  const int bits = p.planes;
  const float scale = p.planes_scale;
  const auto post = p.planes_post;
  convert(
      name, std::move(f), "decode_planes",
      [chw, bits, scale, post](const std::vector<const float*>& xs, float* y, int64_t count) {
        const int64_t c = chw[0], plane = chw[1] * chw[2], cw = binary::words(c);
        const int64_t stored = planes::image_words(bits, c, chw[1], chw[2]);
        for (int64_t b = 0; b < count / (c * plane); ++b) {
          const uint64_t* in = reinterpret_cast<const uint64_t*>(xs[0]) + b * stored;
          float* yb = y + b * c * plane;
          for (int64_t ch = 0; ch < c; ++ch)
            for (int64_t q = 0; q < plane; ++q) {
              unsigned code = 0;
              for (int k = 0; k < bits; ++k)
                code |=
                    static_cast<unsigned>((in[(q * bits + k) * cw + (ch >> 6)] >> (ch & 63)) & 1)
                    << k;
              float v = (static_cast<float>(code) - 0.0f) * scale;  // Quant's, zero 0
              for (const auto& op : post) v = op.first == '*' ? v * op.second : v / op.second;
              yb[ch * plane + q] = v;
            }
        }
      });
}

namespace {

// Per channel: code = base + #{j : dir * n >= t[j]} (t ascending, unused entries INT32_MAX) for
// the layer's sum n, pooled first (the largest n, or the smallest) where the chain pools.
struct CodeTable {
  int levels = 0;
  std::vector<int32_t> t, base, dir;
  std::vector<uint8_t> largest;
};

}  // namespace

// Fuses a bit-plane layer's chain ending in Quant (scale s, zero 0, codes 0 .. hi <= 15) into the
// layer's step, which then writes the Quant's codes as planes. As for binary chains, the chain's
// own float operations are evaluated at every possible sum, so the table of thresholds gives the
// float graph's codes exactly; false where a value of the chain is read elsewhere, or its codes
// are not a monotone function of the sum.
bool Program::fuse_planes(const SumChain& chain, float qscale, float qhi, int rounding,
                          size_t& into) {
  if (!read_once(chain)) return false;
  Step& conv = steps[chain.conv_step];
  const std::shared_ptr<const PlanesLayer> layer = conv.planes;
  const PlanesLayer& l = *layer;
  const int64_t m = l.shape.m;
  const int64_t k = ((int64_t{1} << l.bits) - 1) * l.shape.kh * l.shape.kw * l.shape.c;
  if (k > (int64_t{1} << 22) || m * (2 * k + 1) > (int64_t{1} << 26)) return false;
  if (!spend(m * (2 * k + 1))) return false;
  auto table = std::make_shared<CodeTable>();
  const int levels = static_cast<int>(qhi);
  table->levels = levels;
  table->t.assign(m * levels, std::numeric_limits<int32_t>::max());
  table->base.resize(m), table->dir.resize(m), table->largest.resize(m);
  std::vector<float> pre(2 * k + 1);
  std::vector<int> code(2 * k + 1);
  for (int64_t o = 0; o < m; ++o) {
    bool up = true, down = true;
    // The layer's value as int8's dequantize computes it, then the chain's steps before the pool.
    if (!values_before_pool(
            chain, o, k,
            [&](int64_t n) {
              return static_cast<float>(static_cast<double>(n) * l.scale[o] + l.bias[o]);
            },
            pre, up, down))
      return false;
    bool rising = true, falling = true;
    for (int64_t n = -k; n <= k; ++n) {
      float u = apply_ops(chain.after_pool, o, pre[n + k]) / qscale;
      if (u != u) return false;
      u = u > qhi ? qhi : (u < 0 ? 0.0f : u);
      code[n + k] = static_cast<int>(round_mode(u, rounding));
      if (n > -k) {
        rising = rising && code[n + k] >= code[n + k - 1];
        falling = falling && code[n + k] <= code[n + k - 1];
      }
    }
    if (!rising && !falling) return false;
    // Thresholds on n' = dir * n, along which the codes rise.
    const int dir = rising ? 1 : -1;
    const int first = rising ? code[0] : code[2 * k];
    int32_t* t = table->t.data() + o * levels;
    int j = 0;
    for (int64_t i = 0; i <= 2 * k; ++i) {
      const int64_t n = dir > 0 ? i - k : k - i;  // n' ascending
      const int c = code[n + k];
      while (first + j < c) t[j++] = static_cast<int32_t>(dir * n);
    }
    table->base[o] = first, table->dir[o] = dir, table->largest[o] = up ? 1 : 0;
  }
  const int out_bits = levels <= 1 ? 1 : levels <= 3 ? 2 : levels <= 7 ? 3 : 4;
  const int64_t ph = chain.chw[1], pw = chain.chw[2];
  const bool pooled = chain.pooled;
  const int64_t pkh = chain.pool_kh, pkw = chain.pool_kw, psh = chain.pool_sh, psw = chain.pool_sw;
  // Part p of `parts`: a slice of the (pooled) output rows, from the layer's sums of the rows
  // their windows read; the planes are channels last, so the slice's words are contiguous.
  const int64_t stored = planes::image_words(out_bits, m, ph, pw);
  split_step(
      conv,
      [layer, table, out_bits, ph, pw, pooled, pkh, pkw, psh, psw, stored](
          const std::vector<const float*>& xs, float* y, int64_t count, int64_t p, int64_t parts) {
        const PlanesLayer& l = *layer;
        const int64_t m = l.shape.m, ow = l.shape.ow;
        const int64_t r0 = ph * p / parts, r1 = ph * (p + 1) / parts, rows = r1 - r0;
        if (rows == 0) return;
        // The layer's rows the slice reads: [c0, c1).
        const int64_t c0 = pooled ? r0 * psh : r0;
        const int64_t c1 = pooled ? std::min(l.shape.oh, (r1 - 1) * psh + pkh) : r1;
        const int levels = table->levels;
        thread_local std::vector<uint8_t> codes;
        codes.resize(m * rows * pw);
        for (int64_t b = 0; b < count / (2 * stored); ++b) {
          const int32_t* n = l.sums(xs[0], b, c0, c1);
          // The codes per channel, then packed as planes for the next layer.
          for (int64_t o = 0; o < m; ++o) {
            const int32_t* no = n + o * (c1 - c0) * ow;
            const int32_t* t = table->t.data() + o * levels;
            const int64_t dir = table->dir[o];
            const bool largest = table->largest[o] != 0;
            uint8_t* co = codes.data() + o * rows * pw;
            for (int64_t r = 0; r < rows; ++r)
              for (int64_t q = 0; q < pw; ++q) {
                int64_t v = no[r * ow + q];
                if (pooled) {
                  v = no[(r * psh) * ow + q * psw];
                  for (int64_t i = 0; i < pkh; ++i)
                    for (int64_t j = 0; j < pkw; ++j) {
                      const int64_t e = no[(r * psh + i) * ow + q * psw + j];
                      v = largest ? std::max(v, e) : std::min(v, e);
                    }
                }
                v *= dir;
                int c = table->base[o];
                for (int j = 0; j < levels; ++j) c += v >= t[j] ? 1 : 0;
                co[r * pw + q] = static_cast<uint8_t>(c);
              }
          }
          planes::pack_codes(
              codes.data(), out_bits, m, rows, pw,
              reinterpret_cast<uint64_t*>(y) + b * stored + r0 * pw * out_bits * binary::words(m));
        }
      },
      m * l.shape.oh * l.shape.ow * l.shape.c * l.shape.kh * l.shape.kw);
  conv.info.kernel += pooled ? "+maxpool+threshold" : "+threshold";
  conv.info.parameter_bytes += m * static_cast<int64_t>((levels + 2) * sizeof(int32_t) + 1);
  return fused(chain, into);
}

}  // namespace detail
}  // namespace engine
}  // namespace lowbit
