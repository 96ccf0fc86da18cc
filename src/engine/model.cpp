// The engine's loader and interpreter: ONNX parsing and validation (model files are untrusted),
// constant folding, shape inference, and float32 execution of every node with ONNX's and QONNX's
// semantics (docs/engine.md).
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <stdexcept>
#include <string_view>
#include <thread>

#include "lowbit/engine.h"
#include "lowbit/engine/kernels/binary.h"
#include "lowbit/engine/kernels/float32.h"
#include "lowbit/engine/kernels/int8.h"
#include "lowbit/engine/kernels/planes.h"
#include "lowbit/io/checksum.h"
#include "lowbit/io/file.h"

namespace lowbit {
namespace engine {
namespace {

[[noreturn]] void bad(const std::string& origin, const std::string& what) {
  throw std::invalid_argument(origin + ": " + what);
}

// a * b, or an error when it overflows or exceeds `limit`.
int64_t checked_mul(int64_t a, int64_t b, int64_t limit, const std::string& origin,
                    const std::string& what) {
  if (a < 0 || b < 0) bad(origin, what + " has a negative dimension");
  if (b != 0 && a > limit / b)
    bad(origin, what + " is too large (over " + std::to_string(limit) + " elements)");
  return a * b;
}

int64_t product(const std::vector<int64_t>& dims, size_t from = 0) {
  int64_t p = 1;
  for (size_t i = from; i < dims.size(); ++i) p *= dims[i];
  return p;
}

std::string dims_str(const std::vector<int64_t>& d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + "]";
}

// A value of the graph: a constant (initializer or folded) or an activation whose first dimension
// is the batch.
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
    char kind;             // * + - /
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

// strides, pads and dilations of a 2-D window (Conv, MaxPool), checked.
struct Window {
  std::vector<int64_t> strides, pads, dilations;
};
Window window(const Attrs& a, const std::string& where) {
  Window w{a.ints("strides", {1, 1}), a.ints("pads", {0, 0, 0, 0}), a.ints("dilations", {1, 1})};
  if (w.strides.size() != 2 || w.pads.size() != 4 || w.dilations.size() != 2) {
    bad(where, "strides, pads and dilations must have 2, 4 and 2 values");
  }
  for (int64_t v : w.strides)
    if (v < 1 || v > 1024) bad(where, "strides must be in [1, 1024]");
  for (int64_t v : w.dilations)
    if (v < 1 || v > 1024) bad(where, "dilations must be in [1, 1024]");
  for (int64_t v : w.pads)
    if (v < 0 || v > 1024) bad(where, "pads must be in [0, 1024]");
  return w;
}

// One executable step: reads value ids, writes one value id, for a chunk of `batch` images.
// A binary convolution or dense layer (a dense layer is the convolution of its input by a kernel
// as large as it), its weights in the kernel's layout.
struct BinaryLayer {
  binary::ConvShape shape;
  const binary::Kernels* kernels = nullptr;
  std::vector<uint64_t> weights;
  std::vector<float> scale, bias;
  bool input_packed = false;  // reads packed words, else packs the signs of floats
  int64_t input_words() const { return binary::words(shape.c) * shape.h * shape.w; }
  // Image b's packed input: in place, or packed into buffer.
  const uint64_t* input(const float* x, int64_t b, std::vector<uint64_t>& buffer) const {
    if (input_packed) return reinterpret_cast<const uint64_t*>(x) + b * input_words();
    buffer.resize(input_words());
    binary::pack_chw(x + b * shape.c * shape.h * shape.w, shape.c, shape.h, shape.w, buffer.data());
    return buffer.data();
  }
};

// An 8-bit convolution or dense layer (int8_conv below): its weights in the kernel's layout and
// what turns its sums into the layer's value.
struct Int8Layer {
  binary::ConvShape shape;
  const int8::Kernels* kernels = nullptr;
  std::vector<int8_t> weights;
  int64_t mc = 0, zx = 0, zw = 0;  // rows of weights (m, plus the row of ones where zw != 0)
  float sx = 1;                    // the input's scale
  std::vector<int64_t> constant;
  std::vector<double> scale;
  std::vector<float> bias;
  bool input_codes = false;  // reads a fused layer's codes, else the codes of floats
  int64_t sum_bound = 0;     // |every sum| (int8.h's, with the zero points' corrections) is below
  int64_t input_bytes() const { return shape.c * shape.h * shape.w; }
  // Image b's padded codes and the raw sums (int8.h), in buffers reused by every step of a thread.
  const int32_t* sums(const float* x, int64_t b) const {
    thread_local std::vector<uint8_t> codes_in;
    thread_local std::vector<int32_t> raw;
    codes_in.resize(int8::padded_channels(shape.c) * int8::padded_rows(shape) *
                    int8::padded_cols(shape));
    raw.resize(mc * shape.oh * shape.ow);
    if (input_codes) {
      const auto* in = reinterpret_cast<const uint8_t*>(x) + b * 4 * ((input_bytes() + 3) / 4);
      kernels->pack_codes(in, static_cast<int>(zx), shape, codes_in.data());
    } else {
      kernels->pack_input(x + b * input_bytes(), sx, static_cast<int>(zx), shape, codes_in.data());
    }
    kernels->conv(codes_in.data(), weights.data(), mc, shape, raw.data());
    return raw.data();
  }
};

// A layer of b-bit codes with binary weights (planes.h), its weights in the kernel's layout; its
// value is n * scale[o] + bias[o] for the integer sum n, computed as int8's dequantize does.
struct PlanesLayer {
  binary::ConvShape shape;
  const planes::Kernels* kernels = nullptr;
  std::vector<uint64_t> weights;
  int bits = 0;
  float sx = 1;  // the input's scale (codes of floats: round(x / sx))
  std::vector<double> scale;
  std::vector<float> bias;
  std::vector<int64_t> zeros;  // dequantize's constant
  bool input_planes = false;   // reads a fused layer's planes, else packs the codes of floats
  int64_t input_words() const { return planes::image_words(bits, shape.c, shape.h, shape.w); }
  const int32_t* sums(const float* x, int64_t b) const {
    thread_local std::vector<uint64_t> packed;
    thread_local std::vector<int32_t> raw;
    const uint64_t* in = reinterpret_cast<const uint64_t*>(x) + b * input_words();
    if (!input_planes) {
      packed.resize(input_words());
      planes::pack_floats(x + b * shape.c * shape.h * shape.w, sx, bits, shape.c, shape.h, shape.w,
                          packed.data());
      in = packed.data();
    }
    raw.resize(shape.m * shape.oh * shape.ow);
    kernels->sums(in, bits, weights.data(), shape, raw.data());
    return raw.data();
  }
};

// A fused 8-bit layer's requantization (int8::requantize's arguments per output channel).
struct Requantization {
  std::vector<int64_t> add;
  std::vector<int32_t> shift, lo, hi;
};

// One executable step: reads value ids, writes one value id, for a chunk of `batch` images.
struct Step {
  PlannedNode info;
  std::vector<int> inputs;
  int output = -1;
  std::function<void(const std::vector<const float*>&, float*, int64_t batch)> run;
  std::shared_ptr<const BinaryLayer> binary;  // binary layers: what a fusion rebuilds them from
  std::shared_ptr<const Int8Layer> int8;      // 8-bit layers: the same
  std::shared_ptr<const PlanesLayer> planes;  // bit-plane layers: the same
  bool removed = false;                       // fused into an earlier step
};

// ---- element-wise helpers

// The index map of a constant broadcast over one image of an activation shape (numpy rules): for
// every element of the image, the constant's element. Constants may not grow the shape.
std::vector<int64_t> broadcast_index(const std::vector<int64_t>& act, const std::vector<int64_t>& c,
                                     const std::string& where) {
  if (c.size() > act.size())
    bad(where, "a constant of shape " + dims_str(c) + " does not broadcast to " + dims_str(act));
  const size_t off = act.size() - c.size();
  for (size_t i = 0; i < c.size(); ++i) {
    const int64_t a = act[off + i], b = c[i];
    if (b != 1 && b != a)
      bad(where, "a constant of shape " + dims_str(c) + " does not broadcast to " + dims_str(act));
    if (off + i == 0 && b != 1) bad(where, "a constant may not vary along the batch dimension");
  }
  const int64_t n = product(act, 1);
  std::vector<int64_t> index(n);
  std::vector<int64_t> coord(act.size(), 0);
  for (int64_t e = 0; e < n; ++e) {
    int64_t rem = e, k = 0, stride = 1;
    for (size_t d = act.size(); d-- > 1;) {
      coord[d] = rem % act[d];
      rem /= act[d];
    }
    for (size_t i = c.size(); i-- > 0;) {
      const size_t d = off + i;
      if (c[i] != 1) k += coord[d] * stride;
      stride *= c[i];
    }
    index[e] = k;
  }
  return index;
}

// A broadcast constant's index for every element of an image, kept compact: a constant with one
// value per channel (batch norms) or a single value (scales) needs no map.
struct Broadcast {
  int64_t per = 0, inner = 1, channels = 1;  // without a map, element e uses (e / inner) % channels
  std::vector<int64_t> map;
  int64_t bytes() const { return static_cast<int64_t>(map.size() * sizeof(int64_t)); }
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
                         const std::string& where) {
  Broadcast bc;
  bc.map = broadcast_index(act, c, where);
  bc.per = product(act, 1);
  const int64_t n = bc.per;
  if (n == 0) return bc;
  int64_t inner = 1;
  while (inner < n && bc.map[inner] == bc.map[0]) ++inner;
  const int64_t channels = product(c);
  bool pattern = n % inner == 0 && channels > 0;
  for (int64_t e = 0; pattern && e < n; ++e) pattern = bc.map[e] == (e / inner) % channels;
  if (pattern) {
    bc.inner = inner;
    bc.channels = channels;
    std::vector<int64_t>().swap(bc.map);
  }
  return bc;
}

// QONNX's rounding modes (its documented table), by index into kRoundingModes.
const char* const kRoundingModes[] = {"ROUND",   "HALF_EVEN", "CEIL", "FLOOR",
                                      "HALF_UP", "HALF_DOWN", "UP",   "DOWN"};
float round_mode(float v, int mode) {
  switch (mode) {
    case 0:
    case 1:
      return std::nearbyint(v);
    case 2:
      return std::ceil(v);
    case 3:
      return std::floor(v);
    case 4:
      return v < 0 ? -std::floor(-v + 0.5f) : std::floor(v + 0.5f);
    case 5:
      return v < 0 ? -std::ceil(-v - 0.5f) : std::ceil(v - 0.5f);
    case 6:
      return v < 0 ? std::floor(v) : std::ceil(v);
    default:
      return std::trunc(v);  // DOWN
  }
}

}  // namespace

struct Model::Impl {
  std::string origin;
  Limits limits;
  std::vector<Value> values;
  std::map<std::string, int> ids;
  std::vector<Step> steps;
  std::vector<PlannedNode> plan;
  int input = -1, output = -1;
  std::vector<int64_t> input_dims;  // C, H, W
  int64_t classes = 0;
  int64_t total_constant_elements = 0;
  bool initializing = false;  // reading initializers, counted as they are read

  int add_value(const std::string& name, Value v, const std::string& where) {
    if (ids.count(name)) bad(where, "value '" + name + "' is defined twice");
    // Folded constants count with the initializers (broadcasting can grow them).
    if (v.constant && !initializing) {
      total_constant_elements += static_cast<int64_t>(v.data.size());
      if (total_constant_elements > limits.max_total_elements)
        bad(where, "the constants (initializers and folded values) are too large");
    }
    values.push_back(std::move(v));
    ids[name] = static_cast<int>(values.size()) - 1;
    return ids[name];
  }
  const Value& value(const std::string& name, const std::string& where) const {
    auto it = ids.find(name);
    if (it == ids.end())
      bad(where, "input '" + name + "' is not defined before use (a missing input or a cycle)");
    return values[it->second];
  }
  int id(const std::string& name) const { return ids.at(name); }

  Value read_initializer(const onnx::TensorProto& t) {
    const std::string where = origin + ": initializer '" + t.name() + "'";
    Value v;
    v.constant = true;
    int64_t n = 1;
    for (int64_t d : t.dims()) {
      if (d < 0) bad(where, "has a negative dimension");
      n = checked_mul(n, d, limits.max_tensor_elements, where, "the tensor");
      v.dims.push_back(d);
    }
    if (t.data_location() == onnx::TensorProto::EXTERNAL)
      bad(where, "external data is not supported");
    total_constant_elements += n;
    if (total_constant_elements > limits.max_total_elements)
      bad(origin, "the initializers are too large");
    v.data.resize(n);
    const std::string& raw = t.raw_data();
    auto need = [&](size_t elem, int count_in_field) {
      if (!raw.empty()) {
        if (raw.size() != static_cast<size_t>(n) * elem) {
          bad(where, "holds " + std::to_string(raw.size()) + " bytes for " + std::to_string(n) +
                         " elements of " + std::to_string(elem) + " bytes");
        }
      } else if (count_in_field != n) {
        bad(where, "holds " + std::to_string(count_in_field) + " values for " + std::to_string(n) +
                       " elements");
      }
    };
    switch (t.data_type()) {
      case onnx::TensorProto::FLOAT:
        need(4, t.float_data_size());
        if (!raw.empty())
          std::memcpy(v.data.data(), raw.data(), raw.size());
        else
          std::copy(t.float_data().begin(), t.float_data().end(), v.data.begin());
        break;
      case onnx::TensorProto::INT8:
      case onnx::TensorProto::UINT8:
      case onnx::TensorProto::INT32: {
        const bool i8 = t.data_type() == onnx::TensorProto::INT8,
                   u8 = t.data_type() == onnx::TensorProto::UINT8;
        need(i8 || u8 ? 1 : 4, t.int32_data_size());
        for (int64_t k = 0; k < n; ++k) {
          int64_t x;
          if (raw.empty()) {
            x = t.int32_data(static_cast<int>(k));
          } else if (i8) {
            x = static_cast<int8_t>(raw[k]);
          } else if (u8) {
            x = static_cast<uint8_t>(raw[k]);
          } else {
            int32_t w;
            std::memcpy(&w, raw.data() + 4 * k, 4);
            x = w;
          }
          v.data[k] = static_cast<float>(x);
        }
        break;
      }
      case onnx::TensorProto::INT64:
        need(8, t.int64_data_size());
        for (int64_t k = 0; k < n; ++k) {
          int64_t x;
          if (raw.empty())
            x = t.int64_data(static_cast<int>(k));
          else
            std::memcpy(&x, raw.data() + 8 * k, 8);
          v.data[k] = static_cast<float>(x);
        }
        break;
      default:
        bad(where, "has an unsupported data type (" + std::to_string(t.data_type()) + ")");
    }
    return v;
  }

