// The training recipes by name, and their overrides from YAML config files.
#include <yaml-cpp/yaml.h>

#include <cctype>
#include <cmath>
#include <functional>
#include <map>
#include <set>
#include <stdexcept>

#include "lowbit/catalogue.h"
#include "lowbit/io/file.h"
#include "lowbit/nn.h"
#include "lowbit/qat.h"
#include "lowbit/train.h"
#include "network_yaml.h"

namespace lowbit {
namespace train {

const std::map<std::string, std::string>& zoo_configs();  // generated from examples/zoo/*.yaml

namespace {

Recipe base(const std::string& name) {
  Recipe r;
  r.name = name;
  // Sized for 2-core machines: a 15-epoch Fashion-MNIST run takes tens of minutes, not hours.
  r.network.blocks = {32, 32, 0, 64, 64, 0};
  r.network.hidden = 256;
  return r;
}

Recipe float_recipe(const std::string& name) {
  Recipe r = base(name);
  r.network.dropout = 0.25;
  r.network.pool_before_batchnorm = false;  // conv, BN, ReLU, pool: the order QAT folds
  return r;
}

// A command recipe: the architecture and schedule around a quantization recipe (its quantizers,
// activation and QAT scheme come from lowbit/catalogue.h's table, which Python reads too).
Recipe from_quantization(const nn::QuantizationRecipe& q) {
  const bool integer = q.qat != "none";
  Recipe r = integer || q.name == "float" ? float_recipe(q.name) : base(q.name);
  r.network.input_quantizer = q.input_quantizer;
  r.network.kernel_quantizer = q.kernel_quantizer;
  r.network.kernel_constraint = q.kernel_constraint;
  r.network.pad_values = q.pad_values;
  r.network.activation = q.activation;
  r.network.quantize_first_convolution = q.quantize_first_layer;
  r.network.quantize_last_convolution = q.quantize_last_layer;
  r.qat = q.qat;
  if (integer) {
    r.quant_delay = 1000;      // ~2 epochs of float training while the observers settle
    r.freeze_bn_delay = 6000;  // the last ~2 epochs train exactly what inference computes
  }
  // Bi-Real Net: a real-valued shortcut around every binary convolution.
  r.network.shortcuts = q.name == "birealnet";
  return r;
}

const std::map<std::string, std::function<Recipe()>>& registry() {
  static const std::map<std::string, std::function<Recipe()>> recipes = [] {
    std::map<std::string, std::function<Recipe()>> m;
    for (const nn::QuantizationRecipe& q : nn::quantization_recipes()) {
      m.emplace(q.name, [q] { return from_quantization(q); });
    }
    // The model zoo: architectures of the field, each a config file of examples/zoo.
    for (const auto& [name, text] : zoo_configs()) {
      m.emplace(name, [name = name, text = text] {
        Recipe r = base(name);
        apply_config_text(r, text, "examples/zoo/" + name + ".yaml");
        return r;
      });
    }
    return m;
  }();
  return recipes;
}

std::string known() {
  std::string s;
  for (const auto& [name, make] : registry()) s += (s.empty() ? "" : ", ") + name;
  return s;
}

// " (line N)" of a node read from a file, for messages.
std::string line_of(const YAML::Node& node) {
  const YAML::Mark mark = node.Mark();
  return mark.line >= 0 ? " (line " + std::to_string(mark.line + 1) + ")" : "";
}

template <class T>
T read_value(const YAML::Node& node, const std::string& key, const std::string& path) {
  try {
    return node.as<T>();
  } catch (const YAML::Exception&) {
    throw std::invalid_argument(path + ": " + key + ": '" + YAML::Dump(node) +
                                "' is not a valid value");
  }
}

// Integers are decimal: yaml-cpp would read 010 as octal 8 and 0x10 as 16.
int64_t decimal(const YAML::Node& node, const std::string& key, const std::string& path) {
  const std::string text = node.IsScalar() ? node.Scalar() : "";
  size_t i = !text.empty() && (text[0] == '-' || text[0] == '+') ? 1 : 0;
  bool digits = i < text.size();
  for (size_t k = i; k < text.size(); ++k)
    digits = digits && std::isdigit(static_cast<unsigned char>(text[k]));
  if (!digits) {
    throw std::invalid_argument(path + ": " + key + ": '" + YAML::Dump(node) +
                                "' is not a decimal integer");
  }
  try {
    return std::stoll(text);
  } catch (const std::out_of_range&) {
    throw std::invalid_argument(path + ": " + key + ": " + text + " is out of range");
  }
}

template <>
int64_t read_value<int64_t>(const YAML::Node& node, const std::string& key,
                            const std::string& path) {
  return decimal(node, key, path);
}

template <>
std::vector<int64_t> read_value<std::vector<int64_t>>(const YAML::Node& node,
                                                      const std::string& key,
                                                      const std::string& path) {
  if (!node.IsSequence()) {
    throw std::invalid_argument(path + ": " + key + ": '" + YAML::Dump(node) +
                                "' is not a list of integers");
  }
  std::vector<int64_t> out;
  for (const auto& item : node) out.push_back(decimal(item, key, path));
  return out;
}

}  // namespace

std::vector<std::string> recipe_names() {
  std::vector<std::string> names;
  for (const auto& [name, make] : registry()) names.push_back(name);
  return names;
}

Recipe recipe(const std::string& name) {
  const auto it = registry().find(name);
  if (it == registry().end()) {
    throw std::invalid_argument("unknown model '" + name + "' (known: " + known() + ")");
  }
  return it->second();
}

namespace {
void apply_config_root(Recipe& r, const YAML::Node& root, const std::string& path);
}  // namespace

std::string config_recipe(const std::string& path) {
  std::string text;
  try {
    text = io::read_file(path, int64_t{1} << 24);
  } catch (const std::runtime_error& e) {
    throw std::invalid_argument(e.what());
  }
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw std::invalid_argument(path + ": not valid YAML: " + e.what());
  }
  if (!root.IsMap() || !root["recipe"]) return "";
  return read_value<std::string>(root["recipe"], "recipe", path);
}

Recipe recipe_from(const std::string& model, const std::string& config_path) {
  std::string name = model;
  if (name.empty() && !config_path.empty()) name = config_recipe(config_path);
  if (name.empty()) {
    throw std::invalid_argument("--model: no recipe given: name one (" + known() +
                                ") or give a --config whose `recipe:` names one");
  }
  Recipe r = recipe(name);
  if (!config_path.empty()) apply_config(r, config_path);
  return r;
}

void apply_config(Recipe& r, const std::string& path) {
  std::string text;
  try {
    text = io::read_file(path, int64_t{1} << 24);  // names a directory, a missing file, the reason
  } catch (const std::runtime_error& e) {
    throw std::invalid_argument(e.what());
  }
  apply_config_text(r, text, path);
}

void apply_config_text(Recipe& r, const std::string& yaml, const std::string& origin) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    throw std::invalid_argument(origin + ": not valid YAML: " + e.what());
  }
  apply_config_root(r, root, origin);
}

