// The quantization recipes by name: which quantizers a recipe puts in a network, read by the
// `lowbit` command's training recipes and by Python's lowbit.quantize.
#include <torch/library.h>

#include <stdexcept>

#include "lowbit/catalogue.h"
#include "lowbit/io/json.h"

namespace lowbit {
namespace nn {
namespace {

QuantizationRecipe quantized(const char* name, const char* description, const char* input,
                             const char* kernel, const char* constraint, double pad_values,
                             const char* activation) {
  QuantizationRecipe r;
  r.name = name;
  r.description = description;
  r.input_quantizer = input;
  r.kernel_quantizer = kernel;
  r.kernel_constraint = constraint;
  r.pad_values = pad_values;
  r.activation = activation;
  return r;
}

// Integer networks quantize every layer, the first and last included.
QuantizationRecipe integer(const char* name, const char* description, const char* scheme) {
  QuantizationRecipe r;
  r.name = name;
  r.description = description;
  r.qat = scheme;
  r.quantize_first_layer = r.quantize_last_layer = true;
  return r;
}

}  // namespace

const std::vector<QuantizationRecipe>& quantization_recipes() {
  static const std::vector<QuantizationRecipe> recipes = {
      quantized("float", "no quantization", "none", "none", "none", 0.0, "relu"),
      quantized("bnn",
                "Larq's binarized network: ste_sign inputs and kernels, latent weights clipped "
                "to [-1, 1], +1 padding so that padded inputs stay binary",
                "ste_sign", "ste_sign", "weight_clip", 1.0, "none"),
      quantized("xnor",
                "XNOR-Net: binary inputs, kernels scaled by their mean |w| per output channel",
                "ste_sign", "binary_channel_wise_mean_scaling", "weight_clip", 1.0, "none"),
      quantized(
          "blueoil-a2w1",
          "Blueoil: 2-bit activations in [0, 2] (linear mid-tread), binary mean-scaled kernels",
          "linear_mid_tread_half(bit=2, max_value=2.0)", "binary_mean_scaling", "none", 0.0,
          "none"),
      quantized("ternary", "Ternary weight networks: TWN-thresholded ternary kernels, float inputs",
                "none", "ste_tern(ternary_weight_networks=true)", "none", 0.0, "relu"),
      quantized("birealnet",
                "Bi-Real Net: approx_sign inputs, magnitude-aware binary kernels (the command's "
                "recipe adds a real-valued shortcut around every binary convolution)",
                "approx_sign", "magnitude_aware_sign", "weight_clip", 1.0, "none"),
      quantized("dorefa", "DoReFa-Net: 2-bit activations in [0, 1] and 2-bit weights",
                "dorefa(k_bit=2)", "dorefa(k_bit=2, mode=weights)", "none", 0.0, "none"),
      integer("po2-int8",
              "integer QAT with power-of-2 scales (seed 003): batch norm folded, 8-bit weights and "
              "activations, 16-bit biases",
              "pow2"),
      integer("tf-int8",
              "integer QAT with TF's affine scheme (tf.contrib.quantize): batch norm folded, 8-bit "
              "weights and activations",
              "affine"),
  };
  return recipes;
}

const QuantizationRecipe& quantization_recipe(const std::string& name) {
  std::string known;
  for (const QuantizationRecipe& r : quantization_recipes()) {
    if (r.name == name) return r;
    known += (known.empty() ? "" : ", ") + r.name;
  }
  throw std::invalid_argument("unknown recipe '" + name + "' (known: " + known + ")");
}

std::string quantization_recipes_json() {
  auto str = [](const std::string& s) { return "\"" + io::json_escaped(s) + "\""; };
  std::string j = "{\"recipes\": [";
  bool first = true;
  for (const QuantizationRecipe& r : quantization_recipes()) {
    j += std::string(first ? "" : ", ") + "{\"name\": " + str(r.name) +
         ", \"description\": " + str(r.description) +
         ", \"input_quantizer\": " + str(r.input_quantizer) +
         ", \"kernel_quantizer\": " + str(r.kernel_quantizer) +
         ", \"kernel_constraint\": " + str(r.kernel_constraint) +
         ", \"pad_values\": " + std::to_string(r.pad_values) +
         ", \"activation\": " + str(r.activation) + ", \"qat\": " + str(r.qat) +
         ", \"quantize_first_layer\": " + (r.quantize_first_layer ? "true" : "false") +
         ", \"quantize_last_layer\": " + (r.quantize_last_layer ? "true" : "false") + "}";
    first = false;
  }
  return j + "]}";
}

}  // namespace nn
}  // namespace lowbit

namespace {
std::string recipes_op() { return lowbit::nn::quantization_recipes_json(); }
}  // namespace

TORCH_LIBRARY_FRAGMENT(lowbit, m) { m.def("_quantization_recipes() -> str", &recipes_op); }
