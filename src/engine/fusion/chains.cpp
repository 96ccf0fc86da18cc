// Chains: a layer's integer sums carried through per-channel monotone steps, which a later
// quantizer may fuse into the layer (fusion/binary.cpp, int8.cpp, planes.cpp).
#include "chains.h"

#include <onnx/onnx_pb.h>

#include <cmath>

namespace lowbit {
namespace engine {
namespace detail {

// The constant of an element-wise step as one value per channel of a chain's activation (whose
// channels are its first dimension after the batch, also when flattened); false if it varies
// within a channel.
bool channel_constants(const Value& act, const Value& c, int64_t channels,
                       std::vector<float>& per) {
  if (c.data.size() == 1) {
    per.assign(channels, c.data[0]);
    return true;
  }
  const int64_t total = act.per_image(), plane = total / channels;
  if (plane * channels != total) return false;
  const auto index = broadcast_index(act.dims, c.dims, "");
  per.resize(channels);
  for (int64_t e = 0; e < total; ++e) {
    if (index[e] != index[e / plane * plane]) return false;
    if (e % plane == 0) per[e / plane] = c.data[index[e]];
  }
  return true;
}

// Starts a chain at a binary layer's output and carries it through per-channel Mul, Add, Sub and
// Div by constants, one max-pool without padding, Flatten and Identity.
void Program::extend_chain(const std::string& op, const onnx::NodeProto& n,
                           const std::vector<const Value*>& in, const Attrs& a, const Step& s,
                           Value& out) {
  const size_t index = steps.size();  // the step about to be added
  const binary::ConvShape* layer = s.binary   ? &s.binary->shape
                                   : s.planes ? &s.planes->shape
                                   : s.int8   ? &s.int8->shape
                                              : nullptr;
  if (layer) {
    auto chain = std::make_shared<SumChain>();
    chain->conv_step = index;
    chain->names = {n.output(0)};
    chain->chw = {layer->m, layer->oh, layer->ow};
    chain->planes = s.planes != nullptr;
    chain->int8 = s.int8 != nullptr;
    out.chain = chain;
    return;
  }
  if (in.empty() || !in[0]) return;
  std::shared_ptr<SumChain> next;
  if (op == "Mul" || op == "Add" || op == "Sub" || op == "Div") {
    if (in.size() != 2 || !in[1] || in[0]->constant == in[1]->constant) return;
    const bool act_first = !in[0]->constant;
    const Value& act = act_first ? *in[0] : *in[1];
    const Value& c = act_first ? *in[1] : *in[0];
    if (!act.chain || (op == "Div" && !act_first)) return;
    SumChain::Op step{op == "Mul"   ? '*'
                      : op == "Add" ? '+'
                      : op == "Sub" ? '-'
                                    : '/',
                      !act_first && op == "Sub",
                      {}};
    if (!channel_constants(act, c, act.chain->chw[0], step.c)) return;
    // An 8-bit layer's chain is fused without evaluating every sum: its steps must be
    // nondecreasing functions by construction.
    if (act.chain->int8) {
      if (step.constant_first) return;
      for (float v : step.c)
        if (!std::isfinite(v) || ((step.kind == '*' || step.kind == '/') && !(v > 0))) return;
    }
    next = std::make_shared<SumChain>(*act.chain);
    (next->pooled ? next->after_pool : next->before_pool).push_back(step);
  } else if (op == "Relu" || op == "Floor") {
    if (!in[0]->chain) return;
    next = std::make_shared<SumChain>(*in[0]->chain);
    (next->pooled ? next->after_pool : next->before_pool)
        .push_back({op == "Relu" ? 'r' : 'f', false, {}});
  } else if (op == "Clip") {  // bounds: constant scalars (the node's inputs 1 and 2)
    if (!in[0]->chain) return;
    next = std::make_shared<SumChain>(*in[0]->chain);
    auto& ops = next->pooled ? next->after_pool : next->before_pool;
    const int64_t channels = next->chw[0];
    for (int k = 1; k <= 2; ++k) {
      float bound;
      if (opset < 11) {  // attributes min and max
        bound = a.f(k == 1 ? "min" : "max", k == 1 ? -3.402823e+38f : 3.402823e+38f);
      } else {
        const Value* input = constant_input(n, k);
        if (!input) continue;
        if (input->data.size() != 1) return;
        bound = input->data[0];
      }
      ops.push_back({k == 1 ? 'x' : 'n', false, std::vector<float>(channels, bound)});
    }
  } else if (op == "MaxPool") {
    const Value& x = *in[0];
    if (!x.chain || x.chain->int8 || x.chain->pooled || x.dims.size() != 4 ||
        x.chain->chw[1] != x.dims[2])
      return;
    for (int64_t v : a.ints("pads", {}))
      if (v != 0) return;
    for (int64_t v : a.ints("dilations", {}))
      if (v != 1) return;
    if (a.i("ceil_mode", 0) != 0) return;
    const auto ks = a.ints("kernel_shape", {});
    const auto st = a.ints("strides", {1, 1});
    if (ks.size() != 2 || st.size() != 2) return;
    next = std::make_shared<SumChain>(*x.chain);
    next->pooled = true;
    next->pool_kh = ks[0], next->pool_kw = ks[1], next->pool_sh = st[0], next->pool_sw = st[1];
    next->chw = {out.dims[1], out.dims[2], out.dims[3]};
  } else if (op == "Flatten" || op == "Identity") {
    if (!in[0]->chain) return;
    next = std::make_shared<SumChain>(*in[0]->chain);
  } else {
    return;
  }
  next->steps.push_back(index);
  next->names.push_back(n.output(0));
  out.chain = next;
}

// A chain's per-channel steps applied to value v of channel o, as the unfused steps compute them.
float apply_ops(const std::vector<SumChain::Op>& ops, int64_t o, float v) {
  for (const auto& op : ops) {
    if (op.kind == 'r') {
      v = v < 0 ? 0.0f : v;
      continue;
    }
    if (op.kind == 'f') {
      v = std::floor(v);
      continue;
    }
    const float c = op.c[o];
    if (op.kind == 'x' || op.kind == 'n') {  // as the unfused Clip: std::min(std::max(v, lo), hi)
      v = op.kind == 'x' ? (v < c ? c : v) : (c < v ? c : v);
      continue;
    }
    v = op.kind == '*'   ? v * c
        : op.kind == '+' ? v + c
        : op.kind == '/' ? v / c
                         : (op.constant_first ? c - v : v - c);
  }
  return v;
}

bool Program::spend(int64_t evaluations) {
  if (fusion_work + evaluations > kFusionWork) return false;
  fusion_work += evaluations;
  return true;
}

bool Program::read_once(const SumChain& chain) {
  for (const auto& name : chain.names)
    if (uses[name] != 1) return false;
  return true;
}

bool Program::fused(const SumChain& chain, size_t& into) {
  for (size_t i : chain.steps) steps[i].removed = true;
  into = chain.conv_step;
  return true;
}

}  // namespace detail
}  // namespace engine
}  // namespace lowbit
