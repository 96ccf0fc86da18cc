// The engine tests' ONNX graph builder and helpers (test_engine*.cpp).
#pragma once

#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "lowbit/engine.h"
#include "lowbit/engine/kernels/binary.h"
#include "lowbit/engine/kernels/float32.h"
#include "lowbit/engine/kernels/int8.h"
#include "lowbit/engine/kernels/planes.h"
#include "lowbit/engine_c.h"
#include "lowbit/io/checksum.h"

namespace engine_test {

using lowbit::engine::Model;

// A small ONNX graph builder for the tests.
struct Builder {
  onnx::ModelProto m;
  onnx::GraphProto* g;
  explicit Builder(std::vector<int64_t> chw) : g(m.mutable_graph()) {
    m.set_ir_version(7);
    auto* op = m.add_opset_import();
    op->set_version(13);
    auto* in = g->add_input();
    in->set_name("image");
    auto* t = in->mutable_type()->mutable_tensor_type();
    t->set_elem_type(onnx::TensorProto::FLOAT);
    t->mutable_shape()->add_dim()->set_dim_param("batch");
    for (int64_t d : chw) t->mutable_shape()->add_dim()->set_dim_value(d);
  }
  std::string init(const std::string& name, std::vector<int64_t> dims, std::vector<float> v) {
    auto* t = g->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (int64_t d : dims) t->add_dims(d);
    t->set_raw_data(std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4));
    return name;
  }
  onnx::NodeProto* node(const std::string& op, std::vector<std::string> in, const std::string& out,
                        const std::string& domain = "") {
    auto* n = g->add_node();
    n->set_op_type(op);
    n->set_name(out + "_node");
    if (!domain.empty()) n->set_domain(domain);
    for (auto& i : in) n->add_input(i);
    n->add_output(out);
    return n;
  }
  static void attr(onnx::NodeProto* n, const std::string& k, int64_t v) {
    auto* a = n->add_attribute();
    a->set_name(k);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(v);
  }
  static void attr(onnx::NodeProto* n, const std::string& k, const std::string& v) {
    auto* a = n->add_attribute();
    a->set_name(k);
    a->set_type(onnx::AttributeProto::STRING);
    a->set_s(v);
  }
  static void attr(onnx::NodeProto* n, const std::string& k, std::vector<int64_t> v) {
    auto* a = n->add_attribute();
    a->set_name(k);
    a->set_type(onnx::AttributeProto::INTS);
    for (int64_t x : v) a->add_ints(x);
  }
  std::string bytes(const std::string& output) {
    g->add_output()->set_name(output);
    return m.SerializeAsString();
  }
  std::string bytes(const std::vector<std::string>& outputs) {  // several, in this order
    for (const auto& o : outputs) g->add_output()->set_name(o);
    return m.SerializeAsString();
  }
  Model load(const std::string& output) {
    const std::string b = bytes(output);
    return Model::from_buffer(b.data(), b.size());
  }
};

inline std::string load_error(const std::string& bytes) {
  try {
    Model::from_buffer(bytes.data(), bytes.size());
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "no error";
}

// The integer sums of a convolution of x [c, h, w] (`pad` outside the image) by w [m, c, kh, kw],
// written out over every tap: what the binary, 8-bit and bit-plane kernels must sum.
template <class T>
std::vector<int64_t> reference_sums(const std::vector<T>& x, const std::vector<T>& w, T pad,
                                    const lowbit::engine::binary::ConvShape& s) {
  std::vector<int64_t> sums(s.m * s.oh * s.ow);
  for (int64_t o = 0; o < s.m; ++o)
    for (int64_t r = 0; r < s.oh; ++r)
      for (int64_t q = 0; q < s.ow; ++q) {
        int64_t sum = 0;
        for (int64_t c = 0; c < s.c; ++c)
          for (int64_t i = 0; i < s.kh; ++i)
            for (int64_t j = 0; j < s.kw; ++j) {
              const int64_t yy = r * s.stride_h - s.pad_h + i * s.dil_h;
              const int64_t xx = q * s.stride_w - s.pad_w + j * s.dil_w;
              const bool inside = yy >= 0 && yy < s.h && xx >= 0 && xx < s.w;
              sum += static_cast<int64_t>((inside ? x[(c * s.h + yy) * s.w + xx] : pad) *
                                          w[((o * s.c + c) * s.kh + i) * s.kw + j]);
            }
        sums[(o * s.oh + r) * s.ow + q] = sum;
      }
  return sums;
}

// y[o, r, q] of a float convolution by float32.h's definition: fused multiply-adds from 0 over the
// group's input channels and the taps (ic, i, j) inside the image, then the bias.
inline float conv_definition(const std::vector<float>& x, const std::vector<float>& w, float bias,
                             const lowbit::engine::binary::ConvShape& s, int64_t group, int64_t o,
                             int64_t r, int64_t q) {
  const int64_t cg = s.c / group, g = o / (s.m / group);
  float acc = 0;
  for (int64_t ic = 0; ic < cg; ++ic)
    for (int64_t i = 0; i < s.kh; ++i)
      for (int64_t j = 0; j < s.kw; ++j) {
        const int64_t yy = r * s.stride_h - s.pad_h + i * s.dil_h;
        const int64_t xx = q * s.stride_w - s.pad_w + j * s.dil_w;
        if (yy < 0 || yy >= s.h || xx < 0 || xx >= s.w) continue;
        acc = std::fma(x[((g * cg + ic) * s.h + yy) * s.w + xx],
                       w[((o * cg + ic) * s.kh + i) * s.kw + j], acc);
      }
  return acc + bias;
}

}  // namespace engine_test
