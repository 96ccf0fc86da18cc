// ONNX export of a traced PyTorch graph (Python's lowbit.export_onnx(model, ...)): the graph comes
// as a JSON description of its nodes plus a list of tensors; each layer is rebuilt as lowbit's C++
// module and translated by the same code as the checkpoints' export (exporter.h).
#include <torch/library.h>
#include <torch/torch.h>
#include <yaml-cpp/yaml.h>

#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "exporter.h"
#include "lowbit/export.h"
#include "lowbit/io/checksum.h"
#include "lowbit/io/file.h"

namespace lowbit {
namespace exporter {
namespace {

using detail::add_value_info;
using detail::Exporter;
using detail::Graph;
using detail::Value;

[[noreturn]] void bad(const std::string& node, const std::string& what) {
  throw std::invalid_argument("cannot export node " + node + ": " + what);
}

// One node of the description, with typed reads that name the node when something is missing.
class Node {
 public:
  Node(const YAML::Node& n, const std::vector<at::Tensor>& tensors)
      : n_(n), tensors_(tensors), name_(n["name"].as<std::string>()) {}
  const std::string& name() const { return name_; }
  std::string op() const { return n_["op"].as<std::string>(); }
  template <class T>
  T get(const std::string& key) const {
    if (!n_[key]) bad(name_, "the description has no '" + key + "'");
    return n_[key].as<T>();
  }
  template <class T>
  T get(const std::string& key, const T& fallback) const {
    return n_[key] ? n_[key].as<T>() : fallback;
  }
  std::vector<std::string> inputs() const { return get<std::vector<std::string>>("inputs", {}); }
  // A tensor by role (weight, bias, ...); undefined when the node has none.
  at::Tensor tensor(const std::string& role) const {
    const YAML::Node t = n_["tensors"];
    if (!t || !t[role]) return at::Tensor();
    const auto i = t[role].as<size_t>();
    if (i >= tensors_.size()) bad(name_, "tensor index " + std::to_string(i) + " out of range");
    return tensors_[i].detach().to(torch::kFloat);
  }
  const YAML::Node& yaml() const { return n_; }

 private:
  YAML::Node n_;
  const std::vector<at::Tensor>& tensors_;
  std::string name_;
};

void copy_into(at::Tensor& dst, const at::Tensor& src, const std::string& node,
               const std::string& what) {
  if (!src.defined()) bad(node, "no " + what + " tensor");
  if (dst.sizes() != src.sizes()) bad(node, what + " has the wrong shape");
  torch::NoGradGuard no_grad;
  dst.copy_(src);
}

qat::QatOptions qat_options(const Node& n) {
  const YAML::Node o = n.yaml()["options"];
  if (!o) bad(n.name(), "no QAT options");
  qat::QatOptions q;
  q.scheme = qat::parse_scheme(o["scheme"].as<std::string>());
  q.weight_bits = o["weight_bits"].as<int64_t>();
  q.activation_bits = o["activation_bits"].as<int64_t>();
  q.bias_bits = o["bias_bits"].as<int64_t>();
  q.max_exponent = o["max_exponent"].as<int64_t>();
  q.per_channel = o["per_channel"] && o["per_channel"].as<bool>();
  q.check();
  return q;
}

// A BatchNorm1d/2d module holding a node's batch-norm tensors (prefix "bn." when folded into a
// layer).
std::shared_ptr<torch::nn::Module> batch_norm_module(const Node& n, const std::string& prefix) {
  const at::Tensor mean = n.tensor(prefix + "running_mean");
  if (!mean.defined()) return nullptr;
  const int64_t c = mean.size(0);
  const double eps = n.get<double>(prefix + "eps", 1e-5);
  auto fill = [&](auto bn) {
    copy_into(bn->running_mean, mean, n.name(), "running_mean");
    copy_into(bn->running_var, n.tensor(prefix + "running_var"), n.name(), "running_var");
    if (n.tensor(prefix + "weight").defined()) {
      copy_into(bn->weight, n.tensor(prefix + "weight"), n.name(), "batch norm weight");
      copy_into(bn->bias, n.tensor(prefix + "bias"), n.name(), "batch norm bias");
    }
    bn->eval();
    return bn.ptr();
  };
  const bool affine = n.tensor(prefix + "weight").defined();
  if (n.get<int64_t>(prefix + "dims", 2) == 2) {
    return fill(torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(c).eps(eps).affine(affine)));
  }
  return fill(torch::nn::BatchNorm1d(torch::nn::BatchNorm1dOptions(c).eps(eps).affine(affine)));
}

// A rebuilt layer takes the node's weight, bias and kernel quantizer parameters (ttq_weight's
// scales), in eval mode.
void load_layer(nn::QuantLayer& layer, torch::nn::Module& module, const Node& n) {
  copy_into(layer.weight, n.tensor("weight"), n.name(), "weight");
  if (layer.bias.defined()) copy_into(layer.bias, n.tensor("bias"), n.name(), "bias");
  if (!layer.kernel_quantizer.is_empty()) {
    for (auto& p : layer.kernel_quantizer->named_parameters(false)) {
      const std::string role = "kernel_quantizer." + p.key();
      copy_into(p.value(), n.tensor(role), n.name(), role);
    }
  }
  module.eval();
}

class GraphExporter {
 public:
  GraphExporter(Graph& g, Format format) : g_(g), e_(g, format) {}

