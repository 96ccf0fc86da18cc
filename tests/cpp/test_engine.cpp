// The inference engine without LibTorch: node semantics against loops and values written out here
// (QONNX's rounding table, a direct convolution), the C API, and hostile model files.
#include "engine_test_util.h"

namespace {

using namespace engine_test;  // Builder, load_error, Model

// QONNX's documented rounding table (docs/qonnx-custom-ops/quant_op.md).
// docs/engine.md's table of nodes (its first column, each operator in backquotes) names exactly the
// operators the engine lowers.
TEST(Engine, TheDocsTableNamesEveryOperatorTheEngineLowers) {
  const std::vector<std::string> ops = lowbit::engine::supported_operators();
  ASSERT_TRUE(std::is_sorted(ops.begin(), ops.end()));
  std::ifstream file(std::string(LOWBIT_SOURCE_DIR) + "/docs/engine.md");
  ASSERT_TRUE(file) << "docs/engine.md";
  std::vector<std::string> documented;
  bool in_table = false;
  for (std::string line; std::getline(file, line);) {
    if (line.rfind("| node |", 0) == 0) in_table = true;
    if (!in_table || line.rfind("| `", 0) != 0) {
      if (in_table && line.empty()) break;
      continue;
    }
    const std::string cell = line.substr(1, line.find('|', 1) - 1);
    for (size_t at = cell.find('`'); at != std::string::npos; at = cell.find('`', at)) {
      const size_t end = cell.find('`', at + 1);
      documented.push_back(cell.substr(at + 1, end - at - 1));
      at = end + 1;
    }
  }
  std::sort(documented.begin(), documented.end());
  EXPECT_EQ(documented, ops);
  for (const char* op : {"Conv", "Gemm", "Quant", "BipolarQuant", "QuantizeLinear", "MaxPool"})
    EXPECT_TRUE(std::binary_search(ops.begin(), ops.end(), op)) << op;
}

TEST(Engine, QuantRoundsAsQonnxDocumentsEveryMode) {
  const std::vector<float> x = {5.5f, 2.5f, 1.6f, 1.1f, 1.0f, -1.0f, -1.1f, -1.6f, -2.5f, -5.5f};
  const std::map<std::string, std::vector<float>> table = {
      {"ROUND", {6, 2, 2, 1, 1, -1, -1, -2, -2, -6}},
      {"CEIL", {6, 3, 2, 2, 1, -1, -1, -1, -2, -5}},
      {"FLOOR", {5, 2, 1, 1, 1, -1, -2, -2, -3, -6}},
      {"UP", {6, 3, 2, 2, 1, -1, -2, -2, -3, -6}},
      {"DOWN", {5, 2, 1, 1, 1, -1, -1, -1, -2, -5}},
      {"HALF_UP", {6, 3, 2, 1, 1, -1, -1, -2, -3, -6}},
      {"HALF_DOWN", {5, 2, 2, 1, 1, -1, -1, -2, -2, -5}},
  };
  for (const auto& [mode, expected] : table) {
    Builder b({1, 1, 10});
    b.init("s", {}, {1.0f});
    b.init("z", {}, {0.0f});
    b.init("bits", {}, {8.0f});
    auto* q = b.node("Quant", {"image", "s", "z", "bits"}, "q", "qonnx.custom_op.general");
    Builder::attr(q, "rounding_mode", mode);
    b.node("Flatten", {"q"}, "y");
    const Model model = b.load("y");
    std::vector<float> y(10);
    model.run(x.data(), 1, y.data());
    for (int i = 0; i < 10; ++i) EXPECT_EQ(y[i], expected[i]) << mode << " " << x[i];
  }
}

TEST(Engine, QuantClampsScalesAndShiftsByTheZeroPoint) {
  // 3-bit unsigned, scale 0.5, zero point 2: codes clamp(round(x / 0.5 + 2), 0, 7).
  Builder b({1, 1, 6});
  b.init("s", {}, {0.5f});
  b.init("z", {}, {2.0f});
  b.init("bits", {}, {3.0f});
  auto* q = b.node("Quant", {"image", "s", "z", "bits"}, "q", "qonnx.custom_op.general");
  Builder::attr(q, "signed", int64_t{0});
  b.node("Flatten", {"q"}, "y");
  const Model model = b.load("y");
  const std::vector<float> x = {-5, -1, 0, 0.3f, 1.2f, 9};
  std::vector<float> y(6);
  model.run(x.data(), 1, y.data());
  for (int i = 0; i < 6; ++i) {
    const float code = std::min(std::max(std::nearbyint(x[i] / 0.5f + 2), 0.0f), 7.0f);
    EXPECT_EQ(y[i], (code - 2) * 0.5f) << x[i];
  }
}

TEST(Engine, BipolarQuantMapsZeroToPlusOne) {
  Builder b({1, 1, 4});
  b.init("s", {}, {0.25f});
  b.node("BipolarQuant", {"image", "s"}, "q", "qonnx.custom_op.general");
  b.node("Flatten", {"q"}, "y");
  const Model model = b.load("y");
  const std::vector<float> x = {-2, -0.0f, 0, 3};
  std::vector<float> y(4);
  model.run(x.data(), 1, y.data());
  EXPECT_EQ(y, (std::vector<float>{-0.25f, 0.25f, 0.25f, 0.25f}));
}

// Conv (stride 2, pads, bias) -> Relu -> MaxPool -> Flatten -> Gemm against direct loops.
TEST(Engine, ConvPoolGemmMatchDirectLoops) {
  const int64_t C = 2, H = 7, W = 6, M = 3, K = 3, classes = 4;
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> w(M * C * K * K), bias(M), x(2 * C * H * W);
  for (auto* v : {&w, &bias, &x})
    for (auto& e : *v) e = u(rng);
  Builder b({C, H, W});
  b.init("w", {M, C, K, K}, w);
  b.init("b", {M}, bias);
  auto* conv = b.node("Conv", {"image", "w", "b"}, "c");
  Builder::attr(conv, "strides", std::vector<int64_t>{2, 1});
  Builder::attr(conv, "pads", std::vector<int64_t>{1, 0, 1, 2});
  b.node("Relu", {"c"}, "r");
  auto* pool = b.node("MaxPool", {"r"}, "p");
  Builder::attr(pool, "kernel_shape", std::vector<int64_t>{2, 2});
  Builder::attr(pool, "strides", std::vector<int64_t>{2, 2});
  b.node("Flatten", {"p"}, "f");
  // conv: oh = (7 + 2 - 3) / 2 + 1 = 4, ow = (6 + 2 - 3) + 1 = 6; pool: 2 x 3.
  const int64_t OH = 4, OW = 6, PH = 2, PW = 3, F = M * PH * PW;
  std::vector<float> g(classes * F), gb(classes);
  for (auto* v : {&g, &gb})
    for (auto& e : *v) e = u(rng);
  b.init("g", {classes, F}, g);
  b.init("gb", {classes}, gb);
  auto* gemm = b.node("Gemm", {"f", "g", "gb"}, "y");
  Builder::attr(gemm, "transB", int64_t{1});
  const Model model = b.load("y");
  ASSERT_EQ(model.output_size(), classes);
  std::vector<float> y(2 * classes);
  model.run(x.data(), 2, y.data(), 2);
  for (int n = 0; n < 2; ++n) {
    std::vector<float> conv_out(M * OH * OW);
    for (int o = 0; o < M; ++o)
      for (int r = 0; r < OH; ++r)
        for (int q = 0; q < OW; ++q) {
          float acc = 0;
          for (int c = 0; c < C; ++c)
            for (int i = 0; i < K; ++i)
              for (int j = 0; j < K; ++j) {
                const int yy = r * 2 - 1 + i, xx = q - 0 + j;
                if (yy < 0 || yy >= H || xx < 0 || xx >= W) continue;
                acc += x[((n * C + c) * H + yy) * W + xx] * w[((o * C + c) * K + i) * K + j];
              }
          conv_out[(o * OH + r) * OW + q] = std::max(acc + bias[o], 0.0f);
        }
    std::vector<float> pooled(F);
    for (int o = 0; o < M; ++o)
      for (int r = 0; r < PH; ++r)
        for (int q = 0; q < PW; ++q) {
          float m = -INFINITY;
          for (int i = 0; i < 2; ++i)
            for (int j = 0; j < 2; ++j)
              m = std::max(m, conv_out[(o * OH + 2 * r + i) * OW + 2 * q + j]);
          pooled[(o * PH + r) * PW + q] = m;
        }
    for (int k = 0; k < classes; ++k) {
      float acc = 0;
      for (int f = 0; f < F; ++f) acc += pooled[f] * g[k * F + f];
      EXPECT_NEAR(y[n * classes + k], acc + gb[k], 1e-5) << n << " " << k;
    }
  }
  // The Relu runs in the convolution's kernel (a clamp after the bias), which writes its output.
  const auto& plan = model.plan();
  ASSERT_EQ(plan.size(), 4u);
  EXPECT_EQ(plan[0].kernel, "conv2d_f32_" + lowbit::engine::float32::best().name + "+clamp");
  EXPECT_EQ(plan[0].output, (std::vector<int64_t>{M, OH, OW}));
  EXPECT_EQ(plan[1].op_type, "MaxPool");
}

TEST(Engine, PadsWithTheConstantAndBroadcastsPerChannel) {
  Builder b({2, 1, 1});
  b.init("pads", {8}, {0, 0, 1, 0, 0, 0, 0, 1});  // one row on top, one column on the right
  b.init("one", {}, {1.0f});
  b.node("Pad", {"image", "pads", "one"}, "p");
  b.init("alpha", {1, 2, 1, 1}, {2.0f, -3.0f});
  b.node("Mul", {"p", "alpha"}, "m");
  b.node("Flatten", {"m"}, "y");
  const Model model = b.load("y");
  const std::vector<float> x = {5, 7};
  std::vector<float> y(8);
  model.run(x.data(), 1, y.data());
  // Channel planes of 2x2: [1 1; 5 1] * 2 and [1 1; 7 1] * -3.
  EXPECT_EQ(y, (std::vector<float>{2, 2, 10, 2, -3, -3, -21, -3}));
}

TEST(Engine, EveryFloatDenseLayerGivesTheDefinitionsBits) {
  // y[o] = fma(x[k-1], w[o,k-1], ... fma(x[1], w[o,1], fma(x[0], w[o,0], 0))) + bias[o], then the
  // clamp: written out here, for output counts around the register blocks (4 registers of 4, 8 or
  // 16 floats), without and with a clamp.
  namespace f32 = lowbit::engine::float32;
  std::mt19937 rng(17);
  int checked = 0;
  for (const auto& k : f32::all()) {
    if (!k.supported()) continue;
    for (int64_t m : {1, 15, 16, 17, 63, 64, 65, 130}) {
      const int64_t n = 37;
      std::vector<float> x(n), w(m * n), wt(m * n), bias(m), got(m);
      for (auto* v : {&x, &w, &bias})
        for (auto& e : *v) e = std::uniform_real_distribution<float>(-1, 1)(rng);
      w[0] = std::numeric_limits<float>::infinity();
      for (int64_t o = 0; o < m; ++o)
        for (int64_t i = 0; i < n; ++i) wt[i * m + o] = w[o * n + i];
      f32::Clamp clamp;
      if (m % 2) clamp.lo = -0.25f, clamp.hi = 0.5f;
      k.dense(x.data(), wt.data(), m, bias.data(), n, m, clamp, got.data());
      for (int64_t o = 0; o < m; ++o) {
        float acc = 0;
        for (int64_t i = 0; i < n; ++i) acc = std::fma(x[i], w[o * n + i], acc);
        float want = acc + bias[o];
        if (m % 2) want = want < -0.25f ? -0.25f : want > 0.5f ? 0.5f : want;
        EXPECT_EQ(std::memcmp(&got[o], &want, sizeof want), 0)
            << k.name << " m=" << m << " o=" << o << ": " << got[o] << " vs " << want;
      }
      // A slice of the outputs (as a thread computes its part): the same bits.
      if (m > 20) {
        std::vector<float> part(m - 19);
        k.dense(x.data(), wt.data() + 19, m, bias.data() + 19, n, m - 19, clamp, part.data());
        EXPECT_EQ(std::memcmp(part.data(), got.data() + 19, part.size() * sizeof(float)), 0)
            << k.name << " m=" << m;
      }
      ++checked;
    }
  }
  EXPECT_GE(checked, 8);
}

TEST(Engine, ReluAndClipRunInTheFloatLayerWhereOnlyTheyReadIt) {
  // Conv -> Clip(0, 6) and Gemm -> Relu fuse (a clamp in the kernel); the same graphs with an
  // Identity before each activation keep the activation as its own step: the same bits. A
  // convolution whose output a residual Add reads too keeps its Relu apart.
  std::mt19937 rng(29);
  auto uniform = [&](size_t n, float scale) {
    std::vector<float> v(n);
    for (auto& e : v) e = std::uniform_real_distribution<float>(-scale, scale)(rng);
    return v;
  };
  const auto w = uniform(4 * 3 * 9, 2.0f), g = uniform(5 * 4 * 36, 1.0f),
             x = uniform(3 * 3 * 36, 4.0f);
  auto build = [&](bool apart) {
    Builder b({3, 6, 6});
    b.init("w", {4, 3, 3, 3}, w);
    b.init("g", {5, 4 * 36}, g);
    b.init("lo", {}, {0.0f});
    b.init("hi", {}, {6.0f});
    Builder::attr(b.node("Conv", {"image", "w"}, "c"), "pads", std::vector<int64_t>{1, 1, 1, 1});
    if (apart) b.node("Identity", {"c"}, "ci");
    b.node("Clip", {apart ? "ci" : "c", "lo", "hi"}, "r");
    b.node("Flatten", {"r"}, "f");
    Builder::attr(b.node("Gemm", {"f", "g"}, "d"), "transB", int64_t{1});
    if (apart) b.node("Identity", {"d"}, "di");
    b.node("Relu", {apart ? "di" : "d"}, "y");
    return b.load("y");
  };
  const Model fused = build(false), apart = build(true);
  namespace f32 = lowbit::engine::float32;
  std::vector<std::string> kernels;
  for (const auto& p : fused.plan()) kernels.push_back(p.kernel);
  EXPECT_EQ(kernels, (std::vector<std::string>{"conv2d_f32_" + f32::best().name + "+clamp", "copy",
                                               "gemm_f32_" + f32::best().name + "+clamp"}));
  EXPECT_EQ(apart.plan().size(), 7u);
  std::vector<float> y1(15), y2(15);
  fused.run(x.data(), 3, y1.data());
  apart.run(x.data(), 3, y2.data());
  EXPECT_EQ(std::memcmp(y1.data(), y2.data(), sizeof(float) * 15), 0);
  EXPECT_TRUE(std::any_of(y1.begin(), y1.end(), [](float v) { return v == 0.0f; }));
  EXPECT_TRUE(std::any_of(y1.begin(), y1.end(), [](float v) { return v > 0.0f; }));

  Builder r({2, 4, 4});
  r.init("w", {2, 2, 1, 1}, {1.0f, -1.0f, 0.5f, 2.0f});
  r.node("Conv", {"image", "w"}, "c");
  r.node("Relu", {"c"}, "rc");
  r.node("Add", {"c", "rc"}, "s");
  r.node("Flatten", {"s"}, "y");
  const Model residual = r.load("y");
  ASSERT_EQ(residual.plan().size(), 4u);
  EXPECT_EQ(residual.plan()[0].kernel, "conv2d_f32_" + f32::best().name);
  EXPECT_EQ(residual.plan()[1].op_type, "Relu");
}

TEST(Engine, GlobalPoolingSumsSixteenLanesThenFoldsThem) {
  // docs/engine.md's order for reductions of the innermost axes: lane l sums values l, l + 16, ...
  // from 0, then lane l + w is added to lane l for w = 8, 4, 2, 1; the mean divides by the count.
  // Written out here for planes of 37 values (two full rounds and a tail), against a sequential sum
  // that differs in its bits somewhere.
  const int64_t C = 6, H = 37;
  std::mt19937 rng(31);
  std::vector<float> x(2 * C * H);
  for (auto& v : x) v = std::uniform_real_distribution<float>(-1, 1)(rng) * 1000.0f;
  Builder b({C, H, 1});
  b.node("GlobalAveragePool", {"image"}, "p");
  b.node("Flatten", {"p"}, "y");
  const Model avg = b.load("y");
  std::vector<float> y(2 * C);
  avg.run(x.data(), 2, y.data());
  int differs = 0;
  for (int64_t o = 0; o < 2 * C; ++o) {
    float lane[16] = {};
    for (int64_t e = 0; e < H; ++e) lane[e % 16] += x[o * H + e];
    for (int w = 8; w >= 1; w /= 2)
      for (int l = 0; l < w; ++l) lane[l] += lane[l + w];
    EXPECT_EQ(y[o], lane[0] / static_cast<float>(H)) << o;
    float sequential = 0;
    for (int64_t e = 0; e < H; ++e) sequential += x[o * H + e];
    differs += sequential / static_cast<float>(H) != y[o];
  }
  EXPECT_GT(differs, 0);  // the order is the lanes', not the sequential one
  // GlobalMaxPool: the largest value, NaN where one is NaN.
  Builder m({C, H, 1});
  m.node("GlobalMaxPool", {"image"}, "p");
  m.node("Flatten", {"p"}, "y");
  x[3 * H + 20] = std::numeric_limits<float>::quiet_NaN();
  m.load("y").run(x.data(), 2, y.data());
  for (int64_t o = 0; o < 2 * C; ++o) {
    if (o == 3) {
      EXPECT_TRUE(std::isnan(y[o]));
      continue;
    }
    EXPECT_EQ(y[o], *std::max_element(x.begin() + o * H, x.begin() + (o + 1) * H)) << o;
  }
}

TEST(Engine, EveryFloatConvolutionGivesTheReferencesBits) {
  // The vectorized builds run the reference's own multiplies and adds, in its order: equal bits.
  namespace f32 = lowbit::engine::float32;
  std::mt19937 rng(13);
  int checked = 0;
  for (const auto& k : f32::all()) {
    if (!k.supported()) continue;
    for (int geometry = 0; geometry < 6; ++geometry) {
      lowbit::engine::binary::ConvShape s;
      int64_t group = 1;
      // 3x3 same over 28 columns (rows longer than a vector, the padded plane); strided along
      // rows, dilated, uneven padding (the row loops); grouped; a 1x1 over 3 columns (shorter than
      // a vector); strided down the columns only, dilated along rows (padded, row by row); an
      // infinite weight with padding (the row loops: 0 * inf would be NaN).
      const int64_t cs[] = {1, 4, 6, 5, 3, 2}, ms[] = {7, 3, 4, 2, 5, 3}, hs[] = {5, 9, 6, 2, 9, 4},
                    ws[] = {28, 17, 19, 3, 21, 6};
      s.c = cs[geometry], s.m = ms[geometry], s.h = hs[geometry], s.w = ws[geometry];
      s.kh = s.kw = geometry == 3 ? 1 : 3;
      if (geometry == 0 || geometry == 5) s.pad_h = s.pad_w = 1;
      if (geometry == 1) s.pad_h = 2, s.pad_w = 1, s.stride_w = 2, s.dil_h = 2;
      if (geometry == 2) group = 2, s.pad_w = 1;
      if (geometry == 4) s.pad_h = 1, s.pad_w = 2, s.stride_h = 2, s.dil_w = 2;
      s.oh = (s.h + 2 * s.pad_h - s.dil_h * (s.kh - 1) - 1) / s.stride_h + 1;
      s.ow = (s.w + 2 * s.pad_w - s.dil_w * (s.kw - 1) - 1) / s.stride_w + 1;
      std::vector<float> x(s.c * s.h * s.w), w(s.m * (s.c / group) * s.kh * s.kw), bias(s.m);
      for (auto* v : {&x, &w, &bias})
        for (auto& e : *v) e = std::uniform_real_distribution<float>(-1, 1)(rng);
      if (geometry == 5) w[4] = std::numeric_limits<float>::infinity(), x[0] = std::fabs(x[0]);
      std::vector<float> got(s.m * s.oh * s.ow), want(got.size());
      k.conv(x.data(), w.data(), bias.data(), s, group, {}, 0, s.oh, got.data());
      f32::all()[0].conv(x.data(), w.data(), bias.data(), s, group, {}, 0, s.oh, want.data());
      ASSERT_EQ(got, want) << k.name << " geometry " << geometry;
      // A clamp after the bias (a fused Relu or Clip): the clamped values, bit for bit.
      const f32::Clamp relu6{0.0f, 0.375f};
      std::vector<float> clamped(got.size());
      k.conv(x.data(), w.data(), bias.data(), s, group, relu6, 0, s.oh, clamped.data());
      for (size_t e = 0; e < got.size(); ++e)
        ASSERT_EQ(clamped[e], std::min(std::max(want[e], 0.0f), 0.375f)) << k.name << " " << e;
      // Ternary codes with a scale per output channel (1 for some): conv() of t * alpha, bit for
      // bit, also with an infinite input (x * 0 is NaN there, as in conv()).
      std::vector<int8_t> t(w.size());
      std::vector<float> alpha(s.m), tw(w.size());
      for (auto& v : t) v = static_cast<int8_t>(static_cast<int>(rng() % 3) - 1);
      for (int64_t o = 0; o < s.m; ++o) alpha[o] = o % 2 ? 1.0f : 0.37f * static_cast<float>(o + 1);
      for (size_t e = 0; e < w.size(); ++e)
        tw[e] = static_cast<float>(t[e]) * alpha[e / (w.size() / s.m)];
      for (int infinite = 0; infinite < 2; ++infinite) {
        std::vector<float> xi = x;
        if (infinite) xi[xi.size() / 2] = -std::numeric_limits<float>::infinity();
        std::vector<float> tern(got.size()), flt(got.size());
        k.ternary_conv(xi.data(), t.data(), alpha.data(), bias.data(), s, group, {}, 0, s.oh,
                       tern.data());
        f32::all()[0].conv(xi.data(), tw.data(), bias.data(), s, group, {}, 0, s.oh, flt.data());
        ASSERT_EQ(0, std::memcmp(tern.data(), flt.data(), tern.size() * sizeof(float)))
            << k.name << " geometry " << geometry << " infinite " << infinite;
        if (infinite) {
          EXPECT_TRUE(
              std::any_of(tern.begin(), tern.end(), [](float v) { return !std::isfinite(v); }));
        }
      }
      // And the reference is the definition, fused multiply-adds in its order.
      for (int64_t o = 0; o < s.m; ++o)
        for (int64_t r = 0; r < s.oh; ++r)
          for (int64_t q = 0; q < s.ow; ++q)
            ASSERT_EQ(want[(o * s.oh + r) * s.ow + q],
                      engine_test::conv_definition(x, w, bias[o], s, group, o, r, q))
                << geometry;
      ++checked;
    }
  }
  EXPECT_GE(checked, 6);
}

TEST(Engine, TernaryLayersKeepCodesOfAByteAndTheFloatKernelsBits) {
  // Quant (2 bits, signed, narrow) of float weights: codes -1, 0, 1 (times a scale per output
  // channel for the convolution); float activations.
  const int64_t C = 3, H = 5, M = 6, F = M * H * H, classes = 4;
  std::mt19937 rng(19);
  std::vector<float> w(M * C * 9), g(classes * F), x(2 * C * H * H), wscale(M);
  for (auto& v : w) v = std::uniform_real_distribution<float>(-1.5f, 1.5f)(rng);
  for (auto& v : g) v = std::uniform_real_distribution<float>(-1.5f, 1.5f)(rng);
  for (auto& v : x) v = std::uniform_real_distribution<float>(-1, 1)(rng);
  for (int64_t o = 0; o < M; ++o) wscale[o] = 0.25f * static_cast<float>(o + 1);
  Builder b({C, H, H});
  b.init("w", {M, C, 3, 3}, w);
  b.init("sw", {M, 1, 1, 1}, wscale);
  b.init("g", {classes, F}, g);
  b.init("one", {}, {1.0f});
  b.init("zero", {}, {0.0f});
  b.init("bits", {}, {2.0f});
  for (const auto& [in, scale, out] :
       std::vector<std::array<std::string, 3>>{{"w", "sw", "wq"}, {"g", "one", "gq"}}) {
    auto* q = b.node("Quant", {in, scale, "zero", "bits"}, out, "qonnx.custom_op.general");
    Builder::attr(q, "narrow", int64_t{1});
  }
  auto* conv = b.node("Conv", {"image", "wq"}, "c");
  Builder::attr(conv, "pads", std::vector<int64_t>{1, 1, 1, 1});
  b.node("Flatten", {"c"}, "f");
  auto* gemm = b.node("Gemm", {"f", "gq"}, "y");
  Builder::attr(gemm, "transB", int64_t{1});
  const Model model = b.load("y");
  namespace f32 = lowbit::engine::float32;
  ASSERT_EQ(model.plan().size(), 3u);
  EXPECT_EQ(model.plan()[0].kernel, "ternary_conv2d_f32_" + f32::best().name);
  EXPECT_EQ(model.plan()[2].kernel, "ternary_gemm_f32");
  EXPECT_LT(model.plan()[0].parameter_bytes, static_cast<int64_t>(w.size() * sizeof(float)) / 2);
  std::vector<float> y(2 * classes);
  model.run(x.data(), 2, y.data());
  // The definition: Quant's codes times the scales, the float kernel's sums and the dense layer's
  // dot products in order.
  auto code = [](float v, float s) {
    return std::min(1.0f, std::max(-1.0f, std::nearbyint(v / s)));
  };
  std::vector<float> wq(w.size()), gq(g.size()), zeros(M, 0.0f);
  for (size_t e = 0; e < w.size(); ++e)
    wq[e] = code(w[e], wscale[e / (C * 9)]) * wscale[e / (C * 9)];
  for (size_t e = 0; e < g.size(); ++e) gq[e] = code(g[e], 1.0f);
  lowbit::engine::binary::ConvShape s;
  s.c = C, s.h = s.w = H, s.m = M, s.kh = s.kw = 3, s.pad_h = s.pad_w = 1, s.oh = s.ow = H;
  for (int n = 0; n < 2; ++n) {
    std::vector<float> c(F);
    f32::all()[0].conv(x.data() + n * C * H * H, wq.data(), zeros.data(), s, 1, {}, 0, s.oh,
                       c.data());
    for (int64_t k = 0; k < classes; ++k) {
      float acc = 0;
      for (int64_t f = 0; f < F; ++f) acc = std::fma(c[f], gq[k * F + f], acc);
      EXPECT_EQ(y[n * classes + k], acc + 0.0f) << n << " " << k;
    }
  }
}

TEST(Engine, ConstantsAreFoldedWhileLoading) {
  // BipolarQuant over an initializer (QONNX's weight quantizers) becomes the Conv's weight.
  Builder b({1, 2, 2});
  b.init("w", {1, 1, 1, 1}, {-0.3f});
  b.init("s", {}, {2.0f});
  b.node("BipolarQuant", {"w", "s"}, "wq", "qonnx.custom_op.general");
  b.node("Conv", {"image", "wq"}, "c");
  b.node("Flatten", {"c"}, "y");
  const Model model = b.load("y");
  EXPECT_EQ(model.plan().size(), 2u);  // Conv and Flatten only
  const std::vector<float> x = {1, 2, 3, 4};
  std::vector<float> y(4);
  model.run(x.data(), 1, y.data());
  EXPECT_EQ(y, (std::vector<float>{-2, -4, -6, -8}));
}

// The exports' packed binary kernel: bits (1 for -1, least significant first) as bytes, decoded by
// Cast, Reshape, Div, Floor, Mul, Sub (broadcasting [bytes, 1] against [8]), Reshape, Slice (the
// last byte's padding bits) and Reshape to the kernel's shape.
void packed_kernel(Builder& b, const std::vector<float>& signs, std::vector<int64_t> shape,
                   const std::string& out) {
  const int64_t n = static_cast<int64_t>(signs.size()), bytes = (n + 7) / 8;
  std::vector<float> packed(bytes, 0.0f), low(8), high(8);
  for (int64_t i = 0; i < n; ++i)
    if (signs[i] < 0) packed[i / 8] += static_cast<float>(1 << (i % 8));
  for (int k = 0; k < 8; ++k) low[k] = static_cast<float>(1 << k), high[k] = 2.0f * low[k];
  b.init(out + ".bits", {bytes}, packed);
  b.init(out + ".column", {2}, {static_cast<float>(bytes), 1.0f});
  b.init(out + ".low", {8}, low);
  b.init(out + ".high", {8}, high);
  b.init(out + ".two", {}, {2.0f});
  b.init(out + ".one", {}, {1.0f});
  b.init(out + ".flat", {1}, {-1.0f});
  b.init(out + ".start", {1}, {0.0f});
  b.init(out + ".end", {1}, {static_cast<float>(n)});
  b.init(out + ".shape", {static_cast<int64_t>(shape.size())},
         std::vector<float>(shape.begin(), shape.end()));
  auto* cast = b.node("Cast", {out + ".bits"}, out + "/f");
  Builder::attr(cast, "to", int64_t{onnx::TensorProto::FLOAT});
  b.node("Reshape", {out + "/f", out + ".column"}, out + "/col");
  b.node("Div", {out + "/col", out + ".low"}, out + "/dl");
  b.node("Floor", {out + "/dl"}, out + "/fl");
  b.node("Div", {out + "/col", out + ".high"}, out + "/dh");
  b.node("Floor", {out + "/dh"}, out + "/fh");
  b.node("Mul", {out + "/fh", out + ".two"}, out + "/fh2");
  b.node("Sub", {out + "/fl", out + "/fh2"}, out + "/bit");
  b.node("Mul", {out + "/bit", out + ".two"}, out + "/bit2");
  b.node("Sub", {out + ".one", out + "/bit2"}, out + "/pm");
  b.node("Reshape", {out + "/pm", out + ".flat"}, out + "/flat");
  b.node("Slice", {out + "/flat", out + ".start", out + ".end"}, out + "/cut");
  b.node("Reshape", {out + "/cut", out + ".shape"}, out);
}

TEST(Engine, PackedBinaryKernelsFoldToTheirSigns) {
  // 135 weights: 17 bytes, the last with 1 bit of padding; 64 weights: 8 bytes, where [8, 1]
  // against [8] must broadcast to [8, 8], not pair the values.
  for (const auto& geometry : {std::array<int64_t, 3>{3, 5, 3}, std::array<int64_t, 3>{8, 8, 1}}) {
    const int64_t C = geometry[0], M = geometry[1], K = geometry[2], H = 4;
    std::mt19937 rng(17);
    std::vector<float> signs(M * C * K * K), x(C * H * H);
    for (auto& v : signs) v = rng() % 2 ? 1.0f : -1.0f;
    for (auto& v : x) v = std::uniform_real_distribution<float>(-1, 1)(rng);
    auto build = [&](bool packed) {
      Builder b({C, H, H});
      if (packed) {
        packed_kernel(b, signs, {M, C, K, K}, "w");
      } else {
        b.init("w", {M, C, K, K}, signs);
      }
      b.init("one", {}, {1.0f});
      b.node("BipolarQuant", {"image", "one"}, "xb", "qonnx.custom_op.general");
      auto* conv = b.node("Conv", {"xb", "w"}, "c");
      const int64_t p = K / 2;
      Builder::attr(conv, "pads", std::vector<int64_t>{p, p, p, p});
      b.node("Flatten", {"c"}, "y");
      return b.load("y");
    };
    const Model packed = build(true), plain = build(false);
    // Only the sign, the convolution and Flatten run: the decoding was folded while loading.
    ASSERT_EQ(packed.plan().size(), 3u);
    EXPECT_EQ(packed.plan()[1].kernel, "binary_conv2d_" + lowbit::engine::binary::best().name);
    std::vector<float> y1(M * H * H), y2(M * H * H);
    packed.run(x.data(), 1, y1.data());
    plain.run(x.data(), 1, y2.data());
    EXPECT_EQ(y1, y2) << C << " " << M << " " << K;
  }
}

TEST(Engine, ReshapeSliceAndBroadcastOfConstantsCheckTheirArguments) {
  auto error = [](const std::function<void(Builder&)>& body) {
    Builder b({1, 2, 2});
    body(b);
    b.node("Mul", {"image", "k"}, "y");
    return load_error(b.bytes("y"));
  };
  EXPECT_NE(error([](Builder& b) {
              b.init("a", {6}, {1, 2, 3, 4, 5, 6});
              b.init("s", {2}, {4, 2});
              b.node("Reshape", {"a", "s"}, "k");
            }).find("does not hold the data's 6 values"),
            std::string::npos);
  EXPECT_NE(error([](Builder& b) {
              b.init("a", {6}, {1, 2, 3, 4, 5, 6});
              b.init("s", {2}, {-1, -1});
              b.node("Reshape", {"a", "s"}, "k");
            }).find("more than one -1"),
            std::string::npos);
  // An activation's shape: the batch first, then one image's 4 values.
  EXPECT_NE(error([](Builder& b) {
              b.init("s", {4}, {1, 1, 2, 3});
              b.node("Reshape", {"image", "s"}, "k");
            }).find("shape [1, 2, 3] does not hold the data's 4 values"),
            std::string::npos);
  EXPECT_NE(error([](Builder& b) {
              b.init("s", {3}, {-2, 2, 2});
              b.node("Reshape", {"image", "s"}, "k");
            }).find("must start with its batch"),
            std::string::npos);
  EXPECT_NE(error([](Builder& b) {
              b.init("a", {6}, {1, 2, 3, 4, 5, 6});
              b.init("st", {1}, {0});
              b.init("en", {1}, {4});
              b.init("ax", {1}, {0});
              b.init("step", {1}, {2});
              b.node("Slice", {"a", "st", "en", "ax", "step"}, "k");
            }).find("steps of 1"),
            std::string::npos);
  EXPECT_NE(error([](Builder& b) {
              b.init("a", {3}, {1, 2, 3});
              b.init("c", {2}, {1, 2});
              b.node("Add", {"a", "c"}, "k");
            }).find("do not broadcast"),
            std::string::npos);
  {  // Broadcasting that would grow constants past the limit on all of them together.
    Builder b({1, 2, 2});
    std::vector<float> col(4096, 1.0f);
    b.init("p", {4096, 1}, col);
    b.init("q", {4096}, col);
    b.node("Mul", {"p", "q"}, "k");
    b.node("Mul", {"image", "one"}, "y");
    b.init("one", {}, {1.0f});
    lowbit::engine::Limits limits;
    limits.max_total_elements = 1 << 20;
    const std::string bytes = b.bytes("y");
    try {
      Model::from_buffer(bytes.data(), bytes.size(), limits);
      ADD_FAILURE() << "no error";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("too large"), std::string::npos) << e.what();
    }
  }
  // Slices clamp as ONNX says: negative starts count from the end, ends past it stop there.
  Builder b({2, 1, 2});
  b.init("a", {2, 3}, {1, 2, 3, 4, 5, 6});
  b.init("st", {1}, {-2});
  b.init("en", {1}, {100});
  b.init("ax", {1}, {1});
  b.node("Slice", {"a", "st", "en", "ax"}, "k2");  // [[2, 3], [5, 6]]
  b.init("rs", {3}, {0, 1, -1});                   // [2, 1, 2]
  b.node("Reshape", {"k2", "rs"}, "k3");
  b.init("sel", {2, 1, 1}, {1, 0});
  b.node("Mul", {"k3", "sel"}, "k4");  // [[2, 3], [0, 0]] as [2, 1, 2]
  b.init("rs2", {4}, {1, 2, 1, 2});
  b.node("Reshape", {"k4", "rs2"}, "k");
  b.node("Mul", {"image", "k"}, "m");
  b.node("Flatten", {"m"}, "y");
  const Model model = b.load("y");
  const std::vector<float> x = {10, 100, 1000, 10000};
  std::vector<float> y(4);
  model.run(x.data(), 1, y.data());
  EXPECT_EQ(y, (std::vector<float>{20, 300, 0, 0}));
}

