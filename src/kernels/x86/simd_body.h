// The float32 SIMD kernels written once over a vector traits class V; included by avx2.cpp and
// avx512.cpp inside an anonymous namespace, each compiled with its own instruction-set flags.
// Every vector step performs the same IEEE operations, in the same order, as the scalar formula in
// lowbit/detail/quant_math.h, and heads and tails use that formula: results equal the reference bit
// for bit. kS ("streaming") builds the variant that writes its float outputs with non-temporal
// stores, for outputs too large to stay in cache (see docs/design.md).
// The includer includes <algorithm>, <vector> and lowbit/kernels.h first (this file is nested).

#include "../dorefa_steps.h"
#include "../reduce_body.h"

using lowbit::detail::FakeQuantParams;
using lowbit::kernels::FakeQuantRounding;
using lowbit::kernels::Interval;
using lowbit::kernels::kSumLanes;
namespace detail = lowbit::detail;

// ---- stores -------------------------------------------------------------------------------------

// Stores one vector of outputs; with kS a non-temporal store where p is aligned for one.
template <class V, bool kS>
inline void put(float* p, typename V::reg v) {
  if (kS && (reinterpret_cast<uintptr_t>(p) & (sizeof(float) * V::W - 1)) == 0) {
    V::stream(p, v);
  } else {
    V::store(p, v);
  }
}

// How many elements to do one by one before y + i is aligned for non-temporal stores (0 without
// kS).
template <class V, bool kS>
inline int64_t aligning_head(const float* y, int64_t n) {
  if (!kS) return 0;
  const auto misaligned = static_cast<int64_t>((reinterpret_cast<uintptr_t>(y) / sizeof(float)) %
                                               static_cast<uintptr_t>(V::W));
  return std::min<int64_t>(n, misaligned == 0 ? 0 : V::W - misaligned);
}

// Non-temporal stores are weakly ordered: fence them before another thread may read the output.
template <class V, bool kS>
inline void finish() {
  if (kS) V::fence();
}

// y[i] for i in [0, n): vec(i) gives the vector of outputs at i, scalar(i) writes element i.
template <class V, bool kS, class Vec, class Scalar>
inline void map_flat(float* y, int64_t n, Vec&& vec, Scalar&& scalar) {
  int64_t i = 0;
  for (const int64_t head = aligning_head<V, kS>(y, n); i < head; ++i) scalar(i);
  for (; i + V::W <= n; i += V::W) put<V, kS>(y + i, vec(i));
  for (; i < n; ++i) scalar(i);
  finish<V, kS>();
}

// map_flat for the forwards that also write packed window codes: vectors from element 0, where the
// codes' groups start (no scalar head to align y: non-temporal stores then need y itself aligned,
// as the operators' outputs are), then the scalar tail. Returns where the tail began (a multiple
// of V::W).
template <class V, bool kS, class Vec, class Scalar>
inline int64_t map_from_start(float* y, int64_t n, Vec&& vec, Scalar&& scalar) {
  int64_t i = 0;
  for (; i + V::W <= n; i += V::W) put<V, kS>(y + i, vec(i));
  const int64_t tail = i;
  for (; i < n; ++i) scalar(i);
  finish<V, kS>();
  return tail;
}

// ---- element math in vectors --------------------------------------------------------------------

template <class V>
inline typename V::reg clamp_tf(typename V::reg x, typename V::reg lo, typename V::reg hi) {
  // V::min(a, b) is (a < b) ? a : b and V::max(a, b) is (a > b) ? a : b, like the x86 instructions.
  return V::max(lo, V::min(hi, x));
}

template <class V, bool kDiv>
inline typename V::reg fake_quant_vec(typename V::reg x, typename V::reg nmin, typename V::reg nmax,
                                      typename V::reg scale, typename V::reg inv_scale,
                                      typename V::reg qz) {
  const auto shifted = V::sub(clamp_tf<V>(x, nmin, nmax), nmin);
  const auto t = kDiv ? V::div(shifted, scale) : V::mul(shifted, inv_scale);
  return V::mul(V::floor(V::add(V::sub(t, qz), V::set1(0.5f))), scale);
}

// sign0(x) * s, NaN through: select(x >= 0, s, select(x < 0, -s, x)).
template <class V>
inline typename V::reg sign_vec(typename V::reg x, typename V::reg s, typename V::reg neg_s) {
  return V::select(V::le(V::zero(), x), s, V::select(V::lt(x, V::zero()), neg_s, x));
}

template <class V>
inline typename V::reg tfsign_vec(typename V::reg x) {
  const auto z = V::zero();
  // +1, -1, 0, or x itself (NaN).
  return V::select(V::lt(z, x), V::set1(1.0f),
                   V::select(V::lt(x, z), V::set1(-1.0f), V::select(V::eq(x, z), z, x)));
}

