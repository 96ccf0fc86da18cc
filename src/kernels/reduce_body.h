// Reductions over |x| written once, in a fixed lane structure: kReduceLanes independent
// accumulators, element i in lane i % kReduceLanes, the lanes added in order at the end. Every
// kernel set compiles these with its own instruction flags (so the compiler vectorizes the lanes)
// and gets the same result bit for bit, whatever the instruction set.
// Included inside an anonymous namespace (like simd_body.h), so that each instruction set's copy
// keeps internal linkage; the includer includes <cmath>, <cstdint> and <limits> first.

constexpr int kReduceLanes = 16;

// sum(|x|) in double.
template <class T>
inline double sum_abs_lanes(const T* x, int64_t n) {
  double acc[kReduceLanes] = {};
  int64_t i = 0;
  for (; i + kReduceLanes <= n; i += kReduceLanes) {
    for (int j = 0; j < kReduceLanes; ++j) acc[j] += std::fabs(static_cast<double>(x[i + j]));
  }
  for (int j = 0; i < n; ++i, ++j) acc[j] += std::fabs(static_cast<double>(x[i]));
  double s = 0;
  for (double a : acc) s += a;
  return s;
}

// acc[c] += sum over the rows of |x[r * channels + c]| in double, row after row.
template <class T>
inline void sum_abs_rows(const T* x, int64_t rows, int64_t channels, double* acc) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = x + r * channels;
    for (int64_t c = 0; c < channels; ++c) acc[c] += std::fabs(static_cast<double>(row[c]));
  }
}

// max(|x|), 0 for n == 0, NaN when any element is NaN (the reference's rule).
template <class T>
inline T max_abs_lanes(const T* x, int64_t n) {
  T m[kReduceLanes] = {};
  uint32_t nan[kReduceLanes] = {};
  int64_t i = 0;
  for (; i + kReduceLanes <= n; i += kReduceLanes) {
    for (int j = 0; j < kReduceLanes; ++j) {
      const T a = std::fabs(x[i + j]);
      m[j] = a > m[j] ? a : m[j];
      nan[j] |= static_cast<uint32_t>(a != a);
    }
  }
  for (int j = 0; i < n; ++i, ++j) {
    const T a = std::fabs(x[i]);
    m[j] = a > m[j] ? a : m[j];
    nan[j] |= static_cast<uint32_t>(a != a);
  }
  T r = 0;
  uint32_t any_nan = 0;
  for (int j = 0; j < kReduceLanes; ++j) {
    r = m[j] > r ? m[j] : r;
    any_nan |= nan[j];
  }
  return any_nan ? std::numeric_limits<T>::quiet_NaN() : r;
}

// sum(|x|) in double and the count over the elements with |x| > d (TWN's scale).
template <class T>
inline void sum_abs_above_lanes(const T* x, int64_t n, T d, double* sum, int64_t* count) {
  double acc[kReduceLanes] = {};
  int64_t cnt[kReduceLanes] = {};
  int64_t i = 0;
  for (; i + kReduceLanes <= n; i += kReduceLanes) {
    for (int j = 0; j < kReduceLanes; ++j) {
      const T a = std::fabs(x[i + j]);
      const bool above = a > d;
      acc[j] += above ? static_cast<double>(a) : 0.0;
      cnt[j] += above ? 1 : 0;
    }
  }
  for (int j = 0; i < n; ++i, ++j) {
    const T a = std::fabs(x[i]);
    acc[j] += a > d ? static_cast<double>(a) : 0.0;
    cnt[j] += a > d ? 1 : 0;
  }
  for (int j = 0; j < kReduceLanes; ++j) {
    *sum += acc[j];
    *count += cnt[j];
  }
}
