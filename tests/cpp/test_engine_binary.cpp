// The engine's binary layers: every kernel against the definition, planning, and chained layers
// kept bitpacked against the same graph unfused.
#include "engine_test_util.h"

namespace {

using namespace engine_test;  // Builder, load_error, Model

// ---- binary kernels

namespace lowbit_binary_tests {

using lowbit::engine::binary::ConvShape;

// The float layer: sum over the taps inside the image of x * w (±1 values), times scale, plus bias.
std::vector<float> reference_conv(const std::vector<float>& x, const std::vector<float>& w,
                                  const std::vector<float>& scale, const std::vector<float>& bias,
                                  const ConvShape& s) {
  const std::vector<int64_t> sums = reference_sums(x, w, 0.0f, s);
  std::vector<float> y(sums.size());
  const int64_t plane = s.oh * s.ow;
  for (size_t e = 0; e < y.size(); ++e)
    y[e] = static_cast<float>(sums[e]) * scale[e / plane] + bias[e / plane];
  return y;
}

TEST(EngineBinary, EveryKernelEqualsTheDefinitionAroundWordSizes) {
  std::mt19937 rng(11);
  auto sign = [&] { return rng() % 2 ? 1.0f : -1.0f; };
  for (const auto& k : lowbit::engine::binary::all()) {
    if (!k.supported()) continue;
    for (int64_t c : {1, 7, 63, 64, 65, 128, 130}) {
      for (int64_t pad : {0, 1}) {
        for (int64_t width : {4, 13}) {  // 13: blocks of output pixels away from the border
          ConvShape s;
          // Width 13: 11 rows, planes of 64 or more pixels (the vector kernels' wider tiles).
          s.c = c, s.h = width == 13 ? 11 : 5, s.w = width, s.m = c % 2 ? 3 : 9, s.kh = 3, s.kw = 2;
          s.pad_h = pad, s.pad_w = pad, s.stride_w = 1 + pad, s.dil_w = width == 13 ? 2 : 1;
          s.oh = (s.h + 2 * pad - s.kh) / s.stride_h + 1;
          s.ow = (s.w + 2 * pad - s.dil_w * (s.kw - 1) - 1) / s.stride_w + 1;
          std::vector<float> x(c * s.h * s.w), w(s.m * c * s.kh * s.kw), scale(s.m), bias(s.m);
          for (auto& v : x) v = sign();
          for (auto& v : w) v = sign();
          for (int64_t o = 0; o < s.m; ++o) scale[o] = 0.25f * (o + 1), bias[o] = 0.5f * o - 1;
          std::vector<uint64_t> packed(lowbit::engine::binary::words(c) * s.h * s.w);
          lowbit::engine::binary::pack_chw(x.data(), c, s.h, s.w, packed.data());
          const auto kernel = k.pack(w.data(), s.m, c, s.kh, s.kw);
          std::vector<float> y(s.m * s.oh * s.ow);
          k.conv(packed.data(), kernel.data(), scale.data(), bias.data(), s, y.data());
          EXPECT_EQ(y, reference_conv(x, w, scale, bias, s))
              << k.name << " c=" << c << " pad=" << pad << " width=" << width;
        }
      }
    }
  }
}

TEST(EngineBinary, EveryKernelsBitsAreTheThresholdedSums) {
  std::mt19937 rng(12);
  auto sign = [&] { return rng() % 2 ? 1.0f : -1.0f; };
  for (const auto& k : lowbit::engine::binary::all()) {
    if (!k.supported()) continue;
    for (int64_t c : {7, 64, 130}) {
      for (int64_t m : {5, 8, 17, 64, 70}) {
        ConvShape s;
        // 5 x 7 and 11 x 7 (planes of 64 or more pixels: the vector kernels' wider tiles).
        const int64_t h = m % 2 ? 11 : 5;
        s.c = c, s.h = h, s.w = 7, s.m = m, s.kh = s.kw = 3, s.pad_h = s.pad_w = 1;
        s.oh = h, s.ow = 7;
        std::vector<float> x(c * s.h * s.w), w(m * c * 9);
        for (auto& v : x) v = sign();
        for (auto& v : w) v = sign();
        const auto sums =
            reference_conv(x, w, std::vector<float>(m, 1.0f), std::vector<float>(m, 0.0f), s);
        std::vector<int32_t> t(m);
        std::vector<uint8_t> below(m);
        for (int64_t o = 0; o < m; ++o) {
          t[o] = static_cast<int32_t>(rng() % 13) - 6;  // around the sums' middle
          below[o] = rng() % 2;
        }
        const int64_t mw = lowbit::engine::binary::words(m), plane = s.oh * s.ow;
        std::vector<uint64_t> want(mw * plane, 0), got(mw * plane, ~uint64_t{0});
        for (int64_t o = 0; o < m; ++o)
          for (int64_t p = 0; p < plane; ++p) {
            const float n = sums[o * plane + p];
            if (below[o] ? n < t[o] : n > t[o]) want[p * mw + o / 64] |= uint64_t{1} << (o % 64);
          }
        std::vector<uint64_t> packed(lowbit::engine::binary::words(c) * s.h * s.w);
        lowbit::engine::binary::pack_chw(x.data(), c, s.h, s.w, packed.data());
        const auto kernel = k.pack(w.data(), m, c, 3, 3);
        k.conv_bits(packed.data(), kernel.data(), t.data(), below.data(), s, got.data());
        EXPECT_EQ(got, want) << k.name << " c=" << c << " m=" << m;
      }
    }
  }
}

// One output pixel whose window leaves a 2x2 image at the bottom and right (pads 0, 0, 1, 1): the
// padding taps add nothing (a kernel's one-pixel path must not read them from the image).
TEST(EngineBinary, OnePixelWithBottomAndRightPaddingEqualsTheDefinition) {
  std::mt19937 rng(14);
  for (int64_t c : {3, 64, 100}) {
    ConvShape s;
    s.c = c, s.h = s.w = 2, s.m = 11, s.kh = s.kw = 3, s.oh = s.ow = 1;
    std::vector<float> x(c * 4), w(s.m * c * 9), scale(s.m, 0.5f), bias(s.m, 1.0f);
    for (auto& v : x) v = rng() % 2 ? 1.0f : -1.0f;
    for (auto& v : w) v = rng() % 2 ? 1.0f : -1.0f;
    std::vector<uint64_t> packed(lowbit::engine::binary::words(c) * 4 + 64, ~uint64_t{0});
    lowbit::engine::binary::pack_chw(x.data(), c, 2, 2, packed.data());
    for (const auto& k : lowbit::engine::binary::all()) {
      if (!k.supported()) continue;
      const auto kernel = k.pack(w.data(), s.m, c, 3, 3);
      std::vector<float> y(s.m);
      k.conv(packed.data(), kernel.data(), scale.data(), bias.data(), s, y.data());
      EXPECT_EQ(y, reference_conv(x, w, scale, bias, s)) << k.name << " c=" << c;
    }
  }
}

// Random shapes with wide padding, strides and dilations (windows partly or wholly in the
// padding, every class of border pixel), planes above and below the wider tiles' 64 pixels: the
// floats and the thresholded bits of every kernel against the definition.
TEST(EngineBinary, EveryKernelEqualsTheDefinitionOnRandomShapes) {
  std::mt19937 rng(13);
  auto sign = [&] { return rng() % 2 ? 1.0f : -1.0f; };
  auto pick = [&](int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(rng() % (hi - lo + 1));
  };
  for (int trial = 0; trial < 40; ++trial) {
    ConvShape s;
    const int64_t cs[] = {1, 5, 64, 65, 130};
    s.c = cs[rng() % 5], s.m = pick(1, 20), s.kh = pick(1, 5), s.kw = pick(1, 5);
    s.stride_h = pick(1, 3), s.stride_w = pick(1, 3), s.dil_h = pick(1, 2), s.dil_w = pick(1, 2);
    s.pad_h = pick(0, 4), s.pad_w = pick(0, 4), s.h = pick(1, 20), s.w = pick(1, 20);
    // Bottom and right pads of their own (the shape implies them through oh and ow).
    const int64_t pad_bottom = trial % 3 == 0 ? pick(0, 3) : s.pad_h;
    const int64_t pad_right = trial % 3 == 0 ? pick(0, 3) : s.pad_w;
    const int64_t span_h = (s.kh - 1) * s.dil_h + 1, span_w = (s.kw - 1) * s.dil_w + 1;
    if (s.h + s.pad_h + pad_bottom < span_h || s.w + s.pad_w + pad_right < span_w) continue;
    s.oh = (s.h + s.pad_h + pad_bottom - span_h) / s.stride_h + 1;
    s.ow = (s.w + s.pad_w + pad_right - span_w) / s.stride_w + 1;
    std::vector<float> x(s.c * s.h * s.w), w(s.m * s.c * s.kh * s.kw), scale(s.m), bias(s.m);
    for (auto& v : x) v = sign();
    for (auto& v : w) v = sign();
    for (int64_t o = 0; o < s.m; ++o) scale[o] = 0.5f + 0.125f * o, bias[o] = 0.25f * o - 2;
    const auto want = reference_conv(x, w, scale, bias, s);
    const auto sums = reference_sums(x, w, 0.0f, s);
    std::vector<int32_t> t(s.m);
    std::vector<uint8_t> below(s.m);
    for (int64_t o = 0; o < s.m; ++o)
      t[o] = static_cast<int32_t>(pick(-8, 8)), below[o] = rng() % 2;
    const int64_t mw = lowbit::engine::binary::words(s.m), plane = s.oh * s.ow;
    std::vector<uint64_t> want_bits(mw * plane, 0);
    for (int64_t o = 0; o < s.m; ++o)
      for (int64_t p = 0; p < plane; ++p) {
        const int64_t n = sums[o * plane + p];
        if (below[o] ? n < t[o] : n > t[o]) want_bits[p * mw + o / 64] |= uint64_t{1} << (o % 64);
      }
    std::vector<uint64_t> packed(lowbit::engine::binary::words(s.c) * s.h * s.w);
    lowbit::engine::binary::pack_chw(x.data(), s.c, s.h, s.w, packed.data());
    for (const auto& k : lowbit::engine::binary::all()) {
      if (!k.supported()) continue;
      const auto kernel = k.pack(w.data(), s.m, s.c, s.kh, s.kw);
      std::vector<float> y(s.m * plane, -99.0f);
      k.conv(packed.data(), kernel.data(), scale.data(), bias.data(), s, y.data());
      std::vector<uint64_t> bits(mw * plane, ~uint64_t{0});
      k.conv_bits(packed.data(), kernel.data(), t.data(), below.data(), s, bits.data());
      const std::string where = k.name + " c=" + std::to_string(s.c) + " m=" + std::to_string(s.m) +
                                " k=" + std::to_string(s.kh) + "x" + std::to_string(s.kw) +
                                " pad=" + std::to_string(s.pad_h) + "," + std::to_string(s.pad_w) +
                                " out=" + std::to_string(s.oh) + "x" + std::to_string(s.ow);
      EXPECT_EQ(y, want) << where;
      EXPECT_EQ(bits, want_bits) << where;
    }
  }
}

TEST(EngineBinary, EveryKernelEqualsTheDefinitionForOneOutputPixel) {
  // Dense layers planned as convolutions by a kernel as large as the image (one output pixel, no
  // padding; also dilated, the window inside a larger image): floats and thresholded bits.
  std::mt19937 rng(14);
  auto sign = [&] { return rng() % 2 ? 1.0f : -1.0f; };
  int checked = 0;
  for (const auto& k : lowbit::engine::binary::all()) {
    if (!k.supported()) continue;
    for (int64_t c : {7, 64, 130}) {
      for (int64_t m : {5, 8, 17, 70}) {
        for (int dilated = 0; dilated < 2; ++dilated) {
          ConvShape s;
          s.c = c, s.m = m, s.kh = 3, s.kw = 4, s.oh = s.ow = 1;
          s.h = dilated ? 5 : 3, s.w = 4, s.dil_h = dilated ? 2 : 1;
          std::vector<float> x(c * s.h * s.w), w(m * c * 12), scale(m), bias(m);
          for (auto& v : x) v = sign();
          for (auto& v : w) v = sign();
          for (int64_t o = 0; o < m; ++o) scale[o] = 0.25f * (o + 1), bias[o] = 0.5f * o - 1;
          std::vector<uint64_t> packed(lowbit::engine::binary::words(c) * s.h * s.w);
          lowbit::engine::binary::pack_chw(x.data(), c, s.h, s.w, packed.data());
          const auto kernel = k.pack(w.data(), m, c, s.kh, s.kw);
          std::vector<float> y(m);
          k.conv(packed.data(), kernel.data(), scale.data(), bias.data(), s, y.data());
          EXPECT_EQ(y, reference_conv(x, w, scale, bias, s)) << k.name << " c=" << c << " m=" << m;
          const auto sums =
              reference_conv(x, w, std::vector<float>(m, 1.0f), std::vector<float>(m, 0.0f), s);
          std::vector<int32_t> t(m);
          std::vector<uint8_t> below(m);
          const int64_t mw = lowbit::engine::binary::words(m);
          std::vector<uint64_t> want(mw, 0), got(mw, ~uint64_t{0});
          for (int64_t o = 0; o < m; ++o) {
            t[o] = static_cast<int32_t>(sums[o]) + static_cast<int32_t>(rng() % 5) - 2;
            below[o] = rng() % 2;
            if (below[o] ? sums[o] < t[o] : sums[o] > t[o]) want[o / 64] |= uint64_t{1} << (o % 64);
          }
          k.conv_bits(packed.data(), kernel.data(), t.data(), below.data(), s, got.data());
          EXPECT_EQ(got, want) << k.name << " c=" << c << " m=" << m;
          ++checked;
        }
      }
    }
  }
  EXPECT_GE(checked, 24);
}

TEST(EngineBinary, OneImageOnSeveralThreadsGivesTheSameBits) {
  // Binary layers split across threads by output rows: a fused chain with an overlapping 3x3
  // max-pool of stride 2, a strided fused layer, and a last binary convolution of float outputs
  // with zero padding (its own pads: the slices' border corrections), on odd sizes, each large
  // enough to split: one image on 1, 2, 3 and 5 threads, the same bits.
  const int64_t C = 128, H = 49;
  std::mt19937 rng(23);
  auto sign = [&] { return rng() % 2 ? 1.0f : -1.0f; };
  std::vector<float> w1(C * C * 9), w2(C * C * 9), w3(C * C * 9), a(C), b(C), x(C * H * H);
  for (auto* v : {&w1, &w2, &w3})
    for (auto& e : *v) e = sign();
  for (int64_t c = 0; c < C; ++c)
    a[c] = std::uniform_real_distribution<float>(-1, 1)(rng),
    b[c] = std::uniform_real_distribution<float>(-4, 4)(rng);
  for (auto& e : x) e = std::uniform_real_distribution<float>(-1, 1)(rng);
  Builder m({C, H, H});
  m.init("one", {}, {1.0f});
  m.init("pads", {8}, {0, 0, 1, 1, 0, 0, 1, 1});
  m.init("w1", {C, C, 3, 3}, w1);
  m.init("w2", {C, C, 3, 3}, w2);
  m.init("w3", {C, C, 3, 3}, w3);
  m.init("a", {1, C, 1, 1}, a);
  m.init("b", {1, C, 1, 1}, b);
  const char* qonnx = "qonnx.custom_op.general";
  m.node("BipolarQuant", {"image", "one"}, "x0", qonnx);
  m.node("Pad", {"x0", "pads", "one"}, "x1");
  m.node("Conv", {"x1", "w1"}, "c1");  // 49 x 49
  auto* pool = m.node("MaxPool", {"c1"}, "p1");
  Builder::attr(pool, "kernel_shape", std::vector<int64_t>{3, 3});
  Builder::attr(pool, "strides", std::vector<int64_t>{2, 2});  // 24 x 24, windows overlapping
  m.node("Mul", {"p1", "a"}, "m1");
  m.node("Add", {"m1", "b"}, "s1");
  m.node("BipolarQuant", {"s1", "one"}, "x2", qonnx);
  m.node("Pad", {"x2", "pads", "one"}, "x3");
  Builder::attr(m.node("Conv", {"x3", "w2"}, "c2"), "strides", std::vector<int64_t>{2, 2});
  m.node("Add", {"c2", "b"}, "s2");  // 12 x 12
  m.node("BipolarQuant", {"s2", "one"}, "x4", qonnx);
  Builder::attr(m.node("Conv", {"x4", "w3"}, "c3"), "pads",
                std::vector<int64_t>{1, 1, 1, 1});  // float outputs, 12 x 12
  m.node("Flatten", {"c3"}, "y");
  const Model model = m.load("y");
  std::vector<std::string> kernels;
  for (const auto& p : model.plan()) kernels.push_back(p.kernel);
  const std::string best = lowbit::engine::binary::best().name;
  EXPECT_NE(
      std::find(kernels.begin(), kernels.end(), "binary_conv2d_" + best + "+maxpool+threshold"),
      kernels.end());
  EXPECT_NE(std::find(kernels.begin(), kernels.end(), "binary_conv2d_" + best + "+threshold"),
            kernels.end());
  EXPECT_NE(std::find(kernels.begin(), kernels.end(), "binary_conv2d_" + best), kernels.end());
  const int64_t n = model.output_size();
  ASSERT_EQ(n, C * 144);
  std::vector<float> one(n), many(n);
  model.run(x.data(), 1, one.data(), 1);
  for (int threads : {2, 3, 5}) {
    model.run(x.data(), 1, many.data(), threads);
    EXPECT_EQ(std::memcmp(one.data(), many.data(), n * sizeof(float)), 0) << threads;
  }
}

TEST(EngineBinary, BipolarInputsAndScaledSignKernelsPlanTheBinaryKernel) {
  // BipolarQuant -> Pad(+1) -> Conv(±0.5 kernel) -> Flatten -> BipolarQuant -> Gemm(±1).
  const int64_t C = 70, H = 4, W = 3, M = 5, classes = 3;
  std::mt19937 rng(3);
  auto sign = [&] { return rng() % 2 ? 1.0f : -1.0f; };
  std::vector<float> w(M * C * 9), g(classes * M * H * W), x(2 * C * H * W);
  for (auto& v : w) v = 0.5f * sign();
  for (auto& v : g) v = sign();
  for (auto& v : x) v = std::uniform_real_distribution<float>(-1, 1)(rng);
  Builder b({C, H, W});
  b.init("one", {}, {1.0f});
  b.init("pads", {8}, {0, 0, 1, 1, 0, 0, 1, 1});
  b.init("w", {M, C, 3, 3}, w);
  b.init("g", {classes, M * H * W}, g);
  b.node("BipolarQuant", {"image", "one"}, "xb", "qonnx.custom_op.general");
  b.node("Pad", {"xb", "pads", "one"}, "xp");
  b.node("Conv", {"xp", "w"}, "c");
  b.node("Flatten", {"c"}, "f");
  b.node("BipolarQuant", {"f", "one"}, "fb", "qonnx.custom_op.general");
  auto* gemm = b.node("Gemm", {"fb", "g"}, "y");
  Builder::attr(gemm, "transB", int64_t{1});
  const Model model = b.load("y");
  std::vector<std::string> kernels;
  for (const auto& p : model.plan()) kernels.push_back(p.kernel);
  const std::string best = lowbit::engine::binary::best().name;
  // Conv -> Flatten -> BipolarQuant fused: the sums' signs written as bits for the dense layer.
  ASSERT_EQ(kernels.size(), 4u);
  EXPECT_EQ(kernels[2], "binary_conv2d_" + best + "+threshold");
  EXPECT_EQ(kernels[3], "binary_gemm_" + best);
  // Packed: a few bits per weight (70 channels fill two words; channels padded to the vector).
  EXPECT_LT(model.plan()[2].parameter_bytes, static_cast<int64_t>(w.size() * sizeof(float) / 8));
  EXPECT_GT(model.plan()[2].parameter_bytes, static_cast<int64_t>(w.size() / 8));
  std::vector<float> y(2 * classes);
  model.run(x.data(), 2, y.data());
  for (int n = 0; n < 2; ++n) {
    std::vector<float> xb(C * (H + 2) * (W + 2), 1.0f);  // padded with +1
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < H; ++i)
        for (int64_t j = 0; j < W; ++j)
          xb[(c * (H + 2) + i + 1) * (W + 2) + j + 1] =
              x[((n * C + c) * H + i) * W + j] >= 0 ? 1 : -1;
    ConvShape s;
    s.c = C, s.h = H + 2, s.w = W + 2, s.m = M, s.kh = s.kw = 3, s.oh = H, s.ow = W;
    std::vector<float> signs(w.size());
    for (size_t e = 0; e < w.size(); ++e) signs[e] = w[e] / 0.5f;
    const auto conv =
        reference_conv(xb, signs, std::vector<float>(M, 0.5f), std::vector<float>(M, 0.0f), s);
    for (int k = 0; k < classes; ++k) {
      float acc = 0;
      for (int64_t f = 0; f < M * H * W; ++f)
        acc += (conv[f] >= 0 ? 1.0f : -1.0f) * g[k * M * H * W + f];
      EXPECT_EQ(y[n * classes + k], acc) << n << " " << k;
    }
  }
}

// A chain of binary layers, once fused (bits between the layers) and once kept apart by a second
// reader of every intermediate value (floats, the reference path tested above): equal outputs.
// 70 and 67 channels cross a word; the per-channel multipliers are negative, zero and positive.
Model chained_binary_model(bool fused, std::vector<std::string>* kernels) {
  const int64_t C = 70, M2 = 67, H = 6, classes = 4;
  std::mt19937 rng(21);
  auto sign = [&] { return rng() % 2 ? 1.0f : -1.0f; };
  auto uniform = [&](float lo, float hi) {
    return std::uniform_real_distribution<float>(lo, hi)(rng);
  };
  std::vector<float> w1(C * C * 9), w2(M2 * C * 9), g(classes * M2 * 4), a(C), b(C), a2(M2);
  for (auto& v : w1) v = 0.5f * sign();
  for (int64_t o = 0; o < M2; ++o)
    for (int64_t e = 0; e < C * 9; ++e) w2[o * C * 9 + e] = 0.25f * (1 + o % 3) * sign();
  for (auto& v : g) v = sign();
  for (int64_t c = 0; c < C; ++c) a[c] = c % 7 == 0 ? 0.0f : uniform(-2, 2), b[c] = uniform(-3, 3);
  for (auto& v : a2) v = uniform(-1, 1);
  Builder m({C, H, H});
  m.init("one", {}, {1.0f});
  m.init("minus", {}, {-1.0f});
  m.init("pads", {8}, {0, 0, 1, 1, 0, 0, 1, 1});
  m.init("w1", {C, C, 3, 3}, w1);
  m.init("w2", {M2, C, 3, 3}, w2);
  m.init("g", {classes, M2 * 4}, g);
  m.init("a", {1, C, 1, 1}, a);
  m.init("b", {1, C, 1, 1}, b);
  m.init("a2", {1, M2, 1, 1}, a2);
  const char* qonnx = "qonnx.custom_op.general";
  m.node("BipolarQuant", {"image", "one"}, "x0", qonnx);
  m.node("Pad", {"x0", "pads", "one"}, "x1");
  m.node("Conv", {"x1", "w1"}, "c1");
  auto* pool = m.node("MaxPool", {"c1"}, "p1");
  Builder::attr(pool, "kernel_shape", std::vector<int64_t>{2, 2});
  Builder::attr(pool, "strides", std::vector<int64_t>{2, 2});
  m.node("Mul", {"p1", "a"}, "m1");
  m.node("Add", {"m1", "b"}, "s1");
  m.node("BipolarQuant", {"s1", "one"}, "x2", qonnx);  // 3x3, packed when fused
  m.node("Pad", {"x2", "pads", "minus"}, "x3");        // -1 padding of packed words
  m.node("Conv", {"x3", "w2"}, "c2");
  m.node("Mul", {"c2", "a2"}, "m2");
  m.node("BipolarQuant", {"m2", "one"}, "x4", qonnx);
  auto* pool2 = m.node("MaxPool", {"x4"}, "p2");  // on bits: AND
  Builder::attr(pool2, "kernel_shape", std::vector<int64_t>{2, 2});
  m.node("Flatten", {"p2"}, "f");
  auto* gemm = m.node("Gemm", {"f", "g"}, "y");
  Builder::attr(gemm, "transB", int64_t{1});
  if (!fused) {
    for (const char* v : {"x0", "c1", "p1", "m1", "s1", "x2", "c2", "m2", "x4"})
      m.node("Relu", {v}, std::string(v) + "_reader");
  }
  Model model = m.load("y");
  for (const auto& p : model.plan()) kernels->push_back(p.kernel);
  return model;
}

TEST(EngineBinary, ChainedBinaryLayersStayPackedAndEqualTheFloatGraph) {
  std::vector<std::string> fused_kernels, plain_kernels;
  const Model fused = chained_binary_model(true, &fused_kernels);
  const Model plain = chained_binary_model(false, &plain_kernels);
  const std::string best = lowbit::engine::binary::best().name;
  // The input's signs packed at once (only a pad of +1 reads them), then bits throughout.
  const std::vector<std::string> expected = {"pack_signs_" + best,
                                             "pad_bits",
                                             "binary_conv2d_" + best + "+maxpool+threshold",
                                             "pad_bits",
                                             "binary_conv2d_" + best + "+threshold",
                                             "maxpool_bits",
                                             "copy",
                                             "binary_gemm_" + best};
  EXPECT_EQ(fused_kernels, expected);
  EXPECT_EQ(std::count(plain_kernels.begin(), plain_kernels.end(), "bipolar_quant_f32"), 3);
  std::mt19937 rng(4);
  const int64_t n = 9;  // more than one chunk of images
  std::vector<float> x(n * 70 * 36);
  for (auto& v : x) v = std::uniform_real_distribution<float>(-1, 1)(rng);
  x[5] = std::numeric_limits<float>::quiet_NaN(), x[7] = -0.0f, x[8] = 0.0f;  // -1, +1, +1
  std::vector<float> y1(n * 4), y2(n * 4);
  fused.run(x.data(), n, y1.data(), 2);
  plain.run(x.data(), n, y2.data(), 1);
  EXPECT_EQ(y1, y2);
}

TEST(EngineBinary, PackedValuesReadAsFloatsAreUnpacked) {
  // BipolarQuant fused into the convolution, then Relu, which reads floats.
  const int64_t C = 3, M = 65, H = 4;
  std::mt19937 rng(8);
  std::vector<float> w(M * C * 9), x(2 * C * H * H);
  for (auto& v : w) v = rng() % 2 ? 1.0f : -1.0f;
  for (auto& v : x) v = std::uniform_real_distribution<float>(-1, 1)(rng);
  auto build = [&](bool fused) {
    Builder m({C, H, H});
    m.init("one", {}, {1.0f});
    m.init("w", {M, C, 3, 3}, w);
    m.node("BipolarQuant", {"image", "one"}, "x0", "qonnx.custom_op.general");
    auto* conv = m.node("Conv", {"x0", "w"}, "c");
    Builder::attr(conv, "pads", std::vector<int64_t>{1, 1, 1, 1});
    m.node("BipolarQuant", {"c", "one"}, "s", "qonnx.custom_op.general");
    m.node("Relu", {"s"}, "r");
    m.node("Flatten", {"r"}, "y");
    if (!fused) m.node("Relu", {"c"}, "reader");
    return m.load("y");
  };
  const Model fused = build(true), plain = build(false);
  std::vector<std::string> kernels;
  for (const auto& p : fused.plan()) kernels.push_back(p.kernel);
  EXPECT_NE(std::find(kernels.begin(), kernels.end(), "unpack_bits"), kernels.end());
  std::vector<float> y1(2 * M * H * H), y2(y1.size());
  fused.run(x.data(), 2, y1.data());
  plain.run(x.data(), 2, y2.data());
  EXPECT_EQ(y1, y2);
  for (float v : y1) EXPECT_TRUE(v == 0.0f || v == 1.0f);
}

}  // namespace lowbit_binary_tests

