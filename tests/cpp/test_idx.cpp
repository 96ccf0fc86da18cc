// Tests the IDX reader on small files written here (plain and gzipped), every error it reports, and
// Fashion-MNIST when Debian's dataset-fashion-mnist is installed.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <zlib.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "lowbit/data/idx.h"

namespace lowbit {
namespace data {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

constexpr uint32_t kImagesMagic = 0x00000803;
constexpr uint32_t kLabelsMagic = 0x00000801;

void put_be32(Bytes& b, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) b.push_back(static_cast<uint8_t>(v >> shift));
}

Bytes images_file(uint32_t count, uint32_t rows, uint32_t cols, const Bytes& pixels,
                  uint32_t magic = kImagesMagic) {
  Bytes b;
  put_be32(b, magic);
  put_be32(b, count);
  put_be32(b, rows);
  put_be32(b, cols);
  b.insert(b.end(), pixels.begin(), pixels.end());
  return b;
}

Bytes labels_file(uint32_t count, const Bytes& labels, uint32_t magic = kLabelsMagic) {
  Bytes b;
  put_be32(b, magic);
  put_be32(b, count);
  b.insert(b.end(), labels.begin(), labels.end());
  return b;
}

Bytes labels_file(const Bytes& labels) {
  return labels_file(static_cast<uint32_t>(labels.size()), labels);
}

// Bytes above 127 too, so a signed read would show.
Bytes known_pixels(size_t n, unsigned seed) {
  Bytes p(n);
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(i * 37 + seed * 101 + 11);
  return p;
}

void write_plain(const fs::path& path, const Bytes& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(f.good()) << path;
}

void write_gz(const fs::path& path, const Bytes& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  if (!bytes.empty()) {
    EXPECT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())),
              static_cast<int>(bytes.size()));
  }
  EXPECT_EQ(gzclose(f), Z_OK) << path;
}

Bytes read_all(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// Passes when f throws std::runtime_error whose what() contains every one of parts.
::testing::AssertionResult ThrowsWith(const std::function<void()>& f,
                                      std::initializer_list<std::string> parts) {
  std::string msg;
  try {
    f();
    return ::testing::AssertionFailure() << "no exception thrown";
  } catch (const std::runtime_error& e) {
    msg = e.what();
  }
  for (const std::string& p : parts) {
    if (msg.find(p) == std::string::npos) {
      return ::testing::AssertionFailure() << "\"" << p << "\" is not in the message: " << msg;
    }
  }
  return ::testing::AssertionSuccess() << msg;
}

const char* const kTrainImages = "train-images-idx3-ubyte";
const char* const kTrainLabels = "train-labels-idx1-ubyte";
const char* const kTestImages = "t10k-images-idx3-ubyte";
const char* const kTestLabels = "t10k-labels-idx1-ubyte";

// A fresh directory per test, removed afterwards.
class IdxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "lowbit_idx_XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  fs::path at(const std::string& name) const { return dir_ / name; }
  std::string dir() const { return dir_.string(); }

  // Train: 5 images of 3x4, labels 4 0 3 1 2; test: 2 images, labels 6 5. So 7 classes, and only
  // counting the test split finds them all.
  const Bytes train_pixels_ = known_pixels(5 * 3 * 4, 1);
  const Bytes test_pixels_ = known_pixels(2 * 3 * 4, 2);
  const Bytes train_labels_ = {4, 0, 3, 1, 2};
  const Bytes test_labels_ = {6, 5};

  // gz: which of the four files (train images, train labels, test images, test labels) to gzip.
  void write_dataset(std::array<bool, 4> gz = {false, false, false, false}) {
    const auto write = [&](bool zip, const std::string& name, const Bytes& bytes) {
      if (zip) {
        write_gz(at(name + ".gz"), bytes);
      } else {
        write_plain(at(name), bytes);
      }
    };
    write(gz[0], kTrainImages, images_file(5, 3, 4, train_pixels_));
    write(gz[1], kTrainLabels, labels_file(train_labels_));
    write(gz[2], kTestImages, images_file(2, 3, 4, test_pixels_));
    write(gz[3], kTestLabels, labels_file(test_labels_));
  }

  void expect_known_dataset(const Dataset& ds) {
    EXPECT_EQ(ds.train.images.count, 5);
    EXPECT_EQ(ds.train.images.rows, 3);
    EXPECT_EQ(ds.train.images.cols, 4);
    EXPECT_EQ(ds.train.images.pixels, train_pixels_);
    EXPECT_EQ(ds.train.labels.labels, train_labels_);
    EXPECT_EQ(ds.test.images.count, 2);
    EXPECT_EQ(ds.test.images.rows, 3);
    EXPECT_EQ(ds.test.images.cols, 4);
    EXPECT_EQ(ds.test.images.pixels, test_pixels_);
    EXPECT_EQ(ds.test.labels.labels, test_labels_);
    EXPECT_EQ(ds.num_classes, 7);
  }

  fs::path dir_;
};

