// What the kernel tests share: bit-exact comparisons, the sizes and special values every kernel
// set is run on, inputs mixing them with random values, the fake quant parameter grid, and the
// F32KernelSet fixture (a kernel set against the reference). Included by the test_kernel*.cpp
// files.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <new>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "lowbit/kernels.h"

namespace lowbit {
namespace kernels {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kMaxFloat = std::numeric_limits<float>::max();
constexpr float kMinNormal = std::numeric_limits<float>::min();
constexpr float kMinDenormal = std::numeric_limits<float>::denorm_min();

inline uint32_t bits_of(float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  return u;
}
inline uint64_t bits_of(double v) {
  uint64_t u;
  std::memcpy(&u, &v, sizeof u);
  return u;
}
inline float float_from_bits(uint32_t u) {
  float v;
  std::memcpy(&v, &u, sizeof v);
  return v;
}

// Quiet NaNs of both signs and with a payload, and a signalling NaN: their payloads are output too.
const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kNegNaN = float_from_bits(0xffc00000u);
const float kPayloadNaN = float_from_bits(0x7fc12345u);
const float kSignallingNaN = float_from_bits(0x7f800001u);

// Values printed with their bit pattern, since -0.0 and NaN payloads are what such tests catch.
inline std::string show(float v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g (0x%08x)", static_cast<double>(v), bits_of(v));
  return buf;
}
inline std::string show(double v) {
  char buf[80];
  std::snprintf(buf, sizeof buf, "%.17g (0x%016llx)", v,
                static_cast<unsigned long long>(bits_of(v)));
  return buf;
}

// Compares n floats by bit pattern. x (optional) is the input shown at the first mismatch; with
// channels > 0 the index is also given as (row, channel).
inline ::testing::AssertionResult BitwiseEqual(const float* want, const float* got, int64_t n,
                                               const float* x = nullptr, int64_t channels = 0) {
  int64_t first = -1, count = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (bits_of(want[i]) != bits_of(got[i])) {
      if (first < 0) first = i;
      ++count;
    }
  }
  if (count == 0) return ::testing::AssertionSuccess();
  auto r = ::testing::AssertionFailure();
  r << count << " of " << n << " elements differ; first at index " << first;
  if (channels > 0) r << " (row " << first / channels << ", channel " << first % channels << ")";
  if (x != nullptr) r << ", input " << show(x[first]);
  r << ": ref " << show(want[first]) << ", got " << show(got[first]);
  return r;
}

// For sums: bitwise, except that any NaN matches any NaN. Where two different NaNs meet in one
// addition IEEE 754 leaves the payload of the result open and the compiler may commute a + b: the
// same source line gives one payload built with -mavx512f and the other without, so the reference
// itself has no fixed payload there. Element-wise outputs have one NaN source and stay strict.
inline ::testing::AssertionResult SameSum(double want, double got) {
  if (bits_of(want) == bits_of(got) || (std::isnan(want) && std::isnan(got))) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "ref " << show(want) << ", got " << show(got);
}
inline ::testing::AssertionResult SameSums(const float* want, const float* got, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (bits_of(want[i]) != bits_of(got[i]) && !(std::isnan(want[i]) && std::isnan(got[i]))) {
      return ::testing::AssertionFailure() << "first difference at index " << i << ": ref "
                                           << show(want[i]) << ", got " << show(got[i]);
    }
  }
  return ::testing::AssertionSuccess();
}

// Sizes around both vector widths (8 and 16 floats) and the 2-vector unrolled loops; large ones.
inline std::vector<int64_t> sizes() {
  std::set<int64_t> s{0, 31, 32, 33, 1000, 65537};
  for (int64_t w : {8, 16}) {
    for (int64_t n : {int64_t{1}, w - 1, w, w + 1, 2 * w - 1, 2 * w, 2 * w + 1}) s.insert(n);
  }
  return {s.begin(), s.end()};
}

const int64_t kChannelCounts[] = {1, 3, 7, 8, 9, 15, 16, 17, 33, 64};
const int64_t kRowCounts[] = {0, 1, 2, 5, 31, 200};

// Several trials on small sizes so that each special value lands on many lanes and in the tails;
// one on the largest, which only adds the long main loop (and would slow the sanitizer build).
inline int trials_for(int64_t elements) { return elements <= 64 ? 6 : (elements <= 4096 ? 2 : 1); }