  // Translates every node; returns the output names and shapes.
  void run(const YAML::Node& nodes, const std::vector<at::Tensor>& tensors,
           onnx::GraphProto* graph) {
    for (const YAML::Node& yn : nodes) {
      const Node n(yn, tensors);
      const std::string op = n.op();
      if (op == "input") {
        add_value_info(graph->add_input(), n.name(), n.get<std::vector<int64_t>>("shape"));
        values_[n.name()] = Value{n.name(), {}};
      } else if (op == "output") {
        const auto ins = n.inputs();
        const auto shapes = n.get<std::vector<std::vector<int64_t>>>("shapes");
        for (size_t i = 0; i < ins.size(); ++i) {
          const std::string name = ins.size() == 1 ? "output" : "output" + std::to_string(i);
          auto* out = g_.node("Identity", {value(n, ins[i]).name}, "output");
          out->set_output(0, name);
          add_value_info(graph->add_output(), name, shapes.at(i));
        }
      } else {
        values_[n.name()] = translate(n, op);
      }
    }
  }

 private:
  const Value& value(const Node& n, const std::string& name) {
    const auto it = values_.find(name);
    if (it == values_.end()) bad(n.name(), "its input " + name + " is not defined before it");
    return it->second;
  }
  std::vector<std::string> input_names(const Node& n) {
    std::vector<std::string> names;
    for (const auto& i : n.inputs()) names.push_back(value(n, i).name);
    if (names.empty()) bad(n.name(), "no inputs");
    return names;
  }