// ---- round trips --------------------------------------------------------------------------------

TEST_F(IdxTest, ReadsImagesExactly) {
  const Bytes pixels = known_pixels(5 * 3 * 4, 0);
  write_plain(at("img"), images_file(5, 3, 4, pixels));
  const Images im = read_idx_images(at("img").string());
  EXPECT_EQ(im.count, 5);
  EXPECT_EQ(im.rows, 3);
  EXPECT_EQ(im.cols, 4);
  EXPECT_EQ(im.pixels, pixels);
}

TEST_F(IdxTest, ReadsLabelsExactly) {
  const Bytes labels = {0, 1, 2, 3, 4, 5, 6, 255};
  write_plain(at("lab"), labels_file(labels));
  EXPECT_EQ(read_idx_labels(at("lab").string()).labels, labels);
}

TEST_F(IdxTest, ReadsEmptyLabelFile) {
  write_plain(at("lab"), labels_file({}));
  EXPECT_TRUE(read_idx_labels(at("lab").string()).labels.empty());
}

TEST_F(IdxTest, ReadsGzipByItsMagicBytesWhateverTheName) {
  const Bytes pixels = known_pixels(7 * 5 * 2, 3);
  write_gz(at("img.gz"), images_file(7, 5, 2, pixels));
  write_gz(at("img-no-suffix"), images_file(7, 5, 2, pixels));
  for (const char* name : {"img.gz", "img-no-suffix"}) {
    const Images im = read_idx_images(at(name).string());
    EXPECT_EQ(im.count, 7) << name;
    EXPECT_EQ(im.rows, 5) << name;
    EXPECT_EQ(im.cols, 2) << name;
    EXPECT_EQ(im.pixels, pixels) << name;
  }
  const Bytes labels = {9, 8, 7};
  write_gz(at("lab.gz"), labels_file(labels));
  EXPECT_EQ(read_idx_labels(at("lab.gz").string()).labels, labels);
}

// Larger than the reader's input buffer and chunk, so refills and chunk boundaries are crossed.
TEST_F(IdxTest, ReadsLargeFilesAcrossChunks) {
  const Bytes pixels = known_pixels(3000 * 20 * 20, 4);  // 1.2 MB
  write_plain(at("img"), images_file(3000, 20, 20, pixels));
  write_gz(at("img.gz"), images_file(3000, 20, 20, pixels));
  EXPECT_EQ(read_idx_images(at("img").string()).pixels, pixels);
  EXPECT_EQ(read_idx_images(at("img.gz").string()).pixels, pixels);
}

