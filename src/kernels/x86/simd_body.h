// The float32 SIMD kernels written once over a vector traits class V; included by avx2.cpp and
// avx512.cpp inside an anonymous namespace, each compiled with its own instruction-set flags.
// Every vector step performs the same IEEE operations, in the same order, as the scalar formula in
// lowbit/detail/quant_math.h, and tails use that formula: results equal the reference bit for bit.
// The includer includes <vector> and lowbit/kernels.h first (this file is textually nested).

using lowbit::detail::FakeQuantParams;
using lowbit::kernels::FakeQuantRounding;
using lowbit::kernels::Interval;
using lowbit::kernels::kSumLanes;
namespace detail = lowbit::detail;

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

template <class V, bool kDiv>
void fake_quant_impl(const float* x, float* y, int64_t n, const FakeQuantParams<float>& p) {
  const auto nmin = V::set1(p.nudged_min), nmax = V::set1(p.nudged_max);
  const auto scale = V::set1(p.scale), inv = V::set1(p.inv_scale), qz = V::set1(p.quant_zero);
  int64_t i = 0;
  for (; i + 2 * V::W <= n; i += 2 * V::W) {
    const auto a = fake_quant_vec<V, kDiv>(V::load(x + i), nmin, nmax, scale, inv, qz);
    const auto b = fake_quant_vec<V, kDiv>(V::load(x + i + V::W), nmin, nmax, scale, inv, qz);
    V::store(y + i, a);
    V::store(y + i + V::W, b);
  }
  for (; i + V::W <= n; i += V::W) {
    V::store(y + i, fake_quant_vec<V, kDiv>(V::load(x + i), nmin, nmax, scale, inv, qz));
  }
  for (; i < n; ++i) y[i] = kDiv ? detail::fake_quant_div(x[i], p) : detail::fake_quant_mul(x[i], p);
}

template <class V>
void fake_quant(const float* x, float* y, int64_t n, const FakeQuantParams<float>& p,
                FakeQuantRounding r) {
  if (r == FakeQuantRounding::kDivScale) {
    fake_quant_impl<V, true>(x, y, n, p);
  } else {
    fake_quant_impl<V, false>(x, y, n, p);
  }
}

template <class V>
inline void store_window_codes(uint8_t* code, typename V::reg x, typename V::reg lo,
                               typename V::reg hi) {
  V::store_codes(code, V::and_mask(V::le(lo, x), V::le(x, hi)), V::lt(x, lo), V::lt(hi, x));
}

// Per-channel fake quant; with kCoded it also writes the window codes for [lo[c], hi[c]].
template <class V, bool kCoded>
void fake_quant_per_channel_impl(const float* x, float* y, uint8_t* code, int64_t rows,
                                 int64_t channels, const FakeQuantParams<float>* p,
                                 FakeQuantRounding r, const float* lo, const float* hi) {
  const bool div = r == FakeQuantRounding::kDivScale;
  // Structure of arrays so that a vector of channels loads its parameters with plain loads.
  std::vector<float> soa(static_cast<size_t>(channels) * 5);
  float* nmin = soa.data();
  float* nmax = nmin + channels;
  float* scale = nmax + channels;
  float* inv = scale + channels;
  float* qz = inv + channels;
  for (int64_t c = 0; c < channels; ++c) {
    nmin[c] = p[c].nudged_min;
    nmax[c] = p[c].nudged_max;
    scale[c] = p[c].scale;
    inv[c] = p[c].inv_scale;
    qz[c] = p[c].quant_zero;
  }
  // Blocks of kRowBlock rows share each load of a channel vector's parameters.
  constexpr int64_t kRowBlock = 4;
  for (int64_t row0 = 0; row0 < rows; row0 += kRowBlock) {
    const int64_t nr = std::min(kRowBlock, rows - row0);
    int64_t c = 0;
    for (; c + V::W <= channels; c += V::W) {
      const auto a = V::load(nmin + c), b = V::load(nmax + c), s = V::load(scale + c);
      const auto iv = V::load(inv + c), q = V::load(qz + c);
      typename V::reg vlo = V::zero(), vhi = V::zero();
      if (kCoded) {
        vlo = V::load(lo + c);
        vhi = V::load(hi + c);
      }
      for (int64_t r = 0; r < nr; ++r) {
        const int64_t k = (row0 + r) * channels + c;
        const auto v = V::load(x + k);
        V::store(y + k, div ? fake_quant_vec<V, true>(v, a, b, s, iv, q)
                            : fake_quant_vec<V, false>(v, a, b, s, iv, q));
        if (kCoded) store_window_codes<V>(code + k, v, vlo, vhi);
      }
    }
    for (; c < channels; ++c) {
      for (int64_t r = 0; r < nr; ++r) {
        const int64_t k = (row0 + r) * channels + c;
        y[k] = div ? detail::fake_quant_div(x[k], p[c]) : detail::fake_quant_mul(x[k], p[c]);
        if (kCoded) code[k] = detail::window_code(x[k], lo[c], hi[c]);
      }
    }
  }
}

