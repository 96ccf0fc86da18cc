// The training loop and recipes on a small synthetic IDX data set: metrics files, checkpoints,
// resume giving the uninterrupted result, evaluation of a saved run, and errors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>

#include "lowbit/data/idx.h"
#include "lowbit/io/file.h"
#include "lowbit/train.h"

namespace {

namespace fs = std::filesystem;

void write_be32(std::ofstream& out, uint32_t v) {
  const unsigned char b[4] = {static_cast<unsigned char>(v >> 24),
                              static_cast<unsigned char>(v >> 16),
                              static_cast<unsigned char>(v >> 8), static_cast<unsigned char>(v)};
  out.write(reinterpret_cast<const char*>(b), 4);
}

// n images of 8x8 in 3 classes: class c has a bright c-th horizontal band, plus noise.
void write_split(const fs::path& dir, const std::string& prefix, int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::ofstream img(dir / (prefix + "-images-idx3-ubyte"), std::ios::binary);
  std::ofstream lab(dir / (prefix + "-labels-idx1-ubyte"), std::ios::binary);
  write_be32(img, 0x803);
  write_be32(img, n);
  write_be32(img, 8);
  write_be32(img, 8);
  write_be32(lab, 0x801);
  write_be32(lab, n);
  for (int i = 0; i < n; ++i) {
    const int c = i % 3;
    for (int r = 0; r < 8; ++r) {
      for (int col = 0; col < 8; ++col) {
        const int base = (r / 3 == c) ? 200 : 30;
        img.put(static_cast<char>(base + static_cast<int>(rng() % 40)));
      }
    }
    lab.put(static_cast<char>(c));
  }
}

class TrainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("lowbit-train-" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
             "-" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_ / "data");
    write_split(root_ / "data", "train", 96, 1);
    write_split(root_ / "data", "t10k", 30, 2);
  }
  void TearDown() override { fs::remove_all(root_); }

  lowbit::train::Recipe small(const std::string& name) {
    auto r = lowbit::train::recipe(name);
    r.network.blocks = {4, 0, 8, 0};
    r.network.hidden = 16;
    r.batch_size = 16;
    r.learning_rate = 1e-2;
    return r;
  }
  lowbit::train::TrainOptions options(const std::string& out, int64_t epochs) {
    lowbit::train::TrainOptions o;
    o.data_dir = (root_ / "data").string();
    o.out_dir = (root_ / out).string();
    o.epochs = epochs;
    o.seed = 3;
    o.progress = false;
    return o;
  }
  static std::vector<std::string> lines(const fs::path& p) {
    std::ifstream in(p);
    std::vector<std::string> out;
    for (std::string l; std::getline(in, l);) out.push_back(l);
    return out;
  }
  fs::path root_;
};

TEST_F(TrainTest, WritesMetricsCheckpointAndPlot) {
  const auto result = lowbit::train::train(small("bnn"), options("run", 3));
  EXPECT_EQ(result.epochs, 3);
  EXPECT_GE(result.test_accuracy, 0.0);
  EXPECT_LE(result.test_accuracy, 1.0);
  const auto log = lines(root_ / "run" / "metrics.jsonl");
  ASSERT_EQ(log.size(), 3u);
  EXPECT_NE(log[2].find("\"epoch\": 3"), std::string::npos) << log[2];
  EXPECT_NE(log[0].find("\"test_accuracy\""), std::string::npos);
  const auto final_metrics = lines(root_ / "run" / "metrics.json");
  ASSERT_EQ(final_metrics.size(), 1u);
  for (const char* key :
       {"\"test_accuracy\"", "\"epochs\": 3", "\"model\": \"bnn\"", "\"seconds\""}) {
    EXPECT_NE(final_metrics[0].find(key), std::string::npos) << key;
  }
  EXPECT_TRUE(fs::exists(root_ / "run" / "checkpoint.pt"));
  EXPECT_FALSE(fs::exists(root_ / "run" / "checkpoint.pt.tmp"));
  std::ifstream png(root_ / "run" / "curves.png", std::ios::binary);
  char sig[8] = {};
  png.read(sig, 8);
  EXPECT_EQ(std::string(sig + 1, 3), "PNG");
}

