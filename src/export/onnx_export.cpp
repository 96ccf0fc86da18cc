// ONNX export of trained networks: the module walk, batch-norm folding and the quantizer nodes of
// both formats (docs/export.md says what each node means).
#include <onnx/checker.h>
#include <onnx/onnx_pb.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "exporter.h"
#include "lowbit/data/dataset.h"
#include "lowbit/export.h"
#include "lowbit/io/checksum.h"
#include "lowbit/io/file.h"
#include "lowbit/network.h"
#include "lowbit/nn.h"
#include "lowbit/qat.h"
#include "lowbit/train.h"

namespace lowbit {
namespace exporter {
namespace {

namespace fs = std::filesystem;
using detail::add_value_info;
using detail::Exporter;
using detail::Graph;
using detail::kOpset;
using detail::kQonnxDomain;
using detail::Value;

}  // namespace

namespace detail {

onnx::GraphProto* start_model(onnx::ModelProto& proto, const std::string& model_name,
                              const std::string& doc) {
  proto.set_ir_version(7);  // opset 13's
  proto.set_producer_name("lowbit");
  proto.set_producer_version("0.1");
  proto.set_model_version(1);
  proto.set_doc_string(doc);
  onnx::GraphProto* graph = proto.mutable_graph();
  graph->set_name(model_name);
  return graph;
}

void add_value_info(onnx::ValueInfoProto* v, const std::string& name,
                    const std::vector<int64_t>& dims) {
  v->set_name(name);
  auto* t = v->mutable_type()->mutable_tensor_type();
  t->set_elem_type(onnx::TensorProto::FLOAT);
  auto* shape = t->mutable_shape();
  shape->add_dim()->set_dim_param("batch");
  for (int64_t d : dims) shape->add_dim()->set_dim_value(d);
}

std::string finish_model(onnx::ModelProto& proto, const Graph& g, Format format,
                         const std::string& model_name) {
  auto* opset = proto.add_opset_import();
  opset->set_domain("");
  opset->set_version(kOpset);
  if (g.uses_qonnx) {
    auto* q = proto.add_opset_import();
    q->set_domain(kQonnxDomain);
    q->set_version(1);
  }
  auto* meta = proto.add_metadata_props();
  meta->set_key("lowbit.format");
  meta->set_value(format_name(format));
  meta = proto.add_metadata_props();
  meta->set_key("lowbit.model");
  meta->set_value(model_name);

  try {
    onnx::checker::check_model(proto);
  } catch (const std::exception& err) {
    throw std::logic_error(std::string("export: the graph fails ONNX's checker: ") + err.what());
  }
  std::string bytes;
  if (!proto.SerializeToString(&bytes)) {
    throw std::runtime_error("export: the model is too large to serialise (over 2 GiB)");
  }
  // A CRC-32 of the file as one more metadata_props entry, verified by lowbit's engine.
  return bytes + io::onnx_checksum_trailer(bytes);
}

}  // namespace detail

Format parse_format(const std::string& name) {
  if (name == "qonnx") return Format::kQonnx;
  if (name == "standard") return Format::kStandard;
  throw std::invalid_argument("--format: unknown format '" + name + "' (known: qonnx, standard)");
}

std::string format_name(Format format) { return format == Format::kQonnx ? "qonnx" : "standard"; }

std::string to_onnx(torch::nn::Sequential& model, const InputSpec& input, int64_t num_classes,
                    Format format, const std::string& model_name) {
  TORCH_CHECK_VALUE(input.channels > 0 && input.height > 0 && input.width > 0,
                    "export: the input shape must be positive");
  const auto channels_of = [&](const std::vector<double>& v) {
    return static_cast<int64_t>(v.size()) == input.channels || v.size() == 1;
  };
  TORCH_CHECK_VALUE(channels_of(input.mean) && channels_of(input.std),
                    "export: the input standardisation needs one mean and std per channel");
  for (const double s : input.std) {
    TORCH_CHECK_VALUE(s > 0, "export: the input standard deviation must be positive");
  }
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();

  onnx::ModelProto proto;
  onnx::GraphProto* graph =
      detail::start_model(proto, model_name,
                          "lowbit " + model_name + " (" + format_name(format) +
                              "); input: raw pixel values 0..255, NCHW float32");
  Graph g(graph);
  add_value_info(graph->add_input(), "image", {input.channels, input.height, input.width});

  // The standardisation of train::to_tensors, in its order: / 255, - mean, / std.
  std::string x = g.op("Div", {"image", g.scalar(255.0f)}, "input");
  // One value for every channel: a scalar; else one per channel, [C, 1, 1].
  const auto constant = [&](const std::vector<double>& v, const char* hint) {
    const bool same = std::all_of(v.begin(), v.end(), [&](double a) { return a == v[0]; });
    if (same) return g.scalar(static_cast<float>(v[0]));
    return g.initializer(std::string("input.") + hint,
                         torch::tensor(std::vector<float>(v.begin(), v.end()))
                             .reshape({static_cast<int64_t>(v.size()), 1, 1}));
  };
  x = g.op("Sub", {x, constant(input.mean, "mean")}, "input");
  x = g.op("Div", {x, constant(input.std, "std")}, "input");

  Exporter e(g, format);
  const Value logits = e.sequential(model, Value{x, {}}, "");
  auto* out = g.node("Identity", {logits.name}, "output");
  out->set_output(0, "logits");
  add_value_info(graph->add_output(), "logits", {num_classes});

  if (was_training) model->train();
  return detail::finish_model(proto, g, format, model_name);
}

std::map<std::string, int64_t> op_counts(const std::string& serialized_model) {
  onnx::ModelProto proto;
  if (!proto.ParseFromString(serialized_model)) {
    throw std::invalid_argument("not a serialised ONNX model");
  }
  std::map<std::string, int64_t> counts;
  for (const auto& n : proto.graph().node()) ++counts[n.op_type()];
  return counts;
}

ExportResult export_checkpoint(const std::string& checkpoint, const std::string& out,
                               const ExportOptions& options) {
  if (out.empty()) throw std::invalid_argument("--out: no output file given");
  const fs::path out_path(out);
  const fs::path dir = out_path.has_parent_path() ? out_path.parent_path() : fs::path(".");
  if (!fs::is_directory(dir)) {
    throw std::invalid_argument("--out: " + out + ": the directory " + dir.string() +
                                " does not exist");
  }
  if (fs::is_directory(out_path)) {
    throw std::invalid_argument("--out: " + out + " is a directory; name the .onnx file");
  }
  train::Checkpoint c = train::load_checkpoint(checkpoint);
  io::check_not_input(out, c.file, "the checkpoint read");
  ExportResult r;
  if (c.has_normalization && !options.data_dir.empty()) {
    r.warnings.push_back("--data " + options.data_dir + " is not used: " + c.file +
                         " stores the standardisation of its training data");
  }
  InputSpec input;
  input.channels = c.channels;
  input.height = c.height;
  input.width = c.width;
  if (c.has_normalization) {
    input.mean = c.standardisation.mean;
    input.std = c.standardisation.std;
  } else if (!options.data_dir.empty()) {
    const train::Standardisation s =
        train::channel_statistics(data::load_dataset(options.data_dir).train.images);
    input.mean = s.mean;
    input.std = s.std;
  } else {
    throw std::invalid_argument(
        c.file +
        ": the checkpoint does not store its input standardisation (written before "
        "lowbit stored it); pass --data with the training data set to recompute it");
  }
  const std::string bytes = to_onnx(c.model, input, c.num_classes, options.format, c.recipe.name);
  io::write_file_atomically(out, bytes);  // also removes what a killed export left
  r.path = out;
  r.format = options.format;
  r.bytes = static_cast<int64_t>(bytes.size());
  r.op_counts = op_counts(bytes);
  return r;
}

}  // namespace exporter
}  // namespace lowbit

extern "C" int lowbit_export_onnx(const char* checkpoint, const char* out, const char* format,
                                  const char* data_dir, char* error, size_t error_size) {
  auto report = [&](const char* message, int code) {
    if (error && error_size > 0) {
      std::strncpy(error, message, error_size - 1);
      error[error_size - 1] = '\0';
    }
    return code;
  };
  if (!checkpoint || !out) return report("checkpoint and out must be given", 1);
  try {
    lowbit::exporter::ExportOptions o;
    o.format = lowbit::exporter::parse_format(format ? format : "qonnx");
    o.data_dir = data_dir ? data_dir : "";
    lowbit::exporter::export_checkpoint(checkpoint, out, o);
    return report("", 0);
  } catch (const std::invalid_argument& e) {  // bad arguments, or a model the format cannot hold
    return report(e.what(), 1);
  } catch (const lowbit::io::IoError& e) {  // a full disk, a read-only directory, ...
    return report(e.what(), 3);
  } catch (const std::runtime_error& e) {  // a missing, unreadable or corrupt checkpoint
    return report(e.what(), 1);
  } catch (const c10::Error& e) {
    return report(e.what_without_backtrace(), 1);
  } catch (const std::exception& e) {
    return report(e.what(), 2);
  }
}
