// The scalar reference against values worked out from the spec (shared/spec/quantizers.md) and
// formulas written out here, not against itself: nudging, fake quant, the gradients, the sign-like
// and activation quantizers, dorefa's weights, the statistics, TWN, TTQ and power-of-2 ranges.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernel_test_support.h"
#include "lowbit/kernels.h"

namespace lowbit {
namespace kernels {
namespace {

// ---- the reference against independent values ---------------------------------------------------

TEST(Nudge, WorkedValuesFromTheSpec) {
  // float32: zp_from_min is 127.4999.. here, so zp = 127 (in double it is 127.5 and zp = 128).
  const FakeQuantParams<float> a = nudge<float>(-1.0f, 1.0f, 8, false);
  EXPECT_FLOAT_EQ(a.nudged_min, -0.996078491f);
  EXPECT_FLOAT_EQ(a.nudged_max, 1.00392163f);
  EXPECT_EQ(a.quant_zero, 127.0f);
  EXPECT_FALSE(a.degenerate);

  const FakeQuantParams<float> b = nudge<float>(-6.0f, 6.0f, 8, false);
  EXPECT_FLOAT_EQ(b.nudged_min, -6.02352953f);
  EXPECT_FLOAT_EQ(b.nudged_max, 5.97647047f);
  EXPECT_EQ(b.quant_zero, 128.0f);
  EXPECT_FLOAT_EQ(b.scale, 12.0f / 255.0f);
  EXPECT_FLOAT_EQ(b.inv_scale, 21.25f);

  const FakeQuantParams<double> d = nudge<double>(-1.0, 1.0, 8, false);
  EXPECT_DOUBLE_EQ(d.nudged_min, -1.003921568627451);
  EXPECT_DOUBLE_EQ(d.nudged_max, 0.996078431372549);
  EXPECT_EQ(d.quant_zero, 128.0);
}

TEST(Nudge, ZeroPointClippedAndNarrowRange) {
  // Range above zero: zp clips to qmin and the window starts at exactly 0.
  const FakeQuantParams<float> up = nudge<float>(0.1f, 0.5f, 8, false);
  EXPECT_EQ(bits_of(up.nudged_min), bits_of(0.0f));
  EXPECT_FLOAT_EQ(up.nudged_max, 0.4f);
  EXPECT_EQ(up.quant_zero, 0.0f);
  // Range below zero: zp clips to qmax and the window ends at exactly 0.
  const FakeQuantParams<float> down = nudge<float>(-3.0f, -1.0f, 8, false);
  EXPECT_EQ(down.nudged_max, 0.0f);
  EXPECT_FLOAT_EQ(down.nudged_min, -2.0f);
  EXPECT_EQ(down.quant_zero, 255.0f);
  // narrow_range: qmin = 1, 254 steps, so [-1, 1] needs no nudging.
  const FakeQuantParams<float> narrow = nudge<float>(-1.0f, 1.0f, 8, true);
  EXPECT_FLOAT_EQ(narrow.nudged_min, -1.0f);
  EXPECT_FLOAT_EQ(narrow.nudged_max, 1.0f);
  EXPECT_FLOAT_EQ(narrow.scale, 2.0f / 254.0f);
  EXPECT_EQ(narrow.quant_zero, 127.0f);
}

TEST(Nudge, RejectsBadArgumentsAndMarksTheDegenerateRange) {
  EXPECT_THROW(nudge<float>(-1.0f, 1.0f, 1, false), std::invalid_argument);
  EXPECT_THROW(nudge<float>(-1.0f, 1.0f, 17, false), std::invalid_argument);
  EXPECT_THROW(nudge<double>(-1.0, 1.0, 17, true), std::invalid_argument);
  EXPECT_NO_THROW(nudge<float>(-1.0f, 1.0f, 2, false));
  EXPECT_NO_THROW(nudge<float>(-1.0f, 1.0f, 16, false));
  EXPECT_THROW(nudge<float>(1.0f, 1.0f, 8, false), std::invalid_argument);
  EXPECT_THROW(nudge<float>(1.0f, -1.0f, 8, false), std::invalid_argument);
  EXPECT_THROW(nudge<float>(kNaN, 1.0f, 8, false), std::invalid_argument);
  // Infinite ends are rejected as NaN ones are, with one message, in nudge and pow2_range alike.
  const float inf = std::numeric_limits<float>::infinity();
  for (const auto& [lo, hi] : std::vector<std::pair<float, float>>{
           {-1.0f, inf}, {-inf, 1.0f}, {kNaN, 1.0f}, {-1.0f, kNaN}, {inf, inf}, {-inf, inf}}) {
    for (const auto& f : std::vector<std::function<void()>>{
             [&] { nudge<float>(lo, hi, 8, false); },
             [&] { pow2_range<float>(lo, hi, 8, kNoMaxExponent); }}) {
      try {
        f();
        ADD_FAILURE() << "no error for [" << lo << ", " << hi << "]";
      } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("min and max must be finite"), std::string::npos)
            << e.what();
      }
    }
  }
  try {
    nudge<float>(2.0f, 1.0f, 8, false);
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("min has to be smaller than max"), std::string::npos);
  }
  try {
    nudge<float>(-1.0f, 1.0f, 1, false);
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("num_bits must be between 2 and 16, inclusive"),
              std::string::npos);
  }

  const FakeQuantParams<float> p = nudge<float>(0.0f, 0.0f, 8, false);
  EXPECT_TRUE(p.degenerate);
  EXPECT_EQ(p.nudged_min, 0.0f);
  EXPECT_EQ(p.nudged_max, 0.0f);
  EXPECT_EQ(p.scale, 0.0f);
  EXPECT_EQ(p.inv_scale, 0.0f);
  EXPECT_EQ(p.quant_zero, 0.0f);
  // The bit-width check comes first, even for the degenerate range.
  EXPECT_THROW(nudge<float>(0.0f, 0.0f, 1, false), std::invalid_argument);
}

