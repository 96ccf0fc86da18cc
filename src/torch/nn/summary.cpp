// Larq's model summary for lowbit models: parameters and MACs by bit width, memory, compression.
#include <torch/torch.h>

#include <algorithm>
#include <functional>
#include <iomanip>
#include <set>
#include <sstream>
#include <unordered_map>

#include "lowbit/network.h"
#include "lowbit/nn.h"

namespace lowbit {
namespace nn {
namespace {

std::string shape_text(const std::vector<int64_t>& s) {
  if (s.empty()) return "?";
  std::string t = "(-1";  // the batch dimension, as Larq prints it
  for (size_t d = 1; d < s.size(); ++d) t += ", " + std::to_string(s[d]);
  return t + ")";
}

std::string type_name(const torch::nn::Module& m) {
  std::string n = m.name();
  const size_t colon = n.rfind("::");
  if (colon != std::string::npos) n = n.substr(colon + 2);
  if (n.size() > 4 && n.compare(n.size() - 4, 4, "Impl") == 0) n.resize(n.size() - 4);
  return n;
}

// MACs of one sample of PyTorch's own float layers, from their output shape.
int64_t float_layer_macs(const torch::nn::Module& m, const std::vector<int64_t>& out) {
  if (out.empty()) return 0;
  int64_t outputs = 1;
  for (size_t d = 1; d < out.size(); ++d) outputs *= out[d];
  if (const auto* l = dynamic_cast<const torch::nn::LinearImpl*>(&m)) {
    return outputs * l->options.in_features();
  }
  if (const auto* c = dynamic_cast<const torch::nn::Conv2dImpl*>(&m)) {
    const auto k = *c->options.kernel_size();
    return outputs * (c->options.in_channels() / c->options.groups()) * k[0] * k[1];
  }
  return 0;
}

std::string fmt(double v, int precision) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(precision) << v;
  return s.str();
}

}  // namespace

ModelSummary summary(torch::nn::Module& model, const std::vector<int64_t>& input_shape) {
  TORCH_CHECK_VALUE(!input_shape.empty() && input_shape[0] >= 1,
                    "summary: input_shape must start with a batch size >= 1");
  // One forward in eval mode to see every shape; a top-level Sequential is walked child by child so
  // that layers which do not record shapes themselves get theirs too.
  std::unordered_map<const torch::nn::Module*, std::vector<int64_t>> shapes;
  {
    torch::NoGradGuard no_grad;
    const bool was_training = model.is_training();
    model.eval();
    // Sequentials, and the body and projection of shortcut blocks, are walked inside too.
    std::function<at::Tensor(torch::nn::SequentialImpl&, at::Tensor)> walk =
        [&](torch::nn::SequentialImpl& seq, at::Tensor x) {
          for (auto& child : seq) {
            if (auto* block = child.ptr()->as<ShortcutBlockImpl>()) {
              const at::Tensor body = walk(*block->body, x);
              x = body + (block->projection ? walk(*block->projection, x) : x);
            } else if (auto* concat = child.ptr()->as<ConcatBlockImpl>()) {
              std::vector<at::Tensor> parts;
              for (auto& branch : concat->branches) parts.push_back(walk(*branch, x));
              x = torch::cat(parts, 1);
            } else if (auto* inner = child.ptr()->as<torch::nn::SequentialImpl>()) {
              x = walk(*inner, x);
            } else {
              x = child.forward(x);
            }
            shapes[child.ptr().get()] = x.sizes().vec();
          }
          return x;
        };
    if (auto* seq = dynamic_cast<torch::nn::SequentialImpl*>(&model)) {
      walk(*seq, torch::zeros(input_shape));
    } else {
      throw std::invalid_argument(
          "summary: the model must be a torch::nn::Sequential (its children may be any module)");
    }
    model.train(was_training);
  }

  ModelSummary s;
  std::set<const torch::nn::Module*> covered;  // quantizers, counted with their layer
  for (const auto& item : model.named_modules("", /*include_self=*/false)) {
    torch::nn::Module& m = *item.value();
    if (covered.count(&m)) continue;
    SummaryRow row;
    row.name = item.key();
    row.type = type_name(m);
    const auto shape_it = shapes.find(&m);
    if (shape_it != shapes.end()) row.output_shape = shape_it->second;
    int64_t non_trainable = 0;
    if (auto* layer = dynamic_cast<QuantLayer*>(&m)) {
      for (const auto& sub : m.modules(/*include_self=*/false)) covered.insert(sub.get());
      row.input_precision = layer->input_precision();
      if (!layer->last_output_sizes.empty()) row.output_shape = layer->last_output_sizes;
      row.params_by_bits[layer->kernel_precision()] += layer->weight.numel();
      for (const auto& p : m.named_parameters(/*recurse=*/true)) {
        if (p.key() != "weight") row.params_by_bits[32] += p.value().numel();
      }
      const int64_t mac_bits = std::max(layer->input_precision(), layer->kernel_precision());
      if (layer->macs_per_sample() > 0) row.macs_by_bits[mac_bits] += layer->macs_per_sample();
    } else {
      if (dynamic_cast<QuantizerImpl*>(&m) || dynamic_cast<ActivationQuantizer*>(&m)) continue;
      const auto params = m.named_parameters(/*recurse=*/false);
      for (const auto& b : m.named_buffers(/*recurse=*/false)) {
        // Running statistics are parameters that do not train; step counters are not parameters.
        if (at::isFloatingType(b.value().scalar_type())) non_trainable += b.value().numel();
      }
      if (params.is_empty() && non_trainable == 0) continue;
      row.input_precision = 0;
      for (const auto& p : params) row.params_by_bits[32] += p.value().numel();
      row.params_by_bits[32] += non_trainable;
      const int64_t macs = float_layer_macs(m, row.output_shape);
      if (macs > 0) row.macs_by_bits[32] += macs;
    }
    int64_t bits = 0, count = 0;
    for (const auto& [b, n] : row.params_by_bits) {
      bits += b * n;
      count += n;
    }
    row.memory_kib = static_cast<double>(bits) / 8.0 / 1024.0;
    s.total_params += count;
    s.non_trainable_params += non_trainable;
    for (const auto& [b, n] : row.params_by_bits) {
      s.model_size_kib += static_cast<double>(b * n) / 8.0 / 1024.0;
      s.model_size_8bit_kib += static_cast<double>(std::min<int64_t>(b, 8) * n) / 8.0 / 1024.0;
    }
    for (const auto& [b, n] : row.macs_by_bits) {
      s.total_macs += n;
      if (b == 1) s.binarized_mac_ratio += static_cast<double>(n);
      if (b == 2) s.ternarized_mac_ratio += static_cast<double>(n);
    }
    s.rows.push_back(std::move(row));
  }
  s.trainable_params = s.total_params - s.non_trainable_params;
  s.float32_kib = static_cast<double>(s.total_params) * 4.0 / 1024.0;
  s.compression_ratio = s.model_size_kib > 0 ? s.float32_kib / s.model_size_kib : 0.0;
  if (s.total_macs > 0) {
    s.binarized_mac_ratio /= static_cast<double>(s.total_macs);
    s.ternarized_mac_ratio /= static_cast<double>(s.total_macs);
  }
  return s;
}

std::string ModelSummary::to_string() const {
  std::set<int64_t> param_bits, mac_bits;
  for (const auto& r : rows) {
    for (const auto& [b, n] : r.params_by_bits) param_bits.insert(b);
    for (const auto& [b, n] : r.macs_by_bits) mac_bits.insert(b);
  }
  std::vector<std::string> header = {"Layer", "Input prec. (bit)", "Outputs"};
  for (int64_t b : param_bits) header.push_back("# " + std::to_string(b) + "-bit");
  header.push_back("Memory (kB)");
  for (int64_t b : mac_bits) header.push_back(std::to_string(b) + "-bit MACs");
  std::vector<std::vector<std::string>> table{header};
  for (const auto& r : rows) {
    std::vector<std::string> line = {
        r.name + " (" + r.type + ")",
        r.input_precision > 0 ? std::to_string(r.input_precision) : "-",
        shape_text(r.output_shape)};
    for (int64_t b : param_bits) {
      const auto it = r.params_by_bits.find(b);
      line.push_back(it == r.params_by_bits.end() ? "0" : std::to_string(it->second));
    }
    line.push_back(fmt(r.memory_kib, 2));
    for (int64_t b : mac_bits) {
      const auto it = r.macs_by_bits.find(b);
      line.push_back(it == r.macs_by_bits.end() ? "0" : std::to_string(it->second));
    }
    table.push_back(line);
  }
  std::vector<size_t> width(header.size(), 0);
  for (const auto& line : table) {
    for (size_t c = 0; c < line.size(); ++c) width[c] = std::max(width[c], line[c].size());
  }
  std::ostringstream out;
  for (size_t i = 0; i < table.size(); ++i) {
    for (size_t c = 0; c < table[i].size(); ++c) {
      out << (c == 0 ? "" : "  ");
      if (c == 0) {
        out << std::left << std::setw(static_cast<int>(width[c])) << table[i][c];
      } else {
        out << std::right << std::setw(static_cast<int>(width[c])) << table[i][c];
      }
    }
    out << "\n";
    if (i == 0) {
      size_t total = 0;
      for (size_t w : width) total += w + 2;
      out << std::string(total - 2, '-') << "\n";
    }
  }
  out << "\nTotal params                   " << total_params << "\n"
      << "Trainable params               " << trainable_params << "\n"
      << "Non-trainable params           " << non_trainable_params << "\n"
      << "Model size                     " << fmt(model_size_kib, 2) << " KiB\n"
      << "Model size (8-bit FP weights)  " << fmt(model_size_8bit_kib, 2) << " KiB\n"
      << "Float-32 equivalent            " << fmt(float32_kib, 2) << " KiB\n"
      << "Compression ratio of memory    " << fmt(compression_ratio, 2) << "\n"
      << "Number of MACs                 " << total_macs << "\n"
      << "Ratio of MACs that are binarized   " << fmt(binarized_mac_ratio, 4) << "\n"
      << "Ratio of MACs that are ternarized  " << fmt(ternarized_mac_ratio, 4) << "\n";
  return out.str();
}

std::string ModelSummary::to_json() const {
  std::ostringstream j;
  j << "{\"total_params\": " << total_params << ", \"trainable_params\": " << trainable_params
    << ", \"non_trainable_params\": " << non_trainable_params
    << ", \"model_size_kib\": " << model_size_kib
    << ", \"model_size_8bit_kib\": " << model_size_8bit_kib << ", \"float32_kib\": " << float32_kib
    << ", \"compression_ratio\": " << compression_ratio << ", \"total_macs\": " << total_macs
    << ", \"binarized_mac_ratio\": " << binarized_mac_ratio
    << ", \"ternarized_mac_ratio\": " << ternarized_mac_ratio << "}";
  return j.str();
}

}  // namespace nn
}  // namespace lowbit
