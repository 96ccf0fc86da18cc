// Quantizer objects and quantized layers from C++, against computations written out with the
// operators and torch::nn::functional.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <stdexcept>

#include "lowbit/network.h"
#include "lowbit/nn.h"
#include "lowbit/ops.h"
#include "lowbit/optim.h"

namespace {

namespace F = torch::nn::functional;
using lowbit::nn::make_quantizer;
using lowbit::nn::QuantizerRole;
using lowbit::nn::QuantizerSpec;

template <class Fn>
void expect_invalid(Fn&& fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one naming '" << needle << "'";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(QuantizerSpec, ParsesNamesAndOptions) {
  const QuantizerSpec s = QuantizerSpec::parse(" dorefa( k_bit = 3 , mode=weights ) ");
  EXPECT_EQ(s.name, "dorefa");
  EXPECT_EQ(s.options.at("k_bit"), "3");
  EXPECT_EQ(s.options.at("mode"), "weights");
  EXPECT_EQ(s.str(), "dorefa(k_bit=3, mode=weights)");
  EXPECT_TRUE(QuantizerSpec::parse("ste_sign").options.empty());
  EXPECT_TRUE(QuantizerSpec::parse("ste_sign()").options.empty());
  expect_invalid([] { QuantizerSpec::parse("dorefa(k_bit=2"); }, "')'");
  expect_invalid([] { QuantizerSpec::parse("dorefa(k_bit)"); }, "k_bit");
  expect_invalid([] { QuantizerSpec::parse("dorefa(k_bit=2, k_bit=3)"); }, "twice");
  expect_invalid([] { QuantizerSpec::parse("2bit"); }, "2bit");
}

TEST(Quantizer, PrecisionOfEveryQuantizer) {
  const std::vector<std::pair<std::string, int64_t>> want = {
      {"ste_sign", 1},
      {"approx_sign", 1},
      {"swish_sign", 1},
      {"ste_heaviside", 1},
      {"magnitude_aware_sign", 1},
      {"ste_tern", 2},
      {"dorefa", 2},
      {"dorefa(k_bit=4)", 4},
      {"binary_mean_scaling", 1},
      {"binary_channel_wise_mean_scaling", 1},
      {"linear_mid_tread_half(bit=3)", 3},
      {"twn_weight", 2},
      {"ttq_weight", 2}};
  for (const auto& [spec, bits] : want) {
    EXPECT_EQ(make_quantizer(spec, QuantizerRole::kInput)->precision(), bits) << spec;
  }
  EXPECT_TRUE(make_quantizer("none", QuantizerRole::kInput).is_empty());
}

TEST(Quantizer, ErrorsNameTheQuantizerOrOption) {
  expect_invalid([] { make_quantizer("sign", QuantizerRole::kInput); }, "sign");
  expect_invalid([] { make_quantizer("ste_sign(clip=1)", QuantizerRole::kInput); }, "clip");
  expect_invalid([] { make_quantizer("dorefa(k_bit=two)", QuantizerRole::kInput); }, "k_bit");
  expect_invalid([] { make_quantizer("dorefa(mode=bias)", QuantizerRole::kInput); }, "mode");
  expect_invalid(
      [] { make_quantizer("ste_tern(ternary_weight_networks=maybe)", QuantizerRole::kInput); },
      "ternary_weight_networks");
}

TEST(Quantizer, OptionsReachTheOperator) {
  auto x = torch::linspace(-2, 2, 17);
  auto q = make_quantizer("ste_tern(threshold_value=0.5, clip_value=none)", QuantizerRole::kInput);
  EXPECT_TRUE(torch::equal(q->forward(x), lowbit::ste_tern(x, 0.5, false, c10::nullopt)));
  auto d = make_quantizer("dorefa(k_bit=3, mode=weights)", QuantizerRole::kKernel);
  EXPECT_TRUE(torch::equal(d->forward(x), lowbit::dorefa(x, 3, "weights")));
}

TEST(Quantizer, KernelRoleScalesPerOutputChannel) {
  torch::manual_seed(2);
  auto w = torch::randn({4, 3, 3, 3});
  auto k = make_quantizer("magnitude_aware_sign", QuantizerRole::kKernel);
  EXPECT_TRUE(torch::equal(k->forward(w), lowbit::magnitude_aware_sign(w, 1.0, 0)));
  auto i = make_quantizer("binary_channel_wise_mean_scaling", QuantizerRole::kInput);
  EXPECT_TRUE(torch::equal(i->forward(w), lowbit::binary_channel_wise_mean_scaling(w, -1)));
  // One scale per output channel: |y| is constant within each w[o].
  auto y = k->forward(w).abs();
  for (int o = 0; o < 4; ++o) EXPECT_EQ(y[o].max().item<float>(), y[o].min().item<float>());
}

TEST(QuantLinear, ForwardAndGradientsMatchTheOperators) {
  torch::manual_seed(3);
  lowbit::nn::QuantLinear layer(lowbit::nn::QuantLinearOptions(6, 4)
                                    .input_quantizer("ste_sign")
                                    .kernel_quantizer("ste_sign")
                                    .kernel_constraint("weight_clip"));
  EXPECT_EQ(layer->input_precision(), 1);
  EXPECT_EQ(layer->kernel_precision(), 1);
  auto x = torch::randn({5, 6}).requires_grad_();
  auto y = layer->forward(x);
  auto w = layer->weight.detach().clone().requires_grad_();
  auto b = layer->bias.detach().clone().requires_grad_();
  auto x2 = x.detach().clone().requires_grad_();
  auto want = F::linear(lowbit::ste_sign(x2), lowbit::ste_sign(w), b);
  EXPECT_TRUE(torch::equal(y, want));
  auto g = torch::randn({5, 4});
  y.backward(g);
  want.backward(g);
  EXPECT_TRUE(torch::equal(x.grad(), x2.grad()));
  EXPECT_TRUE(torch::equal(layer->weight.grad(), w.grad()));
  EXPECT_TRUE(torch::equal(layer->bias.grad(), b.grad()));  // the bias is not quantized
}

TEST(QuantLinear, WeightClipAfterAStep) {
  lowbit::nn::QuantLinear layer(
      lowbit::nn::QuantLinearOptions(3, 2).kernel_constraint("weight_clip(clip_value=0.25)"));
  {
    torch::NoGradGuard no_grad;
    layer->weight.copy_(torch::tensor({{-1.0f, 0.1f, 0.3f}, {0.2f, -0.25f, 2.0f}}));
  }
  lowbit::nn::apply_constraints(*layer);
  EXPECT_TRUE(
      torch::equal(layer->weight, torch::tensor({{-0.25f, 0.1f, 0.25f}, {0.2f, -0.25f, 0.25f}})));
  expect_invalid(
      [] {
        lowbit::nn::QuantLinear(lowbit::nn::QuantLinearOptions(3, 2).kernel_constraint("max_norm"));
      },
      "max_norm");
}

TEST(QuantConv2d, SameOnePaddingAfterTheInputQuantizer) {
  torch::manual_seed(4);
  lowbit::nn::QuantConv2d conv(lowbit::nn::QuantConv2dOptions(3, 5, 3)
                                   .padding(1)
                                   .input_quantizer("ste_sign")
                                   .kernel_quantizer("ste_sign")
                                   .pad_values(1.0));
  auto x = torch::randn({2, 3, 6, 7});
  auto want = F::conv2d(F::pad(lowbit::ste_sign(x), F::PadFuncOptions({1, 1, 1, 1}).value(1.0)),
                        lowbit::ste_sign(conv->weight), F::Conv2dFuncOptions().bias(conv->bias));
  EXPECT_TRUE(torch::equal(conv->forward(x), want));
  // Zero padding differs exactly on the border of the output.
  auto zero = F::conv2d(lowbit::ste_sign(x), lowbit::ste_sign(conv->weight),
                        F::Conv2dFuncOptions().bias(conv->bias).padding(1));
  auto diff = (conv->forward(x) != zero).any(1).any(0);
  auto border = torch::ones({6, 7}, torch::kBool);
  border.index_put_({torch::indexing::Slice(1, 5), torch::indexing::Slice(1, 6)}, false);
  EXPECT_TRUE(torch::equal(diff, border));
}

TEST(QuantConv2d, DepthwiseWithScaledKernels) {
  torch::manual_seed(5);
  lowbit::nn::QuantConv2d conv(lowbit::nn::QuantConv2dOptions(4, 8, {3, 3})
                                   .groups(4)
                                   .stride(2)
                                   .bias(false)
                                   .kernel_quantizer("magnitude_aware_sign"));
  ASSERT_EQ(conv->weight.sizes(), torch::IntArrayRef({8, 1, 3, 3}));
  EXPECT_FALSE(conv->bias.defined());
  auto x = torch::randn({1, 4, 9, 9});
  auto want = F::conv2d(x, lowbit::magnitude_aware_sign(conv->weight, 1.0, 0),
                        F::Conv2dFuncOptions().stride(2).groups(4));
  EXPECT_TRUE(torch::equal(conv->forward(x), want));
}

TEST(QuantConv2d, TtqScalesAreTrainedParameters) {
  lowbit::nn::QuantConv2d conv(
      lowbit::nn::QuantConv2dOptions(2, 2, 1).kernel_quantizer("ttq_weight(positive=0.5)"));
  auto params = conv->named_parameters();
  ASSERT_TRUE(params.contains("kernel_quantizer.positive"));
  EXPECT_EQ(params["kernel_quantizer.positive"].item<float>(), 0.5f);
  conv->forward(torch::randn({1, 2, 3, 3})).sum().backward();
  EXPECT_TRUE(params["kernel_quantizer.positive"].grad().defined());
  EXPECT_TRUE(params["kernel_quantizer.negative"].grad().defined());
}

}  // namespace

