// Tests the CIFAR-10/100 and image-folder readers on files written here (records by hand, PNG, BMP
// and JPEG by stb_image_write), format detection, and every error they report.
#include <gtest/gtest.h>
#include <stb_image_write.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <vector>

#include "lowbit/data/dataset.h"

namespace lowbit {
namespace data {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

bool throws_with(const std::function<void()>& f, std::initializer_list<std::string> parts,
                 std::string* message = nullptr) {
  try {
    f();
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    if (message) *message = what;
    for (const auto& p : parts) {
      if (what.find(p) == std::string::npos) {
        ADD_FAILURE() << "'" << what << "' lacks '" << p << "'";
        return false;
      }
    }
    return true;
  }
  ADD_FAILURE() << "no error";
  return false;
}

class DatasetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("lowbit_dataset_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  void write(const fs::path& p, const Bytes& b) {
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), b.size());
  }

  // CIFAR records: label bytes, then 3072 pixels that encode (record, index) so that a misplaced
  // byte shows.
  static Bytes records(const std::vector<Bytes>& labels, unsigned seed) {
    Bytes b;
    for (size_t r = 0; r < labels.size(); ++r) {
      b.insert(b.end(), labels[r].begin(), labels[r].end());
      for (int i = 0; i < 3072; ++i)
        b.push_back(static_cast<uint8_t>((i * 7 + r * 31 + seed) % 251));
    }
    return b;
  }

  // An image of w x h x channels, interleaved, pixel (x, y, c) = f(x, y, c).
  static Bytes image(int w, int h, int channels, unsigned seed) {
    Bytes p(static_cast<size_t>(w * h * channels));
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        for (int c = 0; c < channels; ++c)
          p[(y * w + x) * channels + c] =
              static_cast<uint8_t>((x * 13 + y * 29 + c * 71 + seed) % 256);
    return p;
  }
  void png(const fs::path& p, int w, int h, int channels, unsigned seed) {
    fs::create_directories(p.parent_path());
    const Bytes px = image(w, h, channels, seed);
    ASSERT_NE(stbi_write_png(p.c_str(), w, h, channels, px.data(), w * channels), 0);
  }

  fs::path root_;
};

TEST_F(DatasetTest, Cifar10RecordsBecomeChannelPlanesAndLabels) {
  write(root_ / "data_batch_1.bin", records({{3}, {9}}, 1));
  write(root_ / "data_batch_2.bin", records({{0}}, 2));
  write(root_ / "data_batch_10.bin", records({{5}}, 3));  // numeric order: after 2
  write(root_ / "test_batch.bin", records({{7}, {1}, {2}}, 4));
  std::ofstream(root_ / "batches.meta.txt")
      << "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n";
  EXPECT_EQ(detect_format(root_.string()), "cifar-10");
  const Dataset d = load_dataset(root_.string());
  EXPECT_EQ(d.format, "cifar-10");
  EXPECT_EQ(d.num_classes, 10);
  EXPECT_EQ(d.train.images.count, 4);
  EXPECT_EQ(d.train.images.channels, 3);
  EXPECT_EQ(d.train.images.rows, 32);
  EXPECT_EQ(d.train.labels.labels, (Bytes{3, 9, 0, 5}));
  EXPECT_EQ(d.test.labels.labels, (Bytes{7, 1, 2}));
  // Record 1 of data_batch_1 is image 1: red plane, green plane, blue plane as stored.
  const Bytes r = records({{3}, {9}}, 1);
  EXPECT_TRUE(
      std::equal(r.begin() + 3073 + 1, r.begin() + 2 * 3073, d.train.images.pixels.begin() + 3072));
  // data_batch_10 came last.
  const Bytes last = records({{5}}, 3);
  EXPECT_TRUE(std::equal(last.begin() + 1, last.end(), d.train.images.pixels.begin() + 3 * 3072));
  ASSERT_EQ(d.class_names.size(), 10u);
  EXPECT_EQ(d.class_names[9], "truck");
  // Only the test split.
  LoadOptions test_only;
  test_only.with_train = false;
  EXPECT_EQ(load_dataset(root_.string(), test_only).train.images.count, 0);
}

TEST_F(DatasetTest, Cifar100UsesTheFineLabel) {
  write(root_ / "cifar-100-binary" / "train.bin", records({{19, 99}, {0, 42}}, 1));
  write(root_ / "cifar-100-binary" / "test.bin", records({{4, 7}}, 2));
  // The folder the archive unpacks to is found inside DIR.
  const Dataset d = load_dataset(root_.string());
  EXPECT_EQ(d.format, "cifar-100");
  EXPECT_EQ(d.num_classes, 100);
  EXPECT_EQ(d.train.labels.labels, (Bytes{99, 42}));
  EXPECT_EQ(d.test.labels.labels, (Bytes{7}));
  const Bytes r = records({{4, 7}}, 2);
  EXPECT_TRUE(std::equal(r.begin() + 2, r.end(), d.test.images.pixels.begin()));
}

