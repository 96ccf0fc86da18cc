// The input packer, the scalar 8-bit convolution (the reference) and the dispatch list.
#define LOWBIT_INT8_ISA scalar
#include <algorithm>

#include "dispatch.h"
#include "int8_body.h"

namespace lowbit {
namespace engine {
namespace int8 {

#if defined(__x86_64__)
namespace avx2 {
std::vector<int8_t> pack(const std::vector<int8_t>&, int64_t, const ConvShape&);
void conv(const uint8_t*, const int8_t*, int64_t, const ConvShape&, int32_t*);
void pack_input(const float*, float, int, const ConvShape&, uint8_t*);
void dequantize(const int32_t*, int64_t, int64_t, const int64_t*, int64_t, const double*,
                const float*, float*);
void pack_codes(const uint8_t*, int, const ConvShape&, uint8_t*);
void requantize(const int32_t*, int64_t, int64_t, const int64_t*, int64_t, const int32_t*,
                const int32_t*, const int32_t*, uint8_t*);
}  // namespace avx2
namespace avx512 {
std::vector<int8_t> pack(const std::vector<int8_t>&, int64_t, const ConvShape&);
void conv(const uint8_t*, const int8_t*, int64_t, const ConvShape&, int32_t*);
void pack_input(const float*, float, int, const ConvShape&, uint8_t*);
void dequantize(const int32_t*, int64_t, int64_t, const int64_t*, int64_t, const double*,
                const float*, float*);
void pack_codes(const uint8_t*, int, const ConvShape&, uint8_t*);
void requantize(const int32_t*, int64_t, int64_t, const int64_t*, int64_t, const int32_t*,
                const int32_t*, const int32_t*, uint8_t*);
}  // namespace avx512
#endif

void pack_input(const float* x, float scale, int zero, const ConvShape& s, uint8_t* out) {
  scalar::pack_input(x, scale, zero, s, out);
}

void dequantize(const int32_t* raw, int64_t m, int64_t plane, const int64_t* constant, int64_t zw,
                const double* scale, const float* bias, float* y) {
  scalar::dequantize(raw, m, plane, constant, zw, scale, bias, y);
}

void pack_codes(const uint8_t* codes, int zero, const ConvShape& s, uint8_t* out) {
  scalar::pack_codes(codes, zero, s, out);
}

void requantize(const int32_t* raw, int64_t m, int64_t plane, const int64_t* add, int64_t zw,
                const int32_t* shift, const int32_t* lo, const int32_t* hi, uint8_t* out) {
  scalar::requantize(raw, m, plane, add, zw, shift, lo, hi, out);
}

namespace scalar {

std::vector<int8_t> pack(const std::vector<int8_t>& codes, int64_t, const ConvShape&) {
  return codes;
}

void conv(const uint8_t* x, const int8_t* w, int64_t mc, const ConvShape& s, int32_t* raw) {
  const int64_t cp = padded_channels(s.c), wp = padded_cols(s), plane = s.oh * s.ow;
  for (int64_t o = 0; o < mc; ++o) {
    const int8_t* wo = w + o * s.kh * s.kw * cp;
    for (int64_t r = 0; r < s.oh; ++r) {
      for (int64_t q = 0; q < s.ow; ++q) {
        int32_t acc = 0;
        for (int64_t i = 0; i < s.kh; ++i) {
          for (int64_t j = 0; j < s.kw; ++j) {
            const uint8_t* xt =
                x + ((r * s.stride_h + i * s.dil_h) * wp + q * s.stride_w + j * s.dil_w) * cp;
            const int8_t* wt = wo + (i * s.kw + j) * cp;
            for (int64_t ch = 0; ch < cp; ++ch) acc += int32_t{xt[ch]} * int32_t{wt[ch]};
          }
        }
        raw[o * plane + r * s.ow + q] = acc;
      }
    }
  }
}

}  // namespace scalar

const std::vector<Kernels>& all() {
  static const std::vector<Kernels> list = {
    {"scalar", [] { return true; }, &scalar::pack, &scalar::conv, &pack_input, &dequantize,
     &pack_codes, &requantize},
#if defined(__x86_64__)
    {"avx2", [] { return __builtin_cpu_supports("avx2") != 0; }, &avx2::pack, &avx2::conv,
     &avx2::pack_input, &avx2::dequantize, &avx2::pack_codes, &avx2::requantize},
    {"avx512_vnni",
     [] {
       return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
              __builtin_cpu_supports("avx512vnni");
     },
     &avx512::pack, &avx512::conv, &avx512::pack_input, &avx512::dequantize, &avx512::pack_codes,
     &avx512::requantize},
#endif
  };
  return list;
}

const Kernels& best() {
  static const Kernels& k = best_of(all());
  return k;
}

}  // namespace int8
}  // namespace engine
}  // namespace lowbit