namespace {

TEST(Bop, FlipsExactlyWhereMomentumAgreesWithTheWeight) {
  // Weights +1, +1, -1, -1, 0 (sign +1); gamma 0.5, threshold 0.1.
  auto w = torch::tensor({1.0f, 1.0f, -1.0f, -1.0f, 0.0f}).requires_grad_();
  lowbit::optim::Bop bop({w}, lowbit::optim::BopOptions(0.1, 0.5));
  // m = 0.5 g: w * m = 0.3, -0.3, 0.05, -0.5, 0.3 -> flips at 0 and 4 (> 0.1), keeps the rest.
  w.mutable_grad() = torch::tensor({0.6f, -0.6f, -0.1f, 1.0f, 0.6f});
  bop.step();
  EXPECT_TRUE(torch::equal(w.detach(), torch::tensor({-1.0f, 1.0f, -1.0f, -1.0f, -1.0f})));
  // Second step, zero gradient: m halves to 0.15, -0.15, -0.025, 0.25, 0.15;
  // w * m = -0.15, -0.15, 0.025, -0.25, -0.15: nothing above 0.1, nothing flips.
  w.mutable_grad() = torch::zeros({5});
  bop.step();
  EXPECT_TRUE(torch::equal(w.detach(), torch::tensor({-1.0f, 1.0f, -1.0f, -1.0f, -1.0f})));
  EXPECT_THROW(lowbit::optim::Bop({w}, lowbit::optim::BopOptions(1e-8, 0.0)), c10::Error);
}

TEST(Bop, TrainsBesideAdamThroughSplitParameters) {
  torch::manual_seed(7);
  torch::nn::Sequential model(
      lowbit::nn::QuantLinear(lowbit::nn::QuantLinearOptions(8, 16).kernel_quantizer("ste_sign")),
      torch::nn::Tanh(), lowbit::nn::QuantLinear(lowbit::nn::QuantLinearOptions(16, 1)));
  auto [binary, others] = lowbit::optim::split_binary_parameters(*model);
  ASSERT_EQ(binary.size(), 1u);
  EXPECT_EQ(binary[0].sizes(), torch::IntArrayRef({16, 8}));
  EXPECT_EQ(others.size(), 3u);  // first bias, second weight and bias
  lowbit::optim::Bop bop(binary, lowbit::optim::BopOptions(1e-6, 1e-2));
  torch::optim::Adam adam(others, torch::optim::AdamOptions(1e-2));
  auto x = torch::randn({64, 8});
  auto target = x.sum(1, true).sign();
  double first = 0, last = 0;
  for (int i = 0; i < 60; ++i) {
    bop.zero_grad();
    adam.zero_grad();
    auto loss = torch::mse_loss(model->forward(x), target);
    loss.backward();
    bop.step();
    adam.step();
    (i == 0 ? first : last) = loss.item<double>();
  }
  EXPECT_LT(last, 0.5 * first);
  EXPECT_TRUE(torch::equal(binary[0].abs(), torch::ones_like(binary[0])));  // still +-1
}

TEST(FlipRatio, CountsChangedQuantizedKernelValues) {
  lowbit::nn::QuantLinear layer(lowbit::nn::QuantLinearOptions(2, 2).kernel_quantizer("ste_sign"));
  {
    torch::NoGradGuard no_grad;
    layer->weight.copy_(torch::tensor({{0.5f, -0.5f}, {0.2f, 0.3f}}));
  }
  lowbit::optim::FlipRatio flips;
  EXPECT_EQ(flips.update(*layer).at(""), 0.0);
  {
    torch::NoGradGuard no_grad;
    layer->weight.copy_(torch::tensor({{-0.5f, -0.4f}, {0.1f, 0.3f}}));  // one sign changes
  }
  EXPECT_EQ(flips.update(*layer).at(""), 0.25);
  EXPECT_EQ(flips.update(*layer).at(""), 0.0);
}

}  // namespace

