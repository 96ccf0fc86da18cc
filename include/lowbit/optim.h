// Larq's Bop optimizer for binary weights, and the flip-ratio metric of binary kernels.
#pragma once

#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>
#include <torch/serialize/archive.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace lowbit {
namespace optim {

struct BopOptions : public torch::optim::OptimizerCloneableOptions<BopOptions> {
  explicit BopOptions(double threshold = 1e-8, double gamma = 1e-4)
      : threshold_(threshold), gamma_(gamma) {}
  TORCH_ARG(double, threshold);
  TORCH_ARG(double, gamma);

 public:
  void serialize(torch::serialize::InputArchive& archive) override;
  void serialize(torch::serialize::OutputArchive& archive) const override;
  // Bop has no learning rate; these keep schedulers that set one harmless.
  double get_lr() const override { return 0.0; }
  void set_lr(const double) override {}
};

struct BopParamState : public torch::optim::OptimizerCloneableParamState<BopParamState> {
  TORCH_ARG(at::Tensor, momentum);

 public:
  void serialize(torch::serialize::InputArchive& archive) override;
  void serialize(torch::serialize::OutputArchive& archive) const override;
};

// Bop (Helwegen et al. 2019, as in Larq): for binary latent weights w in {-1, +1},
//   m <- (1 - gamma) m + gamma g;   w <- -w where w * m > threshold (m agrees with w and is large).
// The weights are set to sign(w) (+1 for 0) on the first step. Give it only the binary kernels;
// train the other parameters with Adam or SGD (lowbit::nn::split_binary_parameters).
class Bop : public torch::optim::Optimizer {
 public:
  explicit Bop(std::vector<at::Tensor> params, BopOptions defaults = BopOptions());
  at::Tensor step(LossClosure closure = nullptr) override;
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;
};

// Larq's flip ratio: per quantized layer, the fraction of the quantized kernel's values that
// changed since the previous update(). The first update() after construction returns 0 for every
// layer.
class FlipRatio {
 public:
  // Layer name -> ratio, and "" -> the ratio over all layers together.
  std::map<std::string, double> update(torch::nn::Module& model);

 private:
  std::map<std::string, at::Tensor> previous_;
};

// (binary kernels, everything else) of a model: the latent kernels of quantized layers whose
// kernel precision is 1 bit, for Bop, and the rest, for Adam or SGD.
std::pair<std::vector<at::Tensor>, std::vector<at::Tensor>> split_binary_parameters(
    torch::nn::Module& model);

}  // namespace optim
}  // namespace lowbit
