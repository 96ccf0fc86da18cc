// Cost of one training step of every recipe against its float twin (the same network without
// quantizers or quantization-aware training), side by side in one process; JSON lines.
//
//   ./build/lowbit_train_step_bench [--batch 128] [--steps 10] [--repeat 5] [--threads 0]
//                                   [recipe ...]
//
// A step is what the `lowbit` command does per batch: zero_grad, forward, cross entropy, backward,
// Adam step, kernel constraints. Timings are interleaved (recipe, twin, recipe, ...) so that
// machine noise hits both alike; the figure is the median over the samples.
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "lowbit/nn.h"
#include "lowbit/train.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Runner {
  torch::nn::Sequential model;
  std::unique_ptr<torch::optim::Adam> adam;
  void step(const at::Tensor& x, const at::Tensor& y) {
    adam->zero_grad();
    torch::cross_entropy_loss(model->forward(x), y).backward();
    adam->step();
    lowbit::nn::apply_constraints(*model);
  }
};

Runner make(const lowbit::train::Recipe& r) {
  Runner run;
  run.model = lowbit::train::build_model(r, 28, 28, 10);
  run.model->train();
  run.adam = std::make_unique<torch::optim::Adam>(run.model->parameters(),
                                                  torch::optim::AdamOptions(r.learning_rate));
  return run;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  lowbit::train::retain_freed_memory();  // as the lowbit command does
  int64_t batch = 128, steps = 10, repeat = 5, threads = 0;
  std::vector<std::string> names;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](int64_t& out) {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "train_step_bench: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      out = std::atoll(argv[++i]);
      if (out < 0 || (out == 0 && a != "--threads")) {
        std::fprintf(stderr, "train_step_bench: %s must be positive\n", a.c_str());
        std::exit(2);
      }
    };
    if (a == "--batch") {
      value(batch);
    } else if (a == "--steps") {
      value(steps);
    } else if (a == "--repeat") {
      value(repeat);
    } else if (a == "--threads") {
      value(threads);
    } else {
      names.push_back(a);
    }
  }
  if (threads > 0) torch::set_num_threads(static_cast<int>(threads));
  if (names.empty()) {
    for (const auto& n : lowbit::train::recipe_names()) {
      if (n != "float") names.push_back(n);
    }
  }
  torch::manual_seed(0);
  const auto x = torch::randn({batch, 1, 28, 28});
  const auto y = torch::randint(0, 10, {batch}, torch::kLong);
  try {
    for (const auto& name : names) {
      const auto r = lowbit::train::recipe(name);
      auto twin = r;  // the same network in float
      twin.network.input_quantizer = twin.network.kernel_quantizer = "none";
      twin.network.kernel_constraint = "none";
      twin.network.pad_values = 0.0;
      twin.qat = "none";
      // A network written layer by layer (the zoo) names quantizers per layer too.
      std::function<void(std::vector<lowbit::nn::LayerSpec>&)> to_float =
          [&](std::vector<lowbit::nn::LayerSpec>& layers) {
            for (auto& l : layers) {
              l.quantized = -1;
              l.input_quantizer = l.kernel_quantizer = l.kernel_constraint = "";
              l.bits = 0;
              to_float(l.body);
              to_float(l.shortcut);
              for (auto& b : l.branches) to_float(b);
            }
          };
      to_float(twin.network.layers);
      Runner a = make(r), b = make(twin);
      for (int w = 0; w < 2; ++w) {  // warm up: allocations, oneDNN primitives
        a.step(x, y);
        b.step(x, y);
      }
      std::vector<double> ta, tb;
      for (int64_t s = 0; s < repeat; ++s) {
        for (auto* run : {&a, &b}) {
          const auto t0 = Clock::now();
          for (int64_t k = 0; k < steps; ++k) run->step(x, y);
          const double ms =
              std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / steps;
          (run == &a ? ta : tb).push_back(ms);
        }
      }
      const double qa = median(ta), fb = median(tb);
      std::printf(
          "{\"recipe\": \"%s\", \"batch\": %lld, \"threads\": %d, \"step_ms\": %.2f, "
          "\"float_twin_ms\": %.2f, \"ratio\": %.3f}\n",
          name.c_str(), static_cast<long long>(batch), torch::get_num_threads(), qa, fb, qa / fb);
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train_step_bench: %s\n", e.what());
    return 2;
  }
  return 0;
}