#include "simd_codes.h"

// ---- fake quant ---------------------------------------------------------------------------------

// Per tensor; with a code array it also writes the packed window codes of [lo, hi].
template <class V, bool kS, bool kDiv>
void fake_quant_flat(const float* x, float* y, uint8_t* code, int64_t n,
                     const FakeQuantParams<float>& p, float lo, float hi) {
  const auto nmin = V::set1(p.nudged_min), nmax = V::set1(p.nudged_max);
  const auto scale = V::set1(p.scale), inv = V::set1(p.inv_scale), qz = V::set1(p.quant_zero);
  const auto scalar = [&](int64_t i) {
    y[i] = kDiv ? detail::fake_quant_div(x[i], p) : detail::fake_quant_mul(x[i], p);
  };
  if (code == nullptr) {
    map_flat<V, kS>(
        y, n,
        [&](int64_t i) {
          return fake_quant_vec<V, kDiv>(V::load(x + i), nmin, nmax, scale, inv, qz);
        },
        scalar);
    return;
  }
  const auto vlo = V::set1(lo), vhi = V::set1(hi);
  const int64_t tail = map_from_start<V, kS>(
      y, n,
      [&](int64_t i) {
        const auto v = V::load(x + i);
        store_packed_codes<V>(code, i, v, vlo, vhi);
        return fake_quant_vec<V, kDiv>(v, nmin, nmax, scale, inv, qz);
      },
      scalar);
  lowbit::kernels::pack_window_codes(x, tail, n, lo, hi, code);
}

template <class V, bool kS>
void fake_quant_packed(const float* x, float* y, uint8_t* code, int64_t n,
                       const FakeQuantParams<float>& p, FakeQuantRounding r, float lo, float hi) {
  if (r == FakeQuantRounding::kDivScale) {
    fake_quant_flat<V, kS, true>(x, y, code, n, p, lo, hi);
  } else {
    fake_quant_flat<V, kS, false>(x, y, code, n, p, lo, hi);
  }
}

template <class V, bool kS>
void fake_quant(const float* x, float* y, int64_t n, const FakeQuantParams<float>& p,
                FakeQuantRounding r) {
  fake_quant_packed<V, kS>(x, y, nullptr, n, p, r, 0.0f, 0.0f);
}

// The per-channel forward over rows with one rounding and one code sink (each its own loop: a
// run-time choice inside it cost registers and doubled the time in cache). `soa` holds the
// channels' nudged_min, nudged_max, scale, inv_scale and quant_zero, one array after the other, so
// that a vector of channels loads its parameters with plain loads.
template <class V, bool kS, bool kDiv, class Codes>
void fake_quant_rows(const float* x, float* y, int64_t rows, int64_t channels, const float* soa,
                     const FakeQuantParams<float>* p, const float* lo, const float* hi,
                     Codes codes) {
  const float* nmin = soa;
  const float* nmax = nmin + channels;
  const float* scale = nmax + channels;
  const float* inv = scale + channels;
  const float* qz = inv + channels;
  // One row at a time: blocks of rows sharing each parameter load were faster with hot caches but
  // 1.5-2x slower streaming from memory, where more interleaved streams defeat the prefetchers.
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t base = row * channels;
    int64_t c = 0;
    for (; c + V::W <= channels; c += V::W) {
      const int64_t k = base + c;
      const auto v = V::load(x + k);
      const auto a = V::load(nmin + c), b = V::load(nmax + c), s = V::load(scale + c);
      const auto iv = V::load(inv + c), q = V::load(qz + c);
      put<V, kS>(y + k, fake_quant_vec<V, kDiv>(v, a, b, s, iv, q));
      if constexpr (Codes::kWrites) codes.vec(k, v, V::load(lo + c), V::load(hi + c));
    }
    for (; c < channels; ++c) {
      const int64_t k = base + c;
      y[k] = kDiv ? detail::fake_quant_div(x[k], p[c]) : detail::fake_quant_mul(x[k], p[c]);
      if constexpr (Codes::kWrites) codes.one(detail::window_code(x[k], lo[c], hi[c]));
    }
  }
  codes.done(rows * channels);
  finish<V, kS>();
}