TEST(RefFakeQuant, DefaultRangeMapsZeroToZeroAndOutputsLieOnTheGrid) {
  const FakeQuantParams<float> p = nudge<float>(-6.0f, 6.0f, 8, false);
  InputMaker in(2001);
  std::vector<float> x{0.0f, -0.0f, 1.0f, -1.0f, 6.0f, -6.0f, 100.0f, -100.0f, kInf, -kInf};
  for (int i = 0; i < 5000; ++i) x.push_back(in.random_value());
  const int64_t n = static_cast<int64_t>(x.size());
  for (FakeQuantRounding r : {FakeQuantRounding::kMulInvScale, FakeQuantRounding::kDivScale}) {
    SCOPED_TRACE(rounding_name(r));
    std::vector<float> y(x.size());
    ref::fake_quant(x.data(), y.data(), n, p, r);
    EXPECT_EQ(bits_of(y[0]), bits_of(0.0f));
    EXPECT_EQ(bits_of(y[1]), bits_of(0.0f));
    EXPECT_FLOAT_EQ(y[2], 21.0f * (12.0f / 255.0f));  // 1 / scale = 21.25 rounds to 21
    EXPECT_FLOAT_EQ(y[3], -21.0f * (12.0f / 255.0f));
    EXPECT_EQ(y[6], p.nudged_max);
    EXPECT_EQ(y[7], p.nudged_min);
    EXPECT_EQ(y[8], p.nudged_max);
    EXPECT_EQ(y[9], p.nudged_min);
    for (size_t i = 0; i < x.size(); ++i) {
      const float q = y[i] / p.scale;
      ASSERT_NEAR(q, std::nearbyint(q), 1e-3f) << "x = " << show(x[i]) << ", y = " << show(y[i]);
      ASSERT_GE(y[i], p.nudged_min) << "x = " << show(x[i]);
      ASSERT_LE(y[i], p.nudged_max) << "x = " << show(x[i]);
      // Nearest grid point: within half a step of the clamped input (and a little float slack).
      const float c = std::min(std::max(x[i], p.nudged_min), p.nudged_max);
      ASSERT_LE(std::fabs(y[i] - c), 0.5f * p.scale * (1.0f + 1e-4f)) << "x = " << show(x[i]);
    }
  }
}

template <class T>
class RefFakeQuantTyped : public ::testing::Test {};
using FloatTypes = ::testing::Types<float, double>;
TYPED_TEST_SUITE(RefFakeQuantTyped, FloatTypes);