  void load(const onnx::ModelProto& m) {
    const onnx::GraphProto& g = m.graph();
    if (g.node_size() > limits.max_nodes) bad(origin, "too many nodes");
    initializing = true;
    for (const auto& t : g.initializer()) add_value(t.name(), read_initializer(t), origin);
    initializing = false;
    // The one graph input that is not an initializer: [batch, C, H, W].
    for (const auto& in : g.input()) {
      if (ids.count(in.name())) continue;
      if (input >= 0) bad(origin, "the graph has more than one input");
      const auto& type = in.type().tensor_type();
      if (!in.type().has_tensor_type() || type.elem_type() != onnx::TensorProto::FLOAT) {
        bad(origin, "input '" + in.name() + "' is not a float32 tensor");
      }
      if (type.shape().dim_size() != 4)
        bad(origin, "input '" + in.name() + "' is not 4-D [batch, channels, height, width]");
      Value v;
      v.dims.push_back(1);
      for (int d = 1; d < 4; ++d) {
        const auto& dim = type.shape().dim(d);
        if (!dim.has_dim_value() || dim.dim_value() <= 0 ||
            dim.dim_value() > limits.max_tensor_elements) {
          bad(origin, "input '" + in.name() + "': dimension " + std::to_string(d) +
                          " must be a positive number");
        }
        v.dims.push_back(dim.dim_value());
        input_dims.push_back(dim.dim_value());
      }
      checked_mul(
          checked_mul(v.dims[1], v.dims[2], limits.max_tensor_elements, origin, "the input"),
          v.dims[3], limits.max_tensor_elements, origin, "the input");
      input = add_value(in.name(), std::move(v), origin);
    }
    if (input < 0) bad(origin, "the graph has no input");
    for (const auto& n : g.node())
      for (const auto& i : n.input()) ++uses[i];
    for (const auto& o : g.output()) uses[o.name()] += 2;  // never fused away
    for (int k = 0; k < g.node_size(); ++k) add_node(g.node(k), k);
    if (g.output_size() == 1 && ids.count(g.output(0).name()) &&
        values[ids.at(g.output(0).name())].packed) {
      unpack(g.output(0).name());
    }
    if (g.output_size() == 1 && ids.count(g.output(0).name()) &&
        values[ids.at(g.output(0).name())].codes) {
      decode(g.output(0).name());
    }
    if (g.output_size() == 1 && ids.count(g.output(0).name()) &&
        values[ids.at(g.output(0).name())].planes) {
      decode_planes(g.output(0).name());
    }
    // The steps fused into others go; the plan lists the rest.
    steps.erase(
        std::remove_if(steps.begin(), steps.end(), [](const Step& st) { return st.removed; }),
        steps.end());
    for (const Step& st : steps) plan.push_back(st.info);
    // Every kernel keeps what it needs (packed, for binary ones): the float constants go.
    for (Value& v : values) {
      if (v.constant) std::vector<float>().swap(v.data);
    }
    if (g.output_size() != 1) bad(origin, "the graph must have one output");
    const Value& out = value(g.output(0).name(), origin + ": graph output");
    if (out.constant || out.dims.size() != 2)
      bad(origin, "the output must be a [batch, classes] activation");
    output = id(g.output(0).name());
    classes = out.dims[1];
    if (std::none_of(steps.begin(), steps.end(),
                     [&](const Step& st) { return st.output == output; })) {
      bad(origin, "the graph output is not computed by any node");
    }
  }

  // ---- bitpacked binary chains

  // Whether node n reads its input i as packed bits: binary convolutions and dense layers, ±1
  // padding, Flatten and max-pools without padding; every other reader gets floats.
  bool reads_packed(const onnx::NodeProto& n, int i) const {
    if (i != 0) return false;
    const Attrs a = attrs_of(n);
    const std::string& op = n.op_type();
    if (op == "Pad") {
      const Value* v = constant_input(n, 2);
      return values[ids.at(n.input(0))].dims.size() == 4 && a.s("mode", "constant") == "constant" &&
             v && v->data.size() == 1 && (v->data[0] == 1.0f || v->data[0] == -1.0f);
    }
    return flattens(n, a) || binary_layer(n, a) || pools_unpadded(n, a);
  }

  // The checks the readers of packed bits, codes and bit planes share. Node n's attributes:
  Attrs attrs_of(const onnx::NodeProto& n) const {
    Attrs a;
    a.where = origin;
    for (const auto& attr : n.attribute()) a.map[attr.name()] = &attr;
    return a;
  }
  // Node n's input k where it is a constant, else null.
  const Value* constant_input(const onnx::NodeProto& n, int k) const {
    if (n.input_size() <= k || n.input(k).empty() || !ids.count(n.input(k))) return nullptr;
    const Value& v = values[ids.at(n.input(k))];
    return v.constant ? &v : nullptr;
  }
  // A Flatten of axis 1: the same storage, whatever it holds.
  static bool flattens(const onnx::NodeProto& n, const Attrs& a) {
    return n.op_type() == "Flatten" && a.i("axis", 1) == 1;
  }
  // A MaxPool of a 4-D input without padding, dilation or ceil mode.
  bool pools_unpadded(const onnx::NodeProto& n, const Attrs& a) const {
    if (n.op_type() != "MaxPool") return false;
    for (const char* k : {"pads", "dilations"}) {
      for (int64_t v : a.ints(k, {}))
        if (v != (std::string(k) == "pads" ? 0 : 1)) return false;
    }
    return values[ids.at(n.input(0))].dims.size() == 4 && a.i("ceil_mode", 0) == 0 &&
           a.s("auto_pad", "NOTSET") == "NOTSET" && a.i("storage_order", 0) == 0;
  }
  // A Conv (group 1) or Gemm (transB, alpha = beta = 1) of input 0 whose constant weights match
  // its channels and are s[o] * (±1): the layers planned as binary or bit-plane layers.
  bool binary_layer(const onnx::NodeProto& n, const Attrs& a) const {
    const std::string& op = n.op_type();
    if (op != "Conv" && op != "Gemm") return false;
    const Value& x = values[ids.at(n.input(0))];
    const Value* w = constant_input(n, 1);
    std::vector<float> scale;
    const bool layout = op == "Conv"
                            ? x.dims.size() == 4 && a.i("group", 1) == 1 && w && w->dims.size() == 4
                            : x.dims.size() == 2 && a.i("transB", 0) == 1 &&
                                  a.i("transA", 0) == 0 && a.f("alpha", 1.0f) == 1.0f &&
                                  a.f("beta", 1.0f) == 1.0f && w && w->dims.size() == 2;
    return layout && w->dims[1] == x.dims[1] && binary_scales(w->data, w->dims[0], scale);
  }

  // Plans a step `kernel` that turns value `name` (packed or codes) into floats, value f, and makes
  // the name refer to them.
  template <class Run>
  void convert(const std::string& name, Value f, const std::string& kernel, Run&& run) {
    Step st;
    st.info.name = name;
    st.info.op_type = "Convert";
    st.info.kernel = kernel;
    st.info.output.assign(f.dims.begin() + 1, f.dims.end());
    st.inputs = {ids.at(name)};
    st.run = std::forward<Run>(run);
    values.push_back(std::move(f));
    st.output = ids[name] = static_cast<int>(values.size()) - 1;
    steps.push_back(std::move(st));
  }

  // Plans a step that turns packed value `name` into floats ±1 and makes the name refer to them.
  void unpack(const std::string& name) {
    const int packed_id = ids.at(name);
    Value u;
    u.dims = values[packed_id].dims;
    u.bipolar = true;
    const std::vector<int64_t> chw = values[packed_id].packed_chw;
    convert(name, std::move(u), "unpack_bits",
            [chw](const std::vector<const float*>& xs, float* y, int64_t count) {
              const int64_t c = chw[0], plane = chw[1] * chw[2], cw = binary::words(c);
              for (int64_t b = 0; b < count / (c * plane); ++b) {
                const uint64_t* in = reinterpret_cast<const uint64_t*>(xs[0]) + b * cw * plane;
                float* yb = y + b * c * plane;
                for (int64_t ch = 0; ch < c; ++ch)
                  for (int64_t p = 0; p < plane; ++p)
                    yb[ch * plane + p] = (in[p * cw + (ch >> 6)] >> (ch & 63)) & 1 ? -1.0f : 1.0f;
              }
            });
  }

  // The constant of an element-wise step as one value per channel of a chain's activation (whose
  // channels are its first dimension after the batch, also when flattened); false if it varies
  // within a channel.
  static bool channel_constants(const Value& act, const Value& c, int64_t channels,
                                std::vector<float>& per) {
    if (c.data.size() == 1) {
      per.assign(channels, c.data[0]);
      return true;
    }
    const int64_t total = act.per_image(), plane = total / channels;
    if (plane * channels != total) return false;
    const auto index = broadcast_index(act.dims, c.dims, "");
    per.resize(channels);
    for (int64_t e = 0; e < total; ++e) {
      if (index[e] != index[e / plane * plane]) return false;
      if (e % plane == 0) per[e / plane] = c.data[index[e]];
    }
    return true;
  }

  // Starts a chain at a binary layer's output and carries it through per-channel Mul, Add, Sub and
  // Div by constants, one max-pool without padding, Flatten and Identity.
  void extend_chain(const std::string& op, const onnx::NodeProto& n,
                    const std::vector<const Value*>& in, const Attrs& a, const Step& s,
                    Value& out) {
    const size_t index = steps.size();  // the step about to be added
    const binary::ConvShape* layer = s.binary   ? &s.binary->shape
                                     : s.planes ? &s.planes->shape
                                     : s.int8   ? &s.int8->shape
                                                : nullptr;
    if (layer) {
      auto chain = std::make_shared<SumChain>();
      chain->conv_step = index;
      chain->names = {n.output(0)};
      chain->chw = {layer->m, layer->oh, layer->ow};
      chain->planes = s.planes != nullptr;
      chain->int8 = s.int8 != nullptr;
      out.chain = chain;
      return;
    }
    if (in.empty() || !in[0]) return;
    std::shared_ptr<SumChain> next;
    if (op == "Mul" || op == "Add" || op == "Sub" || op == "Div") {
      if (in.size() != 2 || !in[1] || in[0]->constant == in[1]->constant) return;
      const bool act_first = !in[0]->constant;
      const Value& act = act_first ? *in[0] : *in[1];
      const Value& c = act_first ? *in[1] : *in[0];
      if (!act.chain || (op == "Div" && !act_first)) return;
      SumChain::Op step{op == "Mul"   ? '*'
                        : op == "Add" ? '+'
                        : op == "Sub" ? '-'
                                      : '/',
                        !act_first && op == "Sub",
                        {}};
      if (!channel_constants(act, c, act.chain->chw[0], step.c)) return;
      // An 8-bit layer's chain is fused without evaluating every sum: its steps must be
      // nondecreasing functions by construction.
      if (act.chain->int8) {
        if (step.constant_first) return;
        for (float v : step.c)
          if (!std::isfinite(v) || ((step.kind == '*' || step.kind == '/') && !(v > 0))) return;
      }
      next = std::make_shared<SumChain>(*act.chain);
      (next->pooled ? next->after_pool : next->before_pool).push_back(step);
    } else if (op == "Relu") {
      if (!in[0]->chain) return;
      next = std::make_shared<SumChain>(*in[0]->chain);
      (next->pooled ? next->after_pool : next->before_pool).push_back({'r', false, {}});
    } else if (op == "MaxPool") {
      const Value& x = *in[0];
      if (!x.chain || x.chain->int8 || x.chain->pooled || x.dims.size() != 4 ||
          x.chain->chw[1] != x.dims[2])
        return;
      for (int64_t v : a.ints("pads", {}))
        if (v != 0) return;
      for (int64_t v : a.ints("dilations", {}))
        if (v != 1) return;
      if (a.i("ceil_mode", 0) != 0) return;
      const auto ks = a.ints("kernel_shape", {});
      const auto st = a.ints("strides", {1, 1});
      if (ks.size() != 2 || st.size() != 2) return;
      next = std::make_shared<SumChain>(*x.chain);
      next->pooled = true;
      next->pool_kh = ks[0], next->pool_kw = ks[1], next->pool_sh = st[0], next->pool_sw = st[1];
      next->chw = {out.dims[1], out.dims[2], out.dims[3]};
    } else if (op == "Flatten" || op == "Identity") {
      if (!in[0]->chain) return;
      next = std::make_shared<SumChain>(*in[0]->chain);
    } else {
      return;
    }
    next->steps.push_back(index);
    next->names.push_back(n.output(0));
    out.chain = next;
  }

  // A chain's per-channel steps applied to value v of channel o, as the unfused steps compute them.
  static float apply_ops(const std::vector<SumChain::Op>& ops, int64_t o, float v) {
    for (const auto& op : ops) {
      if (op.kind == 'r') {
        v = v < 0 ? 0.0f : v;
        continue;
      }
      const float c = op.c[o];
      v = op.kind == '*'   ? v * c
          : op.kind == '+' ? v + c
          : op.kind == '/' ? v / c
                           : (op.constant_first ? c - v : v - c);
    }
    return v;
  }

