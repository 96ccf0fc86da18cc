// Renders training-curve charts into RGB pixels with a built-in 5x7 font, and writes them as PNG.
#include "lowbit/plot.h"

#include <stb_image_write.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "lowbit/io/file.h"

namespace lowbit {
namespace plot {
namespace {

constexpr uint32_t kBackground = 0xFFFFFF;
constexpr uint32_t kInk = 0x222222;  // text, frame, ticks
constexpr uint32_t kGrid = 0xE4E4E4;
constexpr uint32_t kLegendBorder = 0xB0B0B0;
constexpr int kMaxSide = 16384;

// ---- font -------------------------------------------------------------------------------------

constexpr int kGlyphW = 5, kGlyphH = 7, kAdvance = 6;

// Rows top to bottom, bit 4 the leftmost column; after the HD44780 character ROM.
struct Glyph {
  char c;
  uint8_t rows[kGlyphH];
};

constexpr Glyph kFont[] = {
    {' ', {0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000}},
    {'?', {0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b00000, 0b00100}},
    {'.', {0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b01100}},
    {',', {0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b00100, 0b01000}},
    {'-', {0b00000, 0b00000, 0b00000, 0b11111, 0b00000, 0b00000, 0b00000}},
    {'+', {0b00000, 0b00100, 0b00100, 0b11111, 0b00100, 0b00100, 0b00000}},
    {'%', {0b11000, 0b11001, 0b00010, 0b00100, 0b01000, 0b10011, 0b00011}},
    {':', {0b00000, 0b01100, 0b01100, 0b00000, 0b01100, 0b01100, 0b00000}},
    {'_', {0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b11111}},
    {'/', {0b00000, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b00000}},
    {'(', {0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0b00100, 0b00010}},
    {')', {0b01000, 0b00100, 0b00010, 0b00010, 0b00010, 0b00100, 0b01000}},
    {'=', {0b00000, 0b00000, 0b11111, 0b00000, 0b11111, 0b00000, 0b00000}},
    {'0', {0b01110, 0b10001, 0b10011, 0b10101, 0b11001, 0b10001, 0b01110}},
    {'1', {0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110}},
    {'2', {0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b01000, 0b11111}},
    {'3', {0b11111, 0b00010, 0b00100, 0b00010, 0b00001, 0b10001, 0b01110}},
    {'4', {0b00010, 0b00110, 0b01010, 0b10010, 0b11111, 0b00010, 0b00010}},
    {'5', {0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110}},
    {'6', {0b00110, 0b01000, 0b10000, 0b11110, 0b10001, 0b10001, 0b01110}},
    {'7', {0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000}},
    {'8', {0b01110, 0b10001, 0b10001, 0b01110, 0b10001, 0b10001, 0b01110}},
    {'9', {0b01110, 0b10001, 0b10001, 0b01111, 0b00001, 0b00010, 0b01100}},
    {'A', {0b01110, 0b10001, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001}},
    {'B', {0b11110, 0b10001, 0b10001, 0b11110, 0b10001, 0b10001, 0b11110}},
    {'C', {0b01110, 0b10001, 0b10000, 0b10000, 0b10000, 0b10001, 0b01110}},
    {'D', {0b11100, 0b10010, 0b10001, 0b10001, 0b10001, 0b10010, 0b11100}},
    {'E', {0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b11111}},
    {'F', {0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b10000}},
    {'G', {0b01110, 0b10001, 0b10000, 0b10111, 0b10001, 0b10001, 0b01111}},
    {'H', {0b10001, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001}},
    {'I', {0b01110, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110}},
    {'J', {0b00111, 0b00010, 0b00010, 0b00010, 0b00010, 0b10010, 0b01100}},
    {'K', {0b10001, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0b10001}},
    {'L', {0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b11111}},
    {'M', {0b10001, 0b11011, 0b10101, 0b10101, 0b10001, 0b10001, 0b10001}},
    {'N', {0b10001, 0b10001, 0b11001, 0b10101, 0b10011, 0b10001, 0b10001}},
    {'O', {0b01110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110}},
    {'P', {0b11110, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000, 0b10000}},
    {'Q', {0b01110, 0b10001, 0b10001, 0b10001, 0b10101, 0b10010, 0b01101}},
    {'R', {0b11110, 0b10001, 0b10001, 0b11110, 0b10100, 0b10010, 0b10001}},
    {'S', {0b01111, 0b10000, 0b10000, 0b01110, 0b00001, 0b00001, 0b11110}},
    {'T', {0b11111, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100}},
    {'U', {0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110}},
    {'V', {0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100}},
    {'W', {0b10001, 0b10001, 0b10001, 0b10101, 0b10101, 0b10101, 0b01010}},
    {'X', {0b10001, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0b10001}},
    {'Y', {0b10001, 0b10001, 0b10001, 0b01010, 0b00100, 0b00100, 0b00100}},
    {'Z', {0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b11111}},
    {'a', {0b00000, 0b00000, 0b01110, 0b00001, 0b01111, 0b10001, 0b01111}},
    {'b', {0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b11110}},
    {'c', {0b00000, 0b00000, 0b01110, 0b10000, 0b10000, 0b10001, 0b01110}},
    {'d', {0b00001, 0b00001, 0b01101, 0b10011, 0b10001, 0b10001, 0b01111}},
    {'e', {0b00000, 0b00000, 0b01110, 0b10001, 0b11111, 0b10000, 0b01110}},
    {'f', {0b00110, 0b01001, 0b01000, 0b11100, 0b01000, 0b01000, 0b01000}},
    {'g', {0b00000, 0b01111, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110}},
    {'h', {0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001}},
    {'i', {0b00100, 0b00000, 0b01100, 0b00100, 0b00100, 0b00100, 0b01110}},
    {'j', {0b00010, 0b00000, 0b00110, 0b00010, 0b00010, 0b10010, 0b01100}},
    {'k', {0b10000, 0b10000, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010}},
    {'l', {0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110}},
    {'m', {0b00000, 0b00000, 0b11010, 0b10101, 0b10101, 0b10001, 0b10001}},
    {'n', {0b00000, 0b00000, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001}},
    {'o', {0b00000, 0b00000, 0b01110, 0b10001, 0b10001, 0b10001, 0b01110}},
    {'p', {0b00000, 0b00000, 0b11110, 0b10001, 0b11110, 0b10000, 0b10000}},
    {'q', {0b00000, 0b00000, 0b01101, 0b10011, 0b01111, 0b00001, 0b00001}},
    {'r', {0b00000, 0b00000, 0b10110, 0b11001, 0b10000, 0b10000, 0b10000}},
    {'s', {0b00000, 0b00000, 0b01110, 0b10000, 0b01110, 0b00001, 0b11110}},
    {'t', {0b01000, 0b01000, 0b11100, 0b01000, 0b01000, 0b01001, 0b00110}},
    {'u', {0b00000, 0b00000, 0b10001, 0b10001, 0b10001, 0b10011, 0b01101}},
    {'v', {0b00000, 0b00000, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100}},
    {'w', {0b00000, 0b00000, 0b10001, 0b10001, 0b10101, 0b10101, 0b01010}},
    {'x', {0b00000, 0b00000, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001}},
    {'y', {0b00000, 0b00000, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110}},
    {'z', {0b00000, 0b00000, 0b11111, 0b00010, 0b00100, 0b01000, 0b11111}},
};

const uint8_t* glyph_rows(char c) {
  static const std::array<const Glyph*, 128> table = [] {
    std::array<const Glyph*, 128> t{};
    for (const Glyph& g : kFont) t[static_cast<unsigned char>(g.c)] = &g;
    for (const Glyph*& g : t)
      if (g == nullptr) g = &kFont[1];  // '?'
    return t;
  }();
  const auto u = static_cast<unsigned char>(c);
  return (u < 128 ? table[u] : &kFont[1])->rows;
}

int text_width(const std::string& s, int scale) {
  return s.empty() ? 0 : (static_cast<int>(s.size()) * kAdvance - 1) * scale;
}

// ---- canvas -----------------------------------------------------------------------------------

struct Rect {
  int x0 = 0, y0 = 0, x1 = 0, y1 = 0;  // [x0, x1) x [y0, y1)
  int w() const { return x1 - x0; }
  int h() const { return y1 - y0; }
};

Rect intersect(const Rect& a, const Rect& b) {
  Rect r{std::max(a.x0, b.x0), std::max(a.y0, b.y0), std::min(a.x1, b.x1), std::min(a.y1, b.y1)};
  if (r.x1 < r.x0) r.x1 = r.x0;
  if (r.y1 < r.y0) r.y1 = r.y0;
  return r;
}

class Canvas {
 public:
  Canvas(int width, int height)
      : width_(width),
        height_(height),
        pixels_(static_cast<size_t>(width) * height * 3, 0xFF),
        clip_{0, 0, width, height} {}