TYPED_TEST(RefFakeQuantTyped, TiesRoundUpOnAPowerOfTwoGrid) {
  using T = TypeParam;
  // [-0.5, 0.49609375] at 8 bits: scale 2^-8, zero point 128, every step below is exact, so
  // x = (k + 0.5) * 2^-8 is an exact tie and floor(v + 0.5) sends it to (k + 1) * 2^-8.
  const FakeQuantParams<T> p = nudge<T>(T(-0.5), T(0.49609375), 8, false);
  ASSERT_EQ(p.nudged_min, T(-0.5));
  ASSERT_EQ(p.nudged_max, T(0.49609375));
  ASSERT_EQ(p.scale, T(0.00390625));
  ASSERT_EQ(p.inv_scale, T(256));
  ASSERT_EQ(p.quant_zero, T(128));
  std::vector<T> x, want;
  for (int k = -128; k <= 126; ++k) {
    x.push_back((T(k) + T(0.5)) * T(0.00390625));
    want.push_back(T(k + 1) * T(0.00390625));
  }
  x.push_back(T(0.49609375) + T(0.001953125));  // above the top: clamps
  want.push_back(T(0.49609375));
  x.push_back(T(-0.5) - T(0.001953125));
  want.push_back(T(-0.5));
  for (FakeQuantRounding r : {FakeQuantRounding::kMulInvScale, FakeQuantRounding::kDivScale}) {
    std::vector<T> y(x.size());
    ref::fake_quant(x.data(), y.data(), static_cast<int64_t>(x.size()), p, r);
    for (size_t i = 0; i < x.size(); ++i) {
      EXPECT_EQ(y[i], want[i]) << rounding_name(r) << ", x = " << x[i];
    }
  }
}

TEST(RefFakeQuant, PerChannelUsesEachChannelsParameters) {
  const FakeQuantParams<float> p[] = {nudge<float>(-6.0f, 6.0f, 8, false),
                                      nudge<float>(0.0f, 1.0f, 2, false),
                                      nudge<float>(-0.5f, 0.49609375f, 8, false)};
  const float x[] = {1.0f, 0.5f, 0.001953125f, -7.0f, 0.9f, -0.25f};
  // Channel 1: 2 bits over [0, 1], steps of 1/3; 0.5 -> 1.5 + 0.5 -> 2/3 and 0.9 -> 1.
  const float want[] = {
      21.0f * (12.0f / 255.0f), 2.0f / 3.0f, 0.00390625f, -6.02352953f, 1.0f, -0.25f};
  float y[6];
  ref::fake_quant_per_channel(x, y, 2, 3, p, FakeQuantRounding::kMulInvScale);
  for (int i = 0; i < 6; ++i) EXPECT_FLOAT_EQ(y[i], want[i]) << "element " << i;
}

TEST(RefMaskedGrad, BoundariesAndSums) {
  const float g[] = {1.0f, 2.0f, 4.0f, 8.0f, 16.0f, 32.0f, -0.5f};
  const float x[] = {-1.5f, -1.0f, 0.0f, 1.0f, 1.5f, kNaN, 3.0f};
  float dx[7];
  double below = 100.0, above = 1000.0;
  ref::masked_grad(g, x, dx, 7, -1.0f, 1.0f, Interval::kClosed, &below, &above);
  const float closed[] = {0.0f, 2.0f, 4.0f, 8.0f, 0.0f, 0.0f, -0.0f};
  EXPECT_TRUE(BitwiseEqual(closed, dx, 7, x));
  EXPECT_EQ(below, 101.0);  // only x = -1.5; NaN is neither below nor above
  EXPECT_EQ(above, 1015.5);
  ref::masked_grad(g, x, dx, 7, -1.0f, 1.0f, Interval::kOpen, nullptr, nullptr);
  const float open[] = {0.0f, 0.0f, 4.0f, 0.0f, 0.0f, 0.0f, -0.0f};
  EXPECT_TRUE(BitwiseEqual(open, dx, 7, x));

  const float lo[] = {-1.0f, 0.0f}, hi[] = {1.0f, 0.5f};
  const float gc[] = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f};
  const float xc[] = {-2.0f, 0.5f, 1.0f, -0.1f, 2.0f, 0.6f};
  float dxc[6], below_c[] = {10.0f, 20.0f}, above_c[] = {30.0f, 40.0f};
  ref::masked_grad_per_channel(gc, xc, dxc, 3, 2, lo, hi, below_c, above_c);
  const float want_c[] = {0.0f, 2.0f, 3.0f, 0.0f, 0.0f, 0.0f};
  EXPECT_TRUE(BitwiseEqual(want_c, dxc, 6, xc, 2));
  EXPECT_EQ(below_c[0], 11.0f);
  EXPECT_EQ(below_c[1], 24.0f);
  EXPECT_EQ(above_c[0], 35.0f);
  EXPECT_EQ(above_c[1], 46.0f);
}