TEST_F(TrainTest, LearnsTheSyntheticClasses) {
  auto r = small("float");
  const auto result = lowbit::train::train(r, options("run", 8));
  EXPECT_GE(result.test_accuracy, 0.9);  // the bands are easy; chance is 1/3
}

TEST_F(TrainTest, ResumeGivesTheUninterruptedResult) {
  // A constant learning rate, so that a 2-epoch run stands for a 3-epoch run killed after epoch 2
  // (with the cosine schedule the epoch count shapes the rate).
  auto r = small("bnn");
  r.schedule = "constant";
  lowbit::train::train(r, options("straight", 3));
  lowbit::train::train(r, options("split", 2));  // as if killed after epoch 2
  auto resumed = options("split", 3);
  resumed.resume = true;
  lowbit::train::train(r, resumed);
  auto a = lowbit::train::load_model((root_ / "straight").string());
  auto b = lowbit::train::load_model((root_ / "split").string());
  const auto pa = a->named_parameters(), pb = b->named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (const auto& p : pa) EXPECT_TRUE(torch::equal(p.value(), pb[p.key()])) << p.key();
  const auto la = lines(root_ / "straight" / "metrics.jsonl");
  const auto lb = lines(root_ / "split" / "metrics.jsonl");
  ASSERT_EQ(lb.size(), 3u);
  // Same accuracies and losses (times differ).
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(la[i].substr(0, la[i].find("\"learning_rate\"")),
              lb[i].substr(0, lb[i].find("\"learning_rate\"")));
  }
}

TEST_F(TrainTest, BatchNormRecalibrationChangesOnlyTheRunningStatisticsAndResumesExactly) {
  auto r = small("bnn");
  r.schedule = "constant";
  lowbit::train::train(r, options("plain", 2));
  r.bn_recalibration_batches = -1;  // all
  lowbit::train::train(r, options("recalibrated", 2));
  lowbit::train::train(r, options("split", 1));
  auto resumed = options("split", 2);
  resumed.resume = true;
  lowbit::train::train(r, resumed);
  auto plain = lowbit::train::load_model((root_ / "plain").string());
  lowbit::train::Recipe saved;
  auto recalibrated = lowbit::train::load_model((root_ / "recalibrated").string(), &saved);
  auto split = lowbit::train::load_model((root_ / "split").string());
  EXPECT_EQ(saved.bn_recalibration_batches, -1);
  // The same training: the statistics are not used by training-mode forward passes.
  for (const auto& p : plain->named_parameters()) {
    EXPECT_TRUE(torch::equal(p.value(), recalibrated->named_parameters()[p.key()])) << p.key();
  }
  int running_differ = 0, running = 0;
  for (const auto& b : plain->named_buffers()) {
    if (b.key().find("running_") == std::string::npos) continue;
    ++running;
    running_differ += !torch::allclose(b.value(), recalibrated->named_buffers()[b.key()]);
    EXPECT_TRUE(
        torch::equal(split->named_buffers()[b.key()], recalibrated->named_buffers()[b.key()]))
        << b.key();
  }
  EXPECT_GT(running, 0);
  EXPECT_EQ(running_differ, running);
  const auto a = lines(root_ / "plain" / "metrics.jsonl");
  const auto b = lines(root_ / "recalibrated" / "metrics.jsonl");
  ASSERT_EQ(a.size(), 2u);
  ASSERT_EQ(b.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(a[i].substr(a[i].find("\"train_accuracy\"")),
              b[i].substr(b[i].find("\"train_accuracy\"")));
  }
}