  int width() const { return width_; }
  int height() const { return height_; }
  std::vector<uint8_t> release() { return std::move(pixels_); }

  void set_clip(const Rect& r) { clip_ = intersect(r, Rect{0, 0, width_, height_}); }
  const Rect& clip() const { return clip_; }

  bool visible(int x, int y) const {
    return x >= clip_.x0 && x < clip_.x1 && y >= clip_.y0 && y < clip_.y1;
  }

  uint32_t get(int x, int y) const {
    const uint8_t* p = &pixels_[(static_cast<size_t>(y) * width_ + x) * 3];
    return (uint32_t{p[0]} << 16) | (uint32_t{p[1]} << 8) | p[2];
  }

  // coverage 1 writes rgb exactly; less mixes it with what is there.
  void blend(int x, int y, uint32_t rgb, double coverage) {
    if (!visible(x, y) || coverage <= 0) return;
    uint8_t* p = &pixels_[(static_cast<size_t>(y) * width_ + x) * 3];
    for (int k = 0; k < 3; ++k) {
      const double src = (rgb >> (16 - 8 * k)) & 0xFF;
      p[k] = coverage >= 1 ? static_cast<uint8_t>(src)
                           : static_cast<uint8_t>(std::lround(p[k] + (src - p[k]) * coverage));
    }
  }