TEST(EngineBinary, EveryBuildPacksSignsAsTheDefinition) {
  // Every build's signs() against the layout written out: bit (ch % 64) of word
  // (pixel * words(c) + ch / 64) is 1 where the predicate holds, padding bits 0; values around
  // the predicates' edges (±0, NaN, infinities), channel counts around a word, odd planes.
  namespace bin = lowbit::engine::binary;
  std::mt19937 rng(59);
  const float specials[] = {0.0f,
                            -0.0f,
                            std::numeric_limits<float>::quiet_NaN(),
                            std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(),
                            1e-40f,
                            -1e-40f};
  int checked = 0;
  for (const auto& k : bin::all()) {
    if (!k.supported()) continue;
    for (int64_t c : {1, 63, 64, 65, 130}) {
      const int64_t h = 3, w = 5, cw = bin::words(c);
      std::vector<float> x(c * h * w);
      for (auto& v : x)
        v = rng() % 3 == 0 ? specials[rng() % 7]
                           : std::uniform_real_distribution<float>(-1, 1)(rng);
      for (bin::Minus minus :
           {bin::Minus::negative, bin::Minus::not_nonnegative, bin::Minus::zero}) {
        std::vector<uint64_t> got(cw * h * w, ~uint64_t{0});
        k.signs(x.data(), c, h, w, minus, got.data());
        for (int64_t p = 0; p < h * w; ++p)
          for (int64_t ch = 0; ch < cw * 64; ++ch) {
            bool want = false;
            if (ch < c) {
              const float v = x[ch * h * w + p];
              want = minus == bin::Minus::negative          ? v < 0
                     : minus == bin::Minus::not_nonnegative ? !(v >= 0)
                                                            : v == 0;
            }
            const bool bit = (got[p * cw + ch / 64] >> (ch % 64)) & 1;
            ASSERT_EQ(bit, want) << k.name << " c " << c << " pixel " << p << " channel " << ch;
          }
        ++checked;
      }
    }
  }
  EXPECT_GE(checked, 15);
}

