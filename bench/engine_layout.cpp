// The engine's layout kernels (include/lowbit/engine/kernels/layout.h) against LibTorch's
// operators on the same tensors, one thread, side by side in one run (docs/performance.md):
//   build/lowbit_engine_layout_bench [--benchmark_filter=...]
// BM_pad: [64, 56, 56] padded by 1 on every side (constant, reflect, edge; LibTorch's
// constant_pad_nd, reflection_pad2d, replication_pad2d); BM_resize: [64, 28, 28] upsampled 2x
// (nearest and linear with half_pixel's tables; LibTorch's upsample_nearest2d and
// upsample_bilinear2d, align_corners false). The engine's kernels write into preallocated outputs
// (the engine keeps its workspace between calls); LibTorch's allocate their output each call
// (fresh-output figures, as a user calling them gets).
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "bench_util.h"
#include "lowbit/engine/kernels/layout.h"

namespace {

using bench_util::set_bytes;
using bench_util::uniform;

namespace layout = lowbit::engine::layout;

constexpr int64_t kC = 64, kPadHW = 56, kResizeHW = 28;

void BM_pad(benchmark::State& state, const layout::Kernels* k, layout::PadMode mode) {
  const int64_t h = kPadHW, o = h + 2;
  const auto x = uniform(kC * h * h);
  std::vector<float> y(kC * o * o);
  for (auto _ : state) {
    for (int64_t c = 0; c < kC; ++c)
      k->pad(x.data() + c * h * h, h, h, 1, 1, o, o, mode, 0.0f, y.data() + c * o * o);
    benchmark::DoNotOptimize(y.data());
  }
  set_bytes(state, static_cast<int64_t>((x.size() + y.size()) * sizeof(float)));
}

// half_pixel's tables for a 2x upsampling (as the engine's Resize computes them).
struct Tables {
  std::vector<int64_t> i0, i1, nearest;
  std::vector<float> f;
};
Tables tables(int64_t in, int64_t out) {
  Tables t;
  for (int64_t o = 0; o < out; ++o) {
    const float s = (static_cast<float>(o) + 0.5f) / 2.0f - 0.5f;
    const float c = std::min(std::max(s, 0.0f), static_cast<float>(in - 1));
    t.i0.push_back(static_cast<int64_t>(c));
    t.i1.push_back(std::min(t.i0.back() + 1, in - 1));
    t.f.push_back(c - static_cast<float>(t.i0.back()));
    t.nearest.push_back(std::min<int64_t>(o / 2, in - 1));
  }
  return t;
}

void BM_resize(benchmark::State& state, const layout::Kernels* k, bool linear) {
  const int64_t h = kResizeHW, o = 2 * h;
  const auto x = uniform(kC * h * h);
  const Tables t = tables(h, o);
  std::vector<float> y(kC * o * o);
  for (auto _ : state) {
    for (int64_t c = 0; c < kC; ++c) {
      if (linear) {
        k->linear(x.data() + c * h * h, h, t.i0.data(), t.i1.data(), t.f.data(), o, t.i0.data(),
                  t.i1.data(), t.f.data(), o, y.data() + c * o * o);
      } else {
        k->nearest(x.data() + c * h * h, h, t.nearest.data(), o, t.nearest.data(), o,
                   y.data() + c * o * o);
      }
    }
    benchmark::DoNotOptimize(y.data());
  }
  set_bytes(state, static_cast<int64_t>((x.size() + y.size()) * sizeof(float)));
}

// 0-2: pads (constant, reflect, edge); 3, 4: nearest and linear upsampling.
void BM_torch(benchmark::State& state, int which) {
  const int64_t h = which < 3 ? kPadHW : kResizeHW;
  const torch::Tensor x = torch::rand({1, kC, h, h});
  torch::Tensor y;
  for (auto _ : state) {
    switch (which) {
      case 0:
        y = at::constant_pad_nd(x, {1, 1, 1, 1}, 0.0);
        break;
      case 1:
        y = at::reflection_pad2d(x, {1, 1, 1, 1});
        break;
      case 2:
        y = at::replication_pad2d(x, {1, 1, 1, 1});
        break;
      case 3:
        y = at::upsample_nearest2d(x, {2 * h, 2 * h});
        break;
      default:
        y = at::upsample_bilinear2d(x, {2 * h, 2 * h}, false);
    }
    benchmark::DoNotOptimize(y.data_ptr());
  }
  set_bytes(state, (x.numel() + y.numel()) * static_cast<int64_t>(sizeof(float)));
}

}  // namespace

int main(int argc, char** argv) {
  at::set_num_threads(1);
  const char* pads[] = {"constant", "reflect", "edge"};
  const layout::PadMode modes[] = {layout::PadMode::constant, layout::PadMode::reflect,
                                   layout::PadMode::edge};
  for (int m = 0; m < 3; ++m) {
    for (const auto& k : layout::all())
      if (k.supported())
        benchmark::RegisterBenchmark(("BM_pad/" + std::string(pads[m]) + "/" + k.name).c_str(),
                                     BM_pad, &k, modes[m]);
    benchmark::RegisterBenchmark(("BM_pad/" + std::string(pads[m]) + "/torch").c_str(), BM_torch,
                                 m);
  }
  for (int linear = 0; linear < 2; ++linear) {
    const std::string mode = linear ? "linear" : "nearest";
    for (const auto& k : layout::all())
      if (k.supported())
        benchmark::RegisterBenchmark(("BM_resize/" + mode + "/" + k.name).c_str(), BM_resize, &k,
                                     linear != 0);
    benchmark::RegisterBenchmark(("BM_resize/" + mode + "/torch").c_str(), BM_torch, 3 + linear);
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
