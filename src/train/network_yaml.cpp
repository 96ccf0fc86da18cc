// Reads and writes the `layers:` list of config files.
#include "network_yaml.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <set>
#include <stdexcept>

#include "lowbit/nn.h"

namespace lowbit {
namespace train {
namespace {

std::string line_of(const YAML::Node& node) {
  const YAML::Mark mark = node.Mark();
  return mark.line >= 0 ? " (line " + std::to_string(mark.line + 1) + ")" : "";
}

// The options each layer type takes beside its main value.
const std::map<std::string, std::set<std::string>>& options_of() {
  static const std::set<std::string> conv = {
      "kernel",          "stride",           "padding",           "bias",       "quantized",
      "input_quantizer", "kernel_quantizer", "kernel_constraint", "pad_values", "bits"};
  static const std::map<std::string, std::set<std::string>> m = {
      {"conv", conv},
      {"depthwise_conv", conv},
      {"dense",
       {"bias", "quantized", "input_quantizer", "kernel_quantizer", "kernel_constraint", "bits"}},
      {"batch_norm", {}},
      {"relu", {}},
      {"max_pool", {"kernel", "stride", "padding"}},
      {"avg_pool", {"kernel", "stride", "padding"}},
      {"global_avg_pool", {}},
      {"flatten", {}},
      {"dropout", {}},
      {"residual", {"body", "shortcut"}},
      {"concat", {"branches"}},
  };
  return m;
}

class Reader {
 public:
  explicit Reader(const std::string& path) : path_(path) {}

  std::vector<nn::LayerSpec> list(const YAML::Node& node, const std::string& where) {
    if (!node.IsSequence()) {
      throw std::invalid_argument(path_ + ": " + where + ": expected a list of layers" +
                                  line_of(node));
    }
    std::vector<nn::LayerSpec> out;
    for (size_t i = 0; i < node.size(); ++i) {
      out.push_back(layer(node[i], where + "[" + std::to_string(i) + "]"));
    }
    return out;
  }

 private:
  [[noreturn]] void fail(const YAML::Node& n, const std::string& where, const std::string& what) {
    throw std::invalid_argument(path_ + ": " + where + ": " + what + line_of(n));
  }

  int64_t integer(const YAML::Node& n, const std::string& where, const std::string& key,
                  int64_t lo) {
    const std::string text = n.IsScalar() ? n.Scalar() : "";
    const bool digits =
        !text.empty() && text.size() < 10 &&
        std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c); });
    if (!digits || std::stoll(text) < lo) {
      fail(n, where, key + ": '" + YAML::Dump(n) + "' is not an integer >= " + std::to_string(lo));
    }
    return std::stoll(text);
  }

  template <class T>
  T value(const YAML::Node& n, const std::string& where, const std::string& key) {
    try {
      return n.as<T>();
    } catch (const YAML::Exception&) {
      fail(n, where, key + ": '" + YAML::Dump(n) + "' is not a valid value");
    }
  }

  std::string quantizer(const YAML::Node& n, const std::string& where, const std::string& key) {
    const std::string spec = value<std::string>(n, where, key);
    try {
      nn::make_quantizer(spec, nn::QuantizerRole::kInput);
    } catch (const std::exception& e) {
      fail(n, where, key + ": " + e.what());
    }
    return spec;
  }

