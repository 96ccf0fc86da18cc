// Tests the PNG plot writer: the file's format and size, where each series' colour lands, atomic
// writes and their errors, and awkward data (NaN, inf, empty and single-point series, odd sizes).
#include <gtest/gtest.h>
#include <stb_image.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <set>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "lowbit/plot.h"

namespace lowbit {
namespace plot {
namespace {

namespace fs = std::filesystem;

constexpr uint32_t kRed = 0xD62728;
constexpr uint32_t kBlue = 0x1F77B4;
constexpr uint32_t kGreen = 0x2CA02C;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "lowbit_plot_XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::permissions(dir_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(dir_, ec);
  }
  const fs::path& path() const { return dir_; }
  std::set<std::string> names() const {
    std::set<std::string> out;
    for (const auto& e : fs::directory_iterator(dir_)) out.insert(e.path().filename().string());
    return out;
  }

 private:
  fs::path dir_;
};

std::vector<uint8_t> read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

uint32_t be32(const std::vector<uint8_t>& b, size_t at) {
  return (uint32_t{b[at]} << 24) | (uint32_t{b[at + 1]} << 16) | (uint32_t{b[at + 2]} << 8) |
         b[at + 3];
}

struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;

  uint32_t at(int x, int y) const {
    const uint8_t* p = &rgb[(static_cast<size_t>(y) * width + x) * 3];
    return (uint32_t{p[0]} << 16) | (uint32_t{p[1]} << 8) | p[2];
  }
  // (x, y) of every pixel exactly this colour.
  std::vector<std::pair<int, int>> find(uint32_t colour) const {
    std::vector<std::pair<int, int>> out;
    for (int y = 0; y < height; ++y)
      for (int x = 0; x < width; ++x)
        if (at(x, y) == colour) out.push_back({x, y});
    return out;
  }
};

Image render(const std::vector<Chart>& charts, int width, int height) {
  return {width, height, render_rgb(charts, width, height)};
}

Image decode_png(const fs::path& p) {
  const std::vector<uint8_t> bytes = read_bytes(p);
  int w = 0, h = 0, channels = 0;
  stbi_uc* data =
      stbi_load_from_memory(bytes.data(), static_cast<int>(bytes.size()), &w, &h, &channels, 3);
  if (data == nullptr) throw std::runtime_error("stb_image cannot decode " + p.string());
  Image img{w, h, std::vector<uint8_t>(data, data + static_cast<size_t>(w) * h * 3)};
  stbi_image_free(data);
  return img;
}

Series series(const std::string& name, std::vector<double> x, std::vector<double> y, uint32_t rgb) {
  return Series{name, std::move(x), std::move(y), rgb};
}

std::vector<double> iota(int n) {
  std::vector<double> v(n);
  for (int i = 0; i < n; ++i) v[i] = i;
  return v;
}

std::vector<Chart> loss_and_accuracy() {
  std::vector<double> step = iota(200), loss, acc;
  for (double s : step) {
    loss.push_back(2.3 * std::exp(-s / 40) + 0.2);
    acc.push_back(100 * (1 - std::exp(-s / 50)));
  }
  return {{"loss", "step", "cross entropy", {series("train", step, loss, kRed)}},
          {"accuracy", "step", "%", {series("test acc", step, acc, kBlue)}}};
}