  Value translate(const Node& n, const std::string& op) {
    const auto in = input_names(n);
    const std::string& path = n.name();
    if (op == "conv") return conv(n, value(n, n.inputs()[0]));
    if (op == "linear") return linear(n, value(n, n.inputs()[0]));
    if (op == "folded") return folded(n, value(n, n.inputs()[0]));
    if (op == "activation_quant") return activation_quant(n, value(n, n.inputs()[0]));
    if (op == "batch_norm") {
      const auto bn = batch_norm_module(n, "");
      if (!bn) bad(path, "a batch norm without running statistics");
      if (n.get<int64_t>("rank", 0) != 3) return e_.batch_norm(*bn, value(n, n.inputs()[0]), path);
      // BatchNorm1d over [batch, channels, length]: the channel terms broadcast over the length.
      const auto [alpha, beta] = Exporter::bn_terms(*bn, path);
      const std::string y = g_.op(
          "Mul", {in[0], g_.initializer(path + ".bn_scale", alpha.reshape({1, -1, 1}))}, path);
      return Value{
          g_.op("Add", {y, g_.initializer(path + ".bn_shift", beta.reshape({1, -1, 1}))}, path),
          {}};
    }
    if (op == "identity") return value(n, n.inputs()[0]);
    if (op == "relu") return Value{g_.op("Relu", in, path), value(n, n.inputs()[0]).quantization};
    if (op == "clip") {
      return Value{
          g_.op("Clip", {in[0], g_.scalar(n.get<float>("min")), g_.scalar(n.get<float>("max"))},
                path),
          {}};
    }
    if (op == "add") return Value{g_.op("Add", {in.at(0), in.at(1)}, path), {}};
    if (op == "concat") {
      auto* node = g_.node("Concat", in, path);
      Graph::attr(node, "axis", n.get<int64_t>("axis"));
      return Value{node->output(0), value(n, n.inputs()[0]).quantization};
    }
    if (op == "flatten") {
      auto* node = g_.node("Flatten", in, path);
      Graph::attr(node, "axis", n.get<int64_t>("axis"));
      return Value{node->output(0), value(n, n.inputs()[0]).quantization};
    }
    if (op == "reshape") {
      const auto shape = n.get<std::vector<int64_t>>("shape");
      const std::string s = g_.initializer(path + ".shape", torch::tensor(shape));
      return Value{g_.op("Reshape", {in[0], s}, path), value(n, n.inputs()[0]).quantization};
    }
    if (op == "global_avg_pool") return Value{g_.op("GlobalAveragePool", in, path), {}};
    if (op == "max_pool" || op == "avg_pool") {
      auto* node = g_.node(op == "max_pool" ? "MaxPool" : "AveragePool", in, path);
      const auto k = n.get<std::vector<int64_t>>("kernel_shape");
      const auto p = n.get<std::vector<int64_t>>("pads");
      Graph::attr(node, "kernel_shape", k);
      Graph::attr(node, "strides", n.get<std::vector<int64_t>>("strides"));
      std::vector<int64_t> pads = p;
      pads.insert(pads.end(), p.begin(), p.end());
      Graph::attr(node, "pads", pads);
      Graph::attr(node, "ceil_mode", n.get<int64_t>("ceil_mode", 0));
      if (op == "max_pool") {
        Graph::attr(node, "dilations", n.get<std::vector<int64_t>>("dilations"));
      } else {
        Graph::attr(node, "count_include_pad", n.get<int64_t>("count_include_pad", 1));
      }
      return Value{node->output(0), op == "max_pool" ? value(n, n.inputs()[0]).quantization
                                                     : qat::TensorQuantization{}};
    }
    if (op == "common_scale") {  // one range for every input: outputs name.0, name.1, ...
      auto a = activation_quant_module(n);
      const auto ins = n.inputs();
      for (size_t i = 0; i < ins.size(); ++i) {
        values_[path + "." + std::to_string(i)] =
            e_.activation_quant(*a, value(n, ins[i]), path + "." + std::to_string(i));
      }
      return Value{};
    }
    bad(path, "operation '" + op + "' has no ONNX translation");
  }

  Value conv(const Node& n, const Value& x) {
    const auto k = n.get<std::vector<int64_t>>("kernel_size");
    if (k.size() != 2) bad(n.name(), "a convolution description must be 2-d");
    nn::QuantConv2dOptions o(n.get<int64_t>("in_channels"), n.get<int64_t>("out_channels"),
                             torch::ExpandingArray<2>({k[0], k[1]}));
    const auto s = n.get<std::vector<int64_t>>("stride");
    const auto p = n.get<std::vector<int64_t>>("padding");
    const auto d = n.get<std::vector<int64_t>>("dilation");
    o.stride(torch::ExpandingArray<2>({s[0], s[1]}))
        .padding(torch::ExpandingArray<2>({p[0], p[1]}))
        .dilation(torch::ExpandingArray<2>({d[0], d[1]}))
        .groups(n.get<int64_t>("groups"))
        .bias(n.tensor("bias").defined())
        .input_quantizer(n.get<std::string>("input_quantizer", "none"))
        .kernel_quantizer(n.get<std::string>("kernel_quantizer", "none"))
        .pad_values(n.get<double>("pad_values", 0.0));
    nn::QuantConv2d conv(o);
    load_layer(*conv, *conv, n);
    const auto bn = batch_norm_module(n, "bn.");
    return e_.quant_conv(*conv, bn.get(), x, n.name());
  }

