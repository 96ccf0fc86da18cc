// Plane packing, the scalar bit-plane sums (the reference) and the dispatch list.
#include "lowbit/engine/kernels/planes.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "dispatch.h"

namespace lowbit {
namespace engine {
namespace planes {

#if defined(__x86_64__)
namespace avx2 {
void sums(const uint64_t*, int, const uint64_t*, const ConvShape&, int32_t*);
}  // namespace avx2
namespace avx512 {
void sums(const uint64_t*, int, const uint64_t*, const ConvShape&, int32_t*);
}  // namespace avx512
#endif

namespace {

// Eight pixels' words at a time in registers (as binary::pack_chw), code(e) of element e.
template <class Code>
void pack(int bits, int64_t c, int64_t h, int64_t w, uint64_t* out, Code&& code) {
  const int64_t cw = binary::words(c), plane = h * w;
  constexpr int64_t kBlock = 8;
  for (int64_t p0 = 0; p0 < plane; p0 += kBlock) {
    const int64_t n = std::min(kBlock, plane - p0);
    for (int64_t k = 0; k < cw; ++k) {
      uint64_t acc[kMaxBits][kBlock] = {};
      const int64_t channels = std::min<int64_t>(64, c - 64 * k);
      for (int64_t b = 0; b < channels; ++b) {
        const int64_t e0 = (64 * k + b) * plane + p0;
        for (int64_t t = 0; t < n; ++t) {
          const uint64_t u = code(e0 + t);
          for (int bit = 0; bit < bits; ++bit) acc[bit][t] |= ((u >> bit) & 1u) << b;
        }
      }
      for (int64_t t = 0; t < n; ++t)
        for (int bit = 0; bit < bits; ++bit) out[((p0 + t) * bits + bit) * cw + k] = acc[bit][t];
    }
  }
}

void scalar_sums(const uint64_t* x, int bits, const uint64_t* w, const ConvShape& s, int32_t* n) {
  const int64_t cw = binary::words(s.c), plane = s.oh * s.ow;
  for (int64_t o = 0; o < s.m; ++o) {
    const uint64_t* wo = w + o * s.kh * s.kw * cw;
    for (int64_t r = 0; r < s.oh; ++r) {
      for (int64_t q = 0; q < s.ow; ++q) {
        int64_t ones = 0, negative = 0;  // sum_k 2^k popcount(u_k), and of (u_k AND w)
        binary::for_each_tap_inside(s, r, q, [&](int64_t yy, int64_t xx, int64_t t) {
          const uint64_t* wp = wo + t * cw;
          for (int k = 0; k < bits; ++k) {
            const uint64_t* xp = x + ((yy * s.w + xx) * bits + k) * cw;
            for (int64_t e = 0; e < cw; ++e) {
              ones += static_cast<int64_t>(__builtin_popcountll(xp[e])) << k;
              negative += static_cast<int64_t>(__builtin_popcountll(xp[e] & wp[e])) << k;
            }
          }
        });
        n[o * plane + r * s.ow + q] = static_cast<int32_t>(ones - 2 * negative);
      }
    }
  }
}

}  // namespace

void pack_floats(const float* x, float scale, int bits, int64_t c, int64_t h, int64_t w,
                 uint64_t* out) {
  // As int8::pack_input codes them: the exact inverse for power-of-2 scales, else a division,
  // rounded to the nearest integer (the values lie within float32's rounding of one); the codes
  // first (a loop the compiler vectorizes), then their planes.
  const float inverse = 1.0f / scale, hi = static_cast<float>((1 << bits) - 1);
  const bool exact_inverse = inverse * scale == 1.0f && std::isfinite(inverse);
  const int64_t n = c * h * w;
  thread_local std::vector<uint8_t> codes;
  codes.resize(n);
  for (int64_t e = 0; e < n; ++e) {
    float v = exact_inverse ? x[e] * inverse : x[e] / scale;
    v = v > hi ? hi : (v >= 0 ? v : 0.0f);  // NaN: 0
    codes[e] = static_cast<uint8_t>((v + 12582912.0f) - 12582912.0f);
  }
  pack_codes(codes.data(), bits, c, h, w, out);
}

void pack_codes(const uint8_t* codes, int bits, int64_t c, int64_t h, int64_t w, uint64_t* out) {
  pack(bits, c, h, w, out, [&](int64_t e) { return static_cast<unsigned>(codes[e]); });
}

const std::vector<Kernels>& all() {
  static const std::vector<Kernels> list = {
    {"scalar", [] { return true; }, &binary::pack_kernel, &scalar_sums},
#if defined(__x86_64__)
    {"avx2", [] { return __builtin_cpu_supports("avx2") != 0; },
     [](const float* w, int64_t m, int64_t c, int64_t kh, int64_t kw) {
       return binary::pack_interleaved(w, m, c, kh, kw, 4);
     },
     &avx2::sums},
    {"avx512",
     [] { return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq"); },
     [](const float* w, int64_t m, int64_t c, int64_t kh, int64_t kw) {
       return binary::pack_interleaved(w, m, c, kh, kw, 8);
     },
     &avx512::sums},
#endif
  };
  return list;
}

const Kernels& best() {
  static const Kernels& k = best_of(all());
  return k;
}

}  // namespace planes
}  // namespace engine
}  // namespace lowbit