// gzip allows several members back to back (what `cat a.gz b.gz` gives).
TEST_F(IdxTest, ReadsConcatenatedGzipMembers) {
  const Bytes labels = {1, 2, 3, 4, 5, 6};
  const Bytes whole = labels_file(labels);
  write_gz(at("a.gz"), Bytes(whole.begin(), whole.begin() + 5));
  write_gz(at("b.gz"), Bytes(whole.begin() + 5, whole.end()));
  Bytes both = read_all(at("a.gz"));
  const Bytes b = read_all(at("b.gz"));
  both.insert(both.end(), b.begin(), b.end());
  write_plain(at("lab.gz"), both);
  EXPECT_EQ(read_idx_labels(at("lab.gz").string()).labels, labels);
}

TEST_F(IdxTest, LoadsPlainDataset) {
  write_dataset();
  expect_known_dataset(load_idx_dataset(dir()));
}

TEST_F(IdxTest, LoadsGzippedDataset) {
  write_dataset({true, true, true, true});
  expect_known_dataset(load_idx_dataset(dir()));
}

TEST_F(IdxTest, LoadsMixedPlainAndGzippedDataset) {
  write_dataset({true, false, false, true});
  expect_known_dataset(load_idx_dataset(dir()));
}

TEST_F(IdxTest, APlainFileAndItsGzippedTwinWithTheSameDataAreOneFile) {
  write_dataset();
  write_dataset({true, true, true, true});
  expect_known_dataset(load_idx_dataset(dir()));
}

TEST_F(IdxTest, APlainFileAndAGzippedTwinThatDifferAreAnError) {
  write_dataset();
  // Different, valid contents in a .gz twin: neither file may silently win.
  write_gz(at(std::string(kTestLabels) + ".gz"), labels_file({9, 9}));
  EXPECT_TRUE(ThrowsWith(
      [&] { load_idx_dataset(dir()); },
      {at(kTestLabels).string(), "differs from", at(std::string(kTestLabels) + ".gz").string()}));
  write_gz(at(std::string(kTrainImages) + ".gz"), images_file(1, 2, 2, known_pixels(4, 9)));
  EXPECT_TRUE(ThrowsWith([&] { load_idx_dataset(dir()); },
                         {at(kTrainImages).string(), "hold different data"}));
}

TEST_F(IdxTest, LabelsAreCheckedAgainstAModelsClassesAndImageSize) {
  write_dataset();
  const Dataset ds = load_idx_dataset(dir());
  // The known data set's labels: counted per class by a loop written out here.
  std::vector<int64_t> expected(ds.num_classes, 0);
  for (uint8_t l : ds.train.labels.labels) ++expected[l];
  EXPECT_EQ(lowbit::data::class_counts(ds.train.labels, ds.num_classes), expected);
  // Train labels 4 0 3 1 2, test labels 6 5: the first label out of range, split by split.
  EXPECT_TRUE(ThrowsWith(
      [&] { lowbit::data::check_labels(ds, 4, "X"); },
      {at(kTrainLabels).string() + ": label 4 (at index 0) is outside the 4 classes (0-3) of X"}));
  EXPECT_TRUE(ThrowsWith([&] { lowbit::data::check_labels(ds, 6, "X"); },
                         {at(kTestLabels).string() + ": label 6 (at index 0)"}));
  lowbit::data::check_labels(ds, 7, "X");
  lowbit::data::ModelShape shape;
  shape.height = 3;
  shape.width = 4;
  shape.classes = ds.num_classes;
  EXPECT_EQ(lowbit::data::check_compatible(ds, "D", shape, "M"), "");
  shape.classes = ds.num_classes + 2;
  EXPECT_NE(lowbit::data::check_compatible(ds, "D", shape, "M")
                .find("has " + std::to_string(shape.classes)),
            std::string::npos);
  shape.width = 5;
  EXPECT_TRUE(
      ThrowsWith([&] { lowbit::data::check_compatible(ds, "D", shape, "M"); },
                 {"D: image sizes differ: the model M takes 3x5 images, the data set has 3x4"}));
  shape.width = 4;
  shape.channels = 3;
  EXPECT_TRUE(ThrowsWith([&] { lowbit::data::check_compatible(ds, "D", shape, "M"); },
                         {"channels differ"}));
}

