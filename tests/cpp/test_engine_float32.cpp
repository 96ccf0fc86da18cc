// The float32 convolution over slices of output rows and over inputs large enough to be cut into
// tiles of rows (float32.h): every build, against the definition written out.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "engine_test_util.h"
#include "lowbit/engine/kernels/elementwise.h"
#include "lowbit/engine/kernels/float32.h"

namespace {

namespace f32 = lowbit::engine::float32;
using lowbit::engine::binary::ConvShape;

TEST(EngineFloat32, RowSlicesAndTilesGiveTheDefinitionsBits) {
  std::mt19937 rng(29);
  int checked = 0;
  // Inputs of 40-48 channels over 70-90 columns: more floats than one tile holds (float32_body.h),
  // so the rows run in several tiles; stride 1, stride 2 down the columns, two groups, dilation.
  struct Case {
    int64_t c, m, h, w, stride_h, dil_h, group, pad;
  };
  const Case cases[] = {{40, 5, 31, 70, 1, 1, 1, 1},
                        {48, 3, 41, 90, 2, 1, 1, 1},
                        {44, 6, 47, 71, 1, 2, 2, 2},
                        {3, 9, 13, 20, 1, 1, 1, 0}};
  for (const auto& k : f32::all()) {
    if (!k.supported()) continue;
    for (const Case& cs : cases) {
      ConvShape s;
      s.c = cs.c, s.m = cs.m, s.h = cs.h, s.w = cs.w, s.kh = s.kw = 3;
      s.stride_h = cs.stride_h, s.dil_h = cs.dil_h, s.pad_h = s.pad_w = cs.pad;
      s.oh = (s.h + 2 * s.pad_h - s.dil_h * (s.kh - 1) - 1) / s.stride_h + 1;
      s.ow = (s.w + 2 * s.pad_w - s.dil_w * (s.kw - 1) - 1) / s.stride_w + 1;
      std::vector<float> x(s.c * s.h * s.w), w(s.m * (s.c / cs.group) * 9), bias(s.m);
      for (auto* v : {&x, &w, &bias})
        for (auto& e : *v) e = std::uniform_real_distribution<float>(-1, 1)(rng);
      // The rows in three uneven slices, each call leaving the other rows as they were (NaN).
      const float nan = std::numeric_limits<float>::quiet_NaN();
      std::vector<float> y(s.m * s.oh * s.ow, nan);
      const int64_t cuts[] = {0, 1, s.oh / 2 + 1, s.oh};
      for (int piece = 0; piece < 3; ++piece) {
        k.conv(x.data(), w.data(), bias.data(), s, cs.group, {}, cuts[piece], cuts[piece + 1],
               y.data());
        for (int64_t o = 0; o < s.m; ++o)
          for (int64_t r = cuts[piece + 1]; r < s.oh; ++r)
            ASSERT_TRUE(std::isnan(y[(o * s.oh + r) * s.ow])) << k.name << " row " << r;
      }
      for (int64_t o = 0; o < s.m; ++o)
        for (int64_t r = 0; r < s.oh; ++r)
          for (int64_t q = 0; q < s.ow; ++q)
            ASSERT_EQ(y[(o * s.oh + r) * s.ow + q],
                      engine_test::conv_definition(x, w, bias[o], s, cs.group, o, r, q))
                << k.name << " c " << s.c << " o " << o << " r " << r << " q " << q;
      // One call over every row: the same bits.
      std::vector<float> whole(y.size());
      k.conv(x.data(), w.data(), bias.data(), s, cs.group, {}, 0, s.oh, whole.data());
      ASSERT_EQ(0, std::memcmp(whole.data(), y.data(), y.size() * sizeof(float))) << k.name;
      // Ternary codes over rows too: conv() of t * alpha.
      std::vector<int8_t> t(w.size());
      std::vector<float> alpha(s.m), tw(w.size()), tern(y.size(), nan), flt(y.size());
      for (auto& v : t) v = static_cast<int8_t>(static_cast<int>(rng() % 3) - 1);
      for (int64_t o = 0; o < s.m; ++o) alpha[o] = 0.25f + 0.5f * static_cast<float>(o);
      for (size_t e = 0; e < w.size(); ++e)
        tw[e] = static_cast<float>(t[e]) * alpha[e / (w.size() / s.m)];
      for (int piece = 0; piece < 3; ++piece)
        k.ternary_conv(x.data(), t.data(), alpha.data(), bias.data(), s, cs.group, {}, cuts[piece],
                       cuts[piece + 1], tern.data());
      f32::all()[0].conv(x.data(), tw.data(), bias.data(), s, cs.group, {}, 0, s.oh, flt.data());
      ASSERT_EQ(0, std::memcmp(tern.data(), flt.data(), y.size() * sizeof(float))) << k.name;
      ++checked;
    }
  }
  EXPECT_GE(checked, 4);
}

}  // namespace

