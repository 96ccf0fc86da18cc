// Tests the torch-free kernels: every kernel set bit for bit against the scalar reference, and the
// reference against values worked out from the spec (shared/spec/quantizers.md), not from itself.
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

#include "lowbit/kernels.h"

namespace lowbit {
namespace kernels {
namespace {

// A kernel added to F32Kernels must get a comparison against the reference below; this stops the
// build until it does (isa plus 28 function pointers today; the reductions are tested in
// test_kernel_reductions.cpp, TWN, TTQ, the scaled gradient, swish_sign's gradient and dorefa's
// weights mode in test_kernel_weights.cpp).
static_assert(sizeof(F32Kernels) == sizeof(const char*) + 28 * sizeof(void (*)()),
              "F32Kernels changed: add the new kernel to the F32KernelSet tests, then update this");

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kMaxFloat = std::numeric_limits<float>::max();
constexpr float kMinNormal = std::numeric_limits<float>::min();
constexpr float kMinDenormal = std::numeric_limits<float>::denorm_min();

uint32_t bits_of(float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  return u;
}
uint64_t bits_of(double v) {
  uint64_t u;
  std::memcpy(&u, &v, sizeof u);
  return u;
}
float float_from_bits(uint32_t u) {
  float v;
  std::memcpy(&v, &u, sizeof v);
  return v;
}

// Quiet NaNs of both signs and with a payload, and a signalling NaN: their payloads are output too.
const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kNegNaN = float_from_bits(0xffc00000u);
const float kPayloadNaN = float_from_bits(0x7fc12345u);
const float kSignallingNaN = float_from_bits(0x7f800001u);

// Values printed with their bit pattern, since -0.0 and NaN payloads are what such tests catch.
std::string show(float v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g (0x%08x)", static_cast<double>(v), bits_of(v));
  return buf;
}
std::string show(double v) {
  char buf[80];
  std::snprintf(buf, sizeof buf, "%.17g (0x%016llx)", v,
                static_cast<unsigned long long>(bits_of(v)));
  return buf;
}

// Compares n floats by bit pattern. x (optional) is the input shown at the first mismatch; with
// channels > 0 the index is also given as (row, channel).
::testing::AssertionResult BitwiseEqual(const float* want, const float* got, int64_t n,
                                        const float* x = nullptr, int64_t channels = 0) {
  int64_t first = -1, count = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (bits_of(want[i]) != bits_of(got[i])) {
      if (first < 0) first = i;
      ++count;
    }
  }
  if (count == 0) return ::testing::AssertionSuccess();
  auto r = ::testing::AssertionFailure();
  r << count << " of " << n << " elements differ; first at index " << first;
  if (channels > 0) r << " (row " << first / channels << ", channel " << first % channels << ")";
  if (x != nullptr) r << ", input " << show(x[first]);
  r << ": ref " << show(want[first]) << ", got " << show(got[first]);
  return r;
}

// For sums: bitwise, except that any NaN matches any NaN. Where two different NaNs meet in one
// addition IEEE 754 leaves the payload of the result open and the compiler may commute a + b: the
// same source line gives one payload built with -mavx512f and the other without, so the reference
// itself has no fixed payload there. Element-wise outputs have one NaN source and stay strict.
::testing::AssertionResult SameSum(double want, double got) {
  if (bits_of(want) == bits_of(got) || (std::isnan(want) && std::isnan(got))) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "ref " << show(want) << ", got " << show(got);
}
::testing::AssertionResult SameSums(const float* want, const float* got, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (bits_of(want[i]) != bits_of(got[i]) && !(std::isnan(want[i]) && std::isnan(got[i]))) {
      return ::testing::AssertionFailure() << "first difference at index " << i << ": ref "
                                           << show(want[i]) << ", got " << show(got[i]);
    }
  }
  return ::testing::AssertionSuccess();
}

// Sizes around both vector widths (8 and 16 floats) and the 2-vector unrolled loops; large ones.
std::vector<int64_t> sizes() {
  std::set<int64_t> s{0, 31, 32, 33, 1000, 65537};
  for (int64_t w : {8, 16}) {
    for (int64_t n : {int64_t{1}, w - 1, w, w + 1, 2 * w - 1, 2 * w, 2 * w + 1}) s.insert(n);
  }
  return {s.begin(), s.end()};
}

const int64_t kChannelCounts[] = {1, 3, 7, 8, 9, 15, 16, 17, 33, 64};
const int64_t kRowCounts[] = {0, 1, 2, 5, 31, 200};

// Several trials on small sizes so that each special value lands on many lanes and in the tails;
// one on the largest, which only adds the long main loop (and would slow the sanitizer build).
int trials_for(int64_t elements) { return elements <= 64 ? 6 : (elements <= 4096 ? 2 : 1); }

// Values that sit on a branch of some kernel, shared by all tests.
std::vector<float> common_specials() {
  std::vector<float> s{
      0.0f, -0.0f, 1.0f, -1.0f, 0.5f, -0.5f, std::numeric_limits<float>::epsilon()};
  for (float v : {kInf, -kInf, kMaxFloat, -kMaxFloat}) s.push_back(v);
  for (float v : {kNaN, kNegNaN, kPayloadNaN, kSignallingNaN}) s.push_back(v);
  for (float v : {kMinDenormal, kMinNormal / 2, kMinNormal}) {
    s.push_back(v);
    s.push_back(-v);
  }
  return s;
}

// Incoming gradients: the same without the signalling NaN. GCC assumes no signalling NaNs unless
// given -fsignaling-nans, so it folds the reference's g * 1 into g and passes a signalling g on
// unquieted at -O2 but quieted at -O0: the reference has no fixed answer there.
std::vector<float> gradient_specials() {
  std::vector<float> s = common_specials();
  s.erase(std::remove_if(s.begin(), s.end(),
                         [](float v) { return bits_of(v) == bits_of(kSignallingNaN); }),
          s.end());
  return s;
}

// v and its two neighbouring floats.
void add_with_neighbours(std::vector<float>* out, float v) {
  out->push_back(v);
  out->push_back(std::nextafter(v, kInf));
  out->push_back(std::nextafter(v, -kInf));
}

// A float array whose last element ends its heap block (AddressSanitizer sees any access past n),
// starting one float past the block's aligned start when misaligned.
class Array {
 public:
  Array(int64_t n, bool misaligned, float fill)
      : offset_(misaligned ? 1 : 0), v_(static_cast<size_t>(n) + offset_, fill) {}
  float* data() { return v_.data() + offset_; }
  const float* data() const { return v_.data() + offset_; }
  float& operator[](int64_t i) { return data()[i]; }