  // pre[n + k]: channel o's value before the chain's pool at every sum n in [-k, k] (layer(n),
  // then the steps before the pool); up / down: whether it never falls / never rises with n. False
  // on NaN, or where a pool's input is not monotone.
  template <class Layer>
  static bool values_before_pool(const SumChain& chain, int64_t o, int64_t k, Layer&& layer,
                                 std::vector<float>& pre, bool& up, bool& down) {
    for (int64_t n = -k; n <= k; ++n) {
      float& v = pre[n + k];
      v = apply_ops(chain.before_pool, o, layer(n));
      if (v != v) return false;
      if (n > -k) up = up && v >= pre[n + k - 1], down = down && v <= pre[n + k - 1];
    }
    return !chain.pooled || up || down;
  }

  // The thresholds of a fused chain: bit (−1) where n < t (below) or n > t, n the sum; over a
  // pool, the window's bits combined by AND or OR per channel.
  struct Thresholds {
    std::vector<int32_t> t;
    std::vector<uint8_t> below;
    std::vector<uint64_t> and_mask;  // per word: the channels whose pooled bit is the AND
  };

  // Fuses a chain ending in BipolarQuant into its binary layer's step: the layer's sums (scale 1,
  // bias 0: exact integers), pooled, compared with per-channel thresholds and written as bits.
  // The thresholds come from evaluating the chain's own float operations at every possible sum, so
  // the bits are the float graph's signs exactly; false (no fusion) where a value of the chain is
  // read elsewhere or its functions are not monotone.
  bool fuse(const SumChain& chain, size_t& into) {
    for (const auto& name : chain.names)
      if (uses[name] != 1) return false;
    Step& conv = steps[chain.conv_step];
    const std::shared_ptr<const BinaryLayer> layer = conv.binary;
    const BinaryLayer& l = *layer;
    const int64_t m = l.shape.m, k = l.shape.kh * l.shape.kw * l.shape.c;
    // Every sum of every channel is evaluated: a bounded amount of work for any file.
    if (k > (int64_t{1} << 20) || m * (2 * k + 1) > (int64_t{1} << 26)) return false;
    if (!spend(m * (2 * k + 1))) return false;
    auto th = std::make_shared<Thresholds>();
    th->t.resize(m), th->below.resize(m);
    th->and_mask.assign(binary::words(m), 0);
    std::vector<float> pre(2 * k + 1);
    for (int64_t o = 0; o < m; ++o) {
      bool up = true, down = true;
      // As the kernels compute the layer's value, then the chain's steps before the pool.
      if (!values_before_pool(
              chain, o, k,
              [&](int64_t n) { return static_cast<float>(n) * l.scale[o] + l.bias[o]; }, pre, up,
              down))
        return false;
      const bool largest = up;  // the pool keeps the largest sum (else the smallest)
      // BipolarQuant: -1 (bit 1) unless v >= 0.
      auto bit = [&](int64_t n) { return !(apply_ops(chain.after_pool, o, pre[n + k]) >= 0); };
      int changes = 0;
      int64_t last_change = 0;
      for (int64_t n = -k + 1; n <= k; ++n) {
        if (bit(n) != bit(n - 1)) ++changes, last_change = n;
      }
      if (changes > 1) return false;
      if (changes == 0) {
        th->below[o] = 1, th->t[o] = static_cast<int32_t>(bit(-k) ? k + 1 : -k);
      } else if (bit(-k)) {
        th->below[o] = 1, th->t[o] = static_cast<int32_t>(last_change);  // bits for n < t
      } else {
        th->below[o] = 0, th->t[o] = static_cast<int32_t>(last_change - 1);  // bits for n > t
      }
      // Over a pool, bit(largest n) for "n < t" is the AND of the window's bits, for "n > t" the
      // OR (and the other way round for the smallest n).
      if (largest == (th->below[o] != 0)) th->and_mask[o >> 6] |= uint64_t{1} << (o & 63);
    }
    const int64_t ph = chain.chw[1], pw = chain.chw[2];
    const bool pooled = chain.pooled;
    const int64_t pkh = chain.pool_kh, pkw = chain.pool_kw, psh = chain.pool_sh,
                  psw = chain.pool_sw;
    conv.run = [layer, th, ph, pw, pooled, pkh, pkw, psh, psw](const std::vector<const float*>& xs,
                                                               float* y, int64_t count) {
      const BinaryLayer& l = *layer;
      const binary::ConvShape& sh = l.shape;
      const int64_t mw = binary::words(sh.m), out_words = mw * ph * pw;
      thread_local std::vector<uint64_t> buffer, bits;
      for (int64_t b = 0; b < count / (2 * out_words); ++b) {
        uint64_t* o = reinterpret_cast<uint64_t*>(y) + b * out_words;
        const uint64_t* in = l.input(xs[0], b, buffer);
        if (!pooled) {
          l.kernels->conv_bits(in, l.weights.data(), th->t.data(), th->below.data(), sh, o);
          continue;
        }
        bits.resize(mw * sh.oh * sh.ow);
        l.kernels->conv_bits(in, l.weights.data(), th->t.data(), th->below.data(), sh, bits.data());
        for (int64_t r = 0; r < ph; ++r)
          for (int64_t q = 0; q < pw; ++q)
            for (int64_t k = 0; k < mw; ++k) {
              uint64_t all = ~uint64_t{0}, any = 0;
              for (int64_t i = 0; i < pkh; ++i)
                for (int64_t j = 0; j < pkw; ++j) {
                  const uint64_t v = bits[((r * psh + i) * sh.ow + q * psw + j) * mw + k];
                  all &= v, any |= v;
                }
              o[(r * pw + q) * mw + k] = (all & th->and_mask[k]) | (any & ~th->and_mask[k]);
            }
      }
    };
    conv.info.kernel += pooled ? "+maxpool+threshold" : "+threshold";
    conv.info.parameter_bytes += m * static_cast<int64_t>(sizeof(float) + 2);
    for (size_t i : chain.steps) steps[i].removed = true;
    into = chain.conv_step;
    return true;
  }

  // Fusions evaluate a chain's float operations many times; all of a model's together at most
  // kFusionWork times (about a second), after which layers run unfused (as exactly, more slowly).
  static constexpr int64_t kFusionWork = int64_t{1} << 28;
  int64_t fusion_work = 0;
  bool spend(int64_t evaluations) {
    if (fusion_work + evaluations > kFusionWork) return false;
    fusion_work += evaluations;
    return true;
  }

  // ---- 8-bit codes between layers

  // Whether node n reads its input i as codes (Value::codes): 8-bit convolutions and dense layers
  // (which decode where they take another kernel), Flatten, and max-pools without padding.
  bool reads_codes(const onnx::NodeProto& n, int i) const {
    if (i != 0) return false;
    const std::string& op = n.op_type();
    if (op == "Conv" || op == "Gemm") return true;
    const Attrs a = attrs_of(n);
    return flattens(n, a) || pools_unpadded(n, a);
  }

  // The floats of codes: (code - zero) * scale, as Quant computes them.
  static void decode_codes(const uint8_t* codes, int64_t count, const Grid& g, float* y) {
    const float lo = static_cast<float>(g.lo), zero = static_cast<float>(g.zero), sc = g.scale[0];
    for (int64_t e = 0; e < count; ++e) y[e] = (static_cast<float>(codes[e]) + lo - zero) * sc;
  }

  // Plans a step that turns codes value `name` into floats and makes the name refer to them.
  void decode(const std::string& name) {
    const int codes_id = ids.at(name);
    Value f;
    f.dims = values[codes_id].dims;
    f.grid = values[codes_id].grid;
    const Grid g = f.grid;
    const int64_t per = f.per_image(), stored = 4 * ((per + 3) / 4);
    convert(name, std::move(f), "decode_codes",
            [g, per, stored](const std::vector<const float*>& xs, float* y, int64_t count) {
              const auto* in = reinterpret_cast<const uint8_t*>(xs[0]);
              for (int64_t b = 0; b < count / per; ++b)
                decode_codes(in + b * stored, per, g, y + b * per);
            });
  }

  // Makes step s, planned for a float input, read codes value x (out_storage: the floats of its
  // output per image).
  static void decode_input(Step& s, const Value& x, int64_t out_storage) {
    const Grid g = x.grid;
    const int64_t per = x.per_image(), stored = 4 * ((per + 3) / 4);
    auto inner = s.run;
    s.info.kernel = "decode_codes+" + s.info.kernel;
    s.run = [inner, g, per, stored, out_storage](const std::vector<const float*>& xs, float* y,
                                                 int64_t count) {
      const int64_t images = count / out_storage;
      thread_local std::vector<float> floats;  // the inner step does not use it
      floats.resize(images * per);
      const auto* in = reinterpret_cast<const uint8_t*>(xs[0]);
      for (int64_t b = 0; b < images; ++b)
        decode_codes(in + b * stored, per, g, floats.data() + b * per);
      std::vector<const float*> with = xs;
      with[0] = floats.data();
      inner(with, y, count);
    };
  }

  // Fuses an 8-bit layer's chain ending in Quant (scalar scale and zero point, codes in [lo, hi])
  // into the layer's step, which then writes the Quant's codes (Value::codes) by the spec's integer
  // step: clamp((sum + add) >> shift). Every function of the chain is nondecreasing (extend_chain
  // admits no other), so the chain's codes are a nondecreasing function of the layer's integer sum
  // n; its steps, found by bisection evaluating the chain's own float operations (as the unfused
  // steps compute them), must lie 2^shift apart, which makes the shift exact for every n; false
  // (no fusion) where they do not, or a value of the chain is read elsewhere.
  bool fuse_int8(const SumChain& chain, float qscale, float qzero, float qlo, float qhi,
                 int rounding, const Grid& grid, size_t& into) {
    for (const auto& name : chain.names)
      if (uses[name] != 1) return false;
    if (!grid.on || grid.hi - grid.lo > 255 || !chain.after_pool.empty()) return false;
    Step& conv = steps[chain.conv_step];
    const std::shared_ptr<const Int8Layer> layer = conv.int8;
    const Int8Layer& l = *layer;
    const int64_t m = l.shape.m, levels = grid.hi - grid.lo, bound = l.sum_bound;
    // At most 256 bisections of 64 steps per channel: bounded work for any file.
    if (m > 4096 || !spend(m * (levels + 1) * 64)) return false;
    auto code = [&](int64_t o, int64_t n) {
      const float v =
          apply_ops(chain.before_pool, o,
                    static_cast<float>(static_cast<double>(n) * l.scale[o] + l.bias[o]));
      float u = v / qscale + qzero;
      u = u > qhi ? qhi : (u < qlo ? qlo : u);
      return static_cast<int64_t>(round_mode(u, rounding)) - grid.lo;  // the stored code
    };
    auto q = std::make_shared<Requantization>();
    q->add.resize(m), q->shift.resize(m), q->lo.resize(m), q->hi.resize(m);
    std::vector<int64_t> steps_at;
    for (int64_t o = 0; o < m; ++o) {
      if (!std::isfinite(l.bias[o]) || !(l.scale[o] > 0) || !std::isfinite(l.scale[o]))
        return false;
      const int64_t first = code(o, -bound), last = code(o, bound);
      if (first < 0 || last > levels || first > last) return false;
      // steps_at[j]: the least n whose code exceeds first + j.
      steps_at.clear();
      for (int64_t j = first + 1; j <= last; ++j) {
        int64_t below = -bound, at = bound;  // code(below) < j <= code(at)
        while (at - below > 1) {
          const int64_t mid = below + (at - below) / 2;
          (code(o, mid) >= j ? at : below) = mid;
        }
        steps_at.push_back(at);
      }
      int64_t step = 1;
      if (steps_at.size() > 1) step = steps_at[1] - steps_at[0];
      if (step < 1 || (step & (step - 1)) != 0 || step > (int64_t{1} << 30)) return false;
      for (size_t j = 1; j < steps_at.size(); ++j)
        if (steps_at[j] - steps_at[j - 1] != step) return false;
      int k = 0;
      while ((int64_t{1} << k) < step) ++k;
      // code = first + 1 + floor((n - steps_at[0]) / 2^k) from steps_at[0] on, clamped; n is the
      // kernel's raw sum plus the layer's constant.
      const int64_t start = steps_at.empty() ? 0 : steps_at[0];
      q->add[o] = l.constant[o] + (first + 1) * step - start;
      q->shift[o] = k, q->lo[o] = static_cast<int32_t>(first),
      q->hi[o] = static_cast<int32_t>(last);
    }
    const int64_t plane = l.shape.oh * l.shape.ow, stored = (m * plane + 3) / 4;
    conv.run = [layer, q, m, plane, stored](const std::vector<const float*>& xs, float* y,
                                            int64_t count) {
      const Int8Layer& l = *layer;
      for (int64_t b = 0; b < count / stored; ++b) {
        l.kernels->requantize(l.sums(xs[0], b), m, plane, q->add.data(), l.zw, q->shift.data(),
                              q->lo.data(), q->hi.data(),
                              reinterpret_cast<uint8_t*>(y) + b * 4 * stored);
      }
    };
    conv.info.kernel += "+requantize";
    conv.info.parameter_bytes += m * static_cast<int64_t>(sizeof(int64_t) + 3 * sizeof(int32_t));
    for (size_t i : chain.steps) steps[i].removed = true;
    into = chain.conv_step;
    return true;
  }

  // ---- bit planes between layers

  // The bits of a bit-plane layer's input: its planes, or floats on a grid of one scale, zero 0 and
  // codes 0 .. 2^b - 1 for b <= 4 (zero padding is then code 0); 0 where neither.
  static int planes_bits(const Value& x) {
    if (x.planes) return x.planes;
    const Grid& g = x.grid;
    if (x.packed || x.codes || !g.on || g.scale.size() != 1 || g.zero != 0 || g.lo != 0 ||
        g.hi < 1 || g.hi > 15)
      return 0;
    return g.hi <= 1 ? 1 : g.hi <= 3 ? 2 : g.hi <= 7 ? 3 : 4;
  }

