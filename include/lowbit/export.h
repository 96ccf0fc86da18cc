// Export of trained networks to ONNX: QONNX (Quant / BipolarQuant nodes, for low-bit toolchains)
// or standard operators only (for onnxruntime); docs/export.md.
#pragma once

#include <torch/nn/modules/container/sequential.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace lowbit {
namespace exporter {

// kQonnx: standard operators with the low-bit tensors as QONNX Quant / BipolarQuant nodes (domain
// qonnx.custom_op.general). kStandard: only standard ONNX operators (opset 13): QuantizeLinear /
// DequantizeLinear for 8-bit quantization-aware networks, the quantizers written out with
// standard operators otherwise.
enum class Format { kQonnx, kStandard };
// "qonnx" or "standard"; std::invalid_argument naming --format otherwise.
Format parse_format(const std::string& name);
std::string format_name(Format format);

// The graph's input: images [batch, channels, height, width] of raw pixel values (0 to 255, as
// float32). The graph standardises them as training did: (x / 255 - mean) / std.
struct InputSpec {
  int64_t channels = 1, height = 28, width = 28;
  // The standardisation of lowbit/batches.h: one mean and std per channel (or one for all).
  std::vector<double> mean{0.0}, std{1.0};
};

// The ONNX model (a serialised ModelProto, checked by ONNX's checker) of an eval-mode network of
// lowbit's layers. Batch norm is folded; dropout, observers and latent weights do not appear.
// Throws std::invalid_argument naming the module (its path in the network, e.g. "5.body.0") and
// the layer or quantizer that the format cannot express.
std::string to_onnx(torch::nn::Sequential& model, const InputSpec& input, int64_t num_classes,
                    Format format, const std::string& model_name);

// The ONNX model of a traced PyTorch graph: `description` is JSON, {"nodes": [{"op", "name",
// "inputs", ..., "tensors": {role: index into tensors}}]}, as Python's lowbit.export_onnx writes it
// (python/lowbit/export.py lists the operations). Throws std::invalid_argument naming the node.
std::string graph_to_onnx(const std::string& description, const std::vector<at::Tensor>& tensors,
                          Format format, const std::string& model_name);

struct ExportOptions {
  Format format = Format::kQonnx;
  // An IDX data set to recompute the input standardisation from, for checkpoints that do not
  // store it (written before it was stored); unused otherwise.
  std::string data_dir;
};

struct ExportResult {
  std::string path;
  Format format = Format::kQonnx;
  int64_t bytes = 0;
  std::map<std::string, int64_t> op_counts;  // nodes per operator type
  std::vector<std::string> warnings;         // what the caller should show (an unused --data)
};

// Exports the model of a checkpoint (a training output directory or a checkpoint file) to `out`,
// written atomically (a temporary file in the same directory, then renamed).
ExportResult export_checkpoint(const std::string& checkpoint, const std::string& out,
                               const ExportOptions& options);

// Nodes per operator type of a serialised ONNX model (for reports and tests).
std::map<std::string, int64_t> op_counts(const std::string& serialized_model);

}  // namespace exporter
}  // namespace lowbit

// The C entry point behind the Python face (lowbit.export_onnx): returns 0 on success, else writes
// the error message (NUL-terminated, truncated to error_size) and returns 1 for bad arguments or
// input, 3 when a file cannot be written or read (io::IoError: a full disk, ...), 2 for other
// failures.
extern "C" int lowbit_export_onnx(const char* checkpoint, const char* out, const char* format,
                                  const char* data_dir, char* error, size_t error_size);