TEST(EngineBinary, GroupedConvolutionsOfSignsRunOnTheBinaryKernelGroupByGroup) {
  // BipolarQuant, then a grouped Conv with weights s[o] * (±1) (s powers of 2, so the float sums
  // are exact): the definition's values, bit for bit, on the binary kernel where a group has at
  // least 16 channels; a depthwise convolution stays on the float kernel (same values).
  namespace bin = lowbit::engine::binary;
  std::mt19937 rng(61);
  struct Case {
    int64_t c, group, m, stride, pad;
    bool binary;
  };
  const Case cases[] = {{64, 2, 6, 1, 1, true},
                        {48, 3, 9, 2, 1, true},
                        {32, 2, 4, 1, 0, true},
                        {16, 16, 16, 1, 1, false}};
  for (const Case& cs : cases) {
    const int64_t h = 33, w = 29, cg = cs.c / cs.group;
    bin::ConvShape s;
    s.c = cs.c, s.h = h, s.w = w, s.m = cs.m, s.kh = s.kw = 3, s.stride_h = s.stride_w = cs.stride;
    s.pad_h = s.pad_w = cs.pad;
    s.oh = (h + 2 * cs.pad - 3) / cs.stride + 1, s.ow = (w + 2 * cs.pad - 3) / cs.stride + 1;
    std::vector<float> x(cs.c * h * w), weights(cs.m * cg * 9), bias(cs.m), signs(x.size());
    for (auto& v : x) v = std::uniform_real_distribution<float>(-1, 1)(rng);
    for (size_t e = 0; e < x.size(); ++e) signs[e] = x[e] >= 0 ? 1.0f : -1.0f;
    for (int64_t o = 0; o < cs.m; ++o) {
      const float scale = o % 3 == 0 ? 0.5f : o % 3 == 1 ? 2.0f : 0.125f;
      for (int64_t e = 0; e < cg * 9; ++e) weights[o * cg * 9 + e] = rng() % 2 ? scale : -scale;
      bias[o] = std::uniform_real_distribution<float>(-1, 1)(rng);
    }
    Builder b({cs.c, h, w});
    b.init("one", {}, {1.0f});
    b.init("w", {cs.m, cg, 3, 3}, weights);
    b.init("bias", {cs.m}, bias);
    b.node("BipolarQuant", {"image", "one"}, "x", "qonnx.custom_op.general");
    auto* conv = b.node("Conv", {"x", "w", "bias"}, "y");
    Builder::attr(conv, "group", cs.group);
    Builder::attr(conv, "strides", std::vector<int64_t>{cs.stride, cs.stride});
    Builder::attr(conv, "pads", std::vector<int64_t>{cs.pad, cs.pad, cs.pad, cs.pad});
    const Model model = b.load("y");
    const std::string kernel = model.plan().back().kernel;
    EXPECT_EQ(kernel.find("binary_conv2d_") == 0 && kernel.find("_grouped") != std::string::npos,
              cs.binary)
        << kernel;
    const int64_t n = cs.m * s.oh * s.ow;
    std::vector<float> y(n), y3(n);
    model.run(x.data(), 1, y.data(), 1);
    model.run(x.data(), 1, y3.data(), 3);
    EXPECT_EQ(y, y3);
    for (int64_t o = 0; o < cs.m; ++o)
      for (int64_t r = 0; r < s.oh; ++r)
        for (int64_t q = 0; q < s.ow; ++q)
          ASSERT_EQ(y[(o * s.oh + r) * s.ow + q],
                    engine_test::conv_definition(signs, weights, bias[o], s, cs.group, o, r, q))
              << "c " << cs.c << " group " << cs.group << " at " << o << "," << r << "," << q;
  }
}

}  // namespace
