// The steps of element-wise nodes (Node::unary, Node::binary): elementwise.h's kernels over whole
// images, rows of a per-channel constant, or operands gathered where they broadcast otherwise;
// split across threads by elements (or rows); folded where every input is constant.
#include <algorithm>
#include <string>

#include "lowbit/engine/kernels/elementwise.h"
#include "lower.h"

namespace lowbit {
namespace engine {
namespace detail {

namespace {

std::string kernel_name(const char* function, const char* form, const elementwise::Kernels& k) {
  return std::string(function) + form + "_f32_" + k.name;
}

// The rows of each plane of a 4-D value (which threads split as convolutions do), else 0.
int64_t plane_rows(const std::vector<int64_t>& dims) {
  return dims.size() == 4 && dims[3] > 0 ? dims[2] : 0;
}

// Splits step s over rows of `inner` values, `rows` per image (a constant per row: a scalar, a
// per-channel constant), split by rows, or where each row is a plane of a 4-D value (plane_h its
// rows) and the planes have rows enough, by the rows of each plane, or where there are fewer rows
// than parts, by values. run(x, row, n_rows, n, y) on
// n_rows whole rows from row `row` of an image, or on a range of n < inner values in one row.
template <class Run>
void split_rows(Step& s, int64_t inner, int64_t rows, int64_t plane_h, int64_t per, Run run) {
  split_step(
      s,
      [inner, rows, plane_h, run](const std::vector<const float*>& xs, float* y, int64_t count,
                                  int64_t p, int64_t parts) {
        if (inner == 0) return;
        if (split_by_rows(plane_h, parts)) {
          // Each plane's rows of this part, every range inside a plane.
          elementwise_part(count, plane_h, inner / plane_h, p, parts, [&](int64_t e0, int64_t e1) {
            run(xs[0] + e0, (e0 / inner) % rows, 1, e1 - e0, y + e0);
          });
          return;
        }
        if (rows >= parts) {  // whole rows per part
          const int64_t r0 = rows * p / parts, r1 = rows * (p + 1) / parts;
          if (r1 == r0) return;
          for (int64_t b = 0; b < count / (rows * inner); ++b) {
            const int64_t at = b * rows * inner + r0 * inner;
            run(xs[0] + at, r0, r1 - r0, inner, y + at);
          }
          return;
        }
        // Fewer rows than parts (a scalar is one row): a slice of the values, row by row.
        const int64_t e0 = count * p / parts, e1 = count * (p + 1) / parts;
        for (int64_t e = e0; e < e1;) {
          const int64_t end = std::min(e1, (e / inner + 1) * inner);
          run(xs[0] + e, (e / inner) % rows, 1, end - e, y + e);
          e = end;
        }
      },
      per);
}

// The rows of each 4-D plane where a row of `inner` values is a plane, else 0.
int64_t rows_of_planes(const std::vector<int64_t>& dims, int64_t inner) {
  return dims.size() == 4 && inner == dims[2] * dims[3] ? dims[2] : 0;
}

}  // namespace

void Node::unary(elementwise::Unary f, float a, float b) {
  arity(1, 1);
  out.dims = in[0]->dims;
  const elementwise::Kernels* k = &elementwise::best();
  s.info.kernel = kernel_name(elementwise::name(f), "", *k);
  const int64_t rows = plane_rows(out.dims), cols = rows ? out.dims[3] : 0;
  split_step(
      s,
      [k, f, a, b, rows, cols](const std::vector<const float*>& x, float* y, int64_t count,
                               int64_t p, int64_t parts) {
        elementwise_part(count, rows, cols, p, parts, [&](int64_t e0, int64_t e1) {
          k->unary(f, a, b, x[0] + e0, e1 - e0, y + e0);
        });
      },
      in[0]->per_image());  // one operation per element
}

void Node::binary(elementwise::Binary f) {
  arity(2, 2);
  const Value &x = *in[0], &c = *in[1];
  const elementwise::Kernels* k = &elementwise::best();
  const char* fn = elementwise::name(f);
  if (!x.constant && !c.constant) {
    if (x.dims == c.dims) {
      out.dims = x.dims;
      s.info.kernel = kernel_name(fn, "", *k);
      const int64_t rows = plane_rows(out.dims), cols = rows ? out.dims[3] : 0;
      split_step(
          s,
          [k, f, rows, cols](const std::vector<const float*>& xs, float* y, int64_t count,
                             int64_t p, int64_t parts) {
            elementwise_part(count, rows, cols, p, parts, [&](int64_t e0, int64_t e1) {
              k->binary(f, xs[0] + e0, xs[1] + e0, e1 - e0, y + e0);
            });
          },
          x.per_image());
      return;
    }
    // Two activations of one rank broadcast image by image (a squeeze-and-excitation's scaling):
    // each operand gathered to the output's shape where it broadcasts, then the kernel.
    if (x.dims.size() != c.dims.size())
      bad(where, "activations of shapes " + dims_str(x.dims) + " and " + dims_str(c.dims) +
                     " (activations of different ranks do not broadcast image by image)");
    out.dims = broadcast_shape(x, c);
    const Broadcast ix = make_broadcast(out.dims, x.dims, where);
    const Broadcast ic = make_broadcast(out.dims, c.dims, where);
    const int64_t per = product(out.dims, 1), px = x.per_image(), pc = c.per_image();
    s.info.kernel = kernel_name(fn, "_broadcast", *k);
    s.info.parameter_bytes = ix.bytes() + ic.bytes();
    s.run = [k, f, ix, ic, per, px, pc](const std::vector<const float*>& xs, float* y,
                                        int64_t count) {
      if (per == 0) return;
      thread_local std::vector<float> gp, gq;
      gp.resize(per), gq.resize(per);
      for (int64_t b = 0; b < count / per; ++b) {
        const float *p = xs[0] + b * px, *q = xs[1] + b * pc;
        if (px != per) {
          for (int64_t e = 0; e < per; ++e) gp[e] = p[ix.at(e)];
          p = gp.data();
        }
        if (pc != per) {
          for (int64_t e = 0; e < per; ++e) gq[e] = q[ic.at(e)];
          q = gq.data();
        }
        k->binary(f, p, q, per, y + b * per);
      }
    };
    return;
  }
  if (x.constant && c.constant) {  // folded
    out.constant = true;
    out.dims = broadcast_shape(x, c);
    if (p.total_constant_elements + product(out.dims) > p.limits.max_total_elements)
      bad(where, "the constants (initializers and folded values) are too large");
    const auto ix = broadcast_constant(out.dims, x.dims, where);
    const auto ic = broadcast_constant(out.dims, c.dims, where);
    std::vector<float> px(ix.size()), pc(ic.size());
    for (size_t e = 0; e < ix.size(); ++e) px[e] = x.data[ix[e]], pc[e] = c.data[ic[e]];
    out.data.resize(ix.size());
    k->binary(f, px.data(), pc.data(), static_cast<int64_t>(px.size()), out.data.data());
    return;
  }
  const bool act_first = !x.constant;
  const Value& act = act_first ? x : c;
  const Value& kc = act_first ? c : x;
  out.dims = act.dims;
  const Broadcast index = make_broadcast(act.dims, kc.dims, where);
  const int64_t per = index.per;
  if (index.map.empty() && index.inner >= 4) {
    // A constant per row of `inner` values (a scalar, a per-channel constant): its value for
    // each row of an image, then the rows kernel, split by rows.
    const int64_t inner = index.inner, rows = per / inner;
    std::vector<float> row_constants(rows);
    for (int64_t r = 0; r < rows; ++r) row_constants[r] = kc.data[r % index.channels];
    s.info.kernel = kernel_name(fn, rows == 1 ? "_scalar" : "_rows", *k);
    s.info.parameter_bytes = static_cast<int64_t>(rows * sizeof(float));
    split_rows(s, inner, rows, rows_of_planes(act.dims, inner), per,
               [k, f, row_constants, act_first](const float* x, int64_t r, int64_t n_rows,
                                                int64_t n, float* y) {
                 k->rows(f, x, row_constants.data() + r, n_rows, n, !act_first, y);
               });
    return;
  }
  // Otherwise the constant expanded to an image's shape, and the kernel of two arrays.
  std::vector<float> full(per);
  for (int64_t e = 0; e < per; ++e) full[e] = kc.data[index.at(e)];
  s.info.kernel = kernel_name(fn, "_broadcast", *k);
  s.info.parameter_bytes = static_cast<int64_t>(per * sizeof(float));
  split_step(
      s,
      [k, f, per, full, act_first](const std::vector<const float*>& xs, float* y, int64_t count,
                                   int64_t p, int64_t parts) {
        const int64_t e0 = per * p / parts, e1 = per * (p + 1) / parts;
        if (e1 == e0) return;
        for (int64_t b = 0; b < count / per; ++b) {
          const float* a = xs[0] + b * per + e0;
          const float* q = full.data() + e0;
          k->binary(f, act_first ? a : q, act_first ? q : a, e1 - e0, y + b * per + e0);
        }
      },
      per);
}

bool Node::quant_rows(elementwise::Rounding mode, float lo, float hi, const Value& scale,
                      const Value& zero) {
  const Value& x = *in[0];
  if (x.constant) return false;
  const int64_t per = x.per_image();
  // Scale and zero point each a scalar or a constant per row of `inner` values (the same rows).
  int64_t inner = per;
  for (const Value* c : {&scale, &zero}) {
    if (c->data.size() == 1) continue;
    const Broadcast index = make_broadcast(x.dims, c->dims, where);
    if (!index.map.empty() || index.inner < 4 || (inner != per && index.inner != inner))
      return false;
    inner = index.inner;
  }
  if (per == 0 || inner == 0) return false;
  const int64_t rows = per / inner;
  std::vector<float> sc(rows), zp(rows);
  for (int64_t r = 0; r < rows; ++r)
    sc[r] = scale.data[r % scale.data.size()], zp[r] = zero.data[r % zero.data.size()];
  const elementwise::Kernels* k = &elementwise::best();
  out.dims = x.dims;
  s.info.kernel = std::string(rows == 1 ? "quant_scalar_f32_" : "quant_rows_f32_") + k->name;
  s.info.parameter_bytes = static_cast<int64_t>(2 * rows * sizeof(float));
  split_rows(
      s, inner, rows, rows_of_planes(x.dims, inner), per,
      [k, mode, lo, hi, sc, zp](const float* xr, int64_t r, int64_t n_rows, int64_t n, float* y) {
        k->quant(mode, lo, hi, xr, sc.data() + r, zp.data() + r, n_rows, n, y);
      });
  return true;
}

}  // namespace detail
}  // namespace engine
}  // namespace lowbit
