// Quantization-aware training: observers, batch-norm folding against torch's own batch norm, the
// prepare step and the integer parameters, each against formulas written out here.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <optional>

#include "lowbit/network.h"
#include "lowbit/ops.h"
#include "lowbit/qat.h"

namespace {

namespace F = torch::nn::functional;
using lowbit::qat::QatOptions;
using lowbit::qat::Scheme;

// Power-of-2 fake quant written out from the spec (section 4, then section 1's vars forward), in
// float32 step by step.
float pow2_fq(float x, float lo, float hi, int bits, std::optional<int> max_exponent) {
  lo = std::min(lo, -1e-7f);
  hi = std::max(hi, 1e-7f);
  int e = std::max(static_cast<int>(std::ceil(std::log2(std::fabs(lo)))),
                   static_cast<int>(std::ceil(std::log2(std::fabs(hi)))));
  if (max_exponent) e = std::min(e, *max_exponent);
  const float nmin = -std::ldexp(1.0f, e), scale = std::ldexp(1.0f, e + 1 - bits);
  const float nmax = std::ldexp(1.0f, e) - scale;
  const float qz = std::ldexp(1.0f, bits - 1);
  const float c = std::max(std::min(x, nmax), nmin);
  return std::floor((c - nmin) / scale - qz + 0.5f) * scale;
}

at::Tensor pow2_fq(const at::Tensor& t, int bits, std::optional<int> max_exponent) {
  const float lo = t.min().item<float>(), hi = t.max().item<float>();
  auto out = t.detach().clone().contiguous();
  float* p = out.data_ptr<float>();
  for (int64_t i = 0; i < out.numel(); ++i) p[i] = pow2_fq(p[i], lo, hi, bits, max_exponent);
  return out;
}

QatOptions options(Scheme scheme, int64_t quant_delay = 0, int64_t freeze = -1) {
  QatOptions o;
  o.scheme = scheme;
  o.quant_delay = quant_delay;
  o.freeze_bn_delay = freeze;
  return o;
}

struct ConvBn {
  torch::nn::Conv2d conv{torch::nn::Conv2dOptions(3, 4, 3).padding(1).bias(true)};
  torch::nn::BatchNorm2d bn{4};
  ConvBn() {
    torch::NoGradGuard no_grad;
    bn->weight.uniform_(0.5, 1.5);
    bn->bias.uniform_(-0.5, 0.5);
    bn->running_mean.uniform_(-0.2, 0.2);
    bn->running_var.uniform_(0.5, 2.0);
  }
  lowbit::qat::FoldedLayer folded(const QatOptions& o) {
    lowbit::qat::FoldedLayerImpl::Geometry g;
    g.padding = {1, 1};
    return lowbit::qat::FoldedLayer(o, g, conv->weight, conv->bias, bn->weight, bn->bias,
                                    bn->running_mean, bn->running_var, 1e-5, 0.1);
  }
};

TEST(FoldedLayer, WithoutQuantizationTrainsExactlyAsConvThenBatchNorm) {
  torch::manual_seed(0);
  ConvBn ref;
  auto f = ref.folded(options(Scheme::kPow2, /*quant_delay=*/1000000));
  const auto x = torch::randn({5, 3, 6, 6});
  const auto r = torch::randn({5, 4, 6, 6});
  const auto y_ref = ref.bn->forward(ref.conv->forward(x));
  const auto y = f->forward(x);
  EXPECT_TRUE(torch::allclose(y, y_ref, 1e-4, 1e-5)) << (y - y_ref).abs().max();
  EXPECT_TRUE(torch::allclose(f->running_mean, ref.bn->running_mean, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(f->running_var, ref.bn->running_var, 1e-5, 1e-6));
  (y_ref * r).sum().backward();
  (y * r).sum().backward();
  EXPECT_TRUE(torch::allclose(f->weight.grad(), ref.conv->weight.grad(), 1e-3, 1e-4));
  EXPECT_TRUE(torch::allclose(f->gamma.grad(), ref.bn->weight.grad(), 1e-3, 1e-4));
  EXPECT_TRUE(torch::allclose(f->beta.grad(), ref.bn->bias.grad(), 1e-4, 1e-5));
  EXPECT_EQ(f->step.item<int64_t>(), 1);
}

TEST(FoldedLayer, EvalIsTheQuantizedFoldedConvolution) {
  torch::manual_seed(1);
  ConvBn ref;
  auto f = ref.folded(options(Scheme::kPow2));
  f->eval();
  const auto x = torch::randn({2, 3, 5, 5});
  torch::NoGradGuard no_grad;
  const auto scale = ref.bn->weight / (ref.bn->running_var + 1e-5).sqrt();
  const auto w_fold = ref.conv->weight * scale.view({-1, 1, 1, 1});
  const auto b_fold = ref.bn->bias + (ref.conv->bias - ref.bn->running_mean) * scale;
  const auto wq = pow2_fq(w_fold, 8, 3), bq = pow2_fq(b_fold, 16, 3);
  const auto y_ref = F::conv2d(x, wq, F::Conv2dFuncOptions().padding(1).bias(bq));
  const auto y = f->forward(x);
  EXPECT_TRUE(torch::allclose(y, y_ref, 1e-5, 1e-6)) << (y - y_ref).abs().max();
  EXPECT_EQ(f->step.item<int64_t>(), 0);  // eval does not count steps

  // The reported parameters describe exactly these values: integers times 2^-f in range.
  const auto wqq = f->weight_quantization();
  const auto ints = wq * std::ldexp(1.0, static_cast<int>(wqq.frac_bits));
  EXPECT_TRUE(torch::equal(ints, ints.round()));
  EXPECT_LE(ints.max().item<double>(), 127);
  EXPECT_GE(ints.min().item<double>(), -128);
  const auto bqq = f->bias_quantization();
  EXPECT_EQ(bqq.bits, 16);
  const auto bints = bq * std::ldexp(1.0, static_cast<int>(bqq.frac_bits));
  EXPECT_TRUE(torch::equal(bints, bints.round()));
  // And the largest folded weight needs exactly that exponent: f is the most it can be.
  const double m = w_fold.abs().max().item<double>();
  EXPECT_GT(m, std::ldexp(1.0, static_cast<int>(7 - wqq.frac_bits - 1)));
  EXPECT_LE(m, std::ldexp(1.0, static_cast<int>(7 - wqq.frac_bits)));
}

TEST(FoldedLayer, AfterTheFreezeTrainingUsesTheMovingStatistics) {
  torch::manual_seed(2);
  ConvBn ref;
  auto f = ref.folded(options(Scheme::kPow2, 0, /*freeze=*/0));
  const auto x = torch::randn({4, 3, 5, 5});
  const auto mean = f->running_mean.clone();
  const auto y_train = f->forward(x);
  EXPECT_TRUE(torch::equal(f->running_mean, mean));  // frozen: no update
  f->eval();
  const auto y_eval = f->forward(x);
  EXPECT_TRUE(torch::allclose(y_train, y_eval, 1e-6, 1e-7));
}

TEST(FoldedLayer, BatchStatisticsWithQuantizedWeightsMatchBatchNormOfThatConvolution) {
  // Before the freeze, the output is batch norm (batch statistics) of conv(x, q(w_fold)) / scale.
  torch::manual_seed(3);
  ConvBn ref;
  auto f = ref.folded(options(Scheme::kPow2));
  const auto x = torch::randn({6, 3, 5, 5});
  const auto y = f->forward(x);
  torch::NoGradGuard no_grad;
  const auto scale = ref.bn->weight / (ref.bn->running_var + 1e-5).sqrt();
  const auto wq = pow2_fq(ref.conv->weight * scale.view({-1, 1, 1, 1}), 8, 3);
  const auto raw = F::conv2d(x, wq, F::Conv2dFuncOptions().padding(1)) / scale.view({1, -1, 1, 1});
  const auto mean = raw.mean({0, 2, 3}), var = raw.var({0, 2, 3}, /*unbiased=*/false);
  const auto batch_std = (var + 1e-5).sqrt();
  const auto b = ref.bn->bias - mean * ref.bn->weight / batch_std;  // conv bias cancels
  const auto y_ref = (raw - mean.view({1, -1, 1, 1})) / batch_std.view({1, -1, 1, 1}) *
                         ref.bn->weight.view({1, -1, 1, 1}) +
                     ref.bn->bias.view({1, -1, 1, 1});
  // The folded bias is 16-bit: within half a step of the exact one.
  const double step =
      std::ldexp(1.0, static_cast<int>(-(15 - std::ceil(std::log2(b.abs().max().item<double>())))));
  EXPECT_LE((y - y_ref).abs().max().item<double>(), step / 2 + 1e-5);
}

TEST(FoldedLayer, QuantizedTrainingHasBatchNormsGradientThroughStraightThroughWeights) {
  // Reference: batch norm (torch's) of conv(x, w_ste) / s, w_ste = w_fold + (q(w_fold) - w_fold)
  // detached, so the gradient reaches w, gamma and beta as the straight-through estimator says.
  torch::manual_seed(7);
  ConvBn ref;
  ref.conv->bias.reset();
  auto f = ref.folded(options(Scheme::kPow2));
  const auto x = torch::randn({6, 3, 5, 5});
  const auto r = torch::randn({6, 4, 5, 5});
  const auto y = f->forward(x);
  (y * r).sum().backward();
  auto w = ref.conv->weight.detach().clone().requires_grad_(true);
  auto gamma = ref.bn->weight.detach().clone().requires_grad_(true);
  auto beta = ref.bn->bias.detach().clone().requires_grad_(true);
  const auto var = ref.bn->running_var.clone(), mean = ref.bn->running_mean.clone();
  const auto scale = gamma / (var + 1e-5).sqrt();
  const auto w_fold = w * scale.view({-1, 1, 1, 1});
  const auto w_ste = w_fold + (pow2_fq(w_fold, 8, 3) - w_fold).detach();
  const auto raw =
      F::conv2d(x, w_ste, F::Conv2dFuncOptions().padding(1)) / scale.view({1, -1, 1, 1});
  const auto y_ref = F::batch_norm(
      raw, mean, var, F::BatchNormFuncOptions().weight(gamma).bias(beta).training(true));
  (y_ref * r).sum().backward();
  EXPECT_LE((y - y_ref).abs().max().item<double>(), 1e-3);  // the 16-bit bias: tiny steps
  EXPECT_TRUE(torch::allclose(f->weight.grad(), w.grad(), 1e-3, 1e-4));
  EXPECT_TRUE(torch::allclose(f->gamma.grad(), gamma.grad(), 1e-3, 1e-4));
  EXPECT_TRUE(torch::allclose(f->beta.grad(), beta.grad(), 1e-4, 1e-5));
  EXPECT_GT(f->weight.grad().abs().sum().item<double>(), 0);
}

TEST(ActivationQuant, MovingAverageOfBatchRangesAndQuantDelay) {
  auto o = options(Scheme::kPow2, /*quant_delay=*/2);
  o.ema_decay = 0.9;
  lowbit::qat::ActivationQuant a(o);
  const auto x1 = torch::tensor({-0.5f, 0.25f, 1.5f});
  const auto x2 = torch::tensor({0.1f, 3.0f});  // min above 0: the range keeps 0
  const auto x3 = torch::tensor({-1.0f, 0.3f, 0.7f});
  EXPECT_TRUE(torch::equal(a->forward(x1), x1));  // step 0 < delay: observe only
  EXPECT_FLOAT_EQ(a->min.item<float>(), -0.5f);
  EXPECT_FLOAT_EQ(a->max.item<float>(), 1.5f);
  EXPECT_TRUE(torch::equal(a->forward(x2), x2));
  float lo = -0.5f - (-0.5f - 0.0f) * 0.1f, hi = 1.5f - (1.5f - 3.0f) * 0.1f;
  EXPECT_FLOAT_EQ(a->min.item<float>(), lo);
  EXPECT_FLOAT_EQ(a->max.item<float>(), hi);
  const auto y3 = a->forward(x3);  // step 2: quantizes with the range including x3
  lo = lo - (lo - -1.0f) * 0.1f;
  hi = hi - (hi - 0.7f) * 0.1f;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(y3[i].item<float>(), pow2_fq(x3[i].item<float>(), lo, hi, 8, std::nullopt)) << i;
  }
  a->eval();
  const auto min = a->min.clone();
  const auto y = a->forward(torch::tensor({5.0f, -7.0f}));
  EXPECT_TRUE(torch::equal(a->min, min));  // eval does not observe
  EXPECT_EQ(y[0].item<float>(), pow2_fq(5.0f, lo, hi, 8, std::nullopt));
  const auto q = a->quantization();
  EXPECT_EQ(q.frac_bits, 8 - 1 - 1);  // range [-1.1, 1.8]: e = 1
  EXPECT_EQ(q.max, 2.0 - std::ldexp(1.0, -6));
}

TEST(ActivationQuant, AffineUsesTheVarsFakeQuantWithItsRange) {
  lowbit::qat::ActivationQuant a(options(Scheme::kAffine));
  const auto x = torch::linspace(-0.3, 2.0, 50);
  const auto y = a->forward(x);
  EXPECT_TRUE(torch::equal(
      y, lowbit::fake_quant_with_min_max_vars(x, torch::tensor(-0.3f), torch::tensor(2.0f), 8)));
  const auto q = a->quantization();
  EXPECT_EQ(q.qmin, 0);
  EXPECT_EQ(q.qmax, 255);
  // 0 is exact: zero_point * scale = -nudged_min.
  EXPECT_NEAR(q.zero_point * q.scale, -q.min, 1e-6);
  EXPECT_NEAR(q.scale, 2.3 / 255, 1e-6);
}

lowbit::nn::NetworkOptions float_network() {
  lowbit::nn::NetworkOptions n;
  n.height = n.width = 12;
  n.blocks = {4, 0, 8, 0};
  n.hidden = 16;
  n.num_classes = 3;
  n.pool_before_batchnorm = false;
  return n;
}

TEST(Prepare, FoldsEveryBatchNormAndQuantizesAfterEachActivation) {
  torch::manual_seed(4);
  auto net = lowbit::nn::build_network(float_network());
  auto q = lowbit::qat::prepare(net, options(Scheme::kPow2, /*quant_delay=*/1000000));
  std::vector<std::string> names;
  for (const auto& m : q->children()) names.push_back(m->name());
  const std::vector<std::string> expected = {"lowbit::qat::ActivationQuantImpl",
                                             "lowbit::qat::FoldedLayerImpl",
                                             "torch::nn::ReLUImpl",
                                             "lowbit::qat::ActivationQuantImpl",
                                             "torch::nn::MaxPool2dImpl",
                                             "lowbit::qat::FoldedLayerImpl",
                                             "torch::nn::ReLUImpl",
                                             "lowbit::qat::ActivationQuantImpl",
                                             "torch::nn::MaxPool2dImpl",
                                             "torch::nn::FlattenImpl",
                                             "lowbit::qat::FoldedLayerImpl",
                                             "torch::nn::ReLUImpl",
                                             "lowbit::qat::ActivationQuantImpl",
                                             "lowbit::qat::FoldedLayerImpl",
                                             "lowbit::qat::ActivationQuantImpl"};
  EXPECT_EQ(names, expected);
  // Before the quantization delay, a prepared network trains as the float one.
  const auto x = torch::randn({6, 1, 12, 12});
  const auto y = q->forward(x), y_ref = net->forward(x);
  EXPECT_TRUE(torch::allclose(y, y_ref, 1e-4, 1e-5)) << (y - y_ref).abs().max();
}

TEST(Prepare, KeepsQuantizedLayersAndFoldsOnlyTheFloatOnesWhenAsked) {
  torch::manual_seed(5);
  // bnn-int8-io's shape: a float first convolution, binary layers (pool before their batch norm),
  // a float classifier.
  auto mixed = float_network();
  mixed.input_quantizer = "ste_sign";
  mixed.kernel_quantizer = "ste_sign";
  mixed.blocks = {4, 8, 0};  // conv, batch norm; conv, pool, batch norm
  mixed.pool_before_batchnorm = true;
  mixed.activation = "none";
  mixed.dropout = 0;
  mixed.quantize_first_convolution = false;
  mixed.quantize_last_convolution = false;
  auto net = lowbit::nn::build_network(mixed);
  EXPECT_THROW(lowbit::qat::prepare(net, options(Scheme::kPow2)), std::invalid_argument);
  auto q = lowbit::qat::prepare(net, options(Scheme::kPow2), /*keep_quantized_layers=*/true);
  std::vector<std::string> names;
  for (const auto& m : q->children()) names.push_back(m->name());
  const std::vector<std::string> expected = {
      "lowbit::qat::ActivationQuantImpl", "lowbit::qat::FoldedLayerImpl",  // 8-bit first layer
      "lowbit::qat::ActivationQuantImpl", "lowbit::nn::QuantConv2dImpl",   // binary
      "torch::nn::MaxPool2dImpl",         "torch::nn::BatchNorm2dImpl",    // its batch norm, kept
      "torch::nn::FlattenImpl",           "lowbit::nn::QuantLinearImpl",   // binary
      "torch::nn::BatchNorm1dImpl",       "lowbit::qat::ActivationQuantImpl",   // the classifier's
      "lowbit::qat::FoldedLayerImpl",     "lowbit::qat::ActivationQuantImpl"};  // input, 8-bit
  EXPECT_EQ(names, expected);
  // Without quantize_input the input stays float: the same modules less the first quantizer.
  auto no_input = options(Scheme::kPow2);
  no_input.quantize_input = false;
  auto plain = lowbit::qat::prepare(net, no_input, true);
  std::vector<std::string> plain_names;
  for (const auto& m : plain->children()) plain_names.push_back(m->name());
  EXPECT_EQ(plain_names, std::vector<std::string>(expected.begin() + 1, expected.end()));
  auto float_only = lowbit::qat::prepare(lowbit::nn::build_network(float_network()), no_input);
  EXPECT_EQ(float_only->ptr(0)->name(), "lowbit::qat::FoldedLayerImpl");
  // The kept layers are the network's own modules (their weights train on).
  EXPECT_EQ(q->ptr(3).get(), net->ptr(2).get());
  EXPECT_EQ(q->ptr(5).get(), net->ptr(4).get());
  // Every folded layer reads 8-bit values: the classifier the quantizer inserted before it.
  q->train();
  q->forward(torch::randn({8, 1, 12, 12}));
  q->eval();
  const auto layers = lowbit::qat::integer_parameters(q);
  ASSERT_EQ(layers.size(), 2u);
  EXPECT_EQ(layers[0].name, "1");
  EXPECT_EQ(layers[1].name, "10");
  EXPECT_EQ(layers[1].input.bits, 8);
  const auto inserted = q->ptr(9)->as<lowbit::qat::ActivationQuantImpl>()->quantization();
  EXPECT_EQ(layers[1].input.frac_bits, inserted.frac_bits);
  EXPECT_EQ(layers[0].output.frac_bits,
            q->ptr(2)->as<lowbit::qat::ActivationQuantImpl>()->quantization().frac_bits);
}

TEST(Prepare, TakesTorchsOwnLayersToo) {
  torch::manual_seed(6);
  torch::nn::Sequential net(torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 4, 3).padding(1)),
                            torch::nn::BatchNorm2d(4), torch::nn::ReLU(), torch::nn::Flatten(),
                            torch::nn::Linear(4 * 6 * 6, 3));
  auto q = lowbit::qat::prepare(net, options(Scheme::kAffine, /*quant_delay=*/1000000));
  const auto x = torch::randn({4, 1, 6, 6});
  EXPECT_TRUE(torch::allclose(q->forward(x), net->forward(x), 1e-4, 1e-5));
  EXPECT_EQ(lowbit::qat::integer_parameters(q).size(), 2u);
  torch::nn::Sequential same(
      torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 4, 3).padding(torch::kSame)));
  EXPECT_THROW(lowbit::qat::prepare(same, options(Scheme::kPow2)), std::invalid_argument);
}

