// What the `run` and `bench` commands do with a model, as a torch-free library
// (lowbit_engine_tools): running .npy files through it, timing it on random inputs with a
// per-operator profile, and the timing loop the LibTorch comparison shares (docs/engine.md).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "lowbit/engine.h"

namespace lowbit {
namespace engine {

// ---- .npy in, .npy out

struct NpyRun {
  int64_t images = 0;
  std::vector<std::vector<int64_t>> output_shapes;  // per output, with the batch first
  double seconds = 0;                               // the model's run alone
};
// Runs the float .npy file `input` ([batch, ...input_shape()], any numeric type NumPy writes; see
// io::parse_npy) through the model on `threads` threads and writes output k, [batch,
// ...output_shape(k)] float32, to outputs[k] (atomically; one file per output, in the model's
// order). std::invalid_argument naming the file when its shape does not fit the model's input,
// or naming the outputs when their count is not the model's (nothing is run or written then).
NpyRun run_npy(const Model& model, const std::string& input,
               const std::vector<std::string>& outputs, int threads);
// The same for the model file at `model_path`, loaded for the array's shape (Model::from_file's
// input_shape: its dimensions after the first size those the file leaves unknown).
NpyRun run_npy(const std::string& model_path, const std::string& input,
               const std::vector<std::string>& outputs, int threads);

// ---- timing

// Outputs and speed of a model over n images of k outputs each: throughput in batches of `batch`,
// latency as the median over up to 100 single images; the class each output row predicts.
struct Timing {
  std::vector<float> outputs;
  std::vector<int64_t> predictions;
  double throughput = 0, median_ms = 0;
  double accuracy(const std::vector<uint8_t>& labels) const {
    int64_t correct = 0;
    for (size_t i = 0; i < predictions.size(); ++i) correct += predictions[i] == labels[i];
    return predictions.empty() ? 0.0 : static_cast<double>(correct) / predictions.size();
  }
};

// run(first, count, out) computes images first .. first + count - 1 into out.
template <class Run>
Timing timed(int64_t n, int64_t k, int64_t batch, Run&& run) {
  using Clock = std::chrono::steady_clock;
  Timing t;
  t.outputs.resize(static_cast<size_t>(n * k));
  const auto t0 = Clock::now();
  for (int64_t i = 0; i < n; i += batch) run(i, std::min(batch, n - i), t.outputs.data() + i * k);
  t.throughput = n / std::chrono::duration<double>(Clock::now() - t0).count();
  for (int64_t i = 0; i < n && k > 0; ++i) {
    const float* row = t.outputs.data() + i * k;
    t.predictions.push_back(std::max_element(row, row + k) - row);
  }
  std::vector<double> ms;
  std::vector<float> one(static_cast<size_t>(k));
  for (int64_t i = 0; i < std::min<int64_t>(n, 100); ++i) {
    const auto start = Clock::now();
    run(i, 1, one.data());
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
  }
  std::sort(ms.begin(), ms.end());
  t.median_ms = ms.empty() ? 0.0 : ms[ms.size() / 2];
  return t;
}

// ---- the benchmark

struct BenchOptions {
  int64_t batch = 1;  // images per call
  int threads = 1;
  int warmup = 3;          // calls before timing
  int min_runs = 10;       // timed calls: at least this many, and
  double min_seconds = 1;  // until this much time has passed
  uint64_t seed = 0;       // of the random input (uniform in [0, 1))
};

// One planned node's share of a call (the profile runs on one thread).
struct OperatorTime {
  std::string name, op_type, kernel;
  double ms = 0;     // per call of `batch` images
  double share = 0;  // of the profile's total
};

struct BenchResult {
  int64_t batch = 1;
  int threads = 1;
  int runs = 0;
  // Latency of one call (batch images), in milliseconds: percentiles (nearest rank), min, mean.
  double p50_ms = 0, p90_ms = 0, p99_ms = 0, min_ms = 0, mean_ms = 0;
  double images_per_second = 0;
  std::vector<OperatorTime> profile;  // in the plan's order
};

// Times the model on random inputs; then profiles it, node by node, over as many calls.
BenchResult bench(const Model& model, const BenchOptions& options);

// The result as one JSON line, and as a table for people (the profile's nodes by share).
std::string to_json(const BenchResult& r, const std::string& model_path);
std::string to_text(const BenchResult& r, const std::string& model_path);

// The kernels of a plan and how many nodes run on each, in the order they first appear, as the
// members of a JSON object ("binary_conv2d_avx2": 3, ...).
std::string kernel_counts_json(const std::vector<PlannedNode>& plan);

}  // namespace engine
}  // namespace lowbit
