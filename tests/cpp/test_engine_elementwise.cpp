// The element-wise kernel list (elementwise.h): every function of every build against its formula
// written out here, on ordinary values and the special ones (NaN, infinities, signed zeros, halves
// for the rounding), at lengths around the vector widths, unaligned, in place, and against
// constants per row either side.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "lowbit/engine/kernels/elementwise.h"

namespace {

namespace ew = lowbit::engine::elementwise;
using ew::Binary;
using ew::Unary;

constexpr float kA = 0.3f, kB = 0.6f;  // the parameters every unary function is given

float unary_formula(Unary f, float v) {
  switch (f) {
    case Unary::copy:
      return v;
    case Unary::relu:
      return v < 0 ? 0.0f : v;
    case Unary::clamp:
      return v != v ? v : v < kA ? kA : v > kB ? kB : v;
    case Unary::leaky_relu:
      return v >= 0 ? v : kA * v;
    case Unary::elu:
      return v >= 0 ? v : kA * (std::exp(v) - 1.0f);
    case Unary::hard_sigmoid: {
      const float t = kA * v + kB;
      return t != t ? t : t <= 0 ? 0.0f : t > 1 ? 1.0f : t;
    }
    case Unary::hard_swish: {
      const float t = v / 6.0f + 0.5f;
      return v * (t != t ? t : t <= 0 ? 0.0f : t > 1 ? 1.0f : t);
    }
    case Unary::sigmoid:
      return 1.0f / (1.0f + std::exp(-v));
    case Unary::tanh:
      return std::tanh(v);
    case Unary::softplus:
      return v > 0 ? v + std::log1p(std::exp(-v)) : std::log1p(std::exp(v));
    case Unary::exp:
      return std::exp(v);
    case Unary::sqrt:
      return std::sqrt(v);
    case Unary::erf:
      return std::erf(v);
    case Unary::neg:
      return -v;
    case Unary::abs:
      return v < 0 || (v == 0 && std::signbit(v)) ? -v : v;
    case Unary::sign:
      return v > 0 ? 1.0f : v < 0 ? -1.0f : 0.0f;
    case Unary::round: {
      const float fl = std::floor(v), d = v - fl;  // ties to the even neighbour
      if (!std::isfinite(v)) return v;
      const float r = d < 0.5f ? fl : d > 0.5f ? fl + 1 : (std::fmod(fl, 2.0f) == 0 ? fl : fl + 1);
      return r == 0 ? std::copysign(0.0f, v) : r;
    }
    case Unary::floor:
      return std::floor(v);
    case Unary::ceil:
      return std::ceil(v);
    case Unary::trunc:
      return v < 0 ? std::ceil(v) : std::floor(v);
    case Unary::nonzero:
      return v != 0 ? 1.0f : 0.0f;
    case Unary::select:
      return v != 0 ? kA : kB;
  }
  return 0;
}

float binary_formula(Binary f, float p, float q) {
  const bool nan = p != p || q != q;
  switch (f) {
    case Binary::add:
      return p + q;
    case Binary::sub:
      return p - q;
    case Binary::mul:
      return p * q;
    case Binary::div:
      return p / q;
    case Binary::min:
      return nan ? p + q : q < p ? q : p;
    case Binary::max:
      return nan ? p + q : p < q ? q : p;
    case Binary::mean:
      return (p + q) / 2.0f;
    case Binary::pow:
      return std::pow(p, q);
    case Binary::ge:
      return p >= q ? 1.0f : 0.0f;
    case Binary::gt:
      return p > q ? 1.0f : 0.0f;
    case Binary::prelu:
      return p < 0 ? q * p : p;
  }
  return 0;
}

// Equal bits, or both NaN (a NaN's payload is the hardware's choice).
bool same(float got, float want) {
  if (got != got && want != want) return true;
  return std::memcmp(&got, &want, sizeof(float)) == 0;
}

std::vector<float> values(std::mt19937& rng, size_t n) {
  const float inf = std::numeric_limits<float>::infinity();
  const float specials[] = {
      0.0f,  -0.0f,  0.5f,   -0.5f,      1.5f,   2.5f,
      -2.5f, 1.0f,   -1.0f,  inf,        -inf,   std::numeric_limits<float>::quiet_NaN(),
      3e38f, -3e38f, 1e-40f, 8388609.0f, -90.0f, 90.0f};
  std::vector<float> v(n);
  for (size_t e = 0; e < n; ++e) {
    v[e] = rng() % 4 == 0 ? specials[rng() % (sizeof(specials) / sizeof(float))]
                          : std::uniform_real_distribution<float>(-8, 8)(rng);
  }
  return v;
}

TEST(EngineElementwise, EveryUnaryFunctionIsItsFormulaInEveryBuild) {
  std::mt19937 rng(31);
  int checked = 0;
  for (const auto& k : ew::all()) {
    if (!k.supported()) continue;
    for (Unary f : ew::unary_functions()) {
      for (int64_t n : {0, 1, 7, 16, 33, 130, 1001}) {
        const std::vector<float> x = values(rng, n + 1);
        std::vector<float> y(n + 1, 42.0f), in_place(x);
        k.unary(f, kA, kB, x.data() + 1, n, y.data() + 1);  // unaligned
        k.unary(f, kA, kB, in_place.data() + 1, n, in_place.data() + 1);
        ASSERT_EQ(y[0], 42.0f);
        for (int64_t e = 1; e <= n; ++e) {
          const float want = unary_formula(f, x[e]);
          ASSERT_TRUE(same(y[e], want))
              << k.name << " " << ew::name(f) << "(" << x[e] << ") = " << y[e] << ", want " << want;
          ASSERT_TRUE(same(in_place[e], want)) << k.name << " in place " << ew::name(f);
        }
      }
      ++checked;
    }
  }
  EXPECT_GE(checked, static_cast<int>(ew::unary_functions().size()));
}

TEST(EngineElementwise, EveryBinaryFunctionIsItsFormulaInEveryBuild) {
  std::mt19937 rng(37);
  int checked = 0;
  for (const auto& k : ew::all()) {
    if (!k.supported()) continue;
    for (Binary f : ew::binary_functions()) {
      for (int64_t n : {0, 1, 9, 16, 35, 1003}) {
        const std::vector<float> p = values(rng, n + 1), q = values(rng, n + 1);
        std::vector<float> y(n + 1), in_place(p);
        k.binary(f, p.data() + 1, q.data() + 1, n, y.data() + 1);
        k.binary(f, in_place.data() + 1, q.data() + 1, n, in_place.data() + 1);
        for (int64_t e = 1; e <= n; ++e) {
          const float want = binary_formula(f, p[e], q[e]);
          ASSERT_TRUE(same(y[e], want))
              << k.name << " " << ew::name(f) << "(" << p[e] << ", " << q[e] << ") = " << y[e];
          ASSERT_TRUE(same(in_place[e], want)) << k.name << " in place " << ew::name(f);
        }
      }
      // A constant per row, either side; a scalar is one row.
      for (int64_t rows : {1, 3}) {
        const int64_t n = 37;
        const std::vector<float> x = values(rng, rows * n), c = values(rng, rows);
        for (bool first : {false, true}) {
          std::vector<float> y(rows * n);
          k.rows(f, x.data(), c.data(), rows, n, first, y.data());
          for (int64_t e = 0; e < rows * n; ++e) {
            const float kc = c[e / n];
            const float want = first ? binary_formula(f, kc, x[e]) : binary_formula(f, x[e], kc);
            ASSERT_TRUE(same(y[e], want)) << k.name << " rows " << ew::name(f) << " " << first;
          }
        }
      }
      ++checked;
    }
  }
  EXPECT_GE(checked, static_cast<int>(ew::binary_functions().size()));
}

TEST(EngineElementwise, EveryBuildGivesTheReferencesBits) {
  // Beyond the formulas (NaN payloads aside): the vector builds' bits are the scalar reference's.
  std::mt19937 rng(41);
  const auto& ref = ew::all()[0];
  const int64_t n = 777;
  const std::vector<float> x = values(rng, n), q = values(rng, n);
  for (const auto& k : ew::all()) {
    if (!k.supported()) continue;
    for (Unary f : ew::unary_functions()) {
      std::vector<float> a(n), b(n);
      k.unary(f, kA, kB, x.data(), n, a.data());
      ref.unary(f, kA, kB, x.data(), n, b.data());
      for (int64_t e = 0; e < n; ++e) ASSERT_TRUE(same(a[e], b[e])) << k.name << ew::name(f);
    }
    for (Binary f : ew::binary_functions()) {
      std::vector<float> a(n), b(n);
      k.binary(f, x.data(), q.data(), n, a.data());
      ref.binary(f, x.data(), q.data(), n, b.data());
      for (int64_t e = 0; e < n; ++e) ASSERT_TRUE(same(a[e], b[e])) << k.name << ew::name(f);
    }
    for (int mode = 0; mode < 8; ++mode) {  // Quant, signed zeros included
      std::vector<float> a(n), b(n);
      const float scale[] = {0.1f}, zero[] = {1.0f};
      k.quant(static_cast<ew::Rounding>(mode), -8, 7, x.data(), scale, zero, 1, n, a.data());
      ref.quant(static_cast<ew::Rounding>(mode), -8, 7, x.data(), scale, zero, 1, n, b.data());
      for (int64_t e = 0; e < n; ++e) ASSERT_TRUE(same(a[e], b[e])) << k.name << " quant " << mode;
    }
  }
}

// QONNX's rounding modes written out on exact halves (not through the C library's rounding).
float round_formula(ew::Rounding mode, float u) {
  if (u != u || std::isinf(u)) return u;
  const double d = u, f = std::floor(d), frac = d - f;
  double r = 0;
  switch (mode) {
    case ew::Rounding::round:
    case ew::Rounding::half_even:
      r = frac > 0.5 ? f + 1 : frac < 0.5 ? f : (std::fmod(f, 2.0) == 0 ? f : f + 1);
      break;
    case ew::Rounding::ceil:
      r = frac > 0 ? f + 1 : f;
      break;
    case ew::Rounding::floor:
      r = f;
      break;
    case ew::Rounding::half_up:  // halves away from 0
      r = d < 0 ? -std::floor(-d + 0.5) : std::floor(d + 0.5);
      break;
    case ew::Rounding::half_down:  // halves toward 0
      r = d < 0 ? -std::ceil(-d - 0.5) : std::ceil(d - 0.5);
      break;
    case ew::Rounding::up:  // away from 0
      r = d < 0 ? f : (frac > 0 ? f + 1 : f);
      break;
    case ew::Rounding::down:  // toward 0
      r = d < 0 ? (frac > 0 ? f + 1 : f) : f;
      break;
  }
  return static_cast<float>(r);
}

TEST(EngineElementwise, QuantIsQonnxsFormulaInEveryBuildAndMode) {
  std::mt19937 rng(43);
  const ew::Rounding modes[] = {
      ew::Rounding::round,   ew::Rounding::half_even, ew::Rounding::ceil, ew::Rounding::floor,
      ew::Rounding::half_up, ew::Rounding::half_down, ew::Rounding::up,   ew::Rounding::down};
  int checked = 0;
  for (const auto& k : ew::all()) {
    if (!k.supported()) continue;
    for (ew::Rounding mode : modes) {
      for (int64_t rows : {1, 3}) {
        for (int64_t n : {1, 17, 100}) {
          // Scales powers of 2 and not, values on exact halves of the grid and off it, specials.
          const float scales[] = {0.25f, 0.1f, 3.0f}, zeros[] = {0.0f, 2.0f, -1.0f};
          std::vector<float> sc(rows), zp(rows), x = values(rng, rows * n + 1);
          for (int64_t r = 0; r < rows; ++r) sc[r] = scales[r % 3], zp[r] = zeros[(r + n) % 3];
          for (int64_t e = 1; e <= rows * n; e += 3)
            x[e] = static_cast<float>(int(rng() % 41) - 20) / 8;
          for (const auto& range : {std::pair<float, float>{-8, 7}, {0, 255}}) {
            std::vector<float> y(rows * n + 1, 42.0f), in_place(x);
            k.quant(mode, range.first, range.second, x.data() + 1, sc.data(), zp.data(), rows, n,
                    y.data() + 1);
            k.quant(mode, range.first, range.second, in_place.data() + 1, sc.data(), zp.data(),
                    rows, n, in_place.data() + 1);
            ASSERT_EQ(y[0], 42.0f);
            for (int64_t e = 0; e < rows * n; ++e) {
              const float s = sc[e / n], z = zp[e / n], v = x[e + 1];
              float u = v / s + z;
              u = u != u ? u : u > range.second ? range.second : u < range.first ? range.first : u;
              const float want = (round_formula(mode, u) - z) * s;
              // The sign of a zero aside (QONNX's own formulas differ there by mode).
              ASSERT_TRUE(same(y[e + 1], want) || y[e + 1] == want)
                  << k.name << " mode " << static_cast<int>(mode) << " quant(" << v << ", " << s
                  << ", " << z << ") = " << y[e + 1] << ", want " << want;
              ASSERT_TRUE(same(in_place[e + 1], y[e + 1])) << k.name << " in place";
            }
          }
        }
      }
      ++checked;
    }
  }
  EXPECT_GE(checked, 8);
}

TEST(EngineElementwise, NamesListEveryFunctionOnce) {
  std::vector<std::string> names;
  for (Unary f : ew::unary_functions()) names.push_back(ew::name(f));
  for (Binary f : ew::binary_functions()) names.push_back(ew::name(f));
  std::vector<std::string> sorted = names;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::unique(sorted.begin(), sorted.end()), sorted.end());
  EXPECT_EQ(std::string(ew::name(Unary::hard_swish)), "hard_swish");
  EXPECT_EQ(std::string(ew::name(Binary::prelu)), "prelu");
  EXPECT_EQ(ew::unary_functions().back(), Unary::select);
}

}  // namespace