// Per channel; with a code array it also writes the packed window codes of [lo[c], hi[c]].
template <class V, bool kS>
void fake_quant_per_channel_packed(const float* x, float* y, uint8_t* code, int64_t rows,
                                   int64_t channels, const FakeQuantParams<float>* p,
                                   FakeQuantRounding r, const float* lo, const float* hi) {
  std::vector<float> soa(static_cast<size_t>(channels) * 5);
  for (int64_t c = 0; c < channels; ++c) {
    soa[static_cast<size_t>(c)] = p[c].nudged_min;
    soa[static_cast<size_t>(channels + c)] = p[c].nudged_max;
    soa[static_cast<size_t>(2 * channels + c)] = p[c].scale;
    soa[static_cast<size_t>(3 * channels + c)] = p[c].inv_scale;
    soa[static_cast<size_t>(4 * channels + c)] = p[c].quant_zero;
  }
  const auto run = [&](auto codes) {
    if (r == FakeQuantRounding::kDivScale) {
      fake_quant_rows<V, kS, true>(x, y, rows, channels, soa.data(), p, lo, hi, codes);
    } else {
      fake_quant_rows<V, kS, false>(x, y, rows, channels, soa.data(), p, lo, hi, codes);
    }
  };
  if (code == nullptr) {
    run(NoCodes<V>{});
  } else if (channels % V::W == 0) {
    run(InPlaceCodes<V>{code});
  } else {
    run(StreamedCodes<V>{PackedCodeWriter(code)});
  }
}

template <class V, bool kS>
void fake_quant_per_channel(const float* x, float* y, int64_t rows, int64_t channels,
                            const FakeQuantParams<float>* p, FakeQuantRounding r) {
  fake_quant_per_channel_packed<V, kS>(x, y, nullptr, rows, channels, p, r, nullptr, nullptr);
}

// ---- straight-through gradients with sums -------------------------------------------------------

// dx = g * 1[in], with the sums of g below and above into kSumLanes lanes (element i of the call in
// lane i % kSumLanes), the lanes then added in lane order in double. Masks come from x (InX) or
// from window codes (InCode); dx starts aligned whenever the caller's spans do.
// With dx_vec(j, g, in, lo, hi) and dx_scalar(i, in, lo, hi) giving dx instead of g * 1[in].
template <class V, bool kS, class Masks, class ScalarMasks, class DxVec, class DxScalar>
void grad_with_sums_dx(const float* g, float* dx, int64_t n, double* below, double* above,
                       Masks&& masks, ScalarMasks&& scalar_masks, DxVec&& dx_vec,
                       DxScalar&& dx_scalar) {
  constexpr int kRegs = kSumLanes / V::W;
  static_assert(kRegs * V::W == kSumLanes, "sum lanes must be a whole number of vectors");
  typename V::reg acc_below[kRegs], acc_above[kRegs];
  for (int k = 0; k < kRegs; ++k) acc_below[k] = acc_above[k] = V::zero();
  int64_t i = 0;
  for (; i + kSumLanes <= n; i += kSumLanes) {
    for (int k = 0; k < kRegs; ++k) {
      const int64_t j = i + k * V::W;
      const auto gv = V::load(g + j);
      typename V::mask in, lo, hi;
      masks(j, &in, &lo, &hi);
      put<V, kS>(dx + j, dx_vec(j, gv, in, lo, hi));
      acc_below[k] = V::add(acc_below[k], V::mul(gv, V::one_if(lo)));
      acc_above[k] = V::add(acc_above[k], V::mul(gv, V::one_if(hi)));
    }
  }
  float lanes_below[kSumLanes], lanes_above[kSumLanes];
  for (int k = 0; k < kRegs; ++k) {
    V::store(lanes_below + k * V::W, acc_below[k]);
    V::store(lanes_above + k * V::W, acc_above[k]);
  }
  for (int64_t j = 0; i < n; ++i, ++j) {
    bool in, lo, hi;
    scalar_masks(i, &in, &lo, &hi);
    dx[i] = dx_scalar(i, in, lo, hi);
    lanes_below[j] += g[i] * (lo ? 1.0f : 0.0f);
    lanes_above[j] += g[i] * (hi ? 1.0f : 0.0f);
  }
  for (int l = 0; l < kSumLanes; ++l) {
    if (below) *below += static_cast<double>(lanes_below[l]);
    if (above) *above += static_cast<double>(lanes_above[l]);
  }
  finish<V, kS>();
}

template <class V, bool kS, class Masks, class ScalarMasks>
void grad_with_sums(const float* g, float* dx, int64_t n, double* below, double* above,
                    Masks&& masks, ScalarMasks&& scalar_masks) {
  grad_with_sums_dx<V, kS>(
      g, dx, n, below, above, masks, scalar_masks,
      [](int64_t, typename V::reg gv, typename V::mask in, typename V::mask, typename V::mask) {
        return V::mul(gv, V::one_if(in));
      },
      [&](int64_t i, bool in, bool, bool) { return g[i] * (in ? 1.0f : 0.0f); });
}