TEST(Prepare, ReportsWhatItCannotFold) {
  auto larq = float_network();
  larq.pool_before_batchnorm = true;  // conv, pool, BN
  EXPECT_THROW(lowbit::qat::prepare(lowbit::nn::build_network(larq), options(Scheme::kPow2)),
               std::invalid_argument);
  auto binary = float_network();
  binary.input_quantizer = "ste_sign";
  try {
    lowbit::qat::prepare(lowbit::nn::build_network(binary), options(Scheme::kPow2));
    ADD_FAILURE() << "no error for a layer with quantizers";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("module 4"), std::string::npos) << e.what();
  }
  auto shortcuts = float_network();
  shortcuts.shortcuts = true;
  shortcuts.quantize_first_convolution = true;
  EXPECT_THROW(lowbit::qat::prepare(lowbit::nn::build_network(shortcuts), options(Scheme::kPow2)),
               std::invalid_argument);
  auto bad = options(Scheme::kPow2);
  bad.weight_bits = 1;
  EXPECT_THROW(lowbit::qat::prepare(lowbit::nn::build_network(float_network()), bad),
               std::invalid_argument);
}

TEST(IntegerParameters, ChainTheFractionalBitsOfEveryLayer) {
  torch::manual_seed(5);
  auto q = lowbit::qat::prepare(lowbit::nn::build_network(float_network()), options(Scheme::kPow2));
  for (int i = 0; i < 3; ++i) q->forward(torch::randn({8, 1, 12, 12}));
  q->eval();
  const auto layers = lowbit::qat::integer_parameters(q);
  ASSERT_EQ(layers.size(), 4u);
  EXPECT_EQ(layers[0].type, "conv2d");
  EXPECT_EQ(layers[3].type, "linear");
  EXPECT_TRUE(layers[0].relu);
  EXPECT_FALSE(layers[3].relu);  // the logits
  for (size_t i = 0; i < layers.size(); ++i) {
    EXPECT_EQ(layers[i].input.bits, 8);
    EXPECT_EQ(layers[i].weight.bits, 8);
    EXPECT_EQ(layers[i].bias.bits, 16);
    EXPECT_EQ(layers[i].output.bits, 8);
    if (i > 0) {
      EXPECT_EQ(layers[i].input.frac_bits, layers[i - 1].output.frac_bits) << i;
    }
  }
  // The input quantizer's range: standard normal inputs of 3 batches reach beyond 2, within 8.
  EXPECT_GE(layers[0].input.frac_bits, 7 - 3);
  EXPECT_LE(layers[0].input.frac_bits, 7 - 2);
  const std::string json = lowbit::qat::integer_parameters_json(layers, Scheme::kPow2);
  EXPECT_NE(json.find("\"frac_bits\""), std::string::npos) << json;
}

