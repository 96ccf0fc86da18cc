// The float32 convolution over slices of output rows and over inputs large enough to be cut into
// tiles of rows (float32.h): every build, against the definition written out.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "engine_test_util.h"
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