  void fill(const Rect& r, uint32_t rgb) {
    const Rect c = intersect(r, clip_);
    for (int y = c.y0; y < c.y1; ++y)
      for (int x = c.x0; x < c.x1; ++x) blend(x, y, rgb, 1);
  }

  void outline(const Rect& r, uint32_t rgb) {
    fill({r.x0, r.y0, r.x1, r.y0 + 1}, rgb);
    fill({r.x0, r.y1 - 1, r.x1, r.y1}, rgb);
    fill({r.x0, r.y0, r.x0 + 1, r.y1}, rgb);
    fill({r.x1 - 1, r.y0, r.x1, r.y1}, rgb);
  }

 private:
  int width_, height_;
  std::vector<uint8_t> pixels_;
  Rect clip_;
};

// (x, y) is the top left corner of the text.
void draw_text(Canvas& c, int x, int y, const std::string& s, int scale, uint32_t rgb) {
  for (size_t i = 0; i < s.size(); ++i) {
    const uint8_t* rows = glyph_rows(s[i]);
    const int gx = x + static_cast<int>(i) * kAdvance * scale;
    for (int r = 0; r < kGlyphH; ++r)
      for (int col = 0; col < kGlyphW; ++col)
        if (rows[r] & (0x10 >> col))
          c.fill({gx + col * scale, y + r * scale, gx + (col + 1) * scale, y + (r + 1) * scale},
                 rgb);
  }
}

// Text turned a quarter counterclockwise (read bottom to top), as y axis labels are; (x, y) is the
// top left corner of the turned text, which is kGlyphH * scale wide and text_width tall.
void draw_text_up(Canvas& c, int x, int y, const std::string& s, int scale, uint32_t rgb) {
  const int bottom = y + text_width(s, scale);
  for (size_t i = 0; i < s.size(); ++i) {
    const uint8_t* rows = glyph_rows(s[i]);
    const int along = static_cast<int>(i) * kAdvance * scale;
    for (int r = 0; r < kGlyphH; ++r)
      for (int col = 0; col < kGlyphW; ++col)
        if (rows[r] & (0x10 >> col)) {
          const int yy = bottom - along - (col + 1) * scale;
          c.fill({x + r * scale, yy, x + (r + 1) * scale, yy + scale}, rgb);
        }
  }
}

// Anti-aliased strokes of one series: each pixel keeps the largest coverage any segment gives it,
// so the many short, overlapping segments of a long curve do not pile up into a darker, wider line.
class Stroke {
 public:
  explicit Stroke(const Rect& area)
      : area_(area), coverage_(static_cast<size_t>(area.w()) * area.h(), 0.0f) {}