 private:
  size_t offset_;
  std::vector<float> v_;
};

// Random values of several magnitudes with special values mixed in. Trial 1 lays the specials out
// cyclically (every one on every lane over the sizes); the others mix them in at random spots.
class InputMaker {
 public:
  explicit InputMaker(uint32_t seed) : rng_(seed) {}

  float random_value() {
    static const float kMagnitudes[] = {1e-6f, 0.01f, 0.3f, 1.0f, 3.0f, 7.0f, 100.0f, 1e5f};
    const float m = kMagnitudes[rng_() % (sizeof kMagnitudes / sizeof kMagnitudes[0])];
    return std::uniform_real_distribution<float>(-m, m)(rng_);
  }

  float pick(const std::vector<float>& specials, int trial, int64_t i) {
    if (trial == 1) return specials[static_cast<size_t>(i) % specials.size()];
    if (rng_() % 4 == 0) return specials[rng_() % specials.size()];
    return random_value();
  }

  Array flat(int64_t n, const std::vector<float>& specials, int trial) {
    Array a(n, trial % 2 == 1, 0.0f);
    for (int64_t i = 0; i < n; ++i) a[i] = pick(specials, trial, i);
    return a;
  }

  // specials[c] are the special values of channel c.
  Array per_channel(int64_t rows, int64_t channels, const std::vector<std::vector<float>>& specials,
                    int trial) {
    Array a(rows * channels, trial % 2 == 1, 0.0f);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < channels; ++c) {
        a[r * channels + c] = pick(specials[static_cast<size_t>(c)], trial, r + c);
      }
    }
    return a;
  }

  std::mt19937& rng() { return rng_; }

 private:
  std::mt19937 rng_;
};

// Outputs start as two different NaN patterns so that an element one kernel skips cannot match.
const float kRefFill = float_from_bits(0x7fa5a5a5u);
const float kGotFill = float_from_bits(0x7fc0deadu);

// ---- fake quant parameters ----------------------------------------------------------------------

struct NamedParams {
  FakeQuantParams<float> p;
  std::string name;
};

std::vector<NamedParams> fake_quant_params() {
  struct Range {
    float min, max;
  };
  // [0.1, 0.5] clips the zero point to qmin and [-3, -1] to qmax.
  const Range ranges[] = {{-6.0f, 6.0f}, {-1.0f, 1.0f}, {0.0f, 1.0f},
                          {-0.3f, 0.7f}, {0.1f, 0.5f},  {-3.0f, -1.0f}};
  std::vector<NamedParams> out;
  for (const Range& r : ranges) {
    for (int bits : {2, 4, 8, 16}) {
      for (bool narrow : {false, true}) {
        out.push_back({nudge<float>(r.min, r.max, bits, narrow),
                       "[" + std::to_string(r.min) + ", " + std::to_string(r.max) + "] " +
                           std::to_string(bits) + " bits" + (narrow ? " narrow" : "")});
      }
    }
  }
  out.push_back({nudge<float>(0.0f, 0.0f, 8, false), "degenerate"});
  return out;
}

const char* rounding_name(FakeQuantRounding r) {
  return r == FakeQuantRounding::kMulInvScale ? "mul inv_scale" : "div scale";
}

// The nudged ends and their neighbours, grid points, and ties x = nudged_min + (k + 0.5) * scale
// (in float and rounded from double) with neighbours, for k at both ends, near zero and at random.
std::vector<float> fake_quant_specials(const FakeQuantParams<float>& p, std::mt19937& rng) {
  std::vector<float> s = common_specials();
  for (float v : {p.nudged_min, p.nudged_max, -p.nudged_min, -p.nudged_max, p.scale, -p.scale}) {
    add_with_neighbours(&s, v);
  }
  const int64_t steps =
      p.degenerate ? 0 : std::llround((p.nudged_max - p.nudged_min) * p.inv_scale);
  std::vector<int64_t> ks{-2, -1, 0, 1, 2, steps - 2, steps - 1, steps, steps + 1};
  const int64_t qz = static_cast<int64_t>(p.quant_zero);
  for (int64_t k : {qz - 2, qz - 1, qz, qz + 1}) ks.push_back(k);
  for (int i = 0; i < 8 && steps > 0; ++i) ks.push_back(static_cast<int64_t>(rng() % steps));
  for (int64_t k : ks) {
    const float kf = static_cast<float>(k);
    add_with_neighbours(&s, p.nudged_min + (kf + 0.5f) * p.scale);
    s.push_back(p.nudged_min + kf * p.scale);
    add_with_neighbours(&s, static_cast<float>(static_cast<double>(p.nudged_min) +
                                               (static_cast<double>(k) + 0.5) * p.scale));
  }
  return s;
}

