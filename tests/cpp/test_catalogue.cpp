// The quantizer catalogue (lowbit/catalogue.h) against the operator schemas, and the C++ API's
// default arguments (ops.h) against the catalogue, quantizer by quantizer.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <functional>
#include <map>
#include <stdexcept>

#include "lowbit/catalogue.h"
#include "lowbit/nn.h"
#include "lowbit/ops.h"

namespace {

using lowbit::nn::QuantizerRole;

// Each quantizer's C++ API called with only its tensor arguments (ops.h's defaults).
const std::map<std::string, std::function<at::Tensor(const at::Tensor&)>>& api_defaults() {
  static const std::map<std::string, std::function<at::Tensor(const at::Tensor&)>> m = {
      {"ste_sign", [](const at::Tensor& x) { return lowbit::ste_sign(x); }},
      {"approx_sign", [](const at::Tensor& x) { return lowbit::approx_sign(x); }},
      {"swish_sign", [](const at::Tensor& x) { return lowbit::swish_sign(x); }},
      {"ste_heaviside", [](const at::Tensor& x) { return lowbit::ste_heaviside(x); }},
      {"magnitude_aware_sign", [](const at::Tensor& x) { return lowbit::magnitude_aware_sign(x); }},
      {"ste_tern", [](const at::Tensor& x) { return lowbit::ste_tern(x); }},
      {"dorefa", [](const at::Tensor& x) { return lowbit::dorefa(x); }},
      {"binary_mean_scaling", [](const at::Tensor& x) { return lowbit::binary_mean_scaling(x); }},
      {"binary_channel_wise_mean_scaling",
       [](const at::Tensor& x) { return lowbit::binary_channel_wise_mean_scaling(x); }},
      {"linear_mid_tread_half",
       [](const at::Tensor& x) { return lowbit::linear_mid_tread_half(x); }},
      {"twn_weight", [](const at::Tensor& x) { return lowbit::twn_weight(x); }},
      {"ttq_weight",
       [](const at::Tensor& x) {
         return lowbit::ttq_weight(x, torch::tensor(1.0f), torch::tensor(1.0f));
       }},
  };
  return m;
}

TEST(Catalogue, EveryQuantizerHasItsSchemasArguments) {
  ASSERT_EQ(lowbit::nn::quantizer_catalogue().size(), api_defaults().size());
  for (const auto& q : lowbit::nn::quantizer_catalogue()) {
    const auto& schema =
        c10::Dispatcher::singleton().findSchemaOrThrow(("lowbit::" + q.name).c_str(), "").schema();
    ASSERT_EQ(q.options.size() + 1, schema.arguments().size()) << q.name;
    for (size_t i = 0; i < q.options.size(); ++i) {
      EXPECT_EQ(q.options[i].key, schema.arguments()[i + 1].name()) << q.name;
    }
    EXPECT_TRUE(q.bits > 0 || !q.bits_option.empty()) << q.name;
  }
}

// A quantizer object made from the name alone gives the C++ API's result with its default
// arguments, forward and gradient: the defaults of ops.h and of the schemas agree.
TEST(Catalogue, QuantizersByNameEqualTheApiWithItsDefaults) {
  for (const auto& info : lowbit::nn::quantizer_catalogue()) {
    SCOPED_TRACE(info.name);
    ASSERT_TRUE(api_defaults().count(info.name));
    // Steps of 0.001 over [-3, 3): resolves every threshold and clip default.
    const at::Tensor base =
        torch::linspace(-3, 3, 6000, torch::kDouble).reshape({3, 2000}).to(torch::kFloat);
    const at::Tensor x1 = base.clone().requires_grad_(), x2 = base.clone().requires_grad_();
    auto q = lowbit::nn::make_quantizer(info.name, QuantizerRole::kInput);
    const at::Tensor y1 = q->forward(x1), y2 = api_defaults().at(info.name)(x2);
    EXPECT_TRUE(torch::equal(y1, y2));
    const at::Tensor g = torch::linspace(-1, 1, base.numel()).reshape(base.sizes());
    (y1 * g).sum().backward();
    (y2 * g).sum().backward();
    EXPECT_TRUE(torch::equal(x1.grad(), x2.grad()));
  }
}

TEST(Catalogue, ResolvedOptionsHaveEveryDefault) {
  auto q = lowbit::nn::make_quantizer("ste_tern(threshold_value=0.1)", QuantizerRole::kInput);
  EXPECT_DOUBLE_EQ(q->option("threshold_value").toDouble(), 0.1);
  EXPECT_FALSE(q->option("ternary_weight_networks").toBool());
  EXPECT_DOUBLE_EQ(q->option("clip_value").toDouble(), 1.0);
  auto k = lowbit::nn::make_quantizer("magnitude_aware_sign", QuantizerRole::kKernel);
  EXPECT_EQ(k->option("axis").toInt(), 0);
  EXPECT_THROW(k->option("beta"), std::invalid_argument);
  try {
    lowbit::nn::quantizer_info("sign");
    ADD_FAILURE() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("ste_sign, approx_sign"), std::string::npos) << e.what();
  }
}

}  // namespace
