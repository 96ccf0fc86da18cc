// Models of several outputs: each output into its own buffer, the same bits as the models of one of
// them, intermediate values that later nodes read as outputs too, and the errors (C++ and C API).
#include "engine_test_util.h"
#include "lowbit/engine_c.h"

namespace {

using namespace engine_test;  // Builder, load_error, Model

// image [2, 5, 5] -> Conv 3x3 pads 1 -> Relu "r" -> MaxPool 2x2 -> Flatten -> Gemm "y", and
// "s" = Sigmoid(image): outputs in the order asked.
std::string graph(const std::vector<std::string>& outputs) {
  std::mt19937 rng(41);
  auto uniform = [&](size_t n) {
    std::vector<float> v(n);
    for (auto& e : v) e = std::uniform_real_distribution<float>(-1, 1)(rng);
    return v;
  };
  Builder b({2, 5, 5});
  b.init("w", {3, 2, 3, 3}, uniform(3 * 2 * 9));
  b.init("g", {4, 12}, uniform(48));
  Builder::attr(b.node("Conv", {"image", "w"}, "c"), "pads", std::vector<int64_t>{1, 1, 1, 1});
  b.node("Relu", {"c"}, "r");
  auto* pool = b.node("MaxPool", {"r"}, "p");
  Builder::attr(pool, "kernel_shape", std::vector<int64_t>{2, 2});
  Builder::attr(pool, "strides", std::vector<int64_t>{2, 2});
  b.node("Flatten", {"p"}, "f");
  Builder::attr(b.node("Gemm", {"f", "g"}, "y"), "transB", int64_t{1});
  b.node("Sigmoid", {"image"}, "s");
  return b.bytes(outputs);
}

Model load(const std::string& bytes) { return Model::from_buffer(bytes.data(), bytes.size()); }

TEST(EngineOutputs, EachOutputGetsItsBufferAndTheBitsOfItsOwnModel) {
  const Model all = load(graph({"y", "r", "s"}));
  ASSERT_EQ(all.output_count(), 3u);
  EXPECT_EQ(all.output_name(0), "y");
  EXPECT_EQ(all.output_name(1), "r");
  EXPECT_EQ(all.output_shape(0), (std::vector<int64_t>{4}));
  EXPECT_EQ(all.output_shape(1), (std::vector<int64_t>{3, 5, 5}));
  EXPECT_EQ(all.output_size(2), 50);
  EXPECT_THROW(all.output_shape(3), std::invalid_argument);
  const int64_t n = 11;  // more than a chunk, split between threads
  std::mt19937 rng(42);
  std::vector<float> x(n * 50);
  for (auto& v : x) v = std::uniform_real_distribution<float>(-2, 2)(rng);
  for (int threads : {1, 3}) {
    std::vector<float> y(n * 4), r(n * 75), s(n * 50);
    all.run(x.data(), n, {y.data(), r.data(), s.data()}, threads);
    size_t k = 0;
    for (const char* name : {"y", "r", "s"}) {
      const Model one = load(graph({name}));
      ASSERT_EQ(one.output_count(), 1u);
      std::vector<float> want(n * one.output_size());
      one.run(x.data(), n, want.data());
      const std::vector<float>& got = k == 0 ? y : k == 1 ? r : s;
      EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)), 0)
          << name << " threads " << threads;
      ++k;
    }
  }
  // One image on several threads (the steps split), and the profile.
  std::vector<float> y1(4), r1(75), s1(50), y2(4), r2(75), s2(50);
  all.run(x.data(), 1, {y1.data(), r1.data(), s1.data()}, 1);
  all.run(x.data(), 1, {y2.data(), r2.data(), s2.data()}, 4);
  EXPECT_EQ(y1, y2);
  EXPECT_EQ(r1, r2);
  std::vector<double> seconds;
  all.run_profiled(x.data(), 1, {y2.data(), r2.data(), s2.data()}, seconds);
  EXPECT_EQ(seconds.size(), all.plan().size());
  EXPECT_EQ(y1, y2);
}

