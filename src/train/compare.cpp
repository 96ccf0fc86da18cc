// LibTorch's side of `lowbit run --checkpoint`.
#include "lowbit/compare.h"

#include <torch/torch.h>

#include <stdexcept>

namespace lowbit {
namespace train {

engine::Timing time_checkpoint(const Checkpoint& c, const data::Dataset& dataset,
                               const std::string& data_dir, int threads, int64_t batch,
                               int64_t outputs, const std::string& model_path) {
  at::set_num_threads(threads);
  torch::NoGradGuard no_grad;
  auto net = c.model;
  check_compatible(dataset, data_dir, c);
  if (c.num_classes != outputs) {
    throw std::invalid_argument(c.file + ": the checkpoint's model has " +
                                std::to_string(c.num_classes) + " classes, " + model_path +
                                " has " + std::to_string(outputs) + " outputs");
  }
  const auto t = to_tensors(c.has_normalization ? dataset : data::load_dataset(data_dir), c);
  const int64_t n = dataset.test.images.count;
  return engine::timed(n, outputs, batch, [&](int64_t first, int64_t m, float* out) {
    const at::Tensor y = net->forward(t.test_images.narrow(0, first, m)).contiguous();
    std::copy(y.data_ptr<float>(), y.data_ptr<float>() + m * outputs, out);
  });
}

}  // namespace train
}  // namespace lowbit