TEST(RefSign, ZeroIsPositiveAndNaNGoesThrough) {
  const float x[] = {0.0f, -0.0f, kNaN, kMinDenormal, -kMinDenormal, -3.0f, kInf, -kInf};
  float y[8];
  ref::sign(x, y, 8, 0.75f);
  EXPECT_EQ(y[0], 0.75f);
  EXPECT_EQ(y[1], 0.75f);  // -0.0 >= 0
  EXPECT_TRUE(std::isnan(y[2]));
  EXPECT_EQ(y[3], 0.75f);
  EXPECT_EQ(y[4], -0.75f);
  EXPECT_EQ(y[5], -0.75f);
  EXPECT_EQ(y[6], 0.75f);
  EXPECT_EQ(y[7], -0.75f);

  const float xc[] = {-1.0f, 0.0f, 2.0f, -0.0f};
  const float scale[] = {0.5f, 3.0f};
  float yc[4];
  ref::sign_per_channel(xc, yc, 2, 2, scale);
  const float want[] = {-0.5f, 3.0f, 0.5f, 3.0f};
  EXPECT_TRUE(BitwiseEqual(want, yc, 4, xc, 2));
}

TEST(RefTernaryAndHeaviside, WorkedValues) {
  const float x0[] = {0.0f, -0.0f, kMinDenormal, -kMinDenormal, 2.0f, kNaN};
  float y0[6];
  ref::ternary(x0, y0, 6, 0.0f);
  EXPECT_EQ(y0[0], 0.0f);
  EXPECT_EQ(y0[1], 0.0f);
  EXPECT_EQ(y0[2], 1.0f);
  EXPECT_EQ(y0[3], -1.0f);
  EXPECT_EQ(y0[4], 1.0f);
  EXPECT_TRUE(std::isnan(y0[5]));

  // Threshold 0.5: sign(x) where |x| >= 0.5, else 0.
  const float x[] = {0.5f, 0.49f, -0.5f, -0.49f, 0.0f, 3.0f, -3.0f};
  const float want[] = {1.0f, 0.0f, -1.0f, 0.0f, 0.0f, 1.0f, -1.0f};
  float y[7];
  ref::ternary(x, y, 7, 0.5f);
  for (int i = 0; i < 7; ++i) EXPECT_EQ(y[i], want[i]) << "x = " << x[i];

  const float xh[] = {0.0f, -0.0f, kMinDenormal, -1.0f, 5.0f, kNaN};
  float yh[6];
  ref::heaviside(xh, yh, 6);
  EXPECT_EQ(bits_of(yh[0]), bits_of(0.0f));
  EXPECT_EQ(yh[1], 0.0f);
  EXPECT_EQ(yh[2], 1.0f);
  EXPECT_EQ(yh[3], 0.0f);
  EXPECT_EQ(yh[4], 1.0f);
  EXPECT_TRUE(std::isnan(yh[5]));
}

TEST(RefDorefaActivations, HalfEvenRounding) {
  float y = 0;
  const float half = 0.5f;
  ref::dorefa_activations(&half, &y, 1, 3.0f);
  EXPECT_EQ(y, 2.0f / 3.0f);  // 1.5 rounds to 2
  ref::dorefa_activations(&half, &y, 1, 1.0f);
  EXPECT_EQ(y, 0.0f);  // 0.5 rounds to 0
  const float three_quarters = 0.75f;
  ref::dorefa_activations(&three_quarters, &y, 1, 2.0f);
  EXPECT_EQ(y, 1.0f);  // 1.5 rounds to 2

  // 1/6 in float times 3 is exactly 0.5, a tie that half-even sends to 0.
  const float sixth = 1.0f / 6.0f;
  ASSERT_EQ(sixth * 3.0f, 0.5f);
  ref::dorefa_activations(&sixth, &y, 1, 3.0f);
  EXPECT_EQ(y, std::nearbyint(sixth * 3.0f) / 3.0f);
  EXPECT_EQ(y, 0.0f);

  const float x[] = {-1.0f, 0.0f, 1.0f, 2.0f, 0.2f, 0.9f, kNaN};
  const float want[] = {0.0f, 0.0f, 1.0f, 1.0f, 1.0f / 3.0f, 1.0f, kNaN};
  float yy[7];
  ref::dorefa_activations(x, yy, 7, 3.0f);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(yy[i], want[i]) << "x = " << x[i];
  EXPECT_TRUE(std::isnan(yy[6]));
}

