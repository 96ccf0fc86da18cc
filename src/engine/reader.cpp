// The reader: an ONNX file (untrusted) into the program's values, limits checked as it goes.
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <stdexcept>
#include <string_view>

#include "lowbit/io/checksum.h"
#include "lowbit/io/file.h"
#include "program.h"

namespace lowbit {
namespace engine {
namespace detail {

int Program::add_value(const std::string& name, Value v, const std::string& where) {
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

const Value& Program::value(const std::string& name, const std::string& where) const {
  auto it = ids.find(name);
  if (it == ids.end())
    bad(where, "input '" + name + "' is not defined before use (a missing input or a cycle)");
  return values[it->second];
}

Value Program::read_initializer(const onnx::TensorProto& t) {
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

void Program::load(const onnx::ModelProto& m) {
  for (const auto& o : m.opset_import()) {
    if (o.domain().empty() || o.domain() == "ai.onnx") opset = o.version();
  }
  if (opset < 1 || opset > 22)
    bad(origin, "imports ONNX opset " + std::to_string(opset) + " (1 to 22 are read)");
  const onnx::GraphProto& g = m.graph();
  if (g.node_size() > limits.max_nodes) bad(origin, "too many nodes");
  initializing = true;
  for (const auto& t : g.initializer()) add_value(t.name(), read_initializer(t), origin);
  initializing = false;
  // The one graph input that is not an initializer: [batch, ...], every other dimension known.
  for (const auto& in : g.input()) {
    if (ids.count(in.name())) continue;
    if (input >= 0) bad(origin, "the graph has more than one input");
    const auto& type = in.type().tensor_type();
    if (!in.type().has_tensor_type() || type.elem_type() != onnx::TensorProto::FLOAT) {
      bad(origin, "input '" + in.name() + "' is not a float32 tensor");
    }
    // Without a shape in the file, the requested one; dimensions the file leaves unknown after the
    // batch (image-to-image models) come from the request too.
    const int rank = type.has_shape() || requested_input.empty()
                         ? type.shape().dim_size()
                         : static_cast<int>(requested_input.size()) + 1;
    if (rank < 1 || rank > 8) {
      bad(origin, "input '" + in.name() + "' has " + std::to_string(rank) +
                      " dimensions; 1 to 8 are supported, the first the batch");
    }
    // The request sizes the dimensions the file leaves unknown (of its rank); the file's fixed
    // dimensions stand (the caller compares input_shape() with what it has).
    const bool usable = static_cast<int>(requested_input.size()) == rank - 1;
    Value v;
    v.dims.push_back(1);
    int64_t per_image = 1;
    for (int d = 1; d < rank; ++d) {
      const bool fixed = type.has_shape() && type.shape().dim(d).has_dim_value();
      int64_t size = fixed ? type.shape().dim(d).dim_value() : -1;
      if (!fixed && !usable) {
        bad(origin, "input '" + in.name() + "': dimension " + std::to_string(d) +
                        " is not fixed by the file; give the input's shape, " +
                        std::to_string(rank - 1) +
                        " dimensions after the batch (run --input's file, bench --shape)");
      }
      if (!fixed) size = requested_input[d - 1];
      if (size <= 0 || size > limits.max_tensor_elements) {
        bad(origin, "input '" + in.name() + "': dimension " + std::to_string(d) +
                        " must be a positive number");
      }
      v.dims.push_back(size);
      input_dims.push_back(size);
      per_image = checked_mul(per_image, size, limits.max_tensor_elements, origin, "the input");
    }
    input = add_value(in.name(), std::move(v), origin);
  }
  if (input < 0) bad(origin, "the graph has no input");
  for (const auto& n : g.node())
    for (int i = 0; i < n.input_size(); ++i) {
      ++uses[n.input(i)];
      readers[n.input(i)].emplace_back(&n, i);
    }
  for (const auto& o : g.output()) uses[o.name()] += 2;  // never fused away
  for (int k = 0; k < g.node_size(); ++k) add_node(g.node(k), k);
  readers.clear();  // pointers into the file's graph
  // Outputs in fused storage (bits, codes, planes) become floats.
  std::set<std::string> seen;
  for (const auto& o : g.output()) {
    if (!seen.insert(o.name()).second)
      bad(origin, "graph output '" + o.name() + "' is listed twice");
    if (!ids.count(o.name())) continue;  // an error below
    if (values[ids.at(o.name())].packed) unpack(o.name());
    if (values[ids.at(o.name())].codes) decode(o.name());
    if (values[ids.at(o.name())].planes) decode_planes(o.name());
  }
  // Steps no graph output depends on (a node whose value nothing reads, an exporter's dead
  // branch) are not run, as onnxruntime removes such nodes; they were lowered (checked) all the
  // same, and their reads kept the values they read from being fused away.
  std::vector<bool> needed(values.size(), false);
  for (const auto& o : g.output())
    if (ids.count(o.name())) needed[ids.at(o.name())] = true;
  for (size_t k = steps.size(); k-- > 0;) {
    Step& st = steps[k];
    if (st.removed) continue;
    if (!needed[st.output]) {
      st.removed = true;
      continue;
    }
    for (int i : st.inputs) needed[i] = true;
  }
  // The steps fused into others go; the plan lists the rest.
  steps.erase(std::remove_if(steps.begin(), steps.end(), [](const Step& st) { return st.removed; }),
              steps.end());
  for (const Step& st : steps) plan.push_back(st.info);
  // Every kernel keeps what it needs (packed, for binary ones): the float constants go.
  for (Value& v : values) {
    if (v.constant) std::vector<float>().swap(v.data);
  }
  if (g.output_size() < 1) bad(origin, "the graph has no output");
  for (const auto& o : g.output()) {
    const std::string where = origin + ": graph output '" + o.name() + "'";
    const Value& out = value(o.name(), where);
    if (out.constant) bad(where, "a constant, not computed from the input");
    const int v = id(o.name());
    if (std::none_of(steps.begin(), steps.end(), [&](const Step& st) { return st.output == v; }))
      bad(where, "not computed by any node");
    outputs.push_back(v);
    output_dims.emplace_back(out.dims.begin() + 1, out.dims.end());
    output_names.push_back(o.name());
  }
  plan_memory();
}

}  // namespace detail

using detail::bad;

Model Model::from_buffer(const void* data, size_t size, const Limits& limits,
                         const std::string& origin, const std::vector<int64_t>& input_shape) {
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
  impl->requested_input = input_shape;
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

Model Model::from_file(const std::string& path, const Limits& limits,
                       const std::vector<int64_t>& input_shape) {
  std::string bytes;
  try {
    bytes = io::read_file(path, limits.max_file_bytes);
  } catch (const std::runtime_error& e) {
    throw std::invalid_argument(e.what());
  }
  return from_buffer(bytes.data(), bytes.size(), limits, path, input_shape);
}

}  // namespace engine
}  // namespace lowbit
