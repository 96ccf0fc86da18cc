// The kernel sets' reductions of |x| (sum, per-channel sums, maximum, TWN's sum above a threshold):
// every set gives the reference's result bit for bit, and the reference agrees with a plain loop
// written out here (long double sums, the maximum with NaN winning).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "lowbit/kernels.h"

namespace lowbit {
namespace kernels {
namespace {

std::vector<float> random_values(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = normal(rng);
  return v;
}

// Sizes around the 16 lanes and beyond them, and one span's worth.
const std::vector<int64_t> kSizes = {0, 1, 5, 15, 16, 17, 33, 255, 1000, 65536 + 7};

class Reductions : public ::testing::TestWithParam<const F32Kernels*> {};

TEST_P(Reductions, SumAbsEqualsReferenceAndALoop) {
  for (int64_t n : kSizes) {
    const std::vector<float> x = random_values(n, static_cast<uint32_t>(n) + 1);
    long double want = 0;
    for (float v : x) want += std::fabs(static_cast<long double>(v));
    const double ref_sum = ref::sum_abs<float>(x.data(), n);
    EXPECT_NEAR(ref_sum, static_cast<double>(want), 1e-12 * static_cast<double>(want) + 1e-300)
        << "n = " << n;
    const double got = GetParam()->sum_abs(x.data(), n);
    EXPECT_EQ(got, ref_sum) << GetParam()->isa << ", n = " << n;
  }
}

TEST_P(Reductions, SumAbsRowsAccumulatesEachChannel) {
  for (int64_t channels : {1, 3, 16, 37}) {
    const int64_t rows = 29;
    const std::vector<float> x = random_values(rows * channels, 7);
    std::vector<double> got(static_cast<size_t>(channels), 1.0);  // adds to what is there
    std::vector<double> ref_acc(got);
    GetParam()->sum_abs_rows(x.data(), rows, channels, got.data());
    ref::sum_abs_rows<float>(x.data(), rows, channels, ref_acc.data());
    for (int64_t c = 0; c < channels; ++c) {
      long double want = 1.0L;
      for (int64_t r = 0; r < rows; ++r)
        want += std::fabs(static_cast<long double>(x[r * channels + c]));
      EXPECT_NEAR(ref_acc[c], static_cast<double>(want), 1e-12 * static_cast<double>(want));
      EXPECT_EQ(got[c], ref_acc[c]) << GetParam()->isa << ", channel " << c;
    }
  }
}

TEST_P(Reductions, MaxAbsIsTheLargestMagnitudeAndNaNWins) {
  for (int64_t n : kSizes) {
    std::vector<float> x = random_values(n, static_cast<uint32_t>(n) + 11);
    float want = 0;
    for (float v : x) want = std::max(want, std::fabs(v));
    EXPECT_EQ(GetParam()->max_abs(x.data(), n), want) << GetParam()->isa << ", n = " << n;
    EXPECT_EQ(ref::max_abs<float>(x.data(), n), want);
    if (n == 0) continue;
    x[static_cast<size_t>(n / 2)] = -std::numeric_limits<float>::infinity();
    EXPECT_EQ(GetParam()->max_abs(x.data(), n), std::numeric_limits<float>::infinity());
    // NaNs of several payloads and signs: the default quiet NaN, bit for bit, in every set.
    const float payload_nan = -std::nanf("0x12345");
    x[static_cast<size_t>(n - 1)] = std::numeric_limits<float>::quiet_NaN();
    x[static_cast<size_t>(n / 3)] = payload_nan;
    const float quiet = std::numeric_limits<float>::quiet_NaN();
    const float got_nan = GetParam()->max_abs(x.data(), n);
    const float ref_nan = ref::max_abs<float>(x.data(), n);
    EXPECT_EQ(std::memcmp(&got_nan, &quiet, sizeof quiet), 0) << GetParam()->isa << ", n = " << n;
    EXPECT_EQ(std::memcmp(&ref_nan, &quiet, sizeof quiet), 0) << "n = " << n;
  }
}

TEST_P(Reductions, SumAbsAboveCountsOnlyTheLargerMagnitudes) {
  for (int64_t n : kSizes) {
    const std::vector<float> x = random_values(n, static_cast<uint32_t>(n) + 21);
    const float d = 2.5f;
    long double want = 0;
    int64_t want_count = 0;
    for (float v : x) {
      if (std::fabs(v) > d) {
        want += std::fabs(static_cast<long double>(v));
        ++want_count;
      }
    }
    double sum = 0.5, ref_sum = 0.5;  // both add to what is there
    int64_t count = 2, ref_count = 2;
    GetParam()->sum_abs_above(x.data(), n, d, &sum, &count);
    ref::sum_abs_above<float>(x.data(), n, d, &ref_sum, &ref_count);
    EXPECT_EQ(ref_count, want_count + 2);
    EXPECT_NEAR(ref_sum, 0.5 + static_cast<double>(want),
                1e-12 * (1.0 + static_cast<double>(want)));
    EXPECT_EQ(count, ref_count) << GetParam()->isa;
    EXPECT_EQ(sum, ref_sum) << GetParam()->isa << ", n = " << n;
  }
}

INSTANTIATE_TEST_SUITE_P(EverySet, Reductions, ::testing::ValuesIn(supported_f32_kernels()),
                         [](const ::testing::TestParamInfo<const F32Kernels*>& info) {
                           return std::string(info.param->isa);
                         });

}  // namespace
}  // namespace kernels
}  // namespace lowbit
