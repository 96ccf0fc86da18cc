// What the data pipeline costs a training step of the bnn recipe: the time to assemble a batch
// (gather, augment, standardise: lowbit/batches.h) against a step's time, and what training
// actually waits for batches when the loader's worker thread assembles them ahead. JSON lines.
//
//   ./build/lowbit_data_pipeline_bench [--data DIR] [--steps 30] [--threads 0] [--workers 1]
//
// Two data sets: DIR (default Fashion-MNIST; no augmentation, as the recipe trains it) and
// CIFAR-shaped random images (3x32x32, random crop with 4 pixels of padding and horizontal flips).
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "lowbit/batches.h"
#include "lowbit/data/dataset.h"
#include "lowbit/nn.h"
#include "lowbit/train.h"

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void measure(const std::string& name, const lowbit::data::Split& split,
             const lowbit::train::Augmentation& aug, int64_t steps, int workers) {
  using namespace lowbit;
  const int64_t batch = 128;
  const data::Images& im = split.images;
  train::Recipe r = train::recipe("bnn");
  torch::manual_seed(0);
  auto model = train::build_model(r, im.rows, im.cols, 10, im.channels);
  model->train();
  torch::optim::Adam adam(model->parameters(), torch::optim::AdamOptions(r.learning_rate));
  const train::Standardisation s = train::channel_statistics(im);
  std::vector<int64_t> order(static_cast<size_t>(im.count));
  for (int64_t i = 0; i < im.count; ++i) order[i] = (i * 7919) % im.count;
  // Assembly alone, on this thread.
  std::vector<double> assemble;
  {
    train::BatchLoader serial(split, s, aug, order, batch, 1, 0);
    train::Batch b;
    for (int64_t k = 0; k < steps && serial.next(b); ++k) {
      const auto t = Clock::now();
      serial.next(b);
      assemble.push_back(since(t));
    }
  }
  // Training steps fed by the loader's workers: step time and time waited for batches.
  train::BatchLoader loader(split, s, aug, order, batch, 1, workers);
  train::Batch b;
  std::vector<double> step;
  for (int64_t k = 0; k < steps + 3 && loader.next(b); ++k) {
    const auto t = Clock::now();
    adam.zero_grad();
    torch::cross_entropy_loss(model->forward(b.images), b.labels).backward();
    adam.step();
    nn::apply_constraints(*model);
    if (k >= 3) step.push_back(since(t));  // after warm-up
  }
  const double wait_per_batch = loader.waited_seconds() / static_cast<double>(steps + 3);
  std::printf(
      "{\"data\": \"%s\", \"shape\": [%lld, %lld, %lld], \"augmentation\": %s, \"threads\": %d, "
      "\"workers\": %d, \"step_ms\": %.3f, \"assemble_ms\": %.3f, \"wait_ms\": %.4f, "
      "\"assemble_fraction_of_step\": %.4f, \"wait_fraction_of_step\": %.5f}\n",
      name.c_str(), static_cast<long long>(im.channels), static_cast<long long>(im.rows),
      static_cast<long long>(im.cols), aug.any() ? "true" : "false", at::get_num_threads(), workers,
      1e3 * median(step), 1e3 * median(assemble), 1e3 * wait_per_batch,
      median(assemble) / median(step), wait_per_batch / median(step));
}

}  // namespace

int main(int argc, char** argv) {
  std::string data = "/usr/share/datasets/fashion-mnist";
  int64_t steps = 30, threads = 0, workers = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--data") {
      data = argv[i + 1];
    } else if (a == "--steps" || a == "--threads" || a == "--workers") {
      const int64_t v = std::atoll(argv[i + 1]);
      (a == "--steps" ? steps : a == "--threads" ? threads : workers) = v;
    } else {
      std::fprintf(stderr, "data_pipeline_bench: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  if (steps < 1 || threads < 0 || workers < 0) {
    std::fprintf(stderr, "data_pipeline_bench: --steps >= 1, --threads and --workers >= 0\n");
    return 2;
  }
  lowbit::train::retain_freed_memory();
  lowbit::train::set_threads(static_cast<int>(threads));
  const auto dataset = lowbit::data::load_dataset(data);
  measure(dataset.format, dataset.train, {}, steps, static_cast<int>(workers));
  lowbit::data::Split cifar;
  cifar.images.count = 10000;
  cifar.images.channels = 3;
  cifar.images.rows = cifar.images.cols = 32;
  cifar.images.pixels.resize(10000 * 3 * 32 * 32);
  std::mt19937 rng(0);
  for (auto& p : cifar.images.pixels) p = static_cast<uint8_t>(rng());
  for (int i = 0; i < 10000; ++i) cifar.labels.labels.push_back(static_cast<uint8_t>(rng() % 10));
  lowbit::train::Augmentation aug;
  aug.crop_padding = 4;
  aug.horizontal_flip = true;
  measure("cifar-shaped", cifar, aug, steps, static_cast<int>(workers));
  return 0;
}