TEST_F(DatasetTest, CifarErrorsNameTheFile) {
  const std::string test = (root_ / "test_batch.bin").string();
  write(root_ / "data_batch_1.bin", records({{1}}, 1));
  Bytes truncated = records({{1}, {2}}, 1);
  truncated.resize(truncated.size() - 5);
  write(test, truncated);
  EXPECT_TRUE(throws_with([&] { load_dataset(root_.string()); },
                          {test, "6141 bytes", "not a whole number", "3073", "truncated"}));
  write(test, records({{10}}, 1));
  EXPECT_TRUE(throws_with([&] { load_dataset(root_.string()); },
                          {test, "record 0", "label 10", "not below 10"}));
  write(test, {});
  EXPECT_TRUE(throws_with([&] { load_dataset(root_.string()); }, {test, "empty file"}));
  write(test, records({{1}}, 1));
  fs::remove(root_ / "data_batch_1.bin");
  EXPECT_TRUE(throws_with([&] { load_dataset(root_.string()); }, {"missing data_batch_1.bin"}));
  // CIFAR-100: a coarse label beyond 19 means the file is something else.
  fs::remove_all(root_);
  write(root_ / "train.bin", records({{20, 1}}, 1));
  write(root_ / "test.bin", records({{1, 1}}, 1));
  EXPECT_TRUE(throws_with([&] { load_dataset(root_.string()); },
                          {(root_ / "train.bin").string(), "coarse label 20"}));
}

TEST_F(DatasetTest, NoDataSetListsWhatWasLookedFor) {
  std::ofstream(root_ / "readme.txt") << "x";
  EXPECT_TRUE(throws_with([&] { load_dataset(root_.string()); },
                          {root_.string(), "no data set found", "t10k-images-idx3-ubyte",
                           "test_batch.bin", "test.bin", "test/CLASS/"}));
  EXPECT_TRUE(throws_with([&] { load_dataset((root_ / "none").string()); }, {"does not exist"}));
  EXPECT_TRUE(
      throws_with([&] { load_dataset((root_ / "readme.txt").string()); }, {"not a directory"}));
}

TEST_F(DatasetTest, ImageFoldersAreClassesInSortedOrder) {
  // RGB images; the second training image of "cat" is larger and gets resized.
  png(root_ / "train" / "dog" / "a.png", 6, 4, 3, 1);
  png(root_ / "train" / "cat" / "b.png", 6, 4, 3, 2);
  png(root_ / "train" / "cat" / "c.PNG", 12, 8, 3, 3);
  png(root_ / "test" / "cat" / "d.png", 6, 4, 3, 4);
  png(root_ / "test" / "dog" / "e.png", 6, 4, 4, 5);                       // RGBA: alpha dropped
  std::ofstream(root_ / "train" / "dog" / "notes.txt") << "not an image";  // ignored
  EXPECT_EQ(detect_format(root_.string()), "folders");
  LoadOptions one_thread;
  one_thread.threads = 1;
  const Dataset d = load_dataset(root_.string(), one_thread);
  EXPECT_EQ(d.format, "folders");
  EXPECT_EQ(d.class_names, (std::vector<std::string>{"cat", "dog"}));
  EXPECT_EQ(d.num_classes, 2);
  EXPECT_EQ(d.train.labels.labels, (Bytes{0, 0, 1}));
  EXPECT_EQ(d.test.labels.labels, (Bytes{0, 1}));
  const Images& im = d.train.images;
  EXPECT_EQ(im.channels, 3);
  EXPECT_EQ(im.rows, 4);  // the first training image's size (cat/b.png)
  EXPECT_EQ(im.cols, 6);
  // cat/b.png exactly, as channel planes.
  const Bytes b = image(6, 4, 3, 2);
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 4; ++y)
      for (int x = 0; x < 6; ++x)
        ASSERT_EQ(im.pixels[(c * 4 + y) * 6 + x], b[(y * 6 + x) * 3 + c]) << c << y << x;
  // dog/e.png's RGB without its alpha.
  const Bytes e = image(6, 4, 4, 5);
  const uint8_t* t = d.test.images.pixels.data() + 72;
  for (int c = 0; c < 3; ++c) EXPECT_EQ(t[c * 24 + 5], e[5 * 4 + c]);
  // The same with several decoding threads, and at a given size.
  LoadOptions many;
  many.threads = 3;
  EXPECT_EQ(load_dataset(root_.string(), many).train.images.pixels, im.pixels);
  LoadOptions sized;
  sized.height = 3;
  sized.width = 5;
  const Dataset s = load_dataset(root_.string(), sized);
  EXPECT_EQ(s.train.images.rows, 3);
  EXPECT_EQ(s.test.images.cols, 5);
  EXPECT_EQ(s.train.images.pixels.size(), 3u * 3 * 3 * 5);
}