template <class V, bool kS>
void masked_grad(const float* g, const float* x, float* dx, int64_t n, float lo, float hi,
                 Interval iv, double* below, double* above) {
  const bool open = iv == Interval::kOpen;
  const auto vlo = V::set1(lo), vhi = V::set1(hi);
  grad_with_sums<V, kS>(
      g, dx, n, below, above,
      [&](int64_t j, typename V::mask* in, typename V::mask* b, typename V::mask* a) {
        const auto xv = V::load(x + j);
        *in = open ? V::and_mask(V::lt(vlo, xv), V::lt(xv, vhi))
                   : V::and_mask(V::le(vlo, xv), V::le(xv, vhi));
        *b = V::lt(xv, vlo);
        *a = V::lt(vhi, xv);
      },
      [&](int64_t i, bool* in, bool* b, bool* a) {
        *in = open ? (lo < x[i] && x[i] < hi) : (lo <= x[i] && x[i] <= hi);
        *b = x[i] < lo;
        *a = x[i] > hi;
      });
}

template <class V, bool kS>
void packed_grad(const float* g, const uint8_t* code, float* dx, int64_t n, double* below,
                 double* above) {
  grad_with_sums<V, kS>(
      g, dx, n, below, above,
      [&](int64_t j, typename V::mask* in, typename V::mask* b, typename V::mask* a) {
        load_packed_masks<V>(code, j, in, b, a);
      },
      [&](int64_t i, bool* in, bool* b, bool* a) {
        const uint8_t c = lowbit::kernels::packed_code(code, i);
        *in = (c & detail::kCodeIn) != 0;
        *b = (c & detail::kCodeBelow) != 0;
        *a = (c & detail::kCodeAbove) != 0;
      });
}

// Per channel: each channel's sums accumulate over the rows in row order, as in the reference.
template <class V, bool kS, class Masks, class ScalarMasks>
void grad_with_sums_per_channel(const float* g, float* dx, int64_t rows, int64_t channels,
                                float* below, float* above, Masks&& masks,
                                ScalarMasks&& scalar_masks) {
  for (int64_t row = 0; row < rows; ++row) {  // one row at a time, as in the forward
    const int64_t base = row * channels;
    int64_t c = 0;
    for (; c + V::W <= channels; c += V::W) {
      const auto gv = V::load(g + base + c);
      typename V::mask in, lo, hi;
      masks(base, c, &in, &lo, &hi);
      put<V, kS>(dx + base + c, V::mul(gv, V::one_if(in)));
      V::store(below + c, V::add(V::load(below + c), V::mul(gv, V::one_if(lo))));
      V::store(above + c, V::add(V::load(above + c), V::mul(gv, V::one_if(hi))));
    }
    for (; c < channels; ++c) {
      const int64_t k = base + c;
      bool in, lo, hi;
      scalar_masks(k, c, &in, &lo, &hi);
      dx[k] = g[k] * (in ? 1.0f : 0.0f);
      below[c] += g[k] * (lo ? 1.0f : 0.0f);
      above[c] += g[k] * (hi ? 1.0f : 0.0f);
    }
  }
  finish<V, kS>();
}

template <class V, bool kS>
void masked_grad_per_channel(const float* g, const float* x, float* dx, int64_t rows,
                             int64_t channels, const float* lo, const float* hi, float* below,
                             float* above) {
  grad_with_sums_per_channel<V, kS>(
      g, dx, rows, channels, below, above,
      [&](int64_t base, int64_t c, typename V::mask* in, typename V::mask* b, typename V::mask* a) {
        const auto xv = V::load(x + base + c);
        const auto vlo = V::load(lo + c), vhi = V::load(hi + c);
        *in = V::and_mask(V::le(vlo, xv), V::le(xv, vhi));
        *b = V::lt(xv, vlo);
        *a = V::lt(vhi, xv);
      },
      [&](int64_t k, int64_t c, bool* in, bool* b, bool* a) {
        *in = lo[c] <= x[k] && x[k] <= hi[c];
        *b = x[k] < lo[c];
        *a = x[k] > hi[c];
      });
}

// With whole vectors per row the masks are read in place, as per tensor; else in element order
// through the reader: grad_with_sums_per_channel asks for every element's masks in that order (a
// row's vectors, then its scalar tail).
template <class V, bool kS>
void packed_grad_per_channel(const float* g, const uint8_t* code, float* dx, int64_t rows,
                             int64_t channels, float* below, float* above) {
  using M = typename V::mask;
  if (channels % V::W == 0) {
    grad_with_sums_per_channel<V, kS>(
        g, dx, rows, channels, below, above,
        [&](int64_t base, int64_t c, M* in, M* b, M* a) {
          load_packed_masks<V>(code, base + c, in, b, a);
        },
        [&](int64_t, int64_t, bool*, bool*, bool*) {});  // no scalar tail
    return;
  }
  PackedCodeReader codes(code);
  grad_with_sums_per_channel<V, kS>(
      g, dx, rows, channels, below, above,
      [&](int64_t, int64_t, M* in, M* b, M* a) {
        uint32_t p0, p1;
        codes.take(V::W, &p0, &p1);
        masks_from_planes<V>(p0, p1, in, b, a);
      },
      [&](int64_t, int64_t, bool* in, bool* b, bool* a) {
        uint32_t p0, p1;
        codes.take(1, &p0, &p1);
        *in = p0 != 0 && p1 == 0;
        *b = p1 != 0 && p0 == 0;
        *a = p0 != 0 && p1 != 0;
      });
}

