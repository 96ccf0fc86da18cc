// The chains of fusions (internal): per-channel steps after a layer, evaluated as the unfused
// graph computes them (fusion/chains.cpp), and the conversions of fused storage to floats.
#pragma once

#include <cstdint>
#include <vector>

#include "../program.h"

namespace lowbit {
namespace engine {
namespace detail {

// The constant of an element-wise step as one value per channel of a chain's activation (whose
// channels are its first dimension after the batch, also when flattened); false if it varies
// within a channel.
bool channel_constants(const Value& act, const Value& c, int64_t channels, std::vector<float>& per);

// A chain's per-channel steps applied to value v of channel o, as the unfused steps compute them.
float apply_ops(const std::vector<SumChain::Op>& ops, int64_t o, float v);

// pre[n + k]: channel o's value before the chain's pool at every sum n in [-k, k] (layer(n),
// then the steps before the pool); up / down: whether it never falls / never rises with n. False
// on NaN, or where a pool's input is not monotone.
template <class Layer>
bool values_before_pool(const SumChain& chain, int64_t o, int64_t k, Layer&& layer,
                        std::vector<float>& pre, bool& up, bool& down) {
  for (int64_t n = -k; n <= k; ++n) {
    float& v = pre[n + k];
    v = apply_ops(chain.before_pool, o, layer(n));
    if (v != v) return false;
    if (n > -k) up = up && v >= pre[n + k - 1], down = down && v <= pre[n + k - 1];
  }
  return !chain.pooled || up || down;
}

// The floats of codes: (code - zero) * scale, as Quant computes them.
void decode_codes(const uint8_t* codes, int64_t count, const Grid& g, float* y);

// Makes step s, planned for a float input, read codes value x (out_storage: the floats of its
// output per image).
void decode_input(Step& s, const Value& x, int64_t out_storage);

}  // namespace detail
}  // namespace engine
}  // namespace lowbit
