// Every CUDA kernel against the CPU's scalar reference on the same inputs: bit for bit for the
// element-wise math, and within a tolerance where the source allows one (the double sums of
// reductions, and tanh/cosh, whose device and glibc versions may differ in the last bit). Skipped
// where no CUDA device is present.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "lowbit/cuda_kernels.h"
#include "lowbit/kernels.h"

namespace {

namespace kc = lowbit::cuda;
namespace k = lowbit::kernels;
namespace kr = lowbit::kernels::ref;
namespace d = lowbit::detail;

bool have_device() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

#define REQUIRE_DEVICE() \
  if (!have_device()) GTEST_SKIP() << "no CUDA device"

// A device copy of a host vector (or n uninitialised elements), read back with get().
template <class T>
class Dev {
 public:
  explicit Dev(size_t n) : n_(n) {
    EXPECT_EQ(cudaMalloc(&p_, (n ? n : 1) * sizeof(T)), cudaSuccess);
  }
  explicit Dev(const std::vector<T>& v) : Dev(v.size()) {
    EXPECT_EQ(cudaMemcpy(p_, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  ~Dev() { cudaFree(p_); }
  T* get() const { return static_cast<T*>(p_); }
  std::vector<T> host() const {
    std::vector<T> v(n_);
    EXPECT_EQ(cudaMemcpy(v.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return v;
  }

 private:
  void* p_ = nullptr;
  size_t n_;
};

// n values: the special cases first (zeros, clip and window edges, NaN, infinities, ties of the
// usual scales), then normal(0, 2) samples. n is odd so that block tails are exercised.
template <class T>
std::vector<T> inputs(size_t n, unsigned seed = 1) {
  const T inf = std::numeric_limits<T>::infinity();
  std::vector<T> v{T(0),
                   T(-0.0),
                   T(1),
                   T(-1),
                   T(0.5),
                   T(-0.5),
                   T(2),
                   T(-2),
                   T(0.05),
                   T(-0.05),
                   T(6),
                   T(-6),
                   T(1e-30),
                   T(-1e-30),
                   inf,
                   -inf,
                   std::numeric_limits<T>::quiet_NaN(),
                   T(0.25),
                   T(0.75),
                   T(1.5),
                   T(5.97647047),
                   T(-6.02352953)};
  std::mt19937 gen(seed);
  std::normal_distribution<double> dist(0.0, 2.0);
  while (v.size() < n) v.push_back(static_cast<T>(dist(gen)));
  v.resize(n);
  return v;
}

template <class T>
void expect_same(const std::vector<T>& want, const std::vector<T>& got, const char* what) {
  ASSERT_EQ(want.size(), got.size()) << what;
  for (size_t i = 0; i < want.size(); ++i) {
    const bool both_nan = std::isnan(want[i]) && std::isnan(got[i]);
    if (!both_nan && std::memcmp(&want[i], &got[i], sizeof(T)) != 0) {
      ADD_FAILURE() << what << ": element " << i << ": want " << want[i] << ", got " << got[i];
      return;
    }
  }
}

template <class T>
void expect_close(const std::vector<T>& want, const std::vector<T>& got, double rel,
                  const char* what) {
  ASSERT_EQ(want.size(), got.size()) << what;
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::isnan(want[i]) && std::isnan(got[i])) continue;
    if (want[i] == got[i]) continue;
    const double tol = rel * std::max(1.0, std::fabs(static_cast<double>(want[i])));
    if (!(std::fabs(static_cast<double>(want[i]) - static_cast<double>(got[i])) <= tol)) {
      ADD_FAILURE() << what << ": element " << i << ": want " << want[i] << ", got " << got[i];
      return;
    }
  }
}

constexpr size_t kN = 100003;

template <class T>
class CudaKernels : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(CudaKernels, Types);

TYPED_TEST(CudaKernels, ElementwiseForwards) {
  REQUIRE_DEVICE();
  using T = TypeParam;
  const auto x = inputs<T>(kN);
  const Dev<T> dx(x);
  Dev<T> dy(kN);
  std::vector<T> want(kN);

  ASSERT_EQ(kc::sign<T>(dx.get(), dy.get(), kN, nullptr, nullptr), cudaSuccess);
  kr::sign<T>(x.data(), want.data(), kN, T(1));
  expect_same(want, dy.host(), "sign");

  const Dev<T> scale(std::vector<T>{T(0.37)});
  ASSERT_EQ(kc::sign<T>(dx.get(), dy.get(), kN, scale.get(), nullptr), cudaSuccess);
  kr::sign<T>(x.data(), want.data(), kN, T(0.37));
  expect_same(want, dy.host(), "sign scaled");

  ASSERT_EQ(kc::heaviside<T>(dx.get(), dy.get(), kN, nullptr), cudaSuccess);
  kr::heaviside<T>(x.data(), want.data(), kN);
  expect_same(want, dy.host(), "heaviside");

  ASSERT_EQ(kc::ternary<T>(dx.get(), dy.get(), kN, T(0.05), nullptr, nullptr), cudaSuccess);
  kr::ternary<T>(x.data(), want.data(), kN, T(0.05));
  expect_same(want, dy.host(), "ternary");

  const Dev<T> mean(std::vector<T>{T(1.3)});
  ASSERT_EQ(kc::ternary<T>(dx.get(), dy.get(), kN, T(0.7), mean.get(), nullptr), cudaSuccess);
  kr::ternary<T>(x.data(), want.data(), kN, T(0.7) * T(1.3));
  expect_same(want, dy.host(), "ternary with a device mean");

  ASSERT_EQ(kc::dorefa_activations<T>(dx.get(), dy.get(), kN, T(3), nullptr), cudaSuccess);
  kr::dorefa_activations<T>(x.data(), want.data(), kN, T(3));
  expect_same(want, dy.host(), "dorefa activations");

  ASSERT_EQ(kc::linear_mid_tread<T>(dx.get(), dy.get(), kN, T(3), T(2), nullptr), cudaSuccess);
  kr::linear_mid_tread<T>(x.data(), want.data(), kN, T(3), T(2));
  expect_same(want, dy.host(), "linear mid tread");

  ASSERT_EQ(kc::clamp<T>(dx.get(), dy.get(), kN, T(0), T(2), nullptr), cudaSuccess);
  for (size_t i = 0; i < kN; ++i) want[i] = d::clamp_tf(x[i], T(0), T(2));
  expect_same(want, dy.host(), "clamp");

  Dev<uint8_t> code(kN);
  ASSERT_EQ(kc::sign_coded<T>(dx.get(), dy.get(), code.get(), kN, T(-1), T(1), nullptr),
            cudaSuccess);
  std::vector<uint8_t> want_code(kN);
  kr::sign<T>(x.data(), want.data(), kN, T(1));
  for (size_t i = 0; i < kN; ++i) want_code[i] = d::window_code(x[i], T(-1), T(1));
  expect_same(want, dy.host(), "sign coded");
  EXPECT_EQ(want_code, code.host());
}

TYPED_TEST(CudaKernels, PerAxisSign) {
  REQUIRE_DEVICE();
  using T = TypeParam;
  const int64_t outer = 3, channels = 5, inner = 7, n = outer * channels * inner;
  const auto x = inputs<T>(n);
  const std::vector<T> s{T(0.5), T(1.25), T(3), T(0.1), T(7)};
  const Dev<T> dx(x), ds(s);
  Dev<T> dy(n);
  ASSERT_EQ(kc::sign_per_axis<T>(dx.get(), dy.get(), outer, channels, inner, ds.get(), nullptr),
            cudaSuccess);
  std::vector<T> want(n);
  for (int64_t i = 0; i < n; ++i) want[i] = d::sign0_scaled(x[i], s[(i / inner) % channels]);
  expect_same(want, dy.host(), "sign per axis");
}

TYPED_TEST(CudaKernels, WeightQuantizersWithDeviceStatistics) {
  REQUIRE_DEVICE();
  using T = TypeParam;
  auto x = inputs<T>(kN);
  for (auto& v : x) {
    if (!std::isfinite(v)) v = T(0.3);  // weights are finite; NaN has its own test below
  }
  const Dev<T> dx(x);
  Dev<T> dy(kN), m(1);
  Dev<char> ws(kc::twn_workspace_bytes(kN));
  std::vector<T> want(kN);

  ASSERT_EQ(kc::max_abs<T>(dx.get(), kN, m.get(), ws.get(), nullptr), cudaSuccess);
  EXPECT_EQ(m.host()[0], kr::max_abs<T>(x.data(), kN));
  const Dev<T> pos(std::vector<T>{T(1.5)}), neg(std::vector<T>{T(0.75)});
  ASSERT_EQ(
      kc::ttq_weight<T>(dx.get(), dy.get(), kN, pos.get(), neg.get(), T(0.05), m.get(), nullptr),
      cudaSuccess);
  kr::ttq_weight<T>(x.data(), want.data(), kN, T(1.5), T(0.75),
                    T(0.05) * kr::max_abs<T>(x.data(), kN));
  expect_same(want, dy.host(), "ttq");

  ASSERT_EQ(kc::max_abs_tanh<T>(dx.get(), kN, m.get(), ws.get(), nullptr), cudaSuccess);
  const T mt = kr::max_abs_tanh<T>(x.data(), kN);
  EXPECT_NEAR(m.host()[0], mt, 4 * std::numeric_limits<T>::epsilon());
  ASSERT_EQ(kc::dorefa_weights<T>(dx.get(), dy.get(), kN, T(3), m.get(), nullptr), cudaSuccess);
  kr::dorefa_weights<T>(x.data(), want.data(), kN, T(3), m.host()[0]);
  // tanh may differ in the last bit between the device and glibc: a level may flip at a tie.
  const auto got = dy.host();
  size_t differ = 0;
  for (size_t i = 0; i < kN; ++i) differ += want[i] != got[i];
  EXPECT_LE(differ, kN / 10000) << "dorefa weights";

  ASSERT_EQ(kc::twn_weight<T>(dx.get(), dy.get(), kN, T(0.7), ws.get(), nullptr), cudaSuccess);
  kr::twn_weight<T>(x.data(), want.data(), kN, T(0.7));
  expect_close(want, dy.host(), 4 * std::numeric_limits<T>::epsilon(), "twn");
}

TYPED_TEST(CudaKernels, Reductions) {
  REQUIRE_DEVICE();
  using T = TypeParam;
  const int64_t outer = 4, channels = 6, inner = 4001, n = outer * channels * inner;
  auto x = inputs<T>(n);
  for (auto& v : x) {
    if (!std::isfinite(v)) v = T(-0.7);
  }
  const Dev<T> dx(x);
  Dev<T> out(channels);
  Dev<char> ws(kc::reduce_workspace_bytes(n));
  ASSERT_EQ(kc::mean_abs<T>(dx.get(), outer, channels, inner, out.get(), ws.get(), nullptr),
            cudaSuccess);
  std::vector<T> want(channels);
  kr::mean_abs_per_channel<T>(x.data(), outer, channels, inner, want.data());
  expect_close(want, out.host(), 2 * std::numeric_limits<T>::epsilon(), "mean abs per channel");
  ASSERT_EQ(kc::mean_abs<T>(dx.get(), 1, 1, n, out.get(), ws.get(), nullptr), cudaSuccess);
  kr::mean_abs_per_channel<T>(x.data(), 1, 1, n, want.data());
  EXPECT_NEAR(out.host()[0], want[0], 2 * std::numeric_limits<T>::epsilon() * want[0]);

  // NaN anywhere makes the maxima NaN, as the reference.
  x[n / 2] = std::numeric_limits<T>::quiet_NaN();
  const Dev<T> dnan(x);
  ASSERT_EQ(kc::max_abs<T>(dnan.get(), n, out.get(), ws.get(), nullptr), cudaSuccess);
  EXPECT_TRUE(std::isnan(out.host()[0]));
  // An empty tensor: max 0, mean NaN.
  ASSERT_EQ(kc::max_abs<T>(dnan.get(), 0, out.get(), ws.get(), nullptr), cudaSuccess);
  EXPECT_EQ(out.host()[0], T(0));
}

// Every field of two parameter sets, bit for bit.
template <class T>
void expect_same_params(const d::FakeQuantParams<T>& a, const d::FakeQuantParams<T>& b) {
  expect_same(std::vector<T>{a.nudged_min, a.nudged_max, a.scale, a.inv_scale, a.quant_zero},
              std::vector<T>{b.nudged_min, b.nudged_max, b.scale, b.inv_scale, b.quant_zero},
              "params");
  EXPECT_EQ(a.degenerate, b.degenerate);
}

TYPED_TEST(CudaKernels, NudgeOnTheDeviceEqualsTheHost) {
  REQUIRE_DEVICE();
  using T = TypeParam;
  const std::vector<T> mn{T(-6), T(-1), T(0), T(0.5), T(-3.7), T(0), T(1), T(-2)};
  const std::vector<T> mx{T(6), T(1), T(0), T(2.25), T(-0.1), T(4), T(1), T(-3)};
  const int64_t c = static_cast<int64_t>(mn.size());
  const Dev<T> dmn(mn), dmx(mx);
  Dev<d::FakeQuantParams<T>> params(c);
  Dev<T> lo(c), hi(c);
  for (int bits : {2, 8, 16}) {
    for (bool narrow : {false, true}) {
      ASSERT_EQ(kc::nudge<T>(dmn.get(), dmx.get(), c, bits, narrow, params.get(), lo.get(),
                             hi.get(), nullptr),
                cudaSuccess);
      const auto got = params.host();
      for (int64_t i = 0; i < c; ++i) {
        if (!d::valid_range(mn[i], mx[i])) {
          EXPECT_TRUE(std::isnan(got[i].scale)) << "an invalid range gives NaN parameters";
          continue;
        }
        expect_same_params(k::nudge<T>(mn[i], mx[i], bits, narrow), got[i]);
      }
    }
  }
  Dev<T> rlo(c), rhi(c);
  ASSERT_EQ(kc::nudge_pow2<T>(dmn.get(), dmx.get(), c, 8, true, 3, params.get(), lo.get(), hi.get(),
                              rlo.get(), rhi.get(), nullptr),
            cudaSuccess);
  const auto glo = rlo.host(), ghi = rhi.host();
  for (int64_t i = 0; i < c; ++i) {
    const auto r = k::pow2_range<T>(mn[i], mx[i], 8, 3);
    EXPECT_EQ(glo[i], r.min);
    EXPECT_EQ(ghi[i], r.max);
    expect_same_params(k::nudge<T>(r.min, r.max, 8, false), params.host()[i]);
  }
}

TYPED_TEST(CudaKernels, FakeQuantForwardsAndCodes) {
  REQUIRE_DEVICE();
  using T = TypeParam;
  const int64_t channels = 7;
  const auto x = inputs<T>(kN - kN % channels);
  const int64_t n = static_cast<int64_t>(x.size()), rows = n / channels;
  std::vector<d::FakeQuantParams<T>> p;
  std::vector<T> lo, hi;
  for (int64_t c = 0; c < channels; ++c) {
    p.push_back(c == 3 ? k::nudge<T>(T(0), T(0), 8, false)
                       : k::nudge<T>(T(-1) - T(c), T(0.5) * T(c + 1), 8, c % 2 == 1));
    lo.push_back(p.back().degenerate ? -std::numeric_limits<T>::infinity() : p.back().nudged_min);
    hi.push_back(p.back().degenerate ? std::numeric_limits<T>::infinity() : p.back().nudged_max);
  }
  const Dev<T> dx(x), dlo(lo), dhi(hi);
  const Dev<d::FakeQuantParams<T>> dp(p);
  Dev<T> dy(n);
  Dev<uint8_t> code(n);
  std::vector<T> want(n);
  std::vector<uint8_t> want_code(n);

  ASSERT_EQ(kc::fake_quant<T>(dx.get(), dy.get(), code.get(), n, channels, dp.get(), false,
                              dlo.get(), dhi.get(), nullptr),
            cudaSuccess);
  kr::fake_quant_per_channel_coded<T>(x.data(), want.data(), want_code.data(), rows, channels,
                                      p.data(), k::FakeQuantRounding::kMulInvScale, lo.data(),
                                      hi.data());
  expect_same(want, dy.host(), "fake quant per channel");
  EXPECT_EQ(want_code, code.host());

  for (int64_t c : {0, 3}) {  // per tensor, dividing (vars); and the degenerate range
    ASSERT_EQ(kc::fake_quant<T>(dx.get(), dy.get(), code.get(), n, 1, dp.get() + c, true,
                                dlo.get() + c, dhi.get() + c, nullptr),
              cudaSuccess);
    kr::fake_quant<T>(
        x.data(), want.data(), n, p[c],
        p[c].degenerate ? k::FakeQuantRounding::kMulInvScale : k::FakeQuantRounding::kDivScale);
    for (int64_t i = 0; i < n; ++i) want_code[i] = d::window_code(x[i], lo[c], hi[c]);
    expect_same(want, dy.host(), "fake quant vars");
    EXPECT_EQ(want_code, code.host());
  }

  ASSERT_EQ(
      kc::fake_quant_host_params<T>(dx.get(), dy.get(), nullptr, n, p[1], lo[1], hi[1], nullptr),
      cudaSuccess);
  kr::fake_quant<T>(x.data(), want.data(), n, p[1], k::FakeQuantRounding::kMulInvScale);
  expect_same(want, dy.host(), "fake quant args");
}

TYPED_TEST(CudaKernels, ElementwiseBackwards) {
  REQUIRE_DEVICE();
  using T = TypeParam;
  const auto x = inputs<T>(kN), g = inputs<T>(kN, 7);
  const Dev<T> dx(x), dg(g);
  Dev<T> out(kN);
  std::vector<T> want(kN);
  for (bool open : {false, true}) {
    ASSERT_EQ(kc::masked_grad<T>(dg.get(), dx.get(), out.get(), kN, T(-1), T(1), open, nullptr),
              cudaSuccess);
    kr::masked_grad<T>(g.data(), x.data(), want.data(), kN, T(-1), T(1),
                       open ? k::Interval::kOpen : k::Interval::kClosed, nullptr, nullptr);
    expect_same(want, out.host(), "masked grad");
  }
  ASSERT_EQ(kc::approx_sign_grad<T>(dg.get(), dx.get(), out.get(), kN, nullptr), cudaSuccess);
  kr::approx_sign_grad<T>(g.data(), x.data(), want.data(), kN);
  expect_same(want, out.host(), "approx sign grad");

  ASSERT_EQ(kc::swish_sign_grad<T>(dg.get(), dx.get(), out.get(), kN, T(5), nullptr), cudaSuccess);
  kr::swish_sign_grad<T>(g.data(), x.data(), want.data(), kN, T(5));
  expect_close(want, out.host(), 16 * std::numeric_limits<T>::epsilon(), "swish sign grad");

  const Dev<T> m(std::vector<T>{T(0.9)});
  ASSERT_EQ(kc::dorefa_weights_grad<T>(dg.get(), dx.get(), out.get(), kN, m.get(), nullptr),
            cudaSuccess);
  kr::dorefa_weights_grad<T>(g.data(), x.data(), want.data(), kN, T(0.9));
  expect_close(want, out.host(), 16 * std::numeric_limits<T>::epsilon(), "dorefa weights grad");

  const int64_t channels = 3, inner = kN / 3;
  const std::vector<T> s{T(0.5), T(2), T(0.25)};
  const Dev<T> ds(s);
  for (bool clip : {false, true}) {
    ASSERT_EQ(kc::scaled_ste_grad<T>(dg.get(), dx.get(), out.get(), 1, channels, inner, ds.get(),
                                     clip, T(1), nullptr),
              cudaSuccess);
    auto got = out.host();
    got.resize(channels * inner);
    std::vector<T> w(channels * inner);
    for (int64_t i = 0; i < channels * inner; ++i) {
      const T ste = clip ? d::masked_grad(g[i], x[i], T(-1), T(1), false) : g[i];
      w[i] = ste * s[i / inner];
    }
    expect_same(w, got, "magnitude aware sign grad");
  }
}

// Sums of g over the elements where pick(i) holds, in double, in index order.
template <class T, class F>
double sum_where(const std::vector<T>& g, F pick) {
  double s = 0;
  for (size_t i = 0; i < g.size(); ++i) s += pick(i) ? static_cast<double>(g[i]) : 0.0;
  return s;
}

TYPED_TEST(CudaKernels, BackwardsWithSums) {
  REQUIRE_DEVICE();
  using T = TypeParam;
  const int64_t channels = 40;
  const auto x = inputs<T>(kN - kN % channels), g = inputs<T>(kN - kN % channels, 9);
  const int64_t n = static_cast<int64_t>(x.size()), rows = n / channels;
  std::vector<uint8_t> code(n);
  for (int64_t i = 0; i < n; ++i) code[i] = d::window_code(x[i], T(-1), T(1));
  const Dev<T> dx(x), dg(g);
  const Dev<uint8_t> dcode(code);
  Dev<T> out(n);
  Dev<double> sums(2), below(channels), above(channels);
  Dev<char> ws(kc::reduce_workspace_bytes(n)), cws(kc::channel_workspace_bytes(rows, channels));
  std::vector<T> want(n);
  const double tol = 1e-9 * static_cast<double>(n);

  ASSERT_EQ(kc::coded_grad<T>(dg.get(), dcode.get(), out.get(), n, sums.get(), ws.get(), nullptr),
            cudaSuccess);
  for (int64_t i = 0; i < n; ++i) want[i] = d::coded_grad(g[i], code[i]);
  expect_same(want, out.host(), "coded grad");
  auto s = sums.host();
  EXPECT_NEAR(s[0], sum_where(g, [&](size_t i) { return x[i] < T(-1); }), tol);
  EXPECT_NEAR(s[1], sum_where(g, [&](size_t i) { return x[i] > T(1); }), tol);

  const Dev<T> lo(std::vector<T>{T(-1)}), hi(std::vector<T>{T(1)});
  ASSERT_EQ(kc::window_grad<T>(dg.get(), dx.get(), out.get(), n, lo.get(), hi.get(), sums.get(),
                               ws.get(), nullptr),
            cudaSuccess);
  expect_same(want, out.host(), "window grad");
  s = sums.host();
  EXPECT_NEAR(s[1], sum_where(g, [&](size_t i) { return x[i] > T(1); }), tol);

  ASSERT_EQ(kc::coded_grad_per_channel<T>(dg.get(), dcode.get(), out.get(), rows, channels,
                                          below.get(), above.get(), cws.get(), nullptr),
            cudaSuccess);
  expect_same(want, out.host(), "coded grad per channel");
  std::vector<T> clo(channels), chi(channels);
  for (int64_t c = 0; c < channels; ++c) {
    clo[c] = T(-1) - T(c) / T(10);
    chi[c] = T(1) + T(c) / T(20);
  }
  const auto b = below.host(), a = above.host();
  for (int64_t c = 0; c < channels; ++c) {
    EXPECT_NEAR(b[c],
                sum_where(g, [&](size_t i) { return i % channels == size_t(c) && x[i] < T(-1); }),
                tol);
    EXPECT_NEAR(a[c],
                sum_where(g, [&](size_t i) { return i % channels == size_t(c) && x[i] > T(1); }),
                tol);
  }
  const Dev<T> dclo(clo), dchi(chi);
  ASSERT_EQ(
      kc::window_grad_per_channel<T>(dg.get(), dx.get(), out.get(), rows, channels, dclo.get(),
                                     dchi.get(), below.get(), above.get(), cws.get(), nullptr),
      cudaSuccess);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t i = r * channels + c;
      want[i] = d::masked_grad(g[i], x[i], clo[c], chi[c], false);
    }
  }
  expect_same(want, out.host(), "window grad per channel");
  const auto b2 = below.host();
  for (int64_t c = 0; c < channels; ++c) {
    EXPECT_NEAR(b2[c],
                sum_where(g, [&](size_t i) { return i % channels == size_t(c) && x[i] < clo[c]; }),
                tol);
  }

  const Dev<T> pos(std::vector<T>{T(1.5)}), neg(std::vector<T>{T(0.75)}), m(std::vector<T>{T(3)});
  ASSERT_EQ(kc::ttq_weight_grad<T>(dg.get(), dx.get(), out.get(), n, pos.get(), neg.get(), T(0.1),
                                   m.get(), sums.get(), sums.get() + 1, ws.get(), nullptr),
            cudaSuccess);
  double dp = 0, dn = 0;
  kr::ttq_weight_grad<T>(g.data(), x.data(), want.data(), n, T(1.5), T(0.75), T(0.1) * T(3), &dp,
                         &dn);
  expect_same(want, out.host(), "ttq grad");
  s = sums.host();
  EXPECT_NEAR(s[0], dp, tol);
  EXPECT_NEAR(s[1], dn, tol);
}

TEST(CudaKernels, EmptyInputsLaunchNothing) {
  REQUIRE_DEVICE();
  EXPECT_EQ(kc::sign<float>(nullptr, nullptr, 0, nullptr, nullptr), cudaSuccess);
  EXPECT_EQ(kc::masked_grad<float>(nullptr, nullptr, nullptr, 0, -1.f, 1.f, false, nullptr),
            cudaSuccess);
}

}  // namespace
