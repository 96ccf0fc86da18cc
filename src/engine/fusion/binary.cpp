// Bitpacked binary chains: ±1 activations stay bits between binary layers.
#include <onnx/onnx_pb.h>

#include "chains.h"

namespace lowbit {
namespace engine {
namespace detail {

// Whether node n reads its input i as packed bits: binary convolutions and dense layers, ±1
// padding, Flatten and max-pools without padding; every other reader gets floats.
bool Program::reads_packed(const onnx::NodeProto& n, int i,
                           const std::vector<int64_t>* dims) const {
  if (i != 0) return false;
  const Attrs a = attrs_of(n);
  const std::string& op = n.op_type();
  if (op == "Pad") {
    const Value* v = constant_input(n, 2);
    if (!dims) dims = &values[ids.at(n.input(0))].dims;
    return dims->size() == 4 && a.s("mode", "constant") == "constant" && v && v->data.size() == 1 &&
           (v->data[0] == 1.0f || v->data[0] == -1.0f);
  }
  return flattens(n, a) || binary_layer(n, a, dims) || pools_unpadded(n, a, dims);
}

bool Program::read_packed_everywhere(const std::string& name,
                                     const std::vector<int64_t>& dims) const {
  const auto r = readers.find(name);
  const auto u = uses.find(name);
  if (r == readers.end() || u == uses.end() || r->second.empty() ||
      u->second != static_cast<int>(r->second.size()))
    return false;  // unread, or a graph output
  for (const auto& [node, i] : r->second)
    if (!reads_packed(*node, i, &dims)) return false;
  return true;
}

void Program::pack_signs(Step& s, const Value& x, Value& out, bool condition) {
  const int64_t c = x.dims[1], h = x.dims[2], w = x.dims[3];
  out.packed = out.bipolar = true;
  out.packed_chw = {c, h, w};
  s.info.kernel = "pack_signs";
  s.info.parameter_bytes = 0;
  s.part = nullptr;
  s.macs = 0;
  const int64_t words = 2 * binary::words(c) * h * w;  // per image, in floats
  const binary::Kernels* k = &binary::best();
  s.info.kernel += "_" + k->name;
  const binary::Minus minus = condition ? binary::Minus::zero : binary::Minus::not_nonnegative;
  s.run = [c, h, w, words, minus, k](const std::vector<const float*>& xs, float* y, int64_t count) {
    for (int64_t b = 0; b < count / words; ++b)
      k->signs(xs[0] + b * c * h * w, c, h, w, minus, reinterpret_cast<uint64_t*>(y + b * words));
  };
}

// Plans a step that turns packed value `name` into floats ±1 and makes the name refer to them.
void Program::unpack(const std::string& name) {
  const int packed_id = ids.at(name);
  Value u;
  u.dims = values[packed_id].dims;
  u.bipolar = true;
  const std::vector<int64_t> chw = values[packed_id].packed_chw;
  convert(name, std::move(u), "unpack_bits",
          [chw](const std::vector<const float*>& xs, float* y, int64_t count) {
            const int64_t c = chw[0], plane = chw[1] * chw[2], cw = binary::words(c);
            for (int64_t b = 0; b < count / (c * plane); ++b) {
              const uint64_t* in = reinterpret_cast<const uint64_t*>(xs[0]) + b * cw * plane;
              float* yb = y + b * c * plane;
              for (int64_t ch = 0; ch < c; ++ch)
                for (int64_t p = 0; p < plane; ++p)
                  yb[ch * plane + p] = (in[p * cw + (ch >> 6)] >> (ch & 63)) & 1 ? -1.0f : 1.0f;
            }
          });
}

namespace {

// The thresholds of a fused chain: bit (−1) where n < t (below) or n > t, n the sum; over a
// pool, the window's bits combined by AND or OR per channel.
struct Thresholds {
  std::vector<int32_t> t;
  std::vector<uint8_t> below;
  std::vector<uint64_t> and_mask;  // per word: the channels whose pooled bit is the AND
};

}  // namespace

// Fuses a chain ending in BipolarQuant into its binary layer's step: the layer's sums (scale 1,
// bias 0: exact integers), pooled, compared with per-channel thresholds and written as bits.
// The thresholds come from evaluating the chain's own float operations at every possible sum, so
// the bits are the float graph's signs exactly; false (no fusion) where a value of the chain is
// read elsewhere or its functions are not monotone.
bool Program::fuse(const SumChain& chain, size_t& into) {
  if (!read_once(chain)) return false;
  Step& conv = steps[chain.conv_step];
  const std::shared_ptr<const BinaryLayer> layer = conv.binary;
  const BinaryLayer& l = *layer;
  const int64_t m = l.shape.m, k = l.shape.kh * l.shape.kw * l.shape.c;
  // Every sum of every channel is evaluated: a bounded amount of work for any file.
  if (k > (int64_t{1} << 20) || m * (2 * k + 1) > (int64_t{1} << 26)) return false;
  if (!spend(m * (2 * k + 1))) return false;
  auto th = std::make_shared<Thresholds>();
  th->t.resize(m), th->below.resize(m);
  th->and_mask.assign(binary::words(m), 0);
  std::vector<float> pre(2 * k + 1);
  for (int64_t o = 0; o < m; ++o) {
    bool up = true, down = true;
    // As the kernels compute the layer's value, then the chain's steps before the pool.
    if (!values_before_pool(
            chain, o, k, [&](int64_t n) { return static_cast<float>(n) * l.scale[o] + l.bias[o]; },
            pre, up, down))
      return false;
    const bool largest = up;  // the pool keeps the largest sum (else the smallest)
    // BipolarQuant: -1 (bit 1) unless v >= 0.
    auto bit = [&](int64_t n) { return !(apply_ops(chain.after_pool, o, pre[n + k]) >= 0); };
    int changes = 0;
    int64_t last_change = 0;
    for (int64_t n = -k + 1; n <= k; ++n) {
      if (bit(n) != bit(n - 1)) ++changes, last_change = n;
    }
    if (changes > 1) return false;
    if (changes == 0) {
      th->below[o] = 1, th->t[o] = static_cast<int32_t>(bit(-k) ? k + 1 : -k);
    } else if (bit(-k)) {
      th->below[o] = 1, th->t[o] = static_cast<int32_t>(last_change);  // bits for n < t
    } else {
      th->below[o] = 0, th->t[o] = static_cast<int32_t>(last_change - 1);  // bits for n > t
    }
    // Over a pool, bit(largest n) for "n < t" is the AND of the window's bits, for "n > t" the
    // OR (and the other way round for the smallest n).
    if (largest == (th->below[o] != 0)) th->and_mask[o >> 6] |= uint64_t{1} << (o & 63);
  }
  const int64_t ph = chain.chw[1], pw = chain.chw[2];
  const bool pooled = chain.pooled;
  const int64_t pkh = chain.pool_kh, pkw = chain.pool_kw, psh = chain.pool_sh, psw = chain.pool_sw;
  // Part p of `parts`: a slice of the (pooled) output rows, from the convolution's rows they
  // need (overlapping windows recompute a row in both parts: the same bits).
  const binary::ConvShape full = layer->shape;
  split_step(
      conv,
      [layer, th, ph, pw, pooled, pkh, pkw, psh, psw](const std::vector<const float*>& xs, float* y,
                                                      int64_t count, int64_t p, int64_t parts) {
        const BinaryLayer& l = *layer;
        const binary::ConvShape& sh = l.shape;
        const int64_t mw = binary::words(sh.m), out_words = mw * ph * pw;
        const int64_t q0 = ph * p / parts, q1 = ph * (p + 1) / parts;  // output rows
        if (q0 == q1) return;
        const int64_t r0 = pooled ? q0 * psh : q0, r1 = pooled ? (q1 - 1) * psh + pkh : q1;
        int64_t first = 0;
        const binary::ConvShape sub = row_slice(sh, r0, r1, first);
        thread_local std::vector<uint64_t> buffer, bits;
        for (int64_t b = 0; b < count / (2 * out_words); ++b) {
          uint64_t* o = reinterpret_cast<uint64_t*>(y) + b * out_words;
          const uint64_t* in = l.input(xs[0], b, buffer) + first * sh.w * binary::words(sh.c);
          if (!pooled) {
            l.kernels->conv_bits(in, l.weights.data(), th->t.data(), th->below.data(), sub,
                                 o + r0 * sh.ow * mw);
            continue;
          }
          bits.resize(mw * sub.oh * sh.ow);
          l.kernels->conv_bits(in, l.weights.data(), th->t.data(), th->below.data(), sub,
                               bits.data());
          for (int64_t r = q0; r < q1; ++r)
            for (int64_t q = 0; q < pw; ++q)
              for (int64_t k = 0; k < mw; ++k) {
                uint64_t all = ~uint64_t{0}, any = 0;
                for (int64_t i = 0; i < pkh; ++i)
                  for (int64_t j = 0; j < pkw; ++j) {
                    const uint64_t v = bits[((r * psh - r0 + i) * sh.ow + q * psw + j) * mw + k];
                    all &= v, any |= v;
                  }
                o[(r * pw + q) * mw + k] = (all & th->and_mask[k]) | (any & ~th->and_mask[k]);
              }
        }
      },
      full.m * full.oh * full.ow * binary::words(full.c) * full.kh * full.kw);
  conv.info.kernel += pooled ? "+maxpool+threshold" : "+threshold";
  conv.info.parameter_bytes += m * static_cast<int64_t>(sizeof(float) + 2);
  return fused(chain, into);
}

}  // namespace detail
}  // namespace engine
}  // namespace lowbit