  // A segment with round ends, width wide, between pixel-centre coordinates; a == b gives a dot.
  void segment(double ax, double ay, double bx, double by, double width) {
    if (!std::isfinite(ax) || !std::isfinite(ay) || !std::isfinite(bx) || !std::isfinite(by))
      return;
    const double r = width / 2;
    const Rect box = intersect({clamp_to_int(std::floor(std::min(ax, bx) - r - 1)),
                                clamp_to_int(std::floor(std::min(ay, by) - r - 1)),
                                clamp_to_int(std::ceil(std::max(ax, bx) + r + 2)),
                                clamp_to_int(std::ceil(std::max(ay, by) + r + 2))},
                               area_);
    const double dx = bx - ax, dy = by - ay, len2 = dx * dx + dy * dy;
    for (int y = box.y0; y < box.y1; ++y)
      for (int x = box.x0; x < box.x1; ++x) {
        double t = len2 > 0 ? ((x - ax) * dx + (y - ay) * dy) / len2 : 0;
        t = std::min(1.0, std::max(0.0, t));
        const double d = std::hypot(x - (ax + t * dx), y - (ay + t * dy));
        const double cov = std::min(1.0, r + 0.5 - d);
        if (cov <= 0) continue;
        float& slot = coverage_[static_cast<size_t>(y - area_.y0) * area_.w() + (x - area_.x0)];
        slot = std::max(slot, static_cast<float>(cov));
        touched_ = touched_.w() == 0
                       ? Rect{x, y, x + 1, y + 1}
                       : Rect{std::min(touched_.x0, x), std::min(touched_.y0, y),
                              std::max(touched_.x1, x + 1), std::max(touched_.y1, y + 1)};
      }
  }

  // Paints the strokes in rgb and clears them for the next series.
  void paint(Canvas& c, uint32_t rgb) {
    for (int y = touched_.y0; y < touched_.y1; ++y)
      for (int x = touched_.x0; x < touched_.x1; ++x) {
        float& slot = coverage_[static_cast<size_t>(y - area_.y0) * area_.w() + (x - area_.x0)];
        c.blend(x, y, rgb, slot);
        slot = 0;
      }
    touched_ = Rect{};
  }

 private:
  static int clamp_to_int(double v) { return static_cast<int>(std::min(1e9, std::max(-1e9, v))); }

