// The README's C++ example, built as `build/lowbit_example` so that it keeps compiling: operators
// through the dispatcher, autograd from C++, and the backward override.
#include <torch/torch.h>

#include <iostream>

#include "lowbit/ops.h"

namespace {
void print_row(const char* what, const at::Tensor& t) {
  std::cout << what;
  for (int64_t i = 0; i < t.numel(); ++i) std::cout << ' ' << t[i].item<float>();
  std::cout << '\n';
}
}  // namespace

int main() {
  torch::manual_seed(0);
  auto x = torch::randn({4, 8}, torch::requires_grad());
  auto y = lowbit::ste_sign(x, 1.0);
  auto [lo, hi] = lowbit::pow2_range(torch::tensor(-0.3f), torch::tensor(0.3f));
  auto q = lowbit::fake_quant_pow2(x, lo, hi, /*num_bits=*/8);
  auto z = lowbit::with_backward(
      x, [](const at::Tensor& t) { return lowbit::approx_sign(t); },
      [](const at::Tensor& /*x*/, const at::Tensor& g) { return g * 0.5; });
  (y.sum() + q.sum() + z.sum()).backward();

  std::cout << "C++: pow2_range(-0.3, 0.3)   = [" << lo.item<float>() << ", " << hi.item<float>()
            << "]\n";
  print_row("C++: x[0]                   =", x[0].detach());
  print_row("C++: ste_sign(x[0])         =", y[0].detach());
  print_row("C++: d sum(y + q + z)/dx[0] =", x.grad()[0]);
  return 0;
}