// ---- every kernel set against the reference -----------------------------------------------------

class F32KernelSet : public ::testing::TestWithParam<const F32Kernels*> {
 protected:
  static const F32Kernels& ref() { return *supported_f32_kernels().front(); }
  static const F32Kernels& k() { return *GetParam(); }

  // Runs a one-output flat kernel through ref and the set under test over every size and trial.
  // run(kernels, x, g, y, n); g is a second random input for the gradient kernels.
  void compare_flat(uint32_t seed, const std::vector<float>& specials,
                    const std::function<void(const F32Kernels&, const float*, const float*, float*,
                                             int64_t)>& run) {
    InputMaker in(seed);
    const std::vector<float> g_specials = gradient_specials();
    for (int64_t n : sizes()) {
      for (int trial = 0; trial < trials_for(n); ++trial) {
        const Array x = in.flat(n, specials, trial);
        const Array g = in.flat(n, g_specials, trial == 1 ? 0 : trial);
        Array want(n, trial % 2 == 1, kRefFill), got(n, trial % 2 == 1, kGotFill);
        run(ref(), x.data(), g.data(), want.data(), n);
        run(k(), x.data(), g.data(), got.data(), n);
        EXPECT_TRUE(BitwiseEqual(want.data(), got.data(), n, x.data()))
            << "n = " << n << ", trial " << trial;
        if (HasFailure()) return;  // one report per case; the rest would repeat it
      }
    }
  }
};

TEST_P(F32KernelSet, EveryKernelIsPresent) {
  const F32Kernels& s = k();
  ASSERT_NE(s.isa, nullptr);
  EXPECT_GT(std::strlen(s.isa), 0u);
  EXPECT_NE(s.fake_quant, nullptr);
  EXPECT_NE(s.fake_quant_per_channel, nullptr);
  EXPECT_NE(s.masked_grad, nullptr);
  EXPECT_NE(s.masked_grad_per_channel, nullptr);
  EXPECT_NE(s.sign, nullptr);
  EXPECT_NE(s.sign_per_channel, nullptr);
  EXPECT_NE(s.heaviside, nullptr);
  EXPECT_NE(s.ternary, nullptr);
  EXPECT_NE(s.dorefa_activations, nullptr);
  EXPECT_NE(s.linear_mid_tread, nullptr);
  EXPECT_NE(s.approx_sign_grad, nullptr);
  EXPECT_NE(s.fake_quant_packed, nullptr);
  EXPECT_NE(s.fake_quant_per_channel_coded, nullptr);
  EXPECT_NE(s.sign_packed, nullptr);
  EXPECT_NE(s.packed_grad, nullptr);
  EXPECT_NE(s.coded_grad_per_channel, nullptr);
  EXPECT_NE(s.sum_abs, nullptr);
  EXPECT_NE(s.sum_abs_rows, nullptr);
  EXPECT_NE(s.max_abs, nullptr);
  EXPECT_NE(s.sum_abs_above, nullptr);
  EXPECT_NE(s.twn, nullptr);
  EXPECT_NE(s.ttq, nullptr);
  EXPECT_NE(s.ttq_grad, nullptr);
  EXPECT_NE(s.clipped_grad_scaled_rows, nullptr);
  EXPECT_NE(s.swish_sign_grad, nullptr);
  EXPECT_NE(s.max_abs_tanh, nullptr);
  EXPECT_NE(s.dorefa_weights, nullptr);
  EXPECT_NE(s.dorefa_weights_grad, nullptr);
}

TEST_P(F32KernelSet, FakeQuantMatchesReference) {
  std::mt19937 rng(101);
  for (const NamedParams& np : fake_quant_params()) {
    const std::vector<float> specials = fake_quant_specials(np.p, rng);
    for (FakeQuantRounding r : {FakeQuantRounding::kMulInvScale, FakeQuantRounding::kDivScale}) {
      SCOPED_TRACE(np.name + ", " + rounding_name(r));
      compare_flat(1000, specials,
                   [&](const F32Kernels& s, const float* x, const float*, float* y, int64_t n) {
                     s.fake_quant(x, y, n, np.p, r);
                   });
      if (HasFailure()) return;
    }
  }
}

TEST_P(F32KernelSet, FakeQuantPerChannelMatchesReference) {
  std::mt19937 rng(102);
  const std::vector<NamedParams> all = fake_quant_params();
  std::vector<std::vector<float>> all_specials;
  for (const NamedParams& np : all) all_specials.push_back(fake_quant_specials(np.p, rng));
  InputMaker in(1001);
  for (FakeQuantRounding r : {FakeQuantRounding::kMulInvScale, FakeQuantRounding::kDivScale}) {
    for (int64_t channels : kChannelCounts) {
      for (int64_t rows : kRowCounts) {
        for (int trial = 0; trial < trials_for(rows * channels); ++trial) {
          // Neighbouring channels get different ranges, bit widths and narrow_range.
          std::vector<FakeQuantParams<float>> p;
          std::vector<std::vector<float>> specials;
          for (int64_t c = 0; c < channels; ++c) {
            const size_t j = static_cast<size_t>(c * 7 + trial * 5) % all.size();
            p.push_back(all[j].p);
            specials.push_back(all_specials[j]);
          }
          const int64_t n = rows * channels;
          const Array x = in.per_channel(rows, channels, specials, trial);
          Array want(n, trial % 2 == 1, kRefFill), got(n, trial % 2 == 1, kGotFill);
          ref().fake_quant_per_channel(x.data(), want.data(), rows, channels, p.data(), r);
          k().fake_quant_per_channel(x.data(), got.data(), rows, channels, p.data(), r);
          ASSERT_TRUE(BitwiseEqual(want.data(), got.data(), n, x.data(), channels))
              << rounding_name(r) << ", rows " << rows << ", channels " << channels << ", trial "
              << trial;
        }
      }
    }
  }
}

