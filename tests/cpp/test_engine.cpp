// The inference engine without LibTorch: node semantics against loops and values written out here
// (QONNX's rounding table, a direct convolution), the C API, and hostile model files.
#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "lowbit/engine.h"
#include "lowbit/engine/kernels/binary.h"
#include "lowbit/engine/kernels/float32.h"
#include "lowbit/engine/kernels/int8.h"
#include "lowbit/engine/kernels/planes.h"
#include "lowbit/engine_c.h"
#include "lowbit/io/checksum.h"

namespace {

using lowbit::engine::Model;

// A small ONNX graph builder for the tests.
struct Builder {
  onnx::ModelProto m;
  onnx::GraphProto* g;
  explicit Builder(std::vector<int64_t> chw) : g(m.mutable_graph()) {
    m.set_ir_version(7);
    auto* op = m.add_opset_import();
    op->set_version(13);
    auto* in = g->add_input();
    in->set_name("image");
    auto* t = in->mutable_type()->mutable_tensor_type();
    t->set_elem_type(onnx::TensorProto::FLOAT);
    t->mutable_shape()->add_dim()->set_dim_param("batch");
    for (int64_t d : chw) t->mutable_shape()->add_dim()->set_dim_value(d);
  }
  std::string init(const std::string& name, std::vector<int64_t> dims, std::vector<float> v) {
    auto* t = g->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (int64_t d : dims) t->add_dims(d);
    t->set_raw_data(std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4));
    return name;
  }
  onnx::NodeProto* node(const std::string& op, std::vector<std::string> in, const std::string& out,
                        const std::string& domain = "") {
    auto* n = g->add_node();
    n->set_op_type(op);
    n->set_name(out + "_node");
    if (!domain.empty()) n->set_domain(domain);
    for (auto& i : in) n->add_input(i);
    n->add_output(out);
    return n;
  }
  static void attr(onnx::NodeProto* n, const std::string& k, int64_t v) {
    auto* a = n->add_attribute();
    a->set_name(k);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(v);
  }
  static void attr(onnx::NodeProto* n, const std::string& k, const std::string& v) {
    auto* a = n->add_attribute();
    a->set_name(k);
    a->set_type(onnx::AttributeProto::STRING);
    a->set_s(v);
  }
  static void attr(onnx::NodeProto* n, const std::string& k, std::vector<int64_t> v) {
    auto* a = n->add_attribute();
    a->set_name(k);
    a->set_type(onnx::AttributeProto::INTS);
    for (int64_t x : v) a->add_ints(x);
  }
  std::string bytes(const std::string& output) {
    g->add_output()->set_name(output);
    return m.SerializeAsString();
  }
  Model load(const std::string& output) {
    const std::string b = bytes(output);
    return Model::from_buffer(b.data(), b.size());
  }
};

