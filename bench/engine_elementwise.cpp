// The engine's element-wise kernels (include/lowbit/engine/kernels/elementwise.h) against
// LibTorch's operators on the same tensors, one thread, side by side in one run
// (docs/performance.md):
//   build/lowbit_engine_elementwise_bench [--benchmark_filter=...]
// Every function of the list on 2^16 floats (a [64, 32, 32] activation; in cache) and 2^20 (a
// [64, 128, 128] one; out of the L2 cache), against a constant per row where LibTorch broadcasts
// one ([C, 1, 1]). Both sides write into preallocated outputs (LibTorch's *_out operators):
// retained-memory figures. BM_quant / BM_quant_rows: QONNX's Quant (8-bit signed, ties to even)
// with one scale and zero point or one per row, against LibTorch's fake_quantize_per_tensor_affine
// and fake_quantize_per_channel_affine (the same function; these allocate their output each call).
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <functional>
#include <random>
#include <string>
#include <vector>

#include "bench_util.h"
#include "lowbit/engine/kernels/elementwise.h"

namespace {

using bench_util::set_bytes;
using bench_util::uniform;

namespace ew = lowbit::engine::elementwise;
using ew::Binary;
using ew::Unary;

constexpr int64_t kChannels = 64;
const int64_t kSizes[] = {int64_t{1} << 16, int64_t{1} << 20};

// The parameters the unary functions get (ONNX's defaults where it has them).
float param_a(Unary f) {
  return f == Unary::clamp ? 0.0f : f == Unary::hard_sigmoid ? 0.2f : 0.01f;
}
float param_b(Unary f) { return f == Unary::clamp ? 6.0f : 0.5f; }

void BM_unary(benchmark::State& state, const ew::Kernels* k, Unary f, int64_t n) {
  const auto x = uniform(n, 1, -4, 4);
  std::vector<float> y(n);
  for (auto _ : state) {
    k->unary(f, param_a(f), param_b(f), x.data(), n, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  set_bytes(state, 2 * n * static_cast<int64_t>(sizeof(float)));
}

void BM_binary(benchmark::State& state, const ew::Kernels* k, Binary f, int64_t n) {
  const auto p = uniform(n, 2, -4, 4), q = uniform(n, 3, -4, 4);
  std::vector<float> y(n);
  for (auto _ : state) {
    k->binary(f, p.data(), q.data(), n, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  set_bytes(state, 3 * n * static_cast<int64_t>(sizeof(float)));
}

void BM_rows(benchmark::State& state, const ew::Kernels* k, Binary f, int64_t n) {
  const auto x = uniform(n, 4, -4, 4), c = uniform(kChannels, 5, -4, 4);
  std::vector<float> y(n);
  for (auto _ : state) {
    k->rows(f, x.data(), c.data(), kChannels, n / kChannels, false, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  set_bytes(state, 2 * n * static_cast<int64_t>(sizeof(float)));
}

void BM_quant(benchmark::State& state, const ew::Kernels* k, int64_t rows, int64_t n) {
  const auto x = uniform(n, 6, -4, 4);
  std::vector<float> scale(rows, 0.05f), zero(rows, 3.0f), y(n);
  for (int64_t r = 0; r < rows; ++r) scale[r] = 0.05f + 0.001f * static_cast<float>(r);
  for (auto _ : state) {
    k->quant(ew::Rounding::round, -128, 127, x.data(), scale.data(), zero.data(), rows, n / rows,
             y.data());
    benchmark::DoNotOptimize(y.data());
  }
  set_bytes(state, 2 * n * static_cast<int64_t>(sizeof(float)));
}

void BM_torch_quant(benchmark::State& state, int64_t rows, int64_t n) {
  const torch::Tensor x = torch::rand({rows, n / rows}) * 8 - 4;
  const torch::Tensor scale = 0.05 + 0.001 * torch::arange(rows, torch::kFloat);
  const torch::Tensor zero = torch::full({rows}, 3, torch::kInt);
  for (auto _ : state) {
    torch::Tensor y = rows == 1
                          ? at::fake_quantize_per_tensor_affine(x, 0.05, 3, -128, 127)
                          : at::fake_quantize_per_channel_affine(x, scale, zero, 0, -128, 127);
    benchmark::DoNotOptimize(y.data_ptr());
  }
  set_bytes(state, 2 * n * static_cast<int64_t>(sizeof(float)));
}

// LibTorch's operator for a function, where it has one (an empty function otherwise).
using TorchUnary = std::function<void(const torch::Tensor&, torch::Tensor&)>;
TorchUnary torch_unary(Unary f) {
  switch (f) {
    case Unary::copy:
      return [](const torch::Tensor& x, torch::Tensor& y) { y.copy_(x); };
    case Unary::relu:
      return [](const torch::Tensor& x, torch::Tensor& y) { at::clamp_min_out(y, x, 0); };
    case Unary::clamp:
      return [](const torch::Tensor& x, torch::Tensor& y) { at::clamp_out(y, x, 0, 6); };
    case Unary::leaky_relu:
      return [](const torch::Tensor& x, torch::Tensor& y) { at::leaky_relu_out(y, x, 0.01); };
    case Unary::elu:
      return [](const torch::Tensor& x, torch::Tensor& y) { at::elu_out(y, x); };
    case Unary::hard_sigmoid:  // PyTorch's is alpha 1/6, beta 0.5
      return [](const torch::Tensor& x, torch::Tensor& y) { at::hardsigmoid_out(y, x); };
    case Unary::hard_swish:
      return [](const torch::Tensor& x, torch::Tensor& y) { at::hardswish_out(y, x); };
    case Unary::sigmoid:
      return [](const torch::Tensor& x, torch::Tensor& y) { at::sigmoid_out(y, x); };
    case Unary::tanh:
      return [](const torch::Tensor& x, torch::Tensor& y) { at::tanh_out(y, x); };
    case Unary::softplus:
      return [](const torch::Tensor& x, torch::Tensor& y) { at::softplus_out(y, x); };
    case Unary::exp:
      return [](const torch::Tensor& x, torch::Tensor& y) { at::exp_out(y, x); };
    case Unary::sqrt:
      return [](const torch::Tensor& x, torch::Tensor& y) { at::sqrt_out(y, x); };
    case Unary::erf:
      return [](const torch::Tensor& x, torch::Tensor& y) { at::erf_out(y, x); };
    case Unary::neg:
      return [](const torch::Tensor& x, torch::Tensor& y) { at::neg_out(y, x); };
    case Unary::abs:
      return [](const torch::Tensor& x, torch::Tensor& y) { at::abs_out(y, x); };
    case Unary::sign:
      return [](const torch::Tensor& x, torch::Tensor& y) { at::sign_out(y, x); };
    case Unary::round:
      return [](const torch::Tensor& x, torch::Tensor& y) { at::round_out(y, x); };
    case Unary::floor:
      return [](const torch::Tensor& x, torch::Tensor& y) { at::floor_out(y, x); };
    case Unary::ceil:
      return [](const torch::Tensor& x, torch::Tensor& y) { at::ceil_out(y, x); };
    case Unary::trunc:
      return [](const torch::Tensor& x, torch::Tensor& y) { at::trunc_out(y, x); };
    default:
      return {};  // nonzero, select: compositions in LibTorch
  }
}

using TorchBinary = std::function<void(const torch::Tensor&, const torch::Tensor&, torch::Tensor&)>;
TorchBinary torch_binary(Binary f) {
  switch (f) {
    case Binary::add:
      return [](const torch::Tensor& p, const torch::Tensor& q, torch::Tensor& y) {
        at::add_out(y, p, q);
      };
    case Binary::sub:
      return [](const torch::Tensor& p, const torch::Tensor& q, torch::Tensor& y) {
        at::sub_out(y, p, q);
      };
    case Binary::mul:
      return [](const torch::Tensor& p, const torch::Tensor& q, torch::Tensor& y) {
        at::mul_out(y, p, q);
      };
    case Binary::div:
      return [](const torch::Tensor& p, const torch::Tensor& q, torch::Tensor& y) {
        at::div_out(y, p, q);
      };
    case Binary::min:
      return [](const torch::Tensor& p, const torch::Tensor& q, torch::Tensor& y) {
        at::minimum_out(y, p, q);
      };
    case Binary::max:
      return [](const torch::Tensor& p, const torch::Tensor& q, torch::Tensor& y) {
        at::maximum_out(y, p, q);
      };
    case Binary::pow:
      return [](const torch::Tensor& p, const torch::Tensor& q, torch::Tensor& y) {
        at::pow_out(y, p, q);
      };
    default:
      return {};  // mean, comparisons to float, prelu: compositions or other output types
  }
}

void BM_torch_unary(benchmark::State& state, TorchUnary op, int64_t n) {
  const auto v = uniform(n, 1, -4, 4);
  const torch::Tensor x = torch::from_blob(const_cast<float*>(v.data()), {n}).clone();
  torch::Tensor y = torch::empty({n});
  for (auto _ : state) {
    op(x, y);
    benchmark::DoNotOptimize(y.data_ptr());
  }
  set_bytes(state, 2 * n * static_cast<int64_t>(sizeof(float)));
}

void BM_torch_binary(benchmark::State& state, TorchBinary op, int64_t n, bool per_channel) {
  const torch::Tensor p = torch::rand({kChannels, n / kChannels}) * 8 - 4;
  const torch::Tensor q = per_channel ? torch::rand({kChannels, 1}) * 8 - 4
                                      : torch::rand({kChannels, n / kChannels}) * 8 - 4;
  torch::Tensor y = torch::empty({kChannels, n / kChannels});
  for (auto _ : state) {
    op(p, q, y);
    benchmark::DoNotOptimize(y.data_ptr());
  }
  set_bytes(state, (per_channel ? 2 : 3) * n * static_cast<int64_t>(sizeof(float)));
}

}  // namespace

int main(int argc, char** argv) {
  at::set_num_threads(1);
  for (int64_t n : kSizes) {
    const std::string size = "/" + std::to_string(n);
    for (Unary f : ew::unary_functions()) {
      for (const auto& k : ew::all())
        if (k.supported())
          benchmark::RegisterBenchmark(
              ("BM_unary/" + std::string(ew::name(f)) + "/" + k.name + size).c_str(), BM_unary, &k,
              f, n);
      if (TorchUnary op = torch_unary(f))
        benchmark::RegisterBenchmark(
            ("BM_unary/" + std::string(ew::name(f)) + "/torch" + size).c_str(), BM_torch_unary, op,
            n);
    }
    for (Binary f : ew::binary_functions()) {
      for (const auto& k : ew::all())
        if (k.supported()) {
          benchmark::RegisterBenchmark(
              ("BM_binary/" + std::string(ew::name(f)) + "/" + k.name + size).c_str(), BM_binary,
              &k, f, n);
          benchmark::RegisterBenchmark(
              ("BM_rows/" + std::string(ew::name(f)) + "/" + k.name + size).c_str(), BM_rows, &k, f,
              n);
        }
      if (TorchBinary op = torch_binary(f)) {
        benchmark::RegisterBenchmark(
            ("BM_binary/" + std::string(ew::name(f)) + "/torch" + size).c_str(), BM_torch_binary,
            op, n, false);
        benchmark::RegisterBenchmark(
            ("BM_rows/" + std::string(ew::name(f)) + "/torch" + size).c_str(), BM_torch_binary, op,
            n, true);
      }
    }
    for (int64_t rows : {int64_t{1}, kChannels}) {
      const std::string form = rows == 1 ? "BM_quant/" : "BM_quant_rows/";
      for (const auto& k : ew::all())
        if (k.supported())
          benchmark::RegisterBenchmark((form + k.name + size).c_str(), BM_quant, &k, rows, n);
      benchmark::RegisterBenchmark((form + "torch" + size).c_str(), BM_torch_quant, rows, n);
    }
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
