// A .npy file through a model into another .npy file.
#include <chrono>
#include <stdexcept>

#include "lowbit/engine/tools.h"
#include "lowbit/io/npy.h"

namespace lowbit {
namespace engine {
namespace {

std::string shape_text(const std::vector<int64_t>& dims, bool batch) {
  std::string s = batch ? "[batch" : "[";
  for (size_t i = 0; i < dims.size(); ++i)
    s += (i == 0 && !batch ? "" : ", ") + std::to_string(dims[i]);
  return s + "]";
}

}  // namespace

namespace {

NpyRun run_array(const Model& model, const io::NpyArray& x, const std::string& input,
                 const std::string& output, int threads) {
  const std::vector<int64_t> want = model.input_shape();
  if (x.shape.size() != want.size() + 1 ||
      !std::equal(want.begin(), want.end(), x.shape.begin() + 1)) {
    throw std::invalid_argument(input + ": an array of shape " + shape_text(x.shape, false) +
                                " does not fit the model's input " + shape_text(want, true));
  }
  NpyRun r;
  r.images = x.shape[0];
  r.output_shape = model.output_shape();
  r.output_shape.insert(r.output_shape.begin(), r.images);
  std::vector<float> y(static_cast<size_t>(r.images * model.output_size()));
  const auto start = std::chrono::steady_clock::now();
  model.run(x.data.data(), r.images, y.data(), threads);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  io::write_npy(output, r.output_shape, y.data());
  return r;
}

}  // namespace

NpyRun run_npy(const Model& model, const std::string& input, const std::string& output,
               int threads) {
  return run_array(model, io::read_npy(input), input, output, threads);
}

NpyRun run_npy(const std::string& model_path, const std::string& input, const std::string& output,
               int threads) {
  const io::NpyArray x = io::read_npy(input);
  const std::vector<int64_t> shape(x.shape.empty() ? x.shape.begin() : x.shape.begin() + 1,
                                   x.shape.end());
  return run_array(Model::from_file(model_path, Limits(), shape), x, input, output, threads);
}

}  // namespace engine
}  // namespace lowbit
