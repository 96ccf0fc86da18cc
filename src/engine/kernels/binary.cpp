// Bit packing, the scalar binary convolution and the dispatch list.
#define LOWBIT_BINARY_ISA scalar
#include <algorithm>

#include "binary_body.h"
#include "dispatch.h"

namespace lowbit {
namespace engine {
namespace binary {

namespace scalar {
void signs(const float* x, int64_t c, int64_t h, int64_t w, Minus minus, uint64_t* out) {
  LOWBIT_BINARY_SIGNS_BODY(x, c, h, w, minus, out)
}
}  // namespace scalar

#if defined(__x86_64__)
namespace popcnt {
void conv_popcnt(const uint64_t*, const uint64_t*, const float*, const float*, const ConvShape&,
                 float*);
}
namespace avx2 {
void conv(const uint64_t*, const uint64_t*, const float*, const float*, const ConvShape&, float*);
void signs(const float*, int64_t, int64_t, int64_t, Minus, uint64_t*);
}  // namespace avx2
namespace avx512 {
std::vector<uint64_t> pack(const float*, int64_t, int64_t, int64_t, int64_t);
void conv(const uint64_t*, const uint64_t*, const float*, const float*, const ConvShape&, float*);
void signs(const float*, int64_t, int64_t, int64_t, Minus, uint64_t*);
void conv_bits(const uint64_t*, const uint64_t*, const int32_t*, const uint8_t*, const ConvShape&,
               uint64_t*);
}  // namespace avx512
#endif

void pack_chw(const float* x, int64_t c, int64_t h, int64_t w, uint64_t* out) {
  pack_chw_by(x, c, h, w, out, [](float v) { return v < 0; });
}

std::vector<uint64_t> pack_kernel(const float* w, int64_t m, int64_t c, int64_t kh, int64_t kw) {
  const int64_t cw = words(c);
  std::vector<uint64_t> out(m * kh * kw * cw, 0);
  for (int64_t o = 0; o < m; ++o)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t i = 0; i < kh; ++i)
        for (int64_t j = 0; j < kw; ++j) {
          const bool negative = w[((o * c + ch) * kh + i) * kw + j] < 0;
          out[((o * kh + i) * kw + j) * cw + (ch >> 6)] |= static_cast<uint64_t>(negative)
                                                           << (ch & 63);
        }
  return out;
}

std::vector<uint64_t> pack_interleaved(const float* w, int64_t m, int64_t c, int64_t kh, int64_t kw,
                                       int64_t lanes) {
  const int64_t cw = words(c), mp = (m + lanes - 1) / lanes * lanes;
  std::vector<uint64_t> out(kh * kw * cw * mp, 0);
  for (int64_t o = 0; o < m; ++o)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t i = 0; i < kh; ++i)
        for (int64_t j = 0; j < kw; ++j) {
          const bool negative = w[((o * c + ch) * kh + i) * kw + j] < 0;
          out[((i * kw + j) * cw + (ch >> 6)) * mp + o] |= static_cast<uint64_t>(negative)
                                                           << (ch & 63);
        }
  return out;
}

std::vector<uint64_t> pack_blocked(const float* w, int64_t m, int64_t c, int64_t kh, int64_t kw,
                                   int64_t lanes) {
  const int64_t cw = words(c), mp = (m + lanes - 1) / lanes * lanes, window = kh * kw * cw;
  std::vector<uint64_t> out(window * mp, 0);
  for (int64_t o = 0; o < m; ++o)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t i = 0; i < kh; ++i)
        for (int64_t j = 0; j < kw; ++j) {
          const bool negative = w[((o * c + ch) * kh + i) * kw + j] < 0;
          const int64_t e = (i * kw + j) * cw + (ch >> 6);
          out[((o / lanes) * window + e) * lanes + o % lanes] |= static_cast<uint64_t>(negative)
                                                                 << (ch & 63);
        }
  return out;
}

namespace {

// conv_bits for kernels without their own: conv's float sums (scale 1, bias 0: exact), compared.
template <ConvFn conv>
void bits_from_sums(const uint64_t* x, const uint64_t* w, const int32_t* t, const uint8_t* below,
                    const ConvShape& s, uint64_t* out) {
  const int64_t plane = s.oh * s.ow, mw = words(s.m);
  thread_local std::vector<float> sums, one, zero;
  sums.resize(s.m * plane);
  one.assign(s.m, 1.0f);
  zero.assign(s.m, 0.0f);
  conv(x, w, one.data(), zero.data(), s, sums.data());
  std::fill(out, out + mw * plane, uint64_t{0});
  for (int64_t o = 0; o < s.m; ++o) {
    const float* so = sums.data() + o * plane;
    const float to = static_cast<float>(t[o]);
    const uint64_t bit = uint64_t{1} << (o & 63);
    for (int64_t p = 0; p < plane; ++p) {
      if (below[o] ? so[p] < to : so[p] > to) out[p * mw + (o >> 6)] |= bit;
    }
  }
}

}  // namespace

const std::vector<Kernels>& all() {
  static const std::vector<Kernels> list = {
    {"scalar", [] { return true; }, &pack_kernel, &scalar::signs, &scalar::conv,
     &bits_from_sums<&scalar::conv>},
#if defined(__x86_64__)
    {"popcnt", [] { return __builtin_cpu_supports("popcnt") != 0; }, &pack_kernel, &scalar::signs,
     &popcnt::conv_popcnt, &bits_from_sums<&popcnt::conv_popcnt>},
    {"avx2", [] { return __builtin_cpu_supports("avx2") != 0; },
     [](const float* w, int64_t m, int64_t c, int64_t kh, int64_t kw) {
       return pack_interleaved(w, m, c, kh, kw, 4);
     },
     &avx2::signs, &avx2::conv, &bits_from_sums<&avx2::conv>},
    {"avx512",
     [] {
       return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
              __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vpopcntdq");
     },
     &avx512::pack, &avx512::signs, &avx512::conv, &avx512::conv_bits},
#endif
  };
  return list;
}

const Kernels& best() {
  static const Kernels& k = best_of(all());
  return k;
}

}  // namespace binary
}  // namespace engine
}  // namespace lowbit
