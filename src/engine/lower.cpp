// Lowering: each ONNX node into a step (or a folded constant), fusions and conversions as it goes.
#include "lower.h"

#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <map>
#include <stdexcept>

#include "fusion/chains.h"
#include "layers.h"

namespace lowbit {
namespace engine {
namespace detail {

// The checks the readers of packed bits, codes and bit planes share. Node n's attributes:
Attrs Program::attrs_of(const onnx::NodeProto& n) const {
  Attrs a;
  a.where = origin;
  for (const auto& attr : n.attribute()) a.map[attr.name()] = &attr;
  return a;
}

// Node n's input k where it is a constant, else null.
const Value* Program::constant_input(const onnx::NodeProto& n, int k) const {
  if (n.input_size() <= k || n.input(k).empty() || !ids.count(n.input(k))) return nullptr;
  const Value& v = values[ids.at(n.input(k))];
  return v.constant ? &v : nullptr;
}

// A Flatten of axis 1: the same storage, whatever it holds.
bool flattens(const onnx::NodeProto& n, const Attrs& a) {
  return n.op_type() == "Flatten" && a.i("axis", 1) == 1;
}

// A MaxPool of a 4-D input without padding, dilation or ceil mode.
bool Program::pools_unpadded(const onnx::NodeProto& n, const Attrs& a,
                             const std::vector<int64_t>* dims) const {
  if (n.op_type() != "MaxPool") return false;
  for (const char* k : {"pads", "dilations"}) {
    for (int64_t v : a.ints(k, {}))
      if (v != (std::string(k) == "pads" ? 0 : 1)) return false;
  }
  if (!dims) dims = &values[ids.at(n.input(0))].dims;
  return dims->size() == 4 && a.i("ceil_mode", 0) == 0 && a.s("auto_pad", "NOTSET") == "NOTSET" &&
         a.i("storage_order", 0) == 0;
}

// A Conv (group 1) or Gemm (transB, alpha = beta = 1) of input 0 whose constant weights match
// its channels and are s[o] * (±1): the layers planned as binary or bit-plane layers.
bool Program::binary_layer(const onnx::NodeProto& n, const Attrs& a,
                           const std::vector<int64_t>* dims) const {
  const std::string& op = n.op_type();
  if (op != "Conv" && op != "Gemm") return false;
  if (!dims) dims = &values[ids.at(n.input(0))].dims;
  const Value* w = constant_input(n, 1);
  std::vector<float> scale;
  const bool layout = op == "Conv"
                          ? dims->size() == 4 && a.i("group", 1) == 1 && w && w->dims.size() == 4
                          : dims->size() == 2 && a.i("transB", 0) == 1 && a.i("transA", 0) == 0 &&
                                a.f("alpha", 1.0f) == 1.0f && a.f("beta", 1.0f) == 1.0f && w &&
                                w->dims.size() == 2;
  return layout && w->dims[1] == (*dims)[1] && binary_scales(w->data, w->dims[0], scale);
}

// Every operator the engine lowers: the op families' lists, in one table.
const std::map<std::string, void (*)(Node&)>& op_table() {
  static const auto table = [] {
    std::map<std::string, void (*)(Node&)> t;
    for (const auto* family : {&elementwise_ops(), &activation_ops(), &layout_ops(), &quant_ops(),
                               &conv_ops(), &shape_ops(), &pool_ops(), &resize_ops()}) {
      for (const OpLowering& entry : *family) {
        if (!t.emplace(entry.op, entry.lower).second)
          throw std::logic_error(std::string("engine: operator listed twice: ") + entry.op);
      }
    }
    return t;
  }();
  return table;
}

void Node::arity(size_t lo, size_t hi) const {
  if (in.size() < lo || in.size() > hi)
    bad(where, "takes " + std::to_string(lo) + (lo == hi ? "" : " to " + std::to_string(hi)) +
                   " inputs, got " + std::to_string(in.size()));
  for (size_t i = 0; i < lo; ++i)
    if (!in[i]) bad(where, "input " + std::to_string(i) + " is empty");
}

const Value& Node::constant(size_t i, const char* what) const {
  if (i >= in.size() || !in[i] || !in[i]->constant)
    bad(where, std::string(what) + " must be a constant");
  return *in[i];
}

float Node::scalar(size_t i, const char* what) const {
  const Value& v = constant(i, what);
  if (v.data.size() != 1) bad(where, std::string(what) + " must be a single value");
  return v.data[0];
}

std::vector<int64_t> Node::integers(size_t i, const char* what) const {
  std::vector<int64_t> out;
  for (float f : constant(i, what).data) {
    if (f != std::floor(f) || !(std::fabs(f) <= 1e9f))
      bad(where, std::string(what) + " must be integers");
    out.push_back(static_cast<int64_t>(f));
  }
  return out;
}

bool Node::fuse_clamp(float lo, float hi) {
  if (in.empty() || !in[0] || in[0]->constant || p.steps.empty()) return false;
  const std::string& name = n.input(0);
  Step& last = p.steps.back();
  if (!last.clamp || last.removed || last.output != p.id(name) || p.uses[name] != 1) return false;
  const float32::Clamp none;
  if (last.clamp->lo != none.lo || last.clamp->hi != none.hi) return false;
  last.clamp->lo = lo, last.clamp->hi = hi;
  last.info.kernel += "+clamp";
  fused = true;
  fused_into = p.steps.size() - 1;
  return true;
}

std::vector<int64_t> Node::broadcast_shape(const Value& x, const Value& c) const {
  const size_t rank = std::max(x.dims.size(), c.dims.size());
  std::vector<int64_t> dims(rank, 1);
  for (size_t i = 0; i < rank; ++i) {
    const int64_t u = i + x.dims.size() >= rank ? x.dims[i + x.dims.size() - rank] : 1;
    const int64_t v = i + c.dims.size() >= rank ? c.dims[i + c.dims.size() - rank] : 1;
    if (u != v && u != 1 && v != 1)
      bad(where, "constants of shapes " + dims_str(x.dims) + " and " + dims_str(c.dims) +
                     " do not broadcast");
    dims[i] = u == 1 ? v : u;
  }
  int64_t count = 1;
  for (int64_t e : dims)
    count = checked_mul(count, e, p.limits.max_tensor_elements, where, "the output");
  return dims;
}

// Lowers node n (the k-th of the graph): converts the fused storage of its inputs where it does not
// read it, dispatches to its operator's lowering, folds it where every input is constant, and adds
// its step (or, where it was fused into an earlier step, redirects that step to its output).
void Program::add_node(const onnx::NodeProto& n, int k) {
  const std::string op = n.op_type();
  const std::string where =
      origin + ": node " + std::to_string(k) + " '" + n.name() + "' (" + op + ")";
  if (n.output_size() < 1 || n.output(0).empty()) bad(where, "has no output");
  // Optional further outputs (Dropout's mask, BatchNormalization's training statistics) are
  // accepted where nothing reads them.
  for (int i = 1; i < n.output_size(); ++i) {
    if (!n.output(i).empty() && uses.count(n.output(i)) && uses.at(n.output(i)) > 0)
      bad(where, "output " + std::to_string(i) + " ('" + n.output(i) +
                     "') is read, and the engine computes only the first output");
  }
  const bool known_domain = n.domain().empty() || n.domain() == "ai.onnx" ||
                            n.domain() == "qonnx.custom_op.general" ||
                            n.domain() == "finn.custom_op.general" || n.domain() == "onnx.brevitas";
  if (!known_domain) bad(where, "unknown domain '" + n.domain() + "'");
  const auto lowering = op_table().find(op);
  if (lowering == op_table().end()) bad(where, "the engine does not know this operator");
  // Packed inputs stay packed only where this node reads bits; elsewhere they are unpacked.
  for (int i = 0; i < n.input_size(); ++i) {
    const auto it = ids.find(n.input(i));
    if (it != ids.end() && values[it->second].packed && !reads_packed(n, i)) unpack(n.input(i));
    if (it != ids.end() && values[it->second].codes && !reads_codes(n, i)) decode(n.input(i));
    if (it != ids.end() && values[it->second].planes && !reads_planes(n, i))
      decode_planes(n.input(i));
  }
  Node d{*this, n, op, where, {}, {}, {}, {}};
  for (const auto& i : n.input()) d.in.push_back(i.empty() ? nullptr : &value(i, where));
  d.a.where = where;
  for (const auto& attr : n.attribute()) d.a.map[attr.name()] = &attr;
  d.s.info.name = n.name();
  d.s.info.op_type = op;
  // Shape arithmetic that holds the batch size goes to a Reshape, through the operators that only
  // move it; no other operator may read it (its value is known at run time only).
  static const char* const kMoveBatch[] = {"Gather", "Unsqueeze", "Squeeze", "Concat",
                                           "Cast",   "Identity",  "Reshape"};
  for (size_t i = 0; i < d.in.size(); ++i) {
    if (!d.in[i] || d.in[i]->batch_at < 0) continue;
    const bool moves =
        std::find(std::begin(kMoveBatch), std::end(kMoveBatch), op) != std::end(kMoveBatch);
    if (!moves || (op == "Reshape" && (i != 1 || d.in[i]->batch_at != 0)))
      bad(where, "input " + std::to_string(i) + " ('" + n.input(static_cast<int>(i)) +
                     "') holds the batch size, which is known only at run time (the engine "
                     "follows it from Shape to the first entry of a Reshape's shape)");
  }
  lowering->second(d);
  std::vector<const Value*>& in = d.in;
  Value& out = d.out;
  Step& s = d.s;
  const bool fused = d.fused;
  const size_t fused_into = d.fused_into;
  const Attrs& a = d.a;

  // Constants only: evaluate now (QONNX's weight quantizers, for instance).
  bool all_constant = !in.empty();
  for (const Value* v : in) all_constant = all_constant && v && v->constant;
  if (all_constant && !out.constant) {
    if (!s.run) bad(where, "cannot fold this node over constants");
    out.constant = true;
    std::vector<const float*> xs;
    int64_t count = 1;
    for (int64_t d : out.dims)
      count = checked_mul(count, d, limits.max_tensor_elements, where, "the output");
    out.data.resize(count);
    for (const Value* v : in) {
      if (static_cast<int64_t>(v->data.size()) != count && v->data.size() != 1)
        bad(where, "constant shapes differ");
      xs.push_back(v->data.data());
    }
    s.run(xs, out.data.data(), count);
    if (op == "Cast" || op == "Identity") out.batch_at = in[0]->batch_at;
  }
  if (!out.constant) {
    checked_mul(out.per_image(), 1, limits.max_tensor_elements, where, "the output");
    for (const auto& i : n.input()) {
      if (!i.empty() && !values[ids.at(i)].constant) s.inputs.push_back(ids.at(i));
    }
  }
  if (!out.constant && !fused) extend_chain(op, n, in, a, s, out);
  const std::string out_name = n.output(0);
  const bool constant_out = out.constant;
  std::vector<int64_t> dims = out.dims;
  s.output = add_value(out_name, std::move(out), where);
  if (fused) {  // the binary layer's step now writes this node's output
    steps[fused_into].output = s.output;
    steps[fused_into].info.output.assign(dims.begin() + 1, dims.end());
    return;
  }
  if (!constant_out) {
    s.info.output.assign(dims.begin() + 1, dims.end());
    steps.push_back(std::move(s));
  }
}

// For folding nodes whose input is constant: fill the output from the constant input.
void Program::fold_if_constant(const std::vector<const Value*>& in, Value& out,
                               const std::string& where,
                               const std::function<void(std::vector<float>&)>& f) {
  if (!in[0]->constant) return;
  out.constant = true;
  out.data.resize(in[0]->data.size());
  f(out.data);
  (void)where;
}

// Index of a broadcast constant for every element of a constant of shape `x` (whole tensor).
std::vector<int64_t> broadcast_constant(const std::vector<int64_t>& x,
                                        const std::vector<int64_t>& c, const std::string& where) {
  std::vector<int64_t> with_batch{1};
  with_batch.insert(with_batch.end(), x.begin(), x.end());
  std::vector<int64_t> cb = c;
  if (cb.size() > x.size())
    bad(where, "a constant of shape " + dims_str(c) + " does not broadcast to " + dims_str(x));
  return broadcast_index(with_batch, cb, where);
}

}  // namespace detail

std::vector<std::string> supported_operators() {
  std::vector<std::string> ops;
  for (const auto& entry : detail::op_table()) ops.push_back(entry.first);
  return ops;
}

}  // namespace engine
}  // namespace lowbit