// ---- errors -------------------------------------------------------------------------------------

TEST_F(IdxTest, DirectoryThatDoesNotExist) {
  const std::string missing = (dir_ / "no-such-dir").string();
  EXPECT_TRUE(ThrowsWith([&] { load_idx_dataset(missing); }, {missing, "does not exist"}));
}

TEST_F(IdxTest, DirectoryThatIsAFile) {
  write_plain(at("file"), {1, 2, 3});
  EXPECT_TRUE(ThrowsWith([&] { load_idx_dataset(at("file").string()); },
                         {at("file").string(), "not a directory"}));
}

TEST_F(IdxTest, MissingFileNamesEveryNameLookedFor) {
  write_dataset();
  fs::remove(at(kTestLabels));
  EXPECT_TRUE(ThrowsWith([&] { load_idx_dataset(dir()); },
                         {dir(), "missing", kTestLabels, std::string(kTestLabels) + ".gz"}));
}

TEST_F(IdxTest, FileThatCannotBeOpened) {
  const std::string path = at("absent").string();
  EXPECT_TRUE(ThrowsWith([&] { read_idx_images(path); }, {path, "cannot open"}));
}

// Tests run as root too, where permissions do not stop a read; a directory does.
TEST_F(IdxTest, FileThatCannotBeRead) {
  write_dataset();
  fs::remove(at(kTrainLabels));
  fs::create_directory(at(kTrainLabels));
  EXPECT_TRUE(
      ThrowsWith([&] { load_idx_dataset(dir()); }, {at(kTrainLabels).string(), "cannot read"}));
}

TEST_F(IdxTest, GzNameButNotGzipData) {
  write_plain(at("lab.gz"), labels_file({1, 2}));
  EXPECT_TRUE(ThrowsWith([&] { read_idx_labels(at("lab.gz").string()); },
                         {at("lab.gz").string(), "not a gzip file", "1f 8b", "00 00"}));
  write_plain(at("empty.gz"), {});
  EXPECT_TRUE(ThrowsWith([&] { read_idx_labels(at("empty.gz").string()); },
                         {at("empty.gz").string(), "not a gzip file", "empty"}));
}

TEST_F(IdxTest, CorruptGzipHeader) {
  // The gzip magic, then compression method 0x42 instead of 8 (deflate).
  write_plain(at("lab.gz"), {0x1F, 0x8B, 0x42, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6, 7, 8});
  EXPECT_TRUE(ThrowsWith([&] { read_idx_labels(at("lab.gz").string()); },
                         {at("lab.gz").string(), "corrupt gzip"}));
}

TEST_F(IdxTest, CorruptGzipChecksum) {
  write_gz(at("lab.gz"), labels_file({1, 2, 3}));
  Bytes gz = read_all(at("lab.gz"));
  gz[gz.size() - 8] ^= 0xFF;  // the CRC-32 of the trailer
  write_plain(at("lab.gz"), gz);
  EXPECT_TRUE(ThrowsWith([&] { read_idx_labels(at("lab.gz").string()); },
                         {at("lab.gz").string(), "corrupt gzip", "check"}));
}

TEST_F(IdxTest, BytesAfterTheGzipStream) {
  write_gz(at("lab.gz"), labels_file({1, 2, 3}));
  Bytes gz = read_all(at("lab.gz"));
  gz.insert(gz.end(), {'j', 'u', 'n', 'k'});
  write_plain(at("lab.gz"), gz);
  EXPECT_TRUE(ThrowsWith([&] { read_idx_labels(at("lab.gz").string()); },
                         {at("lab.gz").string(), "corrupt gzip", "after the end"}));
}