TEST_F(TrainTest, ResumeChecksTheCheckpoint) {
  auto o = options("none", 1);
  o.resume = true;
  EXPECT_THROW(lowbit::train::train(small("bnn"), o), std::runtime_error);
  lowbit::train::train(small("bnn"), options("run", 1));
  auto other = options("run", 2);
  other.resume = true;
  EXPECT_THROW(lowbit::train::train(small("dorefa"), other), std::runtime_error);
  other.seed = 4;
  EXPECT_THROW(lowbit::train::train(small("bnn"), other), std::runtime_error);
}

// The message of the std::exception that f throws ("" when it throws none).
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST_F(TrainTest, AnExistingRunIsKeptUnlessResumedOrOverwritten) {
  lowbit::train::train(small("bnn"), options("run", 2));
  const auto before = lines(root_ / "run" / "metrics.jsonl");
  const std::string error =
      error_of([&] { lowbit::train::train(small("bnn"), options("run", 1)); });
  EXPECT_TRUE(contains(error, (root_ / "run").string() + ": holds a run (checkpoint.pt")) << error;
  EXPECT_TRUE(contains(error, "--resume")) << error;
  EXPECT_EQ(lines(root_ / "run" / "metrics.jsonl"), before);
  auto overwrite = options("run", 1);
  overwrite.overwrite = true;
  lowbit::train::train(small("bnn"), overwrite);
  EXPECT_EQ(lines(root_ / "run" / "metrics.jsonl").size(), 1u);
}

TEST_F(TrainTest, ResumeRefusesFewerEpochsThanTheCheckpointHolds) {
  lowbit::train::train(small("bnn"), options("run", 3));
  auto fewer = options("run", 2);
  fewer.resume = true;
  const std::string error = error_of([&] { lowbit::train::train(small("bnn"), fewer); });
  EXPECT_TRUE(contains(error, "--epochs 2: ")) << error;
  EXPECT_TRUE(contains(error, "already holds 3 epochs")) << error;
  // The same count evaluates the run as it is.
  auto same = options("run", 3);
  same.resume = true;
  EXPECT_EQ(lowbit::train::train(small("bnn"), same).epochs, 3);
  EXPECT_TRUE(contains(lines(root_ / "run" / "metrics.json")[0], "\"epochs\": 3"));
}

TEST_F(TrainTest, ASecondTrainingIntoALockedRunDirectoryIsRefused) {
  fs::create_directories(root_ / "run");
  lowbit::io::DirectoryLock held((root_ / "run").string());
  const std::string error =
      error_of([&] { lowbit::train::train(small("bnn"), options("run", 1)); });
  EXPECT_TRUE(contains(error, "another lowbit train is writing to this run directory")) << error;
  EXPECT_TRUE(fs::is_empty(root_ / "run"));
}

TEST_F(TrainTest, ACheckpointWithAFlippedBitIsRefusedOrLoadsTheSameModel) {
  lowbit::train::train(small("bnn"), options("run", 1));
  const fs::path file = root_ / "run" / "checkpoint.pt";
  std::string original;
  {
    std::ifstream in(file, std::ios::binary);
    original.assign(std::istreambuf_iterator<char>(in), {});
  }
  const auto reference = lowbit::train::load_checkpoint(file.string());
  const auto same_model = [&](const lowbit::train::Checkpoint& c) {
    const auto a = reference.model->named_parameters(), b = c.model->named_parameters();
    for (const auto& p : a)
      if (!b.contains(p.key()) || !torch::equal(p.value(), b[p.key()])) return false;
    const auto ab = reference.model->named_buffers(), bb = c.model->named_buffers();
    for (const auto& p : ab)
      if (!bb.contains(p.key()) || !torch::equal(p.value(), bb[p.key()])) return false;
    return c.epoch == reference.epoch && c.standardisation.mean == reference.standardisation.mean;
  };
  const auto write = [&](const std::string& bytes) {
    std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes;
  };
  // A bit of the first convolution's weights: where they lie in the file, found by their bytes.
  const at::Tensor w = reference.model->parameters()[0].contiguous();
  const std::string weights(static_cast<const char*>(w.data_ptr()), w.nbytes());
  const size_t at_weights = original.find(weights);
  ASSERT_NE(at_weights, std::string::npos);
  std::string bad = original;
  bad[at_weights + 3] = static_cast<char>(bad[at_weights + 3] ^ 0x08);
  write(bad);
  const std::string error = error_of([&] { lowbit::train::load_checkpoint(file.string()); });
  EXPECT_TRUE(contains(error, file.string() + ": corrupt file: member '")) << error;
  auto resume = options("run", 2);
  resume.resume = true;
  EXPECT_TRUE(
      contains(error_of([&] { lowbit::train::train(small("bnn"), resume); }), "corrupt file"));
  // Anywhere in the file: an error, or (padding, timestamps) the very same model; never other
  // numbers.
  const size_t step = std::max<size_t>(1, original.size() / 150);
  for (size_t byte = 0; byte < original.size(); byte += step) {
    bad = original;
    bad[byte] = static_cast<char>(bad[byte] ^ 0x10);
    write(bad);
    try {
      EXPECT_TRUE(same_model(lowbit::train::load_checkpoint(file.string()))) << "byte " << byte;
    } catch (const std::runtime_error& e) {
      EXPECT_TRUE(contains(e.what(), file.string() + ": ")) << e.what();
    }
  }
}

