// Tests the torch-free kernels: every kernel set bit for bit against the scalar reference. The
// coded forwards and their backward are in test_kernel_codes.cpp, the reference against the spec in
// test_kernel_reference.cpp; the helpers all share are kernel_test_support.h.
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

// A kernel added to F32Kernels must get a comparison against the reference below; this stops the
// build until it does (isa plus 28 function pointers today; the coded forwards and backwards are
// tested in test_kernel_codes.cpp, the reductions in test_kernel_reductions.cpp, TWN, TTQ, the
// scaled gradient, swish_sign's gradient and dorefa's weights mode in test_kernel_weights.cpp).
static_assert(sizeof(F32Kernels) == sizeof(const char*) + 28 * sizeof(void (*)()),
              "F32Kernels changed: add the new kernel to the F32KernelSet tests, then update this");

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
  EXPECT_NE(s.fake_quant_per_channel_packed, nullptr);
  EXPECT_NE(s.sign_packed, nullptr);
  EXPECT_NE(s.packed_grad, nullptr);
  EXPECT_NE(s.packed_grad_per_channel, nullptr);
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

TEST(KernelDispatch, ReferenceComesFirstAndTheChosenSetIsSupported) {
  const auto& sets = supported_f32_kernels();
  ASSERT_FALSE(sets.empty());
  EXPECT_STREQ(sets.front()->isa, "ref");
  EXPECT_NE(std::find(sets.begin(), sets.end(), &f32_kernels()), sets.end());
  std::set<std::string> names;
  for (const F32Kernels* s : sets) EXPECT_TRUE(names.insert(s->isa).second) << s->isa;
}

}  // namespace
}  // namespace kernels
}  // namespace lowbit
