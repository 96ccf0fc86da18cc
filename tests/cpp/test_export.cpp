// The ONNX exporter from C++: graph structure of both formats (batch norm folded, quantizer nodes,
// opset imports) and errors naming the module. Numerics against onnxruntime: test_export.py.
#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>
#include <torch/torch.h>

#include <map>
#include <stdexcept>
#include <string>

#include "lowbit/export.h"
#include "lowbit/network.h"
#include "lowbit/nn.h"

namespace {

using lowbit::exporter::Format;

onnx::ModelProto parse(const std::string& bytes) {
  onnx::ModelProto m;
  EXPECT_TRUE(m.ParseFromString(bytes));
  return m;
}

// A small recipe-like network with batch norms holding non-trivial statistics.
torch::nn::Sequential network(const std::string& input, const std::string& kernel) {
  lowbit::nn::NetworkOptions o;
  o.blocks = {4, 0, 8, 0};
  o.hidden = 16;
  o.height = o.width = 8;
  o.input_quantizer = input;
  o.kernel_quantizer = kernel;
  o.activation = input == "none" ? "relu" : "none";
  o.pool_before_batchnorm = input != "none";  // as the recipes: float folds, binary pools first
  auto net = lowbit::nn::build_network(o);
  torch::manual_seed(0);
  for (auto& b : net->named_buffers()) {
    if (b.key().find("running_var") != std::string::npos) b.value().uniform_(0.5, 2.0);
    if (b.key().find("running_mean") != std::string::npos) b.value().normal_();
  }
  net->eval();
  return net;
}

std::string error_of(torch::nn::Sequential net, Format format) {
  try {
    lowbit::exporter::to_onnx(net, {1, 8, 8, {0.3}, {0.4}}, 10, format, "t");
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "no error";
}

TEST(Export, FloatNetworkFoldsEveryBatchNormIntoItsLayer) {
  auto net = network("none", "none");
  const auto m = parse(
      lowbit::exporter::to_onnx(net, {1, 8, 8, {0.3}, {0.4}}, 10, Format::kStandard, "float"));
  std::map<std::string, int> ops;
  for (const auto& n : m.graph().node()) ++ops[n.op_type()];
  EXPECT_EQ(ops["BatchNormalization"], 0);
  EXPECT_EQ(ops["Mul"], 0);  // folded into the convolutions and the dense layer, not kept apart
  EXPECT_EQ(ops["Conv"], 2);
  EXPECT_EQ(ops["Gemm"], 2);
  EXPECT_EQ(ops["Relu"], 3);
  ASSERT_EQ(m.opset_import_size(), 1);
  EXPECT_EQ(m.opset_import(0).domain(), "");
  EXPECT_EQ(m.opset_import(0).version(), 13);
  EXPECT_EQ(m.graph().input(0).name(), "image");
  EXPECT_EQ(m.graph().output(0).name(), "logits");
}

TEST(Export, FoldedWeightsAreTheLayerTimesTheBatchNormScale) {
  torch::manual_seed(1);
  lowbit::nn::QuantConv2d conv(lowbit::nn::QuantConv2dOptions(1, 3, 3).bias(false));
  torch::nn::BatchNorm2d bn(3);
  bn->running_var.uniform_(0.5, 2.0);
  bn->running_mean.normal_();
  bn->weight.data().normal_();
  bn->bias.data().normal_();
  torch::nn::Sequential net(conv, bn, torch::nn::Flatten());
  net->eval();
  const auto m =
      parse(lowbit::exporter::to_onnx(net, {1, 4, 4, {0}, {1}}, 12, Format::kStandard, "fold"));
  const onnx::TensorProto* w = nullptr;
  const onnx::TensorProto* b = nullptr;
  for (const auto& t : m.graph().initializer()) {
    if (t.name() == "0.weight") w = &t;
    if (t.name() == "0.bias") b = &t;
  }
  ASSERT_NE(w, nullptr);
  ASSERT_NE(b, nullptr);
  const float* wd = reinterpret_cast<const float*>(w->raw_data().data());
  const float* bd = reinterpret_cast<const float*>(b->raw_data().data());
  for (int c = 0; c < 3; ++c) {
    const float var = bn->running_var[c].item<float>(), mean = bn->running_mean[c].item<float>();
    const float gamma = bn->weight[c].item<float>(), beta = bn->bias[c].item<float>();
    const float alpha = 1.0f / std::sqrt(var + 1e-5f) * gamma;
    for (int k = 0; k < 9; ++k) {
      EXPECT_EQ(wd[c * 9 + k], conv->weight.view({3, 9})[c][k].item<float>() * alpha);
    }
    EXPECT_EQ(bd[c], beta - mean * alpha);
  }
}

TEST(Export, BinaryLayersKeepTheirKernelAndScaleTheOutput) {
  auto net = network("ste_sign", "ste_sign");
  const auto q =
      parse(lowbit::exporter::to_onnx(net, {1, 8, 8, {0.3}, {0.4}}, 10, Format::kQonnx, "bnn"));
  std::map<std::string, int> ops;
  for (const auto& n : q.graph().node()) {
    // Not counted: the standard operators that decode the packed binary kernels.
    if (n.op_type() == "BipolarQuant" || n.name().find(".weight/") == std::string::npos)
      ++ops[n.op_type()];
    if (n.op_type() == "BipolarQuant") {
      EXPECT_EQ(n.domain(), "qonnx.custom_op.general");
    }
  }
  EXPECT_EQ(ops["BipolarQuant"], 4);  // the second conv and the hidden layer: input and kernel
  EXPECT_EQ(ops["Mul"], 3);  // every batch norm (after a pool or a binary layer): x * alpha + beta
  // Both binary kernels at 1 bit per weight: uint8 initializers of ceil(n / 8) bytes.
  int packed = 0;
  for (const auto& t : q.graph().initializer()) {
    if (t.name().size() > 12 && t.name().substr(t.name().size() - 12) == ".weight.bits") {
      EXPECT_EQ(t.data_type(), onnx::TensorProto::UINT8);
      int64_t n = 1;
      for (int64_t d : t.dims()) n *= d;
      EXPECT_EQ(static_cast<int64_t>(t.raw_data().size()), n);
      ++packed;
    }
  }
  EXPECT_EQ(packed, 2);
  ASSERT_EQ(q.opset_import_size(), 2);
  EXPECT_EQ(q.opset_import(1).domain(), "qonnx.custom_op.general");
  const auto s =
      parse(lowbit::exporter::to_onnx(net, {1, 8, 8, {0.3}, {0.4}}, 10, Format::kStandard, "bnn"));
  for (const auto& n : s.graph().node()) EXPECT_EQ(n.domain(), "") << n.op_type();
  EXPECT_EQ(s.opset_import_size(), 1);
}

TEST(Export, ErrorsNameTheModuleAndTheQuantizer) {
  EXPECT_NE(error_of(torch::nn::Sequential(torch::nn::Flatten(), torch::nn::Linear(64, 10)),
                     Format::kStandard)
                .find("module 1: the format has no translation for torch::nn::Linear"),
            std::string::npos);
  const std::string input = error_of(network("binary_mean_scaling", "ste_sign"), Format::kQonnx);
  EXPECT_NE(input.find("module 3 (input quantizer binary_mean_scaling)"), std::string::npos)
      << input;
  const std::string ttq = error_of(network("ste_sign", "ttq_weight"), Format::kQonnx);
  EXPECT_NE(ttq.find("(kernel quantizer ttq_weight"), std::string::npos) << ttq;
  EXPECT_EQ(error_of(network("ste_sign", "ttq_weight"), Format::kStandard), "no error");
}

TEST(Export, FormatNames) {
  EXPECT_EQ(lowbit::exporter::parse_format("qonnx"), Format::kQonnx);
  EXPECT_EQ(lowbit::exporter::parse_format("standard"), Format::kStandard);
  EXPECT_EQ(lowbit::exporter::format_name(Format::kStandard), "standard");
  try {
    lowbit::exporter::parse_format("tflite");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("--format: unknown format 'tflite'"), std::string::npos);
  }
}

TEST(Export, MissingCheckpointAndOutputDirectoryAreNamed) {
  try {
    lowbit::exporter::export_checkpoint("/nonexistent/run", "/tmp/lowbit-export-test.onnx", {});
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/run"), std::string::npos);
  }
  try {
    lowbit::exporter::export_checkpoint("/nonexistent/run", "/nonexistent/dir/m.onnx", {});
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("--out"), std::string::npos);
  }
}

}  // namespace