  static void planes_conv(Step& s, const binary::ConvShape& shape, const Value& x, int bits,
                          const std::vector<float>& w, const std::vector<float>& sw,
                          const std::vector<float>& bias, const std::string& kind) {
    auto l = std::make_shared<PlanesLayer>();
    const planes::Kernels& k = planes::best();
    l->shape = shape, l->kernels = &k, l->bits = bits, l->bias = bias;
    l->weights = k.pack(w.data(), shape.m, shape.c, shape.kh, shape.kw);
    l->sx = x.grid.scale[0];
    l->input_planes = x.planes > 0;
    l->zeros.assign(shape.m, 0);
    l->scale.resize(shape.m);
    for (int64_t o = 0; o < shape.m; ++o) l->scale[o] = static_cast<double>(l->sx) * sw[o];
    s.info.kernel = kind + k.name;
    s.info.parameter_bytes = static_cast<int64_t>(l->weights.size() * sizeof(uint64_t) +
                                                  shape.m * (sizeof(double) + sizeof(float)));
    s.planes = l;
    s.run = [l](const std::vector<const float*>& xs, float* y, int64_t count) {
      const int64_t m = l->shape.m, plane = l->shape.oh * l->shape.ow;
      for (int64_t b = 0; b < count / (m * plane); ++b) {
        int8::best().dequantize(l->sums(xs[0], b), m, plane, l->zeros.data(), 0, l->scale.data(),
                                l->bias.data(), y + b * m * plane);
      }
    };
  }

  // Whether node n reads its input i as bit planes: bit-plane convolutions and dense layers
  // (binary weights), Flatten, and Mul / Div by a positive scalar (recorded, applied when decoded).
  bool reads_planes(const onnx::NodeProto& n, int i) const {
    if (i != 0) return false;
    if (n.op_type() == "Mul" || n.op_type() == "Div") return planes_scalar(n);
    const Attrs a = attrs_of(n);
    return flattens(n, a) || binary_layer(n, a);
  }

  // Mul or Div of a bit-plane value (input 0) by a positive finite scalar constant.
  bool planes_scalar(const onnx::NodeProto& n) const {
    if (n.input_size() != 2 || !ids.count(n.input(0)) || !ids.count(n.input(1))) return false;
    const Value &x = values[ids.at(n.input(0))], &c = values[ids.at(n.input(1))];
    return x.planes && c.constant && c.data.size() == 1 && c.data[0] > 0 &&
           std::isfinite(c.data[0]);
  }

  void planes_scaled(std::vector<const Value*>& in, Value& out, Step& s, char kind) {
    const Value& x = *in[0];
    out.dims = x.dims, out.planes = x.planes, out.planes_scale = x.planes_scale;
    out.packed_chw = x.packed_chw;
    out.planes_post = x.planes_post;
    out.planes_post.emplace_back(kind, in[1]->data[0]);
    scale_grid(in, out, kind == '/');
    s.info.kernel = "copy";
    s.run = [](const std::vector<const float*>& xs, float* y, int64_t count) {
      std::copy(xs[0], xs[0] + count, y);
    };
    in.resize(1);
  }

  // Plans a step that turns bit-plane value `name` into the floats the graph computes for it.
  void decode_planes(const std::string& name) {
    const Value& p = values[ids.at(name)];
    Value f;
    f.dims = p.dims;
    f.grid = p.grid;
    const std::vector<int64_t> chw = p.packed_chw;
    const int bits = p.planes;
    const float scale = p.planes_scale;
    const auto post = p.planes_post;
    convert(
        name, std::move(f), "decode_planes",
        [chw, bits, scale, post](const std::vector<const float*>& xs, float* y, int64_t count) {
          const int64_t c = chw[0], plane = chw[1] * chw[2], cw = binary::words(c);
          const int64_t stored = planes::image_words(bits, c, chw[1], chw[2]);
          for (int64_t b = 0; b < count / (c * plane); ++b) {
            const uint64_t* in = reinterpret_cast<const uint64_t*>(xs[0]) + b * stored;
            float* yb = y + b * c * plane;
            for (int64_t ch = 0; ch < c; ++ch)
              for (int64_t q = 0; q < plane; ++q) {
                unsigned code = 0;
                for (int k = 0; k < bits; ++k)
                  code |=
                      static_cast<unsigned>((in[(q * bits + k) * cw + (ch >> 6)] >> (ch & 63)) & 1)
                      << k;
                float v = (static_cast<float>(code) - 0.0f) * scale;  // Quant's, zero 0
                for (const auto& op : post) v = op.first == '*' ? v * op.second : v / op.second;
                yb[ch * plane + q] = v;
              }
          }
        });
  }

  // Per channel: code = base + #{j : dir * n >= t[j]} (t ascending, unused entries INT32_MAX) for
  // the layer's sum n, pooled first (the largest n, or the smallest) where the chain pools.
  struct CodeTable {
    int levels = 0;
    std::vector<int32_t> t, base, dir;
    std::vector<uint8_t> largest;
  };

  // Fuses a bit-plane layer's chain ending in Quant (scale s, zero 0, codes 0 .. hi <= 15) into the
  // layer's step, which then writes the Quant's codes as planes. As for binary chains, the chain's
  // own float operations are evaluated at every possible sum, so the table of thresholds gives the
  // float graph's codes exactly; false where a value of the chain is read elsewhere, or its codes
  // are not a monotone function of the sum.
  bool fuse_planes(const SumChain& chain, float qscale, float qhi, int rounding, size_t& into) {
    for (const auto& name : chain.names)
      if (uses[name] != 1) return false;
    Step& conv = steps[chain.conv_step];
    const std::shared_ptr<const PlanesLayer> layer = conv.planes;
    const PlanesLayer& l = *layer;
    const int64_t m = l.shape.m;
    const int64_t k = ((int64_t{1} << l.bits) - 1) * l.shape.kh * l.shape.kw * l.shape.c;
    if (k > (int64_t{1} << 22) || m * (2 * k + 1) > (int64_t{1} << 26)) return false;
    if (!spend(m * (2 * k + 1))) return false;
    auto table = std::make_shared<CodeTable>();
    const int levels = static_cast<int>(qhi);
    table->levels = levels;
    table->t.assign(m * levels, std::numeric_limits<int32_t>::max());
    table->base.resize(m), table->dir.resize(m), table->largest.resize(m);
    std::vector<float> pre(2 * k + 1);
    std::vector<int> code(2 * k + 1);
    for (int64_t o = 0; o < m; ++o) {
      bool up = true, down = true;
      // The layer's value as int8's dequantize computes it, then the chain's steps before the pool.
      if (!values_before_pool(
              chain, o, k,
              [&](int64_t n) {
                return static_cast<float>(static_cast<double>(n) * l.scale[o] + l.bias[o]);
              },
              pre, up, down))
        return false;
      bool rising = true, falling = true;
      for (int64_t n = -k; n <= k; ++n) {
        float u = apply_ops(chain.after_pool, o, pre[n + k]) / qscale;
        if (u != u) return false;
        u = u > qhi ? qhi : (u < 0 ? 0.0f : u);
        code[n + k] = static_cast<int>(round_mode(u, rounding));
        if (n > -k) {
          rising = rising && code[n + k] >= code[n + k - 1];
          falling = falling && code[n + k] <= code[n + k - 1];
        }
      }
      if (!rising && !falling) return false;
      // Thresholds on n' = dir * n, along which the codes rise.
      const int dir = rising ? 1 : -1;
      const int first = rising ? code[0] : code[2 * k];
      int32_t* t = table->t.data() + o * levels;
      int j = 0;
      for (int64_t i = 0; i <= 2 * k; ++i) {
        const int64_t n = dir > 0 ? i - k : k - i;  // n' ascending
        const int c = code[n + k];
        while (first + j < c) t[j++] = static_cast<int32_t>(dir * n);
      }
      table->base[o] = first, table->dir[o] = dir, table->largest[o] = up ? 1 : 0;
    }
    const int out_bits = levels <= 1 ? 1 : levels <= 3 ? 2 : levels <= 7 ? 3 : 4;
    const int64_t ph = chain.chw[1], pw = chain.chw[2];
    const bool pooled = chain.pooled;
    const int64_t pkh = chain.pool_kh, pkw = chain.pool_kw, psh = chain.pool_sh,
                  psw = chain.pool_sw;
    conv.run = [layer, table, out_bits, ph, pw, pooled, pkh, pkw, psh, psw](
                   const std::vector<const float*>& xs, float* y, int64_t count) {
      const PlanesLayer& l = *layer;
      const int64_t m = l.shape.m, ow = l.shape.ow;
      const int64_t stored = planes::image_words(out_bits, m, ph, pw);
      const int levels = table->levels;
      thread_local std::vector<uint8_t> codes;
      codes.resize(m * ph * pw);
      for (int64_t b = 0; b < count / (2 * stored); ++b) {
        const int32_t* n = l.sums(xs[0], b);
        // The codes per channel, then packed as planes for the next layer.
        for (int64_t o = 0; o < m; ++o) {
          const int32_t* no = n + o * l.shape.oh * ow;
          const int32_t* t = table->t.data() + o * levels;
          const int64_t dir = table->dir[o];
          const bool largest = table->largest[o] != 0;
          uint8_t* co = codes.data() + o * ph * pw;
          for (int64_t r = 0; r < ph; ++r)
            for (int64_t q = 0; q < pw; ++q) {
              int64_t v = no[r * ow + q];
              if (pooled) {
                v = no[(r * psh) * ow + q * psw];
                for (int64_t i = 0; i < pkh; ++i)
                  for (int64_t j = 0; j < pkw; ++j) {
                    const int64_t e = no[(r * psh + i) * ow + q * psw + j];
                    v = largest ? std::max(v, e) : std::min(v, e);
                  }
              }
              v *= dir;
              int c = table->base[o];
              for (int j = 0; j < levels; ++j) c += v >= t[j] ? 1 : 0;
              co[r * pw + q] = static_cast<uint8_t>(c);
            }
        }
        planes::pack_codes(codes.data(), out_bits, m, ph, pw,
                           reinterpret_cast<uint64_t*>(y) + b * stored);
      }
    };
    conv.info.kernel += pooled ? "+maxpool+threshold" : "+threshold";
    conv.info.parameter_bytes += m * static_cast<int64_t>((levels + 2) * sizeof(int32_t) + 1);
    for (size_t i : chain.steps) steps[i].removed = true;
    into = chain.conv_step;
    return true;
  }

  // ---- nodes