TEST_F(TrainTest, ResumeOnADataSetOfAnotherImageSizeOrMoreClassesIsRefused) {
  lowbit::train::train(small("bnn"), options("run", 1));
  auto resume = options("run", 2);
  resume.resume = true;
  // 8x8 images in 3 classes were trained; a set of 4 classes of 8x8, then one of 3 classes.
  write_split(root_ / "data", "t10k", 30, 2);
  {
    std::fstream lab(root_ / "data" / "t10k-labels-idx1-ubyte",
                     std::ios::binary | std::ios::in | std::ios::out);
    lab.seekp(8 + 5);
    lab.put(3);
  }
  const std::string error = error_of([&] { lowbit::train::train(small("bnn"), resume); });
  EXPECT_TRUE(contains(error, "label 3 (at index 5) is outside the 3 classes")) << error;
}

TEST_F(TrainTest, NumClassesGivesTheModelItsOutputsAndChecksTheLabels) {
  auto o = options("run", 1);
  o.num_classes = 5;
  lowbit::train::train(small("float"), o);
  EXPECT_EQ(lowbit::train::load_checkpoint((root_ / "run").string()).num_classes, 5);
  auto few = options("few", 1);
  few.num_classes = 2;
  EXPECT_TRUE(contains(error_of([&] { lowbit::train::train(small("float"), few); }),
                       "label 2 (at index 2) is outside the 2 classes (0-1) of --num-classes 2"));
  // Without it, classes with no training image are said.
  write_split(root_ / "data", "train", 96, 1);
  {
    std::fstream lab(root_ / "data" / "train-labels-idx1-ubyte",
                     std::ios::binary | std::ios::in | std::ios::out);
    lab.seekp(8);
    lab.put(9);
  }
  std::string warning;
  auto warned = options("warned", 1);
  warned.warn = [&](const std::string& text) { warning += text; };
  lowbit::train::train(small("float"), warned);
  EXPECT_TRUE(contains(warning,
                       "the labels run from 0 to 9 but 6 of those 10 classes have no "
                       "training image (3, 4, 5, 6, 7, 8)"))
      << warning;
}

TEST_F(TrainTest, EvaluateASavedRun) {
  const auto result = lowbit::train::train(small("ternary"), options("run", 2));
  lowbit::train::Recipe r;
  auto model = lowbit::train::load_model((root_ / "run").string(), &r);
  EXPECT_EQ(r.name, "ternary");
  const auto t =
      lowbit::train::to_tensors(lowbit::data::load_idx_dataset((root_ / "data").string()));
  EXPECT_EQ(lowbit::train::evaluate(model, t.test_images, t.test_labels).second,
            result.test_accuracy);
}

