// The engine's tools (lowbit_engine_tools): a .npy file through a model, and the benchmark.
#include <filesystem>

#include "engine_test_util.h"
#include "lowbit/engine/tools.h"
#include "lowbit/io/npy.h"

namespace {

using namespace engine_test;  // Builder, load_error, Model

TEST(EngineTools, RunNpyWritesTheOutputsOfTheModelsShape) {
  Builder b({2, 3});
  b.init("k", {1, 2, 1}, {2.0f, -1.0f});
  b.node("Mul", {"image", "k"}, "y");
  const Model m = b.load("y");
  const auto dir = std::filesystem::temp_directory_path() / "lowbit-tools-test";
  std::filesystem::create_directories(dir);
  const std::vector<float> x{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  lowbit::io::write_npy((dir / "x.npy").string(), {2, 2, 3}, x.data());
  const auto r =
      lowbit::engine::run_npy(m, (dir / "x.npy").string(), {(dir / "y.npy").string()}, 2);
  EXPECT_EQ(r.images, 2);
  const auto y = lowbit::io::read_npy((dir / "y.npy").string());
  EXPECT_EQ(y.shape, (std::vector<int64_t>{2, 2, 3}));
  EXPECT_EQ(y.data, (std::vector<float>{2, 4, 6, -4, -5, -6, 14, 16, 18, -10, -11, -12}));
  // A file of another shape is refused, naming it; nothing is written.
  lowbit::io::write_npy((dir / "bad.npy").string(), {2, 6}, x.data());
  try {
    lowbit::engine::run_npy(m, (dir / "bad.npy").string(), {(dir / "z.npy").string()}, 1);
    ADD_FAILURE() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("bad.npy: an array of shape [2, 6] does not fit the "
                                         "model's input [batch, 2, 3]"),
              std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "z.npy"));
  std::filesystem::remove_all(dir);
}

TEST(EngineTools, BenchTimesEveryCallAndProfilesEveryPlannedNode) {
  Builder b({3, 8, 8});
  b.node("Relu", {"image"}, "r");
  b.node("Abs", {"r"}, "y");
  const Model m = b.load("y");
  lowbit::engine::BenchOptions o;
  o.batch = 3, o.min_runs = 5, o.min_seconds = 0, o.warmup = 0;
  const auto r = lowbit::engine::bench(m, o);
  EXPECT_EQ(r.runs, 5);
  EXPECT_LE(r.min_ms, r.p50_ms);
  EXPECT_LE(r.p50_ms, r.p90_ms);
  EXPECT_LE(r.p90_ms, r.p99_ms);
  ASSERT_EQ(r.profile.size(), 2u);
  EXPECT_EQ(r.profile[0].op_type, "Relu");
  EXPECT_EQ(r.profile[1].op_type, "Abs");
  EXPECT_NEAR(r.profile[0].share + r.profile[1].share, 1.0, 1e-9);
  const std::string json = lowbit::engine::to_json(r, "m\"x.onnx");
  EXPECT_NE(json.find("\"model\": \"m\\\"x.onnx\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"op\": \"Abs\""), std::string::npos) << json;
  o.batch = 0;
  EXPECT_THROW(lowbit::engine::bench(m, o), std::invalid_argument);
}

}  // namespace
