// The engine's bit-plane layers (2-bit activations, binary weights): every kernel against the
// definition, and chained layers passing planes against the same graph unfused.
#include "engine_test_util.h"
#include "lowbit/engine/kernels/elementwise.h"

namespace {

using namespace engine_test;  // Builder, load_error, Model

namespace lowbit_planes_tests {

using lowbit::engine::binary::ConvShape;

TEST(EnginePlanes, EveryKernelEqualsTheDefinitionAroundTilesAndWords) {
  namespace planes = lowbit::engine::planes;
  std::mt19937 rng(23);
  int checked = 0;
  for (const auto& k : planes::all()) {
    if (!k.supported()) continue;
    for (int bits = 1; bits <= planes::kMaxBits; ++bits) {
      for (int64_t c : {1, 63, 64, 65, 130}) {
        for (int64_t m : {1, 8, 9, 16, 17, 33}) {
          for (int geometry = 0; geometry < 3; ++geometry) {
            if ((bits != 2 && m > 9) || (c > 65 && geometry != 1)) continue;  // fewer, wide apart
            ConvShape s;
            s.c = c, s.m = m;
            // 3x3 same padding over 5x6 (tiles of 4 pixels and 1); strided, dilated, uneven
            // padding; a dense layer (the image's own size).
            const int64_t hs[] = {5, 6, 3}, ws[] = {6, 5, 2}, khs[] = {3, 3, 3}, kws[] = {3, 2, 2};
            s.h = hs[geometry], s.w = ws[geometry], s.kh = khs[geometry], s.kw = kws[geometry];
            if (geometry == 0) s.pad_h = s.pad_w = 1;
            if (geometry == 1) s.pad_h = 2, s.pad_w = 1, s.stride_h = 2, s.dil_w = 2;
            s.oh = (s.h + 2 * s.pad_h - s.dil_h * (s.kh - 1) - 1) / s.stride_h + 1;
            s.ow = (s.w + 2 * s.pad_w - s.dil_w * (s.kw - 1) - 1) / s.stride_w + 1;
            std::vector<uint8_t> u(c * s.h * s.w);
            std::vector<float> w(m * c * s.kh * s.kw);
            for (auto& v : u) v = static_cast<uint8_t>(rng() % (1u << bits));
            for (auto& v : w) v = rng() % 2 ? 0.5f : -0.5f;
            u[0] = static_cast<uint8_t>((1 << bits) - 1);
            std::vector<uint64_t> x(planes::image_words(bits, c, s.h, s.w));
            planes::pack_codes(u.data(), bits, c, s.h, s.w, x.data());
            const auto packed = k.pack(w.data(), m, c, s.kh, s.kw);
            std::vector<int32_t> n(m * s.oh * s.ow);
            k.sums(x.data(), bits, packed.data(), s, n.data());
            for (int64_t o = 0; o < m; ++o)
              for (int64_t r = 0; r < s.oh; ++r)
                for (int64_t q = 0; q < s.ow; ++q) {
                  int64_t want = 0;
                  for (int64_t ch = 0; ch < c; ++ch)
                    for (int64_t i = 0; i < s.kh; ++i)
                      for (int64_t j = 0; j < s.kw; ++j) {
                        const int64_t yy = r * s.stride_h - s.pad_h + i * s.dil_h;
                        const int64_t xx = q * s.stride_w - s.pad_w + j * s.dil_w;
                        if (yy < 0 || yy >= s.h || xx < 0 || xx >= s.w) continue;
                        const float wv = w[((o * c + ch) * s.kh + i) * s.kw + j];
                        want += (wv < 0 ? -1 : 1) * int64_t{u[(ch * s.h + yy) * s.w + xx]};
                      }
                  ASSERT_EQ(n[(o * s.oh + r) * s.ow + q], want)
                      << k.name << " bits=" << bits << " c=" << c << " m=" << m
                      << " geometry=" << geometry;
                }
            ++checked;
          }
        }
      }
    }
    // pack_floats gives pack_codes' planes for the values of the codes (and NaN as 0).
    std::vector<uint8_t> u(130 * 3);
    std::vector<float> f(u.size());
    for (size_t e = 0; e < u.size(); ++e) {
      u[e] = static_cast<uint8_t>(rng() % 4);
      f[e] = static_cast<float>(u[e]) * (2.0f / 3.0f);
    }
    u[5] = 0, f[5] = std::numeric_limits<float>::quiet_NaN();
    std::vector<uint64_t> a(planes::image_words(2, 130, 3, 1)), b(a.size());
    planes::pack_codes(u.data(), 2, 130, 3, 1, a.data());
    planes::pack_floats(f.data(), 2.0f / 3.0f, 2, 130, 3, 1, b.data());
    EXPECT_EQ(a, b);
  }
  EXPECT_GE(checked, 100);
}

// Blueoil's A2W1 chain: Quant (2 bits) -> Div 3 -> Mul 2 -> Conv (binary kernel, scaled) ->
// MaxPool -> batch norm (Mul, Add per channel, some multipliers negative) -> Div 2 -> Mul 3 ->
// Quant -> Div 3 -> Mul 2 -> Conv -> Mul -> Add -> Flatten -> ... -> Quant -> Div 3 -> Mul 2 ->
// Gemm (binary) -> output. Fused: every layer's chain thresholds its sums into the next layer's
// planes.
// Images of H x H (even).
Model a2w1_model(bool fused, std::vector<std::string>* kernels, int64_t H = 8) {
  const int64_t C = 3, M1 = 70, M2 = 5, classes = 4, P = (H / 2) * (H / 2);
  std::mt19937 rng(41);
  auto sign = [&] { return rng() % 2 ? 1.0f : -1.0f; };
  auto uniform = [&](float lo, float hi) {
    return std::uniform_real_distribution<float>(lo, hi)(rng);
  };
  std::vector<float> w1(M1 * C * 9), w2(M2 * M1 * 9), g(classes * M2 * P), a1(M1), b1(M1), a2(M2),
      b2(M2);
  for (auto& v : w1) v = 0.03f * sign();
  for (int64_t o = 0; o < M2; ++o)
    for (int64_t e = 0; e < M1 * 9; ++e) w2[o * M1 * 9 + e] = 0.02f * (1 + o % 2) * sign();
  for (auto& v : g) v = 0.01f * sign();
  for (auto& v : a1) v = uniform(-3, 3);
  for (auto& v : b1) v = uniform(-1, 1);
  for (auto& v : a2) v = uniform(0.5f, 3);
  for (auto& v : b2) v = uniform(-1, 1);
  Builder b({C, H, H});
  for (auto [name, v] : std::vector<std::pair<std::string, float>>{
           {"one", 1}, {"zero", 0}, {"two", 2}, {"three", 3}, {"bits", 2}})
    b.init(name, {}, {v});
  b.init("w1", {M1, C, 3, 3}, w1);
  b.init("w2", {M2, M1, 3, 3}, w2);
  b.init("g", {classes, M2 * P}, g);
  b.init("a1", {1, M1, 1, 1}, a1);
  b.init("b1", {1, M1, 1, 1}, b1);
  b.init("a2", {1, M2, 1, 1}, a2);
  b.init("b2", {1, M2, 1, 1}, b2);
  const char* qonnx = "qonnx.custom_op.general";
  // Blueoil's linear_mid_tread_half(bit=2, max 2): floor(x / 2 * 3 + 0.5) / 3 * 2 as the export
  // writes it.
  auto act = [&](const std::string& x, const std::string& out) {
    b.node("Div", {x, "two"}, out + "_d");
    b.node("Mul", {out + "_d", "three"}, out + "_m");
    auto* q = b.node("Quant", {out + "_m", "one", "zero", "bits"}, out + "_q", qonnx);
    Builder::attr(q, "signed", int64_t{0});
    Builder::attr(q, "rounding_mode", std::string("HALF_UP"));
    b.node("Div", {out + "_q", "three"}, out + "_d3");
    b.node("Mul", {out + "_d3", "two"}, out);
  };
  act("image", "x0");
  b.node("BipolarQuant", {"w1", "one"}, "w1s", qonnx);
  b.node("Mul", {"w1s", "one"}, "w1q");
  auto* c1 = b.node("Conv", {"x0", "w1q"}, "c1");
  Builder::attr(c1, "pads", std::vector<int64_t>{1, 1, 1, 1});
  auto* pool = b.node("MaxPool", {"c1"}, "p1");
  Builder::attr(pool, "kernel_shape", std::vector<int64_t>{2, 2});
  Builder::attr(pool, "strides", std::vector<int64_t>{2, 2});
  b.node("Mul", {"p1", "a1"}, "m1");
  b.node("Add", {"m1", "b1"}, "s1");
  act("s1", "x1");
  auto* c2 = b.node("Conv", {"x1", "w2"}, "c2");
  Builder::attr(c2, "pads", std::vector<int64_t>{1, 1, 1, 1});
  b.node("Mul", {"c2", "a2"}, "m2");
  b.node("Add", {"m2", "b2"}, "s2");
  b.node("Flatten", {"s2"}, "f");
  act("f", "x2");
  auto* gemm = b.node("Gemm", {"x2", "g"}, "y");
  Builder::attr(gemm, "transB", int64_t{1});
  if (!fused) {
    for (const char* v : {"c1", "p1", "m1", "c2", "m2", "s2", "f"})
      b.node("Relu", {v}, std::string(v) + "_reader");
  }
  Model model = b.load("y");
  for (const auto& p : model.plan()) kernels->push_back(p.kernel);
  return model;
}

TEST(EnginePlanes, ChainedTwoBitLayersPassPlanesAndEqualTheFloatGraph) {
  std::vector<std::string> fused_kernels, plain_kernels;
  const Model fused = a2w1_model(true, &fused_kernels);
  const Model plain = a2w1_model(false, &plain_kernels);
  const std::string best = lowbit::engine::planes::best().name;
  const std::string ew = lowbit::engine::elementwise::best().name;
  const std::vector<std::string> expected = {"div_scalar_f32_" + ew,
                                             "mul_scalar_f32_" + ew,
                                             "quant_scalar_f32_" + ew,
                                             "div_scalar_f32_" + ew,
                                             "mul_scalar_f32_" + ew,
                                             "bitplane_conv2d_" + best + "+maxpool+threshold",
                                             "copy",
                                             "copy",
                                             "bitplane_conv2d_" + best + "+threshold",
                                             "copy",
                                             "copy",
                                             "bitplane_gemm_" + best};
  EXPECT_EQ(fused_kernels, expected);
  EXPECT_EQ(std::count(plain_kernels.begin(), plain_kernels.end(), "quant_scalar_f32_" + ew), 3);
  std::mt19937 rng(7);
  const int64_t n = 11;
  std::vector<float> x(n * 3 * 64);
  for (auto& v : x) v = std::uniform_real_distribution<float>(-0.5f, 2.5f)(rng);
  std::vector<float> y1(n * 4), y2(n * 4);
  fused.run(x.data(), n, y1.data(), 2);
  plain.run(x.data(), n, y2.data(), 1);
  EXPECT_EQ(y1, y2);
  EXPECT_NE(std::vector<float>(y1.begin(), y1.begin() + 4),
            std::vector<float>(y1.begin() + 4, y1.begin() + 8));
}

TEST(EnginePlanes, OneImageOnSeveralThreadsGivesTheSameBits) {
  // Bit-plane layers split across threads by output rows: the fused chains (a 2x2 max-pool and
  // thresholds into the next layer's planes) and the plain layers (sums dequantized to floats) of
  // the A2W1 model on 40 x 40 images, each layer large enough to split: one image on 1, 2, 3 and
  // 5 threads, the same bits, and the fused model's output the plain one's.
  std::vector<std::string> fused_kernels, plain_kernels;
  const Model fused = a2w1_model(true, &fused_kernels, 40);
  const Model plain = a2w1_model(false, &plain_kernels, 40);
  std::mt19937 rng(17);
  std::vector<float> x(3 * 40 * 40);
  for (auto& v : x) v = std::uniform_real_distribution<float>(-0.5f, 2.5f)(rng);
  std::vector<float> want(4), got(4);
  plain.run(x.data(), 1, want.data(), 1);
  for (const Model* m : {&fused, &plain})
    for (int threads : {1, 2, 3, 5}) {
      std::fill(got.begin(), got.end(), 0.0f);
      m->run(x.data(), 1, got.data(), threads);
      EXPECT_EQ(got, want) << (m == &fused ? "fused, " : "plain, ") << threads << " threads";
    }
}

}  // namespace lowbit_planes_tests

}  // namespace