// ---- sign-like and activation quantizers --------------------------------------------------------

template <class V, bool kS>
void sign_packed(const float* x, float* y, uint8_t* code, int64_t n, float scale, float lo,
                 float hi) {
  const auto s = V::set1(scale), ns = V::set1(-scale);
  const auto scalar = [&](int64_t i) { y[i] = detail::sign0_scaled(x[i], scale); };
  if (code == nullptr) {
    map_flat<V, kS>(
        y, n, [&](int64_t i) { return sign_vec<V>(V::load(x + i), s, ns); }, scalar);
    return;
  }
  const auto vlo = V::set1(lo), vhi = V::set1(hi);
  const int64_t tail = map_from_start<V, kS>(
      y, n,
      [&](int64_t i) {
        const auto v = V::load(x + i);
        store_packed_codes<V>(code, i, v, vlo, vhi);
        return sign_vec<V>(v, s, ns);
      },
      scalar);
  lowbit::kernels::pack_window_codes(x, tail, n, lo, hi, code);
}

template <class V, bool kS>
void sign(const float* x, float* y, int64_t n, float scale) {
  sign_packed<V, kS>(x, y, nullptr, n, scale, 0.0f, 0.0f);
}

template <class V, bool kS>
void sign_per_channel(const float* x, float* y, int64_t rows, int64_t channels,
                      const float* scale) {
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t base = row * channels;
    int64_t c = 0;
    for (; c + V::W <= channels; c += V::W) {
      const auto s = V::load(scale + c);
      put<V, kS>(y + base + c, sign_vec<V>(V::load(x + base + c), s, V::neg(s)));
    }
    for (; c < channels; ++c) y[base + c] = detail::sign0_scaled(x[base + c], scale[c]);
  }
  finish<V, kS>();
}

template <class V, bool kS>
void heaviside(const float* x, float* y, int64_t n) {
  const auto one = V::set1(1.0f), z = V::zero();
  map_flat<V, kS>(
      y, n,
      [&](int64_t i) {
        const auto v = V::load(x + i);
        return V::select(V::lt(z, v), one, V::select(V::le(v, z), z, v));
      },
      [&](int64_t i) { y[i] = detail::heaviside(x[i]); });
}

template <class V, bool kS>
void ternary(const float* x, float* y, int64_t n, float threshold) {
  const auto d = V::set1(threshold);
  map_flat<V, kS>(
      y, n,
      [&](int64_t i) {
        const auto v = V::load(x + i);
        return tfsign_vec<V>(V::add(tfsign_vec<V>(V::add(v, d)), tfsign_vec<V>(V::sub(v, d))));
      },
      [&](int64_t i) { y[i] = detail::ternary(x[i], threshold); });
}

template <class V, bool kS>
void dorefa_activations(const float* x, float* y, int64_t n, float levels) {
  const auto lv = V::set1(levels), z = V::zero(), one = V::set1(1.0f);
  map_flat<V, kS>(
      y, n,
      [&](int64_t i) {
        const auto c = clamp_tf<V>(V::load(x + i), z, one);
        return V::div(V::nearbyint(V::mul(c, lv)), lv);
      },
      [&](int64_t i) { y[i] = detail::dorefa_activations(x[i], levels); });
}

template <class V, bool kS>
void linear_mid_tread(const float* x, float* y, int64_t n, float levels, float max_value) {
  const auto lv = V::set1(levels), mv = V::set1(max_value), z = V::zero(), half = V::set1(0.5f);
  map_flat<V, kS>(
      y, n,
      [&](int64_t i) {
        const auto c = clamp_tf<V>(V::load(x + i), z, mv);
        const auto q = V::floor(V::add(V::mul(V::div(c, mv), lv), half));
        return V::mul(V::div(q, lv), mv);
      },
      [&](int64_t i) { y[i] = detail::linear_mid_tread(x[i], levels, max_value); });
}

