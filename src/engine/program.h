// The engine's program (internal): the values and steps a model file is lowered to, with the state
// of the lowering (which values are read where, the fusions' budget). Model::Impl is a Program.
#pragma once

#include <atomic>
#include <condition_variable>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "ir.h"
#include "layers.h"
#include "lowbit/engine.h"

namespace onnx {
class ModelProto;
class NodeProto;
class TensorProto;
}  // namespace onnx

namespace lowbit {
namespace engine {
namespace detail {

// A fork-join team of threads for the steps of one image: run(f) calls f(0) .. f(size - 1) at
// once, f(0) on the calling thread, and returns when all have (rethrowing the first exception).
// Between tasks the helpers spin briefly, then sleep on a condition variable.
class Team {
 public:
  explicit Team(int size);
  ~Team();
  Team(const Team&) = delete;
  Team& operator=(const Team&) = delete;
  int size() const { return size_; }
  void run(const std::function<void(int)>& f);

 private:
  int size_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable wake_, done_;
  const std::function<void(int)>* task_ = nullptr;  // set before generation_ moves
  std::atomic<int64_t> generation_{0};              // one more per run()
  std::atomic<int> pending_{0};                     // helpers still running the task
  std::atomic<bool> stop_{false};
  std::exception_ptr error_;  // the first helper's, under mu_
};

struct Program {
  std::string origin;
  Limits limits;
  std::vector<Value> values;
  std::map<std::string, int> ids;
  std::vector<Step> steps;
  std::vector<PlannedNode> plan;
  int input = -1;
  std::vector<int> outputs;         // the graph's outputs' value ids, in the file's order
  int64_t opset = 13;               // the version of the default ONNX domain the model imports
  std::vector<int64_t> input_dims;  // per image (without the batch)
  std::vector<std::vector<int64_t>> output_dims;  // per output, per image
  std::vector<std::string> output_names;
  std::vector<int64_t> requested_input;  // the input shape asked for (Model::from_file)
  int64_t total_constant_elements = 0;
  bool initializing = false;  // reading initializers, counted as they are read
  // QuantizeLinear's saturation range, by the name of its zero point (from the zero point's type).
  std::map<std::string, std::pair<float, float>> zero_point_ranges;
  std::map<std::string, int> uses;  // how many node inputs (and graph outputs) read each value
  // The nodes reading each value, with the input's index (while the graph is lowered).
  std::map<std::string, std::vector<std::pair<const onnx::NodeProto*, int>>> readers;

  // ---- the reader (reader.cpp)
  int add_value(const std::string& name, Value v, const std::string& where);
  const Value& value(const std::string& name, const std::string& where) const;
  int id(const std::string& name) const { return ids.at(name); }
  Value read_initializer(const onnx::TensorProto& t);
  void load(const onnx::ModelProto& m);

  // ---- lowering (lower.cpp)
  void add_node(const onnx::NodeProto& n, int k);
  // Node n's attributes.
  Attrs attrs_of(const onnx::NodeProto& n) const;
  // Node n's input k where it is a constant, else null.
  const Value* constant_input(const onnx::NodeProto& n, int k) const;
  // A MaxPool of a 4-D input without padding, dilation or ceil mode.
  // (dims: the input's, where it is not lowered yet.)
  bool pools_unpadded(const onnx::NodeProto& n, const Attrs& a,
                      const std::vector<int64_t>* dims = nullptr) const;
  // A Conv (group 1) or Gemm (transB, alpha = beta = 1) of input 0 whose constant weights match
  // its channels and are s[o] * (±1): the layers planned as binary or bit-plane layers.
  bool binary_layer(const onnx::NodeProto& n, const Attrs& a,
                    const std::vector<int64_t>* dims = nullptr) const;
  // For folding nodes whose input is constant: fill the output from the constant input.
  void fold_if_constant(const std::vector<const Value*>& in, Value& out, const std::string& where,
                        const std::function<void(std::vector<float>&)>& f);

  // ---- operators (ops/*.cpp)
  void conv(std::vector<const Value*>& in, const Attrs& a, Value& out, Step& s,
            const std::string& where);
  void gemm(std::vector<const Value*>& in, const Attrs& a, Value& out, Step& s,
            const std::string& where);
  void max_pool(std::vector<const Value*>& in, const Attrs& a, Value& out, Step& s,
                const std::string& where);
  void pad(std::vector<const Value*>& in, const Attrs& a, Value& out, Step& s,
           const std::string& where, const onnx::NodeProto&);
  // Reshape of a constant or an activation (ops/shape.cpp); ONNX's 0 (copy, allowzero 0) and -1
  // (inferred), resolved by resolve_shape.
  std::vector<int64_t> resolve_shape(const std::vector<float>& s, size_t from,
                                     const std::vector<int64_t>& x_dims, int64_t n,
                                     const std::string& where) const;
  void reshape(const Value& x, const Value& shape, const Attrs& a, Value& out,
               const std::string& where);
  // Slice of a constant: starts, ends and optional axes (steps 1), ONNX's clamping of negative and
  // out-of-range indices.
  void slice(std::vector<const Value*>& in, Value& out, const std::string& where);

