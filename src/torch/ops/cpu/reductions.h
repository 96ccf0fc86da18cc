// The statistics of the Larq and Blueoil quantizers (mean and maximum of |x|, TWN's scale), in
// parallel over fixed spans of the data: the spans' results are combined in span order, so the
// result does not depend on the number of threads, and the kernel sets' reductions (lanes written
// once, detail order) make it independent of the instruction set too.
#pragma once

#include <vector>

#include "cpu_common.h"

namespace lowbit {
namespace cpu {

// sum(|x|) per channel of x seen as [outer, channels, inner] (all of x: 1, 1, numel), in double.
template <class T>
std::vector<double> sum_abs_per_channel(const T* x, int64_t outer, int64_t channels,
                                        int64_t inner) {
  const Kernels<T> r(0);  // reductions write nothing: any set
  std::vector<double> out(static_cast<size_t>(channels), 0.0);
  if (outer == 0 || channels == 0 || inner == 0) return out;
  if (inner == 1) {
    // [outer, channels]: spans of whole rows, each into its own partial array.
    const int64_t span_rows = std::max<int64_t>(1, kSumSpan / channels);
    const int64_t spans = (outer + span_rows - 1) / span_rows;
    std::vector<double> partial(static_cast<size_t>(spans * channels), 0.0);
    at::parallel_for(0, spans, 1, [&](int64_t b, int64_t e) {
      for (int64_t s = b; s < e; ++s) {
        const int64_t row = s * span_rows;
        r.sum_abs_rows(x + row * channels, std::min(span_rows, outer - row), channels,
                       partial.data() + s * channels);
      }
    });
    for (int64_t s = 0; s < spans; ++s) {
      for (int64_t c = 0; c < channels; ++c) out[c] += partial[s * channels + c];
    }
    return out;
  }
  // Contiguous blocks of `inner` elements (block o * channels + c), each cut into fixed spans.
  const int64_t per_block = (inner + kSumSpan - 1) / kSumSpan;
  const int64_t blocks = outer * channels;
  std::vector<double> partial(static_cast<size_t>(blocks * per_block), 0.0);
  at::parallel_for(0, blocks * per_block, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t block = t / per_block, start = (t % per_block) * kSumSpan;
      partial[t] = r.sum_abs(x + block * inner + start, std::min(kSumSpan, inner - start));
    }
  });
  for (int64_t t = 0; t < blocks * per_block; ++t) out[(t / per_block) % channels] += partial[t];
  return out;
}

// max(|x|) over all of x: 0 when empty, NaN when any element is NaN.
template <class T>
T max_abs_all(const T* x, int64_t n) {
  const Kernels<T> r(0);  // reductions write nothing: any set
  const int64_t spans = (n + kSumSpan - 1) / kSumSpan;
  std::vector<T> partial(static_cast<size_t>(spans), T(0));
  at::parallel_for(0, spans, 1, [&](int64_t b, int64_t e) {
    for (int64_t s = b; s < e; ++s) {
      partial[s] = r.max_abs(x + s * kSumSpan, std::min(kSumSpan, n - s * kSumSpan));
    }
  });
  return k::ref::max_abs<T>(partial.data(), spans);
}

// sum(|x|) in double and the count over the elements with |x| > d.
template <class T>
std::pair<double, int64_t> sum_abs_above_all(const T* x, int64_t n, T d) {
  const Kernels<T> r(0);  // reductions write nothing: any set
  const int64_t spans = (n + kSumSpan - 1) / kSumSpan;
  std::vector<double> sums(static_cast<size_t>(spans), 0.0);
  std::vector<int64_t> counts(static_cast<size_t>(spans), 0);
  at::parallel_for(0, spans, 1, [&](int64_t b, int64_t e) {
    for (int64_t s = b; s < e; ++s) {
      r.sum_abs_above(x + s * kSumSpan, std::min(kSumSpan, n - s * kSumSpan), d, &sums[s],
                      &counts[s]);
    }
  });
  std::pair<double, int64_t> total{0.0, 0};
  for (int64_t s = 0; s < spans; ++s) {
    total.first += sums[s];
    total.second += counts[s];
  }
  return total;
}

}  // namespace cpu
}  // namespace lowbit