TEST(PlotPng, StartsWithTheSignatureAndHasTheRequestedSize) {
  TempDir dir;
  const fs::path path = dir.path() / "curves.png";
  struct Size {
    int w, h;
  };
  for (const Size& size : {Size{1200, 450}, Size{640, 300}, Size{1, 1}, Size{37, 513}}) {
    SCOPED_TRACE(std::to_string(size.w) + "x" + std::to_string(size.h));
    write_png(path.string(), loss_and_accuracy(), size.w, size.h);
    const std::vector<uint8_t> b = read_bytes(path);
    ASSERT_GE(b.size(), 33u);
    const std::vector<uint8_t> signature{0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    EXPECT_TRUE(std::equal(signature.begin(), signature.end(), b.begin()));
    EXPECT_EQ(be32(b, 8), 13u);  // IHDR chunk length
    EXPECT_EQ(std::string(b.begin() + 12, b.begin() + 16), "IHDR");
    EXPECT_EQ(be32(b, 16), static_cast<uint32_t>(size.w));
    EXPECT_EQ(be32(b, 20), static_cast<uint32_t>(size.h));
    EXPECT_EQ(b[24], 8);  // bit depth
    EXPECT_EQ(b[25], 2);  // colour type: RGB
  }
  write_png(path.string(), loss_and_accuracy());
  const std::vector<uint8_t> b = read_bytes(path);
  EXPECT_EQ(be32(b, 16), 1200u);
  EXPECT_EQ(be32(b, 20), 450u);
}

TEST(PlotPng, DecodesToTheRenderedPixels) {
  TempDir dir;
  const fs::path path = dir.path() / "curves.png";
  write_png(path.string(), loss_and_accuracy(), 800, 300);
  const Image png = decode_png(path);
  const Image rendered = render(loss_and_accuracy(), 800, 300);
  ASSERT_EQ(png.width, 800);
  ASSERT_EQ(png.height, 300);
  EXPECT_TRUE(png.rgb == rendered.rgb);
}

TEST(PlotPng, SeriesColoursLandInTheirOwnPanels) {
  TempDir dir;
  const fs::path path = dir.path() / "two.png";
  const std::vector<double> x = iota(50);
  std::vector<double> y;
  for (double v : x) y.push_back(std::sin(v / 5));
  // Unnamed series: no legend, so every pixel of their colour is on the curve.
  write_png(
      path.string(),
      {{"left", "", "", {series("", x, y, kRed)}}, {"right", "", "", {series("", x, y, kBlue)}}},
      1000, 400);
  const Image img = decode_png(path);
  const auto red = img.find(kRed), blue = img.find(kBlue);
  EXPECT_GT(red.size(), 200u);
  EXPECT_GT(blue.size(), 200u);
  for (const auto& p : red) ASSERT_LT(p.first, 500) << "red at x=" << p.first;
  for (const auto& p : blue) ASSERT_GE(p.first, 500) << "blue at x=" << p.first;
}

TEST(PlotRender, RisingSeriesGoesUpToTheRight) {
  const Image img = render({{"", "", "", {series("", {0, 10}, {0, 10}, kRed)}}}, 600, 400);
  const auto red = img.find(kRed);
  ASSERT_FALSE(red.empty());
  const auto [left, right] = std::minmax_element(
      red.begin(), red.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  EXPECT_GT(right->first - left->first, 300);
  EXPECT_GT(left->second - right->second, 200) << "the higher value must be nearer the top";
}

TEST(PlotRender, FlatSeriesGetsAVisibleRangeAndSitsMidPanel) {
  for (double level : {0.0, 3.0, -1e-7, 5e8}) {
    SCOPED_TRACE(level);
    const Image img = render(
        {{"", "", "", {series("", iota(20), std::vector<double>(20, level), kGreen)}}}, 600, 400);
    const auto green = img.find(kGreen);
    ASSERT_GT(green.size(), 300u);
    int top = img.height, bottom = 0;
    for (const auto& p : green) top = std::min(top, p.second), bottom = std::max(bottom, p.second);
    EXPECT_LE(bottom - top, 3) << "a flat series is a horizontal line";
    EXPECT_GT(top, img.height * 3 / 10);
    EXPECT_LT(bottom, img.height * 7 / 10);
  }
}

TEST(PlotRender, NonFinitePointsAreSkippedAndTheLineJoinsAcrossThem) {
  const Image gappy = render(
      {{"", "", "", {series("", {0, 1, 2, kNaN, 4}, {0, kNaN, kInf, 7, 1}, kRed)}}}, 600, 400);
  const Image joined = render({{"", "", "", {series("", {0, 4}, {0, 1}, kRed)}}}, 600, 400);
  EXPECT_TRUE(gappy.rgb == joined.rgb);
  const auto red = gappy.find(kRed);
  ASSERT_FALSE(red.empty());
  const auto [left, right] = std::minmax_element(red.begin(), red.end());
  EXPECT_GT(right->first - left->first, 400);
}

TEST(PlotRender, SinglePointIsDrawnAsADot) {
  const Image img = render({{"", "", "", {series("", {5}, {2}, kRed)}}}, 400, 300);
  const auto red = img.find(kRed);
  EXPECT_GE(red.size(), 9u);
  for (const auto& p : red) {
    EXPECT_NEAR(p.first, red[0].first, 10);
    EXPECT_NEAR(p.second, red[0].second, 10);
  }
}

TEST(PlotRender, LegendShowsNamedSeriesEvenWithoutData) {
  const std::vector<double> all_nan(5, kNaN);
  EXPECT_FALSE(
      render({{"", "", "", {series("eval", {}, all_nan, kRed)}}}, 600, 400).find(kRed).empty());
  EXPECT_TRUE(render({{"", "", "", {series("", {}, all_nan, kRed)}}}, 600, 400).find(kRed).empty());
}

TEST(PlotRender, TitleIsDrawnAboveThePlot) {
  const auto with_title = [](const std::string& title) {
    std::vector<Chart> charts = loss_and_accuracy();
    charts[0].title = title;
    return render(charts, 1200, 450);
  };
  const Image a = with_title("train loss"), b = with_title("TRAIN LOSS: 99.5%");
  int differing = 0;
  for (int y = 0; y < a.height; ++y)
    for (int x = 0; x < a.width; ++x)
      if (a.at(x, y) != b.at(x, y)) {
        ++differing;
        ASSERT_LT(y, 40) << "only the title changes, at (" << x << ", " << y << ")";
        ASSERT_LT(x, 600) << "only the first chart's title changes";
      }
  EXPECT_GT(differing, 100);
}

TEST(PlotRender, AwkwardDataDoesNotCrash) {
  const std::vector<Chart> charts{
      {},
      {"empty series", "x", "y", {series("none", {}, {}, kRed), series("", {1, 2}, {}, kBlue)}},
      {"all NaN", "", "", {series("nan", {kNaN, kNaN}, {kNaN, kNaN}, kRed)}},
      {"lengths",
       "step",
       "",
       {series("x longer", iota(100), {1, 2, 3}, kRed),
        series("y longer", {0, 50}, iota(1000), kBlue), series("x empty", {}, {3, 1, 2}, kGreen)}},
      {"extremes",
       "",
       "",
       {series("huge", {0, 1, 2}, {1e300, -1e300, 1e300}, kRed),
        series("tiny", {0, 1e-300}, {1e-300, 2e-300}, kBlue),
        series("inf", {-kInf, 0, kInf}, {kInf, 1, -kInf}, kGreen)}},
      {"unsorted ~!@#$^&*{}", "", "", {series("back and forth", {3, 1, 2, 1}, {1, 2, 3, 4}, kRed)}},
  };
  struct Size {
    int w, h;
  };
  for (const Size& size : {Size{1, 1}, Size{2, 2}, Size{5, 3}, Size{10, 10}, Size{50, 20},
                           Size{3, 500}, Size{1200, 450}, Size{4000, 60}, Size{60, 4000}}) {
    SCOPED_TRACE(std::to_string(size.w) + "x" + std::to_string(size.h));
    EXPECT_EQ(render_rgb(charts, size.w, size.h).size(), size_t(size.w) * size.h * 3);
    for (const Chart& one : charts) render_rgb({one}, size.w, size.h);
  }
  const Image blank = render({}, 30, 20);
  EXPECT_EQ(blank.find(0xFFFFFF).size(), 600u) << "no charts: a white image";
  TempDir dir;
  write_png((dir.path() / "awkward.png").string(), charts);
  EXPECT_EQ(decode_png(dir.path() / "awkward.png").width, 1200);
}

TEST(PlotRender, RejectsImpossibleSizes) {
  EXPECT_THROW(render_rgb({}, 0, 10), std::invalid_argument);
  EXPECT_THROW(render_rgb({}, 10, -1), std::invalid_argument);
  EXPECT_THROW(render_rgb({}, 16385, 10), std::invalid_argument);
}

TEST(PlotPng, ReplacesTheFileAtomicallyLeavingNoTemporaryFile) {
  TempDir dir;
  const fs::path path = dir.path() / "curves.png";
  write_png(path.string(), loss_and_accuracy(), 300, 200);
  write_png(path.string(), loss_and_accuracy(), 500, 100);
  EXPECT_EQ(dir.names(), std::set<std::string>{"curves.png"});
  const Image img = decode_png(path);
  EXPECT_EQ(img.width, 500);
  EXPECT_EQ(img.height, 100);
}

void expect_error_naming(const fs::path& path) {
  try {
    write_png(path.string(), loss_and_accuracy(), 100, 50);
    ADD_FAILURE() << "no error writing " << path;
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
  }
}

TEST(PlotPng, UnwritableDirectoryThrowsNamingThePath) {
  TempDir dir;
  expect_error_naming(dir.path() / "missing" / "curves.png");
  std::ofstream(dir.path() / "plain") << "a file, not a directory";
  expect_error_naming(dir.path() / "plain" / "curves.png");
  EXPECT_EQ(dir.names(), std::set<std::string>{"plain"});
}

TEST(PlotPng, ReadOnlyDirectoryThrowsNamingThePath) {
  TempDir dir;
  const fs::path locked = dir.path() / "locked";
  fs::create_directory(locked);
  fs::permissions(locked, fs::perms::owner_read | fs::perms::owner_exec);
  if (access(locked.c_str(), W_OK) == 0) {
    GTEST_SKIP() << "running as root: a read-only directory is still writable";
  }
  expect_error_naming(locked / "curves.png");
  EXPECT_TRUE(fs::is_empty(locked));
}

TEST(PlotPng, FailedRenameRemovesTheTemporaryFile) {
  TempDir dir;
  fs::create_directory(dir.path() / "taken");  // a directory where the PNG should go
  expect_error_naming(dir.path() / "taken");
  EXPECT_EQ(dir.names(), std::set<std::string>{"taken"});
  EXPECT_TRUE(fs::is_empty(dir.path() / "taken"));
}

}  // namespace
}  // namespace plot
}  // namespace lowbit