// detail::exp_neg_poly, the same operations in vectors (the power of 2 by V::pow2). Its t = -a
// enters fused multiply-adds only, whose single rounding of the exact value makes fma(-a, b, c) =
// fnma(a, b, c) and fma(n, c, -a) = fms(n, c, a): one negation less.
template <class V>
inline typename V::reg exp_neg_vec(typename V::reg a) {
  const auto n = V::floor(V::fnma(a, V::set1(1.44269504f), V::set1(0.5f)));
  const auto r = V::fma(n, V::set1(2.12194440e-4f), V::fms(n, V::set1(-0.693359375f), a));
  auto p = V::set1(1.9875691500e-4f);
  p = V::fma(p, r, V::set1(1.3981999507e-3f));
  p = V::fma(p, r, V::set1(8.3334519073e-3f));
  p = V::fma(p, r, V::set1(4.1665795894e-2f));
  p = V::fma(p, r, V::set1(1.6666665459e-1f));
  p = V::fma(p, r, V::set1(5.0000001201e-1f));
  p = V::add(V::fma(p, V::mul(r, r), r), V::set1(1.0f));
  return V::mul(p, V::pow2(n));
}

// detail::tanh_poly's branches for a = |x| >= 2^-12, in vectors: that is |tanh_poly(x)|, since the
// odd polynomial's fma(p z, x, x) is fma(p z, a, a) with the sign of x. Below 2^-12, where
// tanh_poly gives x, this gives a exactly: |p z| < 2^-25.5, less than half an ulp of a relative to
// a, so the fused multiply-add rounds back to a (and +0 for x = -0). NaN lanes give some NaN.
// Where every lane is below 0.625 (weights mostly are) the exponential and its division are
// skipped; otherwise both branches, then a select. min(cap, b) is tanh_poly's cap < b ? cap : b,
// as V::min is.
template <class V>
inline typename V::reg tanh_abs_vec(typename V::reg x) {
  const auto z = V::mul(x, x), a = V::abs(x);
  auto p = V::set1(-5.70498872745e-3f);
  p = V::fma(p, z, V::set1(2.06390887954e-2f));
  p = V::fma(p, z, V::set1(-5.37397155531e-2f));
  p = V::fma(p, z, V::set1(1.33314422036e-1f));
  p = V::fma(p, z, V::set1(-3.33332819422e-1f));
  const auto small = V::fma(V::mul(p, z), a, a);
  const auto in_small = V::lt(a, V::set1(0.625f));
  if (V::bits(in_small) == (1u << V::W) - 1) return small;
  const auto one = V::set1(1.0f);
  const auto e = exp_neg_vec<V>(V::min(V::set1(detail::kExpNegMax), V::add(a, a)));
  const auto big = V::div(V::sub(one, e), V::add(one, e));
  return V::select(in_small, small, big);
}

// detail::tanh_poly: the sign of x put on tanh_abs_vec, x itself below 2^-12 and for NaN.
template <class V>
inline typename V::reg tanh_vec(typename V::reg x) {
  const auto ta = tanh_abs_vec<V>(x);
  const auto t = V::select(V::lt(V::abs(x), V::set1(0.000244140625f)), x,
                           V::select(V::lt(x, V::zero()), V::neg(ta), ta));
  return V::select(V::eq(x, x), t, x);
}

// max(|tanh(x)|) as k::ref::max_abs_tanh, as tanh(max(|x|)): tanh_poly is odd and non-decreasing
// (TanhPolyOddAndNonDecreasing; every float with LOWBIT_EXHAUSTIVE=1), so the largest |x| gives the
// largest |tanh(x)|; the maximum runs at memory speed and tanh runs once. A NaN element makes
// max_abs the default quiet NaN, which tanh_poly returns as it is: the reference's NaN.
template <class V, bool kS>
float max_abs_tanh(const float* x, int64_t n) {
  return detail::tanh_poly(max_abs_lanes<float>(x, n));
}