template <class V>
void fake_quant_per_channel(const float* x, float* y, int64_t rows, int64_t channels,
                            const FakeQuantParams<float>* p, FakeQuantRounding r) {
  fake_quant_per_channel_impl<V, false>(x, y, nullptr, rows, channels, p, r, nullptr, nullptr);
}

template <class V>
void masked_grad(const float* g, const float* x, float* dx, int64_t n, float lo, float hi,
                 Interval iv, double* below, double* above) {
  constexpr int kRegs = kSumLanes / V::W;
  static_assert(kRegs * V::W == kSumLanes, "sum lanes must be a whole number of vectors");
  const bool open = iv == Interval::kOpen;
  const auto vlo = V::set1(lo), vhi = V::set1(hi);
  typename V::reg acc_below[kRegs], acc_above[kRegs];
  for (int k = 0; k < kRegs; ++k) acc_below[k] = acc_above[k] = V::zero();
  int64_t i = 0;
  for (; i + kSumLanes <= n; i += kSumLanes) {
    for (int k = 0; k < kRegs; ++k) {
      const auto xv = V::load(x + i + k * V::W);
      const auto gv = V::load(g + i + k * V::W);
      const auto in = open ? V::and_mask(V::lt(vlo, xv), V::lt(xv, vhi))
                           : V::and_mask(V::le(vlo, xv), V::le(xv, vhi));
      V::store(dx + i + k * V::W, V::mul(gv, V::one_if(in)));
      acc_below[k] = V::add(acc_below[k], V::mul(gv, V::one_if(V::lt(xv, vlo))));
      acc_above[k] = V::add(acc_above[k], V::mul(gv, V::one_if(V::lt(vhi, xv))));
    }
  }
  float lanes_below[kSumLanes], lanes_above[kSumLanes];
  for (int k = 0; k < kRegs; ++k) {
    V::store(lanes_below + k * V::W, acc_below[k]);
    V::store(lanes_above + k * V::W, acc_above[k]);
  }
  for (int64_t j = 0; i < n; ++i, ++j) {
    dx[i] = detail::masked_grad(g[i], x[i], lo, hi, open);
    lanes_below[j] += g[i] * (x[i] < lo ? 1.0f : 0.0f);
    lanes_above[j] += g[i] * (x[i] > hi ? 1.0f : 0.0f);
  }
  for (int l = 0; l < kSumLanes; ++l) {
    if (below) *below += static_cast<double>(lanes_below[l]);
    if (above) *above += static_cast<double>(lanes_above[l]);
  }
}

