// The quantizer catalogue: the quantizer operators' options read from their schemas, plus what a
// schema cannot say (precision, the kernel role's axis, value checks); and the private operators
// that hand it to Python.
#include "lowbit/catalogue.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <cmath>
#include <functional>
#include <set>
#include <sstream>
#include <stdexcept>

#include "lowbit/io/json.h"

namespace lowbit {
namespace nn {
namespace {

// What the schemas cannot say about a quantizer.
struct Entry {
  const char* name;
  int64_t bits;             // 0: read from bits_option
  const char* bits_option;  // nullptr: none
  bool kernel_axis;
  double parameter_default;  // initial value of trainable tensor arguments
};

// The spec's quantizers (docs/quantizers.md), in its order. A new quantizer is its operator schema
// (ops/schemas.cpp), its kernels, and one line here.
const Entry kEntries[] = {
    {"ste_sign", 1, nullptr, false, 0},
    {"approx_sign", 1, nullptr, false, 0},
    {"swish_sign", 1, nullptr, false, 0},
    {"ste_heaviside", 1, nullptr, false, 0},
    {"magnitude_aware_sign", 1, nullptr, true, 0},
    {"ste_tern", 2, nullptr, false, 0},
    {"dorefa", 0, "k_bit", false, 0},
    {"binary_mean_scaling", 1, nullptr, false, 0},
    {"binary_channel_wise_mean_scaling", 1, nullptr, true, 0},
    {"linear_mid_tread_half", 0, "bit", false, 0},
    {"twn_weight", 2, nullptr, false, 0},
    {"ttq_weight", 2, nullptr, false, 1.0},
};

[[noreturn]] void fail(const std::string& quantizer, const std::string& message) {
  throw std::invalid_argument("quantizer " + quantizer + ": " + message);
}

std::string text_of(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

// Value checks beyond the option's kind, by option name (the same name means the same thing in
// every quantizer that has it).
void check_value(const std::string& q, const std::string& key, const c10::IValue& v) {
  if (key == "clip_value") {
    if (!v.isNone() && !(v.toDouble() >= 0)) {
      fail(q, "option clip_value must be a number >= 0 or none, got " + text_of(v.toDouble()));
    }
  } else if (key == "k_bit" || key == "bit") {
    if (v.toInt() < 1 || v.toInt() > 32) {
      fail(q, "option " + key + " must be in 1..32, got " + std::to_string(v.toInt()));
    }
  } else if (key == "mode") {
    if (v.toStringRef() != "activations" && v.toStringRef() != "weights") {
      fail(q, "option mode must be activations or weights, got " + v.toStringRef());
    }
  } else if (key == "max_value") {
    if (!(std::isfinite(v.toDouble()) && v.toDouble() > 0)) {
      fail(q, "option max_value must be finite and > 0, got " + text_of(v.toDouble()));
    }
  }
}

std::string kind_of(const c10::TypePtr& type, const std::string& where) {
  switch (type->kind()) {
    case c10::TypeKind::FloatType:
      return "float";
    case c10::TypeKind::IntType:
      return "int";
    case c10::TypeKind::BoolType:
      return "bool";
    case c10::TypeKind::StringType:
      return "str";
    case c10::TypeKind::TensorType:
      return "float";  // a trainable 0-dim tensor
    case c10::TypeKind::OptionalType: {
      const auto inner = type->expectRef<c10::OptionalType>().getElementType();
      if (inner->kind() == c10::TypeKind::FloatType) return "float?";
      break;
    }
    default:
      break;
  }
  throw std::logic_error(where + ": argument type " + type->str() + " has no option kind");
}

QuantizerInfo read_schema(const Entry& e) {
  const std::string op = std::string("lowbit::") + e.name;
  const c10::FunctionSchema& schema =
      c10::Dispatcher::singleton().findSchemaOrThrow(op.c_str(), "").schema();
  QuantizerInfo info;
  info.name = e.name;
  info.bits = e.bits;
  info.bits_option = e.bits_option ? e.bits_option : "";
  info.kernel_axis = e.kernel_axis;
  const auto& args = schema.arguments();
  for (size_t i = 1; i < args.size(); ++i) {  // argument 0 is the input
    OptionInfo o;
    o.key = args[i].name();
    o.kind = kind_of(args[i].type(), op);
    o.parameter = args[i].type()->kind() == c10::TypeKind::TensorType;
    if (o.parameter) {
      o.default_value = e.parameter_default;
    } else if (args[i].default_value()) {
      o.default_value = *args[i].default_value();
    } else {
      throw std::logic_error(op + ": option " + o.key + " has no default in the schema");
    }
    info.options.push_back(std::move(o));
  }
  return info;
}

c10::IValue parse_value(const std::string& q, const OptionInfo& o, const std::string& text) {
  auto bad = [&](const char* want) { fail(q, "option " + o.key + "=" + text + " is not " + want); };
  if (o.kind == "str") return c10::IValue(text);
  if (o.kind == "bool") {
    if (text == "true" || text == "True" || text == "1") return true;
    if (text == "false" || text == "False" || text == "0") return false;
    bad("true or false");
  }
  size_t used = 0;
  if (o.kind == "int") {
    int64_t v = 0;
    try {
      v = std::stoll(text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != text.size() || text.empty()) bad("an integer");
    return v;
  }
  const bool nullable = o.kind == "float?";
  if (nullable && (text == "none" || text == "None" || text == "null")) return c10::IValue();
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || text.empty()) bad(nullable ? "a number or none" : "a number");
  return v;
}

std::string json_value(const c10::IValue& v) {
  if (v.isNone()) return "null";
  if (v.isBool()) return v.toBool() ? "true" : "false";
  if (v.isInt()) return std::to_string(v.toInt());
  if (v.isDouble()) {
    std::ostringstream s;
    s.precision(17);
    s << v.toDouble();
    return s.str();
  }
  return "\"" + io::json_escaped(v.toStringRef()) + "\"";
}

}  // namespace

const std::vector<QuantizerInfo>& quantizer_catalogue() {
  static const std::vector<QuantizerInfo> catalogue = [] {
    std::vector<QuantizerInfo> c;
    for (const Entry& e : kEntries) c.push_back(read_schema(e));
    return c;
  }();
  return catalogue;
}

std::string known_quantizers() {
  std::string s;
  for (const QuantizerInfo& q : quantizer_catalogue()) s += q.name + ", ";
  return s + "none";
}

const QuantizerInfo& quantizer_info(const std::string& name) {
  for (const QuantizerInfo& q : quantizer_catalogue()) {
    if (q.name == name) return q;
  }
  throw std::invalid_argument("unknown quantizer '" + name + "' (known: " + known_quantizers() +
                              ")");
}

ResolvedOptions resolve_options(const QuantizerInfo& info,
                                const std::map<std::string, std::string>& given, bool kernel) {
  for (const auto& [key, text] : given) {
    bool known = false;
    for (const OptionInfo& o : info.options) known = known || o.key == key;
    if (!known) {
      std::string keys;
      for (const OptionInfo& o : info.options) keys += (keys.empty() ? "" : ", ") + o.key;
      throw std::invalid_argument("quantizer " + info.name + " has no option '" + key +
                                  "' (options: " + (keys.empty() ? "none" : keys) + ")");
    }
  }
  ResolvedOptions resolved;
  for (const OptionInfo& o : info.options) {
    const auto it = given.find(o.key);
    c10::IValue v;
    if (it != given.end()) {
      v = parse_value(info.name, o, it->second);
    } else if (o.key == "axis" && info.kernel_axis && kernel) {
      v = int64_t{0};
    } else {
      v = o.default_value;
    }
    check_value(info.name, o.key, v);
    resolved.emplace(o.key, std::move(v));
  }
  return resolved;
}

int64_t precision_of(const QuantizerInfo& info, const ResolvedOptions& options) {
  return info.bits ? info.bits : options.at(info.bits_option).toInt();
}

std::string quantizer_catalogue_json() {
  std::string j = "{\"quantizers\": [";
  bool first = true;
  for (const QuantizerInfo& q : quantizer_catalogue()) {
    j += std::string(first ? "" : ", ") + "{\"name\": \"" + q.name +
         "\", \"bits\": " + std::to_string(q.bits) + ", \"bits_option\": \"" + q.bits_option +
         "\", \"kernel_axis\": " + (q.kernel_axis ? "true" : "false") + ", \"options\": [";
    first = false;
    bool first_option = true;
    for (const OptionInfo& o : q.options) {
      j += std::string(first_option ? "" : ", ") + "{\"key\": \"" + o.key + "\", \"kind\": \"" +
           o.kind + "\", \"default\": " + json_value(o.default_value) +
           ", \"parameter\": " + (o.parameter ? "true" : "false") + "}";
      first_option = false;
    }
    j += "]}";
  }
  return j + "]}";
}

}  // namespace nn
}  // namespace lowbit

namespace {

std::string catalogue_op() { return lowbit::nn::quantizer_catalogue_json(); }

// The precision of a quantizer spec, after every check a quantizer object makes; a ValueError
// in Python.
int64_t quantizer_precision_op(const std::string& name, std::vector<std::string> keys,
                               std::vector<std::string> values, bool kernel) {
  TORCH_CHECK(keys.size() == values.size(), "_quantizer_precision: keys and values differ in size");
  try {
    const lowbit::nn::QuantizerInfo& info = lowbit::nn::quantizer_info(name);
    std::map<std::string, std::string> given;
    for (size_t i = 0; i < keys.size(); ++i) given[keys[i]] = values[i];
    return lowbit::nn::precision_of(info, lowbit::nn::resolve_options(info, given, kernel));
  } catch (const std::invalid_argument& e) {
    TORCH_CHECK_VALUE(false, e.what());
  }
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(lowbit, m) {
  m.def("_quantizer_catalogue() -> str", &catalogue_op);
  m.def("_quantizer_precision(str name, str[] keys, str[] values, bool kernel) -> int",
        &quantizer_precision_op);
}
