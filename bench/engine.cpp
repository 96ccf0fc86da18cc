// The engine's binary convolution against LibTorch's float convolution on the same shapes
// (3x3, padding 1, C -> C channels), one thread, side by side in one run (docs/performance.md):
//   build/lowbit_engine_bench [--benchmark_filter=...]
// BM_binary_conv: every binary kernel the CPU runs, on a packed input (chained binary layers keep
// their activations packed); BM_binary_pack_conv adds packing the float input's signs;
// BM_binary_conv_bits: the same, its output thresholded per channel into packed bits (what a binary
// layer followed by batch norm and a sign writes for the next one in a fused chain).
// BM_binary_gemm: a GEMM (the 1x1 convolution of a 14x14 image, 1024 -> 1024 channels: 196 rows,
// 1024-bit dot products, 1024 columns), against BM_xor_popcount_peak.
// BM_int8_conv: every 8-bit kernel (power-of-2 layers, int8 x int8 -> int32) on codes in and sums
// out; BM_int8_step adds what the engine's unfused step does around it: the float input to codes
// and the sums to the float output; BM_int8_fused what a fused power-of-2 layer does: codes in,
// requantized codes out.
// BM_bitplane_conv: every bit-plane kernel (2-bit codes, binary weights), sums out.
// BM_float32_conv: every build of the engine's float convolution (first and float layers).
// BM_torch_conv: torch::conv2d in float32; BM_fma_peak: the CPU's float32 multiply-add peak.
#include <benchmark/benchmark.h>
#include <immintrin.h>
#include <torch/torch.h>

#include <random>
#include <vector>

#include "lowbit/engine/kernels/binary.h"
#include "lowbit/engine/kernels/float32.h"
#include "lowbit/engine/kernels/int8.h"
#include "lowbit/engine/kernels/planes.h"