  nn::LayerSpec layer(const YAML::Node& node, const std::string& where) {
    nn::LayerSpec l;
    l.where = where;
    const auto& types = options_of();
    YAML::Node main;
    if (node.IsScalar()) {
      l.type = node.Scalar();
    } else if (node.IsMap()) {
      for (const auto& kv : node) {
        const std::string key = kv.first.as<std::string>();
        if (!types.count(key)) continue;
        if (!l.type.empty()) fail(node, where, "two layer types, " + l.type + " and " + key);
        l.type = key;
        main = kv.second;
      }
      if (l.type.empty()) fail(node, where, "no layer type (" + known() + ")");
    } else {
      fail(node, where, "expected a layer (a type, or a map of a type and its options)");
    }
    if (!types.count(l.type))
      fail(node, where, "unknown layer type '" + l.type + "' (" + known() + ")");
    const std::set<std::string>& allowed = types.at(l.type);
    // The main value.
    const bool has_main = main.IsDefined() && !main.IsNull();
    if (l.type == "conv" || l.type == "dense") {
      if (!has_main)
        fail(node, where, l.type + " needs its " + (l.type == "conv" ? "filters" : "units"));
      if (l.type == "dense" && main.IsScalar() && main.Scalar() == "classes") {
        l.units = nn::kClasses;
      } else {
        l.units = integer(main, where, l.type, 1);
      }
    } else if (l.type == "depthwise_conv") {
      l.units = has_main ? integer(main, where, "depthwise_conv (multiplier)", 1) : 1;
    } else if (l.type == "max_pool" || l.type == "avg_pool") {
      l.kernel = has_main ? integer(main, where, l.type, 1) : 2;
    } else if (l.type == "dropout") {
      if (!has_main) fail(node, where, "dropout needs its rate");
      l.rate = value<double>(main, where, "dropout");
      if (!(l.rate >= 0 && l.rate < 1)) fail(node, where, "dropout: the rate must be in [0, 1)");
    } else if (l.type == "concat" && has_main) {
      branches(main, where, l);
    } else if (l.type == "residual" && has_main) {
      // `residual: {body: [...], shortcut: [...]}`, the same as the keys beside `residual:`.
      if (!main.IsMap()) fail(main, where, "residual: expected {body: [...], shortcut: [...]}");
      for (const auto& kv : main) {
        const std::string key = kv.first.as<std::string>();
        if (key == "body") {
          l.body = list(kv.second, where + ".body");
        } else if (key == "shortcut") {
          l.shortcut = list(kv.second, where + ".shortcut");
        } else {
          fail(kv.first, where, "unknown key '" + key + "' for residual (it takes body, shortcut)");
        }
      }
    } else if (has_main) {
      fail(node, where, l.type + " takes no value");
    }
    if (!node.IsMap()) return l;
    std::set<std::string> seen;
    for (const auto& kv : node) {
      const std::string key = kv.first.as<std::string>();
      const YAML::Node& v = kv.second;
      if (key == l.type) continue;
      if (!seen.insert(key).second) fail(node, where, "duplicate key '" + key + "'");
      if (!allowed.count(key)) {
        std::string list;
        for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
        fail(v, where,
             "unknown key '" + key + "' for " + l.type +
                 (list.empty() ? " (it takes no options)" : " (it takes " + list + ")"));
      }
      if (key == "kernel") {
        l.kernel = integer(v, where, key, 1);
      } else if (key == "stride") {
        l.stride = integer(v, where, key, 1);
      } else if (key == "padding") {
        l.padding = integer(v, where, key, 0);
      } else if (key == "bias") {
        l.bias = value<bool>(v, where, key);
      } else if (key == "quantized") {
        l.quantized = value<bool>(v, where, key) ? 1 : 0;
      } else if (key == "input_quantizer") {
        l.input_quantizer = quantizer(v, where, key);
      } else if (key == "kernel_quantizer") {
        l.kernel_quantizer = quantizer(v, where, key);
      } else if (key == "kernel_constraint") {
        l.kernel_constraint = value<std::string>(v, where, key);
      } else if (key == "pad_values") {
        l.pad_values = value<double>(v, where, key);
      } else if (key == "bits") {
        l.bits = integer(v, where, key, 1);
      } else if (key == "body") {
        if (!l.body.empty()) fail(v, where, "body given twice");
        l.body = list(v, where + ".body");
      } else if (key == "shortcut") {
        l.shortcut = v.IsNull() ? std::vector<nn::LayerSpec>{} : list(v, where + ".shortcut");
      } else if (key == "branches") {
        if (!l.branches.empty()) fail(v, where, "branches given twice");
        branches(v, where, l);
      }
    }
    if (l.type == "residual" && l.body.empty()) fail(node, where, "residual needs a body");
    if (l.type == "concat" && l.branches.size() < 2) {
      fail(node, where, "concat needs a list of two or more branches");
    }
    return l;
  }