TEST(RefLinearMidTread, AgainstTheFormulaWrittenOut) {
  const float levels = 3.0f, max_value = 2.0f;
  // 1/3 sits on a tie: (1/3 / 2) * 3 + 0.5 is exactly 1 in float; ties go up.
  const float worked_x[] = {1.0f / 3.0f, 0.3f, 1.0f, 2.0f, 5.0f, -1.0f};
  const float worked_want[] = {2.0f / 3.0f, 0.0f, 2.0f / 3.0f * 2.0f, 2.0f, 2.0f, 0.0f};
  float worked_y[6];
  ref::linear_mid_tread(worked_x, worked_y, 6, levels, max_value);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(worked_y[i], worked_want[i]) << "x = " << worked_x[i];

  std::vector<float> x;
  for (int i = -64; i <= 3 * 64; ++i) x.push_back(static_cast<float>(i) / 64.0f);
  for (int k = 0; k < 3; ++k) x.push_back((static_cast<float>(k) + 0.5f) / 3.0f * 2.0f);
  std::vector<float> y(x.size());
  ref::linear_mid_tread(x.data(), y.data(), static_cast<int64_t>(x.size()), levels, max_value);
  for (size_t i = 0; i < x.size(); ++i) {
    const float c = std::min(std::max(x[i], 0.0f), max_value);
    const float want = std::floor((c / max_value) * levels + 0.5f) / levels * max_value;
    EXPECT_EQ(bits_of(y[i]), bits_of(want)) << "x = " << show(x[i]) << ", got " << show(y[i]);
  }
  float nan_y = 0;
  ref::linear_mid_tread(&kNaN, &nan_y, 1, levels, max_value);
  EXPECT_TRUE(std::isnan(nan_y));
}

TEST(RefGradients, ApproxSignAndSwishSign) {
  const float x[] = {0.0f, 0.5f, -0.25f, 1.0f, -1.0f, 1.0001f, kInf};
  const float g[] = {1.0f, 1.0f, 2.0f, 1.0f, 1.0f, 1.0f, 1.0f};
  const float want[] = {2.0f, 1.0f, 3.0f, 0.0f, 0.0f, 0.0f, 0.0f};
  float dx[7];
  ref::approx_sign_grad(g, x, dx, 7);
  for (int i = 0; i < 7; ++i) EXPECT_EQ(dx[i], want[i]) << "x = " << x[i];

  const float xs[] = {0.0f, 0.5f, -0.5f};
  const float gs[] = {1.0f, 1.0f, 1.0f};
  float ds[3];
  ref::swish_sign_grad(gs, xs, ds, 3, 5.0f);
  EXPECT_FLOAT_EQ(ds[0], 5.0f);
  EXPECT_NEAR(ds[1], -0.084622f, 1e-6f);
  EXPECT_NEAR(ds[2], -0.084622f, 1e-6f);  // even in x
  double dd[1];
  const double xd = 0.5, gd = 1.0;
  ref::swish_sign_grad(&gd, &xd, dd, 1, 5.0);
  EXPECT_NEAR(dd[0], -0.0846215652336886, 1e-12);
}

TEST(RefDorefaWeights, WorkedValuesAndGradient) {
  const float x[] = {0.0f, 1.0f, -1.0f, 0.3f};
  const float m = ref::max_abs_tanh(x, 4);
  EXPECT_FLOAT_EQ(m, std::tanh(1.0f));
  float y[4];
  ref::dorefa_weights(x, y, 4, 3.0f, m);
  EXPECT_EQ(y[0], 2.0f * 2.0f / 3.0f - 1.0f);  // p = 0.5, 1.5 rounds to 2: +1/3
  EXPECT_EQ(y[1], 1.0f);
  EXPECT_EQ(y[2], -1.0f);
  // Written out: p = tanh(0.3) / (2M) + 0.5, y = 2 * half_even(3p) / 3 - 1.
  const float p3 = std::tanh(0.3f) / (2.0f * m) + 0.5f;
  EXPECT_EQ(y[3], 2.0f * std::nearbyint(p3 * 3.0f) / 3.0f - 1.0f);

  // M == 0 (all-zero weights): p = 0.5, and no gradient.
  const float zeros[] = {0.0f, 0.0f};
  float yz[2];
  ref::dorefa_weights(zeros, yz, 2, 3.0f, 0.0f);
  EXPECT_EQ(yz[0], 2.0f * 2.0f / 3.0f - 1.0f);
  const float gz[] = {1.0f, -2.0f};
  float dz[2];
  ref::dorefa_weights_grad(gz, zeros, dz, 2, 0.0f);
  EXPECT_EQ(dz[0], 0.0f);
  EXPECT_EQ(dz[1], 0.0f);

  const float g[] = {1.0f, 2.0f, -1.0f, 0.5f};
  float dx[4];
  ref::dorefa_weights_grad(g, x, dx, 4, m);
  for (int i = 0; i < 4; ++i) {
    // tanh by detail::tanh_poly (every kernel set's), within 2 ulp of std::tanh (checked in
    // test_kernel_weights.cpp).
    const float t = detail::tanh_poly(x[i]);
    EXPECT_EQ(dx[i], g[i] * (1.0f - t * t) / m) << "x = " << x[i];
    const float ts = std::tanh(x[i]);
    EXPECT_NEAR(dx[i], g[i] * (1.0f - ts * ts) / m, 1e-6f * std::fabs(g[i]) / m);
  }

  const float with_nan[] = {0.5f, kNaN, -3.0f};
  EXPECT_TRUE(std::isnan(ref::max_abs_tanh(with_nan, 3)));
  EXPECT_TRUE(std::isnan(ref::max_abs(with_nan, 3)));
  const float plain[] = {0.5f, -3.0f, 2.0f};
  EXPECT_EQ(ref::max_abs(plain, 3), 3.0f);
  EXPECT_EQ(ref::max_abs(plain, 0), 0.0f);
}