// With few output levels and a large call, by the thresholds of dorefa_steps.h: a compare and a
// select per step; NaN lanes give x + 0, the quiet NaN the formula's operations give. A vector
// with a lane outside [-x_max, x_max] (not from the operators, whose M is their input's) takes the
// formula.
template <class V, bool kS>
void dorefa_weights(const float* x, float* y, int64_t n, float levels, float max_abs_tanh) {
  const auto scalar = [&](int64_t i) { y[i] = detail::dorefa_weight(x[i], levels, max_abs_tanh); };
  const auto lv = V::set1(levels), two = V::set1(2.0f), one = V::set1(1.0f), half = V::set1(0.5f),
             m2 = V::set1(2.0f * max_abs_tanh);
  const bool zero = max_abs_tanh == 0.0f;
  const auto formula = [&](typename V::reg v) {
    const auto p = zero ? half : V::add(V::div(tanh_vec<V>(v), m2), half);
    return V::sub(V::div(V::mul(two, V::nearbyint(V::mul(p, lv))), lv), one);
  };
  const DorefaSteps steps =
      n >= kDorefaStepsFrom ? dorefa_steps(levels, max_abs_tanh) : DorefaSteps{};
  if (steps.count >= 0) {
    typename V::reg t[kMaxDorefaSteps], out[kMaxDorefaSteps + 1];
    for (int j = 0; j < steps.count; ++j) t[j] = V::set1(steps.threshold[j]);
    for (int j = 0; j <= steps.count; ++j) out[j] = V::set1(steps.output[j]);
    const auto hi = V::set1(steps.x_max), lo = V::set1(-steps.x_max);
    map_flat<V, kS>(
        y, n,
        [&](int64_t i) {
          const auto v = V::load(x + i);
          if (V::bits(V::lt(v, lo)) | V::bits(V::lt(hi, v))) return formula(v);
          auto r = out[0];
          for (int j = 0; j < steps.count; ++j) r = V::select(V::le(t[j], v), out[j + 1], r);
          return V::select(V::eq(v, v), r, V::add(v, V::zero()));
        },
        scalar);
    return;
  }
  map_flat<V, kS>(
      y, n, [&](int64_t i) { return formula(V::load(x + i)); }, scalar);
}

template <class V, bool kS>
void dorefa_weights_grad(const float* g, const float* x, float* dx, int64_t n, float max_abs_tanh) {
  const auto one = V::set1(1.0f), m = V::set1(max_abs_tanh), z = V::zero();
  const bool zero = max_abs_tanh == 0.0f;
  map_flat<V, kS>(
      dx, n,
      [&](int64_t i) {
        const auto gv = V::load(g + i);
        if (zero) return V::mul(gv, z);
        // t enters squared: |tanh_poly(x)| does (tanh_abs_vec), NaN lanes take x as tanh_poly.
        const auto xv = V::load(x + i);
        const auto t = V::select(V::eq(xv, xv), tanh_abs_vec<V>(xv), xv);
        return V::div(V::mul(gv, V::sub(one, V::mul(t, t))), m);
      },
      [&](int64_t i) { dx[i] = detail::dorefa_weight_grad(g[i], x[i], max_abs_tanh); });
}

template <class V, bool kS>
void swish_sign_grad(const float* g, const float* x, float* dx, int64_t n, float beta) {
  const auto vb = V::set1(beta), one = V::set1(1.0f), two = V::set1(2.0f);
  const auto cap = V::set1(detail::kExpNegMax);
  map_flat<V, kS>(
      dx, n,
      [&](int64_t i) {
        const auto xv = V::load(x + i), gv = V::load(g + i);
        const auto ab = V::abs(V::mul(vb, xv));
        // cap < |bx| ? cap : |bx| (V::min): a NaN lane stays NaN here, then gets g * x below.
        const auto a = V::min(cap, ab);
        const auto e = exp_neg_vec<V>(a);
        const auto r = V::div(one, V::add(one, e));
        const auto num = V::fnma(a, V::mul(V::sub(one, e), r), two);
        const auto d = V::mul(gv, V::mul(V::mul(vb, num), V::mul(V::mul(two, e), V::mul(r, r))));
        return V::select(V::eq(xv, xv), d, V::mul(gv, xv));
      },
      [&](int64_t i) { dx[i] = detail::swish_sign_grad(g[i], x[i], beta); });
}

template <class V, bool kS>
void approx_sign_grad(const float* g, const float* x, float* dx, int64_t n) {
  const auto one = V::set1(1.0f), two = V::set1(2.0f);
  map_flat<V, kS>(
      dx, n,
      [&](int64_t i) {
        const auto ax = V::abs(V::load(x + i));
        const auto f = V::select(V::le(ax, one), V::sub(two, V::mul(two, ax)), V::zero());
        return V::mul(V::load(g + i), f);
      },
      [&](int64_t i) { dx[i] = detail::approx_sign_grad(g[i], x[i]); });
}

// ---- Blueoil's TWN and TTQ, magnitude-aware sign's backward ------------------------------------

template <class V, bool kS>
void twn(const float* x, float* y, int64_t n, float threshold_abs, float a) {
  const auto d = V::set1(threshold_abs), va = V::set1(a), z = V::zero();
  map_flat<V, kS>(
      y, n,
      [&](int64_t i) {
        const auto v = V::load(x + i);
        // a * tfsign(x) beyond D, else 0; NaN goes through.
        return V::select(V::lt(d, V::abs(v)), V::mul(va, tfsign_vec<V>(v)),
                         V::select(V::eq(v, v), z, v));
      },
      [&](int64_t i) { y[i] = detail::twn_value(x[i], threshold_abs, a); });
}