namespace {

TEST(Bop, StateRoundTripsThroughSaveAndLoad) {
  auto make = [] { return torch::tensor({1.0f, -1.0f, 1.0f}).requires_grad_(); };
  auto w1 = make(), w2 = make();
  lowbit::optim::Bop a({w1}, lowbit::optim::BopOptions(0.05, 0.5));
  w1.mutable_grad() = torch::tensor({0.08f, -0.08f, -0.5f});
  a.step();  // m = 0.04, -0.04, -0.25: nothing flips yet
  std::stringstream buffer;
  torch::save(a, buffer);
  lowbit::optim::Bop b({w2}, lowbit::optim::BopOptions(0.05, 0.5));
  torch::load(b, buffer);
  // The same gradient again: m = 0.06, -0.06, -0.375 -> the first two flip, with or without reload.
  for (auto* pair : {&w1, &w2}) pair->mutable_grad() = torch::tensor({0.08f, -0.08f, -0.5f});
  a.step();
  b.step();
  EXPECT_TRUE(torch::equal(w1.detach(), torch::tensor({-1.0f, 1.0f, 1.0f})));
  EXPECT_TRUE(torch::equal(w2.detach(), w1.detach()));
}

}  // namespace

namespace {

TEST(Summary, CountsParametersAndMacsByBitWidth) {
  using lowbit::nn::QuantConv2dOptions;
  using lowbit::nn::QuantLinearOptions;
  torch::nn::Sequential model(
      lowbit::nn::QuantConv2d(QuantConv2dOptions(1, 8, 3).padding(1).kernel_quantizer("ste_sign")),
      torch::nn::BatchNorm2d(8),
      lowbit::nn::QuantConv2d(QuantConv2dOptions(8, 16, 3)
                                  .bias(false)
                                  .input_quantizer("ste_sign")
                                  .kernel_quantizer("ste_sign")),
      torch::nn::Flatten(),
      lowbit::nn::QuantLinear(QuantLinearOptions(16 * 4 * 4, 10)
                                  .input_quantizer("ste_sign")
                                  .kernel_quantizer("ste_tern")));
  const auto s = lowbit::nn::summary(*model, {2, 1, 6, 6});
  ASSERT_EQ(s.rows.size(), 4u);  // the Flatten has no parameters
  // conv1: 72 one-bit weights, 8 float biases; its MACs are 32-bit (float input): 6*6*8 * 9.
  EXPECT_EQ(s.rows[0].params_by_bits.at(1), 72);
  EXPECT_EQ(s.rows[0].params_by_bits.at(32), 8);
  EXPECT_EQ(s.rows[0].macs_by_bits.at(32), 6 * 6 * 8 * 9);
  EXPECT_EQ(s.rows[0].output_shape, (std::vector<int64_t>{2, 8, 6, 6}));
  // batch norm: 16 trainable + 16 running statistics (num_batches_tracked is not a parameter).
  EXPECT_EQ(s.rows[1].params_by_bits.at(32), 32);
  // conv2: binary input and kernel: 4*4*16 * 8*9 binarized MACs.
  EXPECT_EQ(s.rows[2].params_by_bits.at(1), 16 * 8 * 9);
  EXPECT_EQ(s.rows[2].macs_by_bits.at(1), 4 * 4 * 16 * 8 * 9);
  // linear: ternary kernel with a binary input: 2-bit MACs.
  EXPECT_EQ(s.rows[3].params_by_bits.at(2), 2560);
  EXPECT_EQ(s.rows[3].macs_by_bits.at(2), 2560);
  const int64_t total = 72 + 8 + 32 + 1152 + 2560 + 10;
  EXPECT_EQ(s.total_params, total);
  EXPECT_EQ(s.non_trainable_params, 16);
  const double bits = 72 + 1152 + 2.0 * 2560 + 32.0 * (8 + 32 + 10);
  EXPECT_DOUBLE_EQ(s.model_size_kib, bits / 8 / 1024);
  EXPECT_DOUBLE_EQ(s.float32_kib, total * 4.0 / 1024);
  EXPECT_DOUBLE_EQ(s.compression_ratio, s.float32_kib / s.model_size_kib);
  const double macs = 2592 + 18432 + 2560;
  EXPECT_EQ(s.total_macs, 2592 + 18432 + 2560);
  EXPECT_DOUBLE_EQ(s.binarized_mac_ratio, 18432 / macs);
  EXPECT_DOUBLE_EQ(s.ternarized_mac_ratio, 2560 / macs);
  const std::string text = s.to_string();
  EXPECT_NE(text.find("1-bit MACs"), std::string::npos) << text;
  EXPECT_NE(text.find("(-1, 16, 4, 4)"), std::string::npos) << text;
  EXPECT_NE(text.find("Ratio of MACs that are binarized"), std::string::npos) << text;
}

}  // namespace

