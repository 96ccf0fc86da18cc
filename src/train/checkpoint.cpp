// Checkpoints: written atomically, verified (CRC-32) and rebuilt into models on reading.
#include <torch/torch.h>

#include <filesystem>
#include <sstream>
#include <stdexcept>

#include "checkpoint_file.h"
#include "lowbit/io/checksum.h"
#include "lowbit/io/file.h"
#include "lowbit/train.h"

namespace lowbit {
namespace train {

namespace fs = std::filesystem;

// PyTorch's checkpoints of lowbit's recipes are megabytes; this bounds what a bad path can cost.
constexpr int64_t kMaxCheckpointBytes = int64_t{1} << 34;

void read_archive(const std::string& file, torch::serialize::InputArchive& archive,
                  const torch::Device& device) {
  const std::string bytes = io::read_file(file, kMaxCheckpointBytes);
  if (bytes.empty()) throw std::runtime_error(file + ": empty file, not a lowbit checkpoint");
  if (bytes.compare(0, 2, "PK") != 0) {
    throw std::runtime_error(file + ": not a lowbit checkpoint (not a ZIP archive)");
  }
  io::verify_zip(bytes, file);
  try {
    archive.load_from(bytes.data(), bytes.size(), device);
  } catch (const c10::Error& e) {
    throw std::runtime_error(file + ": not a lowbit checkpoint (" + e.what_without_backtrace() +
                             ")");
  }
}

void write_archive(torch::serialize::OutputArchive& archive, const std::string& file) {
  std::ostringstream bytes;
  archive.save_to(bytes);  // in memory: nothing here can meet a full disk
  io::write_file_atomically(file, bytes.str());
}

std::string check_compatible(const data::IdxDataset& dataset, const std::string& dir,
                             const Checkpoint& c) {
  data::ModelShape shape;
  shape.channels = c.recipe.network.in_channels;
  shape.height = c.height;
  shape.width = c.width;
  shape.classes = c.num_classes;
  return data::check_compatible(dataset, dir, shape, c.file);
}

Checkpoint load_checkpoint(const std::string& path) {
  fs::path file = path;
  if (fs::is_directory(file)) file /= "checkpoint.pt";
  if (!fs::exists(file)) throw std::runtime_error(file.string() + ": no such checkpoint");
  Checkpoint c;
  c.file = file.string();
  torch::serialize::InputArchive archive;
  read_archive(c.file, archive, torch::Device(torch::kCPU));  // CUDA-trained runs too
  auto read = [&](const char* key) {
    c10::IValue v;
    if (!archive.try_read(key, v)) {
      throw std::runtime_error(c.file + ": not a lowbit checkpoint (no '" + key + "' entry)");
    }
    return v;
  };
  auto read_int = [&](const char* key) {
    const c10::IValue v = read(key);
    if (!v.isInt()) throw std::runtime_error(c.file + ": '" + key + "' is not an integer");
    return v.toInt();
  };
  auto read_string = [&](const char* key) {
    const c10::IValue v = read(key);
    if (!v.isString()) throw std::runtime_error(c.file + ": '" + key + "' is not a string");
    return v.toStringRef();
  };
  try {
    c.recipe = recipe(read_string("recipe_name"));
    apply_config_text(c.recipe, read_string("recipe"), c.file + " (its recipe)");
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(c.file + ": " + e.what());
  }
  c.height = read_int("height");
  c.width = read_int("width");
  c.num_classes = read_int("num_classes");
  c.epoch = read_int("epoch");
  c10::IValue mean, sd;
  if (archive.try_read("input_mean", mean) && archive.try_read("input_std", sd)) {
    if (!mean.isDouble() || !sd.isDouble() || !(sd.toDouble() > 0)) {
      throw std::runtime_error(c.file + ": input_mean/input_std are not a valid standardisation");
    }
    c.has_normalization = true;
    c.input_mean = mean.toDouble();
    c.input_std = sd.toDouble();
  }
  try {
    c.model = build_model(c.recipe, c.height, c.width, c.num_classes);
    torch::serialize::InputArchive m;
    if (!archive.try_read("model", m)) {
      throw std::runtime_error("no 'model' entry");
    }
    c.model->load(m);
  } catch (const c10::Error& e) {
    throw std::runtime_error(c.file + ": cannot rebuild the model: " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    throw std::runtime_error(c.file + ": cannot rebuild the model: " + e.what());
  }
  c.model->eval();
  return c;
}

torch::nn::Sequential load_model(const std::string& out_dir, Recipe* recipe_out) {
  Checkpoint c = load_checkpoint(out_dir);
  if (recipe_out) *recipe_out = c.recipe;
  return c.model;
}

}  // namespace train
}  // namespace lowbit