  void add_node(const onnx::NodeProto& n, int k) {
    const std::string op = n.op_type();
    const std::string where =
        origin + ": node " + std::to_string(k) + " '" + n.name() + "' (" + op + ")";
    if (n.output_size() != 1) bad(where, "must have one output");
    // Packed inputs stay packed only where this node reads bits; elsewhere they are unpacked.
    for (int i = 0; i < n.input_size(); ++i) {
      const auto it = ids.find(n.input(i));
      if (it != ids.end() && values[it->second].packed && !reads_packed(n, i)) unpack(n.input(i));
      if (it != ids.end() && values[it->second].codes && !reads_codes(n, i)) decode(n.input(i));
      if (it != ids.end() && values[it->second].planes && !reads_planes(n, i))
        decode_planes(n.input(i));
    }
    bool fused = false;
    size_t fused_into = 0;
    std::vector<const Value*> in;
    for (const auto& i : n.input()) in.push_back(i.empty() ? nullptr : &value(i, where));
    Attrs a;
    a.where = where;
    for (const auto& attr : n.attribute()) a.map[attr.name()] = &attr;
    const bool known_domain = n.domain().empty() || n.domain() == "ai.onnx" ||
                              n.domain() == "qonnx.custom_op.general" ||
                              n.domain() == "finn.custom_op.general";
    if (!known_domain) bad(where, "unknown domain '" + n.domain() + "'");
    auto arity = [&](size_t lo, size_t hi) {
      if (in.size() < lo || in.size() > hi)
        bad(where, "takes " + std::to_string(lo) + (lo == hi ? "" : " to " + std::to_string(hi)) +
                       " inputs, got " + std::to_string(in.size()));
      for (size_t i = 0; i < lo; ++i)
        if (!in[i]) bad(where, "input " + std::to_string(i) + " is empty");
    };
    auto constant = [&](size_t i, const char* what) -> const Value& {
      if (i >= in.size() || !in[i] || !in[i]->constant)
        bad(where, std::string(what) + " must be a constant");
      return *in[i];
    };
    auto scalar = [&](size_t i, const char* what) {
      const Value& v = constant(i, what);
      if (v.data.size() != 1) bad(where, std::string(what) + " must be a single value");
      return v.data[0];
    };

    Step s;
    s.info.name = n.name();
    s.info.op_type = op;
    Value out;

    // Element-wise operators: one activation (or constants only, folded below).
    auto unary = [&](auto f) {  // f inlined into the loop
      arity(1, 1);
      out.dims = in[0]->dims;
      s.info.kernel = "elementwise_f32";
      s.run = [f](const std::vector<const float*>& x, float* y, int64_t count) {
        for (int64_t e = 0; e < count; ++e) y[e] = f(x[0][e]);
      };
      return true;
    };
    auto binary = [&](auto f) {
      arity(2, 2);
      const Value &p = *in[0], &q = *in[1];
      s.info.kernel = "elementwise_f32";
      if (!p.constant && !q.constant) {
        if (p.dims != q.dims)
          bad(where, "activations of shapes " + dims_str(p.dims) + " and " + dims_str(q.dims) +
                         " (only constants broadcast)");
        out.dims = p.dims;
        s.run = [f](const std::vector<const float*>& x, float* y, int64_t count) {
          for (int64_t e = 0; e < count; ++e) y[e] = f(x[0][e], x[1][e]);
        };
        return;
      }
      if (p.constant && q.constant) {  // folded, with numpy's broadcasting
        out.constant = true;
        if (p.dims == q.dims) {
          out.dims = p.dims;
          out.data.resize(p.data.size());
          for (size_t e = 0; e < out.data.size(); ++e) out.data[e] = f(p.data[e], q.data[e]);
          return;
        }
        const size_t rank = std::max(p.dims.size(), q.dims.size());
        out.dims.assign(rank, 1);
        for (size_t i = 0; i < rank; ++i) {
          const int64_t a = i + p.dims.size() >= rank ? p.dims[i + p.dims.size() - rank] : 1;
          const int64_t b = i + q.dims.size() >= rank ? q.dims[i + q.dims.size() - rank] : 1;
          if (a != b && a != 1 && b != 1)
            bad(where, "constants of shapes " + dims_str(p.dims) + " and " + dims_str(q.dims) +
                           " do not broadcast");
          out.dims[i] = a == 1 ? b : a;
        }
        int64_t count = 1;
        for (int64_t d : out.dims)
          count = checked_mul(count, d, limits.max_tensor_elements, where, "the output");
        if (total_constant_elements + count > limits.max_total_elements)
          bad(where, "the constants (initializers and folded values) are too large");
        const auto ip = broadcast_constant(out.dims, p.dims, where);
        const auto iq = broadcast_constant(out.dims, q.dims, where);
        out.data.resize(count);
        for (int64_t e = 0; e < count; ++e) out.data[e] = f(p.data[ip[e]], q.data[iq[e]]);
        return;
      }
      const bool act_first = !p.constant;
      const Value& act = act_first ? p : q;
      const Value& c = act_first ? q : p;
      out.dims = act.dims;
      const Broadcast index = make_broadcast(act.dims, c.dims, where);
      const std::vector<float> cdata = c.data;
      s.info.parameter_bytes = index.bytes() + static_cast<int64_t>(cdata.size() * sizeof(float));
      s.run = [f, index, cdata, act_first](const std::vector<const float*>& x, float* y,
                                           int64_t count) {
        const float* a = x[0];  // the one activation
        index.each(count, [&](int64_t e, int64_t k) {
          y[e] = act_first ? f(a[e], cdata[k]) : f(cdata[k], a[e]);
        });
      };
    };

    if (op == "Relu") {
      unary([](float v) { return v < 0 ? 0.0f : v; });
      const Grid& g = in[0]->grid;
      if (g.on && !in[0]->constant && g.scale.size() == 1 && g.scale[0] > 0) {
        out.grid = g;  // negative values become the zero's code
        out.grid.lo = std::max<int64_t>(g.lo, static_cast<int64_t>(g.zero));
        out.grid.hi = std::max(out.grid.lo, g.hi);
      }
    } else if (op == "Sign") {
      unary([](float v) { return v > 0 ? 1.0f : (v < 0 ? -1.0f : 0.0f); });
    } else if (op == "Round") {
      unary([](float v) { return std::nearbyint(v); });
    } else if (op == "Floor") {
      unary([](float v) { return std::floor(v); });
    } else if (op == "Ceil") {
      unary([](float v) { return std::ceil(v); });
    } else if (op == "Abs") {
      unary([](float v) { return std::fabs(v); });
    } else if (op == "Identity") {
      unary([](float v) { return v; });
      out.grid = in[0]->grid;
    } else if (op == "Cast") {
      if (a.i("to", 0) != onnx::TensorProto::FLOAT) bad(where, "only casts to float are supported");
      unary([](float v) { return v; });  // booleans are already 0 / 1
    } else if (op == "Add") {
      binary([](float p, float q) { return p + q; });
    } else if (op == "Sub") {
      binary([](float p, float q) { return p - q; });
    } else if ((op == "Mul" || op == "Div") && planes_scalar(n)) {
      planes_scaled(in, out, s, op == "Mul" ? '*' : '/');
    } else if (op == "Mul") {
      binary([](float p, float q) { return p * q; });
      scale_grid(in, out, false);
    } else if (op == "Div") {
      binary([](float p, float q) { return p / q; });
      scale_grid(in, out, true);
    } else if (op == "GreaterOrEqual") {
      binary([](float p, float q) { return p >= q ? 1.0f : 0.0f; });
      if (!in[0]->constant && in[1]->constant && in[1]->data.size() == 1 && in[1]->data[0] == 0) {
        out.ge_zero = true;
        if (in[0]->chain) {
          auto chain = std::make_shared<SumChain>(*in[0]->chain);
          chain->steps.push_back(steps.size());
          chain->names.push_back(n.output(0));
          out.sign_chain = chain;
        }
      }
    } else if (op == "Greater") {
      binary([](float p, float q) { return p > q ? 1.0f : 0.0f; });
    } else if (op == "Clip") {
      arity(1, 3);
      const float lo =
          in.size() > 1 && in[1] ? scalar(1, "min") : -std::numeric_limits<float>::infinity();
      const float hi =
          in.size() > 2 && in[2] ? scalar(2, "max") : std::numeric_limits<float>::infinity();
      in.resize(1);
      unary([lo, hi](float v) { return std::min(std::max(v, lo), hi); });
    } else if (op == "Where") {
      arity(3, 3);
      const Value& cond = *in[0];
      if (cond.constant || !in[1]->constant || !in[2]->constant || in[1]->data.size() != 1 ||
          in[2]->data.size() != 1) {
        bad(where, "only Where(activation, scalar, scalar) is supported");
      }
      const float t = in[1]->data[0], f = in[2]->data[0];
      in.resize(1);
      unary([t, f](float c) { return c != 0 ? t : f; });
      if (cond.ge_zero && t == 1.0f && f == -1.0f) {  // the sign, as BipolarQuant's
        out.bipolar = true;
        if (cond.sign_chain && fuse(*cond.sign_chain, fused_into)) {
          fused = out.packed = true;
          out.packed_chw = cond.sign_chain->chw;
        }
      }
    } else if (op == "BipolarQuant") {
      arity(2, 2);
      const Value& sc = constant(1, "scale");
      const Value& x = *in[0];
      out.dims = x.dims;
      s.info.kernel = "bipolar_quant_f32";
      if (!x.constant && x.chain && sc.data.size() == 1 && sc.data[0] == 1.0f &&
          fuse(*x.chain, fused_into)) {
        fused = true;
        out.packed = out.bipolar = true;
        out.packed_chw = x.chain->chw;
      } else if (!x.constant) {
        const Broadcast index = make_broadcast(x.dims, sc.dims, where);
        const std::vector<float> sd = sc.data;
        s.info.parameter_bytes = index.bytes() + static_cast<int64_t>(sd.size() * sizeof(float));
        s.run = [index, sd](const std::vector<const float*>& xs, float* y, int64_t count) {
          index.each(count,
                     [&](int64_t e, int64_t k) { y[e] = (xs[0][e] >= 0 ? 1.0f : -1.0f) * sd[k]; });
        };
      }
      out.bipolar = out.packed || (!x.constant && sc.data.size() == 1 && sc.data[0] == 1.0f);
      fold_if_constant(in, out, where, [&](std::vector<float>& y) {
        const auto index = broadcast_constant(x.dims, sc.dims, where);
        for (size_t e = 0; e < y.size(); ++e)
          y[e] = (x.data[e] >= 0 ? 1.0f : -1.0f) * sc.data[index[e]];
      });
      in.resize(1);
    } else if (op == "Quant") {
      arity(4, 4);
      const Value& sc = constant(1, "scale");
      const Value& zp = constant(2, "zeropt");
      const float bits = scalar(3, "bitwidth");
      if (!(bits >= 1 && bits <= 32) || bits != std::floor(bits))
        bad(where, "bitwidth must be an integer in [1, 32]");
      const bool is_signed = a.i("signed", 1) != 0, narrow = a.i("narrow", 0) != 0;
      std::string mode = a.s("rounding_mode", "ROUND");  // QONNX: upper or lower case
      for (char& ch : mode) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      const auto found = std::find(std::begin(kRoundingModes), std::end(kRoundingModes), mode);
      if (found == std::end(kRoundingModes)) bad(where, "unknown rounding_mode '" + mode + "'");
      const int rounding = static_cast<int>(found - std::begin(kRoundingModes));
      const double b = bits;
      const float lo = static_cast<float>(
          is_signed ? -std::ldexp(1.0, static_cast<int>(b) - 1) + (narrow ? 1 : 0) : 0.0);
      const float hi =
          static_cast<float>(is_signed ? std::ldexp(1.0, static_cast<int>(b) - 1) - 1
                                       : std::ldexp(1.0, static_cast<int>(b)) - (narrow ? 2 : 1));
      const Value& x = *in[0];
      out.dims = x.dims;
      s.info.kernel = "quant_f32";
      auto q = [lo, hi, rounding](float v, float scale, float zero) {
        float u = v / scale + zero;
        u = u > hi ? hi : (u < lo ? lo : u);
        return (round_mode(u, rounding) - zero) * scale;
      };
      out.grid = quant_grid(x, sc, zp, lo, hi);
      if (!x.constant && x.chain && x.chain->int8 && sc.data.size() == 1 && zp.data.size() == 1 &&
          fuse_int8(*x.chain, sc.data[0], zp.data[0], lo, hi, rounding, out.grid, fused_into)) {
        fused = out.codes = true;
      } else if (!x.constant && x.chain && x.chain->planes && sc.data.size() == 1 &&
                 zp.data.size() == 1 && zp.data[0] == 0 && lo == 0 && hi >= 1 && hi <= 15 &&
                 fuse_planes(*x.chain, sc.data[0], hi, rounding, fused_into)) {
        fused = true;
        out.planes = hi <= 1 ? 1 : hi <= 3 ? 2 : hi <= 7 ? 3 : 4;
        out.planes_scale = sc.data[0];
        out.packed_chw = x.chain->chw;
      } else if (!x.constant) {
        // Scalar scale and zero point (activations): no index maps.
        const bool scalars = sc.data.size() == 1 && zp.data.size() == 1;
        const auto si = scalars ? std::vector<int64_t>() : broadcast_index(x.dims, sc.dims, where);
        const auto zi = scalars ? std::vector<int64_t>() : broadcast_index(x.dims, zp.dims, where);
        const std::vector<float> sd = sc.data, zd = zp.data;
        const int64_t per = x.per_image();
        s.info.parameter_bytes = static_cast<int64_t>((si.size() + zi.size()) * sizeof(int64_t) +
                                                      (sd.size() + zd.size()) * sizeof(float));
        s.run = [q, si, zi, sd, zd, per](const std::vector<const float*>& xs, float* y,
                                         int64_t count) {
          if (si.empty()) {
            for (int64_t e = 0; e < count; ++e) y[e] = q(xs[0][e], sd[0], zd[0]);
            return;
          }
          for (int64_t b = 0; b < count; b += per)
            for (int64_t e = 0; e < per; ++e) y[b + e] = q(xs[0][b + e], sd[si[e]], zd[zi[e]]);
        };
      }
      fold_if_constant(in, out, where, [&](std::vector<float>& y) {
        const auto si = broadcast_constant(x.dims, sc.dims, where);
        const auto zi = broadcast_constant(x.dims, zp.dims, where);
        for (size_t e = 0; e < y.size(); ++e) y[e] = q(x.data[e], sc.data[si[e]], zp.data[zi[e]]);
      });
      in.resize(1);
    } else if (op == "QuantizeLinear" || op == "DequantizeLinear") {
      arity(2, 3);
      const float sc = scalar(1, "y_scale");
      const float zp = in.size() > 2 && in[2] ? scalar(2, "zero_point") : 0.0f;
      // QuantizeLinear saturates to its zero point's type: uint8 without one (ONNX's default).
      float lo = 0, hi = 255;
      const bool dequant = op == "DequantizeLinear";
      const auto range = zero_point_ranges.find(n.input_size() > 2 ? n.input(2) : "");
      if (range != zero_point_ranges.end()) std::tie(lo, hi) = range->second;
      in.resize(1);
      const Value& x = *in[0];
      if (dequant && small_integer(zp) && sc > 0 && std::isfinite(sc) &&
          (x.integral || (x.constant && integral_in(x.data, lo, hi)))) {
        out.grid.on = true, out.grid.scale = {sc}, out.grid.zero = zp;
        out.grid.lo = static_cast<int64_t>(lo), out.grid.hi = static_cast<int64_t>(hi);
      }
      if (!dequant && !x.constant) out.integral = true;
      if (dequant) {
        unary([sc, zp](float v) { return (v - zp) * sc; });
      } else {
        unary([sc, zp, lo, hi](float v) {
          return std::min(std::max(std::nearbyint(v / sc) + zp, lo), hi);
        });
      }
      fold_if_constant(in, out, where, [&](std::vector<float>& y) {
        for (size_t e = 0; e < y.size(); ++e) {
          const float v = in[0]->data[e];
          y[e] = dequant ? (v - zp) * sc : std::min(std::max(std::nearbyint(v / sc) + zp, lo), hi);
        }
      });
    } else if (op == "Flatten") {
      arity(1, 1);
      if (a.i("axis", 1) != 1) bad(where, "only axis 1 is supported");
      if (in[0]->constant) bad(where, "a constant input");
      out.dims = {1, in[0]->per_image()};
      out.bipolar = in[0]->bipolar;
      out.grid = in[0]->grid;
      out.packed = in[0]->packed;  // the same words
      out.packed_chw = in[0]->packed_chw;
      out.codes = in[0]->codes;    // the same bytes
      out.planes = in[0]->planes;  // the same planes
      out.planes_scale = in[0]->planes_scale;
      out.planes_post = in[0]->planes_post;
      s.info.kernel = "copy";
      s.run = [](const std::vector<const float*>& x, float* y, int64_t count) {
        std::copy(x[0], x[0] + count, y);
      };
    } else if (op == "Reshape") {
      arity(2, 2);
      reshape(constant(0, "data"), constant(1, "shape"), a, out, where);
    } else if (op == "Slice") {
      arity(3, 5);
      slice(in, out, where);
    } else if (op == "Conv") {
      conv(in, a, out, s, where);
    } else if (op == "Gemm") {
      gemm(in, a, out, s, where);
    } else if (op == "MaxPool") {
      max_pool(in, a, out, s, where);
    } else if (op == "Pad") {
      pad(in, a, out, s, where, n);
    } else {
      bad(where, "the engine does not know this operator");
    }
    // A convolution or dense layer on codes that did not take the 8-bit kernels reads floats.
    if ((op == "Conv" || op == "Gemm") && in[0] && in[0]->codes && !s.int8)
      decode_input(s, *in[0], out.storage_per_image());

    // Constants only: evaluate now (QONNX's weight quantizers, for instance).
    bool all_constant = !in.empty();
    for (const Value* v : in) all_constant = all_constant && v && v->constant;
    if (all_constant && !out.constant) {
      if (!s.run) bad(where, "cannot fold this node over constants");
      out.constant = true;
      std::vector<const float*> xs;
      int64_t count = 1;
      for (int64_t d : out.dims)
        count = checked_mul(count, d, limits.max_tensor_elements, where, "the output");
      out.data.resize(count);
      for (const Value* v : in) {
        if (static_cast<int64_t>(v->data.size()) != count && v->data.size() != 1)
          bad(where, "constant shapes differ");
        xs.push_back(v->data.data());
      }
      s.run(xs, out.data.data(), count);
    }
    if (!out.constant) {
      checked_mul(out.per_image(), 1, limits.max_tensor_elements, where, "the output");
      for (const auto& i : n.input()) {
        if (!i.empty() && !values[ids.at(i)].constant) s.inputs.push_back(ids.at(i));
      }
    }
    if (!out.constant && !fused) extend_chain(op, n, in, a, s, out);
    const std::string out_name = n.output(0);
    const bool constant_out = out.constant;
    std::vector<int64_t> dims = out.dims;
    s.output = add_value(out_name, std::move(out), where);
    if (fused) {  // the binary layer's step now writes this node's output
      steps[fused_into].output = s.output;
      steps[fused_into].info.output.assign(dims.begin() + 1, dims.end());
      return;
    }
    if (!constant_out) {
      s.info.output.assign(dims.begin() + 1, dims.end());
      steps.push_back(std::move(s));
    }
  }

