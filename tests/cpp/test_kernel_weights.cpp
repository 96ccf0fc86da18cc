// The kernel sets' TWN and TTQ forwards, TTQ's gradient with its sums, magnitude_aware_sign's
// scaled gradient and swish_sign's gradient: every set bit for bit against the reference, on random
// values and on the special ones (the thresholds themselves, +-0, infinities, NaN), and the
// reference against the formulas of the spec written out here.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "kernel_test_support.h"
#include "lowbit/detail/quant_math.h"
#include "lowbit/kernels.h"

namespace lowbit {
namespace kernels {
namespace {

// n values: normal(0, 1) with the specials spread over them (at lanes that vary with n).
std::vector<float> inputs(int64_t n, uint32_t seed, const std::vector<float>& specials) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = normal(rng);
  for (size_t i = 0; i < specials.size() && n > 0; ++i) {
    v[(i * 7 + static_cast<size_t>(seed)) % v.size()] = specials[i];
  }
  return v;
}

void expect_bitwise(const std::vector<float>& want, const std::vector<float>& got,
                    const std::vector<float>& x, const std::string& what) {
  for (size_t i = 0; i < want.size(); ++i) {
    if (bits_of(want[i]) != bits_of(got[i])) {
      ADD_FAILURE() << what << ": element " << i << " (x = " << x[i] << "): want " << want[i]
                    << ", got " << got[i];
      return;
    }
  }
}

const std::vector<int64_t> kSizes = {0, 1, 7, 16, 17, 40, 1000, 4099};
constexpr float kD = 0.5f;

class WeightKernels : public ::testing::TestWithParam<const F32Kernels*> {
 protected:
  const F32Kernels& k() const { return *GetParam(); }
  const F32Kernels& ref() const { return *supported_f32_kernels().front(); }
  std::vector<float> specials() const {
    return {kD,    -kD, std::nextafter(kD, 1.0f), -std::nextafter(kD, 1.0f), 0.0f, -0.0f, kInf,
            -kInf, kNaN};
  }
};

TEST_P(WeightKernels, TwnMatchesReference) {
  for (int64_t n : kSizes) {
    const auto x = inputs(n, 3, specials());
    std::vector<float> want(x.size()), got(x.size(), -7.0f);
    ref().twn(x.data(), want.data(), n, kD, 0.75f);
    k().twn(x.data(), got.data(), n, kD, 0.75f);
    expect_bitwise(want, got, x, std::string(k().isa) + " twn, n = " + std::to_string(n));
  }
}

TEST_P(WeightKernels, TtqMatchesReference) {
  for (int64_t n : kSizes) {
    const auto x = inputs(n, 5, specials());
    std::vector<float> want(x.size()), got(x.size(), -7.0f);
    ref().ttq(x.data(), want.data(), n, 1.25f, 0.5f, kD);
    k().ttq(x.data(), got.data(), n, 1.25f, 0.5f, kD);
    expect_bitwise(want, got, x, std::string(k().isa) + " ttq, n = " + std::to_string(n));
  }
}

TEST_P(WeightKernels, TtqGradAndSumsMatchReference) {
  for (int64_t n : kSizes) {
    const auto x = inputs(n, 9, specials());
    const auto g = inputs(n, 11, {});
    std::vector<float> want(x.size()), got(x.size(), -7.0f);
    double wp = 1, wn = 2, gp = 1, gn = 2;  // both add to what is there
    ref().ttq_grad(g.data(), x.data(), want.data(), n, 1.25f, 0.5f, kD, &wp, &wn);
    k().ttq_grad(g.data(), x.data(), got.data(), n, 1.25f, 0.5f, kD, &gp, &gn);
    expect_bitwise(want, got, x, std::string(k().isa) + " ttq_grad, n = " + std::to_string(n));
    EXPECT_EQ(gp, wp) << k().isa << ", n = " << n;
    EXPECT_EQ(gn, wn) << k().isa << ", n = " << n;
  }
}

TEST_P(WeightKernels, ClippedGradScaledRowsMatchesReference) {
  for (int64_t channels : {1, 5, 16, 19, 64}) {
    const int64_t rows = 13;
    const auto x = inputs(rows * channels, 13, specials());
    const auto g = inputs(rows * channels, 17, {-0.0f});
    const auto scale = inputs(channels, 19, {});
    for (bool clipped : {true, false}) {
      std::vector<float> want(x.size()), got(x.size(), -7.0f);
      ref().clipped_grad_scaled_rows(g.data(), x.data(), want.data(), rows, channels, clipped, kD,
                                     scale.data());
      k().clipped_grad_scaled_rows(g.data(), x.data(), got.data(), rows, channels, clipped, kD,
                                   scale.data());
      expect_bitwise(want, got, x,
                     std::string(k().isa) + " clipped_grad_scaled_rows, channels = " +
                         std::to_string(channels) + (clipped ? ", clipped" : ""));
    }
  }
}

TEST_P(WeightKernels, SwishSignGradMatchesReference) {
  for (int64_t n : kSizes) {
    auto x = inputs(n, 23, {0.0f, -0.0f, kInf, -kInf, kNaN, 20.0f, -17.4f, 17.5f, 1e-30f});
    for (float& v : x) v *= 2.0f;
    const auto g = inputs(n, 29, {-0.0f, kNaN});
    for (float beta : {5.0f, 0.3f}) {
      std::vector<float> want(x.size()), got(x.size(), -7.0f);
      ref().swish_sign_grad(g.data(), x.data(), want.data(), n, beta);
      k().swish_sign_grad(g.data(), x.data(), got.data(), n, beta);
      expect_bitwise(want, got, x,
                     std::string(k().isa) + " swish_sign_grad, n = " + std::to_string(n));
    }
  }
}

TEST_P(WeightKernels, DorefaWeightsModeMatchesReference) {
  for (int64_t n : kSizes) {
    auto x = inputs(
        n, 37,
        {0.0f, -0.0f, 0.625f, -0.625f, std::nextafter(0.625f, 0.0f), kInf, -kInf, 50.0f, 1e-20f});
    const auto g = inputs(n, 41, {-0.0f});
    EXPECT_EQ(k().max_abs_tanh(x.data(), n), ref().max_abs_tanh(x.data(), n)) << k().isa;
    for (float m : {0.0f, 0.75f, 1.0f}) {
      std::vector<float> want(x.size()), got(x.size(), -7.0f);
      ref().dorefa_weights(x.data(), want.data(), n, 3.0f, m);
      k().dorefa_weights(x.data(), got.data(), n, 3.0f, m);
      expect_bitwise(want, got, x,
                     std::string(k().isa) + " dorefa_weights, n = " + std::to_string(n));
      ref().dorefa_weights_grad(g.data(), x.data(), want.data(), n, m);
      k().dorefa_weights_grad(g.data(), x.data(), got.data(), n, m);
      expect_bitwise(want, got, x,
                     std::string(k().isa) + " dorefa_weights_grad, n = " + std::to_string(n));
    }
    if (n > 0) {  // NaNs of two payloads: the default quiet NaN, in every set
      x[static_cast<size_t>(n / 2)] = -std::nanf("0x2345");
      x[static_cast<size_t>(n - 1)] = kNaN;
      EXPECT_EQ(bits_of(k().max_abs_tanh(x.data(), n)), bits_of(kNaN)) << k().isa << ", n = " << n;
      EXPECT_EQ(bits_of(ref().max_abs_tanh(x.data(), n)), bits_of(kNaN)) << "n = " << n;
    }
  }
}

// The vector forms of tanh_poly and exp_neg_poly (tanh_abs_vec, tanh_vec, exp_neg_vec) against
// the reference over the whole float line: every 4099th bit pattern of both signs (NaNs, infinities
// and subnormals among them) and every float within 2^12 ulp of a branch point (2^-12, 0.625, the
// cap of 2|x| and of |beta x|), through the kernels that use them: dorefa's weights gradient (which
// uses |tanh| squared), its forward by the formula (31 levels, M = 1e-3: more than 16 steps), and
// swish_sign's gradient.
TEST_P(WeightKernels, TanhAndExpKernelsMatchReferenceAcrossFloats) {
  std::vector<float> x;
  for (uint64_t u = 0; u <= 0xffffffffu; u += 4099)
    x.push_back(float_from_bits(static_cast<uint32_t>(u)));
  const float beta = 5.0f;
  for (float b : {0.000244140625f, 0.625f, detail::kExpNegMax / 2.0f, detail::kExpNegMax / beta}) {
    for (int32_t d = -(1 << 12); d <= (1 << 12); ++d) {
      const float v = float_from_bits(static_cast<uint32_t>(static_cast<int64_t>(bits_of(b)) + d));
      x.push_back(v);
      x.push_back(-v);
    }
  }
  const int64_t n = static_cast<int64_t>(x.size());
  const auto g = inputs(n, 43, gradient_specials());
  std::vector<float> want(x.size()), got(x.size());
  for (float m : {0.75f, 1.0f}) {
    ref().dorefa_weights_grad(g.data(), x.data(), want.data(), n, m);
    k().dorefa_weights_grad(g.data(), x.data(), got.data(), n, m);
    expect_bitwise(want, got, x,
                   std::string(k().isa) + " dorefa_weights_grad, M = " + std::to_string(m));
  }
  ref().dorefa_weights(x.data(), want.data(), n, 31.0f, 1e-3f);
  k().dorefa_weights(x.data(), got.data(), n, 31.0f, 1e-3f);
  expect_bitwise(want, got, x, std::string(k().isa) + " dorefa_weights by the formula");
  ref().swish_sign_grad(g.data(), x.data(), want.data(), n, beta);
  k().swish_sign_grad(g.data(), x.data(), got.data(), n, beta);
  expect_bitwise(want, got, x, std::string(k().isa) + " swish_sign_grad");
}

// Large calls with few output levels run by thresholds (src/kernels/dorefa_steps.h): bit for bit
// the reference, on random values, the specials, and the floats at and beside every point where the
// reference's output changes (found here by bisection on the reference itself). Levels and M with
// more than 16 steps (31 levels; M = 1e-3) or levels past 2^23 take the formula; M > 1 (not the
// operators') too.
TEST_P(WeightKernels, DorefaWeightsByStepsMatchReference) {
  const int64_t n = 40000;
  const auto base =
      inputs(n, 53, {0.0f, -0.0f, kInf, -kInf, kNaN, -std::nanf("0x123"), 1e-40f, -1e-40f, 50.0f});
  const auto rank_to_float = [](int64_t r) {
    const uint32_t u = r < 0 ? (0x80000000u | static_cast<uint32_t>(-r)) : static_cast<uint32_t>(r);
    float v;
    std::memcpy(&v, &u, sizeof v);
    return v;
  };
  const std::vector<std::pair<float, float>> big = {
      {3.0f, 2.0f}, {33554432.0f, 4194304.0f}, {8388607.0f, 1048576.0f}};
  std::vector<std::pair<float, float>> cases(big);
  for (float levels : {1.0f, 3.0f, 7.0f, 15.0f, 31.0f}) {
    for (float m : {0.0f, 0.5f, 1.0f, 0.8427f, 1e-3f}) cases.emplace_back(levels, m);
  }
  for (const auto& [levels, m] : cases) {
    {
      std::vector<float> x = base;
      for (float& v : x) v *= 1.5f;
      // The change points of the reference's output over the floats, by bisection on ranks.
      size_t at = 100;
      const auto y_of = [&](float v) {
        float out;
        ref().dorefa_weights(&v, &out, 1, levels, m);
        return out;
      };
      int64_t lo = -static_cast<int64_t>(bits_of(kInf)), hi = -lo;
      while (at + 3 < x.size() && y_of(rank_to_float(lo)) != y_of(rank_to_float(hi))) {
        int64_t a = lo, b = hi;  // y(a) != y(b): the first change after lo
        const float y_lo = y_of(rank_to_float(lo));
        while (b - a > 1) {
          const int64_t mid = a + (b - a) / 2;
          (y_of(rank_to_float(mid)) == y_lo ? a : b) = mid;
        }
        for (int64_t r : {a, b, b + 1}) x[at++] = rank_to_float(r);
        lo = b;
      }
      std::vector<float> want(x.size()), got(x.size(), -7.0f);
      ref().dorefa_weights(x.data(), want.data(), n, levels, m);
      k().dorefa_weights(x.data(), got.data(), n, levels, m);
      expect_bitwise(want, got, x,
                     std::string(k().isa) + " dorefa_weights, levels " + std::to_string(levels) +
                         ", M " + std::to_string(m) + ", change points " +
                         std::to_string((at - 100) / 3));
      if (HasFailure()) return;
    }
  }
}

// As the operators call it: M = max|tanh(x)| of the input itself, here weights of a trained
// network's magnitude (|x| <= 0.2), so that every element lies in the range of the steps and a
// small M gives many levels beyond that range (which the steps skip; that the vectors then never
// take the formula is a matter of speed, seen in the benchmarks, not of results). Bit for bit the
// reference, at the extremes of the input (x = +-max|x|, p = 0 and 1) and beside them.
TEST_P(WeightKernels, DorefaWeightsByStepsOnTheirOwnMaximum) {
  const int64_t n = 40000;
  for (float scale : {0.05f, 1e-3f}) {
    auto x = inputs(n, 59, {0.0f, -0.0f});
    for (float& v : x) v = std::max(-0.2f, std::min(0.2f, v * scale));
    x[7] = 4.0f * scale;  // the maximum, on a lane of its own, and its neighbours
    x[8] = -x[7];
    x[9] = std::nextafter(x[7], 0.0f);
    x[10] = std::nextafter(x[8], 0.0f);
    const float m = ref().max_abs_tanh(x.data(), n);
    for (float levels : {1.0f, 3.0f, 7.0f, 15.0f}) {
      std::vector<float> want(x.size()), got(x.size(), -7.0f);
      ref().dorefa_weights(x.data(), want.data(), n, levels, m);
      k().dorefa_weights(x.data(), got.data(), n, levels, m);
      expect_bitwise(want, got, x,
                     std::string(k().isa) + " dorefa_weights, levels " + std::to_string(levels) +
                         ", M of the input " + std::to_string(m));
      EXPECT_EQ(*std::min_element(want.begin(), want.end()), -1.0f);
      EXPECT_EQ(*std::max_element(want.begin(), want.end()), 1.0f);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(EverySet, WeightKernels, ::testing::ValuesIn(supported_f32_kernels()),
                         [](const ::testing::TestParamInfo<const F32Kernels*>& info) {
                           return std::string(info.param->isa);
                         });

// The reference against the spec's formulas, written out.
TEST(RefWeightKernels, FormulasWrittenOut) {
  const std::vector<float> x = {-2.0f, -kD, -0.25f, -0.0f, 0.0f, 0.25f, kD, 0.75f, kInf, kNaN};
  std::vector<float> y(x.size());
  ref::twn<float>(x.data(), y.data(), static_cast<int64_t>(x.size()), kD, 0.75f);
  const std::vector<float> twn_want = {-0.75f, 0, 0, 0, 0, 0, 0, 0.75f, 0.75f, kNaN};
  ref::ttq_weight<float>(x.data(), y.data(), static_cast<int64_t>(x.size()), 1.25f, 0.5f, kD);
  const std::vector<float> ttq_want = {-0.5f, 0, 0, 0, 0, 0, 0, 1.25f, 1.25f, kNaN};
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(ttq_want[i])) {
      EXPECT_TRUE(std::isnan(y[i]));
    } else {
      EXPECT_EQ(y[i], ttq_want[i]) << "ttq, x = " << x[i];
    }
  }
  ref::twn<float>(x.data(), y.data(), static_cast<int64_t>(x.size()), kD, 0.75f);
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(twn_want[i])) {
      EXPECT_TRUE(std::isnan(y[i]));
    } else {
      EXPECT_EQ(y[i], twn_want[i]) << "twn, x = " << x[i];
    }
  }
  // TTQ's gradient: positive * g above D, negative * g below -D, g between; sums of g.
  const std::vector<float> g = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  std::vector<float> dx(x.size());
  double dp = 0, dn = 0;
  ref::ttq_weight_grad<float>(g.data(), x.data(), dx.data(), static_cast<int64_t>(x.size()), 1.25f,
                              0.5f, kD, &dp, &dn);
  const std::vector<float> dx_want = {0.5f, 2, 3, 4, 5, 6, 7, 10, 11.25f, 10};
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(dx[i], dx_want[i]) << "ttq grad, x = " << x[i];
  EXPECT_EQ(dp, 8.0 + 9.0);
  EXPECT_EQ(dn, 1.0);
  // magnitude_aware_sign: (g * 1[|x| <= clip]) * s; without a clip g * s.
  std::vector<float> s = {2.0f, 3.0f};
  const std::vector<float> mx = {0.25f, -1.0f, kNaN, 0.5f};
  const std::vector<float> mg = {1.0f, 1.0f, 1.0f, -1.0f};
  std::vector<float> md(4);
  ref::clipped_grad_scaled_rows<float>(mg.data(), mx.data(), md.data(), 2, 2, true, kD, s.data());
  EXPECT_EQ(md, (std::vector<float>{2.0f, 0.0f, 0.0f, -3.0f}));
  ref::clipped_grad_scaled_rows<float>(mg.data(), mx.data(), md.data(), 2, 2, false, kD, s.data());
  EXPECT_EQ(md, (std::vector<float>{2.0f, 3.0f, 2.0f, -3.0f}));
}

// The reference against the spec's formula, g * beta * (2 - bx tanh(bx / 2)) / (1 + cosh(bx)),
// in long double; and against its worked values (beta 5: x = 0 -> 5, x = 0.5 -> -0.084622).
TEST(RefWeightKernels, SwishSignGradAgainstTheSpecFormula) {
  std::mt19937 rng(31);
  std::uniform_real_distribution<float> u(-30.0f, 30.0f);
  for (float beta : {5.0f, 1.0f, 0.3f, 10.0f}) {
    for (int i = 0; i < 20000; ++i) {
      const float x = i < 10000 ? u(rng) / 10.0f : u(rng);
      const float g = 1.0f;
      float got;
      ref::swish_sign_grad<float>(&g, &x, &got, 1, beta);
      const long double bx = static_cast<long double>(beta) * x;
      const long double want = beta * (2 - bx * std::tanh(bx / 2)) / (1 + std::cosh(bx));
      // Relative to the gradient's scale (its largest value is beta * 2 / 2 = beta, at 0).
      EXPECT_NEAR(got, static_cast<double>(want), 2e-6 * beta) << "x = " << x << ", beta " << beta;
      if (HasFailure()) return;
    }
  }
  const float xs[] = {0.0f, 0.5f, -0.5f, 100.0f, -kInf};
  const float gs[] = {1.0f, 1.0f, 1.0f, 1.0f, 1.0f};
  float d[5];
  ref::swish_sign_grad<float>(gs, xs, d, 5, 5.0f);
  EXPECT_EQ(d[0], 5.0f);
  EXPECT_NEAR(d[1], -0.084622f, 1e-6f);
  EXPECT_EQ(d[1], d[2]);
  EXPECT_LT(std::fabs(d[3]), 1e-33f);  // the limit, 0, within float's reach
  EXPECT_LT(std::fabs(d[4]), 1e-33f);
  const float nan_x = kNaN;
  ref::swish_sign_grad<float>(gs, &nan_x, d, 1, 5.0f);
  EXPECT_TRUE(std::isnan(d[0]));
}

// detail::tanh_poly against tanh in long double: within 2 ulp (of the value, or of 2^-126 near 0)
// on both sides of the branch at 0.625, odd, and exact at 0, +-infinity and NaN.
TEST(RefWeightKernels, TanhPolyWithinTwoUlp) {
  std::mt19937 rng(43);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::uniform_real_distribution<float> wide(-12.0f, 12.0f);
  for (int i = 0; i < 200000; ++i) {
    const float x = i % 2 ? u(rng) : wide(rng);
    const float got = detail::tanh_poly(x);
    const long double want = std::tanh(static_cast<long double>(x));
    const float ulp = std::nextafter(std::fabs(static_cast<float>(want)), kInf) -
                      std::fabs(static_cast<float>(want));
    EXPECT_LE(std::fabs(static_cast<long double>(got) - want), 2.0L * ulp) << "x = " << x;
    EXPECT_EQ(detail::tanh_poly(-x), -got);
    if (HasFailure()) return;
  }
  EXPECT_EQ(bits_of(detail::tanh_poly(0.0f)), bits_of(0.0f));
  EXPECT_EQ(bits_of(detail::tanh_poly(-0.0f)), bits_of(-0.0f));
  EXPECT_EQ(detail::tanh_poly(kInf), 1.0f);
  EXPECT_EQ(detail::tanh_poly(-kInf), -1.0f);
  EXPECT_TRUE(std::isnan(detail::tanh_poly(kNaN)));
}

// The kernel sets compute max(|tanh(x)|) as tanh(max(|x|)): right only if tanh_poly is odd and
// non-decreasing on [0, inf]. Every float within 2^18 ulp of the branch points (2^-12, 0.625, the
// cap of exp_neg_poly's argument) and every 127th one elsewhere; LOWBIT_EXHAUSTIVE=1 checks all
// 2^31 (about 20 s; done for the release of this rule).
TEST(RefWeightKernels, TanhPolyOddAndNonDecreasing) {
  const bool all = std::getenv("LOWBIT_EXHAUSTIVE") != nullptr;
  const uint32_t branches[] = {bits_of(0.000244140625f), bits_of(0.625f),
                               bits_of(detail::kExpNegMax / 2.0f)};
  const auto near_branch = [&](uint32_t u) {
    for (uint32_t b : branches) {
      if (u + (1u << 18) >= b && u <= b + (1u << 18)) return true;
    }
    return false;
  };
  float prev = 0.0f;
  uint32_t prev_bits = 0;
  for (uint32_t u = 0; u <= bits_of(kInf);) {
    float x;
    std::memcpy(&x, &u, sizeof x);
    const float t = detail::tanh_poly(x);
    ASSERT_LE(prev, t) << "tanh_poly(" << x << ") = " << t << " is below tanh_poly of the float "
                       << prev_bits << " below it";
    ASSERT_EQ(bits_of(detail::tanh_poly(-x)), bits_of(-t)) << "x = " << x;
    prev = t;
    prev_bits = u;
    u += (all || near_branch(u) || near_branch(u + 127)) ? 1 : 127;
  }
  EXPECT_EQ(prev, 1.0f);
}

}  // namespace
}  // namespace kernels
}  // namespace lowbit
