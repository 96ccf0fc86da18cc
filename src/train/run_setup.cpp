// The preparation of a training run: resume checks, the data set, the model and optimizers.
#include "run_setup.h"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>
#include <sstream>
#include <stdexcept>
#include <tuple>

#include "checkpoint_file.h"
#include "lowbit/nn.h"
#include "metrics.h"
#include "network_yaml.h"

namespace lowbit {
namespace train {

namespace fs = std::filesystem;

std::string recipe_to_yaml(const Recipe& r) {
  YAML::Emitter e;
  e << YAML::BeginMap;
  e << YAML::Key << "epochs" << YAML::Value << r.epochs;
  e << YAML::Key << "batch_size" << YAML::Value << r.batch_size;
  e << YAML::Key << "learning_rate" << YAML::Value << r.learning_rate;
  e << YAML::Key << "weight_decay" << YAML::Value << r.weight_decay;
  e << YAML::Key << "schedule" << YAML::Value << r.schedule;
  e << YAML::Key << "optimizer" << YAML::Value << r.optimizer;
  e << YAML::Key << "bop_threshold" << YAML::Value << r.bop_threshold;
  e << YAML::Key << "bop_gamma" << YAML::Value << r.bop_gamma;
  e << YAML::Key << "blocks" << YAML::Value << YAML::Flow << r.network.blocks;
  e << YAML::Key << "hidden" << YAML::Value << r.network.hidden;
  e << YAML::Key << "input_quantizer" << YAML::Value << r.network.input_quantizer;
  e << YAML::Key << "kernel_quantizer" << YAML::Value << r.network.kernel_quantizer;
  e << YAML::Key << "kernel_constraint" << YAML::Value << r.network.kernel_constraint;
  e << YAML::Key << "quantize_first_convolution" << YAML::Value
    << r.network.quantize_first_convolution;
  e << YAML::Key << "quantize_last_convolution" << YAML::Value
    << r.network.quantize_last_convolution;
  e << YAML::Key << "pad_values" << YAML::Value << r.network.pad_values;
  e << YAML::Key << "activation" << YAML::Value << r.network.activation;
  e << YAML::Key << "dropout" << YAML::Value << r.network.dropout;
  e << YAML::Key << "pool_before_batchnorm" << YAML::Value << r.network.pool_before_batchnorm;
  e << YAML::Key << "shortcuts" << YAML::Value << r.network.shortcuts;
  e << YAML::Key << "qat" << YAML::Value << r.qat;
  e << YAML::Key << "quant_delay" << YAML::Value << r.quant_delay;
  e << YAML::Key << "freeze_bn_delay" << YAML::Value << r.freeze_bn_delay;
  e << YAML::Key << "ema_decay" << YAML::Value << r.ema_decay;
  e << YAML::Key << "random_crop_padding" << YAML::Value << r.random_crop_padding;
  e << YAML::Key << "horizontal_flip" << YAML::Value << r.horizontal_flip;
  // Written only where set, so that the runs of versions before it still resume.
  if (r.bn_recalibration_batches < 0) {
    e << YAML::Key << "bn_recalibration_batches" << YAML::Value << "all";
  } else if (r.bn_recalibration_batches > 0) {
    e << YAML::Key << "bn_recalibration_batches" << YAML::Value << r.bn_recalibration_batches;
  }
  if (!r.network.layers.empty()) {
    e << YAML::Key << "width_multiplier" << YAML::Value << r.network.width_multiplier;
    e << YAML::Key << "layers" << YAML::Value;
    emit_layers(e, r.network.layers);
  }
  e << YAML::EndMap;
  return e.c_str();
}

void Optimizers::zero_grad() {
  adam->zero_grad();
  if (bop) bop->zero_grad();
}

void Optimizers::step() {
  if (bop) bop->step();
  adam->step();
}

void Optimizers::set_lr(double lr) {
  for (auto& g : adam->param_groups()) static_cast<torch::optim::AdamOptions&>(g.options()).lr(lr);
}

namespace {

Optimizers make_optimizers(const Recipe& r, torch::nn::Sequential& model) {
  Optimizers o;
  auto options = torch::optim::AdamOptions(r.learning_rate).weight_decay(r.weight_decay);
  if (r.optimizer == "bop") {
    auto [binary, others] = optim::split_binary_parameters(*model);
    if (binary.empty()) {
      throw std::invalid_argument("optimizer bop: the model has no binary kernels (recipe " +
                                  r.name + ")");
    }
    o.bop = std::make_unique<optim::Bop>(binary, optim::BopOptions(r.bop_threshold, r.bop_gamma));
    o.adam = std::make_unique<torch::optim::Adam>(others, options);
  } else {
    o.adam = std::make_unique<torch::optim::Adam>(model->parameters(), options);
  }
  return o;
}

}  // namespace

double learning_rate(const Recipe& r, int64_t epoch, int64_t epochs) {
  if (r.schedule == "constant") return r.learning_rate;
  const double pi = std::acos(-1.0);
  return 0.5 * r.learning_rate * (1.0 + std::cos(pi * static_cast<double>(epoch) / epochs));
}

nn::NetworkOptions network_for(const Recipe& r, int64_t channels, int64_t height, int64_t width,
                               int64_t classes) {
  nn::NetworkOptions n = r.network;
  n.in_channels = channels;
  n.height = height;
  n.width = width;
  n.num_classes = classes;
  return n;
}

std::string number(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

namespace {

// The training images and the held-out ones of --val-split F: round(F * n) images drawn by a
// Fisher-Yates shuffle seeded by the run's seed (std::mt19937_64, the same on every platform),
// each part in the training split's order.
std::pair<data::Split, data::Split> split_for_validation(const data::Split& train, double fraction,
                                                         uint64_t seed) {
  if (fraction == 0) return {train, data::Split{}};
  const int64_t total = train.images.count;
  const auto held = static_cast<int64_t>(std::llround(fraction * static_cast<double>(total)));
  if (held < 1 || total - held < 2) {
    throw std::invalid_argument("--val-split " + number(fraction) + ": holds out " +
                                std::to_string(held) + " of the " + std::to_string(total) +
                                " training images; at least 1 must be held out and 2 kept");
  }
  std::vector<int64_t> order(static_cast<size_t>(total));
  for (int64_t i = 0; i < total; ++i) order[i] = i;
  std::mt19937_64 rng(seed ^ 0x76616C5F73706C74ULL);  // "val_splt"
  for (int64_t i = total - 1; i > 0; --i) {
    std::swap(order[i], order[rng() % static_cast<uint64_t>(i + 1)]);
  }
  std::vector<int64_t> kept(order.begin() + held, order.end()),
      out(order.begin(), order.begin() + held);
  std::sort(kept.begin(), kept.end());
  std::sort(out.begin(), out.end());
  return {data::select(train, kept), data::select(train, out)};
}

// The classes of a fresh run: --num-classes (every label below it), else the largest label + 1,
// with a warning when some of those classes have no training image.
int64_t run_classes(const data::Dataset& d, const TrainOptions& o,
                    const std::function<void(const std::string&)>& warn) {
  if (o.num_classes > 0) {
    data::check_labels(d, o.num_classes, "--num-classes " + std::to_string(o.num_classes));
    return o.num_classes;
  }
  const std::vector<int64_t> counts = data::class_counts(d.train.labels, d.num_classes);
  std::string missing;
  int64_t n_missing = 0;
  for (size_t c = 0; c < counts.size(); ++c) {
    if (counts[c] > 0) continue;
    if (++n_missing <= 8) missing += (missing.empty() ? "" : ", ") + std::to_string(c);
  }
  if (n_missing > 0) {
    // The file that holds the largest label (the test split's when the training split lacks it).
    const bool in_train = counts.back() > 0;
    warn((in_train ? d.train.labels_path : d.test.labels_path) + ": the labels run from 0 to " +
         std::to_string(d.num_classes - 1) + (in_train ? "" : " (the largest in this test split)") +
         " but " + std::to_string(n_missing) + " of those " + std::to_string(d.num_classes) +
         " classes have no training image (" + missing + (n_missing > 8 ? ", ..." : "") +
         "); the model gets " + std::to_string(d.num_classes) +
         " outputs. Give --num-classes to say how many classes there are.");
  }
  return d.num_classes;
}

}  // namespace

void default_warning(const std::string& text) {
  std::fprintf(stderr, "lowbit: warning: %s\n", text.c_str());
}

RunSetup prepare_run(const Recipe& recipe, const TrainOptions& opts, const torch::Device& device,
                     const std::function<void(const std::string&)>& warn) {
  const fs::path out(opts.out_dir);
  const fs::path checkpoint = out / "checkpoint.pt";
  const fs::path metrics_path = out / "metrics.jsonl";
  RunSetup s;
  s.recipe_text = recipe_to_yaml(recipe);
  const std::string& recipe_text = s.recipe_text;
  int64_t& epochs = s.epochs;
  epochs = opts.epochs > 0 ? opts.epochs : recipe.epochs;

  // A resumed run is checked against the options before the data set is read.
  torch::serialize::InputArchive archive;
  int64_t& first_epoch = s.first_epoch;
  if (opts.resume) {
    if (!fs::exists(checkpoint)) {
      throw std::runtime_error(checkpoint.string() + ": no checkpoint to resume from");
    }
    read_archive(checkpoint.string(), archive, device);
    const std::string file = checkpoint.string();
    const std::string saved_name = archive_string(archive, "recipe_name", file);
    if (saved_name != recipe.name || archive_string(archive, "recipe", file) != recipe_text) {
      throw std::runtime_error(file + ": written by recipe '" + saved_name +
                               "' with other options; resume with the same --model and --config");
    }
    const auto seed = static_cast<uint64_t>(archive_int(archive, "seed", file));
    if (seed != opts.seed) {
      throw std::runtime_error(file + ": written with --seed " + std::to_string(seed) +
                               "; resume with the same seed");
    }
    c10::IValue saved_val;
    const double val_split = archive.try_read("val_split", saved_val) && saved_val.isDouble()
                                 ? saved_val.toDouble()
                                 : 0.0;
    if (val_split != opts.val_split) {
      throw std::runtime_error(file + ": written with --val-split " + number(val_split) +
                               "; resume with the same --val-split");
    }
    first_epoch = archive_int(archive, "epoch", checkpoint.string());
    if (first_epoch < 0 || first_epoch > kMaxEpochs) {
      throw std::runtime_error(checkpoint.string() + ": not a lowbit checkpoint (epoch " +
                               std::to_string(first_epoch) + ")");
    }
    // The run's own length, unless --epochs changes it (the cosine schedule then changes too).
    c10::IValue target;
    if (archive.try_read("target_epochs", target) && target.isInt()) {
      if (opts.epochs <= 0) {
        epochs = target.toInt();
      } else if (opts.epochs != target.toInt() && recipe.schedule == "cosine") {
        warn("--epochs " + std::to_string(opts.epochs) + ": " + checkpoint.string() +
             " was started for " + std::to_string(target.toInt()) +
             " epochs; the cosine learning-rate schedule of the remaining epochs follows the new "
             "length, so the result differs from an uninterrupted run of either length");
      }
    }
    if (first_epoch > epochs) {
      throw std::runtime_error("--epochs " + std::to_string(epochs) + ": " + checkpoint.string() +
                               " already holds " + std::to_string(first_epoch) +
                               " epochs; resume with --epochs " + std::to_string(first_epoch) +
                               " or more (or train afresh with --overwrite)");
    }
  }

  // Image folders are read at the checkpoint's image size on resume, else at --image-size.
  data::LoadOptions load;
  load.threads = opts.threads;
  load.height = opts.image_height;
  load.width = opts.image_width;
  if (opts.resume) {
    const int64_t h = archive_int(archive, "height", checkpoint.string());
    const int64_t w = archive_int(archive, "width", checkpoint.string());
    if (opts.image_height > 0 && (opts.image_height != h || opts.image_width != w)) {
      throw std::runtime_error(
          "--image-size " + data::size_string(opts.image_height, opts.image_width) + ": " +
          checkpoint.string() + " was trained on " + data::size_string(h, w) + " images");
    }
    load.height = h;
    load.width = w;
  }
  s.dataset = data::load_dataset(opts.data_dir, load);
  const data::Dataset& dataset = s.dataset;
  const data::Images& train_images = dataset.train.images;
  if (opts.image_height > 0 && dataset.format != "folders" &&
      (train_images.rows != opts.image_height || train_images.cols != opts.image_width)) {
    throw std::invalid_argument("--image-size " +
                                data::size_string(opts.image_height, opts.image_width) + ": the " +
                                dataset.format + " images of " + opts.data_dir + " are " +
                                data::size_string(train_images.rows, train_images.cols) +
                                "; only image folders are resized");
  }
  // --val-split: the held-out images are a seeded choice; training and its statistics use the rest.
  std::tie(s.training, s.validation) =
      split_for_validation(dataset.train, opts.val_split, opts.seed);
  const data::Split& training = s.training;
  const data::Split& validation = s.validation;
  s.validating = opts.val_split > 0;
  const bool validating = s.validating;
  int64_t &channels = s.channels, &height = s.height, &width = s.width, &classes = s.classes;
  channels = train_images.channels;
  height = train_images.rows;
  width = train_images.cols;
  Standardisation& standardisation = s.standardisation;
  if (opts.resume) {
    // The checkpoint's model: the data set must have its image size and labels within its classes.
    data::ModelShape shape;
    shape.channels = archive_channels(archive, checkpoint.string());
    shape.height = archive_int(archive, "height", checkpoint.string());
    shape.width = archive_int(archive, "width", checkpoint.string());
    shape.classes = archive_int(archive, "num_classes", checkpoint.string());
    if (opts.num_classes > 0 && opts.num_classes != shape.classes) {
      throw std::runtime_error("--num-classes " + std::to_string(opts.num_classes) + ": " +
                               checkpoint.string() + " has " + std::to_string(shape.classes) +
                               " classes");
    }
    const std::string note =
        data::check_compatible(dataset, opts.data_dir, shape, checkpoint.string());
    if (!note.empty()) warn(note);
    channels = shape.channels;
    height = shape.height;
    width = shape.width;
    classes = shape.classes;
    if (!archive_standardisation(archive, checkpoint.string(), channels, &standardisation)) {
      standardisation = channel_statistics(training.images);
    }
  } else {
    classes = run_classes(dataset, opts, warn);
    standardisation = channel_statistics(training.images);
  }
  s.test_images = standardised_images(dataset.test.images, standardisation).to(device);
  s.test_labels = label_tensor(dataset.test.labels).to(device);
  s.held_images = validating ? standardised_images(validation.images, standardisation).to(device)
                             : s.test_images;
  s.held_labels = validating ? label_tensor(validation.labels).to(device) : s.test_labels;
  Augmentation& augmentation = s.augmentation;
  augmentation.crop_padding = recipe.random_crop_padding;
  augmentation.horizontal_flip = recipe.horizontal_flip;

  torch::manual_seed(opts.seed);
  torch::nn::Sequential& model = s.model;
  Optimizers& optimizers = s.optimizers;
  try {
    model = build_model(recipe, height, width, classes, channels);
    // Parameters move before the optimizers see them (the same initial values on every device).
    model->to(device);
    optimizers = make_optimizers(recipe, model);
  } catch (const std::exception& e) {
    // The options come from the recipe and the config file: say which, and for what images.
    const std::string what = dynamic_cast<const c10::Error*>(&e)
                                 ? static_cast<const c10::Error&>(e).what_without_backtrace()
                                 : e.what();
    throw std::invalid_argument(
        (opts.config_path.empty() ? "recipe " + recipe.name
                                  : opts.config_path + " (recipe " + recipe.name + ")") +
        ": its network does not build for " + std::to_string(height) + "x" + std::to_string(width) +
        " images and " + std::to_string(classes) + " classes: " + what);
  }
  auto& history = s.history;
  std::string& metrics_log = s.metrics_log;

  if (opts.resume) {
    try {
      torch::serialize::InputArchive m, a;
      archive.read("model", m);
      load_weights(*model, m, checkpoint.string());
      archive.read("adam", a);
      optimizers.adam->load(a);
      if (optimizers.bop) {
        torch::serialize::InputArchive b;
        archive.read("bop", b);
        optimizers.bop->load(b);
      }
    } catch (const c10::Error& e) {
      throw std::runtime_error(checkpoint.string() + ": cannot restore the model and optimizer: " +
                               e.what_without_backtrace());
    }
    metrics_log = read_metrics(metrics_path, first_epoch, &history);
  }

  return s;
}

}  // namespace train
}  // namespace lowbit