TEST(IntegerParameters, WorkedValuesOfTheSpec) {
  // max|w| = 0.3 at 8 bits: e = -1, 8 fractional bits; a bias up to 5 at 16 bits: e = 3, 12 bits.
  lowbit::qat::FoldedLayerImpl::Geometry g;
  g.conv = false;
  const auto w = torch::tensor({{0.3f, -0.1f}, {0.05f, 0.2f}});
  const auto b = torch::tensor({5.0f, -1.0f});
  lowbit::qat::FoldedLayer f(options(Scheme::kPow2), g, w, b, at::Tensor(), at::Tensor(),
                             at::Tensor(), at::Tensor(), 1e-5, 0.1);
  EXPECT_EQ(f->weight_quantization().frac_bits, 8);
  EXPECT_EQ(f->weight_quantization().min, -0.5);
  EXPECT_EQ(f->weight_quantization().max, 0.49609375);
  EXPECT_EQ(f->bias_quantization().frac_bits, 12);
  const auto [wq, bq] = f->quantized_folded_parameters();
  EXPECT_FLOAT_EQ(wq[0][0].item<float>(), std::round(0.3 * 256) / 256);
  EXPECT_EQ(bq[0].item<float>(), 5.0f);
  // Affine: TF's narrow-range weights, bias left float (int32 at conversion).
  lowbit::qat::FoldedLayer a(options(Scheme::kAffine), g, w, b, at::Tensor(), at::Tensor(),
                             at::Tensor(), at::Tensor(), 1e-5, 0.1);
  EXPECT_EQ(a->weight_quantization().qmin, 1);
  EXPECT_EQ(a->bias_quantization().bits, 0);
  EXPECT_TRUE(torch::equal(a->quantized_folded_parameters().second, b));
}

}  // namespace