TEST_F(IdxTest, TruncatedGzipStream) {
  write_gz(at("img.gz"), images_file(50, 8, 8, known_pixels(50 * 8 * 8, 5)));
  Bytes gz = read_all(at("img.gz"));
  gz.resize(gz.size() / 2);
  write_plain(at("img.gz"), gz);
  EXPECT_TRUE(ThrowsWith([&] { read_idx_images(at("img.gz").string()); },
                         {at("img.gz").string(), "truncated gzip"}));
}

TEST_F(IdxTest, BadMagicNumberGivesExpectedAndFound) {
  write_plain(at("lab"), labels_file({1, 2, 3}));
  write_plain(at("img"), images_file(1, 1, 3, {1, 2, 3}));
  EXPECT_TRUE(ThrowsWith([&] { read_idx_images(at("lab").string()); },
                         {at("lab").string(), "bad magic number", "0x00000803", "0x00000801"}));
  EXPECT_TRUE(ThrowsWith([&] { read_idx_labels(at("img").string()); },
                         {at("img").string(), "bad magic number", "0x00000801", "0x00000803"}));
  // IDX int32 images (type 0x0C) are valid IDX but not what MNIST's readers take.
  write_plain(at("int"), images_file(1, 1, 1, {0, 0, 0, 1}, 0x00000C03));
  EXPECT_TRUE(ThrowsWith([&] { read_idx_images(at("int").string()); },
                         {at("int").string(), "bad magic number", "0x00000C03", "int32"}));
}

TEST_F(IdxTest, TruncatedHeader) {
  Bytes header = images_file(5, 3, 4, {});
  header.resize(10);
  write_plain(at("img"), header);
  EXPECT_TRUE(ThrowsWith([&] { read_idx_images(at("img").string()); },
                         {at("img").string(), "truncated header", "16", "10"}));
  write_plain(at("empty"), {});
  EXPECT_TRUE(ThrowsWith([&] { read_idx_labels(at("empty").string()); },
                         {at("empty").string(), "truncated header", "8", "found 0"}));
}

TEST_F(IdxTest, TruncatedDataGivesExpectedAndFoundBytes) {
  Bytes pixels = known_pixels(5 * 3 * 4, 0);
  pixels.pop_back();
  write_plain(at("img"), images_file(5, 3, 4, pixels));
  write_gz(at("img.gz"), images_file(5, 3, 4, pixels));
  for (const char* name : {"img", "img.gz"}) {
    EXPECT_TRUE(ThrowsWith([&] { read_idx_images(at(name).string()); },
                           {at(name).string(), "truncated data", "60 bytes", "found 59"}));
  }
  write_plain(at("lab"), labels_file(4, {1, 2, 3}));
  EXPECT_TRUE(ThrowsWith([&] { read_idx_labels(at("lab").string()); },
                         {at("lab").string(), "truncated data", "4 bytes", "found 3"}));
}

TEST_F(IdxTest, TrailingGarbage) {
  Bytes pixels = known_pixels(5 * 3 * 4 + 3, 0);
  write_plain(at("img"), images_file(5, 3, 4, pixels));
  write_gz(at("img.gz"), images_file(5, 3, 4, pixels));
  for (const char* name : {"img", "img.gz"}) {
    EXPECT_TRUE(ThrowsWith([&] { read_idx_images(at(name).string()); },
                           {at(name).string(), "trailing garbage", "3 bytes", "60 bytes"}));
  }
  write_plain(at("lab"), labels_file(2, {1, 2, 3}));
  EXPECT_TRUE(ThrowsWith([&] { read_idx_labels(at("lab").string()); },
                         {at("lab").string(), "trailing garbage", "1 byte "}));
}

TEST_F(IdxTest, ImageAndLabelCountsThatDiffer) {
  write_dataset();
  write_plain(at(kTrainLabels), labels_file({4, 0, 3, 1}));
  EXPECT_TRUE(ThrowsWith([&] { load_idx_dataset(dir()); },
                         {at(kTrainImages).string(), at(kTrainLabels).string(), "counts differ",
                          "5 images", "4 labels"}));
}