TEST(RefStatistics, MeanAbsPerChannelAgainstADoubleLoop) {
  InputMaker in(2002);
  struct Shape {
    int64_t outer, channels, inner;
  };
  for (const Shape s : {Shape{3, 5, 7}, Shape{1, 1, 100}, Shape{4, 16, 1}, Shape{2, 3, 0}}) {
    const int64_t n = s.outer * s.channels * s.inner;
    std::vector<float> x(static_cast<size_t>(n));
    for (float& v : x) v = in.random_value();
    std::vector<double> sums(static_cast<size_t>(s.channels), 0.0);
    for (int64_t o = 0; o < s.outer; ++o) {
      for (int64_t c = 0; c < s.channels; ++c) {
        for (int64_t j = 0; j < s.inner; ++j) {
          sums[c] += std::fabs(static_cast<double>(x[(o * s.channels + c) * s.inner + j]));
        }
      }
    }
    std::vector<float> out(static_cast<size_t>(s.channels));
    ref::mean_abs_per_channel(x.data(), s.outer, s.channels, s.inner, out.data());
    for (int64_t c = 0; c < s.channels; ++c) {
      if (n == 0) {
        EXPECT_TRUE(std::isnan(out[c]));  // mean of nothing
      } else {
        EXPECT_EQ(out[c], static_cast<float>(sums[c] / static_cast<double>(s.outer * s.inner)))
            << "channel " << c;
      }
    }
  }
  const float x[] = {1.0f, -2.0f, 3.0f, -4.0f};  // [outer 2, channels 2, inner 1]
  float out[2];
  ref::mean_abs_per_channel(x, 2, 2, 1, out);
  EXPECT_EQ(out[0], 2.0f);
  EXPECT_EQ(out[1], 3.0f);
}

TEST(RefTwn, WorkedValuesAndALoop) {
  // mean|x| = 6.2 / 6, D = 0.7 * that = 0.723..; kept: -2, 3, 1 with mean 2.
  const float x[] = {-2.0f, -0.1f, 0.0f, 0.1f, 3.0f, 1.0f};
  const float want[] = {-2.0f, 0.0f, 0.0f, 0.0f, 2.0f, 2.0f};
  float y[6];
  ref::twn_weight(x, y, 6, 0.7f);
  for (int i = 0; i < 6; ++i) EXPECT_FLOAT_EQ(y[i], want[i]) << "x = " << x[i];

  InputMaker in(2003);
  std::vector<float> xr(999);
  for (float& v : xr) v = in.random_value();
  const int64_t n = static_cast<int64_t>(xr.size());
  double abs_sum = 0;
  for (float v : xr) abs_sum += std::fabs(static_cast<double>(v));
  const float d = 0.7f * static_cast<float>(abs_sum / static_cast<double>(n));
  double kept_sum = 0;
  int64_t kept = 0;
  for (float v : xr) {
    if (std::fabs(v) > d) {
      kept_sum += std::fabs(static_cast<double>(v));
      ++kept;
    }
  }
  const float a = static_cast<float>(kept_sum / static_cast<double>(kept));
  std::vector<float> yr(xr.size());
  ref::twn_weight(xr.data(), yr.data(), n, 0.7f);
  for (size_t i = 0; i < xr.size(); ++i) {
    const float w = std::fabs(xr[i]) > d ? (xr[i] > 0 ? a : -a) : 0.0f;
    ASSERT_EQ(yr[i], w) << "x = " << show(xr[i]);
  }

  // Nothing above the threshold: all zero.
  const float flat[] = {1.0f, 1.0f, -1.0f};
  float yf[3];
  ref::twn_weight(flat, yf, 3, 1.0f);
  for (float v : yf) EXPECT_EQ(v, 0.0f);
}