template <class V>
void masked_grad_per_channel(const float* g, const float* x, float* dx, int64_t rows,
                             int64_t channels, const float* lo, const float* hi, float* below,
                             float* above) {
  // Blocks of rows share the loads of a channel vector's window and sums; each channel still adds
  // its rows in row order, as the reference does.
  constexpr int64_t kRowBlock = 4;
  for (int64_t row0 = 0; row0 < rows; row0 += kRowBlock) {
    const int64_t nr = std::min(kRowBlock, rows - row0);
    int64_t c = 0;
    for (; c + V::W <= channels; c += V::W) {
      const auto vlo = V::load(lo + c), vhi = V::load(hi + c);
      auto acc_below = V::load(below + c), acc_above = V::load(above + c);
      for (int64_t r = 0; r < nr; ++r) {
        const int64_t k = (row0 + r) * channels + c;
        const auto xv = V::load(x + k), gv = V::load(g + k);
        V::store(dx + k, V::mul(gv, V::one_if(V::and_mask(V::le(vlo, xv), V::le(xv, vhi)))));
        acc_below = V::add(acc_below, V::mul(gv, V::one_if(V::lt(xv, vlo))));
        acc_above = V::add(acc_above, V::mul(gv, V::one_if(V::lt(vhi, xv))));
      }
      V::store(below + c, acc_below);
      V::store(above + c, acc_above);
    }
    for (; c < channels; ++c) {
      for (int64_t r = 0; r < nr; ++r) {
        const int64_t k = (row0 + r) * channels + c;
        dx[k] = detail::masked_grad(g[k], x[k], lo[c], hi[c], false);
        below[c] += g[k] * (x[k] < lo[c] ? 1.0f : 0.0f);
        above[c] += g[k] * (x[k] > hi[c] ? 1.0f : 0.0f);
      }
    }
  }
}

// sign0(x) * s, NaN through: select(x >= 0, s, select(x < 0, -s, x)).
template <class V>
inline typename V::reg sign_vec(typename V::reg x, typename V::reg s, typename V::reg neg_s) {
  return V::select(V::le(V::zero(), x), s, V::select(V::lt(x, V::zero()), neg_s, x));
}

template <class V>
void sign(const float* x, float* y, int64_t n, float scale) {
  const auto s = V::set1(scale), ns = V::set1(-scale);
  int64_t i = 0;
  for (; i + 2 * V::W <= n; i += 2 * V::W) {
    const auto a = sign_vec<V>(V::load(x + i), s, ns);
    const auto b = sign_vec<V>(V::load(x + i + V::W), s, ns);
    V::store(y + i, a);
    V::store(y + i + V::W, b);
  }
  for (; i + V::W <= n; i += V::W) V::store(y + i, sign_vec<V>(V::load(x + i), s, ns));
  for (; i < n; ++i) y[i] = detail::sign0_scaled(x[i], scale);
}

template <class V>
void sign_per_channel(const float* x, float* y, int64_t rows, int64_t channels,
                      const float* scale) {
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t base = row * channels;
    int64_t c = 0;
    for (; c + V::W <= channels; c += V::W) {
      const auto s = V::load(scale + c);
      V::store(y + base + c, sign_vec<V>(V::load(x + base + c), s, V::neg(s)));
    }
    for (; c < channels; ++c) y[base + c] = detail::sign0_scaled(x[base + c], scale[c]);
  }
}

template <class V>
inline typename V::reg tfsign_vec(typename V::reg x) {
  const auto one = V::set1(1.0f);
  const auto z = V::zero();
  // +1, -1, 0, or x itself (NaN).
  return V::select(V::lt(z, x), one,
                   V::select(V::lt(x, z), V::set1(-1.0f), V::select(V::eq(x, z), z, x)));
}

template <class V>
void heaviside(const float* x, float* y, int64_t n) {
  const auto one = V::set1(1.0f), z = V::zero();
  int64_t i = 0;
  for (; i + V::W <= n; i += V::W) {
    const auto v = V::load(x + i);
    V::store(y + i, V::select(V::lt(z, v), one, V::select(V::le(v, z), z, v)));
  }
  for (; i < n; ++i) y[i] = detail::heaviside(x[i]);
}

template <class V>
void ternary(const float* x, float* y, int64_t n, float threshold) {
  const auto d = V::set1(threshold);
  int64_t i = 0;
  for (; i + V::W <= n; i += V::W) {
    const auto v = V::load(x + i);
    V::store(y + i, tfsign_vec<V>(V::add(tfsign_vec<V>(V::add(v, d)), tfsign_vec<V>(V::sub(v, d)))));
  }
  for (; i < n; ++i) y[i] = detail::ternary(x[i], threshold);
}