TEST(EngineOutputs, WrongBuffersAndRepeatedOutputsAreErrors) {
  const Model all = load(graph({"y", "s"}));
  std::vector<float> x(50), y(4), s(50);
  try {
    all.run(x.data(), 1, y.data());
    FAIL() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("the model has 2 outputs"), std::string::npos) << e.what();
  }
  try {
    all.run(x.data(), 1, std::vector<float*>{y.data()});
    FAIL() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("1 output buffers for a model of 2"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(all.run(x.data(), 1, {y.data(), nullptr}), std::invalid_argument);
  EXPECT_NE(load_error(graph({"y", "s", "y"})).find("graph output 'y' is listed twice"),
            std::string::npos);
  EXPECT_NE(load_error(graph({"y", "nowhere"})).find("nowhere"), std::string::npos);
}

TEST(EngineOutputs, TheCApiNamesSizesAndRunsEveryOutput) {
  const std::string bytes = graph({"s", "y"});
  char error[256];
  lowbit_model* m = lowbit_model_from_buffer(bytes.data(), bytes.size(), error, sizeof error);
  ASSERT_NE(m, nullptr) << error;
  ASSERT_EQ(lowbit_model_output_count(m), 2u);
  EXPECT_STREQ(lowbit_model_output_name(m, 1), "y");
  EXPECT_EQ(lowbit_model_output_name(m, 2), nullptr);
  int64_t dims[4] = {};
  EXPECT_EQ(lowbit_model_output_dims_at(m, 0, dims, 4), 3u);
  EXPECT_EQ(std::vector<int64_t>(dims, dims + 3), (std::vector<int64_t>{2, 5, 5}));
  EXPECT_EQ(lowbit_model_output_size_at(m, 1), 4);
  EXPECT_EQ(lowbit_model_output_size_at(m, 2), 0);
  std::vector<float> x(100, 0.5f), s(100), y(8);
  float* outs[2] = {s.data(), y.data()};
  ASSERT_EQ(lowbit_model_run_outputs(m, x.data(), 2, outs, 2, 1, error, sizeof error), 0) << error;
  EXPECT_FLOAT_EQ(s[99], 1.0f / (1.0f + std::exp(-0.5f)));
  EXPECT_EQ(lowbit_model_run_outputs(m, x.data(), 2, outs, 1, 1, error, sizeof error), 1);
  EXPECT_NE(std::string(error).find("1 output buffers for a model of 2"), std::string::npos);
  EXPECT_EQ(lowbit_model_run(m, x.data(), 2, s.data(), 1, error, sizeof error), 1);
  EXPECT_NE(std::string(error).find("give one buffer per output"), std::string::npos);
  lowbit_model_destroy(m);
}

TEST(EngineOutputs, NodesNoOutputDependsOnAreNotRun) {
  // graph() with only "y" asked: the Sigmoid branch is dead, its step not planned; with "s" asked
  // too it is. A dead reader still keeps the Relu apart from the convolution (its value is read
  // twice), which changes no bit.
  const Model y_only = load(graph({"y"}));
  const Model both = load(graph({"y", "s"}));
  auto ops = [](const Model& m) {
    std::vector<std::string> v;
    for (const auto& p : m.plan()) v.push_back(p.op_type);
    return v;
  };
  const auto few = ops(y_only), more = ops(both);
  EXPECT_EQ(std::count(few.begin(), few.end(), "Sigmoid"), 0);
  EXPECT_EQ(std::count(more.begin(), more.end(), "Sigmoid"), 1);
  EXPECT_EQ(more.size(), few.size() + 1);
  Builder b({2, 3, 3});
  b.init("w", {2, 2, 1, 1}, {1.0f, -1.0f, 0.5f, 2.0f});
  b.node("Conv", {"image", "w"}, "c");
  b.node("Relu", {"c"}, "r");
  b.node("Tanh", {"c"}, "dead");  // read by nothing
  b.node("Flatten", {"r"}, "y");
  const Model m = b.load("y");
  EXPECT_EQ(ops(m), (std::vector<std::string>{"Conv", "Relu", "Flatten"}));
  std::vector<float> x(18), out(18);
  for (size_t e = 0; e < x.size(); ++e) x[e] = static_cast<float>(e) - 8.5f;
  m.run(x.data(), 1, out.data());
  for (int64_t p = 0; p < 9; ++p) {
    EXPECT_EQ(out[p], std::max(0.0f, std::fma(x[9 + p], -1.0f, x[p] * 1.0f)));
  }
}

}  // namespace
