// recalibrate_batch_norm against running statistics written out by hand: the plain average over
// the batches of each batch's mean and unbiased variance, with dropout off and the earlier
// batch-norm layers normalising by their batch's statistics (training mode).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <vector>

#include "lowbit/train.h"

namespace {

using torch::indexing::Slice;

// Gives the tensors of `batches` in turn.
std::function<bool(at::Tensor&)> feed(const std::vector<at::Tensor>& batches) {
  auto next = std::make_shared<size_t>(0);
  return [batches, next](at::Tensor& out) {
    if (*next == batches.size()) return false;
    out = batches[(*next)++];
    return true;
  };
}

struct Net {
  torch::nn::Conv2d conv{torch::nn::Conv2dOptions(2, 3, 3)};
  torch::nn::Dropout dropout{0.5};
  torch::nn::BatchNorm2d bn2{torch::nn::BatchNorm2dOptions(3).momentum(0.3)};
  torch::nn::Linear linear{3 * 4 * 4, 4};
  torch::nn::BatchNorm1d bn1{4};
  torch::nn::Sequential model;
  Net() {
    torch::NoGradGuard no_grad;
    bn2->weight.uniform_(0.5, 2);
    bn2->bias.uniform_(-1, 1);
    model = torch::nn::Sequential(conv, dropout, bn2, torch::nn::ReLU(), torch::nn::Flatten(),
                                  linear, bn1);
  }
};

TEST(RecalibrateBatchNorm, RunningStatisticsAreThePlainAverageOfTheBatches) {
  torch::manual_seed(5);
  Net net;
  net.model->train();
  // Batches of different sizes: each batch counts once, whatever its size; one of a single image
  // is skipped (its variance is undefined).
  std::vector<at::Tensor> batches;
  for (int64_t n : {7, 5, 1, 9}) batches.push_back(torch::randn({n, 2, 6, 6}) * 2 + 0.5);
  for (int i = 0; i < 3; ++i) net.model->forward(batches[0]);  // statistics to be replaced

  at::Tensor mean2 = torch::zeros({3}, torch::kDouble), var2 = torch::zeros({3}, torch::kDouble);
  at::Tensor mean1 = torch::zeros({4}, torch::kDouble), var1 = torch::zeros({4}, torch::kDouble);
  int counted = 0;
  {
    torch::NoGradGuard no_grad;
    for (const auto& x : batches) {
      if (x.size(0) < 2) continue;
      const at::Tensor y = net.conv->forward(x).to(torch::kDouble);  // dropout off
      const at::Tensor m = y.mean({0, 2, 3}), v = y.var({0, 2, 3}, /*unbiased=*/true);
      const at::Tensor biased = y.var({0, 2, 3}, /*unbiased=*/false);
      const auto per_channel = [](const at::Tensor& t) { return t.view({1, 3, 1, 1}); };
      const at::Tensor normalised = (y - per_channel(m)) / torch::sqrt(per_channel(biased) + 1e-5) *
                                        per_channel(net.bn2->weight.to(torch::kDouble)) +
                                    per_channel(net.bn2->bias.to(torch::kDouble));
      const at::Tensor z =
          torch::relu(normalised).flatten(1).matmul(net.linear->weight.to(torch::kDouble).t()) +
          net.linear->bias.to(torch::kDouble);
      mean2 += m, var2 += v;
      mean1 += z.mean(0), var1 += z.var(0, /*unbiased=*/true);
      ++counted;
    }
  }
  ASSERT_EQ(counted, 3);

  EXPECT_EQ(lowbit::train::recalibrate_batch_norm(net.model, feed(batches)), 2);
  const auto close = [](const at::Tensor& got, const at::Tensor& want) {
    return torch::allclose(got.to(torch::kDouble), want, 1e-4, 1e-5);
  };
  EXPECT_TRUE(close(net.bn2->running_mean, mean2 / counted)) << net.bn2->running_mean;
  EXPECT_TRUE(close(net.bn2->running_var, var2 / counted)) << net.bn2->running_var;
  EXPECT_TRUE(close(net.bn1->running_mean, mean1 / counted)) << net.bn1->running_mean;
  EXPECT_TRUE(close(net.bn1->running_var, var1 / counted)) << net.bn1->running_var;
  // Momentum and modes as they were.
  EXPECT_EQ(net.bn2->options.momentum(), c10::optional<double>(0.3));
  EXPECT_EQ(net.bn1->options.momentum(), c10::optional<double>(0.1));
  for (const auto& m : net.model->modules()) EXPECT_TRUE(m->is_training()) << m->name();
  net.model->eval();
  EXPECT_EQ(lowbit::train::recalibrate_batch_norm(net.model, feed(batches)), 2);
  for (const auto& m : net.model->modules()) EXPECT_FALSE(m->is_training()) << m->name();
  EXPECT_TRUE(close(net.bn2->running_mean, mean2 / counted));
}

TEST(RecalibrateBatchNorm, NoBatchIsAnErrorThatLeavesTheModelAsItWas) {
  torch::manual_seed(6);
  Net net;
  net.model->train();
  net.model->forward(torch::randn({4, 2, 6, 6}));
  const at::Tensor mean = net.bn2->running_mean.clone(), var = net.bn1->running_var.clone();
  const at::Tensor tracked = net.bn2->num_batches_tracked.clone();
  EXPECT_THROW(lowbit::train::recalibrate_batch_norm(net.model, feed({})), std::invalid_argument);
  EXPECT_THROW(lowbit::train::recalibrate_batch_norm(net.model, feed({torch::randn({1, 2, 6, 6})})),
               std::invalid_argument);
  EXPECT_TRUE(torch::equal(net.bn2->running_mean, mean));
  EXPECT_TRUE(torch::equal(net.bn1->running_var, var));
  EXPECT_TRUE(torch::equal(net.bn2->num_batches_tracked, tracked));
  EXPECT_EQ(net.bn2->options.momentum(), c10::optional<double>(0.3));
  EXPECT_TRUE(net.dropout->is_training());
  // A failing forward pass too.
  EXPECT_ANY_THROW(lowbit::train::recalibrate_batch_norm(net.model, feed({torch::randn({3, 5})})));
  EXPECT_TRUE(torch::equal(net.bn2->running_mean, mean));
}

TEST(RecalibrateBatchNorm, AModelWithoutBatchNormIsLeftAlone) {
  torch::nn::Sequential model(torch::nn::Linear(3, 2), torch::nn::ReLU());
  EXPECT_EQ(lowbit::train::recalibrate_batch_norm(model, feed({})), 0);
  EXPECT_TRUE(model->is_training());
}

}  // namespace
