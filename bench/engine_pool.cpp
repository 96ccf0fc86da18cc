// The engine's pooling kernels (include/lowbit/engine/kernels/pool.h) against LibTorch's on the
// same tensors, one thread, side by side in one run (docs/performance.md):
//   build/lowbit_engine_pool_bench [--benchmark_filter=...]
// BM_max_pool: 2x2 stride 2 on [32, 112, 112] (the float CNN's first pool) and 3x3 stride 2 pad 1
// on [64, 56, 56] (ResNet's stem pool); BM_max_pool_codes: the same windows on 8-bit codes;
// BM_average_pool: 3x3 stride 1 pad 1 on [64, 28, 28]; BM_global_average: [512, 7, 7] and
// [64, 28, 28]. The engine's kernels write into preallocated outputs (the engine keeps its
// workspace between calls); torch::max_pool2d and friends allocate their output each call (fresh
// pages: the LibTorch figures are fresh-output figures, as a user calling them gets).
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <random>
#include <string>
#include <vector>

#include "bench_util.h"
#include "lowbit/engine/kernels/pool.h"

namespace {

using bench_util::set_bytes;
using bench_util::uniform;

namespace pool = lowbit::engine::pool;

struct Case {
  const char* name;
  int64_t c, hw, k, stride, pad;
};
const Case kWindows[] = {{"2x2s2/32x112", 32, 112, 2, 2, 0}, {"3x3s2p1/64x56", 64, 56, 3, 2, 1}};
const Case kAverage[] = {{"3x3s1p1/64x28", 64, 28, 3, 1, 1}};
const Case kGlobal[] = {{"512x7", 512, 7, 7, 1, 0}, {"64x28", 64, 28, 28, 1, 0}};

pool::Window plane(const Case& c) {
  pool::Window s;
  s.h = s.w = c.hw, s.kh = s.kw = c.k, s.stride_h = s.stride_w = c.stride;
  s.pad_top = s.pad_left = s.pad_bottom = s.pad_right = c.pad;
  s.oh = s.ow = (c.hw + 2 * c.pad - c.k) / c.stride + 1;
  return s;
}

void BM_max_pool(benchmark::State& state, const pool::Kernels* k, Case c) {
  const auto s = plane(c);
  const auto x = uniform(c.c * c.hw * c.hw);
  std::vector<float> y(c.c * s.oh * s.ow);
  for (auto _ : state) {
    for (int64_t ch = 0; ch < c.c; ++ch)
      k->max(x.data() + ch * c.hw * c.hw, s, y.data() + ch * s.oh * s.ow);
    benchmark::DoNotOptimize(y.data());
  }
  set_bytes(state, static_cast<int64_t>((x.size() + y.size()) * sizeof(float)));
}

void BM_max_pool_codes(benchmark::State& state, const pool::Kernels* k, Case c) {
  auto s = plane(c);
  if (c.pad) {  // codes pool without padding (the engine's rule): the same windows, unpadded
    s.pad_top = s.pad_left = s.pad_bottom = s.pad_right = 0;
    s.oh = s.ow = (c.hw - c.k) / c.stride + 1;
  }
  std::vector<uint8_t> x(c.c * c.hw * c.hw), y(c.c * s.oh * s.ow);
  std::mt19937 rng(2);
  for (auto& v : x) v = static_cast<uint8_t>(rng());
  for (auto _ : state) {
    for (int64_t ch = 0; ch < c.c; ++ch)
      k->max_codes(x.data() + ch * c.hw * c.hw, s, y.data() + ch * s.oh * s.ow);
    benchmark::DoNotOptimize(y.data());
  }
  set_bytes(state, static_cast<int64_t>(x.size() + y.size()));
}

void BM_average_pool(benchmark::State& state, const pool::Kernels* k, Case c) {
  const auto s = plane(c);
  const auto x = uniform(c.c * c.hw * c.hw);
  std::vector<float> y(c.c * s.oh * s.ow);
  for (auto _ : state) {
    for (int64_t ch = 0; ch < c.c; ++ch)
      k->average(x.data() + ch * c.hw * c.hw, s, false, y.data() + ch * s.oh * s.ow);
    benchmark::DoNotOptimize(y.data());
  }
  set_bytes(state, static_cast<int64_t>((x.size() + y.size()) * sizeof(float)));
}

void BM_global_average(benchmark::State& state, const pool::Kernels* k, Case c) {
  const int64_t n = c.hw * c.hw;
  const auto x = uniform(c.c * n);
  std::vector<float> y(c.c);
  for (auto _ : state) {
    k->sum(x.data(), n, c.c, y.data());
    for (auto& v : y) v /= static_cast<float>(n);
    benchmark::DoNotOptimize(y.data());
  }
  set_bytes(state, static_cast<int64_t>(x.size() * sizeof(float)));
}

// LibTorch: 0 max-pool, 1 average pool, 2 global average (adaptive_avg_pool2d to 1x1).
void BM_torch(benchmark::State& state, int op, Case c) {
  torch::set_num_threads(1);
  const torch::Tensor x = torch::rand({1, c.c, c.hw, c.hw}) * 2 - 1;
  torch::Tensor y;
  for (auto _ : state) {
    if (op == 0) y = torch::max_pool2d(x, {c.k, c.k}, {c.stride, c.stride}, {c.pad, c.pad});
    if (op == 1)
      y = torch::avg_pool2d(x, {c.k, c.k}, {c.stride, c.stride}, {c.pad, c.pad}, false,
                            /*count_include_pad=*/false);
    if (op == 2) y = torch::adaptive_avg_pool2d(x, {1, 1});
    benchmark::DoNotOptimize(y.data_ptr());
  }
  set_bytes(state, (x.numel() + (op == 2 ? c.c : y.numel())) * static_cast<int64_t>(sizeof(float)));
}

const bool registered = [] {
  for (const auto& k : pool::all()) {
    if (!k.supported()) continue;
    for (const Case& c : kWindows) {
      benchmark::RegisterBenchmark(("BM_max_pool/" + k.name + "/" + c.name).c_str(), BM_max_pool,
                                   &k, c)
          ->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark(("BM_max_pool_codes/" + k.name + "/" + c.name).c_str(),
                                   BM_max_pool_codes, &k, c)
          ->Unit(benchmark::kMicrosecond);
    }
    for (const Case& c : kAverage)
      benchmark::RegisterBenchmark(("BM_average_pool/" + k.name + "/" + c.name).c_str(),
                                   BM_average_pool, &k, c)
          ->Unit(benchmark::kMicrosecond);
    for (const Case& c : kGlobal)
      benchmark::RegisterBenchmark(("BM_global_average/" + k.name + "/" + c.name).c_str(),
                                   BM_global_average, &k, c)
          ->Unit(benchmark::kMicrosecond);
  }
  for (const Case& c : kWindows)
    benchmark::RegisterBenchmark((std::string("BM_torch_max_pool/") + c.name).c_str(), BM_torch, 0,
                                 c)
        ->Unit(benchmark::kMicrosecond);
  for (const Case& c : kAverage)
    benchmark::RegisterBenchmark((std::string("BM_torch_average_pool/") + c.name).c_str(), BM_torch,
                                 1, c)
        ->Unit(benchmark::kMicrosecond);
  for (const Case& c : kGlobal)
    benchmark::RegisterBenchmark((std::string("BM_torch_global_average/") + c.name).c_str(),
                                 BM_torch, 2, c)
        ->Unit(benchmark::kMicrosecond);
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
