// Tests standardisation, augmentation and the batch loader against scalar loops written here.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <set>
#include <vector>

#include "lowbit/batches.h"

namespace lowbit {
namespace train {
namespace {

data::Images images(int64_t count, int64_t channels, int64_t rows, int64_t cols) {
  data::Images im;
  im.count = count;
  im.channels = channels;
  im.rows = rows;
  im.cols = cols;
  im.pixels.resize(static_cast<size_t>(count * channels * rows * cols));
  for (size_t i = 0; i < im.pixels.size(); ++i)
    im.pixels[i] = static_cast<uint8_t>((i * 37 + i / 7) % 256);
  return im;
}

TEST(Batches, ChannelStatisticsAreEachChannelsMeanAndSampleStd) {
  const data::Images im = images(5, 3, 4, 6);
  const Standardisation s = channel_statistics(im);
  ASSERT_EQ(s.mean.size(), 3u);
  for (int64_t c = 0; c < 3; ++c) {
    std::vector<double> v;
    for (int64_t i = 0; i < 5; ++i)
      for (int64_t k = 0; k < 24; ++k) v.push_back(im.pixels[(i * 3 + c) * 24 + k] / 255.0);
    double sum = 0, sq = 0;
    for (double x : v) sum += x;
    const double mean = sum / v.size();
    for (double x : v) sq += (x - mean) * (x - mean);
    EXPECT_NEAR(s.mean[c], mean, 1e-12);
    EXPECT_NEAR(s.std[c], std::sqrt(sq / (v.size() - 1)), 1e-12);
  }
  // A constant channel gets the floor, not a division by zero.
  data::Images flat = images(2, 1, 2, 2);
  std::fill(flat.pixels.begin(), flat.pixels.end(), 7);
  EXPECT_EQ(channel_statistics(flat).std[0], 1e-6);
}

TEST(Batches, StandardisedImagesFollowTheFormulaInFloat) {
  const data::Images im = images(3, 2, 3, 3);
  Standardisation s;
  s.mean = {0.25, 0.5};
  s.std = {0.5, 2.0};
  const at::Tensor t = standardised_images(im, s);
  ASSERT_EQ(t.sizes(), (std::vector<int64_t>{3, 2, 3, 3}));
  const float* p = t.data_ptr<float>();
  for (size_t i = 0; i < im.pixels.size(); ++i) {
    const size_t c = (i / 9) % 2;
    const float want = (static_cast<float>(im.pixels[i]) / 255.0f - static_cast<float>(s.mean[c])) /
                       static_cast<float>(s.std[c]);
    ASSERT_EQ(p[i], want) << i;
  }
}

// The augmented image as a scalar reference computes it for one (dy, dx, flip).
std::vector<float> reference(const data::Images& im, int64_t index, const std::vector<float>& table,
                             int64_t dy, int64_t dx, bool flip) {
  std::vector<float> out;
  for (int64_t c = 0; c < im.channels; ++c)
    for (int64_t y = 0; y < im.rows; ++y)
      for (int64_t x = 0; x < im.cols; ++x) {
        const int64_t sx = (flip ? im.cols - 1 - x : x) + dx, sy = y + dy;
        const bool in = sy >= 0 && sy < im.rows && sx >= 0 && sx < im.cols;
        const uint8_t v =
            in ? im.pixels[((index * im.channels + c) * im.rows + sy) * im.cols + sx] : 0;
        out.push_back(table[c * 256 + v]);
      }
  return out;
}

TEST(Batches, AugmentationIsACropOfThePaddedImageAndAFlip) {
  const data::Images im = images(40, 2, 5, 6);
  Standardisation s;
  s.mean = {0.1, 0.2};
  s.std = {0.3, 0.4};
  const auto table = s.table();
  Augmentation aug;
  aug.crop_padding = 2;
  aug.horizontal_flip = true;
  std::vector<int64_t> idx(40);
  for (int64_t i = 0; i < 40; ++i) idx[i] = (i * 7) % 40;
  const int64_t per = 2 * 5 * 6;
  std::vector<float> out(40 * per);
  make_batch(im, idx.data(), 40, table, aug, 123, 1000, out.data());
  std::set<std::tuple<int64_t, int64_t, bool>> seen;
  for (int64_t i = 0; i < 40; ++i) {
    const std::vector<float> got(out.begin() + i * per, out.begin() + (i + 1) * per);
    bool found = false;
    for (int64_t dy = -2; dy <= 2 && !found; ++dy)
      for (int64_t dx = -2; dx <= 2 && !found; ++dx)
        for (bool flip : {false, true}) {
          if (reference(im, idx[i], table, dy, dx, flip) == got) {
            found = true;
            seen.insert({dy, dx, flip});
            break;
          }
        }
    EXPECT_TRUE(found) << "sample " << i << " is no crop or flip of its image";
  }
  EXPECT_GT(seen.size(), 15u);  // 50 combinations: the draws vary
  // Deterministic in (seed, position), whatever the batch boundaries.
  std::vector<float> again(20 * per);
  make_batch(im, idx.data() + 20, 20, table, aug, 123, 1020, again.data());
  EXPECT_TRUE(std::equal(again.begin(), again.end(), out.begin() + 20 * per));
  make_batch(im, idx.data() + 20, 20, table, aug, 124, 1020, again.data());
  EXPECT_FALSE(std::equal(again.begin(), again.end(), out.begin() + 20 * per));
}

TEST(Batches, TheLoaderGivesTheSameBatchesWithAnyNumberOfWorkers) {
  data::Split split;
  split.images = images(37, 3, 4, 4);
  for (int i = 0; i < 37; ++i) split.labels.labels.push_back(static_cast<uint8_t>(i % 5));
  const Standardisation s = channel_statistics(split.images);
  Augmentation aug;
  aug.crop_padding = 1;
  aug.horizontal_flip = true;
  std::vector<int64_t> order(37);
  for (int64_t i = 0; i < 37; ++i) order[i] = (i * 11) % 37;
  const auto run = [&](int workers, int64_t min_batch) {
    BatchLoader loader(split, s, aug, order, 8, 99, workers, 2, min_batch);
    std::vector<Batch> out;
    Batch b;
    while (loader.next(b)) out.push_back(b);
    EXPECT_EQ(static_cast<int64_t>(out.size()), loader.batches());
    return out;
  };
  const auto serial = run(0, 2);
  ASSERT_EQ(serial.size(), 5u);  // 4 x 8 + 5
  EXPECT_EQ(serial.back().labels.size(0), 5);
  for (size_t b = 0; b < serial.size(); ++b) {
    for (int64_t i = 0; i < serial[b].labels.size(0); ++i) {
      EXPECT_EQ(serial[b].labels[i].item<int64_t>(), order[b * 8 + i] % 5);
    }
  }
  for (int workers : {1, 3}) {
    const auto parallel = run(workers, 2);
    ASSERT_EQ(parallel.size(), serial.size());
    for (size_t b = 0; b < serial.size(); ++b) {
      EXPECT_TRUE(torch::equal(parallel[b].images, serial[b].images)) << workers << " " << b;
      EXPECT_TRUE(torch::equal(parallel[b].labels, serial[b].labels));
    }
  }
  EXPECT_EQ(run(2, 6).size(), 4u);  // a last batch of 5 < 6 samples is dropped
  // A loader abandoned mid-epoch stops its workers.
  BatchLoader partial(split, s, aug, order, 4, 1, 2, 2);
  Batch b;
  EXPECT_TRUE(partial.next(b));
}

TEST(Batches, TheShardsOfABatchAreItsPartsInRankOrder) {
  data::Split split;
  split.images = images(37, 1, 5, 5);
  for (int i = 0; i < 37; ++i) split.labels.labels.push_back(static_cast<uint8_t>(i % 7));
  const Standardisation s = channel_statistics(split.images);
  Augmentation aug;
  aug.crop_padding = 2;
  aug.horizontal_flip = true;
  std::vector<int64_t> order(37);
  for (int64_t i = 0; i < 37; ++i) order[i] = (i * 5) % 37;
  const auto batches = [&](Shard shard, int64_t min_batch) {
    BatchLoader loader(split, s, aug, order, 10, 7, 1, 4, min_batch, shard);
    std::vector<Batch> out;
    Batch b;
    while (loader.next(b)) out.push_back(b);
    return out;
  };
  const auto whole = batches({}, 2);
  ASSERT_EQ(whole.size(), 4u);  // 3 x 10 + 7
  for (int world : {2, 3}) {
    std::vector<std::vector<Batch>> parts;
    for (int r = 0; r < world; ++r) parts.push_back(batches({r, world}, 2));
    for (size_t b = 0; b < whole.size(); ++b) {
      const int64_t g = whole[b].labels.size(0);
      std::vector<at::Tensor> images, labels;
      for (int r = 0; r < world; ++r) {
        ASSERT_EQ(parts[r].size(), whole.size());
        const Batch& part = parts[r][b];
        EXPECT_EQ(part.global_count, g);
        // Rank r's share: [g r / w, g (r + 1) / w).
        EXPECT_EQ(part.labels.size(0), g * (r + 1) / world - g * r / world);
        images.push_back(part.images);
        labels.push_back(part.labels);
      }
      // Augmented as in one process: each sample by its position in the epoch.
      EXPECT_TRUE(torch::equal(torch::cat(images), whole[b].images)) << world << " " << b;
      EXPECT_TRUE(torch::equal(torch::cat(labels), whole[b].labels));
    }
  }
  // The last batch (7) is dropped for every rank alike when it is below min_batch.
  EXPECT_EQ(batches({1, 2}, 8).size(), 3u);
  EXPECT_THROW(batches({2, 2}, 2), std::invalid_argument);
}

}  // namespace
}  // namespace train
}  // namespace lowbit
