// Layout operators: Concat, Transpose, Squeeze, Unsqueeze, DepthToSpace, SpaceToDepth of
// activations (image by image) and of constants (folded), and the shape arithmetic exporters write
// (Shape, Gather of constants), folded while loading. Shape's batch entry is only known at run
// time: it is kept as a 0 (Reshape's "copy this dimension") and followed through Gather, Unsqueeze,
// Squeeze, Concat and Cast to a Reshape; any other use of it is an error.
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "../lower.h"

namespace lowbit {
namespace engine {
namespace detail {
namespace {

// An axis attribute or value in [-rank, rank), normalised.
int64_t axis_of(int64_t axis, int64_t rank, const std::string& where) {
  if (axis < -rank || axis >= rank)
    bad(where,
        "axis " + std::to_string(axis) + " is out of range for rank " + std::to_string(rank));
  return axis < 0 ? axis + rank : axis;
}

// For every element of y (shape ydims, row-major), the index of the element of x it copies, where
// y's axis k is x's axis perm[k].
std::vector<int64_t> permutation(const std::vector<int64_t>& xdims,
                                 const std::vector<int64_t>& perm) {
  const size_t rank = xdims.size();
  std::vector<int64_t> xstride(rank, 1), ydims(rank);
  for (size_t k = rank; k-- > 1;) xstride[k - 1] = xstride[k] * xdims[k];
  for (size_t k = 0; k < rank; ++k) ydims[k] = xdims[perm[k]];
  const int64_t n = product(xdims);
  std::vector<int64_t> index(n), coord(rank, 0);
  for (int64_t e = 0; e < n; ++e) {
    int64_t src = 0;
    for (size_t k = 0; k < rank; ++k) src += coord[k] * xstride[perm[k]];
    index[e] = src;
    for (size_t k = rank; k-- > 0;) {
      if (++coord[k] < ydims[k]) break;
      coord[k] = 0;
    }
  }
  return index;
}

// The step copying each image's element index[e] to its element e (d.out.dims set).
void moved(Node& d, std::vector<int64_t> index, const char* kernel) {
  const Value& x = *d.in[0];
  const int64_t per = x.per_image();
  d.out.grid = x.grid.scale.size() == 1 ? x.grid : Grid();
  d.s.info.kernel = kernel;
  d.s.info.parameter_bytes = static_cast<int64_t>(index.size() * sizeof(int64_t));
  d.s.run = [index = std::move(index), per](const std::vector<const float*>& xs, float* y,
                                            int64_t count) {
    for (int64_t b = 0; b < count / per; ++b)
      for (int64_t e = 0; e < per; ++e) y[b * per + e] = xs[0][b * per + index[e]];
  };
}

void lower_transpose(Node& d) {
  d.arity(1, 1);
  const Value& x = *d.in[0];
  const int64_t rank = static_cast<int64_t>(x.dims.size());
  std::vector<int64_t> perm = d.a.ints("perm", {});
  if (perm.empty())
    for (int64_t k = rank; k-- > 0;) perm.push_back(k);
  std::vector<int64_t> sorted = perm;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t k = 0; k < rank; ++k)
    if (static_cast<int64_t>(sorted.size()) != rank || sorted[k] != k)
      bad(d.where, "perm must be a permutation of the " + std::to_string(rank) + " axes");
  for (int64_t k = 0; k < rank; ++k) d.out.dims.push_back(x.dims[perm[k]]);
  if (x.constant) {
    const auto index = permutation(x.dims, perm);
    d.out.constant = true;
    for (int64_t i : index) d.out.data.push_back(x.data[i]);
    return;
  }
  if (perm[0] != 0) bad(d.where, "perm moves the batch axis 0");
  moved(d, permutation(x.dims, perm), "transpose_f32");
}

// DepthToSpace and SpaceToDepth: ONNX's reshape, transpose, reshape of [N, C, H, W]; their
// blocksize, in [1, 1024].
int64_t blocksize(Node& d) {
  d.arity(1, 1);
  if (d.in[0]->constant || d.in[0]->dims.size() != 4)
    bad(d.where, "input must be a 4-D activation");
  const int64_t b = d.a.i("blocksize", 0);
  if (b < 1 || b > 1024) bad(d.where, "blocksize must be in [1, 1024]");
  return b;
}

void lower_depth_to_space(Node& d) {
  const int64_t b = blocksize(d);
  const auto& x = d.in[0]->dims;
  const int64_t c = x[1], h = x[2], w = x[3];
  if (c % (b * b) != 0) bad(d.where, "the square of blocksize must divide the channels");
  const std::string mode = d.a.s("mode", "DCR");
  if (mode != "DCR" && mode != "CRD") bad(d.where, "mode must be DCR or CRD");
  const int64_t cb = c / (b * b);
  d.out.dims = {1, cb, h * b, w * b};
  if (mode == "DCR") {
    moved(d, permutation({1, b, b, cb, h, w}, {0, 3, 4, 1, 5, 2}), "depth_to_space_f32");
  } else {
    moved(d, permutation({1, cb, b, b, h, w}, {0, 1, 4, 2, 5, 3}), "depth_to_space_f32");
  }
}

void lower_space_to_depth(Node& d) {
  const int64_t b = blocksize(d);
  const auto& x = d.in[0]->dims;
  const int64_t c = x[1], h = x[2], w = x[3];
  if (h % b != 0 || w % b != 0) bad(d.where, "blocksize must divide the height and width");
  d.out.dims = {1, c * b * b, h / b, w / b};
  moved(d, permutation({1, c, h / b, b, w / b, b}, {0, 3, 5, 1, 2, 4}), "space_to_depth_f32");
}

// The axes of Squeeze and Unsqueeze: an attribute before opset 13, the second input after.
std::vector<int64_t> axes_of(Node& d) {
  if (d.p.opset < 13) return d.a.ints("axes", {});
  if (d.in.size() < 2 || !d.in[1]) return {};
  return d.integers(1, "axes");
}

// The same values under other dimensions: a copy for activations, nothing for constants.
void reshaped(Node& d, std::vector<int64_t> dims) {
  const Value& x = *d.in[0];
  if (!x.constant && (dims.empty() || x.dims.empty())) bad(d.where, "the batch axis 0 is removed");
  d.out.dims = std::move(dims);
  d.out.batch_at = x.batch_at;
  if (x.constant) {
    d.out.constant = true;
    d.out.data = x.data;
    return;
  }
  d.out.grid = x.grid.scale.size() == 1 ? x.grid : Grid();
  copy_step(d.s);
}

void lower_squeeze(Node& d) {
  d.arity(1, 2);
  const Value& x = *d.in[0];
  const int64_t rank = static_cast<int64_t>(x.dims.size());
  std::vector<int64_t> axes = axes_of(d);
  std::vector<bool> drop(rank, false);
  if (axes.empty()) {  // every axis of size 1 (of one image: not the batch)
    for (int64_t k = x.constant ? 0 : 1; k < rank; ++k) drop[k] = x.dims[k] == 1;
  }
  for (int64_t a : axes) {
    const int64_t k = axis_of(a, rank, d.where);
    if (x.dims[k] != 1) bad(d.where, "axis " + std::to_string(a) + " does not have size 1");
    if (k == 0 && !x.constant) bad(d.where, "axis 0 is the batch");
    drop[k] = true;
  }
  std::vector<int64_t> dims;
  for (int64_t k = 0; k < rank; ++k)
    if (!drop[k]) dims.push_back(x.dims[k]);
  d.in.resize(1);
  reshaped(d, dims);
}

void lower_unsqueeze(Node& d) {
  d.arity(1, 2);
  const Value& x = *d.in[0];
  std::vector<int64_t> axes = axes_of(d);
  if (axes.empty()) bad(d.where, "axes are missing");
  const int64_t rank = static_cast<int64_t>(x.dims.size() + axes.size());
  std::vector<bool> inserted(rank, false);
  for (int64_t a : axes) {
    const int64_t k = axis_of(a, rank, d.where);
    if (inserted[k]) bad(d.where, "axis " + std::to_string(a) + " is given twice");
    if (k == 0 && !x.constant) bad(d.where, "axis 0 is the batch");
    inserted[k] = true;
  }
  std::vector<int64_t> dims;
  for (int64_t k = 0, j = 0; k < rank; ++k) dims.push_back(inserted[k] ? 1 : x.dims[j++]);
  d.in.resize(1);
  reshaped(d, dims);
}

void lower_concat(Node& d) {
  if (d.in.empty()) bad(d.where, "has no inputs");
  d.arity(d.in.size(), d.in.size());
  const Value& first = *d.in[0];
  const int64_t rank = static_cast<int64_t>(first.dims.size());
  const int64_t axis = axis_of(d.a.i("axis", rank > 0 ? 0 : 0), rank, d.where);
  bool constants = true, activations = true;
  for (const Value* v : d.in) {
    constants = constants && v->constant;
    activations = activations && !v->constant;
    if (static_cast<int64_t>(v->dims.size()) != rank)
      bad(d.where,
          "inputs of ranks " + std::to_string(rank) + " and " + std::to_string(v->dims.size()));
    for (int64_t k = 0; k < rank; ++k)
      if (k != axis && v->dims[k] != first.dims[k])
        bad(d.where, "inputs of shapes " + dims_str(first.dims) + " and " + dims_str(v->dims) +
                         " differ outside axis " + std::to_string(axis));
  }
  if (!constants && !activations)
    bad(d.where, "joins constants and activations (only all of one kind are supported)");
  if (activations && axis == 0) bad(d.where, "axis 0 is the batch");
  d.out.dims = first.dims;
  d.out.dims[axis] = 0;
  std::vector<int64_t> blocks;  // per input: its values per outer index
  for (const Value* v : d.in) {
    d.out.dims[axis] += v->dims[axis];
    blocks.push_back(product(v->dims, axis));
  }
  const int64_t out_block = product(d.out.dims, axis);
  if (constants) {
    d.out.constant = true;
    const int64_t outer = product(first.dims) / std::max<int64_t>(blocks[0], 1);
    for (int64_t o = 0; o < outer; ++o)
      for (size_t i = 0; i < d.in.size(); ++i) {
        const auto& data = d.in[i]->data;
        d.out.data.insert(d.out.data.end(), data.begin() + o * blocks[i],
                          data.begin() + (o + 1) * blocks[i]);
      }
    // The batch entry of Shape's output, where one input holds it (1-D shape arithmetic).
    int64_t offset = 0;
    for (const Value* v : d.in) {
      if (v->batch_at >= 0 && rank == 1) d.out.batch_at = offset + v->batch_at;
      offset += static_cast<int64_t>(v->data.size());
    }
    return;
  }
  std::vector<int64_t> per;
  for (const Value* v : d.in) per.push_back(v->per_image());
  const int64_t out_per = product(d.out.dims, 1);
  d.s.info.kernel = "concat_f32";
  d.s.run = [blocks, per, out_per, out_block](const std::vector<const float*>& xs, float* y,
                                              int64_t count) {
    for (int64_t b = 0; b < count / out_per; ++b) {
      float* out = y + b * out_per;
      for (int64_t o = 0; o < out_per / out_block; ++o)
        for (size_t i = 0; i < xs.size(); ++i) {
          const float* src = xs[i] + b * per[i] + o * blocks[i];
          out = std::copy(src, src + blocks[i], out);
        }
    }
  };
}

// Shape of an activation or a constant: a constant 1-D tensor (start and end as ONNX 15 defines
// them); an activation's batch entry is 0, marked (Value::batch_at).
void lower_shape(Node& d) {
  d.arity(1, 1);
  const Value& x = *d.in[0];
  const int64_t rank = static_cast<int64_t>(x.dims.size());
  auto clamp = [&](int64_t v) {
    return std::min(std::max(v < 0 ? v + rank : v, int64_t{0}), rank);
  };
  const int64_t start = clamp(d.a.i("start", 0)), end = clamp(d.a.i("end", rank));
  d.out.constant = true;
  for (int64_t k = start; k < end; ++k)
    d.out.data.push_back(k == 0 && !x.constant ? 0.0f : static_cast<float>(x.dims[k]));
  d.out.dims = {static_cast<int64_t>(d.out.data.size())};
  if (!x.constant && start == 0 && end > 0) d.out.batch_at = 0;
  d.in.clear();  // nothing to run
}

// Gather of a constant (shape arithmetic): indices along `axis`, numpy's take.
void lower_gather(Node& d) {
  d.arity(2, 2);
  const Value& x = *d.in[0];
  if (!x.constant) bad(d.where, "only the gathering from constants is supported");
  const Value& idx = d.constant(1, "indices");
  std::vector<int64_t> picks = d.integers(1, "indices");
  const int64_t rank = static_cast<int64_t>(x.dims.size());
  if (rank == 0) bad(d.where, "data must have at least one dimension");
  const int64_t axis = axis_of(d.a.i("axis", 0), rank, d.where);
  const int64_t n = x.dims[axis];
  for (int64_t& i : picks) {
    if (i < -n || i >= n) bad(d.where, "index " + std::to_string(i) + " is out of range");
    if (i < 0) i += n;
  }
  const int64_t outer = product(std::vector<int64_t>(x.dims.begin(), x.dims.begin() + axis));
  const int64_t inner = product(x.dims, axis + 1);
  d.out.constant = true;
  d.out.dims.assign(x.dims.begin(), x.dims.begin() + axis);
  d.out.dims.insert(d.out.dims.end(), idx.dims.begin(), idx.dims.end());
  d.out.dims.insert(d.out.dims.end(), x.dims.begin() + axis + 1, x.dims.end());
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i : picks)
      for (int64_t e = 0; e < inner; ++e) {
        const int64_t src = (o * n + i) * inner + e;
        if (src == x.batch_at) d.out.batch_at = static_cast<int64_t>(d.out.data.size());
        d.out.data.push_back(x.data[src]);
      }
}

}  // namespace

const std::vector<OpLowering>& layout_ops() {
  static const std::vector<OpLowering> ops = {
      {"Transpose", lower_transpose},
      {"Squeeze", lower_squeeze},
      {"Unsqueeze", lower_unsqueeze},
      {"Concat", lower_concat},
      {"Shape", lower_shape},
      {"Gather", lower_gather},
      {"DepthToSpace", lower_depth_to_space},
      {"SpaceToDepth", lower_space_to_depth},
  };
  return ops;
}

}  // namespace detail
}  // namespace engine
}  // namespace lowbit