TEST_P(F32KernelSet, MaskedGradMatchesReference) {
  struct Bounds {
    float lo, hi;
  };
  const FakeQuantParams<float> p6 = nudge<float>(-6.0f, 6.0f, 8, false);
  const Bounds bounds[] = {{p6.nudged_min, p6.nudged_max},
                           {-1.0f, 1.0f},
                           {0.0f, 1.0f},
                           {0.0f, 2.0f},
                           {0.5f, 0.5f},
                           {-kInf, kInf}};
  InputMaker in(1002);
  for (const Bounds& b : bounds) {
    std::vector<float> specials = common_specials();
    add_with_neighbours(&specials, b.lo);
    add_with_neighbours(&specials, b.hi);
    for (Interval iv : {Interval::kClosed, Interval::kOpen}) {
      // Which of below / above are given: neither, both, each alone.
      for (int which = 0; which < 4; ++which) {
        const bool with_below = which & 1, with_above = which & 2;
        for (int64_t n : sizes()) {
          if (n > 4096 && which != 3) continue;  // null pointers are about the tails, not the size
          for (int trial = 0; trial < trials_for(n); ++trial) {
            SCOPED_TRACE("lo " + show(b.lo) + ", hi " + show(b.hi) +
                         (iv == Interval::kOpen ? ", open" : ", closed") + ", below " +
                         (with_below ? "given" : "null") + ", above " +
                         (with_above ? "given" : "null") + ", n " + std::to_string(n) + ", trial " +
                         std::to_string(trial));
            const Array x = in.flat(n, specials, trial);
            const Array g = in.flat(n, gradient_specials(), trial == 1 ? 0 : trial);
            Array want(n, trial % 2 == 1, kRefFill), got(n, trial % 2 == 1, kGotFill);
            // Sums add onto what the caller holds, so start from values that are not zero.
            double want_below = 0.375, want_above = -1.25, got_below = 0.375, got_above = -1.25;
            ref().masked_grad(g.data(), x.data(), want.data(), n, b.lo, b.hi, iv,
                              with_below ? &want_below : nullptr,
                              with_above ? &want_above : nullptr);
            k().masked_grad(g.data(), x.data(), got.data(), n, b.lo, b.hi, iv,
                            with_below ? &got_below : nullptr, with_above ? &got_above : nullptr);
            ASSERT_TRUE(BitwiseEqual(want.data(), got.data(), n, x.data()));
            ASSERT_TRUE(SameSum(want_below, got_below)) << "below";
            ASSERT_TRUE(SameSum(want_above, got_above)) << "above";
          }
        }
      }
    }
  }
}

TEST_P(F32KernelSet, MaskedGradSumsAccumulate) {
  // g on a coarse binary grid keeps every partial sum exact, so the result must be init + the sum.
  InputMaker in(1003);
  for (int64_t n : sizes()) {
    Array g(n, false, 0.0f), x(n, false, 0.0f), dx(n, false, 0.0f);
    double below_sum = 0, above_sum = 0;
    for (int64_t i = 0; i < n; ++i) {
      g[i] = static_cast<float>(static_cast<int>(in.rng()() % 17) - 8) * 0.25f;
      x[i] = static_cast<float>(static_cast<int>(in.rng()() % 9) - 4) * 0.5f;
      if (x[i] < -1.0f) below_sum += g[i];
      if (x[i] > 1.0f) above_sum += g[i];
    }
    double below = 3.5, above = -7.25;
    k().masked_grad(g.data(), x.data(), dx.data(), n, -1.0f, 1.0f, Interval::kClosed, &below,
                    &above);
    EXPECT_EQ(below, 3.5 + below_sum) << "n = " << n;
    EXPECT_EQ(above, -7.25 + above_sum) << "n = " << n;
  }
}

