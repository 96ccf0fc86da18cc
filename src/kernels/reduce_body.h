// Reductions over |x| written once, in a fixed lane structure: kReduceLanes independent
// accumulators, element i in lane i % kReduceLanes, the lanes added in order at the end. Every
// kernel set compiles these with its own instruction flags (so the compiler vectorizes the lanes)
// and gets the same result bit for bit, whatever the instruction set.
// Included inside an anonymous namespace (like simd_body.h), so that each instruction set's copy
// keeps internal linkage; the includer includes <cmath>, <cstdint>, <cstring>, <limits> and
// <type_traits> first.

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

// max(|x|), 0 for n == 0, the default quiet NaN when any element is NaN (the reference's rule). The
// magnitudes of float32 and float64 order as their bit patterns do, NaNs above infinity: an integer
// maximum of the patterns, which vectorizes (a float compare-and-select would be a branch here).
template <class T>
inline T max_abs_lanes(const T* x, int64_t n) {
  using U = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  constexpr U kMagnitude = ~U{0} >> 1;
  U m[kReduceLanes] = {};
  int64_t i = 0;
  for (; i + kReduceLanes <= n; i += kReduceLanes) {
    for (int j = 0; j < kReduceLanes; ++j) {
      U u;
      std::memcpy(&u, x + i + j, sizeof u);
      u &= kMagnitude;
      m[j] = u > m[j] ? u : m[j];
    }
  }
  for (int j = 0; i < n; ++i, ++j) {
    U u;
    std::memcpy(&u, x + i, sizeof u);
    u &= kMagnitude;
    m[j] = u > m[j] ? u : m[j];
  }
  U r = 0;
  for (int j = 0; j < kReduceLanes; ++j) r = m[j] > r ? m[j] : r;
  T out;
  std::memcpy(&out, &r, sizeof out);
  return out != out ? std::numeric_limits<T>::quiet_NaN() : out;  // one NaN for every set
}

// x itself where keep, else +0 (a bit mask: a float select here would be a branch).
template <class T>
inline T kept_or_zero(T x, bool keep) {
  using U = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  U u;
  std::memcpy(&u, &x, sizeof u);
  u &= U{0} - static_cast<U>(keep);
  std::memcpy(&x, &u, sizeof u);
  return x;
}

// sum(|x|) in double and the count over the elements with |x| > d (TWN's scale), in two loops
// (one fused loop was not vectorized); the caller's spans keep x in cache for the second.
template <class T>
inline void sum_abs_above_lanes(const T* x, int64_t n, T d, double* sum, int64_t* count) {
  double acc[kReduceLanes] = {};
  int64_t cnt[kReduceLanes] = {};
  const int64_t whole = n - n % kReduceLanes;
  for (int64_t i = 0; i < whole; i += kReduceLanes) {
    for (int j = 0; j < kReduceLanes; ++j) {
      const T a = std::fabs(x[i + j]);
      acc[j] += static_cast<double>(kept_or_zero(a, a > d));
    }
  }
  for (int64_t i = 0; i < whole; i += kReduceLanes) {
    for (int j = 0; j < kReduceLanes; ++j) cnt[j] += static_cast<int64_t>(std::fabs(x[i + j]) > d);
  }
  for (int64_t i = whole, j = 0; i < n; ++i, ++j) {
    const T a = std::fabs(x[i]);
    acc[j] += static_cast<double>(kept_or_zero(a, a > d));
    cnt[j] += static_cast<int64_t>(a > d);
  }
  for (int j = 0; j < kReduceLanes; ++j) {
    *sum += acc[j];
    *count += cnt[j];
  }
}
