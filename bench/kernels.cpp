// Google Benchmark of every float32 kernel set on the same inputs: ref vs avx2 vs avx512, in place of
// the operators' overheads. Walks supported_f32_kernels(), so a new set is benchmarked automatically.
#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

#include "lowbit/kernels.h"

namespace {

namespace k = lowbit::kernels;

struct Data {
  std::vector<float> x, g, y;
  explicit Data(size_t n) : x(n), g(n), y(n) {
    std::mt19937 rng(7);
    std::normal_distribution<float> d(0.0f, 4.0f);
    for (size_t i = 0; i < n; ++i) {
      x[i] = d(rng);
      g[i] = d(rng);
    }
  }
};

void register_all() {
  const auto p = k::nudge<float>(-6.0f, 6.0f, 8, false);
  for (const k::F32Kernels* set : k::supported_f32_kernels()) {
    const std::string isa = set->isa;
    for (int64_t n : {int64_t{1} << 16, int64_t{1} << 20}) {
      benchmark::RegisterBenchmark(("fake_quant_div/" + isa).c_str(), [set, n, p](benchmark::State& s) {
        Data d(static_cast<size_t>(n));
        for (auto _ : s) {
          set->fake_quant(d.x.data(), d.y.data(), n, p, k::FakeQuantRounding::kDivScale);
          benchmark::DoNotOptimize(d.y.data());
        }
        s.SetBytesProcessed(s.iterations() * n * 8);
      })->Arg(n);
      benchmark::RegisterBenchmark(("masked_grad_sums/" + isa).c_str(), [set, n, p](benchmark::State& s) {
        Data d(static_cast<size_t>(n));
        for (auto _ : s) {
          double below = 0, above = 0;
          set->masked_grad(d.g.data(), d.x.data(), d.y.data(), n, p.nudged_min, p.nudged_max,
                           k::Interval::kClosed, &below, &above);
          benchmark::DoNotOptimize(below);
        }
        s.SetBytesProcessed(s.iterations() * n * 12);
      })->Arg(n);
      benchmark::RegisterBenchmark(("sign/" + isa).c_str(), [set, n](benchmark::State& s) {
        Data d(static_cast<size_t>(n));
        for (auto _ : s) {
          set->sign(d.x.data(), d.y.data(), n, 1.0f);
          benchmark::DoNotOptimize(d.y.data());
        }
        s.SetBytesProcessed(s.iterations() * n * 8);
      })->Arg(n);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