template <class V>
void dorefa_activations(const float* x, float* y, int64_t n, float levels) {
  const auto lv = V::set1(levels), z = V::zero(), one = V::set1(1.0f);
  int64_t i = 0;
  for (; i + V::W <= n; i += V::W) {
    const auto c = clamp_tf<V>(V::load(x + i), z, one);
    V::store(y + i, V::div(V::nearbyint(V::mul(c, lv)), lv));
  }
  for (; i < n; ++i) y[i] = detail::dorefa_activations(x[i], levels);
}

template <class V>
void linear_mid_tread(const float* x, float* y, int64_t n, float levels, float max_value) {
  const auto lv = V::set1(levels), mv = V::set1(max_value), z = V::zero(), half = V::set1(0.5f);
  int64_t i = 0;
  for (; i + V::W <= n; i += V::W) {
    const auto c = clamp_tf<V>(V::load(x + i), z, mv);
    const auto q = V::floor(V::add(V::mul(V::div(c, mv), lv), half));
    V::store(y + i, V::mul(V::div(q, lv), mv));
  }
  for (; i < n; ++i) y[i] = detail::linear_mid_tread(x[i], levels, max_value);
}

template <class V>
void approx_sign_grad(const float* g, const float* x, float* dx, int64_t n) {
  const auto one = V::set1(1.0f), two = V::set1(2.0f);
  int64_t i = 0;
  for (; i + V::W <= n; i += V::W) {
    const auto ax = V::abs(V::load(x + i));
    const auto f = V::select(V::le(ax, one), V::sub(two, V::mul(two, ax)), V::zero());
    V::store(dx + i, V::mul(V::load(g + i), f));
  }
  for (; i < n; ++i) dx[i] = detail::approx_sign_grad(g[i], x[i]);
}

// ---- forwards that write window codes, and the backward from the codes ---------------------------

template <class V>
void fake_quant_coded(const float* x, float* y, uint8_t* code, int64_t n,
                      const FakeQuantParams<float>& p, FakeQuantRounding r, float lo, float hi) {
  const bool div = r == FakeQuantRounding::kDivScale;
  const auto nmin = V::set1(p.nudged_min), nmax = V::set1(p.nudged_max);
  const auto scale = V::set1(p.scale), inv = V::set1(p.inv_scale), qz = V::set1(p.quant_zero);
  const auto vlo = V::set1(lo), vhi = V::set1(hi);
  int64_t i = 0;
  for (; i + V::W <= n; i += V::W) {
    const auto v = V::load(x + i);
    V::store(y + i, div ? fake_quant_vec<V, true>(v, nmin, nmax, scale, inv, qz)
                        : fake_quant_vec<V, false>(v, nmin, nmax, scale, inv, qz));
    store_window_codes<V>(code + i, v, vlo, vhi);
  }
  for (; i < n; ++i) {
    y[i] = div ? detail::fake_quant_div(x[i], p) : detail::fake_quant_mul(x[i], p);
    code[i] = detail::window_code(x[i], lo, hi);
  }
}

template <class V>
void fake_quant_per_channel_coded(const float* x, float* y, uint8_t* code, int64_t rows,
                                  int64_t channels, const FakeQuantParams<float>* p,
                                  FakeQuantRounding r, const float* lo, const float* hi) {
  fake_quant_per_channel_impl<V, true>(x, y, code, rows, channels, p, r, lo, hi);
}

template <class V>
void sign_coded(const float* x, float* y, uint8_t* code, int64_t n, float scale, float lo,
                float hi) {
  const auto s = V::set1(scale), ns = V::set1(-scale), vlo = V::set1(lo), vhi = V::set1(hi);
  int64_t i = 0;
  for (; i + V::W <= n; i += V::W) {
    const auto v = V::load(x + i);
    V::store(y + i, sign_vec<V>(v, s, ns));
    store_window_codes<V>(code + i, v, vlo, vhi);
  }
  for (; i < n; ++i) {
    y[i] = detail::sign0_scaled(x[i], scale);
    code[i] = detail::window_code(x[i], lo, hi);
  }
}

