// The layout kernel list (layout.h): padding in every mode and resizing by source tables, every
// build against the definitions written out here.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "lowbit/engine/kernels/layout.h"

namespace {

namespace layout = lowbit::engine::layout;

std::vector<float> uniform(std::mt19937& rng, int64_t n) {
  std::vector<float> v(n);
  for (auto& e : v) e = std::uniform_real_distribution<float>(-3, 3)(rng);
  return v;
}

// ONNX's reflect as a period of 2 (n - 1) mirrored at its middle; edge as clamping.
int64_t reflected(int64_t i, int64_t n) {
  if (n == 1) return 0;
  const int64_t period = 2 * (n - 1);
  int64_t m = ((i % period) + period) % period;
  return m < n ? m : period - m;
}

TEST(EngineLayout, PadIsTheDefinitionInEveryModeAndBuild) {
  std::mt19937 rng(43);
  int checked = 0;
  struct Case {
    int64_t h, w, top, left, bottom, right;
  };
  // Pads wider than the plane (reflect mirrors again), a single row and column, no pads, long rows.
  const Case cases[] = {{5, 7, 1, 2, 3, 0},
                        {4, 3, 6, 5, 2, 7},
                        {1, 1, 2, 3, 1, 1},
                        {3, 4, 0, 0, 0, 0},
                        {2, 70, 1, 17, 2, 33}};
  for (const auto& k : layout::all()) {
    if (!k.supported()) continue;
    for (const Case& c : cases) {
      const auto x = uniform(rng, c.h * c.w);
      const int64_t oh = c.h + c.top + c.bottom, ow = c.w + c.left + c.right;
      for (auto mode :
           {layout::PadMode::constant, layout::PadMode::reflect, layout::PadMode::edge}) {
        std::vector<float> y(oh * ow, 99.0f);
        k.pad(x.data(), c.h, c.w, c.top, c.left, oh, ow, mode, -0.5f, y.data());
        for (int64_t r = 0; r < oh; ++r)
          for (int64_t q = 0; q < ow; ++q) {
            const int64_t rr = r - c.top, qq = q - c.left;
            float want;
            if (rr >= 0 && rr < c.h && qq >= 0 && qq < c.w) {
              want = x[rr * c.w + qq];
            } else if (mode == layout::PadMode::constant) {
              want = -0.5f;
            } else if (mode == layout::PadMode::edge) {
              want = x[std::min(std::max<int64_t>(rr, 0), c.h - 1) * c.w +
                       std::min(std::max<int64_t>(qq, 0), c.w - 1)];
            } else {
              want = x[reflected(rr, c.h) * c.w + reflected(qq, c.w)];
            }
            ASSERT_EQ(y[r * ow + q], want)
                << k.name << " mode " << static_cast<int>(mode) << " at " << r << "," << q;
          }
        ++checked;
      }
    }
  }
  EXPECT_GE(checked, 15);
}

TEST(EngineLayout, ResizeIsTheDefinitionInEveryBuild) {
  std::mt19937 rng(47);
  int checked = 0;
  for (const auto& k : layout::all()) {
    if (!k.supported()) continue;
    for (int geometry = 0; geometry < 3; ++geometry) {
      // Upsampling (rows repeated), downsampling, and random tables (rows out of order).
      const int64_t h = 6, w = 9, oh = geometry == 1 ? 4 : 13, ow = geometry == 1 ? 5 : 19;
      const auto x = uniform(rng, h * w);
      std::vector<int64_t> r0(oh), r1(oh), c0(ow), c1(ow);
      std::vector<float> fr(oh), fc(ow);
      for (int64_t r = 0; r < oh; ++r) {
        r0[r] = geometry == 2 ? static_cast<int64_t>(rng() % h) : r * h / oh;
        r1[r] = std::min(r0[r] + 1, h - 1);
        fr[r] = std::uniform_real_distribution<float>(0, 1)(rng);
      }
      for (int64_t q = 0; q < ow; ++q) {
        c0[q] = geometry == 2 ? static_cast<int64_t>(rng() % w) : q * w / ow;
        c1[q] = geometry == 2 ? static_cast<int64_t>(rng() % w) : std::min(c0[q] + 1, w - 1);
        fc[q] = std::uniform_real_distribution<float>(0, 1)(rng);
      }
      std::vector<float> near(oh * ow), lin(oh * ow);
      k.nearest(x.data(), w, r0.data(), oh, c0.data(), ow, near.data());
      k.linear(x.data(), w, r0.data(), r1.data(), fr.data(), oh, c0.data(), c1.data(), fc.data(),
               ow, lin.data());
      for (int64_t r = 0; r < oh; ++r)
        for (int64_t q = 0; q < ow; ++q) {
          ASSERT_EQ(near[r * ow + q], x[r0[r] * w + c0[q]]) << k.name << " nearest";
          const float a = x[r0[r] * w + c0[q]], b = x[r0[r] * w + c1[q]];
          const float c = x[r1[r] * w + c0[q]], d = x[r1[r] * w + c1[q]];
          const float top = a + (b - a) * fc[q], bottom = c + (d - c) * fc[q];
          const float want = top + (bottom - top) * fr[r];
          ASSERT_EQ(0, std::memcmp(&lin[r * ow + q], &want, sizeof(float)))
              << k.name << " linear at " << r << "," << q << " geometry " << geometry;
        }
      ++checked;
    }
  }
  EXPECT_GE(checked, 3);
}

}  // namespace
