// dorefa's weights mode as a step function, for the kernel sets' forward. For M > 0 every
// operation of y = 2 * half_even((tanh(x) / (2M) + 0.5) * n) / n - 1 is non-decreasing in x:
// detail::tanh_poly (odd and non-decreasing: TanhPolyOddAndNonDecreasing, over every float with
// LOWBIT_EXHAUSTIVE=1), then correctly rounded divisions by, additions of and products with
// positive constants, and half-even rounding. So the rounded level r(x) = half_even(...) is a step
// function of x, and where it has few steps the thresholds t_j (the least float x with r(x) >=
// r(-inf) + j), found by bisection over the floats with the scalar formula itself, give every
// output by comparisons: y(x) = the output of level r(-inf) + #{j : x >= t_j}, with no tanh and no
// division, bit for bit. The operators' M is max|tanh(x)| over the input itself, so every element
// lies in [-x_max, x_max], x_max the largest float with tanh_poly(x) <= M, where the level runs
// over 0 ... n only (p in [0, 1]): the steps are those of that range (n of them: <= 15 up to 4
// bits, whatever M), and an element outside it (another M than its input's) takes the formula.
// Included inside an anonymous namespace (like reduce_body.h); the includer
// includes <cmath>, <cstdint>, <cstring> and lowbit/kernels.h first.

constexpr int kMaxDorefaSteps = 16;
// Elements per call from which finding the thresholds (about 32 scalar evaluations per step)
// costs less than the tanh and the divisions it saves.
constexpr int64_t kDorefaStepsFrom = int64_t{1} << 14;

struct DorefaSteps {
  int count = -1;                     // the number of thresholds; -1: use the formula
  float threshold[kMaxDorefaSteps];   // increasing
  float output[kMaxDorefaSteps + 1];  // output[c]: y of the inputs at or above c thresholds
  float x_max = 0;                    // the steps hold for x in [-x_max, x_max]
};

// The floats other than NaN in order as integers (-0 and +0 both 0), and back.
inline int64_t float_rank(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  const auto magnitude = static_cast<int64_t>(u & 0x7fffffffu);
  return (u >> 31) != 0 ? -magnitude : magnitude;
}
inline float float_of_rank(int64_t r) {
  const uint32_t u = r < 0 ? (0x80000000u | static_cast<uint32_t>(-r)) : static_cast<uint32_t>(r);
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

// The thresholds and outputs for (levels, M) on [-x_max, x_max], or count -1 where the formula must
// run: M not a positive finite number, levels not finite and >= 1, more than kMaxDorefaSteps steps,
// levels beyond 2^23.
inline DorefaSteps dorefa_steps(float levels, float max_abs_tanh) {
  DorefaSteps s;
  const float inf = std::numeric_limits<float>::infinity();
  if (!(max_abs_tanh > 0.0f && max_abs_tanh < inf && levels >= 1.0f && levels < inf)) return s;
  // x_max by bisection over the non-negative floats (tanh_poly is non-decreasing; odd, so the
  // range is symmetric): the largest with tanh_poly(x) <= M (infinity when M >= 1).
  int64_t in = 0, out = float_rank(inf) + 1;  // tanh_poly(in) <= M < tanh_poly(out)
  if (detail::tanh_poly(inf) <= max_abs_tanh) {
    in = float_rank(inf);
  } else {
    while (out - in > 1) {
      const int64_t mid = in + (out - in) / 2;
      (detail::tanh_poly(float_of_rank(mid)) <= max_abs_tanh ? in : out) = mid;
    }
  }
  s.x_max = float_of_rank(in);
  const float lowest = detail::dorefa_weight_level(-s.x_max, levels, max_abs_tanh);
  const float highest = detail::dorefa_weight_level(s.x_max, levels, max_abs_tanh);
  // Levels are exact integers in float below 2^23 (level + 1 must differ from level).
  if (!(highest - lowest <= static_cast<float>(kMaxDorefaSteps)) ||
      !(std::fabs(lowest) < 0x1p23f) || !(std::fabs(highest) < 0x1p23f)) {
    return s;
  }
  s.count = static_cast<int>(highest - lowest);
  int64_t below = float_rank(-s.x_max) - 1;  // r(below) < the level sought (or below the range)
  for (int j = 0; j <= s.count; ++j) {
    const float level = lowest + static_cast<float>(j);
    s.output[j] = detail::dorefa_weight_of_level(level, levels);
    if (j == s.count) break;
    int64_t at_or_above = float_rank(s.x_max);  // r(at_or_above) >= level + 1
    while (at_or_above - below > 1) {
      const int64_t mid = below + (at_or_above - below) / 2;
      if (detail::dorefa_weight_level(float_of_rank(mid), levels, max_abs_tanh) >= level + 1.0f) {
        at_or_above = mid;
      } else {
        below = mid;
      }
    }
    s.threshold[j] = float_of_rank(at_or_above);
  }
  return s;
}
