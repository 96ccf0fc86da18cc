// Networks written layer by layer in config files: every shipped recipe config builds its recipe's
// network exactly; layers, blocks and quantizers build what they say (shapes, options, outputs
// against torch written out here); a checkpoint rebuilds them; errors name the layer.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "lowbit/network.h"
#include "lowbit/nn.h"
#include "lowbit/train.h"

namespace {

namespace fs = std::filesystem;

std::string printed(torch::nn::Module& m) {
  std::ostringstream s;
  s << m;
  return s.str();
}

fs::path write_config(const std::string& name, const std::string& text) {
  const fs::path p = fs::temp_directory_path() /
                     ("lowbit-layers-" + std::to_string(::getpid()) + "-" + name + ".yaml");
  std::ofstream(p) << text;
  return p;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "no error";
}

TEST(NetworkLayers, EveryShippedRecipeConfigBuildsItsRecipesNetwork) {
  int checked = 0;
  for (const auto& entry :
       fs::directory_iterator(fs::path(LOWBIT_SOURCE_DIR) / "examples" / "recipes")) {
    const std::string name = entry.path().stem().string();
    const auto from_config = lowbit::train::recipe_from("", entry.path().string());
    ASSERT_EQ(from_config.name, name) << entry.path();
    ASSERT_FALSE(from_config.network.layers.empty()) << entry.path();
    const auto recipe = lowbit::train::recipe(name);
    for (const auto& [h, w, c] : {std::tuple{28, 28, 1}, std::tuple{32, 32, 3}}) {
      torch::manual_seed(0);
      auto a = lowbit::train::build_model(from_config, h, w, 10, c);
      torch::manual_seed(0);
      auto b = lowbit::train::build_model(recipe, h, w, 10, c);
      EXPECT_EQ(printed(*a), printed(*b)) << name;
      const auto pa = a->named_parameters(), pb = b->named_parameters();
      ASSERT_EQ(pa.size(), pb.size()) << name;
      for (const auto& p : pb) {
        ASSERT_TRUE(pa.contains(p.key())) << name << " " << p.key();
        EXPECT_TRUE(torch::equal(pa[p.key()], p.value())) << name << " " << p.key();
      }
      EXPECT_EQ(lowbit::nn::summary(*a, {1, c, h, w}).to_string(),
                lowbit::nn::summary(*b, {1, c, h, w}).to_string());
    }
    ++checked;
  }
  EXPECT_EQ(checked, 9);
}

TEST(NetworkLayers, BlocksPoolsAndQuantizersBuildWhatTheySay) {
  const auto path = write_config("blocks", R"(
input_quantizer: ste_sign
kernel_quantizer: dorefa(k_bit=2, mode=weights)
layers:
  - {conv: 8, kernel: 3, stride: 2}           # first: float
  - batch_norm
  - {depthwise_conv: 2, kernel: 3, bits: 4}   # multiplier 2: 16 channels; dorefa at 4 bits
  - relu
  - residual:
    body:
      - {conv: 16, input_quantizer: none, kernel_quantizer: ste_sign}
      - batch_norm
  - concat:
      - [{conv: 4, kernel: 1}]
      - [{max_pool: 3, stride: 1, padding: 1}]
  - {avg_pool: 2}
  - global_avg_pool
  - dropout: 0.5
  - dense: classes
)");
  const auto r = lowbit::train::recipe_from("float", path.string());
  torch::manual_seed(1);
  auto net = lowbit::train::build_model(r, 12, 12, 5, 3);
  net->eval();
  const auto x = torch::randn({2, 3, 12, 12});
  EXPECT_EQ(net->forward(x).sizes(), (std::vector<int64_t>{2, 5}));
  const auto layers = lowbit::nn::quant_layers(*net);
  ASSERT_EQ(layers.size(), 5u);
  // The first conv has no quantizers; the depthwise conv takes the network's, at 4 bits.
  auto* first = net[0]->as<lowbit::nn::QuantConv2dImpl>();
  ASSERT_NE(first, nullptr);
  EXPECT_TRUE(first->input_quantizer.is_empty());
  EXPECT_EQ(first->weight.sizes(), (std::vector<int64_t>{8, 3, 3, 3}));
  auto* dw = net[2]->as<lowbit::nn::QuantConv2dImpl>();
  ASSERT_NE(dw, nullptr);
  EXPECT_EQ(dw->weight.sizes(), (std::vector<int64_t>{16, 1, 3, 3}));
  EXPECT_EQ(dw->kernel_precision(), 4);
  EXPECT_EQ(dw->input_precision(), 1);
  // The residual block's conv: own quantizers (float input, binary kernel).
  auto* block = net[4]->as<lowbit::nn::ShortcutBlockImpl>();
  ASSERT_NE(block, nullptr);
  auto* inner = block->body[0]->as<lowbit::nn::QuantConv2dImpl>();
  EXPECT_EQ(inner->input_precision(), 32);
  EXPECT_EQ(inner->kernel_precision(), 1);
  // The output, computed again with torch's own functions from the modules' tensors.
  auto* concat = net[5]->as<lowbit::nn::ConcatBlockImpl>();
  ASSERT_NE(concat, nullptr);
  torch::NoGradGuard no_grad;
  auto h = first->forward(x);
  EXPECT_EQ(h.sizes(), (std::vector<int64_t>{2, 8, 6, 6}));  // (12 + 2 - 3) / 2 + 1
  h = net[1]->as<torch::nn::BatchNorm2dImpl>()->forward(h);
  h = torch::relu(dw->forward(h));
  h = block->forward(h);
  h = torch::cat({concat->branches[0]->forward(h), torch::max_pool2d(h, {3, 3}, {1, 1}, {1, 1})},
                 1);
  EXPECT_EQ(h.size(1), 20);
  h = torch::avg_pool2d(h, {2, 2}).mean({2, 3});
  auto* dense = net[net->size() - 1]->as<lowbit::nn::QuantLinearImpl>();
  ASSERT_NE(dense, nullptr);
  EXPECT_TRUE(torch::allclose(dense->forward(h), net->forward(x), 1e-5, 1e-6));
}

TEST(NetworkLayers, ErrorsNameTheLayerAndTheFile) {
  const auto build = [](const std::string& layers) {
    const auto path = write_config("bad", "layers:\n" + layers);
    return error_of([&] {
      const auto r = lowbit::train::recipe_from("float", path.string());
      lowbit::train::build_model(r, 8, 8, 3, 1);
    });
  };
  EXPECT_NE(
      build("  - conv: 4\n  - dense: 3\n")
          .find("layers[1] (dense): needs features; its input is 4x8x8: put a flatten before it"),
      std::string::npos);
  EXPECT_NE(
      build("  - {conv: 4, kernel: 9, padding: 0}\n  - flatten\n  - dense: classes\n")
          .find("layers[0] (conv): its input 1x8x8 (padding 0) is smaller than its 9x9 window"),
      std::string::npos);
  EXPECT_NE(build("  - conv: 4\n  - flatten\n  - dense: 7\n")
                .find("gives 7 features, not the 3 class scores"),
            std::string::npos);
  EXPECT_NE(build("  - residual:\n    body: [{conv: 4}]\n  - flatten\n  - dense: classes\n")
                .find("layers[0] (residual): its body gives 4x8x8 but its shortcut (the identity) "
                      "gives 1x8x8"),
            std::string::npos);
  EXPECT_NE(build("  - convolution: 4\n").find("layers[0]: no layer type (conv, depthwise_conv"),
            std::string::npos);
  EXPECT_NE(
      build("  - {conv: 4, size: 3}\n").find("layers[0]: unknown key 'size' for conv (it takes"),
      std::string::npos);
  EXPECT_NE(
      build("  - {conv: 4, kernel_quantizer: sign(x=1)}\n").find("layers[0]: kernel_quantizer:"),
      std::string::npos);
  EXPECT_NE(
      build("  - {conv: 4, bits: 2, kernel_quantizer: ste_sign}\n  - flatten\n  - dense: classes\n")
          .find("layers[0] (conv): bits 2: neither of its quantizers (none, ste_sign) takes a bit "
                "width"),
      std::string::npos);
  EXPECT_NE(build("  - conv: 0\n").find("conv: '0' is not an integer >= 1"), std::string::npos);
  EXPECT_NE(build("  - concat: [[relu]]\n").find("concat needs a list of two or more branches"),
            std::string::npos);
  EXPECT_NE(build("  - max_pool: 2\n  - max_pool: 2\n  - max_pool: 2\n  - max_pool: 2\n")
                .find("layers[3] (max_pool): its input 1x1x1"),
            std::string::npos);
  EXPECT_NE(build("  - []\n").find("layers[0]: expected a layer"), std::string::npos);
  EXPECT_NE(build("  []\n").find("layers: an empty list"), std::string::npos);
}

}  // namespace

