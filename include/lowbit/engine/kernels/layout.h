// The engine's kernels that move values within a plane: padding (ONNX's Pad: constant, reflect and
// edge modes) and resizing (ONNX's Resize: nearest and linear, from tables of source rows and
// columns the caller computes by the coordinate transformation). Compiled once per instruction set
// from one body (layout_body.h); every build copies the same values and performs the same IEEE
// operations, so all give the same bits. One list drives dispatch, tests and benchmarks
// (docs/engine.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lowbit {
namespace engine {
namespace layout {

enum class PadMode {
  constant,  // the value outside the plane
  reflect,   // mirrored about the edge without repeating it (n = 1: the edge)
  edge,      // the nearest edge value
};

// One plane of h x w values padded by top rows and left columns (oh >= h + top, ow >= w + left:
// the rest at the bottom and right): y[r, q] = x[r - top, q - left] inside the plane; outside it
// `value` (constant) or x at the source row and column of ONNX's reflect or edge mode.
using PadFn = void (*)(const float* x, int64_t h, int64_t w, int64_t top, int64_t left, int64_t oh,
                       int64_t ow, PadMode mode, float value, float* y);

// Nearest: y[r, q] = x[rows[r], cols[q]] (x a plane of rows of w values).
using NearestFn = void (*)(const float* x, int64_t w, const int64_t* rows, int64_t oh,
                           const int64_t* cols, int64_t ow, float* y);

// Linear: with a = x[r0, c0], b = x[r0, c1], c = x[r1, c0], d = x[r1, c1] (r0 = rows0[r],
// r1 = rows1[r], c0 = cols0[q], c1 = cols1[q]): top = a + (b - a) * fc[q],
// bottom = c + (d - c) * fc[q], y[r, q] = top + (bottom - top) * fr[r], each operation rounded
// once (as onnxruntime computes it in float).
using LinearFn = void (*)(const float* x, int64_t w, const int64_t* rows0, const int64_t* rows1,
                          const float* fr, int64_t oh, const int64_t* cols0, const int64_t* cols1,
                          const float* fc, int64_t ow, float* y);

struct Kernels {
  std::string name;
  bool (*supported)();
  PadFn pad;
  NearestFn nearest;
  LinearFn linear;
};
// Every implementation, the reference first; and the best one this CPU runs.
const std::vector<Kernels>& all();
const Kernels& best();

}  // namespace layout
}  // namespace engine
}  // namespace lowbit
