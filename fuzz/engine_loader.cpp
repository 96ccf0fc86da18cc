// libFuzzer target over the engine's loader (model files are untrusted): any bytes must load or be
// refused with std::invalid_argument; a model that loads runs on two images of zeros, every output
// into its buffer. Everything else (a crash, a sanitizer report, another exception, a leak) is a
// finding. scripts/fuzz-engine.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "lowbit/engine.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lowbit::engine::Limits limits;  // small, so that a unit stays fast
  limits.max_file_bytes = 1 << 22;
  limits.max_tensor_elements = 1 << 16;
  limits.max_total_elements = 1 << 20;
  limits.max_nodes = 256;
  try {
    const auto model = lowbit::engine::Model::from_buffer(data, size, limits, "fuzz");
    std::vector<float> images(static_cast<size_t>(2 * model.input_size()), 0.0f);
    std::vector<std::vector<float>> outs(model.output_count());
    std::vector<float*> buffers;
    for (size_t k = 0; k < outs.size(); ++k) {
      outs[k].resize(static_cast<size_t>(2 * model.output_size(k)));
      buffers.push_back(outs[k].data());
    }
    model.run(images.data(), 2, buffers);
  } catch (const std::invalid_argument&) {
    // A refused file: the expected outcome for most inputs.
  }
  return 0;
}