namespace {

TEST(Network, FirstAndLastLayersKeepFullPrecisionUnlessAsked) {
  lowbit::nn::NetworkOptions o;
  o.blocks = {8, 8, 0, 16, 0};
  o.hidden = 32;
  o.input_quantizer = "ste_sign";
  o.kernel_quantizer = "ste_sign";
  o.kernel_constraint = "weight_clip";
  o.activation = "none";
  o.pad_values = 1.0;
  auto net = lowbit::nn::build_network(o);
  auto layers = lowbit::nn::quant_layers(*net);
  ASSERT_EQ(layers.size(), 5u);  // 3 convs, hidden dense, classifier
  EXPECT_EQ(layers.front().second->input_precision(), 32);
  EXPECT_EQ(layers.front().second->kernel_precision(), 32);
  for (size_t i = 1; i + 1 < layers.size(); ++i) {
    EXPECT_EQ(layers[i].second->input_precision(), 1) << layers[i].first;
    EXPECT_EQ(layers[i].second->kernel_precision(), 1) << layers[i].first;
  }
  EXPECT_EQ(layers.back().second->kernel_precision(), 32);
  auto y = net->forward(torch::randn({3, 1, 28, 28}));
  EXPECT_EQ(y.sizes(), torch::IntArrayRef({3, 10}));
  // Pools come before the batch norm of the conv they follow: conv, pool, BN.
  EXPECT_EQ(net[2]->name(), "lowbit::nn::QuantConv2dImpl");
  EXPECT_EQ(net[3]->name(), "torch::nn::MaxPool2dImpl");
  EXPECT_EQ(net[4]->name(), "torch::nn::BatchNorm2dImpl");

  o.quantize_first_convolution = o.quantize_last_convolution = true;
  auto all = lowbit::nn::quant_layers(*lowbit::nn::build_network(o));
  EXPECT_EQ(all.front().second->kernel_precision(), 1);
  EXPECT_EQ(all.back().second->kernel_precision(), 1);
  o.activation = "gelu";
  EXPECT_THROW(lowbit::nn::build_network(o), c10::Error);
}

}  // namespace