std::string load_error(const std::string& bytes) {
  try {
    Model::from_buffer(bytes.data(), bytes.size());
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "no error";
}

// QONNX's documented rounding table (docs/qonnx-custom-ops/quant_op.md).
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
  const auto& plan = model.plan();
  ASSERT_EQ(plan.size(), 5u);
  EXPECT_EQ(plan[0].kernel, "conv2d_f32_" + lowbit::engine::float32::best().name);
  EXPECT_EQ(plan[0].output, (std::vector<int64_t>{M, OH, OW}));
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
      k.conv(x.data(), w.data(), bias.data(), s, group, got.data());
      f32::all()[0].conv(x.data(), w.data(), bias.data(), s, group, want.data());
      ASSERT_EQ(got, want) << k.name << " geometry " << geometry;
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
        k.ternary_conv(xi.data(), t.data(), alpha.data(), bias.data(), s, group, tern.data());
        f32::all()[0].conv(xi.data(), tw.data(), bias.data(), s, group, flt.data());
        ASSERT_EQ(0, std::memcmp(tern.data(), flt.data(), tern.size() * sizeof(float)))
            << k.name << " geometry " << geometry << " infinite " << infinite;
        if (infinite) {
          EXPECT_TRUE(
              std::any_of(tern.begin(), tern.end(), [](float v) { return !std::isfinite(v); }));
        }
      }
      // And the reference is the definition, summed in its order.
      const int64_t cg = s.c / group;
      for (int64_t o = 0; o < s.m; ++o)
        for (int64_t r = 0; r < s.oh; ++r)
          for (int64_t q = 0; q < s.ow; ++q) {
            float acc = 0;
            for (int64_t ic = 0; ic < cg; ++ic)
              for (int64_t i = 0; i < s.kh; ++i)
                for (int64_t j = 0; j < s.kw; ++j) {
                  const int64_t yy = r * s.stride_h - s.pad_h + i * s.dil_h;
                  const int64_t xx = q * s.stride_w - s.pad_w + j * s.dil_w;
                  if (yy < 0 || yy >= s.h || xx < 0 || xx >= s.w) continue;
                  const int64_t g = o / (s.m / group);
                  acc += x[((g * cg + ic) * s.h + yy) * s.w + xx] *
                         w[((o * cg + ic) * s.kh + i) * s.kw + j];
                }
            ASSERT_EQ(want[(o * s.oh + r) * s.ow + q], acc + bias[o]) << geometry;
          }
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
    f32::all()[0].conv(x.data() + n * C * H * H, wq.data(), zeros.data(), s, 1, c.data());
    for (int64_t k = 0; k < classes; ++k) {
      float acc = 0;
      for (int64_t f = 0; f < F; ++f) acc += c[f] * gq[k * F + f];
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
  EXPECT_NE(error([](Builder& b) {
              b.init("s", {4}, {1, 1, 2, 2});
              b.node("Reshape", {"image", "s"}, "k");
            }).find("data must be a constant"),
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

TEST(Engine, CApiRunsAndReportsErrors) {
  Builder b({1, 1, 3});
  b.node("Relu", {"image"}, "r");
  b.node("Flatten", {"r"}, "y");
  const std::string bytes = b.bytes("y");
  char error[256];
  lowbit_model* m = lowbit_model_from_buffer(bytes.data(), bytes.size(), error, sizeof error);
  ASSERT_NE(m, nullptr) << error;
  int64_t shape[3];
  lowbit_model_input_shape(m, shape);
  EXPECT_EQ(shape[2], 3);
  EXPECT_EQ(lowbit_model_output_size(m), 3);
  const float x[3] = {-1, 0.5f, 2};
  float y[3];
  ASSERT_EQ(lowbit_model_run(m, x, 1, y, 1, error, sizeof error), 0) << error;
  EXPECT_EQ(y[0], 0.0f);
  EXPECT_EQ(y[2], 2.0f);
  EXPECT_EQ(lowbit_model_run(m, nullptr, 1, y, 1, error, sizeof error), 1);
  EXPECT_NE(std::string(error).find("null"), std::string::npos);
  lowbit_model_destroy(m);
  EXPECT_EQ(lowbit_model_from_file("/nonexistent.onnx", error, sizeof error), nullptr);
  EXPECT_NE(std::string(error).find("/nonexistent.onnx"), std::string::npos);
  char tiny[8];
  EXPECT_EQ(lowbit_model_from_buffer("junk", 4, tiny, sizeof tiny), nullptr);
  EXPECT_EQ(std::string(tiny).size(), 7u);  // truncated, NUL-terminated
}

TEST(Engine, FilesAreCheckedBeforeParsing) {
  const std::string dir =
      ::testing::TempDir() + "lowbit-engine-files-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  const auto from_file_error = [](const std::string& path) -> std::string {
    try {
      Model::from_file(path);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_EQ(from_file_error(dir), dir + ": is a directory, not a file");
  std::ofstream(dir + "/empty.onnx").close();
  EXPECT_EQ(from_file_error(dir + "/empty.onnx"),
            dir + "/empty.onnx: empty file (0 bytes), not an ONNX model");
  // lowbit's checksum trailer (a metadata_props entry): verified, and still a valid model.
  Builder b({1, 1, 3});
  b.node("Relu", {"image"}, "y0");
  b.node("Flatten", {"y0"}, "y");
  const std::string body = b.bytes("y");
  const std::string file = body + lowbit::io::onnx_checksum_trailer(body);
  onnx::ModelProto proto;
  ASSERT_TRUE(proto.ParseFromString(file));
  ASSERT_EQ(proto.metadata_props_size(), 1);
  EXPECT_EQ(proto.metadata_props(0).key(), "lowbit.crc32");
  EXPECT_EQ(Model::from_buffer(file.data(), file.size()).output_size(), 3);
  // A changed byte that still parses (a node's name) is caught by the checksum alone.
  const size_t name = file.find("y0_node");
  ASSERT_NE(name, std::string::npos);
  std::string bad = file;
  bad[name + 3] = 'm';
  EXPECT_NE(load_error(bad).find("corrupt file: its checksum"), std::string::npos)
      << load_error(bad);
  std::filesystem::remove_all(dir);
}

// ---- hostile files

std::string valid_model() {
  Builder b({1, 2, 2});
  b.init("w", {1, 1, 1, 1}, {2.0f});
  b.node("Conv", {"image", "w"}, "c");
  b.node("Flatten", {"c"}, "y");
  return b.bytes("y");
}

TEST(Engine, TruncatedAndCorruptFilesAreErrors) {
  const std::string good = valid_model();
  for (size_t n = 0; n < good.size(); n += 7) {
    const std::string e = load_error(good.substr(0, n));
    EXPECT_NE(e, "no error") << n;
  }
  std::string flipped = good;
  for (size_t i = 0; i < flipped.size(); i += 3) flipped[i] = static_cast<char>(~flipped[i]);
  EXPECT_NE(load_error(flipped), "no error");
  EXPECT_NE(load_error("").find("buffer"), std::string::npos);
}

TEST(Engine, HostileShapesAndTypesAreNamed) {
  {  // a huge initializer
    Builder b({1, 2, 2});
    auto* t = b.g->add_initializer();
    t->set_name("w");
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (int i = 0; i < 4; ++i) t->add_dims(int64_t{1} << 20);
    b.node("Conv", {"image", "w"}, "y");
    EXPECT_NE(load_error(b.bytes("y")).find("initializer 'w'"), std::string::npos);
  }
  {  // a negative dimension
    Builder b({1, 2, 2});
    auto* t = b.g->add_initializer();
    t->set_name("w");
    t->set_data_type(onnx::TensorProto::FLOAT);
    t->add_dims(-4);
    b.node("Mul", {"image", "w"}, "y");
    EXPECT_NE(load_error(b.bytes("y")).find("negative dimension"), std::string::npos);
  }
  {  // data that does not match the dims
    Builder b({1, 2, 2});
    b.init("w", {1, 1, 3, 3}, {1, 2});
    b.node("Conv", {"image", "w"}, "y");
    EXPECT_NE(load_error(b.bytes("y")).find("8 bytes for 9 elements"), std::string::npos);
  }
  {  // a wrong type
    Builder b({1, 2, 2});
    auto* t = b.g->add_initializer();
    t->set_name("w");
    t->set_data_type(onnx::TensorProto::STRING);
    b.node("Mul", {"image", "w"}, "y");
    EXPECT_NE(load_error(b.bytes("y")).find("unsupported data type"), std::string::npos);
  }
  {  // a huge input
    Builder b({1 << 20, 1 << 20, 1 << 20});
    b.node("Flatten", {"image"}, "y");
    EXPECT_NE(load_error(b.bytes("y")).find("too large"), std::string::npos);
  }
  {  // a cycle: a node reads its own output
    Builder b({1, 2, 2});
    b.node("Add", {"image", "y"}, "y");
    EXPECT_NE(load_error(b.bytes("y")).find("input 'y' is not defined before use"),
              std::string::npos);
  }
  {  // a missing input, and an unknown operator
    Builder b({1, 2, 2});
    b.node("Mul", {"image", "nowhere"}, "y");
    EXPECT_NE(load_error(b.bytes("y")).find("'nowhere'"), std::string::npos);
    Builder c({1, 2, 2});
    c.node("LSTM", {"image"}, "y");
    EXPECT_NE(load_error(c.bytes("y")).find("(LSTM): the engine does not know this operator"),
              std::string::npos);
  }
  {  // a kernel that does not fit the input
    Builder b({1, 2, 2});
    b.init("w", {1, 1, 3, 3}, std::vector<float>(9, 1.0f));
    b.node("Conv", {"image", "w"}, "c");
    b.node("Flatten", {"c"}, "y");
    EXPECT_NE(load_error(b.bytes("y")).find("empty"), std::string::npos);
  }
}

// ---- binary kernels

namespace lowbit_binary_tests {

using lowbit::engine::binary::ConvShape;

// sum over the taps inside the image of x * w (±1 values), times scale, plus bias.
std::vector<float> reference_conv(const std::vector<float>& x, const std::vector<float>& w,
                                  const std::vector<float>& scale, const std::vector<float>& bias,
                                  const ConvShape& s) {
  std::vector<float> y(s.m * s.oh * s.ow);
  for (int64_t o = 0; o < s.m; ++o)
    for (int64_t r = 0; r < s.oh; ++r)
      for (int64_t q = 0; q < s.ow; ++q) {
        int64_t sum = 0;
        for (int64_t c = 0; c < s.c; ++c)
          for (int64_t i = 0; i < s.kh; ++i)
            for (int64_t j = 0; j < s.kw; ++j) {
              const int64_t yy = r * s.stride_h - s.pad_h + i * s.dil_h;
              const int64_t xx = q * s.stride_w - s.pad_w + j * s.dil_w;
              if (yy < 0 || yy >= s.h || xx < 0 || xx >= s.w) continue;
              sum += static_cast<int64_t>(x[(c * s.h + yy) * s.w + xx] *
                                          w[((o * s.c + c) * s.kh + i) * s.kw + j]);
            }
        y[(o * s.oh + r) * s.ow + q] = static_cast<float>(sum) * scale[o] + bias[o];
      }
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
          s.c = c, s.h = 5, s.w = width, s.m = c % 2 ? 3 : 9, s.kh = 3, s.kw = 2;  // around 8
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
        s.c = c, s.h = 5, s.w = 7, s.m = m, s.kh = s.kw = 3, s.pad_h = s.pad_w = 1;
        s.oh = 5, s.ow = 7;
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
    for (const char* v : {"c1", "p1", "m1", "s1", "c2", "m2"})
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
  const std::vector<std::string> expected = {"bipolar_quant_f32",
                                             "pad_f32",
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

// ---- 8-bit kernels

namespace lowbit_int8_tests {

using lowbit::engine::int8::ConvShape;

// sum over the taps of x code * w code, the input's codes `zero` in the padding.
std::vector<int64_t> reference_raw(const std::vector<int>& x, const std::vector<int>& w, int zero,
                                   const ConvShape& s) {
  std::vector<int64_t> raw(s.m * s.oh * s.ow);
  for (int64_t o = 0; o < s.m; ++o)
    for (int64_t r = 0; r < s.oh; ++r)
      for (int64_t q = 0; q < s.ow; ++q) {
        int64_t sum = 0;
        for (int64_t c = 0; c < s.c; ++c)
          for (int64_t i = 0; i < s.kh; ++i)
            for (int64_t j = 0; j < s.kw; ++j) {
              const int64_t yy = r * s.stride_h - s.pad_h + i * s.dil_h;
              const int64_t xx = q * s.stride_w - s.pad_w + j * s.dil_w;
              const bool inside = yy >= 0 && yy < s.h && xx >= 0 && xx < s.w;
              sum += (inside ? x[(c * s.h + yy) * s.w + xx] : zero) *
                     w[((o * s.c + c) * s.kh + i) * s.kw + j];
            }
        raw[(o * s.oh + r) * s.ow + q] = sum;
      }
  return raw;
}

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
          const auto want = reference_raw(x, w, zero, s);
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
Model a2w1_model(bool fused, std::vector<std::string>* kernels) {
  const int64_t C = 3, H = 8, M1 = 70, M2 = 5, classes = 4;
  std::mt19937 rng(41);
  auto sign = [&] { return rng() % 2 ? 1.0f : -1.0f; };
  auto uniform = [&](float lo, float hi) {
    return std::uniform_real_distribution<float>(lo, hi)(rng);
  };
  std::vector<float> w1(M1 * C * 9), w2(M2 * M1 * 9), g(classes * M2 * 16), a1(M1), b1(M1), a2(M2),
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
  b.init("g", {classes, M2 * 16}, g);
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
  const std::vector<std::string> expected = {"elementwise_f32",
                                             "elementwise_f32",
                                             "quant_f32",
                                             "elementwise_f32",
                                             "elementwise_f32",
                                             "bitplane_conv2d_" + best + "+maxpool+threshold",
                                             "copy",
                                             "copy",
                                             "bitplane_conv2d_" + best + "+threshold",
                                             "copy",
                                             "copy",
                                             "bitplane_gemm_" + best};
  EXPECT_EQ(fused_kernels, expected);
  EXPECT_EQ(std::count(plain_kernels.begin(), plain_kernels.end(), "quant_f32"), 3);
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

}  // namespace lowbit_planes_tests

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
  std::vector<std::string> kernels;
  for (const auto& p : model.plan()) kernels.push_back(p.kernel);
  if (requantized) {
    // Power-of-2 scales: Relu and Quant fused into the convolution, which writes the codes that
    // Flatten and the dense layer read.
    EXPECT_EQ(kernels, (std::vector<std::string>{"quant_f32", "int8_conv2d_" + best + "+requantize",
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
Model chained_int8_model(bool fused, bool float_last, std::vector<std::string>* kernels) {
  const int64_t C = 5, H = 8, M1 = 17, M2 = 6, M3 = 9, classes = 4;
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
  b.init("g", {classes, M3 * 16}, codes(classes * M3 * 16, -128, 127, sw));
  b.init("gb", {classes}, codes(classes, -3000, 3000, sb));
  b.init("wf", {classes, M2, 4, 4}, codes(classes * M2 * 16, -100, 100, sw * 1.25f));
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
  for (bool float_last : {false, true}) {
    std::vector<std::string> fused_kernels, plain_kernels;
    const Model fused = chained_int8_model(true, float_last, &fused_kernels);
    const Model plain = chained_int8_model(false, float_last, &plain_kernels);
    const std::string conv = "int8_conv2d_" + best + "+requantize";
    std::vector<std::string> expected = {"quant_f32", conv, "maxpool_codes", conv};
    if (float_last) {
      expected.insert(expected.end(),
                      {"decode_codes+conv2d_f32_" + lowbit::engine::float32::best().name, "copy"});
    } else {
      expected.insert(expected.end(), {conv, "copy", "int8_gemm_" + best + "+requantize",
                                       "decode_codes", "elementwise_f32"});
    }
    EXPECT_EQ(fused_kernels, expected);
    EXPECT_EQ(std::count(plain_kernels.begin(), plain_kernels.end(), "quant_f32"),
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