TEST(Engine, InputsAndOutputsOfAnyRankAndTheirShapes) {
  std::mt19937 rng(3);
  auto uniform = [&](size_t n) {
    std::vector<float> v(n);
    for (auto& e : v) e = std::uniform_real_distribution<float>(-1, 1)(rng);
    return v;
  };
  {  // vectors in, vectors out: [batch, 5] -> Gemm -> [batch, 3]
    Builder b({5});
    const auto w = uniform(15), bias = uniform(3), x = uniform(10);
    b.init("w", {3, 5}, w);
    b.init("bias", {3}, bias);
    Builder::attr(b.node("Gemm", {"image", "w", "bias"}, "y"), "transB", int64_t{1});
    const Model m = b.load("y");
    EXPECT_EQ(m.input_shape(), (std::vector<int64_t>{5}));
    EXPECT_EQ(m.output_shape(), (std::vector<int64_t>{3}));
    EXPECT_EQ(m.input_size(), 5);
    std::vector<float> y(6);
    m.run(x.data(), 2, y.data());
    for (int n = 0; n < 2; ++n)
      for (int o = 0; o < 3; ++o) {
        float acc = 0;
        for (int i = 0; i < 5; ++i) acc = std::fma(x[n * 5 + i], w[o * 5 + i], acc);
        EXPECT_EQ(y[n * 3 + o], acc + bias[o]);
      }
  }
  {  // images in, images out: [batch, 2, 4, 4] -> Conv 3x3, pads 1 -> Relu -> [batch, 3, 4, 4]
    Builder b({2, 4, 4});
    const auto w = uniform(3 * 2 * 9), x = uniform(2 * 32);
    b.init("w", {3, 2, 3, 3}, w);
    Builder::attr(b.node("Conv", {"image", "w"}, "c"), "pads", std::vector<int64_t>{1, 1, 1, 1});
    b.node("Relu", {"c"}, "y");
    const std::string bytes = b.bytes("y");
    const Model m = Model::from_buffer(bytes.data(), bytes.size());
    EXPECT_EQ(m.output_shape(), (std::vector<int64_t>{3, 4, 4}));
    EXPECT_EQ(m.output_size(), 48);
    std::vector<float> y(96), profiled(96);
    m.run(x.data(), 2, y.data(), 2);
    for (int n = 0; n < 2; ++n)
      for (int o = 0; o < 3; ++o)
        for (int r = 0; r < 4; ++r)
          for (int q = 0; q < 4; ++q) {
            double acc = 0;
            for (int c = 0; c < 2; ++c)
              for (int i = 0; i < 3; ++i)
                for (int j = 0; j < 3; ++j) {
                  const int yy = r - 1 + i, xx = q - 1 + j;
                  if (yy >= 0 && yy < 4 && xx >= 0 && xx < 4)
                    acc += double{x[((n * 2 + c) * 4 + yy) * 4 + xx]} *
                           w[((o * 2 + c) * 3 + i) * 3 + j];
                }
            EXPECT_NEAR(y[((n * 3 + o) * 4 + r) * 4 + q], std::max(acc, 0.0), 1e-5);
          }
    // The profile: one time per planned step, the same outputs as run().
    std::vector<double> seconds;
    m.run_profiled(x.data(), 2, profiled.data(), seconds);
    EXPECT_EQ(profiled, y);
    ASSERT_EQ(seconds.size(), m.plan().size());
    for (double t : seconds) EXPECT_GE(t, 0.0);
    // The C API gives both shapes.
    char error[256];
    lowbit_model* c = lowbit_model_from_buffer(bytes.data(), bytes.size(), error, sizeof error);
    ASSERT_NE(c, nullptr) << error;
    int64_t dims[4] = {0, 0, 0, 0};
    EXPECT_EQ(lowbit_model_output_dims(c, nullptr, 0), 3u);
    EXPECT_EQ(lowbit_model_output_dims(c, dims, 2), 3u);
    EXPECT_EQ(dims[0], 3);
    EXPECT_EQ(dims[1], 4);
    EXPECT_EQ(dims[2], 0);  // beyond the capacity: untouched
    EXPECT_EQ(lowbit_model_input_dims(c, dims, 4), 3u);
    EXPECT_EQ(std::vector<int64_t>(dims, dims + 3), (std::vector<int64_t>{2, 4, 4}));
    EXPECT_EQ(lowbit_model_input_size(c), 32);
    lowbit_model_destroy(c);
  }
  {  // a 9-D input, and an output that does not depend on the input
    Builder b({1, 1, 1, 1, 1, 1, 1, 2});
    b.node("Relu", {"image"}, "y");
    EXPECT_NE(load_error(b.bytes("y")).find("has 9 dimensions; 1 to 8"), std::string::npos);
    Builder c({2});
    c.init("k", {2}, {1, 2});
    c.node("Relu", {"k"}, "y");
    const std::string constant = load_error(c.bytes("y"));
    EXPECT_NE(constant.find("graph output 'y': a constant"), std::string::npos) << constant;
  }
}

