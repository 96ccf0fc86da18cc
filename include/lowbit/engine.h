// The inference engine: runs ONNX models (lowbit's exports and others) without LibTorch
// (docs/engine.md). Model files are untrusted: every size, type and reference is checked while
// loading, and a bad file is an std::invalid_argument naming what is wrong, never a crash or an
// unbounded allocation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace lowbit {
namespace engine {

// Bounds on what a model file may ask for.
struct Limits {
  int64_t max_file_bytes = int64_t{1} << 30;
  int64_t max_tensor_elements = int64_t{1} << 28;  // per initializer or per-image activation
  int64_t max_total_elements = int64_t{1} << 30;   // all initializers together
  int64_t max_nodes = 100000;
};

// How one node of the graph is executed (for reports and tests).
struct PlannedNode {
  std::string name, op_type;
  std::string kernel;           // the implementation chosen, e.g. "conv2d_f32"
  std::vector<int64_t> output;  // per-image output shape
  // What the kernel keeps in memory: weights (packed for binary kernels), scales, biases, and the
  // broadcast index maps of element-wise constants.
  int64_t parameter_bytes = 0;
};

// The operators the engine lowers, sorted (docs/engine.md lists each with the kernels it gets).
std::vector<std::string> supported_operators();

class Model {
 public:
  // Loads an ONNX model. Throws std::invalid_argument naming the file (or "buffer") and the node,
  // tensor or field that is wrong. `input_shape`: a per-image input shape (without the batch) that
  // sizes the dimensions the file leaves unknown after the batch (image-to-image models,
  // `dim_param`s), needed for those; the dimensions the file fixes stand (compare input_shape()).
  static Model from_file(const std::string& path, const Limits& limits = {},
                         const std::vector<int64_t>& input_shape = {});
  static Model from_buffer(const void* data, size_t size, const Limits& limits = {},
                           const std::string& origin = "buffer",
                           const std::vector<int64_t>& input_shape = {});

  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  ~Model();

  // The input and the outputs per image: float32 tensors [batch, ...input_shape()] and, for each
  // graph output k in the file's order, [batch, ...output_shape(k)] (lowbit's exports: [channels,
  // height, width] of raw pixels in, [classes] out). k past the outputs: std::invalid_argument.
  std::vector<int64_t> input_shape() const;
  size_t output_count() const;
  std::vector<int64_t> output_shape(size_t k = 0) const;
  const std::string& output_name(size_t k = 0) const;
  int64_t input_size() const;               // the product of input_shape(): floats per image
  int64_t output_size(size_t k = 0) const;  // the product of output_shape(k)
  const std::vector<PlannedNode>& plan() const;
  // The sum of the plan's parameter_bytes: the model's memory once loaded (the file's float
  // initializers are released after planning).
  int64_t parameter_bytes() const;

  // Runs `batch` images (contiguous, batch x input_size() floats) into outputs[k] (batch x
  // output_size(k) floats each, one buffer per output), with up to `threads` threads (images are
  // split between them, or one image's large steps).
  void run(const float* inputs, int64_t batch, const std::vector<float*>& outputs,
           int threads = 1) const;
  // The same for a model of one output (std::invalid_argument for several).
  void run(const float* inputs, int64_t batch, float* outputs, int threads = 1) const;
  // As run() on one thread, adding the seconds of each step of plan() to seconds[step] (resized to
  // plan().size(), existing values kept): a per-operator profile.
  void run_profiled(const float* inputs, int64_t batch, const std::vector<float*>& outputs,
                    std::vector<double>& seconds) const;
  void run_profiled(const float* inputs, int64_t batch, float* outputs,
                    std::vector<double>& seconds) const;

 private:
  struct Impl;
  explicit Model(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace engine
}  // namespace lowbit
