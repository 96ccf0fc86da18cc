// Draws training curves (loss, accuracy, ... against step or epoch) into a PNG file, without
// LibTorch or a plotting library: a built-in 5x7 pixel font and stb_image_write.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lowbit {
namespace plot {

// One curve. Points are (x[i], y[i]) for i below min(x.size(), y.size()); an empty x means
// x = 0, 1, 2, ... (one per y). Points with a non-finite coordinate (NaN, inf) are skipped and the
// line joins the finite points on either side, so a metric logged every N steps, NaN in between,
// still draws as one line. A lone finite point is drawn as a dot.
struct Series {
  std::string name;  // legend entry; an empty name has none
  std::vector<double> x, y;
  uint32_t rgb = 0x1F77B4;  // 0xRRGGBB
};

// One panel: a frame with ticks and grid lines, the x range of the data and the y range of the data
// with a margin (a flat curve gets a range around its value), a title above, axis labels, and a
// legend in the corner that covers the fewest drawn pixels. Text uses the characters 0-9 A-Z a-z
// space . , - + % : _ / ( ) = and draws any other as '?'.
struct Chart {
  std::string title;
  std::string x_label, y_label;
  std::vector<Series> series;
};

// Renders the charts side by side, in equal widths, into width x height pixels in all, as RGB bytes
// (row-major, 3 per pixel, no padding). No charts gives a white image. Throws
// std::invalid_argument unless 1 <= width, height <= 16384.
std::vector<uint8_t> render_rgb(const std::vector<Chart>& charts, int width, int height);

// Writes render_rgb(charts, width, height) to path as a PNG, atomically: into a temporary file in
// the same directory, then renamed over path, so a reader sees the old file or the whole new one.
// Throws std::runtime_error naming the path when it cannot be written.
void write_png(const std::string& path, const std::vector<Chart>& charts, int width = 1200,
               int height = 450);

// A confusion matrix: counts[true * n + predicted] for n classes, drawn as a grid of cells shaded
// by the fraction of their row (the true class), each with its count where the cell is large
// enough, true classes down the left, predicted classes along the bottom, labelled by `labels`
// (class names; empty: 0, 1, 2, ...; labels that do not fit are thinned out).
struct Confusion {
  std::string title;
  std::vector<std::string> labels;
  int64_t classes = 0;
  std::vector<int64_t> counts;
};

// Renders a confusion matrix into a square-ish image of about side x side pixels (RGB bytes); the
// image's size is returned in width and height. Throws std::invalid_argument when counts is not
// classes x classes or side is outside 64..16384.
std::vector<uint8_t> render_confusion_rgb(const Confusion& confusion, int side, int* width,
                                          int* height);
// Writes it as a PNG, atomically (as write_png).
void write_confusion_png(const std::string& path, const Confusion& confusion, int side = 800);

}  // namespace plot
}  // namespace lowbit