TEST_F(IdxTest, TrainAndTestImageSizesThatDiffer) {
  write_dataset();
  write_plain(at(kTestImages), images_file(2, 4, 3, test_pixels_));
  EXPECT_TRUE(ThrowsWith(
      [&] { load_idx_dataset(dir()); },
      {at(kTrainImages).string(), at(kTestImages).string(), "sizes differ", "3x4", "4x3"}));
}

TEST_F(IdxTest, ZeroImages) {
  write_dataset();
  write_plain(at(kTestImages), images_file(0, 3, 4, {}));
  write_plain(at(kTestLabels), labels_file({}));
  EXPECT_TRUE(
      ThrowsWith([&] { load_idx_dataset(dir()); }, {at(kTestImages).string(), "no images"}));
}

TEST_F(IdxTest, ZeroSizedImages) {
  write_plain(at("img"), images_file(5, 0, 4, {}));
  EXPECT_TRUE(ThrowsWith([&] { read_idx_images(at("img").string()); },
                         {at("img").string(), "empty images", "0x4"}));
}

// A header claiming far more data than the file holds must fail on the data that is there, without
// allocating for the claim (AddressSanitizer aborts on a terabyte request; this test runs under
// it).
TEST_F(IdxTest, HugeCountWithLittleDataFailsFast) {
  const auto start = std::chrono::steady_clock::now();
  const Bytes some = known_pixels(1000, 6);
  write_plain(at("img"), images_file(0xFFFFFFFFu, 28, 28, some));
  write_gz(at("img.gz"), images_file(0xFFFFFFFFu, 28, 28, some));
  for (const char* name : {"img", "img.gz"}) {
    EXPECT_TRUE(ThrowsWith([&] { read_idx_images(at(name).string()); },
                           {at(name).string(), "truncated data", "4294967295 images",
                            "3367254359280 bytes", "found 1000"}));
  }
  write_plain(at("lab"), labels_file(0xFFFFFFFFu, some));
  EXPECT_TRUE(ThrowsWith([&] { read_idx_labels(at("lab").string()); },
                         {at("lab").string(), "truncated data", "4294967295 bytes", "found 1000"}));
  // 2^32-1 cubed does not fit in 64 bits.
  write_plain(at("big"), images_file(0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, some));
  EXPECT_TRUE(ThrowsWith([&] { read_idx_images(at("big").string()); },
                         {at("big").string(), "bad header", "overflow"}));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 1.0);
}

// ---- Fashion-MNIST, when installed --------------------------------------------------------------

TEST(FashionMnist, LoadsDebiansDataset) {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!fs::is_directory(dir))
    GTEST_SKIP() << dir << " is missing (apt-get install dataset-fashion-mnist)";
  const Dataset ds = load_idx_dataset(dir);
  EXPECT_EQ(ds.train.images.count, 60000);
  EXPECT_EQ(ds.test.images.count, 10000);
  for (const Images* im : {&ds.train.images, &ds.test.images}) {
    EXPECT_EQ(im->rows, 28);
    EXPECT_EQ(im->cols, 28);
    EXPECT_EQ(im->pixels.size(), static_cast<size_t>(im->count * 28 * 28));
  }
  ASSERT_EQ(ds.train.labels.labels.size(), 60000u);
  ASSERT_EQ(ds.test.labels.labels.size(), 10000u);
  EXPECT_EQ(ds.num_classes, 10);
  EXPECT_EQ(ds.train.labels.labels[0], 9);  // ankle boot
  std::vector<int> train_hist(10), test_hist(10);
  for (uint8_t l : ds.train.labels.labels) ++train_hist.at(l);
  for (uint8_t l : ds.test.labels.labels) ++test_hist.at(l);
  EXPECT_EQ(train_hist, std::vector<int>(10, 6000));
  EXPECT_EQ(test_hist, std::vector<int>(10, 1000));
}

}  // namespace
}  // namespace data
}  // namespace lowbit
