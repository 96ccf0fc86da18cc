// Blueoil's `backward=` override in C++: an autograd node that sends grad_y to backward(x, grad_y)
// for x and unchanged to whatever else the forward used.
#include <torch/autograd.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>

#include "lowbit/ops.h"

namespace lowbit {
namespace {

class OverrideBackward : public torch::autograd::Node {
 public:
  OverrideBackward(BackwardFn fn, const at::Tensor& x) : fn_(std::move(fn)), x_(x, false) {}
  std::string name() const override { return "lowbit::OverrideBackward"; }
  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    torch::autograd::variable_list out(2);
    const at::Tensor& g = grads[0];
    if (!g.defined()) return out;
    if (should_compute_output(0)) {
      at::Tensor dx = fn_(x_.unpack(), g);
      TORCH_CHECK(dx.defined() && dx.sizes() == x_.unpack().sizes(),
                  "backward must return a tensor of the shape of x");
      out[0] = dx;
    }
    if (should_compute_output(1)) out[1] = g;
    return out;
  }
  void release_variables() override { x_.reset_data(); }

 private:
  BackwardFn fn_;
  torch::autograd::SavedVariable x_;
};

}  // namespace

at::Tensor with_backward(const at::Tensor& x, const ForwardFn& forward,
                         const BackwardFn& backward) {
  TORCH_CHECK_VALUE(static_cast<bool>(forward), "forward must be a function");
  TORCH_CHECK_VALUE(static_cast<bool>(backward), "backward must be a function");
  at::Tensor y = forward(x.detach());
  if (!torch::autograd::GradMode::is_enabled() || (!x.requires_grad() && !y.requires_grad())) {
    return y;
  }
  auto node = std::shared_ptr<OverrideBackward>(new OverrideBackward(backward, x),
                                                torch::autograd::deleteNode);
  node->set_next_edges(torch::autograd::collect_next_edges(x, y));
  at::Tensor out = y.detach();
  torch::autograd::set_history(out, node);
  return out;
}

}  // namespace lowbit
