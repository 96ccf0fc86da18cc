// Helpers the engine's kernel benchmarks share (bench/engine_*.cpp).
#pragma once

#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

namespace bench_util {

// n floats uniform in [lo, hi), the same for a seed.
inline std::vector<float> uniform(int64_t n, uint32_t seed = 1, float lo = -1, float hi = 1) {
  std::mt19937 rng(seed);
  std::vector<float> v(n);
  for (auto& e : v) e = std::uniform_real_distribution<float>(lo, hi)(rng);
  return v;
}

// A GB/s counter: `bytes` moved per iteration.
inline void set_bytes(benchmark::State& state, int64_t bytes) {
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(bytes) * state.iterations(),
                                              benchmark::Counter::kIsRate);
}

}  // namespace bench_util
