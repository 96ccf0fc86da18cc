// LibTorch's eval-mode model of a training run, timed on a data set's test split as the engine is
// timed (engine::timed): the comparison of `lowbit run --checkpoint` (library lowbit_train).
#pragma once

#include <string>

#include "lowbit/data/dataset.h"
#include "lowbit/engine/tools.h"
#include "lowbit/train.h"

namespace lowbit {
namespace train {

// Runs the checkpoint's model on `threads` LibTorch threads over the test images of `dataset`
// (standardised as in training; `data_dir`'s training split is read for older checkpoints that do
// not store their standardisation), `batch` images per call. std::invalid_argument where the data
// set does not fit the model or the model has another number of outputs than `outputs`.
engine::Timing time_checkpoint(const Checkpoint& checkpoint, const data::Dataset& dataset,
                               const std::string& data_dir, int threads, int64_t batch,
                               int64_t outputs, const std::string& model_path);

}  // namespace train
}  // namespace lowbit
