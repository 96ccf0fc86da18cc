// Integer grids of values (Value::grid): what Quant, DequantizeLinear and scalar scalings give.
#include <cmath>

#include "ir.h"

namespace lowbit {
namespace engine {
namespace detail {

// An activation on a grid times (or over) a positive scalar stays on a grid of that scale
// (exactly for powers of 2; else up to float32's rounding of each value, which the 8-bit kernels'
// codes round away: Blueoil's 2-bit activations, written as Quant then / 3 * 2).
void scale_grid(const std::vector<const Value*>& in, Value& out, bool divide) {
  const Value &p = *in[0], &q = *in[1];
  if (p.constant || !p.grid.on || !q.constant || q.data.size() != 1) return;
  const float c = q.data[0];
  if (!(c > 0) || !std::isfinite(c)) return;
  const float scale = divide ? p.grid.scale[0] / c : p.grid.scale[0] * c;
  if (!(scale > 0) || !std::isfinite(scale)) return;
  out.grid = p.grid;
  out.grid.scale = {scale};
}

// An integer that int64 and float32 both hold exactly (zero points of a grid).
bool small_integer(float v) { return std::fabs(v) <= 16777216.0f && v == std::nearbyint(v); }

bool integral_in(const std::vector<float>& v, float lo, float hi) {
  for (float e : v)
    if (!(e >= lo && e <= hi) || e != std::nearbyint(e)) return false;
  return true;
}

// The grid of Quant's output: an integer zero point, and one scale (or, for constants, one per
// slice of the first dimension).
Grid quant_grid(const Value& x, const Value& sc, const Value& zp, float lo, float hi) {
  Grid g;
  if (zp.data.size() != 1 || !small_integer(zp.data[0])) return g;
  for (float v : sc.data)
    if (!(v > 0) || !std::isfinite(v)) return g;
  const bool per_slice = x.constant && !x.dims.empty() && sc.data.size() > 1 &&
                         static_cast<int64_t>(sc.data.size()) == x.dims[0] &&
                         sc.dims.size() == x.dims.size() && product(sc.dims, 1) == 1;
  if (sc.data.size() != 1 && !per_slice) return g;
  g.on = true, g.scale = sc.data, g.zero = zp.data[0];
  g.lo = static_cast<int64_t>(lo), g.hi = static_cast<int64_t>(hi);
  return g;
}

}  // namespace detail
}  // namespace engine
}  // namespace lowbit
