// The quantizer catalogue: which operators are quantizers, their options (read from the operator
// schemas, the one place arguments and defaults are declared), precision and checks. The C++
// quantizer objects, the exporter and Python's lowbit.nn (through lowbit::_quantizer_catalogue)
// read it; docs/layers.md.
#pragma once

#include <ATen/core/ivalue.h>

#include <map>
#include <string>
#include <vector>

namespace lowbit {
namespace nn {

// One option of a quantizer: an argument of its operator after the input tensor.
struct OptionInfo {
  std::string key;
  // "float", "float?" (a number or none), "int", "bool" or "str"; a trainable 0-dim tensor
  // argument (ttq_weight's positive and negative) is a "float" option giving its initial value.
  std::string kind;
  c10::IValue default_value;
  bool parameter = false;  // a trainable tensor of the quantizer, initialised from the option
};

struct QuantizerInfo {
  std::string name;  // also the operator's name, lowbit::<name>
  std::vector<OptionInfo> options;
  int64_t bits = 0;          // fixed precision, or 0: the value of the option `bits_option`
  std::string bits_option;   // "k_bit", "bit" or empty
  bool kernel_axis = false;  // as a kernel quantizer, "axis" defaults to 0 (the output channel)
};

// Every quantizer, in the order of the spec (docs/quantizers.md); "none" is not listed.
const std::vector<QuantizerInfo>& quantizer_catalogue();
// One by name; std::invalid_argument naming it and the known names if unknown.
const QuantizerInfo& quantizer_info(const std::string& name);
// "ste_sign, approx_sign, ..., none": the names an error message lists.
std::string known_quantizers();

// A quantizer's options with defaults filled in and checked, from their text (as written in specs
// and config files). `kernel` selects the kernel role's axis default. Throws std::invalid_argument
// naming the quantizer and the option.
using ResolvedOptions = std::map<std::string, c10::IValue>;
ResolvedOptions resolve_options(const QuantizerInfo& info,
                                const std::map<std::string, std::string>& given, bool kernel);
// The precision (bits) of a quantizer with these resolved options.
int64_t precision_of(const QuantizerInfo& info, const ResolvedOptions& options);

// The catalogue as JSON, for Python: {"quantizers": [{"name", "bits", "bits_option",
// "kernel_axis", "options": [{"key", "kind", "default", "parameter"}]}]}.
std::string quantizer_catalogue_json();

}  // namespace nn
}  // namespace lowbit

namespace lowbit {
namespace nn {

// How a recipe quantizes a network (the `lowbit` command's recipes and Python's
// lowbit.quantize(model, "bnn")): the quantizers of every layer but the first and last, and the
// integer QAT scheme. The command's recipes add the architecture and schedule (lowbit/train.h).
struct QuantizationRecipe {
  std::string name;
  std::string description;
  std::string input_quantizer = "none";
  std::string kernel_quantizer = "none";
  std::string kernel_constraint = "none";
  double pad_values = 0.0;
  // "relu", or "none": the input quantizers act as the activation (binary networks drop ReLU, which
  // would make every sign +1).
  std::string activation = "relu";
  std::string qat = "none";  // "none", "pow2" or "affine" (lowbit/qat.h)
  bool quantize_first_layer = false;
  bool quantize_last_layer = false;
};
const std::vector<QuantizationRecipe>& quantization_recipes();
// One by name; std::invalid_argument listing the known names if unknown.
const QuantizationRecipe& quantization_recipe(const std::string& name);
// The table as JSON, for Python: {"recipes": [{field: value, ...}]}.
std::string quantization_recipes_json();

}  // namespace nn
}  // namespace lowbit