  // ---- fusions (fusion/*.cpp)
  // Plans a step `kernel` that turns value `name` (packed or codes) into floats, value f, and makes
  // the name refer to them.
  template <class Run>
  void convert(const std::string& name, Value f, const std::string& kernel, Run&& run) {
    Step st;
    st.info.name = name;
    st.info.op_type = "Convert";
    st.info.kernel = kernel;
    st.info.output.assign(f.dims.begin() + 1, f.dims.end());
    st.inputs = {ids.at(name)};
    st.run = std::forward<Run>(run);
    values.push_back(std::move(f));
    st.output = ids[name] = static_cast<int>(values.size()) - 1;
    steps.push_back(std::move(st));
  }

  // Starts a chain at a binary, bit-plane or 8-bit layer's output and carries it through
  // per-channel Mul, Add, Sub and Div by constants, Relu, Floor, Clip by constants, one max-pool
  // without padding, Flatten and Identity.
  void extend_chain(const std::string& op, const onnx::NodeProto& n,
                    const std::vector<const Value*>& in, const Attrs& a, const Step& s, Value& out);
  // Fusions evaluate a chain's float operations many times; all of a model's together at most
  // kFusionWork times (about a second), after which layers run unfused (as exactly, more slowly).
  static constexpr int64_t kFusionWork = int64_t{1} << 28;
  int64_t fusion_work = 0;
  bool spend(int64_t evaluations);
  // Whether every value of the chain is read once (by the chain's next step): fusing it then
  // removes no value another node reads.
  bool read_once(const SumChain& chain);
  // Marks the chain's steps removed (the layer's step, into, now computes the chain); true.
  bool fused(const SumChain& chain, size_t& into);
  // Bitpacked binary chains (fusion/binary.cpp).
  // Whether node n reads its input i as packed bits (dims: the input's, where it is not lowered
  // yet).
  bool reads_packed(const onnx::NodeProto& n, int i,
                    const std::vector<int64_t>* dims = nullptr) const;
  // Whether every reader of value `name`, of dimensions dims, (and no graph output) reads packed
  // bits: a sign computed there is packed at once (pack_signs).
  bool read_packed_everywhere(const std::string& name, const std::vector<int64_t>& dims) const;
  // Makes step s pack the signs of its 4-D input x into out: bit 1 (-1) where !(v >= 0)
  // (BipolarQuant's sign), or with `condition` where v == 0 (Where(c, 1, -1)).
  void pack_signs(Step& s, const Value& x, Value& out, bool condition);
  void unpack(const std::string& name);
  bool fuse(const SumChain& chain, size_t& into);
  // 8-bit codes (fusion/int8.cpp).
  bool reads_codes(const onnx::NodeProto& n, int i) const;
  void decode(const std::string& name);
  // `linear`: QuantizeLinear's clamp(round(v / scale) + zero), else Quant's
  // round(clamp(v / scale + zero)).
  bool fuse_int8(const SumChain& chain, float qscale, float qzero, float qlo, float qhi,
                 int rounding, const Grid& grid, size_t& into, bool linear = false);
  // Whether DequantizeLinear node n reads 8-bit codes of value 1 per code (a fused
  // QuantizeLinear's) and passes them on as codes on its own grid (scalar scale and zero point).
  bool dequantizes_codes(const onnx::NodeProto& n) const;
  // Bit planes (fusion/planes.cpp).
  bool reads_planes(const onnx::NodeProto& n, int i) const;
  bool planes_scalar(const onnx::NodeProto& n) const;
  void planes_scaled(std::vector<const Value*>& in, Value& out, Step& s, char kind);
  void decode_planes(const std::string& name);
  bool fuse_planes(const SumChain& chain, float qscale, float qhi, int rounding, size_t& into);

  // ---- the memory plan (executor.cpp)
  // Each step's output lives in a slot of the workspace, from its step to its last reader; slots
  // are reused by later values (a greedy assignment over the steps' order). The graph's output
  // goes to the caller's buffer, its input is read in place.
  std::vector<int> slot_of;          // per value id, -1 where none
  std::vector<int> output_of;        // per value id, the graph output it is, -1 where none
  std::vector<int64_t> slot_floats;  // per slot: the largest storage per image it holds
  void plan_memory();
  // Workspaces (one vector per slot) kept between calls, one per concurrent run: no fresh pages
  // (which cost more than the computation on these machines) after the first call.
  using Workspace = std::vector<std::vector<float>>;
  std::unique_ptr<Workspace> acquire_workspace() const;
  void release_workspace(std::unique_ptr<Workspace> w) const;
  mutable std::mutex workspaces_mu;
  mutable std::vector<std::unique_ptr<Workspace>> workspaces;
  // Teams of threads kept the same way (their threads sleep between calls).
  std::unique_ptr<Team> acquire_team(int size) const;
  void release_team(std::unique_ptr<Team> team) const;
  mutable std::vector<std::unique_ptr<Team>> teams;

  // ---- the executor (executor.cpp)
  // Runs the graph over `batch` images in chunks of a few images, so that every activation of a
  // chunk stays in cache and the buffers, allocated once per call, are reused; output k goes to
  // outputs[k]; with `seconds`, adds each step's time to seconds[step].
  void run(const float* inputs, int64_t batch, float* const* outputs, double* seconds = nullptr,
           Team* team = nullptr) const;
};

// A Flatten of axis 1: the same storage, whatever it holds.
bool flattens(const onnx::NodeProto& n, const Attrs& a);

}  // namespace detail
}  // namespace engine
}  // namespace lowbit

namespace lowbit {
namespace engine {
struct Model::Impl : detail::Program {};
}  // namespace engine
}  // namespace lowbit
