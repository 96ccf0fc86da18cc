// The engine's graph IR (internal): the values of a graph as the reader and the lowering see them
// (shapes, constants, integer grids, packed storage), node attributes, and their helpers.
#pragma once

#include <onnx/onnx_pb.h>

#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "lowbit/engine/kernels/binary.h"
#include "lowbit/engine/kernels/planes.h"

namespace lowbit {
namespace engine {
namespace detail {

// Every error of a bad file: "ORIGIN: WHAT".
[[noreturn]] inline void bad(const std::string& origin, const std::string& what) {
  throw std::invalid_argument(origin + ": " + what);
}

// a * b, or an error when it overflows or exceeds `limit`.
int64_t checked_mul(int64_t a, int64_t b, int64_t limit, const std::string& origin,
                    const std::string& what);

inline int64_t product(const std::vector<int64_t>& dims, size_t from = 0) {
  int64_t p = 1;
  for (size_t i = from; i < dims.size(); ++i) p *= dims[i];
  return p;
}

// "[2, 3]"
std::string dims_str(const std::vector<int64_t>& d);

// Values on an integer grid: value = (code - zero) * scale with integer codes in [lo, hi] and an
// integer zero; one scale, or for constants one per slice of dims[0] (output channels).
struct Grid {
  bool on = false;
  std::vector<float> scale;
  double zero = 0;
  int64_t lo = 0, hi = 0;
};

// A binary layer's output followed by per-channel monotone element-wise steps and at most one
// max-pool: each value is h_o(n) of the layer's integer sum n, so its sign is a threshold on n.
struct SumChain {
  size_t conv_step = 0;            // the binary layer's step
  std::vector<size_t> steps;       // the chain's later steps (removed when fused)
  std::vector<std::string> names;  // every value of the chain (each used once, to be fused)
  struct Op {
    char kind;             // * + - /, r (Relu), f (Floor), x (max with c: Clip's min), n (min)
    bool constant_first;   // c - v (the others are written v op c)
    std::vector<float> c;  // per channel
  };
  std::vector<Op> before_pool, after_pool;  // and r: Relu
  bool int8 = false;                        // an 8-bit layer's chain: no pool, monotone ops
  bool planes = false;                      // a bit-plane layer's chain
  bool pooled = false;
  int64_t pool_kh = 1, pool_kw = 1, pool_sh = 1, pool_sw = 1;
  std::vector<int64_t> chw;  // at the chain's end (before a Flatten)
};

// A value of the graph: a constant (initializer or folded) or an activation whose first dimension
// is the batch.
struct Value {
  bool constant = false;
  bool bipolar = false;       // an activation whose every value is -1 or +1
  Grid grid;                  // set by Quant and DequantizeLinear, kept by Relu, pools, padding
  bool integral = false;      // QuantizeLinear's codes: integers in its zero point type's range
  std::vector<int64_t> dims;  // activations: dims[0] is the batch (1 while planning)
  std::vector<float> data;    // constants
  // ±1 activations stored as bits (binary::pack_chw's layout over packed_chw = C, H, W; also after
  // a Flatten, whose dims are then [1, C * H * W]): words(C) * H * W 64-bit words per image.
  bool packed = false;
  std::vector<int64_t> packed_chw;
  std::shared_ptr<const SumChain> chain;
  // GreaterOrEqual(x, 0) of an activation (the standard format's sign, with Where(., 1, -1)), and
  // x's chain carried through it.
  bool ge_zero = false;
  std::shared_ptr<const SumChain> sign_chain;
  // Codes on `grid` stored as bytes, code - grid.lo, in the value's order (a fused 8-bit layer's
  // output): 4 per float of storage.
  bool codes = false;
  // Codes of `planes` bits (1 to 4) stored as bit planes (planes::pack_floats' layout over
  // packed_chw), a fused bit-plane layer's output: value = code * planes_scale, then the scalar
  // Mul / Div the graph applied since (planes_post, in order).
  int planes = 0;
  float planes_scale = 1;
  std::vector<std::pair<char, float>> planes_post;
  // Shape arithmetic: the index of the element of this constant that stands for the batch size,
  // known only at run time (held as 0, Reshape's "copy"); -1 where none.
  int64_t batch_at = -1;
  int64_t per_image() const { return product(dims, 1); }
  // The floats of storage per image.
  int64_t storage_per_image() const {
    if (codes) return (per_image() + 3) / 4;
    if (planes) return 2 * planes::image_words(planes, packed_chw[0], packed_chw[1], packed_chw[2]);
    return packed ? 2 * binary::words(packed_chw[0]) * packed_chw[1] * packed_chw[2] : per_image();
  }
};

struct Attrs {
  std::map<std::string, const onnx::AttributeProto*> map;
  std::string where;
  int64_t i(const std::string& name, int64_t fallback) const {
    auto it = map.find(name);
    if (it == map.end()) return fallback;
    if (it->second->type() != onnx::AttributeProto::INT)
      bad(where, "attribute " + name + " is not an int");
    return it->second->i();
  }
  float f(const std::string& name, float fallback) const {
    auto it = map.find(name);
    if (it == map.end()) return fallback;
    if (it->second->type() != onnx::AttributeProto::FLOAT)
      bad(where, "attribute " + name + " is not a float");
    return it->second->f();
  }
  std::string s(const std::string& name, const std::string& fallback) const {
    auto it = map.find(name);
    if (it == map.end()) return fallback;
    if (it->second->type() != onnx::AttributeProto::STRING)
      bad(where, "attribute " + name + " is not a string");
    return it->second->s();
  }
  std::vector<int64_t> ints(const std::string& name, std::vector<int64_t> fallback) const {
    auto it = map.find(name);
    if (it == map.end()) return fallback;
    if (it->second->type() != onnx::AttributeProto::INTS)
      bad(where, "attribute " + name + " is not a list of ints");
    return {it->second->ints().begin(), it->second->ints().end()};
  }
};

// strides, pads and dilations of a 2-D window (Conv, MaxPool, AveragePool), checked; with auto_pad
// SAME_UPPER or SAME_LOWER, the pads for the input's height and width and the kernel's.
struct Window {
  std::vector<int64_t> strides, pads, dilations;
};
Window window(const Attrs& a, const std::string& where, const std::vector<int64_t>& spatial,
              const std::vector<int64_t>& kernel);

// ---- element-wise broadcasting

// The index map of a constant broadcast over one image of an activation shape (numpy rules): for
// every element of the image, the constant's element. Constants may not grow the shape.
std::vector<int64_t> broadcast_index(const std::vector<int64_t>& act, const std::vector<int64_t>& c,
                                     const std::string& where);
// Index of a broadcast constant for every element of a constant of shape `x` (whole tensor).
std::vector<int64_t> broadcast_constant(const std::vector<int64_t>& x,
                                        const std::vector<int64_t>& c, const std::string& where);

// A broadcast constant's index for every element of an image, kept compact: a constant with one
// value per channel (batch norms) or a single value (scales) needs no map.
struct Broadcast {
  int64_t per = 0, inner = 1, channels = 1;  // without a map, element e uses (e / inner) % channels
  std::vector<int64_t> map;
  int64_t bytes() const { return static_cast<int64_t>(map.size() * sizeof(int64_t)); }
  // The constant's index for element e of an image.
  int64_t at(int64_t e) const { return map.empty() ? (e / inner) % channels : map[e]; }
  // body(element, constant index) for every element of `count` (whole images).
  template <class F>
  void each(int64_t count, F&& body) const {
    if (per == 0) return;
    for (int64_t b = 0; b < count; b += per) {
      if (map.empty()) {
        for (int64_t e0 = 0; e0 < per; e0 += inner) {
          const int64_t ch = (e0 / inner) % channels;
          for (int64_t i = 0; i < inner; ++i) body(b + e0 + i, ch);
        }
      } else {
        for (int64_t e = 0; e < per; ++e) body(b + e, map[e]);
      }
    }
  }
};

Broadcast make_broadcast(const std::vector<int64_t>& act, const std::vector<int64_t>& c,
                         const std::string& where);

// QONNX's rounding modes (its documented table), by index into kRoundingModes.
inline constexpr const char* kRoundingModes[] = {"ROUND",   "HALF_EVEN", "CEIL", "FLOOR",
                                                 "HALF_UP", "HALF_DOWN", "UP",   "DOWN"};
float round_mode(float v, int mode);

// ---- integer grids (grid.cpp)

// An activation on a grid times (or over) a positive scalar stays on a grid of that scale
// (exactly for powers of 2; else up to float32's rounding of each value, which the 8-bit kernels'
// codes round away: Blueoil's 2-bit activations, written as Quant then / 3 * 2).
void scale_grid(const std::vector<const Value*>& in, Value& out, bool divide);
// An integer that int64 and float32 both hold exactly (zero points of a grid).
bool small_integer(float v);
// Whether every value is an integer in [lo, hi].
bool integral_in(const std::vector<float>& v, float lo, float hi);
// The grid of Quant's output: an integer zero point, and one scale (or, for constants, one per
// slice of the first dimension).
Grid quant_grid(const Value& x, const Value& sc, const Value& zp, float lo, float hi);

}  // namespace detail
}  // namespace engine
}  // namespace lowbit
