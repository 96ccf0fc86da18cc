// Bop and the flip ratio (see include/lowbit/optim.h).
#include "lowbit/optim.h"

#include <torch/torch.h>

#include <set>
#include <sstream>
#include <type_traits>

#include "lowbit/nn.h"

namespace lowbit {
namespace optim {
namespace {

// The key of a parameter in Optimizer::state_: a pointer string in LibTorch 1.x, the pointer
// in 2.x.
template <class Key>
Key state_key(const at::Tensor& p) {
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream s;
    s << p.unsafeGetTensorImpl();
    return s.str();
  } else {
    return static_cast<Key>(p.unsafeGetTensorImpl());
  }
}

}  // namespace

void BopOptions::serialize(torch::serialize::InputArchive& archive) {
  c10::IValue v;
  archive.read("threshold", v);
  threshold(v.toDouble());
  archive.read("gamma", v);
  gamma(v.toDouble());
}

void BopOptions::serialize(torch::serialize::OutputArchive& archive) const {
  archive.write("threshold", c10::IValue(threshold()));
  archive.write("gamma", c10::IValue(gamma()));
}

void BopParamState::serialize(torch::serialize::InputArchive& archive) {
  at::Tensor m;
  archive.read("momentum", m);
  momentum(m);
}

void BopParamState::serialize(torch::serialize::OutputArchive& archive) const {
  archive.write("momentum", momentum());
}

Bop::Bop(std::vector<at::Tensor> params, BopOptions defaults)
    : Optimizer({torch::optim::OptimizerParamGroup(std::move(params))},
                std::make_unique<BopOptions>(defaults)) {
  TORCH_CHECK_VALUE(defaults.threshold() >= 0, "Bop: threshold must be >= 0, got ",
                    defaults.threshold());
  TORCH_CHECK_VALUE(defaults.gamma() > 0 && defaults.gamma() <= 1,
                    "Bop: gamma must be in (0, 1], got ", defaults.gamma());
}

at::Tensor Bop::step(LossClosure closure) {
  at::Tensor loss;
  if (closure) {
    torch::AutoGradMode enable(true);
    loss = closure();
  }
  torch::NoGradGuard no_grad;
  using Key = typename std::decay_t<decltype(state_)>::key_type;
  for (auto& group : param_groups_) {
    const auto& o = static_cast<const BopOptions&>(group.options());
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const Key key = state_key<Key>(p);
      auto it = state_.find(key);
      if (it == state_.end()) {
        auto st = std::make_unique<BopParamState>();
        st->momentum(torch::zeros_like(p));
        it = state_.emplace(key, std::move(st)).first;
      }
      auto& m = static_cast<BopParamState&>(*it->second).momentum();
      m.mul_(1.0 - o.gamma()).add_(p.grad(), o.gamma());
      // sign(w) with sign(0) = +1, flipped where w * m > threshold.
      const at::Tensor w = at::where(p >= 0, at::ones_like(p), -at::ones_like(p));
      p.copy_(at::where(w * m > o.threshold(), -w, w));
    }
  }
  return loss;
}

void Bop::save(torch::serialize::OutputArchive& archive) const {
  torch::optim::serialize<BopParamState, BopOptions>(archive, *this);
}

void Bop::load(torch::serialize::InputArchive& archive) {
  torch::optim::serialize<BopParamState, BopOptions>(archive, *this);
}

std::map<std::string, double> FlipRatio::update(torch::nn::Module& model) {
  std::map<std::string, double> ratios;
  int64_t flipped = 0, total = 0;
  torch::NoGradGuard no_grad;
  for (auto& [name, layer] : nn::quant_layers(model)) {
    if (layer->kernel_quantizer.is_empty()) continue;
    const at::Tensor q = layer->quantized_kernel().detach().clone();
    auto it = previous_.find(name);
    int64_t changed = 0;
    if (it != previous_.end() && it->second.sizes() == q.sizes()) {
      changed = (it->second != q).sum().item<int64_t>();
    }
    ratios[name] = q.numel() > 0 ? static_cast<double>(changed) / q.numel() : 0.0;
    flipped += changed;
    total += q.numel();
    previous_[name] = q;
  }
  ratios[""] = total > 0 ? static_cast<double>(flipped) / total : 0.0;
  return ratios;
}

std::pair<std::vector<at::Tensor>, std::vector<at::Tensor>> split_binary_parameters(
    torch::nn::Module& model) {
  std::vector<at::Tensor> binary, others;
  std::set<const void*> seen;
  for (auto& [name, layer] : nn::quant_layers(model)) {
    if (layer->kernel_precision() == 1) {
      binary.push_back(layer->weight);
      seen.insert(layer->weight.unsafeGetTensorImpl());
    }
  }
  for (const auto& p : model.parameters()) {
    if (!seen.count(p.unsafeGetTensorImpl())) others.push_back(p);
  }
  return {binary, others};
}

}  // namespace optim
}  // namespace lowbit