TEST_P(F32KernelSet, MaskedGradPerChannelMatchesReference) {
  const std::vector<NamedParams> all = fake_quant_params();
  InputMaker in(1004);
  for (int64_t channels : kChannelCounts) {
    for (int64_t rows : kRowCounts) {
      for (int trial = 0; trial < trials_for(rows * channels); ++trial) {
        std::vector<float> lo, hi, below, above;
        std::vector<std::vector<float>> specials;
        for (int64_t c = 0; c < channels; ++c) {
          const FakeQuantParams<float>& p =
              all[static_cast<size_t>(c * 5 + trial * 3) % all.size()].p;
          lo.push_back(p.nudged_min);
          hi.push_back(p.nudged_max);
          below.push_back(0.5f * static_cast<float>(c) - 3.0f);
          above.push_back(1.25f - 0.75f * static_cast<float>(c));
          std::vector<float> s = common_specials();
          add_with_neighbours(&s, p.nudged_min);
          add_with_neighbours(&s, p.nudged_max);
          specials.push_back(s);
        }
        const int64_t n = rows * channels;
        const Array x = in.per_channel(rows, channels, specials, trial);
        const Array g = in.flat(n, gradient_specials(), trial == 1 ? 0 : trial);
        Array want(n, trial % 2 == 1, kRefFill), got(n, trial % 2 == 1, kGotFill);
        std::vector<float> want_below = below, want_above = above;
        std::vector<float> got_below = below, got_above = above;
        ref().masked_grad_per_channel(g.data(), x.data(), want.data(), rows, channels, lo.data(),
                                      hi.data(), want_below.data(), want_above.data());
        k().masked_grad_per_channel(g.data(), x.data(), got.data(), rows, channels, lo.data(),
                                    hi.data(), got_below.data(), got_above.data());
        SCOPED_TRACE("rows " + std::to_string(rows) + ", channels " + std::to_string(channels) +
                     ", trial " + std::to_string(trial));
        ASSERT_TRUE(BitwiseEqual(want.data(), got.data(), n, x.data(), channels)) << "dx";
        ASSERT_TRUE(SameSums(want_below.data(), got_below.data(), channels)) << "below";
        ASSERT_TRUE(SameSums(want_above.data(), got_above.data(), channels)) << "above";
      }
    }
  }
}

TEST_P(F32KernelSet, SignMatchesReference) {
  for (float scale : {1.0f, 0.3f, -0.75f, 0.0f, -0.0f}) {
    SCOPED_TRACE("scale " + show(scale));
    compare_flat(1005, common_specials(),
                 [&](const F32Kernels& s, const float* x, const float*, float* y, int64_t n) {
                   s.sign(x, y, n, scale);
                 });
    if (HasFailure()) return;
  }
}

TEST_P(F32KernelSet, SignPerChannelMatchesReference) {
  InputMaker in(1006);
  // A zero scale is a channel whose weights are all zero (magnitude-aware sign).
  const float fixed_scales[] = {0.0f, -0.0f, 1.0f, 0.3f};
  for (int64_t channels : kChannelCounts) {
    for (int64_t rows : kRowCounts) {
      for (int trial = 0; trial < trials_for(rows * channels); ++trial) {
        std::vector<float> scale;
        for (int64_t c = 0; c < channels; ++c) {
          scale.push_back((c + trial) % 3 == 0 ? fixed_scales[(c + trial) % 4]
                                               : std::fabs(in.random_value()));
        }
        const std::vector<std::vector<float>> specials(static_cast<size_t>(channels),
                                                       common_specials());
        const int64_t n = rows * channels;
        const Array x = in.per_channel(rows, channels, specials, trial);
        Array want(n, trial % 2 == 1, kRefFill), got(n, trial % 2 == 1, kGotFill);
        ref().sign_per_channel(x.data(), want.data(), rows, channels, scale.data());
        k().sign_per_channel(x.data(), got.data(), rows, channels, scale.data());
        ASSERT_TRUE(BitwiseEqual(want.data(), got.data(), n, x.data(), channels))
            << "rows " << rows << ", channels " << channels << ", trial " << trial;
      }
    }
  }
}

TEST_P(F32KernelSet, HeavisideMatchesReference) {
  compare_flat(1007, common_specials(),
               [](const F32Kernels& s, const float* x, const float*, float* y, int64_t n) {
                 s.heaviside(x, y, n);
               });
}

TEST_P(F32KernelSet, TernaryMatchesReference) {
  for (float threshold : {0.0f, 0.05f, 0.5f, 1.0f, 0.7f * 0.37f}) {
    SCOPED_TRACE("threshold " + show(threshold));
    std::vector<float> specials = common_specials();
    add_with_neighbours(&specials, threshold);
    add_with_neighbours(&specials, -threshold);
    compare_flat(1008, specials,
                 [&](const F32Kernels& s, const float* x, const float*, float* y, int64_t n) {
                   s.ternary(x, y, n, threshold);
                 });
    if (HasFailure()) return;
  }
}

TEST_P(F32KernelSet, DorefaActivationsMatchesReference) {
  for (float levels : {1.0f, 3.0f, 7.0f, 15.0f, 255.0f, 65535.0f}) {
    SCOPED_TRACE("levels " + show(levels));
    std::vector<float> specials = common_specials();
    add_with_neighbours(&specials, 1.0f);
    for (float k : {0.0f, 1.0f, levels - 1.0f, std::floor(levels / 2.0f)}) {
      add_with_neighbours(&specials, (k + 0.5f) / levels);  // c * n lands on or next to a tie
    }
    compare_flat(1009, specials,
                 [&](const F32Kernels& s, const float* x, const float*, float* y, int64_t n) {
                   s.dorefa_activations(x, y, n, levels);
                 });
    if (HasFailure()) return;
  }
}

TEST_P(F32KernelSet, LinearMidTreadMatchesReference) {
  for (float levels : {1.0f, 3.0f, 15.0f, 255.0f}) {
    for (float max_value : {2.0f, 1.0f, 6.0f, 0.5f}) {
      SCOPED_TRACE("levels " + show(levels) + ", max_value " + show(max_value));
      std::vector<float> specials = common_specials();
      add_with_neighbours(&specials, max_value);
      for (float k : {0.0f, 1.0f, levels - 1.0f, std::floor(levels / 2.0f)}) {
        add_with_neighbours(&specials, (k + 0.5f) / levels * max_value);
      }
      compare_flat(1010, specials,
                   [&](const F32Kernels& s, const float* x, const float*, float* y, int64_t n) {
                     s.linear_mid_tread(x, y, n, levels, max_value);
                   });
      if (HasFailure()) return;
    }
  }
}

