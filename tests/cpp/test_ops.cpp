// The operators from C++: schemas as the spec names them, dispatcher calls with defaults, autograd
// from C++, errors that name the argument, and the backward override (a std::function).
#include <ATen/core/dispatch/Dispatcher.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>

#include "lowbit/ops.h"

namespace {

std::string schema_of(const char* name) {
  return c10::toString(c10::Dispatcher::singleton().findSchemaOrThrow(name, "").schema());
}

// Expects `f` to throw a c10::Error whose message contains `needle`.
template <class F>
void expect_error_naming(F&& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one naming '" << needle << "'";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Schemas, NamesAndDefaultsFollowTheSpec) {
  EXPECT_EQ(schema_of("lowbit::ste_sign"),
            "lowbit::ste_sign(Tensor x, float? clip_value=1.) -> Tensor");
  EXPECT_EQ(schema_of("lowbit::fake_quant_with_min_max_args"),
            "lowbit::fake_quant_with_min_max_args(Tensor inputs, float min=-6., float max=6., "
            "int num_bits=8, bool narrow_range=False) -> Tensor");
  EXPECT_EQ(schema_of("lowbit::ste_tern"),
            "lowbit::ste_tern(Tensor x, float threshold_value=0.050000000000000003, "
            "bool ternary_weight_networks=False, float? clip_value=1.) -> Tensor");
  EXPECT_EQ(schema_of("lowbit::dorefa"),
            "lowbit::dorefa(Tensor x, int k_bit=2, str mode=\"activations\") -> Tensor");
  EXPECT_EQ(schema_of("lowbit::pow2_range"),
            "lowbit::pow2_range(Tensor min, Tensor max, int num_bits=8, int? max_exponent=None) -> "
            "(Tensor, Tensor)");
  for (const char* name :
       {"lowbit::fake_quant_with_min_max_args_gradient", "lowbit::fake_quant_with_min_max_vars",
        "lowbit::fake_quant_with_min_max_vars_gradient",
        "lowbit::fake_quant_with_min_max_vars_per_channel",
        "lowbit::fake_quant_with_min_max_vars_per_channel_gradient", "lowbit::approx_sign",
        "lowbit::swish_sign", "lowbit::ste_heaviside", "lowbit::magnitude_aware_sign",
        "lowbit::binary_mean_scaling", "lowbit::binary_channel_wise_mean_scaling",
        "lowbit::linear_mid_tread_half", "lowbit::twn_weight", "lowbit::ttq_weight",
        "lowbit::fake_quant_pow2"}) {
    EXPECT_NO_THROW(schema_of(name)) << name;
  }
}

TEST(Ops, SteSignForwardAndClippedGradient) {
  auto x = torch::tensor({-2.0f, -1.0f, -0.5f, 0.0f, 0.5f, 1.0f, 2.0f}).requires_grad_();
  auto y = lowbit::ste_sign(x);
  EXPECT_TRUE(torch::equal(y, torch::tensor({-1.0f, -1.0f, -1.0f, 1.0f, 1.0f, 1.0f, 1.0f})));
  y.sum().backward();
  EXPECT_TRUE(torch::equal(x.grad(), torch::tensor({0.0f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 0.0f})));
}

TEST(Ops, ClipValueNoneIsIdentityGradient) {
  auto x = torch::tensor({-3.0, 0.25, 7.0}, torch::kDouble).requires_grad_();
  lowbit::ste_sign(x, c10::nullopt).backward(torch::tensor({1.0, 2.0, 3.0}, torch::kDouble));
  EXPECT_TRUE(torch::equal(x.grad(), torch::tensor({1.0, 2.0, 3.0}, torch::kDouble)));
}

TEST(Ops, FakeQuantArgsNudgesTheDefaultRange) {
  // [-6, 6] at 8 bits: zero point 128, range [-128, 127] * 12/255 (float32 arithmetic).
  const float scale = 12.0f / 255.0f;
  auto y = lowbit::fake_quant_with_min_max_args(torch::tensor({-100.0f, 0.0f, 100.0f}));
  EXPECT_EQ(y[0].item<float>(), -128.0f * scale);
  EXPECT_EQ(y[1].item<float>(), 0.0f);
  EXPECT_EQ(y[2].item<float>(), 127.0f * scale);
}

TEST(Ops, VarsGradientFromAutogradMatchesTheExplicitOp) {
  torch::manual_seed(3);
  auto x = (torch::randn({37, 5}) * 2).requires_grad_();
  auto mn = torch::tensor(-1.0f).requires_grad_();
  auto mx = torch::tensor(1.5f).requires_grad_();
  auto g = torch::randn({37, 5});
  lowbit::fake_quant_with_min_max_vars(x, mn, mx, 4).backward(g);
  auto [dx, dmin, dmax] =
      lowbit::fake_quant_with_min_max_vars_gradient(g, x.detach(), mn.detach(), mx.detach(), 4);
  EXPECT_TRUE(torch::equal(x.grad(), dx));
  EXPECT_TRUE(torch::equal(mn.grad(), dmin));
  EXPECT_TRUE(torch::equal(mx.grad(), dmax));
  // Independent check of the sums: the nudged window of [-1, 1.5] at 4 bits.
  const float s = 2.5f / 15.0f;
  const float zp = std::round(0.0f - (-1.0f) / s);
  const float lo = (0.0f - zp) * s, hi = (15.0f - zp) * s;
  auto xd = x.detach();
  EXPECT_NEAR(dmin.item<float>(), (g * (xd < lo)).sum().item<float>(), 1e-4);
  EXPECT_NEAR(dmax.item<float>(), (g * (xd > hi)).sum().item<float>(), 1e-4);
}

TEST(Ops, Pow2RangeWorkedValues) {
  auto [lo, hi] = lowbit::pow2_range(torch::tensor(-0.3f), torch::tensor(0.3f));
  EXPECT_EQ(lo.item<float>(), -0.5f);
  EXPECT_EQ(hi.item<float>(), 0.49609375f);
  auto [blo, bhi] = lowbit::pow2_range(torch::tensor(-20.0), torch::tensor(20.0), 16, 3);
  EXPECT_EQ(blo.item<double>(), -8.0);
  EXPECT_EQ(bhi.item<double>(), 7.999755859375);
}

TEST(Ops, ErrorsNameTheArgument) {
  auto x = torch::randn({4, 3});
  expect_error_naming([&] { lowbit::fake_quant_with_min_max_args(x, -1, 1, 1); }, "num_bits");
  expect_error_naming([&] { lowbit::fake_quant_with_min_max_args(x, 1, 1); }, "min");
  expect_error_naming(
      [&] { lowbit::fake_quant_with_min_max_vars(x, torch::zeros({2}), torch::ones({2})); }, "min");
  expect_error_naming(
      [&] {
        lowbit::fake_quant_with_min_max_vars_per_channel(x, torch::zeros({4}), torch::ones({4}));
      },
      "min");
  expect_error_naming([&] { lowbit::ste_sign(torch::ones({3}, torch::kInt)); }, "x");
  expect_error_naming([&] { lowbit::dorefa(x, 2, "bias"); }, "mode");
  expect_error_naming([&] { lowbit::dorefa(x, 0); }, "k_bit");
  expect_error_naming(
      [&] { lowbit::fake_quant_with_min_max_args_gradient(torch::ones({3}), torch::ones({4})); },
      "same size");
}

TEST(Ops, WithBackwardReplacesOnlyTheGradientOfX) {
  auto x = torch::tensor({-2.0f, 0.5f, 3.0f}).requires_grad_();
  auto p = torch::tensor(0.7f).requires_grad_();
  auto n = torch::tensor(0.4f).requires_grad_();
  auto y = lowbit::with_backward(
      x, [&](const at::Tensor& t) { return lowbit::ttq_weight(t, p, n, 0.05); },
      [](const at::Tensor& xs, const at::Tensor& g) { return g * xs; });
  y.backward(torch::tensor({1.0f, 2.0f, 4.0f}));
  EXPECT_TRUE(torch::equal(x.grad(), torch::tensor({-2.0f, 1.0f, 12.0f})));
  // Defaults for the others: d/dpositive = sum(g[x > D]), d/dnegative = sum(g[x < -D]).
  EXPECT_EQ(p.grad().item<float>(), 6.0f);
  EXPECT_EQ(n.grad().item<float>(), 1.0f);
}

TEST(Ops, HalfPrecisionIsComputedInFloat32) {
  torch::manual_seed(1);
  auto x = torch::randn({1000}).to(torch::kHalf);
  auto want = lowbit::linear_mid_tread_half(x.to(torch::kFloat), 3, 1.5).to(torch::kHalf);
  auto got = lowbit::linear_mid_tread_half(x, 3, 1.5);
  EXPECT_EQ(got.scalar_type(), torch::kHalf);
  EXPECT_TRUE(torch::equal(got, want));
}

// The operators' at::parallel_for runs on LibTorch's threads: a build without LibTorch's OpenMP
// flags ran every CPU operator on one thread whatever at::set_num_threads said.
TEST(Ops, CpuOperatorsUseLibTorchsThreads) {
  const int before = at::get_num_threads();
  // 3, not this machine's core count: a second OpenMP runtime would default to the cores.
  at::set_num_threads(3);
  EXPECT_EQ(lowbit::internal::parallel_threads(64), 3);
  EXPECT_EQ(lowbit::internal::parallel_threads(1), 1);
  at::set_num_threads(1);
  EXPECT_EQ(lowbit::internal::parallel_threads(64), 1);
  at::set_num_threads(before);
  expect_error_naming([] { lowbit::internal::parallel_threads(0); }, "tasks");
}

}  // namespace