TEST(RefTtq, WorkedValuesAndALoop) {
  const float x[] = {0.5f, -0.5f, 0.2f, -0.2f, 0.0f, kNaN};
  const float g[] = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f};
  float y[6], dx[6];
  ref::ttq_weight(x, y, 6, 1.5f, 0.75f, 0.2f);
  const float want[] = {1.5f, -0.75f, 0.0f, 0.0f, 0.0f};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(y[i], want[i]) << "x = " << x[i];
  EXPECT_TRUE(std::isnan(y[5]));
  double dp = 10.0, dn = 20.0;  // accumulates onto the caller's values
  ref::ttq_weight_grad(g, x, dx, 6, 1.5f, 0.75f, 0.2f, &dp, &dn);
  const float want_dx[] = {1.5f, 1.5f, 3.0f, 4.0f, 5.0f, 6.0f};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(dx[i], want_dx[i]) << "x = " << x[i];
  EXPECT_EQ(dp, 11.0);
  EXPECT_EQ(dn, 22.0);  // not negated (TTQ paper, Blueoil)

  InputMaker in(2004);
  std::vector<float> xr(777), gr(777);
  for (float& v : xr) v = in.random_value();
  for (float& v : gr) v = in.random_value();
  const int64_t n = static_cast<int64_t>(xr.size());
  const float pos = 0.8f, neg = 1.3f, t = 0.05f * ref::max_abs(xr.data(), n);
  std::vector<float> yr(xr.size()), dxr(xr.size());
  double sp = 0.5, sn = -0.5;
  ref::ttq_weight(xr.data(), yr.data(), n, pos, neg, t);
  ref::ttq_weight_grad(gr.data(), xr.data(), dxr.data(), n, pos, neg, t, &sp, &sn);
  // The sums as every gradient sum: float lanes (element i in lane i % kSumLanes), the lanes then
  // added in order in double; and close to the exact sums.
  double want_sp = 0, want_sn = 0, exact_sp = 0, exact_sn = 0, abs_sum = 0;
  float lanes_p[kSumLanes] = {}, lanes_n[kSumLanes] = {};
  for (size_t i = 0; i < xr.size(); ++i) {
    abs_sum += std::fabs(static_cast<double>(gr[i]));
    if (xr[i] > t) {
      ASSERT_EQ(yr[i], pos);
      ASSERT_EQ(dxr[i], pos * gr[i]);
      lanes_p[i % kSumLanes] += gr[i];
      exact_sp += gr[i];
    } else if (xr[i] < -t) {
      ASSERT_EQ(yr[i], -neg);
      ASSERT_EQ(dxr[i], neg * gr[i]);
      lanes_n[i % kSumLanes] += gr[i];
      exact_sn += gr[i];
    } else {
      ASSERT_EQ(yr[i], 0.0f);
      ASSERT_EQ(dxr[i], gr[i]);
    }
  }
  for (int l = 0; l < kSumLanes; ++l) {
    want_sp += static_cast<double>(lanes_p[l]);
    want_sn += static_cast<double>(lanes_n[l]);
  }
  EXPECT_EQ(sp, 0.5 + want_sp);
  EXPECT_EQ(sn, -0.5 + want_sn);
  EXPECT_NEAR(sp, 0.5 + exact_sp, 1e-6 * abs_sum);
  EXPECT_NEAR(sn, -0.5 + exact_sn, 1e-6 * abs_sum);
}

TEST(Pow2Range, WorkedValuesFromTheSpec) {
  const Pow2Range<float> a = pow2_range<float>(-0.3f, 0.3f, 8, kNoMaxExponent);
  EXPECT_EQ(a.exponent, -1);
  EXPECT_EQ(a.min, -0.5f);
  EXPECT_EQ(a.max, 0.49609375f);
  const Pow2Range<float> b = pow2_range<float>(-100.0f, 100.0f, 16, 3);
  EXPECT_EQ(b.exponent, 3);
  EXPECT_EQ(b.min, -8.0f);
  EXPECT_EQ(b.max, 7.999755859375f);
  const Pow2Range<double> c = pow2_range<double>(-100.0, 100.0, 16, 3);
  EXPECT_EQ(c.min, -8.0);
  EXPECT_EQ(c.max, 7.999755859375);
}

