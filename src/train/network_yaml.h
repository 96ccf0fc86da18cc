// The `layers:` list of config files (nn::LayerSpec), read and written (docs/training.md,
// "Networks").
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

#include "lowbit/network.h"

namespace lowbit {
namespace train {

// Reads a list of layers; errors are std::invalid_argument naming `path`, the layer
// ("layers[3].body[0]") and the line.
std::vector<nn::LayerSpec> parse_layers(const YAML::Node& node, const std::string& path,
                                        const std::string& where = "layers");

// Writes layers as parse_layers reads them, every option explicit.
void emit_layers(YAML::Emitter& e, const std::vector<nn::LayerSpec>& layers);

}  // namespace train
}  // namespace lowbit