TEST(ConfusionPng, CellsAreShadedByTheirRowsFraction) {
  lowbit::plot::Confusion m;
  m.title = "test accuracy 0.9";
  m.classes = 2;
  m.labels = {"cat", "dog"};
  m.counts = {8, 2, 0, 10};  // row 0: 80% and 20%; row 1: 0% and 100%
  int w = 0, h = 0;
  const auto rgb = lowbit::plot::render_confusion_rgb(m, 400, &w, &h);
  ASSERT_EQ(rgb.size(), static_cast<size_t>(w) * h * 3);
  EXPECT_GE(w, 300);
  EXPECT_GE(h, 300);
  // White to blue (8, 48, 107): each fraction's shade appears, a fraction absent does not.
  auto count = [&](int r, int g, int b) {
    int64_t n = 0;
    for (size_t i = 0; i < rgb.size(); i += 3)
      n += rgb[i] == r && rgb[i + 1] == g && rgb[i + 2] == b;
    return n;
  };
  auto shade = [](double f, int full) {
    return static_cast<int>(std::lround(255 + (full - 255) * f));
  };
  EXPECT_GT(count(8, 48, 107), 1000);  // the 100% cell
  EXPECT_GT(count(shade(0.8, 8), shade(0.8, 48), shade(0.8, 107)), 1000);
  EXPECT_GT(count(shade(0.2, 8), shade(0.2, 48), shade(0.2, 107)), 1000);
  EXPECT_EQ(count(shade(0.5, 8), shade(0.5, 48), shade(0.5, 107)), 0);
  m.counts.pop_back();
  EXPECT_THROW(lowbit::plot::render_confusion_rgb(m, 400, &w, &h), std::invalid_argument);
  m.counts.push_back(1);
  EXPECT_THROW(lowbit::plot::render_confusion_rgb(m, 10, &w, &h), std::invalid_argument);
}