  void branches(const YAML::Node& v, const std::string& where, nn::LayerSpec& l) {
    if (!v.IsSequence()) fail(v, where, "concat: expected a list of branches (lists of layers)");
    for (size_t i = 0; i < v.size(); ++i) {
      l.branches.push_back(list(v[i], where + ".branches[" + std::to_string(i) + "]"));
    }
  }

  static std::string known() {
    std::string s;
    for (const auto& t : nn::layer_types()) s += (s.empty() ? "" : ", ") + t;
    return s;
  }

  std::string path_;
};

}  // namespace

std::vector<nn::LayerSpec> parse_layers(const YAML::Node& node, const std::string& path,
                                        const std::string& where) {
  auto layers = Reader(path).list(node, where);
  if (layers.empty()) {
    throw std::invalid_argument(path + ": " + where + ": an empty list (give layers, or leave " +
                                where + " out for the recipe's network)");
  }
  return layers;
}

void emit_layers(YAML::Emitter& e, const std::vector<nn::LayerSpec>& layers) {
  e << YAML::BeginSeq;
  for (const nn::LayerSpec& l : layers) {
    e << YAML::BeginMap;
    const std::string& t = l.type;
    e << YAML::Key << t << YAML::Value;
    if (t == "conv" || t == "depthwise_conv") {
      e << l.units;
    } else if (t == "dense") {
      if (l.units == nn::kClasses) {
        e << "classes";
      } else {
        e << l.units;
      }
    } else if (t == "max_pool" || t == "avg_pool") {
      e << l.kernel;
    } else if (t == "dropout") {
      e << l.rate;
    } else {
      e << YAML::Null;
    }
    if (t == "conv" || t == "depthwise_conv" || t == "max_pool" || t == "avg_pool") {
      if (t == "conv" || t == "depthwise_conv")
        e << YAML::Key << "kernel" << YAML::Value << l.kernel;
      if (l.stride >= 0) e << YAML::Key << "stride" << YAML::Value << l.stride;
      if (l.padding >= 0) e << YAML::Key << "padding" << YAML::Value << l.padding;
    }
    if (t == "conv" || t == "depthwise_conv" || t == "dense") {
      e << YAML::Key << "bias" << YAML::Value << l.bias;
      if (l.quantized >= 0) e << YAML::Key << "quantized" << YAML::Value << (l.quantized == 1);
      if (!l.input_quantizer.empty()) {
        e << YAML::Key << "input_quantizer" << YAML::Value << l.input_quantizer;
      }
      if (!l.kernel_quantizer.empty()) {
        e << YAML::Key << "kernel_quantizer" << YAML::Value << l.kernel_quantizer;
      }
      if (!l.kernel_constraint.empty()) {
        e << YAML::Key << "kernel_constraint" << YAML::Value << l.kernel_constraint;
      }
      if (l.pad_values) e << YAML::Key << "pad_values" << YAML::Value << *l.pad_values;
      if (l.bits > 0) e << YAML::Key << "bits" << YAML::Value << l.bits;
    }
    if (t == "residual") {
      e << YAML::Key << "body" << YAML::Value;
      emit_layers(e, l.body);
      if (!l.shortcut.empty()) {
        e << YAML::Key << "shortcut" << YAML::Value;
        emit_layers(e, l.shortcut);
      }
    }
    if (t == "concat") {
      e << YAML::Key << "branches" << YAML::Value << YAML::BeginSeq;
      for (const auto& b : l.branches) emit_layers(e, b);
      e << YAML::EndSeq;
    }
    e << YAML::EndMap;
  }
  e << YAML::EndSeq;
}

}  // namespace train
}  // namespace lowbit
