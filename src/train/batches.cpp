// Standardisation, augmentation and the batch loader of the training loop (lowbit/batches.h).
#include "lowbit/batches.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <stdexcept>

namespace lowbit {
namespace train {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

void check_channels(const Standardisation& s, const data::Images& images) {
  if (static_cast<int64_t>(s.mean.size()) != images.channels) {
    throw std::invalid_argument("standardisation of " + std::to_string(s.mean.size()) +
                                " channels for " + std::to_string(images.channels) +
                                "-channel images");
  }
}

}  // namespace

std::vector<float> Standardisation::table() const {
  if (mean.size() != std.size() || mean.empty()) {
    throw std::invalid_argument("standardisation: one mean and one std per channel");
  }
  std::vector<float> t(mean.size() * 256);
  for (size_t c = 0; c < mean.size(); ++c) {
    const auto m = static_cast<float>(mean[c]), s = static_cast<float>(std[c]);
    for (int v = 0; v < 256; ++v) t[c * 256 + v] = (static_cast<float>(v) / 255.0f - m) / s;
  }
  return t;
}

Standardisation channel_statistics(const data::Images& images) {
  Standardisation s;
  const int64_t channels = images.channels, plane = images.rows * images.cols;
  s.mean.assign(channels, 0.0);
  s.std.assign(channels, 1.0);
  for (int64_t c = 0; c < channels; ++c) {
    // Byte histograms: exact sums whatever the data set's size.
    std::array<int64_t, 256> histogram{};
    for (int64_t i = 0; i < images.count; ++i) {
      const uint8_t* p = images.pixels.data() + (i * channels + c) * plane;
      for (int64_t k = 0; k < plane; ++k) ++histogram[p[k]];
    }
    const double n = static_cast<double>(images.count * plane);
    double sum = 0;
    for (int v = 0; v < 256; ++v) sum += histogram[v] * (v / 255.0);
    const double mean = n > 0 ? sum / n : 0.0;
    double squares = 0;
    for (int v = 0; v < 256; ++v) squares += histogram[v] * (v / 255.0 - mean) * (v / 255.0 - mean);
    s.mean[c] = mean;
    s.std[c] = std::max(n > 1 ? std::sqrt(squares / (n - 1)) : 0.0, 1e-6);
  }
  return s;
}

void make_batch(const data::Images& images, const int64_t* indices, int64_t n,
                const std::vector<float>& table, const Augmentation& aug, uint64_t seed,
                int64_t first, float* out) {
  const int64_t channels = images.channels, rows = images.rows, cols = images.cols;
  const int64_t plane = rows * cols, per = channels * plane;
  const int64_t pad = aug.crop_padding;
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* src = images.pixels.data() + indices[i] * per;
    float* dst = out + i * per;
    if (!aug.any()) {
      for (int64_t c = 0; c < channels; ++c) {
        const float* t = table.data() + c * 256;
        for (int64_t k = 0; k < plane; ++k) dst[c * plane + k] = t[src[c * plane + k]];
      }
      continue;
    }
    const uint64_t r = splitmix64(seed ^ splitmix64(static_cast<uint64_t>(first + i)));
    // Offsets in [-pad, pad] of the crop window in the padded image; the flip bit.
    const int64_t dy = pad > 0 ? static_cast<int64_t>(r % (2 * pad + 1)) - pad : 0;
    const int64_t dx = pad > 0 ? static_cast<int64_t>((r >> 16) % (2 * pad + 1)) - pad : 0;
    const bool flip = aug.horizontal_flip && ((r >> 40) & 1) != 0;
    for (int64_t c = 0; c < channels; ++c) {
      const float* t = table.data() + c * 256;
      const uint8_t* s = src + c * plane;
      float* d = dst + c * plane;
      for (int64_t y = 0; y < rows; ++y) {
        const int64_t sy = y + dy;
        for (int64_t x = 0; x < cols; ++x) {
          const int64_t sx = (flip ? cols - 1 - x : x) + dx;
          const bool inside = sy >= 0 && sy < rows && sx >= 0 && sx < cols;
          d[y * cols + x] = t[inside ? s[sy * cols + sx] : 0];  // padding is black (byte 0)
        }
      }
    }
  }
}