TEST(Engine, DimensionsTheFileLeavesUnknownComeFromTheRequestedShape) {
  onnx::ModelProto m;
  m.set_ir_version(7);
  m.add_opset_import()->set_version(13);
  auto* g = m.mutable_graph();
  auto* in = g->add_input();
  in->set_name("x");
  auto* t = in->mutable_type()->mutable_tensor_type();
  t->set_elem_type(onnx::TensorProto::FLOAT);
  t->mutable_shape()->add_dim()->set_dim_param("batch");
  t->mutable_shape()->add_dim()->set_dim_value(2);
  t->mutable_shape()->add_dim()->set_dim_param("h");
  auto* n = g->add_node();
  n->set_op_type("Relu");
  n->add_input("x");
  n->add_output("y");
  g->add_output()->set_name("y");
  const std::string bytes = m.SerializeAsString();
  EXPECT_NE(load_error(bytes).find("input 'x': dimension 2 is not fixed by the file; give the "
                                   "input's shape, 2 dimensions after the batch"),
            std::string::npos);
  const Model a = Model::from_buffer(bytes.data(), bytes.size(), {}, "m", {2, 5});
  EXPECT_EQ(a.input_shape(), (std::vector<int64_t>{2, 5}));
  EXPECT_EQ(a.output_shape(), (std::vector<int64_t>{2, 5}));
  const std::vector<float> x{-1, 2, -3, 4, 5, -6, 7, 8, 9, -10};
  std::vector<float> y(10);
  a.run(x.data(), 1, y.data());
  EXPECT_EQ(y, (std::vector<float>{0, 2, 0, 4, 5, 0, 7, 8, 9, 0}));
  // The file's fixed dimension stands; the caller sees it in input_shape().
  EXPECT_EQ(Model::from_buffer(bytes.data(), bytes.size(), {}, "m", {3, 4}).input_shape(),
            (std::vector<int64_t>{2, 4}));
}