TEST_P(F32KernelSet, ApproxSignGradMatchesReference) {
  std::vector<float> specials = common_specials();
  add_with_neighbours(&specials, 1.0f);
  add_with_neighbours(&specials, -1.0f);
  compare_flat(1011, specials,
               [](const F32Kernels& s, const float* x, const float* g, float* dx, int64_t n) {
                 s.approx_sign_grad(g, x, dx, n);
               });
}

INSTANTIATE_TEST_SUITE_P(AllSupported, F32KernelSet, ::testing::ValuesIn(supported_f32_kernels()),
                         [](const ::testing::TestParamInfo<const F32Kernels*>& info) {
                           return std::string(info.param->isa);
                         });

// ---- the coded forwards and the backward from window codes
// ---------------------------------------

::testing::AssertionResult SameCodes(const std::vector<uint8_t>& want,
                                     const std::vector<uint8_t>& got, const float* x) {
  for (size_t i = 0; i < want.size(); ++i) {
    if (want[i] != got[i]) {
      return ::testing::AssertionFailure() << "code " << i << " differs for input " << show(x[i])
                                           << ": ref " << int{want[i]} << ", got " << int{got[i]};
    }
  }
  return ::testing::AssertionSuccess();
}

// The byte and bit of element i's plane 0 in packed window codes, by the layout of kernels.h
// written out here (plane 1 is the byte 2 further).
size_t packed_byte(int64_t i) { return static_cast<size_t>(4 * (i / 16) + (i % 16) / 8); }

uint8_t decode_packed(const std::vector<uint8_t>& code, int64_t i) {
  const bool p0 = (code[packed_byte(i)] >> (i % 8)) & 1,
             p1 = (code[packed_byte(i) + 2] >> (i % 8)) & 1;
  return p0 && p1 ? detail::kCodeAbove : (p0 ? detail::kCodeIn : (p1 ? detail::kCodeBelow : 0));
}

std::vector<uint8_t> encode_packed(const float* x, int64_t n, float lo, float hi) {
  std::vector<uint8_t> code(static_cast<size_t>(packed_code_bytes(n)), 0);
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t c = detail::window_code(x[i], lo, hi);
    const auto bit = static_cast<uint8_t>(1u << (i % 8));
    if (c == detail::kCodeIn || c == detail::kCodeAbove) code[packed_byte(i)] |= bit;
    if (c == detail::kCodeBelow || c == detail::kCodeAbove) code[packed_byte(i) + 2] |= bit;
  }
  return code;
}

// Packed codes that say each element's window code; the bits past n in its last bytes are 0, and
// the bytes of no element are left as they were (fill).
::testing::AssertionResult PackedCodesAre(const std::vector<uint8_t>& code, const float* x,
                                          int64_t n, float lo, float hi, uint8_t fill) {
  if (static_cast<int64_t>(code.size()) != packed_code_bytes(n) || code.size() % 4 != 0) {
    return ::testing::AssertionFailure() << code.size() << " bytes of codes for " << n;
  }
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t want = detail::window_code(x[i], lo, hi), got = decode_packed(code, i);
    if (want != got) {
      return ::testing::AssertionFailure() << "code " << i << " of input " << show(x[i])
                                           << ": want " << int{want} << ", got " << int{got};
    }
  }
  for (int64_t i = n; i < (n + 7) / 8 * 8; ++i) {
    if (decode_packed(code, i) != 0) {
      return ::testing::AssertionFailure() << "bits of element " << i << " past " << n << " set";
    }
  }
  for (int64_t i = (n + 7) / 8 * 8; i < static_cast<int64_t>(code.size()) * 4; i += 8) {
    if (code[packed_byte(i)] != fill || code[packed_byte(i) + 2] != fill) {
      return ::testing::AssertionFailure()
             << "bytes of elements " << i << ".. past " << n << " written";
    }
  }
  return ::testing::AssertionSuccess();
}

TEST(PackedCodes, LayoutAndSizes) {
  EXPECT_EQ(packed_code_bytes(0), 0);
  EXPECT_EQ(packed_code_bytes(1), 4);
  EXPECT_EQ(packed_code_bytes(16), 4);
  EXPECT_EQ(packed_code_bytes(17), 8);
  const std::vector<float> x = {0.5f, -2.0f, 3.0f,  kNaN, -1.0f, 1.0f,  -kInf, kInf, 0.0f,
                                7.0f, -7.0f, 0.25f, kNaN, 1.5f,  -1.5f, 0.0f,  2.0f};
  const auto n = static_cast<int64_t>(x.size());
  std::vector<uint8_t> code(static_cast<size_t>(packed_code_bytes(n)), 0x5a);
  pack_window_codes(x.data(), 0, n, -1.0f, 1.0f, code.data());
  // Elements 0-7: in, below, above, NaN, in, in, below, above: plane 0 = in or above, plane 1 =
  // below or above, element k at bit k.
  EXPECT_EQ(code[0], 0b10110101);
  EXPECT_EQ(code[2], 0b11000110);
  // Elements 8-15: in, above, below, in, NaN, above, below, in; element 16 (above) in the next
  // group.
  EXPECT_EQ(code[1], 0b10101011);
  EXPECT_EQ(code[3], 0b01100110);
  EXPECT_EQ(code[4], 0b1);
  EXPECT_EQ(code[6], 0b1);
  EXPECT_EQ(code[5], 0x5a);  // elements 24-31: none, not written
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_EQ(packed_code(code.data(), i), detail::window_code(x[i], -1.0f, 1.0f)) << i;
  }
}

