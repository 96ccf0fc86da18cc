// elementwise.h's kernels, compiled once per instruction set: included by exactly one file per
// LOWBIT_ELEMENTWISE_ISA namespace, with that file's flags. Each function is a loop of its own
// (the switch outside it), so the compiler vectorizes the ones made of IEEE operations and calls
// the C library element by element for the others, in every build alike.
#pragma once

#include <algorithm>
#include <cmath>

#include "lowbit/engine/kernels/elementwise.h"

namespace lowbit {
namespace engine {
namespace elementwise {
namespace LOWBIT_ELEMENTWISE_ISA {

template <class F>
inline void map(const float* __restrict x, int64_t n, float* __restrict y, F f) {
  for (int64_t e = 0; e < n; ++e) y[e] = f(x[e]);
}

// In place (y == x) as well: no __restrict.
template <class F>
inline void map_aliased(const float* x, int64_t n, float* y, F f) {
  for (int64_t e = 0; e < n; ++e) y[e] = f(x[e]);
}

template <class F>
inline void each(const float* x, int64_t n, float* y, F f) {
  if (x == y) {
    map_aliased(x, n, y, f);
  } else {
    map(x, n, y, f);
  }
}

void unary(Unary f, float a, float b, const float* x, int64_t n, float* y) {
  switch (f) {
    case Unary::copy:
      if (x != y) std::copy(x, x + n, y);
      return;
    case Unary::relu:
      return each(x, n, y, [](float v) { return v < 0 ? 0.0f : v; });
    case Unary::clamp:
      return each(x, n, y, [a, b](float v) { return std::min(std::max(v, a), b); });
    case Unary::leaky_relu:
      return each(x, n, y, [a](float v) {
        const float s = a * v;  // computed either way, so the choice is a blend
        return v >= 0 ? v : s;
      });
    case Unary::elu:
      return each(x, n, y, [a](float v) { return v >= 0 ? v : a * (std::exp(v) - 1.0f); });
    case Unary::hard_sigmoid:
      return each(x, n, y, [a, b](float v) {
        const float t = a * v + b;
        return t != t ? t : std::max(0.0f, std::min(1.0f, t));
      });
    case Unary::hard_swish:
      return each(x, n, y,
                  [](float v) { return v * std::max(0.0f, std::min(1.0f, v / 6.0f + 0.5f)); });
    case Unary::sigmoid:
      return each(x, n, y, [](float v) { return 1.0f / (1.0f + std::exp(-v)); });
    case Unary::tanh:
      return each(x, n, y, [](float v) { return std::tanh(v); });
    case Unary::softplus:
      return each(x, n, y, [](float v) {
        return v > 0 ? v + std::log1p(std::exp(-v)) : std::log1p(std::exp(v));
      });
    case Unary::exp:
      return each(x, n, y, [](float v) { return std::exp(v); });
    case Unary::sqrt:
      return each(x, n, y, [](float v) { return std::sqrt(v); });
    case Unary::erf:
      return each(x, n, y, [](float v) { return std::erf(v); });
    case Unary::neg:
      return each(x, n, y, [](float v) { return -v; });
    case Unary::abs:
      return each(x, n, y, [](float v) { return std::fabs(v); });
    case Unary::sign:
      return each(x, n, y, [](float v) { return v > 0 ? 1.0f : (v < 0 ? -1.0f : 0.0f); });
    case Unary::round:
      return each(x, n, y, [](float v) { return std::nearbyint(v); });
    case Unary::floor:
      return each(x, n, y, [](float v) { return std::floor(v); });
    case Unary::ceil:
      return each(x, n, y, [](float v) { return std::ceil(v); });
    case Unary::trunc:
      return each(x, n, y, [](float v) { return std::trunc(v); });
    case Unary::nonzero:
      return each(x, n, y, [](float v) { return v != 0 ? 1.0f : 0.0f; });
    case Unary::select:
      return each(x, n, y, [a, b](float v) { return v != 0 ? a : b; });
  }
}

// g(p, q) for each function: a template per function, so each loop inlines its own.
template <class G>
inline void with(Binary f, G&& g) {
  switch (f) {
    case Binary::add:
      return g([](float p, float q) { return p + q; });
    case Binary::sub:
      return g([](float p, float q) { return p - q; });
    case Binary::mul:
      return g([](float p, float q) { return p * q; });
    case Binary::div:
      return g([](float p, float q) { return p / q; });
    case Binary::min:
      return g([](float p, float q) {
        const float nan = p + q;  // computed either way, so the choice is a blend
        return p != p || q != q ? nan : std::min(p, q);
      });
    case Binary::max:
      return g([](float p, float q) {
        const float nan = p + q;
        return p != p || q != q ? nan : std::max(p, q);
      });
    case Binary::mean:
      return g([](float p, float q) { return (p + q) / 2.0f; });
    case Binary::pow:
      return g([](float p, float q) { return std::pow(p, q); });
    case Binary::ge:
      return g([](float p, float q) { return p >= q ? 1.0f : 0.0f; });
    case Binary::gt:
      return g([](float p, float q) { return p > q ? 1.0f : 0.0f; });
    case Binary::prelu:
      return g([](float p, float q) {
        const float s = q * p;
        return p < 0 ? s : p;
      });
  }
}

void binary(Binary f, const float* p, const float* q, int64_t n, float* y) {
  with(f, [&](auto op) {
    for (int64_t e = 0; e < n; ++e) y[e] = op(p[e], q[e]);
  });
}

void rows(Binary f, const float* x, const float* c, int64_t rows, int64_t n, bool constant_first,
          float* y) {
  with(f, [&](auto op) {
    for (int64_t r = 0; r < rows; ++r) {
      const float k = c[r];
      const float* xr = x + r * n;
      float* yr = y + r * n;
      if (constant_first) {
        each(xr, n, yr, [op, k](float v) { return op(k, v); });
      } else {
        each(xr, n, yr, [op, k](float v) { return op(v, k); });
      }
    }
  });
}

template <class R>
inline void quant_with(float lo, float hi, const float* x, const float* scale, const float* zero,
                       int64_t rows, int64_t n, float* y, R round) {
  for (int64_t r = 0; r < rows; ++r) {
    const float s = scale[r], z = zero[r];
    each(x + r * n, n, y + r * n, [lo, hi, s, z, round](float v) {
      float u = v / s + z;
      u = u > hi ? hi : (u < lo ? lo : u);
      return (round(u) - z) * s;
    });
  }
}

void quant(Rounding mode, float lo, float hi, const float* x, const float* scale, const float* zero,
           int64_t rows, int64_t n, float* y) {
  auto go = [&](auto round) { quant_with(lo, hi, x, scale, zero, rows, n, y, round); };
  switch (mode) {
    case Rounding::round:
    case Rounding::half_even:
      return go([](float u) { return std::nearbyint(u); });
    case Rounding::ceil:
      return go([](float u) { return std::ceil(u); });
    case Rounding::floor:
      return go([](float u) { return std::floor(u); });
    case Rounding::half_up:
      return go([](float u) {
        const float neg = -std::floor(-u + 0.5f), pos = std::floor(u + 0.5f);
        return u < 0 ? neg : pos;
      });
    case Rounding::half_down:
      return go([](float u) {
        const float neg = -std::ceil(-u - 0.5f), pos = std::ceil(u - 0.5f);
        return u < 0 ? neg : pos;
      });
    case Rounding::up:
      return go([](float u) {
        const float neg = std::floor(u), pos = std::ceil(u);
        return u < 0 ? neg : pos;
      });
    case Rounding::down:
      return go([](float u) { return std::trunc(u); });
  }
}

}  // namespace LOWBIT_ELEMENTWISE_ISA
}  // namespace elementwise
}  // namespace engine
}  // namespace lowbit