  Rect area_;
  std::vector<float> coverage_;
  Rect touched_;
};

// ---- axes -------------------------------------------------------------------------------------

struct Range {
  double lo = 0, hi = 1;
};

// The range of the finite values, widened by margin * span on each side; a flat range is widened
// around its value so the curve sits mid-panel; no finite value gives [0, 1].
Range axis_range(double lo, double hi, double margin) {
  if (!(lo <= hi)) return {};
  const double mag = std::max(std::abs(lo), std::abs(hi));
  if (hi - lo <= 1e-12 * mag) {
    const double d = mag > 0 ? 0.1 * mag : 1.0;
    return {lo - d, hi + d};
  }
  const double m = (hi - lo) * margin;
  Range r{lo - m, hi + m};
  if (!std::isfinite(r.lo) || !std::isfinite(r.hi)) r = {lo, hi};
  return r;
}

struct Ticks {
  std::vector<double> values;
  std::vector<std::string> labels;
  double step = 0;
};

// About target ticks at 1, 2 or 5 times a power of ten, labelled with as many decimals as the step
// needs, in exponent form when the values are very large or the step very small.
Ticks make_ticks(const Range& r, int target) {
  Ticks t;
  const double span = r.hi - r.lo;
  if (!(span > 0) || !std::isfinite(span) || target < 1) return t;
  const double raw = span / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / mag;
  t.step = (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
  if (!(t.step > 0) || !std::isfinite(t.step)) return t;
  const double first = std::ceil(r.lo / t.step);
  for (int i = 0; i < 64; ++i) {
    double v = (first + i) * t.step;
    if (v > r.hi + 1e-9 * t.step) break;
    if (std::abs(v) < 1e-9 * t.step) v = 0;  // no "-0"
    t.values.push_back(v);
  }
  const int step_exp = static_cast<int>(std::floor(std::log10(t.step) + 1e-9));
  const double max_abs = std::max(std::abs(r.lo), std::abs(r.hi));
  const bool exponent = max_abs >= 1e6 || step_exp < -5;
  const int max_exp = max_abs > 0 ? static_cast<int>(std::floor(std::log10(max_abs))) : 0;
  char buf[64];
  for (double v : t.values) {
    if (exponent)
      std::snprintf(buf, sizeof buf, "%.*e", std::min(6, std::max(0, max_exp - step_exp)), v);
    else
      std::snprintf(buf, sizeof buf, "%.*f", std::max(0, -step_exp), v);
    t.labels.push_back(buf);
  }
  return t;
}

// The most ticks, up to one per `per_tick` pixels, whose labels do not crowd each other.
template <typename Needed>
Ticks fit_ticks(const Range& r, int pixels, int per_tick, Needed needed) {
  Ticks best;
  for (int n = std::max(2, pixels / std::max(1, per_tick)); n >= 1; --n) {
    best = make_ticks(r, n);
    if (best.values.size() < 2) break;
    const double spacing = pixels * best.step / (r.hi - r.lo);
    if (spacing >= needed(best)) break;
  }
  return best;
}

// ---- one chart --------------------------------------------------------------------------------

struct Point {
  double x, y;
};

std::vector<Point> finite_points(const Series& s) {
  std::vector<Point> pts;
  const size_t n = s.x.empty() ? s.y.size() : std::min(s.x.size(), s.y.size());
  pts.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const double x = s.x.empty() ? static_cast<double>(i) : s.x[i];
    if (std::isfinite(x) && std::isfinite(s.y[i])) pts.push_back({x, s.y[i]});
  }
  return pts;
}

void draw_chart(Canvas& c, const Rect& panel, const Chart& chart, int s) {
  c.set_clip(panel);
  const int pad = 4 * s, glyph_h = kGlyphH * s, tick_len = 3 * s;
  const double line_width = s + 0.5;

  std::vector<std::vector<Point>> points;
  double xlo = std::numeric_limits<double>::infinity(), xhi = -xlo, ylo = xlo, yhi = -xlo;
  for (const Series& series : chart.series) {
    points.push_back(finite_points(series));
    for (const Point& p : points.back()) {
      xlo = std::min(xlo, p.x), xhi = std::max(xhi, p.x);
      ylo = std::min(ylo, p.y), yhi = std::max(yhi, p.y);
    }
  }
  const Range xr = axis_range(xlo, xhi, 0.0), yr = axis_range(ylo, yhi, 0.05);

  // Vertical layout first: the y ticks need the plot height, the left margin their labels.
  Rect plot;
  plot.y0 = panel.y0 + (chart.title.empty() ? pad : glyph_h + 2 * pad);
  plot.y1 = panel.y1 - (tick_len + s + glyph_h + pad) - (chart.x_label.empty() ? 0 : glyph_h + pad);
  if (plot.h() < 2) plot.y1 = plot.y0 + 2;
  const Ticks yt = fit_ticks(yr, plot.h(), 30 * s, [&](const Ticks&) { return glyph_h + 4 * s; });
  int label_w = 0;
  for (const std::string& l : yt.labels) label_w = std::max(label_w, text_width(l, s));
  plot.x0 = panel.x0 + pad + (chart.y_label.empty() ? 0 : glyph_h + pad) + label_w + s + tick_len;
  plot.x1 = panel.x1 - 2 * pad;
  Ticks xt;
  for (int pass = 0; pass < 2; ++pass) {  // the last x label may need a wider right margin
    if (plot.w() < 2) break;
    xt = fit_ticks(xr, plot.w(), 40 * s, [&](const Ticks& t) {
      int w = 0;
      for (const std::string& l : t.labels) w = std::max(w, text_width(l, s));
      return w + 6 * s;
    });
    if (xt.values.empty()) break;
    const double last = plot.x0 + (xt.values.back() - xr.lo) / (xr.hi - xr.lo) * (plot.w() - 1);
    const int overhang =
        static_cast<int>(last) + text_width(xt.labels.back(), s) / 2 + s - (panel.x1 - s);
    if (overhang <= 0) break;
    plot.x1 -= overhang;
  }

  if (!chart.title.empty()) {  // smaller rather than cut off, while the font stays legible
    int ts = s;
    while (ts > 1 && text_width(chart.title, ts) > panel.w() - 2 * pad) --ts;
    const int tw = text_width(chart.title, ts);
    const int center = plot.w() >= 2 ? (plot.x0 + plot.x1) / 2 : (panel.x0 + panel.x1) / 2;
    const int left = std::min(center - tw / 2, panel.x1 - pad - tw);
    draw_text(c, std::max(panel.x0 + pad, left), panel.y0 + pad + (s - ts) * kGlyphH / 2,
              chart.title, ts, kInk);
  }
  if (plot.w() < 2 || plot.h() < 2 || plot.y1 > panel.y1 || plot.x0 < panel.x0) return;

  auto px = [&](double x) { return plot.x0 + (x - xr.lo) / (xr.hi - xr.lo) * (plot.w() - 1); };
  auto py = [&](double y) {
    return (plot.y1 - 1) - (y - yr.lo) / (yr.hi - yr.lo) * (plot.h() - 1);
  };

  for (double v : yt.values)
    c.fill({plot.x0, static_cast<int>(std::lround(py(v))), plot.x1,
            static_cast<int>(std::lround(py(v))) + 1},
           kGrid);
  for (double v : xt.values)
    c.fill({static_cast<int>(std::lround(px(v))), plot.y0, static_cast<int>(std::lround(px(v))) + 1,
            plot.y1},
           kGrid);

  c.set_clip(plot);
  Stroke stroke(plot);
  for (size_t k = 0; k < points.size(); ++k) {
    const std::vector<Point>& p = points[k];
    if (p.size() == 1) stroke.segment(px(p[0].x), py(p[0].y), px(p[0].x), py(p[0].y), 4.0 * s + 1);
    for (size_t i = 1; i < p.size(); ++i)
      stroke.segment(px(p[i - 1].x), py(p[i - 1].y), px(p[i].x), py(p[i].y), line_width);
    stroke.paint(c, chart.series[k].rgb);
  }
  c.set_clip(panel);
  c.outline(plot, kInk);

  for (size_t i = 0; i < yt.values.size(); ++i) {
    const int y = static_cast<int>(std::lround(py(yt.values[i])));
    c.fill({plot.x0 - tick_len, y, plot.x0, y + 1}, kInk);
    draw_text(c, plot.x0 - tick_len - s - text_width(yt.labels[i], s), y - glyph_h / 2,
              yt.labels[i], s, kInk);
  }
  for (size_t i = 0; i < xt.values.size(); ++i) {
    const int x = static_cast<int>(std::lround(px(xt.values[i])));
    c.fill({x, plot.y1, x + 1, plot.y1 + tick_len}, kInk);
    draw_text(c, x - text_width(xt.labels[i], s) / 2, plot.y1 + tick_len + s, xt.labels[i], s,
              kInk);
  }
  if (!chart.x_label.empty())
    draw_text(c, (plot.x0 + plot.x1 - text_width(chart.x_label, s)) / 2,
              plot.y1 + tick_len + s + glyph_h + pad, chart.x_label, s, kInk);
  if (!chart.y_label.empty())
    draw_text_up(c, panel.x0 + pad, (plot.y0 + plot.y1 - text_width(chart.y_label, s)) / 2,
                 chart.y_label, s, kInk);

  // Legend: in whichever corner of the plot covers the fewest pixels already drawn.
  std::vector<size_t> named;
  for (size_t k = 0; k < chart.series.size(); ++k)
    if (!chart.series[k].name.empty()) named.push_back(k);
  if (named.empty()) return;
  const int sample_len = 5 * kAdvance * s, row_h = glyph_h + 3 * s;
  int names_w = 0;
  for (size_t k : named) names_w = std::max(names_w, text_width(chart.series[k].name, s));
  const int box_w = pad + sample_len + pad + names_w + pad;
  const int box_h = 2 * pad + static_cast<int>(named.size()) * row_h - 3 * s;
  const Rect inner{plot.x0 + 1, plot.y0 + 1, plot.x1 - 1, plot.y1 - 1};
  const Rect corners[] = {
      {inner.x1 - pad - box_w, inner.y0 + pad, inner.x1 - pad, inner.y0 + pad + box_h},
      {inner.x1 - pad - box_w, inner.y1 - pad - box_h, inner.x1 - pad, inner.y1 - pad},
      {inner.x0 + pad, inner.y0 + pad, inner.x0 + pad + box_w, inner.y0 + pad + box_h},
      {inner.x0 + pad, inner.y1 - pad - box_h, inner.x0 + pad + box_w, inner.y1 - pad},
  };
  Rect box = corners[0];
  long best = -1;
  for (const Rect& r : corners) {
    const Rect seen = intersect(r, inner);
    long ink = 0;
    for (int y = seen.y0; y < seen.y1; ++y)
      for (int x = seen.x0; x < seen.x1; ++x) {
        const uint32_t p = c.get(x, y);
        ink += p != kBackground && p != kGrid;
      }
    if (best < 0 || ink < best) {
      best = ink;
      box = r;
    }
  }
  c.set_clip(inner);
  c.fill(box, kBackground);
  c.outline(box, kLegendBorder);
  Stroke sample(intersect(box, inner));
  for (size_t i = 0; i < named.size(); ++i) {
    const Series& series = chart.series[named[i]];
    const int top = box.y0 + pad + static_cast<int>(i) * row_h;
    const double mid = top + glyph_h / 2;
    sample.segment(box.x0 + pad, mid, box.x0 + pad + sample_len - 1, mid, line_width);
    sample.paint(c, series.rgb);
    draw_text(c, box.x0 + 2 * pad + sample_len, top, series.name, s, kInk);
  }
}

// ---- files ------------------------------------------------------------------------------------

}  // namespace

std::vector<uint8_t> render_rgb(const std::vector<Chart>& charts, int width, int height) {
  if (width < 1 || height < 1 || width > kMaxSide || height > kMaxSide)
    throw std::invalid_argument("lowbit::plot: image size " + std::to_string(width) + "x" +
                                std::to_string(height) + " is not within 1.." +
                                std::to_string(kMaxSide));
  Canvas canvas(width, height);
  const int n = static_cast<int>(charts.size());
  for (int i = 0; i < n; ++i) {
    const Rect panel{static_cast<int>(int64_t{width} * i / n), 0,
                     static_cast<int>(int64_t{width} * (i + 1) / n), height};
    if (panel.w() < 1) continue;
    // Text scale: 2 at the default 1200 x 450 with up to three charts, 1 when smaller.
    const int scale = std::max(1, std::min({height / 225, panel.w() / 200, 8}));
    draw_chart(canvas, panel, charts[i], scale);
  }
  return canvas.release();
}

namespace {

void write_rgb_png(const std::string& path, const std::vector<uint8_t>& rgb, int width,
                   int height) {
  std::vector<uint8_t> png;
  const auto append = [](void* context, void* data, int size) {
    auto* out = static_cast<std::vector<uint8_t>*>(context);
    const auto* bytes = static_cast<const uint8_t*>(data);
    out->insert(out->end(), bytes, bytes + size);
  };
  if (stbi_write_png_to_func(append, &png, width, height, 3, rgb.data(), width * 3) == 0)
    throw std::runtime_error(path + ": cannot encode the PNG");
  io::write_file_atomically(
      path, std::string_view(reinterpret_cast<const char*>(png.data()), png.size()));
}

// White to blue by the fraction f in [0, 1].
uint32_t shade(double f) {
  const auto mix = [&](int white, int full) {
    return static_cast<uint32_t>(std::lround(white + (full - white) * std::clamp(f, 0.0, 1.0)));
  };
  return (mix(255, 0x08) << 16) | (mix(255, 0x30) << 8) | mix(255, 0x6B);
}

}  // namespace

void write_png(const std::string& path, const std::vector<Chart>& charts, int width, int height) {
  write_rgb_png(path, render_rgb(charts, width, height), width, height);
}

std::vector<uint8_t> render_confusion_rgb(const Confusion& m, int side, int* width, int* height) {
  const int64_t n = m.classes;
  if (n < 1 || static_cast<int64_t>(m.counts.size()) != n * n) {
    throw std::invalid_argument("lowbit::plot: a confusion matrix needs classes x classes counts");
  }
  if (side < 64 || side > kMaxSide) {
    throw std::invalid_argument("lowbit::plot: confusion image size " + std::to_string(side) +
                                " is not within 64.." + std::to_string(kMaxSide));
  }
  const int s = std::max(1, side / 400);  // text scale
  const auto label = [&](int64_t i) {
    return i < static_cast<int64_t>(m.labels.size()) ? m.labels[i] : std::to_string(i);
  };
  int widest = 0;
  for (int64_t i = 0; i < n; ++i) widest = std::max(widest, text_width(label(i), s));
  widest = std::min(widest, side / 3);
  const int line = (kGlyphH + 4) * s;
  const int left = widest + line + 8 * s, top = 2 * line, bottom = widest + line + 8 * s;
  const int cell = std::max(1, static_cast<int>((side - left - 8 * s) / n));
  *width = left + static_cast<int>(cell * n) + 8 * s;
  *height = top + static_cast<int>(cell * n) + bottom;
  Canvas c(*width, *height);
  draw_text(c, left, s * 4, m.title, s, 0x000000);
  for (int64_t t = 0; t < n; ++t) {
    int64_t row = 0;
    for (int64_t p = 0; p < n; ++p) row += m.counts[t * n + p];
    for (int64_t p = 0; p < n; ++p) {
      const int64_t count = m.counts[t * n + p];
      const double f = row > 0 ? static_cast<double>(count) / row : 0.0;
      const Rect r{left + static_cast<int>(p * cell), top + static_cast<int>(t * cell),
                   left + static_cast<int>((p + 1) * cell), top + static_cast<int>((t + 1) * cell)};
      c.fill(r, shade(f));
      const std::string text = std::to_string(count);
      if (text_width(text, s) + 4 * s <= cell && line <= cell) {
        draw_text(c, r.x0 + (cell - text_width(text, s)) / 2, r.y0 + (cell - kGlyphH * s) / 2, text,
                  s, f > 0.5 ? 0xFFFFFF : 0x000000);
      }
    }
  }
  c.outline({left, top, left + static_cast<int>(cell * n), top + static_cast<int>(cell * n)},
            0x000000);
  // Labels: every k-th where one line of text is taller than a cell.
  const int64_t every = std::max<int64_t>(1, (line + cell - 1) / cell);
  for (int64_t i = 0; i < n; i += every) {
    const std::string text = label(i);
    const int mid = static_cast<int>(i * cell + cell / 2) - kGlyphH * s / 2;
    c.set_clip({0, 0, left - 4 * s, *height});
    draw_text(c, left - 6 * s - text_width(text, s), top + mid, text, s, 0x000000);
    c.set_clip({0, top + static_cast<int>(cell * n) + 2 * s, *width, *height});
    draw_text_up(c, left + mid, top + static_cast<int>(cell * n) + 6 * s, text, s, 0x000000);
  }
  c.set_clip({0, 0, *width, *height});
  draw_text_up(c, s * 2, top, "true class", s, 0x444444);
  draw_text(c, left, *height - line, "predicted class", s, 0x444444);
  return c.release();
}

void write_confusion_png(const std::string& path, const Confusion& confusion, int side) {
  int width = 0, height = 0;
  const std::vector<uint8_t> rgb = render_confusion_rgb(confusion, side, &width, &height);
  write_rgb_png(path, rgb, width, height);
}

}  // namespace plot
}  // namespace lowbit
