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
                 const std::vector<std::string>& outputs, int threads) {
  if (outputs.size() != model.output_count()) {
    std::string names;
    for (size_t k = 0; k < model.output_count(); ++k)
      names += (k ? ", '" : "'") + model.output_name(k) + "'";
    throw std::invalid_argument(std::to_string(outputs.size()) + " output file" +
                                (outputs.size() == 1 ? "" : "s") + " for a model of " +
                                std::to_string(model.output_count()) + " output" +
                                (model.output_count() == 1 ? "" : "s") + " (" + names +
                                "): give one for each, in that order");
  }
  const std::vector<int64_t> want = model.input_shape();
  if (x.shape.size() != want.size() + 1 ||
      !std::equal(want.begin(), want.end(), x.shape.begin() + 1)) {
    throw std::invalid_argument(input + ": an array of shape " + shape_text(x.shape, false) +
                                " does not fit the model's input " + shape_text(want, true));
  }
  NpyRun r;
  r.images = x.shape[0];
  std::vector<std::vector<float>> ys(outputs.size());
  std::vector<float*> buffers;
  for (size_t k = 0; k < outputs.size(); ++k) {
    r.output_shapes.push_back(model.output_shape(k));
    r.output_shapes.back().insert(r.output_shapes.back().begin(), r.images);
    ys[k].resize(static_cast<size_t>(r.images * model.output_size(k)));
    buffers.push_back(ys[k].data());
  }
  const auto start = std::chrono::steady_clock::now();
  model.run(x.data.data(), r.images, buffers, threads);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (size_t k = 0; k < outputs.size(); ++k)
    io::write_npy(outputs[k], r.output_shapes[k], ys[k].data());
  return r;
}

}  // namespace

NpyRun run_npy(const Model& model, const std::string& input,
               const std::vector<std::string>& outputs, int threads) {
  return run_array(model, io::read_npy(input), input, outputs, threads);
}

NpyRun run_npy(const std::string& model_path, const std::string& input,
               const std::vector<std::string>& outputs, int threads) {
  const io::NpyArray x = io::read_npy(input);
  const std::vector<int64_t> shape(x.shape.empty() ? x.shape.begin() : x.shape.begin() + 1,
                                   x.shape.end());
  return run_array(Model::from_file(model_path, Limits(), shape), x, input, outputs, threads);
}

}  // namespace engine
}  // namespace lowbit
