// Quantizer objects: a spec ("dorefa(k_bit=2, mode=weights)") bound to its operator and precision.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/torch.h>

#include <cctype>
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
  const QuantizerInfo& info = quantizer_info(spec_.name);
  options_ = resolve_options(info, spec_.options, role == QuantizerRole::kKernel);
  precision_ = precision_of(info, options_);
  // The operator's arguments after the input, in schema order: an option's value, or (where
  // `parameters` holds a tensor) one of this quantizer's trainable tensors, ttq_weight's positive
  // and negative scales, passed in the input's dtype.
  std::vector<c10::IValue> arguments;
  std::vector<at::Tensor> parameters;
  for (const OptionInfo& o : info.options) {
    arguments.push_back(options_.at(o.key));
    parameters.push_back(
        o.parameter ? register_parameter(o.key, torch::tensor(options_.at(o.key).toDouble()))
                    : at::Tensor());
  }
  const c10::OperatorHandle op =
      c10::Dispatcher::singleton().findSchemaOrThrow(("lowbit::" + info.name).c_str(), "");
  apply_ = [op, arguments, parameters](const at::Tensor& x) {
    torch::jit::Stack stack;
    stack.reserve(arguments.size() + 1);
    stack.emplace_back(x);
    for (size_t i = 0; i < arguments.size(); ++i) {
      if (parameters[i].defined()) {
        stack.emplace_back(parameters[i].to(x.scalar_type()));
      } else {
        stack.push_back(arguments[i]);
      }
    }
    op.callBoxed(&stack);
    return stack.at(0).toTensor();
  };
}

const c10::IValue& QuantizerImpl::option(const std::string& key) const {
  const auto it = options_.find(key);
  if (it == options_.end()) {
    throw std::invalid_argument("quantizer " + spec_.name + " has no option '" + key + "'");
  }
  return it->second;
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