namespace {

// The graph description of Python's lowbit.export_onnx(model, ...), written out by hand.
std::string graph_error(const std::string& description, const std::vector<at::Tensor>& tensors) {
  try {
    lowbit::exporter::graph_to_onnx(description, tensors, Format::kStandard, "t");
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(ExportGraph, ALinearLayerAndAReluFromTheirDescription) {
  const at::Tensor w = torch::arange(6, torch::kFloat).reshape({2, 3}), b = torch::ones({2});
  const std::string d =
      R"({"nodes": [{"op": "input", "name": "x", "shape": [3]},
        {"op": "linear", "name": "fc", "inputs": ["x"], "in_features": 3, "out_features": 2,
         "input_quantizer": "none", "kernel_quantizer": "none", "tensors": {"weight": 0, "bias": 1}},
        {"op": "relu", "name": "r", "inputs": ["fc"]},
        {"op": "output", "name": "output", "inputs": ["r"], "shapes": [[2]]}]})";
  const std::string bytes = lowbit::exporter::graph_to_onnx(d, {w, b}, Format::kStandard, "t");
  const auto counts = lowbit::exporter::op_counts(bytes);
  EXPECT_EQ(counts.at("Gemm"), 1);
  EXPECT_EQ(counts.at("Relu"), 1);
}

TEST(ExportGraph, ErrorsNameTheNode) {
  EXPECT_NE(graph_error("{nodes: [", {}).find("not JSON"), std::string::npos);
  const std::string unknown =
      R"({"nodes": [{"op": "input", "name": "x", "shape": [3]},
        {"op": "softmax", "name": "sm", "inputs": ["x"]}]})";
  EXPECT_NE(graph_error(unknown, {}).find("node sm: operation 'softmax'"), std::string::npos);
  const std::string undefined = R"({"nodes": [{"op": "relu", "name": "r", "inputs": ["y"]}]})";
  EXPECT_NE(graph_error(undefined, {}).find("its input y"), std::string::npos);
  const std::string no_tensor =
      R"({"nodes": [{"op": "input", "name": "x", "shape": [3]},
        {"op": "linear", "name": "fc", "inputs": ["x"], "in_features": 3, "out_features": 2,
         "tensors": {"weight": 4}}]})";
  EXPECT_NE(graph_error(no_tensor, {torch::ones({2, 3})}).find("node fc: tensor index 4"),
            std::string::npos);
}

}  // namespace
