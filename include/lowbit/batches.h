// Training batches from a data set in memory: standardisation per channel, augmentation, and a
// loader that assembles the next batches on worker threads while the current one trains.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "lowbit/data/dataset.h"

namespace lowbit {
namespace train {

// Pixels are divided by 255, then standardised per channel c: (x / 255 - mean[c]) / std[c].
struct Standardisation {
  std::vector<double> mean{0.0}, std{1.0};
  // The float of every byte value per channel, in the order above (float arithmetic, as the
  // exported ONNX graph computes it): table[c * 256 + byte].
  std::vector<float> table() const;
};

// The mean and (sample) standard deviation of each channel of images / 255; an std below 1e-6
// (a constant channel) becomes 1e-6.
Standardisation channel_statistics(const data::Images& images);

// Random crop after zero padding of `crop_padding` pixels on every side (0: none), then a
// horizontal flip with probability 1/2 (horizontal_flip). Training batches only.
struct Augmentation {
  int64_t crop_padding = 0;
  bool horizontal_flip = false;
  bool any() const { return crop_padding > 0 || horizontal_flip; }
};

// Writes the images at `indices` into out ([n, channels, rows, cols] floats), standardised by
// `table` (Standardisation::table) and augmented. Sample i's crop and flip depend only on
// (seed, first + i): batches are the same whatever the threads or batch boundaries.
void make_batch(const data::Images& images, const int64_t* indices, int64_t n,
                const std::vector<float>& table, const Augmentation& augmentation, uint64_t seed,
                int64_t first, float* out);

// The images and labels of a split, standardised (no augmentation), as tensors.
at::Tensor standardised_images(const data::Images& images, const Standardisation& s);
at::Tensor label_tensor(const data::Labels& labels);

struct Batch {
  at::Tensor images;         // [n, channels, rows, cols] float32
  at::Tensor labels;         // [n] int64
  int64_t global_count = 0;  // the samples of the whole batch, of which this is a shard's part
};

// The part of every batch one process of a data-parallel run takes: rank r of w takes samples
// [g * r / w, g * (r + 1) / w) of a batch of g.
struct Shard {
  int rank = 0, world = 1;
};

// The batches of one epoch in `order`, assembled by `workers` threads up to `prefetch` batches
// ahead of the consumer; batches come out in order and are identical for any number of workers.
// A batch of fewer than `min_batch` samples (the last one) is dropped. With a shard, the batches
// are this rank's parts of the batches of `order` (augmented as in one process: by position in
// order).
class BatchLoader {
 public:
  BatchLoader(const data::Split& split, const Standardisation& standardisation,
              const Augmentation& augmentation, std::vector<int64_t> order, int64_t batch_size,
              uint64_t seed, int workers, int prefetch = 4, int64_t min_batch = 2,
              Shard shard = {});
  ~BatchLoader();
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  int64_t batches() const { return batches_; }
  // The next batch; false after the last. An error of a worker is rethrown here.
  bool next(Batch& batch);
  // Seconds the consumer has waited for batches so far (the pipeline's cost to training).
  double waited_seconds() const { return waited_; }

 private:
  void work();
  Batch assemble(int64_t b) const;

  const data::Split& split_;
  std::vector<float> table_;
  Augmentation augmentation_;
  std::vector<int64_t> order_;
  int64_t batch_size_, batches_;
  uint64_t seed_;
  int prefetch_;
  Shard shard_;
  std::mutex mutex_;
  std::condition_variable ready_, space_;
  std::deque<std::pair<int64_t, Batch>> done_;  // assembled, not yet taken
  int64_t next_to_start_ = 0, next_to_take_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
  double waited_ = 0;
  std::vector<std::thread> threads_;
};

}  // namespace train
}  // namespace lowbit