// Values that sit on a branch of some kernel, shared by all tests.
inline std::vector<float> common_specials() {
  std::vector<float> s{
      0.0f, -0.0f, 1.0f, -1.0f, 0.5f, -0.5f, std::numeric_limits<float>::epsilon()};
  for (float v : {kInf, -kInf, kMaxFloat, -kMaxFloat}) s.push_back(v);
  for (float v : {kNaN, kNegNaN, kPayloadNaN, kSignallingNaN}) s.push_back(v);
  for (float v : {kMinDenormal, kMinNormal / 2, kMinNormal}) {
    s.push_back(v);
    s.push_back(-v);
  }
  return s;
}

// Incoming gradients: the same without the signalling NaN. GCC assumes no signalling NaNs unless
// given -fsignaling-nans, so it folds the reference's g * 1 into g and passes a signalling g on
// unquieted at -O2 but quieted at -O0: the reference has no fixed answer there.
inline std::vector<float> gradient_specials() {
  std::vector<float> s = common_specials();
  s.erase(std::remove_if(s.begin(), s.end(),
                         [](float v) { return bits_of(v) == bits_of(kSignallingNaN); }),
          s.end());
  return s;
}

// v and its two neighbouring floats.
inline void add_with_neighbours(std::vector<float>* out, float v) {
  out->push_back(v);
  out->push_back(std::nextafter(v, kInf));
  out->push_back(std::nextafter(v, -kInf));
}

// Heap blocks aligned to 64 bytes (a cache line, the widest vector): std::vector's own are only
// 16-byte aligned, and the _nt sets' streaming stores need their vector's alignment.
template <class T>
struct Aligned64 {
  using value_type = T;
  Aligned64() = default;
  template <class U>
  Aligned64(const Aligned64<U>&) {}  // NOLINT: implicit, as allocators rebind
  T* allocate(size_t n) {
    return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64)));
  }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t(64)); }
  bool operator==(const Aligned64&) const { return true; }
  bool operator!=(const Aligned64&) const { return false; }
};

// A float array whose last element ends its heap block (AddressSanitizer sees any access past n),
// starting at the block's 64-byte aligned start, or one float past it when misaligned.
class Array {
 public:
  Array(int64_t n, bool misaligned, float fill)
      : offset_(misaligned ? 1 : 0), v_(static_cast<size_t>(n) + offset_, fill) {}
  float* data() { return v_.data() + offset_; }
  const float* data() const { return v_.data() + offset_; }
  float& operator[](int64_t i) { return data()[i]; }

 private:
  size_t offset_;
  std::vector<float, Aligned64<float>> v_;
};

// Random values of several magnitudes with special values mixed in. Trial 1 lays the specials out
// cyclically (every one on every lane over the sizes); the others mix them in at random spots.
class InputMaker {
 public:
  explicit InputMaker(uint32_t seed) : rng_(seed) {}

  float random_value() {
    static const float kMagnitudes[] = {1e-6f, 0.01f, 0.3f, 1.0f, 3.0f, 7.0f, 100.0f, 1e5f};
    const float m = kMagnitudes[rng_() % (sizeof kMagnitudes / sizeof kMagnitudes[0])];
    return std::uniform_real_distribution<float>(-m, m)(rng_);
  }

  float pick(const std::vector<float>& specials, int trial, int64_t i) {
    if (trial == 1) return specials[static_cast<size_t>(i) % specials.size()];
    if (rng_() % 4 == 0) return specials[rng_() % specials.size()];
    return random_value();
  }

  Array flat(int64_t n, const std::vector<float>& specials, int trial) {
    Array a(n, trial % 2 == 1, 0.0f);
    for (int64_t i = 0; i < n; ++i) a[i] = pick(specials, trial, i);
    return a;
  }

  // specials[c] are the special values of channel c.
  Array per_channel(int64_t rows, int64_t channels, const std::vector<std::vector<float>>& specials,
                    int trial) {
    Array a(rows * channels, trial % 2 == 1, 0.0f);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < channels; ++c) {
        a[r * channels + c] = pick(specials[static_cast<size_t>(c)], trial, r + c);
      }
    }
    return a;
  }

  std::mt19937& rng() { return rng_; }

 private:
  std::mt19937 rng_;
};

// Outputs start as two different NaN patterns so that an element one kernel skips cannot match.
const float kRefFill = float_from_bits(0x7fa5a5a5u);
const float kGotFill = float_from_bits(0x7fc0deadu);