TEST(Pow2Range, ExactPowersOfTwoAndTinyRanges) {
  EXPECT_EQ(pow2_range<float>(-0.1f, 0.5f, 8, kNoMaxExponent).exponent, -1);
  EXPECT_EQ(pow2_range<float>(-0.1f, std::nextafter(0.5f, 1.0f), 8, kNoMaxExponent).exponent, 0);
  EXPECT_EQ(pow2_range<float>(-0.5f, 0.1f, 8, kNoMaxExponent).exponent, -1);
  EXPECT_EQ(pow2_range<float>(std::nextafter(-0.5f, -1.0f), 0.1f, 8, kNoMaxExponent).exponent, 0);
  EXPECT_EQ(pow2_range<float>(-1.0f, 1.0f, 8, kNoMaxExponent).exponent, 0);
  EXPECT_EQ(pow2_range<float>(-3.0f, 5.0f, 8, kNoMaxExponent).exponent, 3);
  EXPECT_EQ(pow2_range<float>(-3.0f, 5.0f, 8, 2).exponent, 2);
  // Both ends clamp to +-1e-7: 2^-24 < 1e-7 < 2^-23.
  EXPECT_EQ(pow2_range<float>(0.0f, 0.0f, 8, kNoMaxExponent).exponent, -23);
  // The range it gives needs no nudging: scale 2^(e + 1 - b), zero point 2^(b - 1).
  for (int bits : {2, 4, 8, 16}) {
    for (float m : {0.3f, 1.0f, 5.0f, 1000.0f}) {
      const Pow2Range<float> r = pow2_range<float>(-m, m, bits, kNoMaxExponent);
      const FakeQuantParams<float> p = nudge<float>(r.min, r.max, bits, false);
      EXPECT_EQ(p.nudged_min, r.min) << bits << " bits, m = " << m;
      EXPECT_EQ(p.nudged_max, r.max) << bits << " bits, m = " << m;
      EXPECT_EQ(p.scale, std::ldexp(1.0f, r.exponent + 1 - bits)) << bits << " bits, m = " << m;
      EXPECT_EQ(p.quant_zero, std::ldexp(1.0f, bits - 1)) << bits << " bits, m = " << m;
    }
  }
}

TEST(Pow2Range, RejectsBadArguments) {
  EXPECT_THROW(pow2_range<float>(-1.0f, 1.0f, 1, kNoMaxExponent), std::invalid_argument);
  EXPECT_THROW(pow2_range<float>(-1.0f, 1.0f, 17, kNoMaxExponent), std::invalid_argument);
  EXPECT_THROW(pow2_range<float>(kNaN, 1.0f, 8, kNoMaxExponent), std::invalid_argument);
  EXPECT_THROW(pow2_range<float>(-1.0f, kInf, 8, kNoMaxExponent), std::invalid_argument);
}

TEST(RefForwards, NaNGoesThroughEveryForward) {
  const float x[] = {kNaN};
  float y = 0;
  const FakeQuantParams<float> p = nudge<float>(-1.0f, 1.0f, 8, false);
  ref::fake_quant(x, &y, 1, p, FakeQuantRounding::kMulInvScale);
  EXPECT_TRUE(std::isnan(y)) << "fake_quant mul";
  ref::fake_quant(x, &y, 1, p, FakeQuantRounding::kDivScale);
  EXPECT_TRUE(std::isnan(y)) << "fake_quant div";
  ref::sign(x, &y, 1, 1.0f);
  EXPECT_TRUE(std::isnan(y)) << "sign";
  ref::heaviside(x, &y, 1);
  EXPECT_TRUE(std::isnan(y)) << "heaviside";
  ref::ternary(x, &y, 1, 0.05f);
  EXPECT_TRUE(std::isnan(y)) << "ternary";
  ref::dorefa_activations(x, &y, 1, 3.0f);
  EXPECT_TRUE(std::isnan(y)) << "dorefa_activations";
  ref::linear_mid_tread(x, &y, 1, 3.0f, 2.0f);
  EXPECT_TRUE(std::isnan(y)) << "linear_mid_tread";
}

}  // namespace
}  // namespace kernels
}  // namespace lowbit
