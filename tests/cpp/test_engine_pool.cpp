// The pooling kernel list (include/lowbit/engine/kernels/pool.h): every implementation against
// the definitions written out here, around the vectorized cases (2x2 windows of stride 2, windows
// inside the plane, the reductions' 16 lanes) and their edges (padding, dilation, windows past the
// plane, NaN).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "lowbit/engine/kernels/pool.h"

namespace {

namespace pool = lowbit::engine::pool;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

pool::Window window(int64_t h, int64_t w, int64_t k, int64_t stride, int64_t pad, int64_t dil,
                    bool ceil) {
  pool::Window s;
  s.h = h, s.w = w, s.kh = s.kw = k, s.stride_h = s.stride_w = stride, s.dil_h = s.dil_w = dil;
  s.pad_top = s.pad_left = s.pad_bottom = s.pad_right = pad;
  auto extent = [&](int64_t size) {
    const int64_t span = size + 2 * pad - dil * (k - 1) - 1;
    int64_t o = (ceil ? (span + stride - 1) / stride : span / stride) + 1;
    if (ceil && (o - 1) * stride >= size + pad) --o;
    return o;
  };
  s.oh = extent(h), s.ow = extent(w);
  return s;
}

// The geometries: 2x2 stride 2 (even and odd planes), 3x3 stride 1 padded, 3x3 stride 2 dilated
// with ceil_mode's windows past the plane, 1x1, a window as large as the plane.
std::vector<pool::Window> geometries() {
  return {window(8, 10, 2, 2, 0, 1, false), window(7, 9, 2, 2, 0, 1, true),
          window(6, 33, 3, 1, 1, 1, false), window(9, 11, 3, 2, 0, 2, true),
          window(5, 4, 1, 1, 0, 1, false),  window(4, 6, 4, 1, 0, 1, false)};
}

std::vector<float> uniform(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<float> v(n);
  for (auto& e : v) e = std::uniform_real_distribution<float>(-4, 4)(rng);
  return v;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(EnginePool, EveryMaxPoolIsTheLargestTapNaNPropagating) {
  int checked = 0;
  for (const auto& k : pool::all()) {
    if (!k.supported()) continue;
    for (const auto& s : geometries()) {
      auto x = uniform(s.h * s.w, 3);
      x[2 * s.w + 2] = kNaN;  // a NaN in some windows
      std::vector<float> got(s.oh * s.ow), want(got.size());
      k.max(x.data(), s, got.data());
      for (int64_t r = 0; r < s.oh; ++r)
        for (int64_t q = 0; q < s.ow; ++q) {
          float best = -std::numeric_limits<float>::infinity();
          for (int64_t i = 0; i < s.kh; ++i)
            for (int64_t j = 0; j < s.kw; ++j) {
              const int64_t yy = r * s.stride_h - s.pad_top + i * s.dil_h;
              const int64_t xx = q * s.stride_w - s.pad_left + j * s.dil_w;
              if (yy < 0 || yy >= s.h || xx < 0 || xx >= s.w) continue;
              const float v = x[yy * s.w + xx];
              if (v > best || std::isnan(v)) best = v;
            }
          want[r * s.ow + q] = best;
        }
      EXPECT_TRUE(same_bits(got, want)) << k.name << " " << s.h << "x" << s.w << " k" << s.kh;
      EXPECT_TRUE(std::any_of(got.begin(), got.end(), [](float v) { return std::isnan(v); }));
      ++checked;
    }
  }
  EXPECT_GE(checked, 6);
}

TEST(EnginePool, EveryCodesMaxPoolIsTheLargestCode) {
  std::mt19937 rng(5);
  for (const auto& k : pool::all()) {
    if (!k.supported()) continue;
    // 2x2 of stride 2 over 130 columns: two blocks of 32 vectorized outputs and a tail.
    for (const auto& s : {window(8, 10, 2, 2, 0, 1, false), window(4, 130, 2, 2, 0, 1, false),
                          window(7, 65, 3, 2, 0, 1, false), window(9, 11, 2, 1, 0, 3, false)}) {
      std::vector<uint8_t> x(s.h * s.w), got(s.oh * s.ow), want(got.size());
      for (auto& v : x) v = static_cast<uint8_t>(rng());
      k.max_codes(x.data(), s, got.data());
      for (int64_t r = 0; r < s.oh; ++r)
        for (int64_t q = 0; q < s.ow; ++q) {
          uint8_t best = 0;
          for (int64_t i = 0; i < s.kh; ++i)
            for (int64_t j = 0; j < s.kw; ++j)
              best = std::max(
                  best, x[(r * s.stride_h + i * s.dil_h) * s.w + q * s.stride_w + j * s.dil_w]);
          want[r * s.ow + q] = best;
        }
      EXPECT_EQ(got, want) << k.name << " " << s.w;
    }
  }
}

TEST(EnginePool, EveryAveragePoolDividesTheSumInsideByOnnxsCount) {
  for (const auto& k : pool::all()) {
    if (!k.supported()) continue;
    for (const auto& g : {window(6, 33, 3, 1, 1, 1, false), window(7, 9, 3, 2, 1, 1, true),
                          window(8, 10, 2, 2, 0, 1, false), window(5, 8, 5, 3, 2, 1, true)}) {
      for (bool include : {false, true}) {
        const auto x = uniform(g.h * g.w, 7);
        std::vector<float> got(g.oh * g.ow), want(got.size());
        k.average(x.data(), g, include, got.data());
        for (int64_t r = 0; r < g.oh; ++r)
          for (int64_t q = 0; q < g.ow; ++q) {
            // The window clipped to the padded plane, then to the plane.
            const int64_t y0 = r * g.stride_h - g.pad_top, x0 = q * g.stride_w - g.pad_left;
            const int64_t y1 = std::min(y0 + g.kh, g.h + g.pad_bottom);
            const int64_t x1 = std::min(x0 + g.kw, g.w + g.pad_right);
            float sum = 0;
            int64_t inside = 0;
            for (int64_t i = std::max<int64_t>(y0, 0); i < std::min(y1, g.h); ++i)
              for (int64_t j = std::max<int64_t>(x0, 0); j < std::min(x1, g.w); ++j)
                sum += x[i * g.w + j], ++inside;
            const int64_t n = include ? (y1 - y0) * (x1 - x0) : inside;
            want[r * g.ow + q] = sum / static_cast<float>(n);
          }
        EXPECT_TRUE(same_bits(got, want)) << k.name << " include " << include;
      }
    }
  }
}

TEST(EnginePool, EveryReductionFollowsTheSixteenLanes) {
  for (const auto& k : pool::all()) {
    if (!k.supported()) continue;
    for (int64_t n : {1, 15, 16, 17, 37, 100, 1000}) {
      auto x = uniform(n, static_cast<uint32_t>(n));
      for (auto& v : x) v *= 1000.0f;
      float lane[16];
      std::fill(lane, lane + 16, 0.0f);
      for (int64_t e = 0; e < n; ++e) lane[e % 16] += x[e];
      for (int w = 8; w >= 1; w /= 2)
        for (int l = 0; l < w; ++l) lane[l] += lane[l + w];
      // As the second of three blocks: the first and last are their own reductions.
      std::vector<float> three(3 * n, 1.0f), y(3);
      std::copy(x.begin(), x.end(), three.begin() + n);
      three[3 * n - 1] = 5.0f;
      k.sum(three.data(), n, 3, y.data());
      EXPECT_EQ(y[1], lane[0]) << k.name << " n=" << n;
      EXPECT_EQ(y[0], static_cast<float>(n)) << k.name;
      k.maximum(three.data(), n, 3, y.data());
      EXPECT_EQ(y[1], *std::max_element(x.begin(), x.end())) << k.name;
      EXPECT_EQ(y[2], 5.0f) << k.name;
      k.minimum(three.data(), n, 3, y.data());
      EXPECT_EQ(y[1], *std::min_element(x.begin(), x.end())) << k.name;
      three[n + n / 2] = kNaN;
      k.maximum(three.data(), n, 3, y.data());
      EXPECT_TRUE(std::isnan(y[1]) && !std::isnan(y[0]) && !std::isnan(y[2])) << k.name;
      k.minimum(three.data(), n, 3, y.data());
      EXPECT_TRUE(std::isnan(y[1])) << k.name << " n=" << n;
    }
  }
}

}  // namespace