namespace {
TEST(NetworkLayers, WidthMultiplierScalesChannelsAndUnitsButNotClasses) {
  const auto path = write_config("width", R"(
width_multiplier: 0.5
layers:
  - conv: 10
  - {depthwise_conv: 2}
  - flatten
  - dense: 7
  - dense: classes
)");
  const auto r = lowbit::train::recipe_from("float", path.string());
  auto net = lowbit::train::build_model(r, 4, 4, 3, 1);
  EXPECT_EQ(net[0]->as<lowbit::nn::QuantConv2dImpl>()->weight.size(0), 5);
  EXPECT_EQ(net[1]->as<lowbit::nn::QuantConv2dImpl>()->weight.size(0), 10);  // 5 x multiplier 2
  EXPECT_EQ(net[3]->as<lowbit::nn::QuantLinearImpl>()->weight.size(0), 4);   // round(3.5)
  EXPECT_EQ(net[4]->as<lowbit::nn::QuantLinearImpl>()->weight.size(0), 3);
}
}  // namespace

namespace {
TEST(NetworkLayers, TheFirstAndLastQuantizableLayersFollowTheRecipesRule) {
  const auto path =
      write_config("mlp", "layers: [flatten, {dense: 8}, {dense: 8}, {dense: classes}]\n");
  auto r = lowbit::train::recipe_from("bnn", path.string());  // first and last stay float
  auto net = lowbit::train::build_model(r, 4, 4, 3, 1);
  const auto precision = [&](size_t i) {
    return net[i]->as<lowbit::nn::QuantLinearImpl>()->kernel_precision();
  };
  EXPECT_EQ(precision(1), 32);
  EXPECT_EQ(precision(2), 1);
  EXPECT_EQ(precision(3), 32);
  r.network.quantize_first_convolution = r.network.quantize_last_convolution = true;
  net = lowbit::train::build_model(r, 4, 4, 3, 1);
  EXPECT_EQ(precision(1), 1);
  EXPECT_EQ(precision(3), 1);
}
}  // namespace