// ---- fake quant parameters ----------------------------------------------------------------------

struct NamedParams {
  FakeQuantParams<float> p;
  std::string name;
};

inline std::vector<NamedParams> fake_quant_params() {
  struct Range {
    float min, max;
  };
  // [0.1, 0.5] clips the zero point to qmin and [-3, -1] to qmax.
  const Range ranges[] = {{-6.0f, 6.0f}, {-1.0f, 1.0f}, {0.0f, 1.0f},
                          {-0.3f, 0.7f}, {0.1f, 0.5f},  {-3.0f, -1.0f}};
  std::vector<NamedParams> out;
  for (const Range& r : ranges) {
    for (int bits : {2, 4, 8, 16}) {
      for (bool narrow : {false, true}) {
        out.push_back({nudge<float>(r.min, r.max, bits, narrow),
                       "[" + std::to_string(r.min) + ", " + std::to_string(r.max) + "] " +
                           std::to_string(bits) + " bits" + (narrow ? " narrow" : "")});
      }
    }
  }
  out.push_back({nudge<float>(0.0f, 0.0f, 8, false), "degenerate"});
  return out;
}

inline const char* rounding_name(FakeQuantRounding r) {
  return r == FakeQuantRounding::kMulInvScale ? "mul inv_scale" : "div scale";
}

// The nudged ends and their neighbours, grid points, and ties x = nudged_min + (k + 0.5) * scale
// (in float and rounded from double) with neighbours, for k at both ends, near zero and at random.
inline std::vector<float> fake_quant_specials(const FakeQuantParams<float>& p, std::mt19937& rng) {
  std::vector<float> s = common_specials();
  for (float v : {p.nudged_min, p.nudged_max, -p.nudged_min, -p.nudged_max, p.scale, -p.scale}) {
    add_with_neighbours(&s, v);
  }
  const int64_t steps =
      p.degenerate ? 0 : std::llround((p.nudged_max - p.nudged_min) * p.inv_scale);
  std::vector<int64_t> ks{-2, -1, 0, 1, 2, steps - 2, steps - 1, steps, steps + 1};
  const int64_t qz = static_cast<int64_t>(p.quant_zero);
  for (int64_t k : {qz - 2, qz - 1, qz, qz + 1}) ks.push_back(k);
  for (int i = 0; i < 8 && steps > 0; ++i) ks.push_back(static_cast<int64_t>(rng() % steps));
  for (int64_t k : ks) {
    const float kf = static_cast<float>(k);
    add_with_neighbours(&s, p.nudged_min + (kf + 0.5f) * p.scale);
    s.push_back(p.nudged_min + kf * p.scale);
    add_with_neighbours(&s, static_cast<float>(static_cast<double>(p.nudged_min) +
                                               (static_cast<double>(k) + 0.5) * p.scale));
  }
  return s;
}

// ---- every kernel set against the reference -----------------------------------------------------

class F32KernelSet : public ::testing::TestWithParam<const F32Kernels*> {
 protected:
  static const F32Kernels& ref() { return *supported_f32_kernels().front(); }
  static const F32Kernels& k() { return *GetParam(); }

  // Runs a one-output flat kernel through ref and the set under test over every size and trial.
  // run(kernels, x, g, y, n); g is a second random input for the gradient kernels.
  void compare_flat(uint32_t seed, const std::vector<float>& specials,
                    const std::function<void(const F32Kernels&, const float*, const float*, float*,
                                             int64_t)>& run) {
    InputMaker in(seed);
    const std::vector<float> g_specials = gradient_specials();
    for (int64_t n : sizes()) {
      for (int trial = 0; trial < trials_for(n); ++trial) {
        const Array x = in.flat(n, specials, trial);
        const Array g = in.flat(n, g_specials, trial == 1 ? 0 : trial);
        Array want(n, trial % 2 == 1, kRefFill), got(n, trial % 2 == 1, kGotFill);
        run(ref(), x.data(), g.data(), want.data(), n);
        run(k(), x.data(), g.data(), got.data(), n);
        EXPECT_TRUE(BitwiseEqual(want.data(), got.data(), n, x.data()))
            << "n = " << n << ", trial " << trial;
        if (HasFailure()) return;  // one report per case; the rest would repeat it
      }
    }
  }
};

}  // namespace
}  // namespace kernels
}  // namespace lowbit