TEST(Engine, OneImageOnSeveralThreadsGivesTheSameBits) {
  // Float convolutions (one group, and grouped) and a dense layer large enough to be split across
  // threads (each over 2^17 multiply-adds; the convolutions by output rows up to 5 threads, by
  // groups or output channels at 16): every thread count gives the one-thread bits.
  std::mt19937 rng(23);
  auto uniform = [&](size_t n) {
    std::vector<float> v(n);
    for (auto& e : v) e = std::uniform_real_distribution<float>(-1, 1)(rng);
    return v;
  };
  Builder b({4, 20, 18});
  b.init("w1", {12, 4, 3, 3}, uniform(12 * 4 * 9));
  b.init("b1", {12}, uniform(12));
  Builder::attr(b.node("Conv", {"image", "w1", "b1"}, "c1"), "pads",
                std::vector<int64_t>{1, 1, 1, 1});
  b.init("w2", {24, 2, 3, 3}, uniform(24 * 2 * 9));
  auto* grouped = b.node("Conv", {"c1", "w2"}, "c2");
  Builder::attr(grouped, "group", int64_t{6});
  Builder::attr(grouped, "pads", std::vector<int64_t>{1, 1, 1, 1});
  b.node("Relu", {"c2"}, "r");
  b.node("Flatten", {"r"}, "f");
  const int64_t k = 24 * 20 * 18;
  b.init("w3", {37, k}, uniform(37 * k));
  Builder::attr(b.node("Gemm", {"f", "w3"}, "y"), "transB", int64_t{1});
  const Model m = b.load("y");
  const auto x = uniform(4 * 20 * 18);
  std::vector<float> one(37), many(37);
  m.run(x.data(), 1, one.data(), 1);
  for (int threads : {2, 3, 5, 16}) {
    m.run(x.data(), 1, many.data(), threads);
    EXPECT_EQ(std::memcmp(one.data(), many.data(), sizeof(float) * 37), 0) << threads;
  }
  // A global average pool of 2^17 values per image, split by channels: the same bits as well.
  Builder g({8, 128, 128});
  g.node("GlobalAveragePool", {"image"}, "p");
  g.node("Flatten", {"p"}, "y");
  const Model pool = g.load("y");
  const auto big = uniform(8 * 128 * 128);
  std::vector<float> p1(8), p3(8);
  pool.run(big.data(), 1, p1.data(), 1);
  pool.run(big.data(), 1, p3.data(), 3);
  EXPECT_EQ(std::memcmp(p1.data(), p3.data(), sizeof(float) * 8), 0);
  // Two images on three threads (fewer images than threads): the same bits too.
  std::vector<float> two_x(x), two_one(74), two_many(74);
  two_x.insert(two_x.end(), x.rbegin(), x.rend());
  m.run(two_x.data(), 2, two_one.data(), 1);
  m.run(two_x.data(), 2, two_many.data(), 3);
  EXPECT_EQ(two_one, two_many);
}

}  // namespace
