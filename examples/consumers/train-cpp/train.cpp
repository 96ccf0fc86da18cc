// train_binary: trains a binarized multilayer perceptron with lowbit's layers and operators, from
// an installed lowbit (docs/install.md).
//
//   train_binary [EPOCHS]
//
// The data: 10 classes of 64-pixel "images", each class a random +-1 pattern that every sample
// shows with 20% of its pixels flipped and Gaussian noise added (a problem a binary network can
// learn, made here so that the example needs no data set). The network: QuantLinear layers with
// binary weights (ste_sign, clipped to [-1, 1]) and binary activations (ste_sign), batch norm
// between them, as Larq's and FINN's binarized MLPs. Prints the summary, the loss and the test
// accuracy of each epoch; exits 1 if the test accuracy ends below 90%.
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "lowbit/nn.h"
#include "lowbit/ops.h"
#include "lowbit/version.h"

namespace {

constexpr int64_t kClasses = 10, kPixels = 64;

struct Split {
  torch::Tensor x, y;
};

Split make_split(const torch::Tensor& patterns, int64_t count) {
  auto y = torch::randint(kClasses, {count}, torch::kLong);
  auto x = patterns.index_select(0, y).clone();
  auto flips = torch::rand({count, kPixels}) < 0.2;
  x = torch::where(flips, -x, x) + 0.3 * torch::randn({count, kPixels});
  return {x, y};
}

// The first layer sees real inputs (binary weights only), the second binary activations.
torch::nn::Sequential binary_mlp() {
  using lowbit::nn::QuantLinearOptions;
  return torch::nn::Sequential(lowbit::nn::QuantLinear(QuantLinearOptions(kPixels, 256)
                                                           .bias(false)
                                                           .kernel_quantizer("ste_sign")
                                                           .kernel_constraint("weight_clip")),
                               torch::nn::BatchNorm1d(256),
                               lowbit::nn::QuantLinear(QuantLinearOptions(256, kClasses)
                                                           .bias(false)
                                                           .input_quantizer("ste_sign")
                                                           .kernel_quantizer("ste_sign")
                                                           .kernel_constraint("weight_clip")),
                               torch::nn::BatchNorm1d(kClasses));
}

double accuracy(torch::nn::Sequential& net, const Split& split) {
  torch::NoGradGuard no_grad;
  net->eval();
  const auto predicted = net->forward(split.x).argmax(1);
  net->train();
  return predicted.eq(split.y).to(torch::kDouble).mean().item<double>();
}

}  // namespace

int run(int epochs) {
  std::printf("lowbit %s: a binarized MLP on synthetic binary patterns\n", LOWBIT_VERSION);
  torch::manual_seed(0);
  const auto patterns = lowbit::ste_sign(torch::randn({kClasses, kPixels}), 1.0);
  const Split train = make_split(patterns, 8192), test = make_split(patterns, 2048);

  auto net = binary_mlp();
  std::printf("%s", lowbit::nn::summary(*net, {1, kPixels}).to_string().c_str());
  torch::optim::Adam optimizer(net->parameters(), torch::optim::AdamOptions(0.01));
  const int64_t batch = 128;
  double test_accuracy = 0;
  for (int epoch = 1; epoch <= epochs; ++epoch) {
    const auto order = torch::randperm(train.x.size(0), torch::kLong);
    double loss_sum = 0;
    int64_t steps = 0;
    for (int64_t start = 0; start + batch <= order.size(0); start += batch) {
      const auto index = order.slice(0, start, start + batch);
      const auto loss = torch::nn::functional::cross_entropy(
          net->forward(train.x.index_select(0, index)), train.y.index_select(0, index));
      optimizer.zero_grad();
      loss.backward();
      optimizer.step();
      lowbit::nn::apply_constraints(*net);  // weight_clip: latent weights back into [-1, 1]
      loss_sum += loss.item<double>();
      ++steps;
    }
    test_accuracy = accuracy(net, test);
    std::printf("epoch %d: loss %.4f, test accuracy %.4f\n", epoch, loss_sum / steps,
                test_accuracy);
  }
  // Every weight the network uses is +-1.
  const auto binary = net->ptr(2)->as<lowbit::nn::QuantLinearImpl>()->quantized_kernel();
  if (!binary.abs().eq(1).all().item<bool>()) {
    std::fprintf(stderr, "train_binary: fc2's quantized kernel is not binary\n");
    return 1;
  }
  if (test_accuracy < 0.9) {
    std::fprintf(stderr, "train_binary: test accuracy %.4f is below 0.9\n", test_accuracy);
    return 1;
  }
  return 0;
}

int main(int argc, char** argv) {
  long epochs = 5;
  char* end = nullptr;
  if (argc == 2) epochs = std::strtol(argv[1], &end, 10);
  if (argc > 2 ||
      (argc == 2 && (*argv[1] == '\0' || *end != '\0' || epochs < 1 || epochs > 10000))) {
    std::fprintf(stderr, "usage: %s [EPOCHS (a whole number in 1..10000, default 5)]\n", argv[0]);
    return 1;
  }
  try {
    return run(static_cast<int>(epochs));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train_binary: %s\n", e.what());
    return 1;
  }
}
