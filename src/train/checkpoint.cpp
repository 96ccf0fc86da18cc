// Checkpoints: written atomically, verified (CRC-32) and rebuilt into models on reading.
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <map>
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
    // PyTorch's own text (records it expected) says nothing useful to a user of lowbit.
    throw std::runtime_error(file +
                             ": not a lowbit checkpoint (a ZIP archive, but not one of "
                             "PyTorch's serialized modules)");
  }
}

namespace {
c10::IValue archive_entry(torch::serialize::InputArchive& archive, const char* key,
                          const std::string& file) {
  c10::IValue v;
  if (!archive.try_read(key, v)) {
    throw std::runtime_error(file + ": not a lowbit checkpoint (no '" + key + "' entry)");
  }
  return v;
}
}  // namespace

int64_t archive_int(torch::serialize::InputArchive& archive, const char* key,
                    const std::string& file) {
  const c10::IValue v = archive_entry(archive, key, file);
  if (!v.isInt()) throw std::runtime_error(file + ": '" + key + "' is not an integer");
  return v.toInt();
}

std::string archive_string(torch::serialize::InputArchive& archive, const char* key,
                           const std::string& file) {
  const c10::IValue v = archive_entry(archive, key, file);
  if (!v.isString()) throw std::runtime_error(file + ": '" + key + "' is not a string");
  return v.toStringRef();
}

void load_weights(torch::nn::Module& model, torch::serialize::InputArchive& archive,
                  const std::string& file) {
  // Module::load replaces tensors whatever their shapes: weights of another network would load.
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& p : model.named_parameters()) shapes[p.key()] = p.value().sizes().vec();
  for (const auto& b : model.named_buffers()) shapes[b.key()] = b.value().sizes().vec();
  model.load(archive);
  const auto check = [&](const std::string& name, const at::Tensor& t) {
    const auto& want = shapes.at(name);
    if (t.sizes().vec() != want) {
      throw std::runtime_error(file + ": the weights do not fit the checkpoint's recipe: " + name +
                               " has shape " + c10::str(t.sizes()) + ", the recipe's network " +
                               c10::str(c10::IntArrayRef(want)));
    }
  };
  for (const auto& p : model.named_parameters()) check(p.key(), p.value());
  for (const auto& b : model.named_buffers()) check(b.key(), b.value());
}

void write_archive(torch::serialize::OutputArchive& archive, const std::string& file) {
  std::ostringstream bytes;
  archive.save_to(bytes);  // in memory: nothing here can meet a full disk
  io::write_file_atomically(file, bytes.str());
}

int64_t archive_channels(torch::serialize::InputArchive& archive, const std::string& file) {
  c10::IValue v;
  if (!archive.try_read("channels", v)) return 1;
  if (!v.isInt() || v.toInt() < 1 || v.toInt() > 4096) {
    throw std::runtime_error(file + ": 'channels' is not a channel count");
  }
  return v.toInt();
}

bool archive_standardisation(torch::serialize::InputArchive& archive, const std::string& file,
                             int64_t channels, Standardisation* out) {
  c10::IValue mean, sd;
  if (!archive.try_read("input_mean", mean) || !archive.try_read("input_std", sd)) return false;
  // A float64 tensor of one value per channel; a double in checkpoints of one-channel runs written
  // before per-channel statistics.
  const auto values = [](const c10::IValue& v) {
    if (v.isDouble()) return std::vector<double>{v.toDouble()};
    if (!v.isTensor() || v.toTensor().scalar_type() != at::kDouble || v.toTensor().dim() != 1) {
      return std::vector<double>{};
    }
    const at::Tensor t = v.toTensor().contiguous();
    return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
  };
  Standardisation s;
  s.mean = values(mean);
  s.std = values(sd);
  bool valid = static_cast<int64_t>(s.mean.size()) == channels && s.std.size() == s.mean.size();
  for (size_t c = 0; valid && c < s.mean.size(); ++c) {
    valid = std::isfinite(s.mean[c]) && s.std[c] > 0 && std::isfinite(s.std[c]);
  }
  if (!valid) {
    throw std::runtime_error(file + ": input_mean/input_std are not a valid standardisation of " +
                             std::to_string(channels) + "-channel images");
  }
  *out = s;
  return true;
}

std::vector<std::string> archive_class_names(torch::serialize::InputArchive& archive) {
  c10::IValue v;
  std::vector<std::string> names;
  if (!archive.try_read("class_names", v) || !v.isString()) return names;
  // One name per line (names are folder or file-list names: no line breaks).
  std::istringstream lines(v.toStringRef());
  for (std::string name; std::getline(lines, name);) names.push_back(name);
  return names;
}

void write_input_description(torch::serialize::OutputArchive& archive, int64_t channels,
                             const Standardisation& s, const std::vector<std::string>& names) {
  archive.write("channels", c10::IValue(channels));
  archive.write("input_mean", torch::tensor(s.mean, torch::kDouble), /*is_buffer=*/true);
  archive.write("input_std", torch::tensor(s.std, torch::kDouble), /*is_buffer=*/true);
  std::string joined;
  for (const std::string& n : names) {
    if (n.find('\n') != std::string::npos) return;  // not representable: no names stored
    joined += n + "\n";
  }
  if (!names.empty()) archive.write("class_names", c10::IValue(joined));
}

std::string check_compatible(const data::Dataset& dataset, const std::string& dir,
                             const Checkpoint& c) {
  data::ModelShape shape;
  shape.channels = c.channels;
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
  const auto read_int = [&](const char* key) { return archive_int(archive, key, c.file); };
  const auto read_string = [&](const char* key) { return archive_string(archive, key, c.file); };
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
  // Values a lowbit run can have; a hand-edited or foreign file must not build a huge network.
  const auto in_range = [&](const char* key, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi) {
      throw std::runtime_error(c.file + ": '" + key + "' is " + std::to_string(v) +
                               ", outside the " + std::to_string(lo) + ".." + std::to_string(hi) +
                               " of a lowbit run");
    }
  };
  in_range("height", c.height, 1, 1 << 16);
  in_range("width", c.width, 1, 1 << 16);
  in_range("num_classes", c.num_classes, 2, 1 << 20);
  in_range("epoch", c.epoch, 0, 1000000);
  c.channels = archive_channels(archive, c.file);
  c.has_normalization = archive_standardisation(archive, c.file, c.channels, &c.standardisation);
  c.class_names = archive_class_names(archive);
  try {
    c.model = build_model(c.recipe, c.height, c.width, c.num_classes, c.channels);
    torch::serialize::InputArchive m;
    if (!archive.try_read("model", m)) {
      throw std::runtime_error("no 'model' entry");
    }
    load_weights(*c.model, m, c.file);
  } catch (const c10::Error& e) {
    throw std::runtime_error(c.file + ": cannot rebuild the model: " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    const std::string what = e.what();
    if (what.rfind(c.file + ": ", 0) == 0) throw;  // load_weights names the file itself
    throw std::runtime_error(c.file + ": cannot rebuild the model: " + what);
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