namespace {
void apply_config_root(Recipe& r, const YAML::Node& root, const std::string& path) {
  if (root.IsNull()) return;
  if (!root.IsMap()) throw std::invalid_argument(path + ": the config must be a mapping of keys");
  auto& n = r.network;
  std::set<std::string> seen;
  for (const auto& item : root) {
    const std::string key = item.first.as<std::string>();
    const YAML::Node& v = item.second;
    // YAML leaves duplicate keys to the reader; a second value would silently win.
    if (!seen.insert(key).second) {
      throw std::invalid_argument(path + ": duplicate key '" + key + "'" + line_of(item.first));
    }
    auto positive = [&](auto value) {
      if (!(value > 0) || !std::isfinite(static_cast<double>(value)))
        throw std::invalid_argument(path + ": " + key + " must be positive and finite");
      return value;
    };
    auto finite = [&](double value) {
      if (!std::isfinite(value)) throw std::invalid_argument(path + ": " + key + " must be finite");
      return value;
    };
    if (key == "epochs") {
      r.epochs = positive(read_value<int64_t>(v, key, path));
    } else if (key == "batch_size") {
      r.batch_size = positive(read_value<int64_t>(v, key, path));
    } else if (key == "learning_rate") {
      r.learning_rate = positive(read_value<double>(v, key, path));
    } else if (key == "weight_decay") {
      r.weight_decay = finite(read_value<double>(v, key, path));
      if (r.weight_decay < 0) throw std::invalid_argument(path + ": weight_decay must be >= 0");
    } else if (key == "schedule") {
      r.schedule = read_value<std::string>(v, key, path);
      if (r.schedule != "cosine" && r.schedule != "constant") {
        throw std::invalid_argument(path + ": schedule must be cosine or constant");
      }
    } else if (key == "optimizer") {
      r.optimizer = read_value<std::string>(v, key, path);
      if (r.optimizer != "adam" && r.optimizer != "bop") {
        throw std::invalid_argument(path + ": optimizer must be adam or bop");
      }
    } else if (key == "bop_threshold") {
      r.bop_threshold = finite(read_value<double>(v, key, path));
      if (r.bop_threshold < 0) throw std::invalid_argument(path + ": bop_threshold must be >= 0");
    } else if (key == "bop_gamma") {
      r.bop_gamma = positive(read_value<double>(v, key, path));
    } else if (key == "blocks") {
      n.blocks = read_value<std::vector<int64_t>>(v, key, path);
      for (const int64_t c : n.blocks) {
        if (c < 0) {
          throw std::invalid_argument(path + ": blocks: " + std::to_string(c) +
                                      " is not a channel count (> 0) or a pool (0)");
        }
      }
    } else if (key == "hidden") {
      n.hidden = read_value<int64_t>(v, key, path);
      if (n.hidden < 0) {
        throw std::invalid_argument(path +
                                    ": hidden must be >= 0 (0: no hidden dense layer), got " +
                                    std::to_string(n.hidden));
      }
    } else if (key == "input_quantizer" || key == "kernel_quantizer") {
      const std::string spec = read_value<std::string>(v, key, path);
      try {  // checked here, so that a bad quantizer is reported with the file and key
        nn::make_quantizer(spec, nn::QuantizerRole::kInput);
      } catch (const std::exception& e) {
        throw std::invalid_argument(path + ": " + key + ": " + e.what());
      }
      (key == "input_quantizer" ? n.input_quantizer : n.kernel_quantizer) = spec;
    } else if (key == "kernel_constraint") {
      n.kernel_constraint = read_value<std::string>(v, key, path);
    } else if (key == "quantize_first_convolution") {
      n.quantize_first_convolution = read_value<bool>(v, key, path);
    } else if (key == "quantize_last_convolution") {
      n.quantize_last_convolution = read_value<bool>(v, key, path);
    } else if (key == "pad_values") {
      n.pad_values = finite(read_value<double>(v, key, path));
    } else if (key == "activation") {
      n.activation = read_value<std::string>(v, key, path);
      if (n.activation != "relu" && n.activation != "none") {
        throw std::invalid_argument(path + ": activation must be relu or none");
      }
    } else if (key == "dropout") {
      n.dropout = read_value<double>(v, key, path);
      if (!(n.dropout >= 0 && n.dropout < 1)) {
        throw std::invalid_argument(path + ": dropout must be in [0, 1)");
      }
    } else if (key == "pool_before_batchnorm") {
      n.pool_before_batchnorm = read_value<bool>(v, key, path);
    } else if (key == "shortcuts") {
      n.shortcuts = read_value<bool>(v, key, path);
    } else if (key == "qat") {
      r.qat = read_value<std::string>(v, key, path);
      if (r.qat != "none") {
        try {
          qat::parse_scheme(r.qat);
        } catch (const std::exception& e) {
          throw std::invalid_argument(path + ": qat: " + e.what() + " or none");
        }
      }
    } else if (key == "quant_delay") {
      r.quant_delay = read_value<int64_t>(v, key, path);
      if (r.quant_delay < 0) throw std::invalid_argument(path + ": quant_delay must be >= 0");
    } else if (key == "freeze_bn_delay") {
      r.freeze_bn_delay = read_value<int64_t>(v, key, path);
      if (r.freeze_bn_delay < -1) {
        throw std::invalid_argument(path + ": freeze_bn_delay must be >= 0, or -1 for never");
      }
    } else if (key == "ema_decay") {
      r.ema_decay = read_value<double>(v, key, path);
      if (!(r.ema_decay >= 0 && r.ema_decay < 1)) {
        throw std::invalid_argument(path + ": ema_decay must be in [0, 1)");
      }
    } else if (key == "width_multiplier") {
      n.width_multiplier = positive(read_value<double>(v, key, path));
    } else if (key == "layers") {
      n.layers = parse_layers(v, path);
    } else if (key == "recipe") {
      const std::string name = read_value<std::string>(v, key, path);
      if (name != r.name) {
        throw std::invalid_argument(path + ": recipe: '" + name + "' but the model is '" + r.name +
                                    "'; give --model " + name + " or leave --model out");
      }
    } else if (key == "random_crop_padding") {
      r.random_crop_padding = read_value<int64_t>(v, key, path);
      if (r.random_crop_padding < 0 || r.random_crop_padding > 1024) {
        throw std::invalid_argument(path + ": random_crop_padding must be in 0..1024 (0: no crop)");
      }
    } else if (key == "horizontal_flip") {
      r.horizontal_flip = read_value<bool>(v, key, path);
    } else if (key == "bn_recalibration_batches") {
      if (v.IsScalar() && v.Scalar() == "all") {
        r.bn_recalibration_batches = -1;
      } else {
        r.bn_recalibration_batches = read_value<int64_t>(v, key, path);
        if (r.bn_recalibration_batches < 0) {
          throw std::invalid_argument(path +
                                      ": bn_recalibration_batches must be >= 0 (0: none) or all");
        }
      }
    } else {
      throw std::invalid_argument(path + ": unknown key '" + key + "'");
    }
  }
}
}  // namespace

}  // namespace train
}  // namespace lowbit
