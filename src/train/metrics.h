// What a training run reports: metrics.jsonl rows, curves.png, metrics.json, the confusion matrix
// (text and confusion.png). Internal to src/train.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "lowbit/train.h"

namespace lowbit {
namespace train {

using MetricsRow = std::map<std::string, double>;

// The lines of metrics.jsonl whose epoch is at most `epochs` (after a resume, a run killed between
// its checkpoint and its log line may have left one more), and their rows.
std::string read_metrics(const std::filesystem::path& path, int64_t epochs,
                         std::vector<MetricsRow>* history);

// One metrics.jsonl line.
std::string json_line(const MetricsRow& row, const std::string& model);

// Loss and accuracy per epoch, train against `held_out` ("test", or "val" with --val-split: the
// rows' test_* or val_* entries).
void write_plot(const std::filesystem::path& path, const std::vector<MetricsRow>& rows,
                const std::string& held_out);

// The matrix as JSON (a list of rows) and as confusion.png.
std::string confusion_json(const Evaluation& e);
void write_confusion(const std::filesystem::path& path, const Evaluation& e,
                     const std::vector<std::string>& names, const std::string& title);

}  // namespace train
}  // namespace lowbit
