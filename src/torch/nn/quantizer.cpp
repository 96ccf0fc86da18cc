// Quantizer objects: a spec ("dorefa(k_bit=2, mode=weights)") bound to its operator and precision.
#include <torch/torch.h>

#include <cctype>
#include <set>
#include <sstream>
#include <stdexcept>

#include "lowbit/nn.h"
#include "lowbit/ops.h"

namespace lowbit {
namespace nn {
namespace {

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

bool is_identifier(const std::string& s) {
  if (s.empty() || !(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  }
  return true;
}

// Typed reads of a spec's options; every option must be read once, so misspelt ones are errors.
class OptionReader {
 public:
  explicit OptionReader(const QuantizerSpec& spec) : spec_(spec) {}

  double real(const std::string& key, double fallback) {
    return parse_real(key, fallback, false).value();
  }
  c10::optional<double> optional_real(const std::string& key, c10::optional<double> fallback) {
    return parse_real(key, fallback.value_or(0.0), true, fallback.has_value());
  }
  // A clipped STE's window: none, or a number >= 0 (NaN or a negative one zeroes every gradient).
  c10::optional<double> clip_value() {
    const auto clip = optional_real("clip_value", 1.0);
    if (clip && !(*clip >= 0)) fail("clip_value", std::to_string(*clip), "a number >= 0 or none");
    return clip;
  }
  int64_t integer(const std::string& key, int64_t fallback) {
    const auto text = take(key);
    if (!text) return fallback;
    size_t used = 0;
    int64_t v = 0;
    try {
      v = std::stoll(*text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != text->size()) fail(key, *text, "an integer");
    return v;
  }
  bool boolean(const std::string& key, bool fallback) {
    const auto text = take(key);
    if (!text) return fallback;
    if (*text == "true" || *text == "True" || *text == "1") return true;
    if (*text == "false" || *text == "False" || *text == "0") return false;
    fail(key, *text, "true or false");
    return false;
  }
  std::string word(const std::string& key, const std::string& fallback) {
    const auto text = take(key);
    return text ? *text : fallback;
  }
  bool has(const std::string& key) const { return spec_.options.count(key) > 0; }
  // Throws for options nobody read.
  void finish() const {
    for (const auto& [key, value] : spec_.options) {
      if (!read_.count(key)) {
        throw std::invalid_argument("quantizer " + spec_.name + " has no option '" + key + "'");
      }
    }
  }

 private:
  c10::optional<std::string> take(const std::string& key) {
    read_.insert(key);
    const auto it = spec_.options.find(key);
    if (it == spec_.options.end()) return c10::nullopt;
    return it->second;
  }
  c10::optional<double> parse_real(const std::string& key, double fallback, bool nullable,
                                   bool has_fallback = true) {
    const auto text = take(key);
    if (!text) return has_fallback ? c10::optional<double>(fallback) : c10::nullopt;
    if (nullable && (*text == "none" || *text == "None" || *text == "null")) return c10::nullopt;
    size_t used = 0;
    double v = 0;
    try {
      v = std::stod(*text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != text->size()) fail(key, *text, nullable ? "a number or none" : "a number");
    return v;
  }
  [[noreturn]] void fail(const std::string& key, const std::string& text, const char* want) const {
    throw std::invalid_argument("quantizer " + spec_.name + ": option " + key + "=" + text +
                                " is not " + want);
  }

  const QuantizerSpec& spec_;
  std::set<std::string> read_;
};

}  // namespace

QuantizerSpec QuantizerSpec::parse(const std::string& raw) {
  const std::string text = trim(raw);
  const size_t open = text.find('(');
  QuantizerSpec spec;
  spec.name = trim(text.substr(0, open));
  if (!is_identifier(spec.name)) {
    throw std::invalid_argument("quantizer spec '" + raw + "': '" + spec.name +
                                "' is not a quantizer name");
  }
  if (open == std::string::npos) return spec;
  if (text.back() != ')') {
    throw std::invalid_argument("quantizer spec '" + raw + "': missing ')' at the end");
  }
  const std::string body = text.substr(open + 1, text.size() - open - 2);
  std::stringstream items(body);
  std::string item;
  while (std::getline(items, item, ',')) {
    if (trim(item).empty()) {
      if (trim(body).empty()) break;
      throw std::invalid_argument("quantizer spec '" + raw + "': empty option");
    }
    const size_t eq = item.find('=');
    const std::string key = trim(item.substr(0, eq));
    if (eq == std::string::npos || !is_identifier(key) || trim(item.substr(eq + 1)).empty()) {
      throw std::invalid_argument("quantizer spec '" + raw + "': option '" + trim(item) +
                                  "' is not key=value");
    }
    if (!spec.options.emplace(key, trim(item.substr(eq + 1))).second) {
      throw std::invalid_argument("quantizer spec '" + raw + "': option " + key + " given twice");
    }
  }
  return spec;
}

std::string QuantizerSpec::str() const {
  if (options.empty()) return name;
  std::string s = name + "(";
  bool first = true;
  for (const auto& [key, value] : options) {
    s += (first ? "" : ", ") + key + "=" + value;
    first = false;
  }
  return s + ")";
}

QuantizerImpl::QuantizerImpl(const QuantizerSpec& spec, QuantizerRole role) : spec_(spec) {
  OptionReader opt(spec_);
  const std::string& n = spec_.name;
  const int64_t default_axis = role == QuantizerRole::kKernel ? 0 : -1;
  if (n == "ste_sign" || n == "ste_heaviside") {
    const auto clip = opt.clip_value();
    const bool heaviside = n == "ste_heaviside";
    precision_ = 1;
    apply_ = [clip, heaviside](const at::Tensor& x) {
      return heaviside ? lowbit::ste_heaviside(x, clip) : lowbit::ste_sign(x, clip);
    };
  } else if (n == "approx_sign") {
    precision_ = 1;
    apply_ = [](const at::Tensor& x) { return lowbit::approx_sign(x); };
  } else if (n == "swish_sign") {
    const double beta = opt.real("beta", 5.0);
    precision_ = 1;
    apply_ = [beta](const at::Tensor& x) { return lowbit::swish_sign(x, beta); };
  } else if (n == "magnitude_aware_sign") {
    const auto clip = opt.clip_value();
    const int64_t axis = opt.integer("axis", default_axis);
    precision_ = 1;
    apply_ = [clip, axis](const at::Tensor& x) {
      return lowbit::magnitude_aware_sign(x, clip, axis);
    };
  } else if (n == "ste_tern") {
    const double t = opt.real("threshold_value", 0.05);
    const bool twn = opt.boolean("ternary_weight_networks", false);
    const auto clip = opt.clip_value();
    precision_ = 2;
    apply_ = [t, twn, clip](const at::Tensor& x) { return lowbit::ste_tern(x, t, twn, clip); };
  } else if (n == "dorefa") {
    const int64_t k = opt.integer("k_bit", 2);
    const std::string mode = opt.word("mode", "activations");
    if (k < 1 || k > 32) throw std::invalid_argument("quantizer dorefa: k_bit must be in 1..32");
    if (mode != "activations" && mode != "weights") {
      throw std::invalid_argument("quantizer dorefa: mode must be activations or weights, got " +
                                  mode);
    }
    precision_ = k;
    apply_ = [k, mode](const at::Tensor& x) { return lowbit::dorefa(x, k, mode); };
  } else if (n == "binary_mean_scaling") {
    precision_ = 1;
    apply_ = [](const at::Tensor& x) { return lowbit::binary_mean_scaling(x); };
  } else if (n == "binary_channel_wise_mean_scaling") {
    const int64_t axis = opt.integer("axis", default_axis);
    precision_ = 1;
    apply_ = [axis](const at::Tensor& x) {
      return lowbit::binary_channel_wise_mean_scaling(x, axis);
    };
  } else if (n == "linear_mid_tread_half") {
    const int64_t bit = opt.integer("bit", 2);
    const double max_value = opt.real("max_value", 2.0);
    if (bit < 1 || bit > 32) {
      throw std::invalid_argument("quantizer linear_mid_tread_half: bit must be in 1..32");
    }
    precision_ = bit;
    apply_ = [bit, max_value](const at::Tensor& x) {
      return lowbit::linear_mid_tread_half(x, bit, max_value);
    };
  } else if (n == "twn_weight") {
    const double t = opt.real("threshold", 0.7);
    precision_ = 2;
    apply_ = [t](const at::Tensor& x) { return lowbit::twn_weight(x, t); };
  } else if (n == "ttq_weight") {
    const double t = opt.real("threshold", 0.05);
    positive_ = register_parameter("positive", torch::tensor(opt.real("positive", 1.0)));
    negative_ = register_parameter("negative", torch::tensor(opt.real("negative", 1.0)));
    precision_ = 2;
    apply_ = [this, t](const at::Tensor& x) {
      return lowbit::ttq_weight(x, positive_.to(x.scalar_type()), negative_.to(x.scalar_type()), t);
    };
  } else {
    throw std::invalid_argument(
        "unknown quantizer '" + n +
        "' (known: ste_sign, approx_sign, swish_sign, ste_heaviside, magnitude_aware_sign, "
        "ste_tern, dorefa, binary_mean_scaling, binary_channel_wise_mean_scaling, "
        "linear_mid_tread_half, twn_weight, ttq_weight, none)");
  }
  opt.finish();
}

at::Tensor QuantizerImpl::forward(const at::Tensor& x) { return apply_(x); }

void QuantizerImpl::pretty_print(std::ostream& stream) const {
  stream << "lowbit::nn::Quantizer(" << spec_.str() << ", precision=" << precision_ << ")";
}

Quantizer make_quantizer(const QuantizerArg& arg, QuantizerRole role) {
  if (!arg.object.is_empty()) return arg.object;
  if (arg.spec.name == "none") {
    if (!arg.spec.options.empty()) throw std::invalid_argument("quantizer none takes no options");
    return Quantizer(nullptr);
  }
  return Quantizer(arg.spec, role);
}

}  // namespace nn
}  // namespace lowbit