TEST_F(TrainTest, CheckpointsStoreTheInputStandardisation) {
  lowbit::train::train(small("bnn"), options("run", 1));
  const auto t =
      lowbit::train::to_tensors(lowbit::data::load_idx_dataset((root_ / "data").string()));
  for (const fs::path& p : {root_ / "run", root_ / "run" / "checkpoint.pt"}) {
    const auto c = lowbit::train::load_checkpoint(p.string());
    EXPECT_EQ(c.file, (root_ / "run" / "checkpoint.pt").string());
    EXPECT_EQ(c.recipe.name, "bnn");
    EXPECT_EQ(c.recipe.network.blocks, (std::vector<int64_t>{4, 0, 8, 0}));
    EXPECT_EQ(c.height, 8);
    EXPECT_EQ(c.num_classes, 3);
    EXPECT_EQ(c.epoch, 1);
    ASSERT_TRUE(c.has_normalization);
    EXPECT_EQ(c.standardisation.mean, t.standardisation.mean);
    EXPECT_EQ(c.standardisation.std, t.standardisation.std);
    EXPECT_EQ(c.channels, 1);
    EXPECT_FALSE(c.model->is_training());
  }
  // The standardisation as the data set gives it: pixels / 255, mean and sample std.
  const auto pixels = lowbit::data::load_idx_dataset((root_ / "data").string()).train.images.pixels;
  double sum = 0, sq = 0;
  for (uint8_t v : pixels) sum += v / 255.0;
  const double mean = sum / pixels.size();
  for (uint8_t v : pixels) sq += (v / 255.0 - mean) * (v / 255.0 - mean);
  ASSERT_EQ(t.standardisation.mean.size(), 1u);
  EXPECT_NEAR(t.standardisation.mean[0], mean, 1e-12);
  EXPECT_NEAR(t.standardisation.std[0], std::sqrt(sq / (pixels.size() - 1)), 1e-12);
}