namespace {

TEST(Network, UsualPoolOrderAndBiRealShortcuts) {
  lowbit::nn::NetworkOptions o;
  o.height = o.width = 8;
  o.blocks = {4, 0, 8, 8};
  o.hidden = 0;
  o.pool_before_batchnorm = false;
  auto plain = lowbit::nn::build_network(o);
  // conv, BN, ReLU, pool: the batch norm follows its conv directly.
  EXPECT_EQ(plain[1]->name(), "torch::nn::BatchNorm2dImpl");
  EXPECT_EQ(plain[2]->name(), "torch::nn::ReLUImpl");
  EXPECT_EQ(plain[3]->name(), "torch::nn::MaxPool2dImpl");

  o.shortcuts = true;
  o.activation = "none";
  o.input_quantizer = "approx_sign";
  o.kernel_quantizer = "magnitude_aware_sign";
  auto net = lowbit::nn::build_network(o);
  // float conv + BN, pool, a block widening 4 -> 8 (projection), a block 8 -> 8 (identity).
  ASSERT_EQ(net[3]->name(), "lowbit::nn::ShortcutBlockImpl");
  ASSERT_EQ(net[4]->name(), "lowbit::nn::ShortcutBlockImpl");
  auto widen = net[3]->as<lowbit::nn::ShortcutBlockImpl>();
  auto same = net[4]->as<lowbit::nn::ShortcutBlockImpl>();
  EXPECT_FALSE(widen->projection.is_empty());
  EXPECT_TRUE(same->projection.is_empty());
  net->eval();
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({2, 8, 4, 4});
  EXPECT_TRUE(torch::allclose(same->forward(x), same->body->forward(x) + x));
  const auto x4 = torch::randn({2, 4, 4, 4});
  EXPECT_TRUE(torch::allclose(widen->forward(x4),
                              widen->body->forward(x4) + widen->projection->forward(x4)));
  const auto layers = lowbit::nn::quant_layers(*net);
  // first conv, widening body, its projection (float), identity body, classifier
  ASSERT_EQ(layers.size(), 5u);
  EXPECT_EQ(layers[1].second->kernel_precision(), 1);
  EXPECT_EQ(layers[2].second->kernel_precision(), 32);
  EXPECT_EQ(net->forward(torch::randn({2, 1, 8, 8})).sizes(), torch::IntArrayRef({2, 10}));
  // The summary sees the shapes inside the blocks too.
  bool seen = false;
  for (const auto& row : lowbit::nn::summary(*net, {1, 1, 8, 8}).rows) {
    if (row.name == "3.body.1") {
      seen = true;
      EXPECT_EQ(row.output_shape, (std::vector<int64_t>{1, 8, 4, 4}));
    }
  }
  EXPECT_TRUE(seen);
}

}  // namespace