at::Tensor standardised_images(const data::Images& images, const Standardisation& s) {
  if (images.count == 0) {  // a split not read (evaluation reads only the test split)
    return torch::empty({0, static_cast<int64_t>(s.mean.size()), images.rows, images.cols});
  }
  check_channels(s, images);
  at::Tensor out =
      torch::empty({images.count, images.channels, images.rows, images.cols}, torch::kFloat);
  std::vector<int64_t> all(static_cast<size_t>(images.count));
  for (int64_t i = 0; i < images.count; ++i) all[i] = i;
  make_batch(images, all.data(), images.count, s.table(), {}, 0, 0, out.data_ptr<float>());
  return out;
}

at::Tensor label_tensor(const data::Labels& l) {
  return torch::from_blob(const_cast<uint8_t*>(l.labels.data()),
                          {static_cast<int64_t>(l.labels.size())}, torch::kUInt8)
      .to(torch::kLong);
}

BatchLoader::BatchLoader(const data::Split& split, const Standardisation& standardisation,
                         const Augmentation& augmentation, std::vector<int64_t> order,
                         int64_t batch_size, uint64_t seed, int workers, int prefetch,
                         int64_t min_batch, Shard shard)
    : split_(split),
      table_(standardisation.table()),
      augmentation_(augmentation),
      order_(std::move(order)),
      batch_size_(batch_size),
      seed_(seed),
      prefetch_(std::max(prefetch, 1)),
      shard_(shard) {
  if (batch_size_ < 1) throw std::invalid_argument("batch size must be at least 1");
  if (shard_.world < 1 || shard_.rank < 0 || shard_.rank >= shard_.world) {
    throw std::invalid_argument("shard: rank " + std::to_string(shard_.rank) + " of " +
                                std::to_string(shard_.world) +
                                " (a rank in [0, world), world >= 1 expected)");
  }
  check_channels(standardisation, split.images);
  const auto n = static_cast<int64_t>(order_.size());
  batches_ = n / batch_size_;
  if (n % batch_size_ >= std::max<int64_t>(min_batch, 1)) ++batches_;
  for (int w = 0; w < workers; ++w) threads_.emplace_back([this] { work(); });
}

BatchLoader::~BatchLoader() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  space_.notify_all();
  for (auto& t : threads_) t.join();
}

Batch BatchLoader::assemble(int64_t b) const {
  const int64_t global_first = b * batch_size_;
  const int64_t global_n =
      std::min<int64_t>(batch_size_, static_cast<int64_t>(order_.size()) - global_first);
  const int64_t first = global_first + global_n * shard_.rank / shard_.world;
  const int64_t n = global_first + global_n * (shard_.rank + 1) / shard_.world - first;
  const data::Images& im = split_.images;
  Batch batch;
  batch.global_count = global_n;
  batch.images = torch::empty({n, im.channels, im.rows, im.cols}, torch::kFloat);
  batch.labels = torch::empty({n}, torch::kLong);
  const int64_t* idx = order_.data() + first;
  make_batch(im, idx, n, table_, augmentation_, seed_, first, batch.images.data_ptr<float>());
  int64_t* y = batch.labels.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) y[i] = split_.labels.labels[idx[i]];
  return batch;
}

void BatchLoader::work() {
  for (;;) {
    int64_t b = 0;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      space_.wait(lock, [&] {
        return stop_ || next_to_start_ >= batches_ || next_to_start_ - next_to_take_ < prefetch_;
      });
      if (stop_ || next_to_start_ >= batches_) return;
      b = next_to_start_++;
    }
    Batch batch;
    std::exception_ptr error;
    try {
      batch = assemble(b);
    } catch (...) {
      error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (error && !error_) error_ = error;
      if (!error) done_.emplace_back(b, std::move(batch));
    }
    ready_.notify_all();
  }
}

bool BatchLoader::next(Batch& batch) {
  if (next_to_take_ >= batches_) return false;
  if (threads_.empty()) {
    batch = assemble(next_to_take_++);
    return true;
  }
  const auto start = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lock(mutex_);
  auto found = done_.end();
  ready_.wait(lock, [&] {
    found = std::find_if(done_.begin(), done_.end(),
                         [&](const auto& d) { return d.first == next_to_take_; });
    return error_ || found != done_.end();
  });
  if (error_) std::rethrow_exception(error_);
  batch = std::move(found->second);
  done_.erase(found);
  ++next_to_take_;
  waited_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  lock.unlock();
  space_.notify_all();
  return true;
}

}  // namespace train
}  // namespace lowbit
