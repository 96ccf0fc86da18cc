// The engine's 8-bit layers: every kernel and requantization against the definition, quantized
// graphs exactly, and chained power-of-2 layers passing codes against the same graph unfused.
#include "engine_test_util.h"
#include "lowbit/engine/kernels/elementwise.h"
#include "lowbit/engine/kernels/pool.h"

namespace {

using namespace engine_test;  // Builder, load_error, Model

// ---- 8-bit kernels

namespace lowbit_int8_tests {

using lowbit::engine::int8::ConvShape;

TEST(EngineInt8, EveryKernelEqualsTheDefinitionAroundTiles) {
  std::mt19937 rng(5);
  int checked = 0;
  for (const auto& k : lowbit::engine::int8::all()) {
    if (!k.supported()) continue;
    for (int64_t c : {1, 3, 4, 5, 17}) {
      for (int64_t m : {1, 8, 15, 16, 17, 33}) {
        for (int geometry = 0; geometry < 4; ++geometry) {
          ConvShape s;
          s.c = c, s.m = m;
          // 1x1 dense; 3x3 same padding over 13 pixels (a 12-pixel tile and one more); strided and
          // dilated with uneven padding; 2x1 over 5x7 (tiles of 4).
          const int64_t hs[] = {1, 3, 5, 5}, ws[] = {1, 13, 6, 7}, khs[] = {1, 3, 3, 2},
                        kws[] = {1, 3, 2, 1};
          s.h = hs[geometry], s.w = ws[geometry], s.kh = khs[geometry], s.kw = kws[geometry];
          if (geometry == 1) s.pad_h = s.pad_w = 1;
          if (geometry == 2) s.pad_h = 2, s.pad_w = 1, s.stride_h = 2, s.dil_w = 2, s.stride_w = 2;
          s.oh = (s.h + 2 * s.pad_h - s.dil_h * (s.kh - 1) - 1) / s.stride_h + 1;
          s.ow = (s.w + 2 * s.pad_w - s.dil_w * (s.kw - 1) - 1) / s.stride_w + 1;
          const int zero = geometry == 3 ? 0 : static_cast<int>(rng() % 256);
          std::vector<int> x(c * s.h * s.w), w(m * c * s.kh * s.kw);
          for (auto& v : x) v = static_cast<int>(rng() % 256);
          for (auto& v : w) v = static_cast<int>(rng() % 256) - 128;
          x[0] = 255, w[0] = -128;                          // the extreme product
          const float scale = geometry % 2 ? 0.25f : 0.1f;  // power of 2 or not
          std::vector<float> xf(x.size());
          for (size_t e = 0; e < x.size(); ++e) xf[e] = static_cast<float>(x[e] - zero) * scale;
          const int64_t cp = lowbit::engine::int8::padded_channels(c), taps = s.kh * s.kw;
          std::vector<int8_t> codes(m * taps * cp, 0);
          for (int64_t o = 0; o < m; ++o)
            for (int64_t ch = 0; ch < c; ++ch)
              for (int64_t t = 0; t < taps; ++t)
                codes[(o * taps + t) * cp + ch] = static_cast<int8_t>(w[(o * c + ch) * taps + t]);
          std::vector<uint8_t> in(cp * lowbit::engine::int8::padded_rows(s) *
                                  lowbit::engine::int8::padded_cols(s));
          lowbit::engine::int8::pack_input(xf.data(), scale, zero, s, in.data());
          const auto packed = k.pack(codes, m, s);
          std::vector<int32_t> raw(m * s.oh * s.ow);
          k.conv(in.data(), packed.data(), m, s, raw.data());
          const auto want = reference_sums(x, w, zero, s);
          ASSERT_EQ(std::vector<int64_t>(raw.begin(), raw.end()), want)
              << k.name << " c=" << c << " m=" << m << " geometry=" << geometry;
          ++checked;
        }
      }
    }
  }
  EXPECT_GE(checked, 120);
}

TEST(EngineInt8, EveryKernelsRequantizationAndCodePackingEqualTheirDefinitions) {
  std::mt19937 rng(12);
  int checked = 0;
  for (const auto& k : lowbit::engine::int8::all()) {
    if (!k.supported()) continue;
    for (int64_t m : {1, 5, 16, 19}) {
      for (int64_t plane : {1, 7, 64, 67}) {
        for (int64_t zw : {0, -3}) {
          // Sums over the whole int32 range the kernels produce, the row of ones last.
          std::vector<int32_t> raw((m + 1) * plane);
          for (auto& v : raw) v = static_cast<int32_t>(rng()) / 2;
          raw[0] = std::numeric_limits<int32_t>::min() / 2 + 1, raw[1 % raw.size()] = -7;
          std::vector<int64_t> add(m);
          std::vector<int32_t> shift(m), lo(m), hi(m);
          for (int64_t o = 0; o < m; ++o) {
            shift[o] = static_cast<int32_t>(rng() % 31);
            add[o] = static_cast<int64_t>(rng() % 2000001) - 1000000 +
                     (shift[o] > 0 ? int64_t{1} << (shift[o] - 1) : 0);
            lo[o] = static_cast<int32_t>(rng() % 128),
            hi[o] = lo[o] + static_cast<int32_t>(rng() % 128);
          }
          std::vector<uint8_t> out(m * plane);
          k.requantize(raw.data(), m, plane, add.data(), zw, shift.data(), lo.data(), hi.data(),
                       out.data());
          for (int64_t o = 0; o < m; ++o)
            for (int64_t p = 0; p < plane; ++p) {
              // floor((sum + add) / 2^shift): the spec's arithmetic shift, written as a division.
              const int64_t n = int64_t{raw[o * plane + p]} - zw * raw[m * plane + p] + add[o];
              const int64_t d = int64_t{1} << shift[o];
              int64_t v = n / d - ((n % d != 0 && n < 0) ? 1 : 0);
              v = std::min<int64_t>(std::max<int64_t>(v, lo[o]), hi[o]);
              ASSERT_EQ(out[o * plane + p], v) << k.name << " m=" << m << " plane=" << plane;
            }
          ++checked;
        }
      }
    }
    // Codes stored as bytes [c, h, w] give pack_input's layout of the same values.
    for (int64_t c : {1, 3, 4, 9}) {
      ConvShape s;
      s.c = c, s.m = 1, s.h = 5, s.w = 6, s.kh = s.kw = 3, s.pad_h = 1, s.pad_w = 2;
      s.oh = s.h + 2 - 2, s.ow = s.w + 4 - 2;
      const int zero = static_cast<int>(rng() % 256);
      std::vector<uint8_t> codes(c * s.h * s.w);
      std::vector<float> xf(codes.size());
      for (size_t e = 0; e < codes.size(); ++e) {
        codes[e] = static_cast<uint8_t>(rng() % 256);
        xf[e] = static_cast<float>(codes[e] - zero) * 0.5f;
      }
      const size_t bytes = lowbit::engine::int8::padded_channels(c) *
                           lowbit::engine::int8::padded_rows(s) *
                           lowbit::engine::int8::padded_cols(s);
      std::vector<uint8_t> a(bytes, 1), b(bytes, 2);
      k.pack_codes(codes.data(), zero, s, a.data());
      lowbit::engine::int8::pack_input(xf.data(), 0.5f, zero, s, b.data());
      ASSERT_EQ(a, b) << k.name << " c=" << c;
      ++checked;
    }
  }
  EXPECT_GE(checked, 64);
}

// Quant as QONNX defines it, HALF_UP or ROUND (ties to even here, as the values tested tie).
float quant(float v, float scale, float zero, float lo, float hi, bool half_up) {
  float u = std::min(std::max(v / scale + zero, lo), hi);
  u = half_up ? std::floor(u + 0.5f) : std::nearbyint(u);
  return (u - zero) * scale;
}

// Quant(8-bit activations) -> Conv(8-bit weights, bias) -> Relu -> Quant -> Flatten ->
// Gemm(8-bit weights): both layers on the int8 kernels, equal to the definition: the exact integer
// sum, scaled, biased and rounded once to float.
void check_quantized_graph(float sx, float zx, float sw, float zw, bool per_channel,
                           bool requantized) {
  const int64_t C = 6, H = 5, W = 4, M = 19, classes = 3, F = M * H * W;
  std::mt19937 rng(9);
  auto uniform = [&](float lo, float hi) {
    return std::uniform_real_distribution<float>(lo, hi)(rng);
  };
  std::vector<float> w(M * C * 9), bias(M), g(classes * F), gb(classes), x(2 * C * H * W);
  for (auto& v : w) v = uniform(-1.2f, 1.2f) * sw * 100;
  for (auto& v : bias) v = uniform(-1, 1);
  for (auto& v : g) v = uniform(-1, 1) * 0.01f;
  for (auto& v : gb) v = uniform(-1, 1);
  for (auto& v : x) v = uniform(-5, 5) * sx * 40;
  std::vector<float> wscale(M, sw), gscale(classes, 0.0078125f);
  if (per_channel)
    for (int64_t o = 0; o < M; ++o) wscale[o] = sw * static_cast<float>(1 + o % 3);
  Builder b({C, H, W});
  b.init("sx", {}, {sx});
  b.init("zx", {}, {zx});
  b.init("bits", {}, {8});
  b.init("sw", per_channel ? std::vector<int64_t>{M, 1, 1, 1} : std::vector<int64_t>{},
         per_channel ? wscale : std::vector<float>{sw});
  b.init("zw", {}, {zw});
  b.init("zero", {}, {0});
  b.init("sg", {classes, 1}, gscale);
  b.init("w", {M, C, 3, 3}, w);
  b.init("b", {M}, bias);
  b.init("g", {classes, F}, g);
  b.init("gb", {classes}, gb);
  const char* qonnx = "qonnx.custom_op.general";
  auto quant_node = [&](std::vector<std::string> in, const std::string& out, bool is_signed,
                        bool narrow, const char* mode) {
    auto* n = b.node("Quant", in, out, qonnx);
    Builder::attr(n, "signed", int64_t{is_signed});
    Builder::attr(n, "narrow", int64_t{narrow});
    Builder::attr(n, "rounding_mode", std::string(mode));
  };
  quant_node({"image", "sx", "zx", "bits"}, "xq", false, false, "HALF_UP");
  quant_node({"w", "sw", "zw", "bits"}, "wq", true, true, "ROUND");
  auto* conv = b.node("Conv", {"xq", "wq", "b"}, "c");
  Builder::attr(conv, "pads", std::vector<int64_t>{1, 1, 1, 1});
  b.node("Relu", {"c"}, "r");
  quant_node({"r", "sx", "zx", "bits"}, "rq", false, false, "HALF_UP");
  b.node("Flatten", {"rq"}, "f");
  quant_node({"g", "sg", "zero", "bits"}, "gq", true, false, "ROUND");
  auto* gemm = b.node("Gemm", {"f", "gq", "gb"}, "y");
  Builder::attr(gemm, "transB", int64_t{1});
  const Model model = b.load("y");
  const std::string best = lowbit::engine::int8::best().name;
  const std::string ew = lowbit::engine::elementwise::best().name;
  std::vector<std::string> kernels;
  for (const auto& p : model.plan()) kernels.push_back(p.kernel);
  if (requantized) {
    // Power-of-2 scales: Relu and Quant fused into the convolution, which writes the codes that
    // Flatten and the dense layer read.
    EXPECT_EQ(kernels, (std::vector<std::string>{"quant_scalar_f32_" + ew,
                                                 "int8_conv2d_" + best + "+requantize",
                                                 "copy", "int8_gemm_" + best}));
  } else {
    ASSERT_EQ(kernels.size(), 6u);
    EXPECT_EQ(kernels[1], "int8_conv2d_" + best);
    EXPECT_EQ(kernels[5], "int8_gemm_" + best);
  }
  // A byte per weight, channels padded to the kernel's blocks (6 -> 8 inputs, 19 -> 32 outputs).
  EXPECT_LT(model.plan()[1].parameter_bytes, static_cast<int64_t>(w.size() * sizeof(float)));
  EXPECT_GE(model.plan()[1].parameter_bytes, static_cast<int64_t>(w.size()));
  std::vector<float> y(2 * classes);
  model.run(x.data(), 2, y.data());
  for (int n = 0; n < 2; ++n) {
    std::vector<float> xq(C * H * W);
    for (size_t e = 0; e < xq.size(); ++e)
      xq[e] = quant(x[n * C * H * W + e], sx, zx, 0, 255, true);
    std::vector<float> rq(F);
    for (int64_t o = 0; o < M; ++o)
      for (int64_t r = 0; r < H; ++r)
        for (int64_t q = 0; q < W; ++q) {
          int64_t sum = 0;  // of (x code - zx) * (w code - zw)
          for (int64_t c = 0; c < C; ++c)
            for (int64_t i = 0; i < 3; ++i)
              for (int64_t j = 0; j < 3; ++j) {
                const int64_t yy = r + i - 1, xx = q + j - 1;
                if (yy < 0 || yy >= H || xx < 0 || xx >= W) continue;
                const float wv =
                    quant(w[((o * C + c) * 3 + i) * 3 + j], wscale[o], zw, -127, 127, false);
                sum += static_cast<int64_t>(std::nearbyint(xq[(c * H + yy) * W + xx] / sx)) *
                       static_cast<int64_t>(std::nearbyint(wv / wscale[o]));
              }
          const float v = static_cast<float>(static_cast<double>(sum) * sx * wscale[o] + bias[o]);
          rq[(o * H + r) * W + q] = quant(std::max(v, 0.0f), sx, zx, 0, 255, true);
        }
    for (int64_t k = 0; k < classes; ++k) {
      int64_t sum = 0;
      for (int64_t f = 0; f < F; ++f)
        sum += static_cast<int64_t>(std::nearbyint(rq[f] / sx)) *
               static_cast<int64_t>(
                   std::nearbyint(quant(g[k * F + f], gscale[k], 0, -128, 127, false) / gscale[k]));
      const float want = static_cast<float>(static_cast<double>(sum) * sx * gscale[k] + gb[k]);
      EXPECT_EQ(y[n * classes + k], want) << n << " " << k;
    }
  }
}

TEST(EngineInt8, PowerOfTwoGraphRunsOnTheInt8KernelsExactly) {
  check_quantized_graph(0.0625f, 128, 0.00390625f, 0, false, true);  // the po2 recipe's encoding
}

TEST(EngineInt8, AffineGraphWithZeroPointsAndChannelScalesRunsExactly) {
  // Weight codes offset (the row of ones); scales whose codes do not step by powers of 2 keep the
  // float Quant.
  check_quantized_graph(0.037f, 3, 0.0021f, -28, true, false);
}

// Power-of-2 8-bit layers chained: Quant -> Conv -> Relu -> Quant -> MaxPool -> Conv -> Mul, Add
// (per channel) -> signed Quant -> Conv 1x1 -> Relu -> Quant -> Flatten -> Gemm -> Quant ->
// Identity, and as the last layer, optionally, a convolution whose weights are off their grid
// (float). With `fused`, every layer's Relu / Mul / Add / Quant is fused into it (its codes go to
// the next layer, the pool and Flatten as bytes); without, extra readers of the chains' values keep
// every step.
Model chained_int8_model(bool fused, bool float_last, std::vector<std::string>* kernels,
                         int64_t H = 8) {
  const int64_t C = 5, M1 = 17, M2 = 6, M3 = 9, classes = 4, P = H / 2;
  std::mt19937 rng(31);
  auto codes = [&](size_t n, int lo, int hi, float scale) {
    std::vector<float> v(n);
    for (auto& e : v) e = static_cast<float>(lo + static_cast<int>(rng() % (hi - lo + 1))) * scale;
    return v;
  };
  const float sw = 0.0078125f, sb = 0.0009765625f;
  Builder b({C, H, H});
  b.init("sx", {}, {0.0625f});
  b.init("sy", {}, {0.125f});
  b.init("z", {}, {128});
  b.init("zero", {}, {0});
  b.init("bits", {}, {8});
  b.init("bits16", {}, {16});
  b.init("sw", {}, {sw});
  b.init("sb", {}, {sb});
  b.init("w1", {M1, C, 3, 3}, codes(M1 * C * 9, -128, 127, sw));
  b.init("b1", {M1}, codes(M1, -3000, 3000, sb));
  b.init("w2", {M2, M1, 3, 3}, codes(M2 * M1 * 9, -60, 60, sw));
  b.init("b2", {M2}, codes(M2, -3000, 3000, sb));
  b.init("a2", {1, M2, 1, 1}, {2.0f, 0.5f, 1.0f, 4.0f, 0.25f, 1.0f});
  b.init("k2", {1, M2, 1, 1}, {0.5f, -1.0f, 0.0f, 0.25f, 3.0f, -0.125f});
  b.init("w3", {M3, M2, 1, 1}, codes(M3 * M2, -128, 127, sw));
  b.init("b3", {M3}, codes(M3, -3000, 3000, sb));
  b.init("g", {classes, M3 * P * P}, codes(classes * M3 * P * P, -128, 127, sw));
  b.init("gb", {classes}, codes(classes, -3000, 3000, sb));
  b.init("wf", {classes, M2, P, P}, codes(classes * M2 * P * P, -100, 100, sw * 1.25f));
  const char* qonnx = "qonnx.custom_op.general";
  auto quant = [&](std::vector<std::string> in, const std::string& out, bool is_signed,
                   const char* mode) {
    auto* n = b.node("Quant", in, out, qonnx);
    Builder::attr(n, "signed", int64_t{is_signed});
    Builder::attr(n, "narrow", int64_t{0});
    Builder::attr(n, "rounding_mode", std::string(mode));
  };
  auto conv = [&](std::vector<std::string> in, const std::string& out, int64_t pad) {
    auto* n = b.node("Conv", in, out);
    Builder::attr(n, "pads", std::vector<int64_t>{pad, pad, pad, pad});
  };
  quant({"image", "sx", "z", "bits"}, "x0", false, "HALF_UP");
  for (const char* w : {"w1", "w2", "w3", "g"})
    quant({w, "sw", "zero", "bits"}, std::string(w) + "q", true, "ROUND");
  for (const char* v : {"b1", "b2", "b3", "gb"})
    quant({v, "sb", "zero", "bits16"}, std::string(v) + "q", true, "ROUND");
  conv({"x0", "w1q", "b1q"}, "c1", 1);
  b.node("Relu", {"c1"}, "r1");
  quant({"r1", "sx", "z", "bits"}, "x1", false, "HALF_UP");
  auto* pool = b.node("MaxPool", {"x1"}, "p1");
  Builder::attr(pool, "kernel_shape", std::vector<int64_t>{2, 2});
  Builder::attr(pool, "strides", std::vector<int64_t>{2, 2});
  conv({"p1", "w2q", "b2q"}, "c2", 1);
  b.node("Mul", {"c2", "a2"}, "m2");
  b.node("Add", {"m2", "k2"}, "s2");
  // Signed codes (FLOOR: HALF_UP rounds negative ties away from zero, ROUND ties to even, which no
  // shift computes: such a Quant stays a float step).
  quant({"s2", "sy", "zero", "bits"}, "x2", true, "FLOOR");
  std::string last;
  if (float_last) {
    conv({"x2", "wf"}, "cf", 0);
    b.node("Flatten", {"cf"}, "y");
  } else {
    conv({"x2", "w3q", "b3q"}, "c3", 0);
    b.node("Relu", {"c3"}, "r3");
    quant({"r3", "sx", "z", "bits"}, "x3", false, "HALF_UP");
    b.node("Flatten", {"x3"}, "f");
    auto* gemm = b.node("Gemm", {"f", "gq", "gbq"}, "l");
    Builder::attr(gemm, "transB", int64_t{1});
    quant({"l", "sy", "z", "bits"}, "lq", false, "HALF_UP");
    b.node("Identity", {"lq"}, "y");
  }
  if (!fused) {
    std::vector<std::string> read = {"c1", "r1", "c2", "m2", "s2"};
    if (!float_last) read.insert(read.end(), {"c3", "r3", "l"});
    for (const auto& v : read) b.node("Relu", {v}, v + "_reader");
  }
  Model model = b.load("y");
  for (const auto& p : model.plan()) kernels->push_back(p.kernel);
  return model;
}

TEST(EngineInt8, ChainedPowerOfTwoLayersPassCodesAndEqualTheFloatGraph) {
  const std::string best = lowbit::engine::int8::best().name;
  const std::string ew = lowbit::engine::elementwise::best().name;
  for (bool float_last : {false, true}) {
    std::vector<std::string> fused_kernels, plain_kernels;
    const Model fused = chained_int8_model(true, float_last, &fused_kernels);
    const Model plain = chained_int8_model(false, float_last, &plain_kernels);
    const std::string conv = "int8_conv2d_" + best + "+requantize";
    std::vector<std::string> expected = {
        "quant_scalar_f32_" + ew, conv, "maxpool_codes_" + lowbit::engine::pool::best().name, conv};
    if (float_last) {
      expected.insert(expected.end(),
                      {"decode_codes+conv2d_f32_" + lowbit::engine::float32::best().name, "copy"});
    } else {
      expected.insert(expected.end(),
                      {conv, "copy", "int8_gemm_" + best + "+requantize", "decode_codes",
                       "copy_f32_" + lowbit::engine::elementwise::best().name});
    }
    EXPECT_EQ(fused_kernels, expected);
    EXPECT_EQ(std::count(plain_kernels.begin(), plain_kernels.end(), "quant_scalar_f32_" + ew),
              float_last ? 3 : 5);
    std::mt19937 rng(6);
    const int64_t n = 11;  // more than one chunk of images
    std::vector<float> x(n * 5 * 64);
    for (auto& v : x) v = std::uniform_real_distribution<float>(-9, 9)(rng);
    const int64_t classes = 4;
    std::vector<float> y1(n * classes), y2(n * classes);
    fused.run(x.data(), n, y1.data(), 2);
    plain.run(x.data(), n, y2.data(), 1);
    EXPECT_EQ(y1, y2) << "float_last=" << float_last;
    // Not a constant output: the images give different logits.
    EXPECT_NE(std::vector<float>(y1.begin(), y1.begin() + classes),
              std::vector<float>(y1.begin() + classes, y1.begin() + 2 * classes));
  }
}

TEST(EngineInt8, OneImageOnSeveralThreadsGivesTheSameBits) {
  // 8-bit layers split across threads by output rows (24 x 24 and 12 x 12 layers, large enough to
  // split): fused requantizing layers, and unfused ones dequantizing to floats; one image on 1, 2,
  // 3 and 7 threads, the same bits.
  for (bool fused : {true, false}) {
    std::vector<std::string> kernels;
    const Model model = chained_int8_model(fused, false, &kernels, 24);
    std::mt19937 rng(8);
    std::vector<float> x(5 * 24 * 24);
    for (auto& v : x) v = std::uniform_real_distribution<float>(-9, 9)(rng);
    std::vector<float> one(4), many(4);
    model.run(x.data(), 1, one.data(), 1);
    for (int threads : {2, 3, 7}) {
      model.run(x.data(), 1, many.data(), threads);
      EXPECT_EQ(std::memcmp(one.data(), many.data(), sizeof(float) * 4), 0)
          << "fused " << fused << " threads " << threads;
    }
  }
}

TEST(EngineInt8, NotANumberReachingAnInt8LayerIsReadAsZero) {
  // Quant passes NaN on; the 8-bit kernels have no code for it (found by the fuzzer: the
  // conversion to int was undefined behaviour).
  Builder b({2, 1, 3});
  b.init("s", {}, {0.5f});
  b.init("z", {}, {128});
  b.init("bits", {}, {8});
  b.init("w", {1, 2, 1, 1}, {1.0f, -2.0f});
  b.init("one", {}, {1.0f});
  b.init("zero", {}, {0.0f});
  auto* q = b.node("Quant", {"image", "s", "z", "bits"}, "xq", "qonnx.custom_op.general");
  Builder::attr(q, "signed", int64_t{0});
  b.node("Quant", {"w", "one", "zero", "bits"}, "wq", "qonnx.custom_op.general");
  b.node("Conv", {"xq", "wq"}, "c");
  b.node("Flatten", {"c"}, "y");
  const Model model = b.load("y");
  ASSERT_EQ(model.plan()[1].kernel, "int8_conv2d_" + lowbit::engine::int8::best().name);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> x = {nan, 1.0f, 2.0f, 3.0f, nan, -1.5f};  // channel 0 then channel 1
  std::vector<float> y(3);
  model.run(x.data(), 1, y.data());
  EXPECT_EQ(y, (std::vector<float>{0.0f - 2 * 3.0f, 1.0f - 0.0f, 2.0f + 3.0f}));
}

TEST(EngineInt8, WeightsOffTheirGridKeepTheFloatKernel) {
  // A weight that Quant did not produce (changed after it) is not trusted to the 8-bit kernel.
  Builder b({2, 3, 3});
  b.init("s", {}, {0.5f});
  b.init("z", {}, {128});
  b.init("bits", {}, {8});
  b.init("w", {1, 2, 1, 1}, {1.0f, -2.0f});
  b.init("half", {}, {1.25f});
  auto* q = b.node("Quant", {"image", "s", "z", "bits"}, "xq", "qonnx.custom_op.general");
  Builder::attr(q, "signed", int64_t{0});
  b.node("Mul", {"w", "half"}, "w2");
  b.node("Conv", {"xq", "w2"}, "c");
  b.node("Flatten", {"c"}, "y");
  const Model model = b.load("y");
  EXPECT_EQ(model.plan()[1].kernel, "conv2d_f32_" + lowbit::engine::float32::best().name);
}

}  // namespace lowbit_int8_tests

}  // namespace