TEST_F(DatasetTest, GrayscalePngBmpAndJpegFolders) {
  png(root_ / "train" / "x" / "a.png", 5, 5, 1, 9);
  png(root_ / "test" / "x" / "b.png", 5, 5, 1, 8);
  const Dataset d = load_dataset(root_.string());
  EXPECT_EQ(d.train.images.channels, 1);
  EXPECT_EQ(d.train.images.pixels, image(5, 5, 1, 9));
  // stb writes BMP and JPEG as 3 components: an RGB data set; BMP is lossless.
  fs::remove_all(root_);
  fs::create_directories(root_ / "train" / "x");
  fs::create_directories(root_ / "test" / "x");
  const Bytes rgb = image(5, 5, 3, 7);
  ASSERT_NE(stbi_write_bmp((root_ / "train" / "x" / "a.bmp").c_str(), 5, 5, 3, rgb.data()), 0);
  ASSERT_NE(stbi_write_jpg((root_ / "test" / "x" / "b.jpeg").c_str(), 5, 5, 3, rgb.data(), 95), 0);
  const Dataset c = load_dataset(root_.string());
  EXPECT_EQ(c.train.images.channels, 3);
  EXPECT_EQ(c.train.images.pixels[5 * 5 + 7], rgb[7 * 3 + 1]);  // green plane, pixel 7
  EXPECT_EQ(c.test.images.count, 1);
}

TEST_F(DatasetTest, ImageFolderErrorsNameTheFolderOrFile) {
  png(root_ / "train" / "a" / "1.png", 4, 4, 3, 1);
  png(root_ / "train" / "b" / "1.png", 4, 4, 3, 1);
  png(root_ / "test" / "a" / "1.png", 4, 4, 3, 1);
  // A class without test images.
  EXPECT_TRUE(throws_with([&] { load_dataset(root_.string()); },
                          {(root_ / "test" / "b").string(), "class 'b'", "no test folder"}));
  png(root_ / "test" / "c" / "1.png", 4, 4, 3, 1);
  png(root_ / "test" / "b" / "1.png", 4, 4, 3, 1);
  EXPECT_TRUE(throws_with([&] { load_dataset(root_.string()); },
                          {(root_ / "train" / "c").string(), "no training folder"}));
  png(root_ / "train" / "c" / "1.png", 4, 4, 3, 1);
  // An empty class.
  fs::create_directories(root_ / "train" / "d");
  fs::create_directories(root_ / "test" / "d");
  std::ofstream(root_ / "train" / "d" / "x.txt") << "x";
  EXPECT_TRUE(throws_with([&] { load_dataset(root_.string()); },
                          {(root_ / "train" / "d").string(), "empty class"}));
  png(root_ / "train" / "d" / "1.png", 4, 4, 3, 1);
  png(root_ / "test" / "d" / "1.png", 4, 4, 1, 1);
  // Mixed channel counts name the file and the first image.
  EXPECT_TRUE(throws_with([&] { load_dataset(root_.string()); },
                          {(root_ / "test" / "d" / "1.png").string(), "mixed channel counts",
                           "grayscale", (root_ / "train" / "a" / "1.png").string(), "RGB"}));
  png(root_ / "test" / "d" / "1.png", 4, 4, 3, 1);
  EXPECT_EQ(load_dataset(root_.string()).num_classes, 4);
  // A corrupt file: a truncated PNG, and text named .jpg.
  const fs::path bad = root_ / "train" / "b" / "2.png";
  png(bad, 4, 4, 3, 1);
  fs::resize_file(bad, 40);
  EXPECT_TRUE(throws_with([&] { load_dataset(root_.string()); },
                          {bad.string(), "cannot decode the image"}));
  fs::remove(bad);
  std::ofstream(root_ / "test" / "a" / "0.jpg") << "not a jpeg";
  EXPECT_TRUE(throws_with([&] { load_dataset(root_.string()); },
                          {(root_ / "test" / "a" / "0.jpg").string(), "cannot decode"}));
}

}  // namespace
}  // namespace data
}  // namespace lowbit