template <class V, bool kS>
void ttq(const float* x, float* y, int64_t n, float positive, float negative, float threshold_abs) {
  const auto d = V::set1(threshold_abs), nd = V::set1(-threshold_abs);
  const auto p = V::set1(positive), m = V::set1(-negative), z = V::zero();
  map_flat<V, kS>(
      y, n,
      [&](int64_t i) {
        const auto v = V::load(x + i);
        return V::select(V::lt(d, v), p, V::select(V::lt(v, nd), m, V::select(V::eq(v, v), z, v)));
      },
      [&](int64_t i) { y[i] = detail::ttq_value(x[i], positive, negative, threshold_abs); });
}

// TTQ's gradient: dx as detail::ttq_grad; the sums of g above D into d_positive and below -D into
// d_negative, in the lanes of every gradient sum.
template <class V, bool kS>
void ttq_grad(const float* g, const float* x, float* dx, int64_t n, float positive, float negative,
              float threshold_abs, double* d_positive, double* d_negative) {
  const auto d = V::set1(threshold_abs), nd = V::set1(-threshold_abs);
  const auto p = V::set1(positive), m = V::set1(negative);
  grad_with_sums_dx<V, kS>(
      g, dx, n, d_negative, d_positive,
      [&](int64_t j, typename V::mask* in, typename V::mask* b, typename V::mask* a) {
        const auto xv = V::load(x + j);
        *b = V::lt(xv, nd);
        *a = V::lt(d, xv);
        *in = *a;  // unused
      },
      [&](int64_t i, bool* in, bool* b, bool* a) {
        *b = x[i] < -threshold_abs;
        *a = x[i] > threshold_abs;
        *in = *a;
      },
      [&](int64_t, typename V::reg gv, typename V::mask, typename V::mask b, typename V::mask a) {
        return V::select(a, V::mul(p, gv), V::select(b, V::mul(m, gv), gv));
      },
      [&](int64_t i, bool, bool, bool) {
        return detail::ttq_grad(g[i], x[i], positive, negative, threshold_abs);
      });
}

// dx[r, c] = (g * 1[-clip <= x <= clip]) * scale[c] over rows of `channels` (clipped false: g *
// scale[c] whatever x is): magnitude_aware_sign's backward, its scale per last-axis index.
template <class V, bool kS>
void clipped_grad_scaled_rows(const float* g, const float* x, float* dx, int64_t rows,
                              int64_t channels, bool clipped, float clip, const float* scale) {
  const auto hi = V::set1(clip), lo = V::set1(-clip), one = V::set1(1.0f);
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t base = row * channels;
    int64_t c = 0;
    for (; c + V::W <= channels; c += V::W) {
      const auto xv = V::load(x + base + c);
      const auto in = clipped ? V::one_if(V::and_mask(V::le(lo, xv), V::le(xv, hi))) : one;
      put<V, kS>(dx + base + c, V::mul(V::mul(V::load(g + base + c), in), V::load(scale + c)));
    }
    for (; c < channels; ++c) {
      const int64_t k = base + c;
      dx[k] = detail::clipped_grad_scaled(g[k], x[k], clipped, clip, scale[c]);
    }
  }
  finish<V, kS>();
}

template <class V, bool kS>
constexpr lowbit::kernels::F32Kernels make_kernel_set(const char* isa) {
  return lowbit::kernels::F32Kernels{isa,
                                     &fake_quant<V, kS>,
                                     &fake_quant_per_channel<V, kS>,
                                     &masked_grad<V, kS>,
                                     &masked_grad_per_channel<V, kS>,
                                     &sign<V, kS>,
                                     &sign_per_channel<V, kS>,
                                     &heaviside<V, kS>,
                                     &ternary<V, kS>,
                                     &dorefa_activations<V, kS>,
                                     &linear_mid_tread<V, kS>,
                                     &approx_sign_grad<V, kS>,
                                     &fake_quant_packed<V, kS>,
                                     &fake_quant_per_channel_packed<V, kS>,
                                     &sign_packed<V, kS>,
                                     &packed_grad<V, kS>,
                                     &packed_grad_per_channel<V, kS>,
                                     &sum_abs_lanes<float>,
                                     &sum_abs_rows<float>,
                                     &max_abs_lanes<float>,
                                     &sum_abs_above_lanes<float>,
                                     &twn<V, kS>,
                                     &ttq<V, kS>,
                                     &ttq_grad<V, kS>,
                                     &clipped_grad_scaled_rows<V, kS>,
                                     &swish_sign_grad<V, kS>,
                                     &max_abs_tanh<V, kS>,
                                     &dorefa_weights<V, kS>,
                                     &dorefa_weights_grad<V, kS>};
}