template <class V>
void coded_grad(const float* g, const uint8_t* code, float* dx, int64_t n, double* below,
                double* above) {
  constexpr int kRegs = kSumLanes / V::W;
  typename V::reg acc_below[kRegs], acc_above[kRegs];
  for (int k = 0; k < kRegs; ++k) acc_below[k] = acc_above[k] = V::zero();
  int64_t i = 0;
  for (; i + kSumLanes <= n; i += kSumLanes) {
    for (int k = 0; k < kRegs; ++k) {
      const auto c = V::load_codes(code + i + k * V::W);
      const auto gv = V::load(g + i + k * V::W);
      V::store(dx + i + k * V::W, V::mul(gv, V::one_if(V::code_has(c, detail::kCodeIn))));
      acc_below[k] = V::add(acc_below[k], V::mul(gv, V::one_if(V::code_has(c, detail::kCodeBelow))));
      acc_above[k] = V::add(acc_above[k], V::mul(gv, V::one_if(V::code_has(c, detail::kCodeAbove))));
    }
  }
  float lanes_below[kSumLanes], lanes_above[kSumLanes];
  for (int k = 0; k < kRegs; ++k) {
    V::store(lanes_below + k * V::W, acc_below[k]);
    V::store(lanes_above + k * V::W, acc_above[k]);
  }
  for (int64_t j = 0; i < n; ++i, ++j) {
    dx[i] = detail::coded_grad(g[i], code[i]);
    lanes_below[j] += g[i] * ((code[i] & detail::kCodeBelow) ? 1.0f : 0.0f);
    lanes_above[j] += g[i] * ((code[i] & detail::kCodeAbove) ? 1.0f : 0.0f);
  }
  for (int l = 0; l < kSumLanes; ++l) {
    if (below) *below += static_cast<double>(lanes_below[l]);
    if (above) *above += static_cast<double>(lanes_above[l]);
  }
}

template <class V>
void coded_grad_per_channel(const float* g, const uint8_t* code, float* dx, int64_t rows,
                            int64_t channels, float* below, float* above) {
  constexpr int64_t kRowBlock = 4;
  for (int64_t row0 = 0; row0 < rows; row0 += kRowBlock) {
    const int64_t nr = std::min(kRowBlock, rows - row0);
    int64_t c = 0;
    for (; c + V::W <= channels; c += V::W) {
      auto acc_below = V::load(below + c), acc_above = V::load(above + c);
      for (int64_t r = 0; r < nr; ++r) {
        const int64_t k = (row0 + r) * channels + c;
        const auto cv = V::load_codes(code + k);
        const auto gv = V::load(g + k);
        V::store(dx + k, V::mul(gv, V::one_if(V::code_has(cv, detail::kCodeIn))));
        acc_below = V::add(acc_below, V::mul(gv, V::one_if(V::code_has(cv, detail::kCodeBelow))));
        acc_above = V::add(acc_above, V::mul(gv, V::one_if(V::code_has(cv, detail::kCodeAbove))));
      }
      V::store(below + c, acc_below);
      V::store(above + c, acc_above);
    }
    for (; c < channels; ++c) {
      for (int64_t r = 0; r < nr; ++r) {
        const int64_t k = (row0 + r) * channels + c;
        dx[k] = detail::coded_grad(g[k], code[k]);
        below[c] += g[k] * ((code[k] & detail::kCodeBelow) ? 1.0f : 0.0f);
        above[c] += g[k] * ((code[k] & detail::kCodeAbove) ? 1.0f : 0.0f);
      }
    }
  }
}

template <class V>
constexpr lowbit::kernels::F32Kernels make_kernel_set(const char* isa) {
  return lowbit::kernels::F32Kernels{isa,
                                     &fake_quant<V>,
                                     &fake_quant_per_channel<V>,
                                     &masked_grad<V>,
                                     &masked_grad_per_channel<V>,
                                     &sign<V>,
                                     &sign_per_channel<V>,
                                     &heaviside<V>,
                                     &ternary<V>,
                                     &dorefa_activations<V>,
                                     &linear_mid_tread<V>,
                                     &approx_sign_grad<V>,
                                     &fake_quant_coded<V>,
                                     &fake_quant_per_channel_coded<V>,
                                     &sign_coded<V>,
                                     &coded_grad<V>,
                                     &coded_grad_per_channel<V>};
}