TEST_P(F32KernelSet, CodedForwardsMatchReference) {
  std::mt19937 rng(111);
  InputMaker in(1011);
  const std::vector<NamedParams> all = fake_quant_params();
  for (size_t j = 0; j < all.size(); j += 3) {
    const FakeQuantParams<float>& p = all[j].p;
    const float lo = p.degenerate ? -kInf : p.nudged_min, hi = p.degenerate ? kInf : p.nudged_max;
    const std::vector<float> specials = fake_quant_specials(p, rng);
    for (FakeQuantRounding r : {FakeQuantRounding::kMulInvScale, FakeQuantRounding::kDivScale}) {
      for (int64_t n : sizes()) {
        for (int trial = 0; trial < trials_for(n); ++trial) {
          SCOPED_TRACE(all[j].name + ", " + rounding_name(r) + ", n " + std::to_string(n));
          const Array x = in.flat(n, specials, trial);
          Array want(n, false, kRefFill), got(n, false, kGotFill);
          std::vector<uint8_t> got_code(static_cast<size_t>(packed_code_bytes(n)), 0xdd);
          ref().fake_quant(x.data(), want.data(), n, p, r);
          k().fake_quant_packed(x.data(), got.data(), got_code.data(), n, p, r, lo, hi);
          ASSERT_TRUE(BitwiseEqual(want.data(), got.data(), n, x.data()));
          ASSERT_TRUE(PackedCodesAre(got_code, x.data(), n, lo, hi, 0xdd));
          // Into a misaligned output (the _nt sets' ordinary stores): the same.
          Array shifted(n, true, kGotFill);
          std::fill(got_code.begin(), got_code.end(), 0xdd);
          k().fake_quant_packed(x.data(), shifted.data(), got_code.data(), n, p, r, lo, hi);
          ASSERT_TRUE(BitwiseEqual(want.data(), shifted.data(), n, x.data()));
          ASSERT_TRUE(PackedCodesAre(got_code, x.data(), n, lo, hi, 0xdd));
          // In calls that start at multiples of 16 elements, each into its own group of codes.
          std::fill(got_code.begin(), got_code.end(), 0xdd);
          for (int64_t start = 0; start < n; start += 80) {
            const int64_t len = std::min<int64_t>(80, n - start);
            k().fake_quant_packed(x.data() + start, got.data() + start,
                                  got_code.data() + packed_code_bytes(start), len, p, r, lo, hi);
          }
          ASSERT_TRUE(BitwiseEqual(want.data(), got.data(), n, x.data()));
          ASSERT_TRUE(PackedCodesAre(got_code, x.data(), n, lo, hi, 0xdd));
          // Sign with the clip window [-1, 1].
          std::fill(got_code.begin(), got_code.end(), 0xdd);
          ref().sign(x.data(), want.data(), n, 0.5f);
          k().sign_packed(x.data(), got.data(), got_code.data(), n, 0.5f, -1.0f, 1.0f);
          ASSERT_TRUE(BitwiseEqual(want.data(), got.data(), n, x.data()));
          ASSERT_TRUE(PackedCodesAre(got_code, x.data(), n, -1.0f, 1.0f, 0xdd));
          // Without codes, the plain forwards' outputs.
          k().fake_quant_packed(x.data(), got.data(), nullptr, n, p, r, lo, hi);
          ref().fake_quant(x.data(), want.data(), n, p, r);
          ASSERT_TRUE(BitwiseEqual(want.data(), got.data(), n, x.data()));
        }
      }
    }
  }
  for (int64_t channels : kChannelCounts) {
    for (int64_t rows : kRowCounts) {
      std::vector<FakeQuantParams<float>> p;
      std::vector<float> lo, hi;
      std::vector<std::vector<float>> specials;
      for (int64_t c = 0; c < channels; ++c) {
        p.push_back(all[static_cast<size_t>(c * 7) % all.size()].p);
        lo.push_back(p.back().degenerate ? -kInf : p.back().nudged_min);
        hi.push_back(p.back().degenerate ? kInf : p.back().nudged_max);
        specials.push_back(fake_quant_specials(p.back(), rng));
      }
      const int64_t n = rows * channels;
      const Array x = in.per_channel(rows, channels, specials, 1);
      Array want(n, false, kRefFill), got(n, false, kGotFill);
      std::vector<uint8_t> want_code(static_cast<size_t>(n), 0xee),
          got_code(want_code.size(), 0xdd);
      ref().fake_quant_per_channel_coded(x.data(), want.data(), want_code.data(), rows, channels,
                                         p.data(), FakeQuantRounding::kMulInvScale, lo.data(),
                                         hi.data());
      k().fake_quant_per_channel_coded(x.data(), got.data(), got_code.data(), rows, channels,
                                       p.data(), FakeQuantRounding::kMulInvScale, lo.data(),
                                       hi.data());
      SCOPED_TRACE("rows " + std::to_string(rows) + ", channels " + std::to_string(channels));
      ASSERT_TRUE(BitwiseEqual(want.data(), got.data(), n, x.data(), channels));
      ASSERT_TRUE(SameCodes(want_code, got_code, x.data()));
      // Without a code array the same outputs, and nothing else written.
      Array no_codes(n, false, kGotFill);
      k().fake_quant_per_channel_coded(x.data(), no_codes.data(), nullptr, rows, channels, p.data(),
                                       FakeQuantRounding::kMulInvScale, lo.data(), hi.data());
      ASSERT_TRUE(BitwiseEqual(want.data(), no_codes.data(), n, x.data(), channels));
    }
  }
}

