// The graph IR's helpers: checked sizes, shapes as text, windows, broadcasting, QONNX rounding.
#include "ir.h"

#include <algorithm>
#include <cmath>

namespace lowbit {
namespace engine {
namespace detail {

// a * b, or an error when it overflows or exceeds `limit`.
int64_t checked_mul(int64_t a, int64_t b, int64_t limit, const std::string& origin,
                    const std::string& what) {
  if (a < 0 || b < 0) bad(origin, what + " has a negative dimension");
  if (b != 0 && a > limit / b)
    bad(origin, what + " is too large (over " + std::to_string(limit) + " elements)");
  return a * b;
}

std::string dims_str(const std::vector<int64_t>& d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + "]";
}

Window window(const Attrs& a, const std::string& where, const std::vector<int64_t>& spatial,
              const std::vector<int64_t>& kernel) {
  Window w{a.ints("strides", {1, 1}), a.ints("pads", {0, 0, 0, 0}), a.ints("dilations", {1, 1})};
  if (w.strides.size() != 2 || w.pads.size() != 4 || w.dilations.size() != 2) {
    bad(where, "strides, pads and dilations must have 2, 4 and 2 values");
  }
  for (int64_t v : w.strides)
    if (v < 1 || v > 1024) bad(where, "strides must be in [1, 1024]");
  for (int64_t v : w.dilations)
    if (v < 1 || v > 1024) bad(where, "dilations must be in [1, 1024]");
  for (int64_t v : w.pads)
    if (v < 0 || v > 1024) bad(where, "pads must be in [0, 1024]");
  const std::string mode = a.s("auto_pad", "NOTSET");
  if (mode == "NOTSET") return w;
  if (a.map.count("pads")) bad(where, "auto_pad " + mode + " and pads are both given");
  if (mode == "VALID") return w;
  if (mode != "SAME_UPPER" && mode != "SAME_LOWER")
    bad(where, "auto_pad " + mode + " is not NOTSET, SAME_UPPER, SAME_LOWER or VALID");
  // SAME: the output is ceil(input / stride); the padding, where odd, goes to the end (UPPER) or
  // the beginning (LOWER).
  for (int k = 0; k < 2; ++k) {
    const int64_t out = (spatial[k] + w.strides[k] - 1) / w.strides[k];
    const int64_t total = std::max<int64_t>(
        0, (out - 1) * w.strides[k] + (kernel[k] - 1) * w.dilations[k] + 1 - spatial[k]);
    const int64_t small = total / 2, large = total - small;
    w.pads[k] = mode == "SAME_UPPER" ? small : large;
    w.pads[k + 2] = mode == "SAME_UPPER" ? large : small;
  }
  return w;
}

// The index map of a constant broadcast over one image of an activation shape (numpy rules): for
// every element of the image, the constant's element. Constants may not grow the shape.
std::vector<int64_t> broadcast_index(const std::vector<int64_t>& act, const std::vector<int64_t>& c,
                                     const std::string& where) {
  if (c.size() > act.size())
    bad(where, "a constant of shape " + dims_str(c) + " does not broadcast to " + dims_str(act));
  const size_t off = act.size() - c.size();
  for (size_t i = 0; i < c.size(); ++i) {
    const int64_t a = act[off + i], b = c[i];
    if (b != 1 && b != a)
      bad(where, "a constant of shape " + dims_str(c) + " does not broadcast to " + dims_str(act));
    if (off + i == 0 && b != 1) bad(where, "a constant may not vary along the batch dimension");
  }
  const int64_t n = product(act, 1);
  std::vector<int64_t> index(n);
  std::vector<int64_t> coord(act.size(), 0);
  for (int64_t e = 0; e < n; ++e) {
    int64_t rem = e, k = 0, stride = 1;
    for (size_t d = act.size(); d-- > 1;) {
      coord[d] = rem % act[d];
      rem /= act[d];
    }
    for (size_t i = c.size(); i-- > 0;) {
      const size_t d = off + i;
      if (c[i] != 1) k += coord[d] * stride;
      stride *= c[i];
    }
    index[e] = k;
  }
  return index;
}

// A broadcast constant's index for every element of an image, kept compact: a constant with one

Broadcast make_broadcast(const std::vector<int64_t>& act, const std::vector<int64_t>& c,
                         const std::string& where) {
  Broadcast bc;
  bc.map = broadcast_index(act, c, where);
  bc.per = product(act, 1);
  const int64_t n = bc.per;
  if (n == 0) return bc;
  int64_t inner = 1;
  while (inner < n && bc.map[inner] == bc.map[0]) ++inner;
  const int64_t channels = product(c);
  bool pattern = n % inner == 0 && channels > 0;
  for (int64_t e = 0; pattern && e < n; ++e) pattern = bc.map[e] == (e / inner) % channels;
  if (pattern) {
    bc.inner = inner;
    bc.channels = channels;
    std::vector<int64_t>().swap(bc.map);
  }
  return bc;
}

// QONNX's rounding modes (its documented table), by index into kRoundingModes.

float round_mode(float v, int mode) {
  switch (mode) {
    case 0:
    case 1:
      return std::nearbyint(v);
    case 2:
      return std::ceil(v);
    case 3:
      return std::floor(v);
    case 4:
      return v < 0 ? -std::floor(-v + 0.5f) : std::floor(v + 0.5f);
    case 5:
      return v < 0 ? -std::ceil(-v - 0.5f) : std::ceil(v - 0.5f);
    case 6:
      return v < 0 ? std::floor(v) : std::ceil(v);
    default:
      return std::trunc(v);  // DOWN
  }
}

}  // namespace detail
}  // namespace engine
}  // namespace lowbit
