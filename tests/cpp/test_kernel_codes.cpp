// The window codes the coded forwards save for their backward: the packed layout of kernels.h
// written out and checked bit by bit, every kernel set's packed codes (per tensor and per channel)
// against detail::window_code, and the backward from codes against masked_grad from x.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernel_test_support.h"
#include "lowbit/kernels.h"

namespace lowbit {
namespace kernels {
namespace {

class CodedKernelSet : public F32KernelSet {};

// ---- the coded forwards and the backward from window codes
// ---------------------------------------

// The byte and bit of element i's plane 0 in packed window codes, by the layout of kernels.h
// written out here (plane 1 is the byte 2 further).
size_t packed_byte(int64_t i) { return static_cast<size_t>(4 * (i / 16) + (i % 16) / 8); }

uint8_t decode_packed(const std::vector<uint8_t>& code, int64_t i) {
  const bool p0 = (code[packed_byte(i)] >> (i % 8)) & 1,
             p1 = (code[packed_byte(i) + 2] >> (i % 8)) & 1;
  return p0 && p1 ? detail::kCodeAbove : (p0 ? detail::kCodeIn : (p1 ? detail::kCodeBelow : 0));
}

// Element i's window code (detail::window_code) for its window: one for all, or its channel's.
using CodeOf = std::function<uint8_t(int64_t)>;

CodeOf window_of(const float* x, float lo, float hi) {
  return [=](int64_t i) { return detail::window_code(x[i], lo, hi); };
}

CodeOf channel_windows_of(const float* x, int64_t channels, const std::vector<float>& lo,
                          const std::vector<float>& hi) {
  return [=](int64_t i) {
    return detail::window_code(x[i], lo[static_cast<size_t>(i % channels)],
                               hi[static_cast<size_t>(i % channels)]);
  };
}

// The codes code_of(i) by the layout written out; the bits past n in the last group set ("above"),
// which a backward must not read.
std::vector<uint8_t> encode_packed(int64_t n, const CodeOf& code_of) {
  std::vector<uint8_t> code(static_cast<size_t>(packed_code_bytes(n)), 0);
  for (int64_t i = 0; i < (n + 15) / 16 * 16; ++i) {
    const uint8_t c = i < n ? code_of(i) : detail::kCodeAbove;
    const auto bit = static_cast<uint8_t>(1u << (i % 8));
    if (c == detail::kCodeIn || c == detail::kCodeAbove) code[packed_byte(i)] |= bit;
    if (c == detail::kCodeBelow || c == detail::kCodeAbove) code[packed_byte(i) + 2] |= bit;
  }
  return code;
}

// Packed codes that say each element's window code, with every bit past n in the last group 0
// (the call that begins a group writes all of it).
::testing::AssertionResult PackedCodesAre(const std::vector<uint8_t>& code, const float* x,
                                          int64_t n, const CodeOf& code_of) {
  if (static_cast<int64_t>(code.size()) != packed_code_bytes(n) || code.size() % 4 != 0) {
    return ::testing::AssertionFailure() << code.size() << " bytes of codes for " << n;
  }
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t want = code_of(i), got = decode_packed(code, i);
    if (want != got) {
      return ::testing::AssertionFailure() << "code " << i << " of input " << show(x[i])
                                           << ": want " << int{want} << ", got " << int{got};
    }
  }
  for (int64_t i = n; i < (n + 15) / 16 * 16; ++i) {
    if (decode_packed(code, i) != 0) {
      return ::testing::AssertionFailure() << "bits of element " << i << " past " << n << " set";
    }
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult PackedCodesAre(const std::vector<uint8_t>& code, const float* x,
                                          int64_t n, float lo, float hi) {
  return PackedCodesAre(code, x, n, window_of(x, lo, hi));
}

TEST(PackedCodes, LayoutAndSizes) {
  EXPECT_EQ(packed_code_bytes(0), 0);
  EXPECT_EQ(packed_code_bytes(1), 4);
  EXPECT_EQ(packed_code_bytes(16), 4);
  EXPECT_EQ(packed_code_bytes(17), 8);
  const std::vector<float> x = {0.5f, -2.0f, 3.0f,  kNaN, -1.0f, 1.0f,  -kInf, kInf, 0.0f,
                                7.0f, -7.0f, 0.25f, kNaN, 1.5f,  -1.5f, 0.0f,  2.0f};
  const auto n = static_cast<int64_t>(x.size());
  std::vector<uint8_t> code(static_cast<size_t>(packed_code_bytes(n)), 0x5a);
  pack_window_codes(x.data(), 0, n, -1.0f, 1.0f, code.data());
  // Elements 0-7: in, below, above, NaN, in, in, below, above: plane 0 = in or above, plane 1 =
  // below or above, element k at bit k.
  EXPECT_EQ(code[0], 0b10110101);
  EXPECT_EQ(code[2], 0b11000110);
  // Elements 8-15: in, above, below, in, NaN, above, below, in; element 16 (above) in the next
  // group.
  EXPECT_EQ(code[1], 0b10101011);
  EXPECT_EQ(code[3], 0b01100110);
  EXPECT_EQ(code[4], 0b1);
  EXPECT_EQ(code[6], 0b1);
  EXPECT_EQ(code[5], 0);  // elements 24-31: none, written as 0 (the group was begun)
  EXPECT_EQ(code[7], 0);
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_EQ(packed_code(code.data(), i), detail::window_code(x[i], -1.0f, 1.0f)) << i;
  }
}

TEST_P(CodedKernelSet, CodedForwardsMatchReference) {
  std::mt19937 rng(111);
  InputMaker in(1011);
  const std::vector<NamedParams> all = fake_quant_params();
  for (size_t j = 0; j < all.size(); j += 3) {
    const FakeQuantParams<float>& p = all[j].p;
    const float lo = p.degenerate ? -kInf : p.nudged_min, hi = p.degenerate ? kInf : p.nudged_max;
    const std::vector<float> specials = fake_quant_specials(p, rng);
    for (FakeQuantRounding r : {FakeQuantRounding::kMulInvScale, FakeQuantRounding::kDivScale}) {
      for (int64_t n : sizes()) {
        for (int trial = 0; trial < trials_for(n); ++trial) {
          SCOPED_TRACE(all[j].name + ", " + rounding_name(r) + ", n " + std::to_string(n));
          const Array x = in.flat(n, specials, trial);
          Array want(n, false, kRefFill), got(n, false, kGotFill);
          std::vector<uint8_t> got_code(static_cast<size_t>(packed_code_bytes(n)), 0xdd);
          ref().fake_quant(x.data(), want.data(), n, p, r);
          k().fake_quant_packed(x.data(), got.data(), got_code.data(), n, p, r, lo, hi);
          ASSERT_TRUE(BitwiseEqual(want.data(), got.data(), n, x.data()));
          ASSERT_TRUE(PackedCodesAre(got_code, x.data(), n, lo, hi));
          // Into a misaligned output (the _nt sets' ordinary stores): the same.
          Array shifted(n, true, kGotFill);
          std::fill(got_code.begin(), got_code.end(), 0xdd);
          k().fake_quant_packed(x.data(), shifted.data(), got_code.data(), n, p, r, lo, hi);
          ASSERT_TRUE(BitwiseEqual(want.data(), shifted.data(), n, x.data()));
          ASSERT_TRUE(PackedCodesAre(got_code, x.data(), n, lo, hi));
          // In calls that start at multiples of 16 elements, each into its own group of codes.
          std::fill(got_code.begin(), got_code.end(), 0xdd);
          std::fill(got.data(), got.data() + n, kGotFill);
          for (int64_t start = 0; start < n; start += 80) {
            const int64_t len = std::min<int64_t>(80, n - start);
            k().fake_quant_packed(x.data() + start, got.data() + start,
                                  got_code.data() + packed_code_bytes(start), len, p, r, lo, hi);
          }
          ASSERT_TRUE(BitwiseEqual(want.data(), got.data(), n, x.data()));
          ASSERT_TRUE(PackedCodesAre(got_code, x.data(), n, lo, hi));
          // Sign with the clip window [-1, 1].
          std::fill(got_code.begin(), got_code.end(), 0xdd);
          ref().sign(x.data(), want.data(), n, 0.5f);
          k().sign_packed(x.data(), got.data(), got_code.data(), n, 0.5f, -1.0f, 1.0f);
          ASSERT_TRUE(BitwiseEqual(want.data(), got.data(), n, x.data()));
          ASSERT_TRUE(PackedCodesAre(got_code, x.data(), n, -1.0f, 1.0f));
          // An empty window (lo > hi): below wins over above, as in detail::window_code.
          std::fill(got_code.begin(), got_code.end(), 0xdd);
          k().sign_packed(x.data(), got.data(), got_code.data(), n, 0.5f, 1.0f, -1.0f);
          ASSERT_TRUE(PackedCodesAre(got_code, x.data(), n, 1.0f, -1.0f));
          // Without codes, the plain forwards' outputs.
          k().fake_quant_packed(x.data(), got.data(), nullptr, n, p, r, lo, hi);
          ref().fake_quant(x.data(), want.data(), n, p, r);
          ASSERT_TRUE(BitwiseEqual(want.data(), got.data(), n, x.data()));
        }
      }
    }
  }
  for (int64_t channels : kChannelCounts) {
    for (int64_t rows : kRowCounts) {
      std::vector<FakeQuantParams<float>> p;
      std::vector<float> lo, hi;
      std::vector<std::vector<float>> specials;
      for (int64_t c = 0; c < channels; ++c) {
        p.push_back(all[static_cast<size_t>(c * 7) % all.size()].p);
        lo.push_back(p.back().degenerate ? -kInf : p.back().nudged_min);
        hi.push_back(p.back().degenerate ? kInf : p.back().nudged_max);
        specials.push_back(fake_quant_specials(p.back(), rng));
      }
      const int64_t n = rows * channels;
      const Array x = in.per_channel(rows, channels, specials, 1);
      Array want(n, false, kRefFill), got(n, false, kGotFill);
      std::vector<uint8_t> got_code(static_cast<size_t>(packed_code_bytes(n)), 0xdd);
      ref().fake_quant_per_channel(x.data(), want.data(), rows, channels, p.data(),
                                   FakeQuantRounding::kMulInvScale);
      k().fake_quant_per_channel_packed(x.data(), got.data(), got_code.data(), rows, channels,
                                        p.data(), FakeQuantRounding::kMulInvScale, lo.data(),
                                        hi.data());
      SCOPED_TRACE("rows " + std::to_string(rows) + ", channels " + std::to_string(channels));
      ASSERT_TRUE(BitwiseEqual(want.data(), got.data(), n, x.data(), channels));
      ASSERT_TRUE(
          PackedCodesAre(got_code, x.data(), n, channel_windows_of(x.data(), channels, lo, hi)));
      // Empty windows (lo > hi) in every channel: below wins over above, as in the reference.
      std::fill(got_code.begin(), got_code.end(), 0xdd);
      k().fake_quant_per_channel_packed(x.data(), got.data(), got_code.data(), rows, channels,
                                        p.data(), FakeQuantRounding::kMulInvScale, hi.data(),
                                        lo.data());
      ASSERT_TRUE(
          PackedCodesAre(got_code, x.data(), n, channel_windows_of(x.data(), channels, hi, lo)));
      // In calls over blocks of rows that start at multiples of 16 elements (as the operators'
      // tasks do), each into its own groups of codes: the same. The last block first, so that a
      // block writing into its successor's groups would not be overwritten by it.
      const int64_t unit = 16 / std::gcd<int64_t>(channels, 16);
      std::fill(got_code.begin(), got_code.end(), 0xdd);
      std::fill(got.data(), got.data() + n, kGotFill);
      for (int64_t row = (rows - 1) / (3 * unit) * (3 * unit); rows > 0 && row >= 0;
           row -= 3 * unit) {
        const int64_t start = row * channels;
        k().fake_quant_per_channel_packed(x.data() + start, got.data() + start,
                                          got_code.data() + packed_code_bytes(start),
                                          std::min(3 * unit, rows - row), channels, p.data(),
                                          FakeQuantRounding::kMulInvScale, lo.data(), hi.data());
      }
      ASSERT_TRUE(BitwiseEqual(want.data(), got.data(), n, x.data(), channels));
      ASSERT_TRUE(
          PackedCodesAre(got_code, x.data(), n, channel_windows_of(x.data(), channels, lo, hi)));
      // Without a code array the same outputs, and nothing else written.
      Array no_codes(n, false, kGotFill);
      k().fake_quant_per_channel_packed(x.data(), no_codes.data(), nullptr, rows, channels,
                                        p.data(), FakeQuantRounding::kMulInvScale, lo.data(),
                                        hi.data());
      ASSERT_TRUE(BitwiseEqual(want.data(), no_codes.data(), n, x.data(), channels));
    }
  }
}

// The backward from codes gives exactly what masked_grad computes from x (closed window), in every
// set: dx bit for bit and the same sums, per tensor and per channel.
TEST_P(CodedKernelSet, CodedGradEqualsMaskedGradFromX) {
  InputMaker in(1012);
  const float lo = -0.75f, hi = 1.5f;
  std::vector<float> specials = common_specials();
  add_with_neighbours(&specials, lo);
  add_with_neighbours(&specials, hi);
  for (int64_t n : sizes()) {
    for (int trial = 0; trial < trials_for(n); ++trial) {
      SCOPED_TRACE("n " + std::to_string(n) + ", trial " + std::to_string(trial));
      const Array x = in.flat(n, specials, trial);
      const Array g = in.flat(n, gradient_specials(), trial == 1 ? 0 : trial);
      const std::vector<uint8_t> code = encode_packed(n, window_of(x.data(), lo, hi));
      Array want(n, false, kRefFill), got(n, false, kGotFill);
      double want_below = 0.5, want_above = -2.0, got_below = 0.5, got_above = -2.0;
      ref().masked_grad(g.data(), x.data(), want.data(), n, lo, hi, Interval::kClosed, &want_below,
                        &want_above);
      k().packed_grad(g.data(), code.data(), got.data(), n, &got_below, &got_above);
      ASSERT_TRUE(BitwiseEqual(want.data(), got.data(), n, x.data()));
      ASSERT_TRUE(SameSum(want_below, got_below)) << "below";
      ASSERT_TRUE(SameSum(want_above, got_above)) << "above";
      // In calls that start at multiples of 16 elements (as the operators' spans do), each from
      // its own group of codes: the same dx.
      Array parts(n, false, kGotFill);
      for (int64_t start = 0; start < n; start += 48) {
        const int64_t len = std::min<int64_t>(48, n - start);
        k().packed_grad(g.data() + start, code.data() + packed_code_bytes(start),
                        parts.data() + start, len, nullptr, nullptr);
      }
      ASSERT_TRUE(BitwiseEqual(want.data(), parts.data(), n, x.data()));
    }
  }
  for (int64_t channels : kChannelCounts) {
    for (int64_t rows : kRowCounts) {
      std::vector<float> clo, chi;
      std::vector<std::vector<float>> cspecials;
      for (int64_t c = 0; c < channels; ++c) {
        clo.push_back(-0.25f * static_cast<float>(c + 1));
        chi.push_back(0.5f * static_cast<float>(c + 1));
        std::vector<float> s = common_specials();
        add_with_neighbours(&s, clo.back());
        add_with_neighbours(&s, chi.back());
        cspecials.push_back(s);
      }
      const int64_t n = rows * channels;
      const Array x = in.per_channel(rows, channels, cspecials, 1);
      const Array g = in.flat(n, gradient_specials(), 0);
      const std::vector<uint8_t> code =
          encode_packed(n, channel_windows_of(x.data(), channels, clo, chi));
      Array want(n, false, kRefFill), got(n, false, kGotFill);
      std::vector<float> want_below(channels, 1.0f), want_above(channels, -1.0f);
      std::vector<float> got_below = want_below, got_above = want_above;
      ref().masked_grad_per_channel(g.data(), x.data(), want.data(), rows, channels, clo.data(),
                                    chi.data(), want_below.data(), want_above.data());
      k().packed_grad_per_channel(g.data(), code.data(), got.data(), rows, channels,
                                  got_below.data(), got_above.data());
      SCOPED_TRACE("rows " + std::to_string(rows) + ", channels " + std::to_string(channels));
      ASSERT_TRUE(BitwiseEqual(want.data(), got.data(), n, x.data(), channels));
      ASSERT_TRUE(SameSums(want_below.data(), got_below.data(), channels)) << "below";
      ASSERT_TRUE(SameSums(want_above.data(), got_above.data(), channels)) << "above";
      // In calls over blocks of rows that start at multiples of 16 elements, each from its own
      // groups of codes, summing in row order into the same arrays: the same dx and sums.
      const int64_t unit = 16 / std::gcd<int64_t>(channels, 16);
      Array parts(n, false, kGotFill);
      got_below.assign(channels, 1.0f);
      got_above.assign(channels, -1.0f);
      for (int64_t row = 0; row < rows; row += 2 * unit) {
        const int64_t start = row * channels;
        k().packed_grad_per_channel(g.data() + start, code.data() + packed_code_bytes(start),
                                    parts.data() + start, std::min(2 * unit, rows - row), channels,
                                    got_below.data(), got_above.data());
      }
      ASSERT_TRUE(BitwiseEqual(want.data(), parts.data(), n, x.data(), channels));
      ASSERT_TRUE(SameSums(want_below.data(), got_below.data(), channels)) << "below, in blocks";
      ASSERT_TRUE(SameSums(want_above.data(), got_above.data(), channels)) << "above, in blocks";
    }
  }
}

TEST(WindowCode, ClosedWindowAndNaN) {
  EXPECT_EQ(detail::window_code(1.0f, -1.0f, 1.0f), detail::kCodeIn);
  EXPECT_EQ(detail::window_code(-1.0f, -1.0f, 1.0f), detail::kCodeIn);
  EXPECT_EQ(detail::window_code(std::nextafter(1.0f, 2.0f), -1.0f, 1.0f), detail::kCodeAbove);
  EXPECT_EQ(detail::window_code(-kInf, -1.0f, 1.0f), detail::kCodeBelow);
  EXPECT_EQ(detail::window_code(kNaN, -1.0f, 1.0f), 0);
  EXPECT_EQ(detail::window_code(kInf, -kInf, kInf), detail::kCodeIn);
}

INSTANTIATE_TEST_SUITE_P(AllSupported, CodedKernelSet, ::testing::ValuesIn(supported_f32_kernels()),
                         [](const ::testing::TestParamInfo<const F32Kernels*>& info) {
                           return std::string(info.param->isa);
                         });

}  // namespace
}  // namespace kernels
}  // namespace lowbit