// The backward from codes gives exactly what masked_grad computes from x (closed window), in every
// set: dx bit for bit and the same sums, per tensor and per channel.
TEST_P(F32KernelSet, CodedGradEqualsMaskedGradFromX) {
  InputMaker in(1012);
  const float lo = -0.75f, hi = 1.5f;
  std::vector<float> specials = common_specials();
  add_with_neighbours(&specials, lo);
  add_with_neighbours(&specials, hi);
  for (int64_t n : sizes()) {
    for (int trial = 0; trial < trials_for(n); ++trial) {
      SCOPED_TRACE("n " + std::to_string(n) + ", trial " + std::to_string(trial));
      const Array x = in.flat(n, specials, trial);
      const Array g = in.flat(n, gradient_specials(), trial == 1 ? 0 : trial);
      const std::vector<uint8_t> code = encode_packed(x.data(), n, lo, hi);
      Array want(n, false, kRefFill), got(n, false, kGotFill);
      double want_below = 0.5, want_above = -2.0, got_below = 0.5, got_above = -2.0;
      ref().masked_grad(g.data(), x.data(), want.data(), n, lo, hi, Interval::kClosed, &want_below,
                        &want_above);
      k().packed_grad(g.data(), code.data(), got.data(), n, &got_below, &got_above);
      ASSERT_TRUE(BitwiseEqual(want.data(), got.data(), n, x.data()));
      ASSERT_TRUE(SameSum(want_below, got_below)) << "below";
      ASSERT_TRUE(SameSum(want_above, got_above)) << "above";
      // In calls that start at multiples of 16 elements (as the operators' spans do), each from
      // its own group of codes: the same dx.
      Array parts(n, false, kGotFill);
      for (int64_t start = 0; start < n; start += 48) {
        const int64_t len = std::min<int64_t>(48, n - start);
        k().packed_grad(g.data() + start, code.data() + packed_code_bytes(start),
                        parts.data() + start, len, nullptr, nullptr);
      }
      ASSERT_TRUE(BitwiseEqual(want.data(), parts.data(), n, x.data()));
    }
  }
  for (int64_t channels : kChannelCounts) {
    for (int64_t rows : kRowCounts) {
      std::vector<float> clo, chi;
      std::vector<std::vector<float>> cspecials;
      for (int64_t c = 0; c < channels; ++c) {
        clo.push_back(-0.25f * static_cast<float>(c + 1));
        chi.push_back(0.5f * static_cast<float>(c + 1));
        std::vector<float> s = common_specials();
        add_with_neighbours(&s, clo.back());
        add_with_neighbours(&s, chi.back());
        cspecials.push_back(s);
      }
      const int64_t n = rows * channels;
      const Array x = in.per_channel(rows, channels, cspecials, 1);
      const Array g = in.flat(n, gradient_specials(), 0);
      std::vector<uint8_t> code(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) {
        code[static_cast<size_t>(i)] =
            detail::window_code(x.data()[i], clo[i % channels], chi[i % channels]);
      }
      Array want(n, false, kRefFill), got(n, false, kGotFill);
      std::vector<float> want_below(channels, 1.0f), want_above(channels, -1.0f);
      std::vector<float> got_below = want_below, got_above = want_above;
      ref().masked_grad_per_channel(g.data(), x.data(), want.data(), rows, channels, clo.data(),
                                    chi.data(), want_below.data(), want_above.data());
      k().coded_grad_per_channel(g.data(), code.data(), got.data(), rows, channels,
                                 got_below.data(), got_above.data());
      SCOPED_TRACE("rows " + std::to_string(rows) + ", channels " + std::to_string(channels));
      ASSERT_TRUE(BitwiseEqual(want.data(), got.data(), n, x.data(), channels));
      ASSERT_TRUE(SameSums(want_below.data(), got_below.data(), channels)) << "below";
      ASSERT_TRUE(SameSums(want_above.data(), got_above.data(), channels)) << "above";
    }
  }
}

TEST(WindowCode, ClosedWindowAndNaN) {
  EXPECT_EQ(detail::window_code(1.0f, -1.0f, 1.0f), detail::kCodeIn);
  EXPECT_EQ(detail::window_code(-1.0f, -1.0f, 1.0f), detail::kCodeIn);
  EXPECT_EQ(detail::window_code(std::nextafter(1.0f, 2.0f), -1.0f, 1.0f), detail::kCodeAbove);
  EXPECT_EQ(detail::window_code(-kInf, -1.0f, 1.0f), detail::kCodeBelow);
  EXPECT_EQ(detail::window_code(kNaN, -1.0f, 1.0f), 0);
  EXPECT_EQ(detail::window_code(kInf, -kInf, kInf), detail::kCodeIn);
}

TEST(KernelDispatch, ReferenceComesFirstAndTheChosenSetIsSupported) {
  const auto& sets = supported_f32_kernels();
  ASSERT_FALSE(sets.empty());
  EXPECT_STREQ(sets.front()->isa, "ref");
  EXPECT_NE(std::find(sets.begin(), sets.end(), &f32_kernels()), sets.end());
  std::set<std::string> names;
  for (const F32Kernels* s : sets) EXPECT_TRUE(names.insert(s->isa).second) << s->isa;
}

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