  // For folding nodes whose input is constant: fill the output from the constant input.
  void fold_if_constant(const std::vector<const Value*>& in, Value& out, const std::string& where,
                        const std::function<void(std::vector<float>&)>& f) {
    if (!in[0]->constant) return;
    out.constant = true;
    out.data.resize(in[0]->data.size());
    f(out.data);
    (void)where;
  }

  // Index of a broadcast constant for every element of a constant of shape `x` (whole tensor).
  static std::vector<int64_t> broadcast_constant(const std::vector<int64_t>& x,
                                                 const std::vector<int64_t>& c,
                                                 const std::string& where) {
    std::vector<int64_t> with_batch{1};
    with_batch.insert(with_batch.end(), x.begin(), x.end());
    std::vector<int64_t> cb = c;
    if (cb.size() > x.size())
      bad(where, "a constant of shape " + dims_str(c) + " does not broadcast to " + dims_str(x));
    return broadcast_index(with_batch, cb, where);
  }

  std::map<std::string, std::pair<float, float>> zero_point_ranges;
  std::map<std::string, int> uses;  // how many node inputs (and graph outputs) read each value

  // An activation on a grid times (or over) a positive scalar stays on a grid of that scale
  // (exactly for powers of 2; else up to float32's rounding of each value, which the 8-bit kernels'
  // codes round away: Blueoil's 2-bit activations, written as Quant then / 3 * 2).
  static void scale_grid(const std::vector<const Value*>& in, Value& out, bool divide) {
    const Value &p = *in[0], &q = *in[1];
    if (p.constant || !p.grid.on || !q.constant || q.data.size() != 1) return;
    const float c = q.data[0];
    if (!(c > 0) || !std::isfinite(c)) return;
    const float scale = divide ? p.grid.scale[0] / c : p.grid.scale[0] * c;
    if (!(scale > 0) || !std::isfinite(scale)) return;
    out.grid = p.grid;
    out.grid.scale = {scale};
  }

  // An integer that int64 and float32 both hold exactly (zero points of a grid).
  static bool small_integer(float v) {
    return std::fabs(v) <= 16777216.0f && v == std::nearbyint(v);
  }

  static bool integral_in(const std::vector<float>& v, float lo, float hi) {
    for (float e : v)
      if (!(e >= lo && e <= hi) || e != std::nearbyint(e)) return false;
    return true;
  }

  // The grid of Quant's output: an integer zero point, and one scale (or, for constants, one per
  // slice of the first dimension).
  static Grid quant_grid(const Value& x, const Value& sc, const Value& zp, float lo, float hi) {
    Grid g;
    if (zp.data.size() != 1 || !small_integer(zp.data[0])) return g;
    for (float v : sc.data)
      if (!(v > 0) || !std::isfinite(v)) return g;
    const bool per_slice = x.constant && !x.dims.empty() && sc.data.size() > 1 &&
                           static_cast<int64_t>(sc.data.size()) == x.dims[0] &&
                           sc.dims.size() == x.dims.size() && product(sc.dims, 1) == 1;
    if (sc.data.size() != 1 && !per_slice) return g;
    g.on = true, g.scale = sc.data, g.zero = zp.data[0];
    g.lo = static_cast<int64_t>(lo), g.hi = static_cast<int64_t>(hi);
    return g;
  }

  // Whether a kernel of m output channels is s[o] * (±1) (every |w| of a channel equal); its s.
  static bool binary_scales(const std::vector<float>& w, int64_t m, std::vector<float>& scale) {
    if (m <= 0 || w.size() % m != 0 || w.empty()) return false;
    const size_t per = w.size() / m;
    scale.assign(m, 0.0f);
    for (int64_t o = 0; o < m; ++o) {
      const float s = std::fabs(w[o * per]);
      for (size_t e = 0; e < per; ++e) {
        if (std::fabs(w[o * per + e]) != s) return false;
      }
      scale[o] = s;
    }
    return true;
  }

  // The step of a binary convolution (or dense layer): packs each image's signs, then XOR and
  // popcount against the packed kernel; exact, as the sums of ±1 products are integers.
  static void binary_conv(Step& s, const binary::ConvShape& shape, const std::vector<float>& w,
                          std::vector<float> scale, std::vector<float> bias, bool input_packed,
                          const std::string& kind) {
    auto layer = std::make_shared<BinaryLayer>();
    layer->shape = shape;
    layer->kernels = &binary::best();
    layer->weights = layer->kernels->pack(w.data(), shape.m, shape.c, shape.kh, shape.kw);
    layer->scale = std::move(scale);
    layer->bias = std::move(bias);
    layer->input_packed = input_packed;
    s.info.kernel = kind + layer->kernels->name;
    s.info.parameter_bytes =
        static_cast<int64_t>(layer->weights.size() * sizeof(uint64_t) +
                             (layer->scale.size() + layer->bias.size()) * sizeof(float));
    s.binary = layer;
    s.run = [layer](const std::vector<const float*>& xs, float* y, int64_t count) {
      const BinaryLayer& l = *layer;
      const int64_t per_out = l.shape.m * l.shape.oh * l.shape.ow;
      thread_local std::vector<uint64_t> buffer;
      for (int64_t b = 0; b < count / per_out; ++b) {
        l.kernels->conv(l.input(xs[0], b, buffer), l.weights.data(), l.scale.data(), l.bias.data(),
                        l.shape, y + b * per_out);
      }
    };
  }

  // The weights' grid: the one Quant or DequantizeLinear gave them, else codes ±1 where every
  // output channel's weights are s[o] * (±1) (binary kernels with 2-bit activations, as in
  // Blueoil's A2W1).
  static Grid weight_grid(const std::vector<float>& w, int64_t m, const Grid& given) {
    if (given.on) return given;
    Grid g;
    if (binary_scales(w, m, g.scale)) {
      for (float v : g.scale)
        if (!(v > 0) || !std::isfinite(v)) return Grid();
      g.on = true, g.zero = 0, g.lo = -1, g.hi = 1;
    }
    return g;
  }

  // The step of an 8-bit convolution (or dense layer) where the input and the weights w
  // [m, c, kh, kw] lie on integer grids whose codes fit 8 bits (unsigned input codes, signed
  // weight codes, each shifted by a constant where its grid's range needs it); false where they
  // do not. With input x = (u - zx) sx and weights w = (k - zw) sw[o], the convolution is
  //   sx sw[o] (sum u k - zw sum u - zx sum k + taps c zx zw),
  // sum k a constant per channel and sum u, where zw != 0, one more row of weights all 1. The
  // integer sum is exact; scaled and biased in double, it rounds once to float.
  static bool int8_conv(Step& s, const binary::ConvShape& shape, const Grid& xg, bool input_codes,
                        const std::vector<float>& w, const Grid& wg, const std::vector<float>& bias,
                        const std::string& kind) {
    if (!xg.on || !wg.on || xg.scale.size() != 1) return false;
    const int64_t zx = static_cast<int64_t>(xg.zero) - xg.lo;  // the input's zero, shifted
    if (xg.hi - xg.lo > 255 || zx < 0 || zx > 255) return false;
    const int64_t shift = wg.lo >= -128 && wg.hi <= 127 ? 0 : wg.lo + 128;
    if (wg.hi - shift > 127) return false;
    const int64_t zw = static_cast<int64_t>(wg.zero) - shift;
    const int64_t taps = shape.kh * shape.kw, terms = taps * shape.c, m = shape.m;
    if (terms > int8::kMaxTerms) return false;
    const int64_t cp = int8::padded_channels(shape.c), mc = m + (zw != 0 ? 1 : 0);
    std::vector<int8_t> codes(mc * taps * cp, 0);
    auto l = std::make_shared<Int8Layer>();
    l->constant.resize(m), l->scale.resize(m);
    int64_t widest = 0;  // |weight code - zw|
    for (int64_t o = 0; o < m; ++o) {
      const float sw = wg.scale[wg.scale.size() == 1 ? 0 : o];
      int64_t sum = 0;
      for (int64_t ch = 0; ch < shape.c; ++ch) {
        for (int64_t t = 0; t < taps; ++t) {
          const float v = w[(o * shape.c + ch) * taps + t];
          const double k = std::nearbyint(static_cast<double>(v) / sw) + wg.zero;
          // On the grid exactly as Quant and DequantizeLinear compute it.
          if (!(k >= wg.lo && k <= wg.hi) ||
              (static_cast<float>(k) - static_cast<float>(wg.zero)) * sw != v)
            return false;
          const int64_t kc = static_cast<int64_t>(k) - shift;
          codes[(o * taps + t) * cp + ch] = static_cast<int8_t>(kc);
          sum += kc;
          widest = std::max<int64_t>(widest, std::abs(kc - zw));
        }
      }
      l->constant[o] = terms * zx * zw - zx * sum;
      l->scale[o] = static_cast<double>(xg.scale[0]) * sw;
    }
    for (int64_t t = 0; t < taps && mc > m; ++t)
      for (int64_t ch = 0; ch < shape.c; ++ch) codes[(m * taps + t) * cp + ch] = 1;
    const int8::Kernels& k = int8::best();
    l->shape = shape, l->kernels = &k, l->weights = k.pack(codes, mc, shape);
    l->mc = mc, l->zx = zx, l->zw = zw, l->sx = xg.scale[0], l->bias = bias;
    l->input_codes = input_codes;
    l->sum_bound = terms * 255 * widest + 1;  // |input code - zx| <= 255
    s.info.kernel = kind + k.name;
    s.info.parameter_bytes = static_cast<int64_t>(
        l->weights.size() + m * (sizeof(int64_t) + sizeof(double)) + bias.size() * sizeof(float));
    s.int8 = l;
    s.run = [l](const std::vector<const float*>& xs, float* y, int64_t count) {
      const int64_t m = l->shape.m, plane = l->shape.oh * l->shape.ow;
      for (int64_t b = 0; b < count / (m * plane); ++b) {
        l->kernels->dequantize(l->sums(xs[0], b), m, plane, l->constant.data(), l->zw,
                               l->scale.data(), l->bias.data(), y + b * m * plane);
      }
    };
    return true;
  }

  void conv(std::vector<const Value*>& in, const Attrs& a, Value& out, Step& s,
            const std::string& where) {
    if (in.size() < 2 || in.size() > 3 || !in[0] || !in[1])
      bad(where, "takes X, W and an optional B");
    const Value& x = *in[0];
    if (x.constant || x.dims.size() != 4) bad(where, "X must be a 4-D activation");
    if (!in[1]->constant || in[1]->dims.size() != 4) bad(where, "W must be a 4-D constant");
    const Value& w = *in[1];
    const int64_t group = a.i("group", 1);
    const int64_t c = x.dims[1], h = x.dims[2], wd = x.dims[3];
    const int64_t m = w.dims[0], cg = w.dims[1], kh = w.dims[2], kw = w.dims[3];
    if (group < 1 || c % group != 0 || m % group != 0 || cg != c / group)
      bad(where, "W " + dims_str(w.dims) + " does not match X " + dims_str(x.dims) +
                     " with group " + std::to_string(group));
    if (a.s("auto_pad", "NOTSET") != "NOTSET") bad(where, "auto_pad is not supported");
    const auto ks = a.ints("kernel_shape", {kh, kw});
    const Window win = window(a, where);
    const std::vector<int64_t>&st = win.strides, &pd = win.pads, &dl = win.dilations;
    if (ks != std::vector<int64_t>{kh, kw}) bad(where, "kernel_shape does not match W");
    if (kh < 1 || kw < 1 || kh > 1024 || kw > 1024) bad(where, "kernel sizes must be in [1, 1024]");
    const int64_t oh = (h + pd[0] + pd[2] - dl[0] * (kh - 1) - 1) / st[0] + 1;
    const int64_t ow = (wd + pd[1] + pd[3] - dl[1] * (kw - 1) - 1) / st[1] + 1;
    if (oh < 1 || ow < 1) bad(where, "the output would be empty");
    std::vector<float> bias(m, 0.0f);
    if (in.size() == 3 && in[2]) {
      if (!in[2]->constant || in[2]->data.size() != static_cast<size_t>(m))
        bad(where, "B must be a constant of " + std::to_string(m) + " values");
      bias = in[2]->data;
    }
    out.dims = {1, m, oh, ow};
    checked_mul(m * oh, ow, limits.max_tensor_elements, where, "the output");
    in.resize(1);
    binary::ConvShape shape;
    shape.c = c, shape.h = h, shape.w = wd, shape.m = m, shape.kh = kh, shape.kw = kw;
    shape.stride_h = st[0], shape.stride_w = st[1], shape.pad_h = pd[0], shape.pad_w = pd[1];
    shape.dil_h = dl[0], shape.dil_w = dl[1], shape.oh = oh, shape.ow = ow;
    std::vector<float> scale;
    if (group == 1 && !x.codes && x.bipolar && binary_scales(w.data, m, scale)) {
      binary_conv(s, shape, w.data, scale, bias, x.packed, "binary_conv2d_");
      return;
    }
    if (x.packed) bad(where, "internal: a packed input reached a float convolution");
    const int bits = planes_bits(x);
    if (group == 1 && bits > 0 && binary_scales(w.data, m, scale)) {
      planes_conv(s, shape, x, bits, w.data, scale, bias, "bitplane_conv2d_");
      return;
    }
    if (x.planes) bad(where, "internal: bit planes reached a float convolution");
    if (group == 1 && int8_conv(s, shape, x.grid, x.codes, w.data, weight_grid(w.data, m, w.grid),
                                bias, "int8_conv2d_"))
      return;
    if (ternary_conv(s, shape, group, w.data, bias, "ternary_conv2d_f32_")) return;
    const float32::Kernels* k = &float32::best();
    s.info.kernel = "conv2d_f32_" + k->name;
    const std::vector<float> wdata = w.data;
    s.info.parameter_bytes = static_cast<int64_t>((wdata.size() + bias.size()) * sizeof(float));
    s.run = [k, shape, group, wdata, bias](const std::vector<const float*>& xs, float* y,
                                           int64_t count) {
      const int64_t per_in = shape.c * shape.h * shape.w, per_out = shape.m * shape.oh * shape.ow;
      for (int64_t b = 0; b < count / per_out; ++b)
        k->conv(xs[0] + b * per_in, wdata.data(), bias.data(), shape, group, y + b * per_out);
    };
  }