  Value linear(const Node& n, const Value& x) {
    nn::QuantLinearOptions o(n.get<int64_t>("in_features"), n.get<int64_t>("out_features"));
    o.bias(n.tensor("bias").defined())
        .input_quantizer(n.get<std::string>("input_quantizer", "none"))
        .kernel_quantizer(n.get<std::string>("kernel_quantizer", "none"));
    nn::QuantLinear linear(o);
    load_layer(*linear, *linear, n);
    const auto bn = batch_norm_module(n, "bn.");
    return e_.quant_linear(*linear, bn.get(), x, n.name());
  }

  Value folded(const Node& n, const Value& x) {
    qat::FoldedLayerImpl::Geometry geo;
    geo.conv = n.get<bool>("conv");
    if (geo.conv) {
      geo.stride = n.get<std::vector<int64_t>>("stride");
      geo.padding = n.get<std::vector<int64_t>>("padding");
      geo.dilation = n.get<std::vector<int64_t>>("dilation");
      geo.groups = n.get<int64_t>("groups");
      if (geo.stride.size() != 2) bad(n.name(), "only 2-d convolutions are exported");
    }
    const at::Tensor gamma = n.tensor("gamma");
    qat::FoldedLayer f(qat_options(n), geo, n.tensor("weight"), n.tensor("bias"), gamma,
                       n.tensor("beta"), n.tensor("running_mean"), n.tensor("running_var"),
                       n.get<double>("eps", 1e-5), 0.1);
    f->eval();
    return e_.folded_layer(*f, x, n.name());
  }

  qat::ActivationQuant activation_quant_module(const Node& n) {
    qat::ActivationQuant a(qat_options(n));
    copy_into(a->min, n.tensor("min"), n.name(), "min");
    copy_into(a->max, n.tensor("max"), n.name(), "max");
    a->observed.fill_(n.get<bool>("observed") ? 1 : 0);
    a->eval();
    return a;
  }

  Value activation_quant(const Node& n, const Value& x) {
    auto a = activation_quant_module(n);
    return e_.activation_quant(*a, x, n.name());
  }

  Graph& g_;
  Exporter e_;
  std::map<std::string, Value> values_;
};

}  // namespace

std::string graph_to_onnx(const std::string& description, const std::vector<at::Tensor>& tensors,
                          Format format, const std::string& model_name) {
  YAML::Node d;
  try {
    d = YAML::Load(description);
  } catch (const YAML::Exception& e) {
    throw std::invalid_argument(std::string("export: the graph description is not JSON: ") +
                                e.what());
  }
  torch::NoGradGuard no_grad;
  onnx::ModelProto proto;
  onnx::GraphProto* graph = detail::start_model(
      proto, model_name,
      "lowbit " + model_name + " (" + format_name(format) + "), exported from a PyTorch model");
  Graph g(graph);
  try {
    GraphExporter(g, format).run(d["nodes"], tensors, graph);
  } catch (const YAML::Exception& e) {
    throw std::invalid_argument(std::string("export: a malformed graph description: ") + e.what());
  }
  return detail::finish_model(proto, g, format, model_name);
}

}  // namespace exporter
}  // namespace lowbit

namespace {

// (0, "") on success, else (1, message) for a model the format cannot express or bad arguments,
// (3, message) when the file cannot be written, (2, message) otherwise; Python raises by the code.
std::tuple<int64_t, std::string> export_graph_op(const std::string& description,
                                                 std::vector<at::Tensor> tensors,
                                                 const std::string& out, const std::string& format,
                                                 const std::string& name) {
  try {
    const auto f = lowbit::exporter::parse_format(format);
    const std::string bytes = lowbit::exporter::graph_to_onnx(description, tensors, f, name);
    lowbit::io::write_file_atomically(out, bytes);
    return {0, ""};
  } catch (const std::invalid_argument& e) {
    return {1, e.what()};
  } catch (const lowbit::io::IoError& e) {
    return {3, e.what()};
  } catch (const c10::Error& e) {
    return {1, e.what_without_backtrace()};
  } catch (const std::exception& e) {
    return {2, e.what()};
  }
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(lowbit, m) {
  m.def(
      "_export_graph(str description, Tensor[] tensors, str out, str format, str name) -> (int, "
      "str)",
      &export_graph_op);
}