TEST_F(TrainTest, BadCheckpointsAreNamed) {
  auto message = [](const std::string& path) {
    try {
      lowbit::train::load_checkpoint(path);
    } catch (const std::runtime_error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message((root_ / "none").string()).find("/none: no such checkpoint"),
            std::string::npos);
  std::ofstream((root_ / "junk.pt").string()) << "junk";
  EXPECT_NE(message((root_ / "junk.pt").string()).find("junk.pt: not a lowbit checkpoint"),
            std::string::npos);
  // A real archive without the recipe entries.
  torch::serialize::OutputArchive archive;
  archive.write("epoch", c10::IValue(int64_t{1}));
  archive.save_to((root_ / "partial.pt").string());
  EXPECT_NE(message((root_ / "partial.pt").string()).find("no 'recipe_name' entry"),
            std::string::npos);
}

TEST_F(TrainTest, QuantizationAwareRecipesResumeExactlyAndWriteIntegerParameters) {
  for (const std::string name : {"po2-int8", "tf-int8"}) {
    auto r = small(name);
    r.schedule = "constant";
    r.quant_delay = 8;       // 6 steps an epoch: quantization starts in epoch 2,
    r.freeze_bn_delay = 14;  // batch norm freezes in epoch 3
    lowbit::train::train(r, options(name + "-straight", 3));
    lowbit::train::train(r, options(name + "-split", 2));
    auto resumed = options(name + "-split", 3);
    resumed.resume = true;
    lowbit::train::train(r, resumed);
    auto a = lowbit::train::load_model((root_ / (name + "-straight")).string());
    auto b = lowbit::train::load_model((root_ / (name + "-split")).string());
    const auto ba = a->named_buffers(), bb = b->named_buffers();
    ASSERT_EQ(ba.size(), bb.size());
    for (const auto& p : a->named_parameters()) {
      EXPECT_TRUE(torch::equal(p.value(), b->named_parameters()[p.key()])) << name << p.key();
    }
    for (const auto& p : ba) EXPECT_TRUE(torch::equal(p.value(), bb[p.key()])) << name << p.key();
    EXPECT_EQ(ba["1.step"].item<int64_t>(), 18);  // 3 epochs of 6 steps
    const auto json = lines(root_ / (name + "-straight") / "integer-parameters.json");
    ASSERT_GE(json.size(), 5u);
    EXPECT_NE(json[0].find(name == "po2-int8" ? "pow2" : "affine"), std::string::npos);
    EXPECT_NE(json[1].find("\"conv2d\""), std::string::npos) << json[1];
  }
}

TEST(Recipes, EveryRecipeBuildsAndRuns) {
  for (const auto& name : lowbit::train::recipe_names()) {
    auto r = lowbit::train::recipe(name);
    EXPECT_EQ(r.name, name);
    auto model = lowbit::train::build_model(r, 28, 28, 10);
    EXPECT_EQ(model->forward(torch::randn({2, 1, 28, 28})).sizes(), torch::IntArrayRef({2, 10}))
        << name;
  }
  EXPECT_THROW(lowbit::train::recipe("resnet"), std::invalid_argument);
}

TEST(Recipes, ConfigFilesOverrideAndReportBadKeys) {
  const fs::path dir = fs::temp_directory_path() / "lowbit-config-test";
  fs::create_directories(dir);
  auto write = [&](const std::string& text) {
    std::ofstream(dir / "c.yaml") << text;
    return (dir / "c.yaml").string();
  };
  auto r = lowbit::train::recipe("bnn");
  lowbit::train::apply_config(
      r, write("epochs: 4\nblocks: [8, 0, 16]\nkernel_quantizer: dorefa(k_bit=3, mode=weights)\n"));
  EXPECT_EQ(r.epochs, 4);
  EXPECT_EQ(r.network.blocks, (std::vector<int64_t>{8, 0, 16}));
  EXPECT_EQ(r.network.kernel_quantizer, "dorefa(k_bit=3, mode=weights)");
  auto expect_error = [&](const std::string& text, const std::string& needle) {
    try {
      lowbit::train::apply_config(r, write(text));
      ADD_FAILURE() << "no error for " << text;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error("epoch: 3\n", "epoch");
  expect_error("epochs: -1\n", "epochs");
  expect_error("learning_rate: fast\n", "learning_rate");
  expect_error("input_quantizer: sgn\n", "input_quantizer");
  expect_error("[1, 2]\n", "mapping");
  expect_error("qat: int4\n", "qat");
  expect_error("quant_delay: -3\n", "quant_delay");
  expect_error("ema_decay: 1.5\n", "ema_decay");
  expect_error("dropout: 1\n", "dropout");
  expect_error("bn_recalibration_batches: -1\n", "bn_recalibration_batches");
  expect_error("bn_recalibration_batches: every\n", "bn_recalibration_batches");
  lowbit::train::apply_config(r, write("bn_recalibration_batches: 7\n"));
  EXPECT_EQ(r.bn_recalibration_batches, 7);
  lowbit::train::apply_config(r, write("bn_recalibration_batches: all\n"));
  EXPECT_EQ(r.bn_recalibration_batches, -1);
  fs::remove_all(dir);
}

}  // namespace

TEST_F(TrainTest, ValSplitEvaluatesEachEpochOnHeldOutImagesAndTheTestSetAtTheEnd) {
  auto o = options("val", 2);
  o.val_split = 0.25;
  const auto result = lowbit::train::train(small("bnn"), o);
  const auto log = lines(root_ / "val" / "metrics.jsonl");
  ASSERT_EQ(log.size(), 2u);
  EXPECT_NE(log[0].find("\"val_accuracy\""), std::string::npos) << log[0];
  EXPECT_EQ(log[0].find("\"test_accuracy\""), std::string::npos) << log[0];
  // The final test accuracy and confusion matrix are the saved model's on the test split.
  auto model = lowbit::train::load_model((root_ / "val").string());
  const auto t =
      lowbit::train::to_tensors(lowbit::data::load_dataset((root_ / "data").string()),
                                lowbit::train::load_checkpoint((root_ / "val").string()));
  const auto e = lowbit::train::evaluate_confusion(model, t.test_images, t.test_labels);
  EXPECT_EQ(result.test_accuracy, e.accuracy);
  EXPECT_EQ(result.test.confusion, e.confusion);
  ASSERT_EQ(e.classes, 3);
  // Rows are true classes: each row holds that class's 10 test images; the diagonal is accuracy.
  const auto labels = t.test_labels.contiguous();
  const auto predicted = model->forward(t.test_images).argmax(1);
  std::vector<int64_t> expected(9, 0);
  for (int64_t i = 0; i < 30; ++i) {
    ++expected[labels[i].item<int64_t>() * 3 + predicted[i].item<int64_t>()];
  }
  EXPECT_EQ(e.confusion, expected);
  EXPECT_NEAR(static_cast<double>(expected[0] + expected[4] + expected[8]) / 30, e.accuracy, 1e-12);
  const auto final_metrics = lines(root_ / "val" / "metrics.json");
  EXPECT_NE(final_metrics[0].find("\"val_split\": 0.25"), std::string::npos) << final_metrics[0];
  EXPECT_NE(final_metrics[0].find("\"confusion\": [["), std::string::npos);
  EXPECT_TRUE(fs::exists(root_ / "val" / "confusion.png"));
  // The standardisation comes from the 72 images trained on, not the 24 held out.
  const auto all = lowbit::data::load_dataset((root_ / "data").string()).train;
  const auto stats = lowbit::train::channel_statistics(all.images);
  EXPECT_NE(lowbit::train::load_checkpoint((root_ / "val").string()).standardisation.mean,
            stats.mean);
  // Resume needs the same split; the split is the seed's (same weights twice).
  auto resume = options("val", 3);
  resume.resume = true;
  const std::string error = error_of([&] { lowbit::train::train(small("bnn"), resume); });
  EXPECT_TRUE(contains(error, "written with --val-split 0.25")) << error;
  auto again = options("val2", 2);
  again.val_split = 0.25;
  EXPECT_EQ(lowbit::train::train(small("bnn"), again).test.confusion, result.test.confusion);
  auto bad = options("bad", 1);
  bad.val_split = 0.999;
  EXPECT_TRUE(contains(error_of([&] { lowbit::train::train(small("bnn"), bad); }),
                       "--val-split 0.999: holds out 96 of the 96 training images"));
}

TEST_F(TrainTest, ALayerNetworkResumesExactlyAndRebuildsFromItsCheckpoint) {
  auto r = small("bnn");
  lowbit::train::apply_config_text(r, R"yaml(
layers:
  - {conv: 4, bias: false}
  - batch_norm
  - residual:
    body: [{conv: 4, bias: false}, batch_norm]
  - concat: [[{depthwise_conv: 1, kernel: 3}], [{conv: 2, kernel: 1, bits: 2,
              input_quantizer: dorefa, kernel_quantizer: "dorefa(mode=weights)"}]]
  - max_pool: 2
  - batch_norm
  - {avg_pool: 2, stride: 1}
  - global_avg_pool
  - dense: classes
)yaml",
                                   "test");
  lowbit::train::train(r, options("whole", 2));
  lowbit::train::train(r, options("part", 1));
  auto resume = options("part", 2);
  resume.resume = true;
  lowbit::train::train(r, resume);
  const auto whole = lowbit::train::load_checkpoint((root_ / "whole").string());
  const auto part = lowbit::train::load_checkpoint((root_ / "part").string());
  EXPECT_EQ(whole.recipe.network.layers.size(), 9u);
  std::ostringstream a, b, c;
  a << *whole.model;
  b << *part.model;
  c << *lowbit::train::build_model(r, 8, 8, 3, 1);
  EXPECT_EQ(a.str(), c.str());
  EXPECT_EQ(a.str(), b.str());
  for (const auto& p : whole.model->named_parameters()) {
    EXPECT_TRUE(torch::equal(p.value(), part.model->named_parameters()[p.key()])) << p.key();
  }
  EXPECT_EQ(lines(root_ / "whole" / "metrics.jsonl").size(), 2u);
}