  // Whether w [m, ...] is ternary, alpha[o] * {-1, 0, 1} per output channel; its codes and scales.
  static bool ternary_weights(const std::vector<float>& w, int64_t m, std::vector<int8_t>& t,
                              std::vector<float>& alpha) {
    if (m <= 0 || w.empty() || w.size() % m != 0) return false;
    const int64_t per = static_cast<int64_t>(w.size()) / m;
    alpha.assign(m, 0.0f);
    t.resize(w.size());
    for (int64_t o = 0; o < m; ++o) {
      for (int64_t e = 0; e < per; ++e) alpha[o] = std::max(alpha[o], std::fabs(w[o * per + e]));
      if (!std::isfinite(alpha[o])) return false;
      for (int64_t e = 0; e < per; ++e) {
        const float v = w[o * per + e];
        if (v == 0) {
          t[o * per + e] = 0;
        } else if (v == alpha[o] || v == -alpha[o]) {
          t[o * per + e] = v > 0 ? 1 : -1;
        } else {
          return false;
        }
      }
    }
    return true;
  }

  // The float convolution's step where its weights are ternary (float32::ternary_conv: the float
  // kernel's bits from codes of a byte); false where they are not.
  static bool ternary_conv(Step& s, const binary::ConvShape& shape, int64_t group,
                           const std::vector<float>& w, const std::vector<float>& bias,
                           const std::string& kind) {
    std::vector<int8_t> t;
    std::vector<float> alpha;
    if (!ternary_weights(w, shape.m, t, alpha)) return false;
    const float32::Kernels* k = &float32::best();
    s.info.kernel = kind + k->name;
    s.info.parameter_bytes = static_cast<int64_t>(t.size() + (alpha.size() + bias.size()) * 4);
    s.run = [k, shape, group, t, alpha, bias](const std::vector<const float*>& xs, float* y,
                                              int64_t count) {
      const int64_t per_in = shape.c * shape.h * shape.w, per_out = shape.m * shape.oh * shape.ow;
      for (int64_t b = 0; b < count / per_out; ++b)
        k->ternary_conv(xs[0] + b * per_in, t.data(), alpha.data(), bias.data(), shape, group,
                        y + b * per_out);
    };
    return true;
  }

  // The float dense layer's step where its rows are ternary: gemm_f32's operations over the rows
  // t * alpha[o] rebuilt from codes of a byte, so its bits.
  static bool ternary_dense(Step& s, int64_t k, int64_t m, const std::vector<float>& rows,
                            const std::vector<float>& bias) {
    std::vector<int8_t> t;
    std::vector<float> alpha;
    if (!ternary_weights(rows, m, t, alpha)) return false;
    s.info.kernel = "ternary_gemm_f32";
    s.info.parameter_bytes = static_cast<int64_t>(t.size() + (alpha.size() + bias.size()) * 4);
    s.run = [t, alpha, bias, k, m](const std::vector<const float*>& xs, float* y, int64_t count) {
      for (int64_t b = 0; b < count / m; ++b) {
        const float* xi = xs[0] + b * k;
        for (int64_t o = 0; o < m; ++o) {
          float acc = 0;
          const int8_t* r = t.data() + o * k;
          for (int64_t i = 0; i < k; ++i) acc += xi[i] * (static_cast<float>(r[i]) * alpha[o]);
          y[b * m + o] = acc + bias[o];
        }
      }
    };
    return true;
  }

  // Reshape of a constant (the exports' packed binary kernels); ONNX's 0 (copy, allowzero 0) and
  // -1 (inferred).
  void reshape(const Value& x, const Value& shape, const Attrs& a, Value& out,
               const std::string& where) {
    if (a.i("allowzero", 0) != 0) bad(where, "allowzero is not supported");
    if (shape.dims.size() != 1 || shape.data.size() > 16)
      bad(where, "shape must be a 1-D constant of at most 16 values");
    out.dims.clear();
    int inferred = -1;
    int64_t known = 1;
    for (size_t i = 0; i < shape.data.size(); ++i) {
      const float v = shape.data[i];
      if (v != std::floor(v) || v < -1 || v > static_cast<float>(limits.max_tensor_elements))
        bad(where, "shape values must be integers in [-1, " +
                       std::to_string(limits.max_tensor_elements) + "]");
      int64_t d = static_cast<int64_t>(v);
      if (d == 0) {
        if (i >= x.dims.size()) bad(where, "shape copies a dimension the data does not have");
        d = x.dims[i];
      }
      if (d == -1) {
        if (inferred >= 0) bad(where, "shape has more than one -1");
        inferred = static_cast<int>(i);
        d = 1;
      } else {
        known = checked_mul(known, d, limits.max_tensor_elements, where, "the shape");
      }
      out.dims.push_back(d);
    }
    const int64_t n = static_cast<int64_t>(x.data.size());
    if (inferred >= 0) {
      if (known == 0 || n % known != 0) bad(where, "no -1 makes the shape hold the data");
      out.dims[inferred] = n / known;
    } else if (known != n) {
      bad(where, "shape " + dims_str(out.dims) + " does not hold the data's " + std::to_string(n) +
                     " values");
    }
    out.constant = true;
    out.data = x.data;
  }

  // Slice of a constant: starts, ends and optional axes (steps 1), ONNX's clamping of negative and
  // out-of-range indices.
  void slice(std::vector<const Value*>& in, Value& out, const std::string& where) {
    for (size_t i = 0; i < in.size(); ++i)
      if (in[i] && !in[i]->constant) bad(where, "only constant inputs are supported");
    const Value& x = *in[0];
    const std::vector<float>& starts = in[1]->data;
    const std::vector<float>& ends = in[2]->data;
    const size_t rank = x.dims.size();
    if (starts.size() != ends.size() || starts.size() > rank)
      bad(where, "starts and ends must have one value per sliced axis");
    std::vector<float> axes(starts.size());
    for (size_t i = 0; i < axes.size(); ++i) axes[i] = static_cast<float>(i);
    if (in.size() > 3 && in[3]) axes = in[3]->data;
    if (axes.size() != starts.size()) bad(where, "axes must have one value per sliced axis");
    if (in.size() > 4 && in[4]) {
      for (float v : in[4]->data)
        if (v != 1.0f) bad(where, "only steps of 1 are supported");
    }
    std::vector<int64_t> lo(rank, 0), hi = x.dims;
    std::vector<bool> seen(rank, false);
    for (size_t i = 0; i < axes.size(); ++i) {
      const float av = axes[i];
      if (av != std::floor(av) || av < -static_cast<float>(rank) || av >= static_cast<float>(rank))
        bad(where, "axes must be integers in [-rank, rank)");
      const size_t ax = static_cast<size_t>(av < 0 ? av + static_cast<float>(rank) : av);
      if (seen[ax]) bad(where, "an axis is sliced twice");
      seen[ax] = true;
      const double d = static_cast<double>(x.dims[ax]);
      auto clampi = [&](float v) {
        double e = std::isfinite(v) ? std::floor(v) : (v > 0 ? d : 0.0);
        if (e < 0) e += d;
        return static_cast<int64_t>(std::min(std::max(e, 0.0), d));
      };
      lo[ax] = clampi(starts[i]);
      hi[ax] = std::max(lo[ax], clampi(ends[i]));
    }
    out.dims.resize(rank);
    int64_t count = 1;
    for (size_t d = 0; d < rank; ++d) count *= (out.dims[d] = hi[d] - lo[d]);
    out.constant = true;
    out.data.resize(count);
    std::vector<int64_t> coord(rank, 0);
    for (int64_t e = 0; e < count; ++e) {
      int64_t rem = e, src = 0, stride = 1;
      for (size_t d = rank; d-- > 0;) {
        coord[d] = rem % std::max<int64_t>(out.dims[d], 1);
        rem /= std::max<int64_t>(out.dims[d], 1);
      }
      for (size_t d = rank; d-- > 0;) {
        src += (coord[d] + lo[d]) * stride;
        stride *= x.dims[d];
      }
      out.data[e] = x.data[src];
    }
    in.resize(1);
  }

  void gemm(std::vector<const Value*>& in, const Attrs& a, Value& out, Step& s,
            const std::string& where) {
    if (in.size() < 2 || in.size() > 3 || !in[0] || !in[1])
      bad(where, "takes A, B and an optional C");
    const Value& x = *in[0];
    if (x.constant || x.dims.size() != 2) bad(where, "A must be a [batch, features] activation");
    if (!in[1]->constant || in[1]->dims.size() != 2) bad(where, "B must be a 2-D constant");
    if (a.i("transA", 0) != 0 || a.f("alpha", 1.0f) != 1.0f || a.f("beta", 1.0f) != 1.0f)
      bad(where, "only transA = 0, alpha = beta = 1 are supported");
    const bool tb = a.i("transB", 0) != 0;
    const int64_t k = x.dims[1];
    const Value& w = *in[1];
    const int64_t wk = tb ? w.dims[1] : w.dims[0], m = tb ? w.dims[0] : w.dims[1];
    if (wk != k) bad(where, "B " + dims_str(w.dims) + " does not match A " + dims_str(x.dims));
    std::vector<float> bias(m, 0.0f);
    if (in.size() == 3 && in[2]) {
      if (!in[2]->constant ||
          (in[2]->data.size() != static_cast<size_t>(m) && in[2]->data.size() != 1))
        bad(where, "C must be a constant of " + std::to_string(m) + " values");
      for (int64_t o = 0; o < m; ++o)
        bias[o] = in[2]->data.size() == 1 ? in[2]->data[0] : in[2]->data[o];
    }
    // Rows of the weight for each output, whatever transB says.
    std::vector<float> rows(m * k);
    for (int64_t o = 0; o < m; ++o) {
      for (int64_t i = 0; i < k; ++i) rows[o * k + i] = tb ? w.data[o * k + i] : w.data[i * m + o];
    }
    out.dims = {1, m};
    in.resize(1);
    std::vector<float> scale;
    binary::ConvShape shape;  // a 1x1 convolution of a 1x1 image
    shape.c = k, shape.h = shape.w = 1, shape.m = m, shape.kh = shape.kw = 1;
    shape.oh = shape.ow = 1;
    if (x.packed) {
      // Bits in channels-last order: the dense layer is the convolution of the [C, H, W] input
      // by a kernel [m, C, H, W], which is what the rows hold.
      if (!binary_scales(rows, m, scale)) bad(where, "internal: a packed input of float weights");
      const auto& chw = x.packed_chw;
      shape.c = chw[0], shape.h = shape.kh = chw[1], shape.w = shape.kw = chw[2];
      binary_conv(s, shape, rows, scale, bias, true, "binary_gemm_");
      return;
    }
    if (x.planes) {  // as for packed bits: the convolution by a kernel as large as the image
      if (!binary_scales(rows, m, scale)) bad(where, "internal: bit planes of float weights");
      const auto& chw = x.packed_chw;
      shape.c = chw[0], shape.h = shape.kh = chw[1], shape.w = shape.kw = chw[2];
      planes_conv(s, shape, x, x.planes, rows, scale, bias, "bitplane_gemm_");
      return;
    }
    if (const int bits = planes_bits(x); bits > 0 && binary_scales(rows, m, scale)) {
      planes_conv(s, shape, x, bits, rows, scale, bias, "bitplane_gemm_");
      return;
    }
    if (!x.codes && x.bipolar && binary_scales(rows, m, scale)) {
      binary_conv(s, shape, rows, scale, bias, false, "binary_gemm_");
      return;
    }
    // Per-channel weight scales apply to rows only where B holds them (transB).
    const Grid wg = weight_grid(rows, m, tb || w.grid.scale.size() == 1 ? w.grid : Grid());
    if (int8_conv(s, shape, x.grid, x.codes, rows, wg, bias, "int8_gemm_")) return;
    if (ternary_dense(s, k, m, rows, bias)) return;
    s.info.kernel = "gemm_f32";
    s.info.parameter_bytes = static_cast<int64_t>((rows.size() + bias.size()) * sizeof(float));
    s.run = [rows, bias, k, m](const std::vector<const float*>& xs, float* y, int64_t count) {
      const int64_t images = count / m;
      for (int64_t b = 0; b < images; ++b) {
        const float* xi = xs[0] + b * k;
        for (int64_t o = 0; o < m; ++o) {
          float acc = 0;
          const float* r = rows.data() + o * k;
          for (int64_t i = 0; i < k; ++i) acc += xi[i] * r[i];
          y[b * m + o] = acc + bias[o];
        }
      }
    };
  }