namespace {

TEST(EngineFloat32, ConvolutionsPoolsAndElementwiseStepsSplitByRowsGiveTheOneThreadBits) {
  // One image through float convolutions (split by output rows), a padded max-pool and an average
  // pool (split by their rows), a residual Add, a per-channel Mul and a Sigmoid (each plane's
  // rows): every thread count gives the one-thread bits, and the kernels chosen are the row-split
  // ones.
  using engine_test::Builder;
  std::mt19937 rng(53);
  auto uniform = [&](size_t n) {
    std::vector<float> v(n);
    for (auto& e : v) e = std::uniform_real_distribution<float>(-1, 1)(rng);
    return v;
  };
  Builder b({3, 201, 179});  // every step past the split threshold (2^17 operations)
  b.init("w1", {16, 3, 3, 3}, uniform(16 * 27));
  Builder::attr(b.node("Conv", {"image", "w1"}, "c1"), "pads", std::vector<int64_t>{1, 1, 1, 1});
  auto* pool = b.node("MaxPool", {"c1"}, "p1");
  Builder::attr(pool, "kernel_shape", std::vector<int64_t>{3, 3});
  Builder::attr(pool, "strides", std::vector<int64_t>{2, 2});
  Builder::attr(pool, "pads", std::vector<int64_t>{1, 1, 1, 1});
  b.init("w2", {16, 16, 3, 3}, uniform(16 * 144));
  Builder::attr(b.node("Conv", {"p1", "w2"}, "c2"), "pads", std::vector<int64_t>{1, 1, 1, 1});
  b.node("Add", {"c2", "p1"}, "sum");
  b.init("k", {16, 1, 1}, uniform(16));
  b.node("Mul", {"sum", "k"}, "scaled");
  auto* avg = b.node("AveragePool", {"scaled"}, "a");
  Builder::attr(avg, "kernel_shape", std::vector<int64_t>{2, 2});
  Builder::attr(avg, "pads", std::vector<int64_t>{0, 0, 1, 1});
  Builder::attr(avg, "count_include_pad", int64_t{1});
  b.node("Sigmoid", {"a"}, "y");
  const lowbit::engine::Model m = b.load("y");
  const auto x = uniform(3 * 201 * 179);
  const int64_t n = m.output_size();
  std::vector<float> one(n), many(n);
  m.run(x.data(), 1, one.data(), 1);
  for (int threads : {2, 3, 5}) {
    std::fill(many.begin(), many.end(), 0.0f);
    m.run(x.data(), 1, many.data(), threads);
    EXPECT_EQ(0, std::memcmp(one.data(), many.data(), n * sizeof(float))) << threads;
  }
  std::vector<std::string> kernels;
  for (const auto& step : m.plan()) kernels.push_back(step.kernel);
  const std::string ew = lowbit::engine::elementwise::best().name;
  EXPECT_NE(std::find(kernels.begin(), kernels.end(), "add_f32_" + ew), kernels.end());
  EXPECT_NE(std::find(kernels.begin(), kernels.end(), "mul_rows_f32_" + ew), kernels.end());
  EXPECT_NE(std::find(kernels.begin(), kernels.end(), "sigmoid_f32_" + ew), kernels.end());
}

}  // namespace
