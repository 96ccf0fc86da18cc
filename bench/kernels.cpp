// Google Benchmark of every float32 kernel set on the same inputs: ref vs avx2 vs avx512, in place
// of the operators' overheads. Walks supported_f32_kernels(), so a new set is benchmarked
// automatically.
#include "lowbit/kernels.h"

#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <utility>
#include <vector>

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
    for (int64_t n : {int64_t{1} << 16, int64_t{1} << 20, int64_t{1} << 24}) {
      benchmark::RegisterBenchmark(("fake_quant_div/" + isa).c_str(), [set, n,
                                                                       p](benchmark::State& s) {
        Data d(static_cast<size_t>(n));
        for (auto _ : s) {
          set->fake_quant(d.x.data(), d.y.data(), n, p, k::FakeQuantRounding::kDivScale);
          benchmark::DoNotOptimize(d.y.data());
        }
        s.SetBytesProcessed(s.iterations() * n * 8);
      })->Arg(n);
      benchmark::RegisterBenchmark(("masked_grad_sums/" + isa).c_str(), [set, n,
                                                                         p](benchmark::State& s) {
        Data d(static_cast<size_t>(n));
        for (auto _ : s) {
          double below = 0, above = 0;
          set->masked_grad(d.g.data(), d.x.data(), d.y.data(), n, p.nudged_min, p.nudged_max,
                           k::Interval::kClosed, &below, &above);
          benchmark::DoNotOptimize(below);
        }
        s.SetBytesProcessed(s.iterations() * n * 12);
      })->Arg(n);
      // Packed window codes: a quarter byte per element.
      benchmark::RegisterBenchmark(("fake_quant_packed/" + isa).c_str(), [set, n,
                                                                          p](benchmark::State& s) {
        Data d(static_cast<size_t>(n));
        std::vector<uint8_t> code(static_cast<size_t>(k::packed_code_bytes(n)));
        for (auto _ : s) {
          set->fake_quant_packed(d.x.data(), d.y.data(), code.data(), n, p,
                                 k::FakeQuantRounding::kDivScale, p.nudged_min, p.nudged_max);
          benchmark::DoNotOptimize(d.y.data());
        }
        s.SetBytesProcessed(s.iterations() * (n * 8 + k::packed_code_bytes(n)));
      })->Arg(n);
      benchmark::RegisterBenchmark(("packed_grad_sums/" + isa).c_str(), [set,
                                                                         n](benchmark::State& s) {
        Data d(static_cast<size_t>(n));
        std::vector<uint8_t> code(static_cast<size_t>(k::packed_code_bytes(n)), 0x0f);
        for (auto _ : s) {
          double below = 0, above = 0;
          set->packed_grad(d.g.data(), code.data(), d.y.data(), n, &below, &above);
          benchmark::DoNotOptimize(below);
        }
        s.SetBytesProcessed(s.iterations() * (n * 8 + k::packed_code_bytes(n)));
      })->Arg(n);
      for (int64_t channels : {int64_t{256}}) {
        const std::vector<k::FakeQuantParams<float>> pc(static_cast<size_t>(channels), p);
        const std::vector<float> lo(static_cast<size_t>(channels), p.nudged_min);
        const std::vector<float> hi(static_cast<size_t>(channels), p.nudged_max);
        benchmark::RegisterBenchmark(("fake_quant_per_channel_256/" + isa).c_str(),
                                     [set, n, pc, channels](benchmark::State& s) {
                                       Data d(static_cast<size_t>(n));
                                       for (auto _ : s) {
                                         set->fake_quant_per_channel(
                                             d.x.data(), d.y.data(), n / channels, channels,
                                             pc.data(), k::FakeQuantRounding::kMulInvScale);
                                         benchmark::DoNotOptimize(d.y.data());
                                       }
                                       s.SetBytesProcessed(s.iterations() * n * 8);
                                     })
            ->Arg(n);
        benchmark::RegisterBenchmark(
            ("fake_quant_per_channel_packed_256/" + isa).c_str(),
            [set, n, pc, lo, hi, channels](benchmark::State& s) {
              Data d(static_cast<size_t>(n));
              std::vector<uint8_t> code(static_cast<size_t>(k::packed_code_bytes(n)));
              for (auto _ : s) {
                set->fake_quant_per_channel_packed(
                    d.x.data(), d.y.data(), code.data(), n / channels, channels, pc.data(),
                    k::FakeQuantRounding::kMulInvScale, lo.data(), hi.data());
                benchmark::DoNotOptimize(d.y.data());
              }
              s.SetBytesProcessed(s.iterations() * (n * 8 + k::packed_code_bytes(n)));
            })
            ->Arg(n);
        benchmark::RegisterBenchmark(
            ("packed_grad_per_channel_256/" + isa).c_str(),
            [set, n, channels](benchmark::State& s) {
              Data d(static_cast<size_t>(n));
              // Every element in its window: plane 0 set, plane 1 clear.
              std::vector<uint8_t> code(static_cast<size_t>(k::packed_code_bytes(n)));
              for (size_t i = 0; i < code.size(); ++i) code[i] = i % 4 < 2 ? 0xff : 0x00;
              std::vector<float> below(static_cast<size_t>(channels)), above(below);
              for (auto _ : s) {
                set->packed_grad_per_channel(d.g.data(), code.data(), d.y.data(), n / channels,
                                             channels, below.data(), above.data());
                benchmark::DoNotOptimize(d.y.data());
              }
              s.SetBytesProcessed(s.iterations() * (n * 8 + k::packed_code_bytes(n)));
            })
            ->Arg(n);
      }
      // dorefa's weights mode, 2 bits (3 levels): the forward by thresholds, the backward's tanh.
      const float m = k::ref::max_abs_tanh(Data(16).x.data(), 16);
      benchmark::RegisterBenchmark(("dorefa_weights/" + isa).c_str(), [set, n,
                                                                       m](benchmark::State& s) {
        Data d(static_cast<size_t>(n));
        for (auto _ : s) {
          set->dorefa_weights(d.x.data(), d.y.data(), n, 3.0f, m);
          benchmark::DoNotOptimize(d.y.data());
        }
        s.SetBytesProcessed(s.iterations() * n * 8);
      })->Arg(n);
      // The gradient on x ~ N(0, 4), and on weights as trained networks have them, x ~ N(0, 0.05):
      // all below 0.625, where tanh is its polynomial alone.
      for (const auto& [suffix, x_scale] : {std::pair<const char*, float>{"", 1.0f},
                                            std::pair<const char*, float>{"_small_x", 0.0125f}}) {
        benchmark::RegisterBenchmark(
            (std::string("dorefa_weights_grad") + suffix + "/" + isa).c_str(),
            [set, n, m, x_scale = x_scale](benchmark::State& s) {
              Data d(static_cast<size_t>(n));
              for (float& v : d.x) v *= x_scale;
              for (auto _ : s) {
                set->dorefa_weights_grad(d.g.data(), d.x.data(), d.y.data(), n, m);
                benchmark::DoNotOptimize(d.y.data());
              }
              s.SetBytesProcessed(s.iterations() * n * 12);
            })
            ->Arg(n);
      }
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
