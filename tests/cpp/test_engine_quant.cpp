// QONNX's Quant on activations with a scale and zero point per channel: the element-wise kernel
// list's quant planned by rows, against the formula written out, on one and several threads.
#include <cmath>
#include <cstring>
#include <random>

#include "engine_test_util.h"
#include "lowbit/engine/kernels/elementwise.h"

namespace {

using engine_test::Builder;

TEST(EngineQuant, PerChannelScalesAndZeroPointsRunOnTheRowsKernel) {
  std::mt19937 rng(61);
  const int64_t c = 3, h = 256, w = 200, plane = h * w;  // past the threads' split threshold
  const std::vector<float> scale = {0.1f, 0.25f, 0.07f}, zero = {0.0f, 3.0f, -2.0f};
  // Per-channel scale and zero point; a scalar zero point; both scalars (one row per image: its
  // values split between threads).
  for (int form = 0; form < 3; ++form) {
    const bool scalar_zero = form >= 1, scalar_scale = form == 2;
    Builder b({c, h, w});
    if (scalar_scale) {
      b.init("s", {}, {scale[1]});
    } else {
      b.init("s", {c, 1, 1}, scale);
    }
    if (scalar_zero) {
      b.init("z", {}, {1.0f});
    } else {
      b.init("z", {c, 1, 1}, zero);
    }
    b.init("bits", {}, {4.0f});
    auto* q = b.node("Quant", {"image", "s", "z", "bits"}, "y", "qonnx.custom_op.general");
    Builder::attr(q, "rounding_mode", std::string("HALF_UP"));
    const lowbit::engine::Model m = b.load("y");
    EXPECT_EQ(m.plan()[0].kernel, std::string(scalar_scale ? "quant_scalar" : "quant_rows") +
                                      "_f32_" + lowbit::engine::elementwise::best().name);
    std::vector<float> x(2 * c * plane);
    for (auto& v : x) v = std::uniform_real_distribution<float>(-2.5f, 2.5f)(rng);
    x[5] = 0.25f * 2.5f;  // a half on channel 0's grid... and halves of channel 1's below
    for (int64_t e = plane; e < plane + 40; ++e) x[e] = 0.25f * (static_cast<float>(e % 9) - 4.5f);
    std::vector<float> one(x.size()), many(x.size());
    m.run(x.data(), 2, one.data(), 1);
    for (int64_t e = 0; e < static_cast<int64_t>(x.size()); ++e) {
      const int64_t ch = (e / plane) % c;
      const float s = scalar_scale ? scale[1] : scale[ch], z = scalar_zero ? 1.0f : zero[ch];
      float u = x[e] / s + z;
      u = u > 7 ? 7 : (u < -8 ? -8 : u);
      const float r = u < 0 ? -std::floor(-u + 0.5f) : std::floor(u + 0.5f);  // halves away from 0
      ASSERT_EQ(one[e], (r - z) * s) << e << " " << x[e];
    }
    for (int threads : {2, 3}) {  // one image on several threads: its planes' rows split
      m.run(x.data(), 1, many.data(), threads);
      EXPECT_EQ(0, std::memcmp(one.data(), many.data(), c * plane * sizeof(float))) << threads;
    }
  }
}

}  // namespace