namespace {

namespace bin = lowbit::engine::binary;

struct Shape {
  int64_t c, hw;
};
const Shape kShapes[] = {{64, 56}, {128, 28}, {256, 14}, {512, 7}};

bin::ConvShape conv_shape(const Shape& s) {
  bin::ConvShape g;
  g.c = g.m = s.c;
  g.h = g.w = g.oh = g.ow = s.hw;
  g.kh = g.kw = 3;
  g.pad_h = g.pad_w = 1;
  return g;
}

std::vector<float> signs(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<float> v(n);
  for (auto& e : v) e = rng() % 2 ? 1.0f : -1.0f;
  return v;
}

void BM_binary_conv_bits(benchmark::State& state, const bin::Kernels* k, Shape s) {
  const auto g = conv_shape(s);
  const auto x = signs(g.c * g.h * g.w, 1), w = signs(g.m * g.c * 9, 2);
  std::vector<uint64_t> packed(bin::words(g.c) * g.h * g.w), bits(bin::words(g.m) * g.oh * g.ow);
  bin::pack_chw(x.data(), g.c, g.h, g.w, packed.data());
  const auto kernel = k->pack(w.data(), g.m, g.c, 3, 3);
  std::vector<int32_t> t(g.m, 0);
  std::vector<uint8_t> below(g.m, 1);
  for (auto _ : state) {
    k->conv_bits(packed.data(), kernel.data(), t.data(), below.data(), g, bits.data());
    benchmark::DoNotOptimize(bits.data());
  }
  state.counters["MACs/s"] =
      benchmark::Counter(static_cast<double>(g.m * g.c * 9 * g.oh * g.ow) * state.iterations(),
                         benchmark::Counter::kIsRate);
}

void BM_binary_gemm(benchmark::State& state, const bin::Kernels* k) {
  bin::ConvShape g;
  g.c = g.m = 1024;
  g.h = g.w = g.oh = g.ow = 14;
  g.kh = g.kw = 1;
  const auto x = signs(g.c * g.h * g.w, 1), w = signs(g.m * g.c, 2);
  std::vector<uint64_t> packed(bin::words(g.c) * g.h * g.w);
  bin::pack_chw(x.data(), g.c, g.h, g.w, packed.data());
  const auto kernel = k->pack(w.data(), g.m, g.c, 1, 1);
  std::vector<float> scale(g.m, 1.0f), bias(g.m, 0.0f), y(g.m * g.oh * g.ow);
  for (auto _ : state) {
    k->conv(packed.data(), kernel.data(), scale.data(), bias.data(), g, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["MACs/s"] =
      benchmark::Counter(static_cast<double>(g.m * g.c * g.oh * g.ow) * state.iterations(),
                         benchmark::Counter::kIsRate);
}

void BM_binary_conv(benchmark::State& state, const bin::Kernels* k, Shape s, bool pack_input) {
  const auto g = conv_shape(s);
  const auto x = signs(g.c * g.h * g.w, 1), w = signs(g.m * g.c * 9, 2);
  std::vector<uint64_t> packed(bin::words(g.c) * g.h * g.w);
  bin::pack_chw(x.data(), g.c, g.h, g.w, packed.data());
  const auto kernel = k->pack(w.data(), g.m, g.c, 3, 3);
  std::vector<float> scale(g.m, 1.0f), bias(g.m, 0.0f), y(g.m * g.oh * g.ow);
  for (auto _ : state) {
    if (pack_input) bin::pack_chw(x.data(), g.c, g.h, g.w, packed.data());
    k->conv(packed.data(), kernel.data(), scale.data(), bias.data(), g, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["MACs/s"] =
      benchmark::Counter(static_cast<double>(g.m * g.c * 9 * g.oh * g.ow) * state.iterations(),
                         benchmark::Counter::kIsRate);
}

// Blueoil's layers: 2-bit activation codes (two bit planes) with binary weights, the sums only.
void BM_bitplane_conv(benchmark::State& state, const lowbit::engine::planes::Kernels* k, Shape s) {
  namespace pl = lowbit::engine::planes;
  const auto g = conv_shape(s);
  std::mt19937 rng(5);
  std::vector<uint8_t> codes(g.c * g.h * g.w);
  for (auto& v : codes) v = static_cast<uint8_t>(rng() % 4);
  std::vector<uint64_t> x(pl::image_words(2, g.c, g.h, g.w));
  pl::pack_codes(codes.data(), 2, g.c, g.h, g.w, x.data());
  const auto w = signs(g.m * g.c * 9, 2);
  const auto kernel = k->pack(w.data(), g.m, g.c, 3, 3);
  std::vector<int32_t> n(g.m * g.oh * g.ow);
  for (auto _ : state) {
    k->sums(x.data(), 2, kernel.data(), g, n.data());
    benchmark::DoNotOptimize(n.data());
  }
  state.counters["MACs/s"] =
      benchmark::Counter(static_cast<double>(g.m * g.c * 9 * g.oh * g.ow) * state.iterations(),
                         benchmark::Counter::kIsRate);
}

// The engine's float32 convolution (first layers, float recipes) on the same shapes.
void BM_float32_conv(benchmark::State& state, const lowbit::engine::float32::Kernels* k, Shape s) {
  const auto g = conv_shape(s);
  std::mt19937 rng(6);
  std::vector<float> x(g.c * g.h * g.w), w(g.m * g.c * 9), bias(g.m, 0.0f), y(g.m * g.oh * g.ow);
  for (auto* v : {&x, &w})
    for (auto& e : *v) e = std::uniform_real_distribution<float>(-1, 1)(rng);
  for (auto _ : state) {
    k->conv(x.data(), w.data(), bias.data(), g, 1, {}, 0, g.oh, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["MACs/s"] =
      benchmark::Counter(static_cast<double>(g.m * g.c * 9 * g.oh * g.ow) * state.iterations(),
                         benchmark::Counter::kIsRate);
}

// Power-of-2 codes as the po2-int8 recipe has them: activations (u - 128) * 2^-4, weights q * 2^-7.
// The kernel alone (kKernel); the unfused step, float input to float output (kStep); the fused
// step, a fused layer's codes to the next layer's (kFused: pack_codes, conv, requantize).
enum Int8Mode { kKernel, kStep, kFused };
void BM_int8_conv(benchmark::State& state, const lowbit::engine::int8::Kernels* k, Shape s,
                  Int8Mode mode) {
  const bool step = mode == kStep;
  namespace i8 = lowbit::engine::int8;
  const auto g = conv_shape(s);
  std::mt19937 rng(3);
  std::vector<float> x(g.c * g.h * g.w);
  for (auto& v : x) v = static_cast<float>(static_cast<int>(rng() % 256) - 128) * 0.0625f;
  const int64_t cp = i8::padded_channels(g.c), plane = g.oh * g.ow;
  std::vector<int8_t> codes(g.m * 9 * cp);
  for (auto& v : codes) v = static_cast<int8_t>(static_cast<int>(rng() % 256) - 128);
  const auto packed = k->pack(codes, g.m, g);
  std::vector<uint8_t> in(cp * i8::padded_rows(g) * i8::padded_cols(g));
  std::vector<int32_t> raw(g.m * plane);
  std::vector<int64_t> constant(g.m, 0);
  std::vector<double> scale(g.m, 0.0625 / 128);
  std::vector<float> bias(g.m, 0.5f), y(g.m * plane);
  std::vector<uint8_t> codes_in(x.size()), codes_out(g.m * plane);
  for (size_t e = 0; e < x.size(); ++e) codes_in[e] = static_cast<uint8_t>(x[e] / 0.0625f + 128);
  // 2^-11 per unit of the sum, 2^-4 per code: a shift of 7, ties up, the bias at the sums' scale.
  std::vector<int64_t> add(g.m, 64 + 128 * 128 + 1024);
  std::vector<int32_t> shift(g.m, 7), lo(g.m, 128), hi(g.m, 255);
  i8::pack_input(x.data(), 0.0625f, 128, g, in.data());
  for (auto _ : state) {
    if (step) k->pack_input(x.data(), 0.0625f, 128, g, in.data());
    if (mode == kFused) k->pack_codes(codes_in.data(), 128, g, in.data());
    k->conv(in.data(), packed.data(), g.m, g, raw.data());
    if (step) {
      k->dequantize(raw.data(), g.m, plane, constant.data(), 0, scale.data(), bias.data(),
                    y.data());
    }
    if (mode == kFused) {
      k->requantize(raw.data(), g.m, plane, add.data(), 0, shift.data(), lo.data(), hi.data(),
                    codes_out.data());
      benchmark::DoNotOptimize(codes_out.data());
    }
    benchmark::DoNotOptimize(raw.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["MACs/s"] = benchmark::Counter(
      static_cast<double>(g.m * g.c * 9 * plane) * state.iterations(), benchmark::Counter::kIsRate);
}

void BM_torch_conv(benchmark::State& state, Shape s) {
  at::set_num_threads(1);
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({1, s.c, s.hw, s.hw});
  const auto w = torch::randn({s.c, s.c, 3, 3});
  auto y = torch::conv2d(x, w, {}, 1, 1);
  for (auto _ : state) {
    y = torch::conv2d(x, w, {}, 1, 1);
    benchmark::DoNotOptimize(y.data_ptr());
  }
  state.counters["MACs/s"] =
      benchmark::Counter(static_cast<double>(s.c * s.c * 9 * s.hw * s.hw) * state.iterations(),
                         benchmark::Counter::kIsRate);
}

// The machine's XOR + popcount peak: the binary kernels' inner operation (a 512-bit load from L1,
// XOR, VPOPCNTQ, add) in eight independent chains, counted in binary MACs (bits) per second.
__attribute__((target("avx512f,avx512vpopcntdq"))) void BM_xor_popcount_peak(
    benchmark::State& state) {
  alignas(64) static uint64_t weights[64 * 8];
  for (int i = 0; i < 64 * 8; ++i) weights[i] = 0x9e3779b97f4a7c15ULL * (i + 1);
  __m512i acc[8], x[8];
  for (int i = 0; i < 8; ++i) {
    acc[i] = _mm512_setzero_si512();
    x[i] = _mm512_set1_epi64(static_cast<long long>(0x5555555555555555ULL * (i + 1)));
  }
  constexpr int64_t kSteps = 1 << 16;
  for (auto _ : state) {
    for (int64_t s = 0; s < kSteps; ++s) {
      const uint64_t* w = weights + (s & 63) * 8;
      const __m512i wv = _mm512_load_si512(w);
      for (int i = 0; i < 8; ++i) {
        acc[i] = _mm512_add_epi64(acc[i], _mm512_popcnt_epi64(_mm512_xor_si512(x[i], wv)));
      }
    }
    long long sum = 0;
    for (int i = 0; i < 8; ++i) sum += _mm512_reduce_add_epi64(acc[i]);
    benchmark::DoNotOptimize(sum);
  }
  state.counters["MACs/s"] = benchmark::Counter(
      static_cast<double>(kSteps) * 8 * 512 * state.iterations(), benchmark::Counter::kIsRate);
}

// The machine's float32 multiply-add peak, what a float convolution can reach at best: 512-bit
// FMAs in twelve independent chains, counted in MACs per second. With the XOR + popcount peak it
// bounds the speedup any binary kernel can have over a float one on this CPU.
__attribute__((target("avx512f"))) void BM_fma_peak(benchmark::State& state) {
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(0.001f * static_cast<float>(i));
  const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(0.0001f);
  constexpr int64_t kSteps = 1 << 16;
  for (auto _ : state) {
    for (int64_t s = 0; s < kSteps; ++s) {
      for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
    }
    float sum = 0;
    for (int i = 0; i < 12; ++i) sum += _mm512_reduce_add_ps(acc[i]);
    benchmark::DoNotOptimize(sum);
  }
  state.counters["MACs/s"] = benchmark::Counter(
      static_cast<double>(kSteps) * 12 * 16 * state.iterations(), benchmark::Counter::kIsRate);
}

const bool registered = [] {
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq")) {
    benchmark::RegisterBenchmark("BM_xor_popcount_peak/avx512", BM_xor_popcount_peak);
  }
  if (__builtin_cpu_supports("avx512f"))
    benchmark::RegisterBenchmark("BM_fma_peak/avx512", BM_fma_peak);
  for (const auto& k : bin::all()) {
    if (k.supported() && k.name != "scalar") {
      benchmark::RegisterBenchmark(("BM_binary_gemm/" + k.name).c_str(), BM_binary_gemm, &k)
          ->Unit(benchmark::kMicrosecond);
    }
  }
  for (const Shape& s : kShapes) {
    const std::string shape = std::to_string(s.c) + "x" + std::to_string(s.hw);
    benchmark::RegisterBenchmark(("BM_torch_conv/" + shape).c_str(), BM_torch_conv, s)
        ->Unit(benchmark::kMicrosecond);
    for (const auto& k : bin::all()) {
      if (!k.supported()) continue;
      benchmark::RegisterBenchmark(("BM_binary_conv/" + k.name + "/" + shape).c_str(),
                                   BM_binary_conv, &k, s, false)
          ->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark(("BM_binary_pack_conv/" + k.name + "/" + shape).c_str(),
                                   BM_binary_conv, &k, s, true)
          ->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark(("BM_binary_conv_bits/" + k.name + "/" + shape).c_str(),
                                   BM_binary_conv_bits, &k, s)
          ->Unit(benchmark::kMicrosecond);
    }
    for (const auto& k : lowbit::engine::planes::all()) {
      if (!k.supported() || k.name == "scalar") continue;
      benchmark::RegisterBenchmark(("BM_bitplane_conv/" + k.name + "/" + shape).c_str(),
                                   BM_bitplane_conv, &k, s)
          ->Unit(benchmark::kMicrosecond);
    }
    for (const auto& k : lowbit::engine::float32::all()) {
      if (!k.supported() || k.name == "scalar") continue;
      benchmark::RegisterBenchmark(("BM_float32_conv/" + k.name + "/" + shape).c_str(),
                                   BM_float32_conv, &k, s)
          ->Unit(benchmark::kMicrosecond);
    }
    for (const auto& k : lowbit::engine::int8::all()) {
      if (!k.supported() || k.name == "scalar") continue;  // the scalar reference: tests only
      benchmark::RegisterBenchmark(("BM_int8_conv/" + k.name + "/" + shape).c_str(), BM_int8_conv,
                                   &k, s, kKernel)
          ->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark(("BM_int8_step/" + k.name + "/" + shape).c_str(), BM_int8_conv,
                                   &k, s, kStep)
          ->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark(("BM_int8_fused/" + k.name + "/" + shape).c_str(), BM_int8_conv,
                                   &k, s, kFused)
          ->Unit(benchmark::kMicrosecond);
    }
  }
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