  void max_pool(std::vector<const Value*>& in, const Attrs& a, Value& out, Step& s,
                const std::string& where) {
    if (in.size() != 1 || !in[0] || in[0]->constant || in[0]->dims.size() != 4)
      bad(where, "X must be a 4-D activation");
    const auto& d = in[0]->dims;
    const auto ks = a.ints("kernel_shape", {});
    const Window win = window(a, where);
    const std::vector<int64_t>&st = win.strides, &pd = win.pads, &dl = win.dilations;
    if (ks.size() != 2) bad(where, "kernel_shape must have 2 values");
    for (int64_t v : ks)
      if (v < 1 || v > 1024) bad(where, "kernel_shape must be in [1, 1024]");

    if (a.i("storage_order", 0) != 0 || a.s("auto_pad", "NOTSET") != "NOTSET")
      bad(where, "storage_order and auto_pad are not supported");
    const bool ceil_mode = a.i("ceil_mode", 0) != 0;
    auto extent = [&](int64_t size, int axis) {
      const int64_t span = size + pd[axis] + pd[axis + 2] - dl[axis] * (ks[axis] - 1) - 1;
      if (span < 0) bad(where, "the window is larger than the input");
      int64_t o = (ceil_mode ? (span + st[axis] - 1) / st[axis] : span / st[axis]) + 1;
      if (ceil_mode && (o - 1) * st[axis] >= size + pd[axis]) --o;  // windows start inside
      return o;
    };
    const int64_t c = d[1], h = d[2], w = d[3], oh = extent(h, 0), ow = extent(w, 1);
    out.dims = {1, c, oh, ow};
    out.grid = in[0]->grid;  // the maximum of codes on one grid
    s.info.kernel = "maxpool_f32";
    const int64_t kh = ks[0], kw = ks[1], sh = st[0], sw = st[1], ph = pd[0], pw = pd[1],
                  dh = dl[0], dw = dl[1];
    if (in[0]->packed) {  // the maximum of ±1 values is -1 where all are: AND of the bits
      out.packed = out.bipolar = true;
      out.packed_chw = {c, oh, ow};
      s.info.kernel = "maxpool_bits";
      const int64_t cw = binary::words(c);
      s.run = [=](const std::vector<const float*>& xs, float* y, int64_t count) {
        for (int64_t b = 0; b < count / (2 * cw * oh * ow); ++b) {
          const uint64_t* x = reinterpret_cast<const uint64_t*>(xs[0]) + b * cw * h * w;
          uint64_t* o = reinterpret_cast<uint64_t*>(y) + b * cw * oh * ow;
          for (int64_t r = 0; r < oh; ++r)
            for (int64_t q = 0; q < ow; ++q)
              for (int64_t k = 0; k < cw; ++k) {
                uint64_t v = ~uint64_t{0};
                for (int64_t i = 0; i < kh; ++i)
                  for (int64_t j = 0; j < kw; ++j) v &= x[((r * sh + i) * w + q * sw + j) * cw + k];
                o[(r * ow + q) * cw + k] = v;
              }
        }
      };
      return;
    }
    if (in[0]->codes) {  // the largest code is the code of the largest value (reads_codes: no pads)
      out.codes = true;
      s.info.kernel = "maxpool_codes";
      const int64_t stored_in = 4 * ((c * h * w + 3) / 4), stored_out = (c * oh * ow + 3) / 4;
      s.run = [=](const std::vector<const float*>& xs, float* y, int64_t count) {
        for (int64_t b = 0; b < count / stored_out; ++b) {
          const uint8_t* x = reinterpret_cast<const uint8_t*>(xs[0]) + b * stored_in;
          uint8_t* o = reinterpret_cast<uint8_t*>(y) + b * 4 * stored_out;
          for (int64_t ch = 0; ch < c; ++ch)
            for (int64_t r = 0; r < oh; ++r)
              for (int64_t q = 0; q < ow; ++q) {
                uint8_t best = 0;
                for (int64_t i = 0; i < kh; ++i)
                  for (int64_t j = 0; j < kw; ++j)
                    best = std::max(best, x[(ch * h + r * sh + i) * w + q * sw + j]);
                o[(ch * oh + r) * ow + q] = best;
              }
        }
      };
      return;
    }
    // Every window inside the input: no bounds checks (the recipes' 2x2 pools).
    const bool inside = ph == 0 && pw == 0 && pd[2] == 0 && pd[3] == 0 && !ceil_mode;
    s.run = [=](const std::vector<const float*>& xs, float* y, int64_t count) {
      const int64_t planes = count / (oh * ow);
      auto take = [](float& best, float v) {  // NaN propagates, as in LibTorch
        best = (v > best || v != v) ? v : best;
      };
      for (int64_t p = 0; p < planes; ++p) {
        const float* xp = xs[0] + p * h * w;
        if (inside) {
          for (int64_t r = 0; r < oh; ++r) {
            for (int64_t q = 0; q < ow; ++q) {
              float best = -std::numeric_limits<float>::infinity();
              const float* x0 = xp + (r * sh) * w + q * sw;
              for (int64_t i = 0; i < kh; ++i)
                for (int64_t j = 0; j < kw; ++j) take(best, x0[i * dh * w + j * dw]);
              y[(p * oh + r) * ow + q] = best;
            }
          }
          continue;
        }
        for (int64_t r = 0; r < oh; ++r) {
          for (int64_t q = 0; q < ow; ++q) {
            float best = -std::numeric_limits<float>::infinity();
            for (int64_t i = 0; i < kh; ++i) {
              const int64_t yy = r * sh - ph + i * dh;
              if (yy < 0 || yy >= h) continue;
              for (int64_t j = 0; j < kw; ++j) {
                const int64_t xx = q * sw - pw + j * dw;
                if (xx < 0 || xx >= w) continue;
                take(best, xp[yy * w + xx]);
              }
            }
            y[(p * oh + r) * ow + q] = best;
          }
        }
      }
    };
  }

  void pad(std::vector<const Value*>& in, const Attrs& a, Value& out, Step& s,
           const std::string& where, const onnx::NodeProto&) {
    if (in.size() < 2 || in.size() > 3 || !in[0] || in[0]->constant || in[0]->dims.size() != 4)
      bad(where, "X must be a 4-D activation, with pads");
    if (a.s("mode", "constant") != "constant") bad(where, "only constant padding is supported");
    const Value& p = *in[1];
    if (!p.constant || p.data.size() != 8) bad(where, "pads must be a constant of 8 values");
    std::vector<int64_t> pads(8);
    for (int i = 0; i < 8; ++i) {
      const float v = p.data[i];
      if (!(v >= 0 && v <= 1024) || v != std::floor(v))
        bad(where, "pads must be integers in [0, 1024]");
      pads[i] = static_cast<int64_t>(v);
    }
    if (pads[0] || pads[1] || pads[4] || pads[5]) bad(where, "only spatial padding is supported");
    const float value = in.size() == 3 && in[2] ? [&] {
      if (!in[2]->constant || in[2]->data.size() != 1) bad(where, "constant_value must be one constant");
      return in[2]->data[0];
    }() : 0.0f;
    const auto& d = in[0]->dims;
    const int64_t c = d[1], h = d[2], w = d[3], t = pads[2], l = pads[3], oh = h + t + pads[6],
                  ow = w + l + pads[7];
    out.dims = {1, c, oh, ow};
    checked_mul(c * oh, ow, limits.max_tensor_elements, where, "the output");
    out.bipolar = in[0]->bipolar && (value == 1.0f || value == -1.0f);
    if (in[0]->grid.on && value == 0.0f) {  // the zero's code in the padding
      out.grid = in[0]->grid;
      out.grid.lo = std::min<int64_t>(out.grid.lo, static_cast<int64_t>(out.grid.zero));
      out.grid.hi = std::max<int64_t>(out.grid.hi, static_cast<int64_t>(out.grid.zero));
    }
    in.resize(1);
    if (in[0]->packed) {  // words of +1 (0) or -1 (the channels' bits) around the image's
      out.packed = out.bipolar = true;
      out.packed_chw = {c, oh, ow};
      s.info.kernel = "pad_bits";
      const int64_t cw = binary::words(c);
      std::vector<uint64_t> fill(cw, 0);
      for (int64_t k = 0; k < cw && value < 0; ++k) {
        const int64_t bits = std::min<int64_t>(64, c - 64 * k);
        fill[k] = bits == 64 ? ~uint64_t{0} : (uint64_t{1} << bits) - 1;
      }
      s.run = [=](const std::vector<const float*>& xs, float* y, int64_t count) {
        for (int64_t b = 0; b < count / (2 * cw * oh * ow); ++b) {
          const uint64_t* x = reinterpret_cast<const uint64_t*>(xs[0]) + b * cw * h * w;
          uint64_t* o = reinterpret_cast<uint64_t*>(y) + b * cw * oh * ow;
          for (int64_t p = 0; p < oh * ow; ++p) std::copy(fill.begin(), fill.end(), o + p * cw);
          for (int64_t r = 0; r < h; ++r)
            std::copy(x + r * w * cw, x + (r + 1) * w * cw, o + ((r + t) * ow + l) * cw);
        }
      };
      return;
    }
    s.info.kernel = "pad_f32";
    s.run = [=](const std::vector<const float*>& xs, float* y, int64_t count) {
      const int64_t planes = count / (oh * ow);
      for (int64_t pl = 0; pl < planes; ++pl) {
        float* yp = y + pl * oh * ow;
        std::fill(yp, yp + oh * ow, value);
        const float* xp = xs[0] + pl * h * w;
        for (int64_t r = 0; r < h; ++r)
          std::copy(xp + r * w, xp + (r + 1) * w, yp + (r + t) * ow + l);
      }
    };
  }

  // Runs the graph over `batch` images in chunks of a few images, so that every activation of a
  // chunk stays in cache and the buffers, allocated once per call, are reused.
  void run(const float* inputs, int64_t batch, float* outputs) const {
    constexpr int64_t kChunk = 8;
    const int64_t in_per = product(input_dims), out_per = classes;
    std::vector<std::vector<float>> buffers(values.size());
    std::vector<const float*> ptr(values.size(), nullptr);
    std::vector<const float*> xs;
    for (int64_t first = 0; first < batch; first += kChunk) {
      const int64_t n = std::min(kChunk, batch - first);
      ptr[input] = inputs + first * in_per;
      float* out = outputs + first * out_per;
      for (const Step& s : steps) {
        xs.clear();
        for (int i : s.inputs) xs.push_back(ptr[i]);
        const int64_t count = n * values[s.output].storage_per_image();
        float* y;
        if (s.output == output) {
          y = out;
        } else {
          if (static_cast<int64_t>(buffers[s.output].size()) < count)
            buffers[s.output].resize(count);
          y = buffers[s.output].data();
        }
        s.run(xs, y, count);
        ptr[s.output] = y;
      }
      if (ptr[output] != out) bad(origin, "the output is not computed by the graph");
    }
  }
};

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

Model Model::from_buffer(const void* data, size_t size, const Limits& limits,
                         const std::string& origin) {
  if (size > static_cast<size_t>(limits.max_file_bytes) ||
      size > static_cast<size_t>(std::numeric_limits<int>::max())) {
    bad(origin, "the model is too large (" + std::to_string(size) + " bytes)");
  }
  if (size == 0) bad(origin, "empty file (0 bytes), not an ONNX model");
  // lowbit's own exports end with a CRC-32 of the rest (io::onnx_checksum_trailer).
  try {
    io::verify_onnx_checksum(std::string_view(static_cast<const char*>(data), size), origin);
  } catch (const std::runtime_error& e) {
    throw std::invalid_argument(e.what());
  }
  onnx::ModelProto proto;
  if (!proto.ParseFromArray(data, static_cast<int>(size)))
    bad(origin, "not an ONNX model (the protobuf does not parse)");
  auto impl = std::make_unique<Impl>();
  impl->origin = origin;
  impl->limits = limits;
  // The zero points' types give QuantizeLinear its saturation range.
  for (const auto& t : proto.graph().initializer()) {
    if (t.data_type() == onnx::TensorProto::UINT8)
      impl->zero_point_ranges[t.name()] = {0.0f, 255.0f};
    if (t.data_type() == onnx::TensorProto::INT8)
      impl->zero_point_ranges[t.name()] = {-128.0f, 127.0f};
  }
  impl->load(proto);
  return Model(std::move(impl));
}

Model Model::from_file(const std::string& path, const Limits& limits) {
  std::string bytes;
  try {
    bytes = io::read_file(path, limits.max_file_bytes);
  } catch (const std::runtime_error& e) {
    throw std::invalid_argument(e.what());
  }
  return from_buffer(bytes.data(), bytes.size(), limits, path);
}

std::vector<int64_t> Model::input_shape() const { return impl_->input_dims; }
int64_t Model::output_size() const { return impl_->classes; }
const std::vector<PlannedNode>& Model::plan() const { return impl_->plan; }
int64_t Model::parameter_bytes() const {
  int64_t total = 0;
  for (const auto& p : impl_->plan) total += p.parameter_bytes;
  return total;
}

void Model::run(const float* inputs, int64_t batch, float* outputs, int threads) const {
  if (batch < 0) throw std::invalid_argument("run: batch must be >= 0");
  if (batch == 0) return;
  if (!inputs || !outputs) throw std::invalid_argument("run: inputs and outputs must not be null");
  const int64_t in_per = product(impl_->input_dims), out_per = impl_->classes;
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(threads, batch));
  if (workers == 1) {
    impl_->run(inputs, batch, outputs);
    return;
  }
  std::vector<std::thread> pool;
  std::vector<std::exception_ptr> errors(workers);
  const int64_t per = (batch + workers - 1) / workers;
  for (int64_t t = 0; t < workers; ++t) {
    const int64_t first = t * per, n = std::min(per, batch - first);
    if (n <= 0) break;
    pool.emplace_back([&, t, first, n] {
      try {
        impl_->run(inputs + first * in_per, n, outputs + first * out_per);
      } catch (...) {
        errors[t] = std::current_exception();
      }
    });
  }
  for (auto& th : pool) th.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace engine
}  // namespace lowbit
