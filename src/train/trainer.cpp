// The training loop of the `lowbit` command: checkpoints, metrics, resume, progress.
#include <malloc.h>
#include <torch/torch.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "checkpoint_file.h"
#include "lowbit/io/file.h"
#include "lowbit/nn.h"
#include "lowbit/optim.h"
#include "lowbit/plot.h"
#include "lowbit/qat.h"
#include "lowbit/train.h"
#include "metrics.h"
#include "network_yaml.h"

namespace lowbit {
namespace train {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Every field of a recipe as YAML, so that a checkpoint rebuilds exactly its model.
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
  if (!r.network.layers.empty()) {
    e << YAML::Key << "width_multiplier" << YAML::Value << r.network.width_multiplier;
    e << YAML::Key << "layers" << YAML::Value;
    emit_layers(e, r.network.layers);
  }
  e << YAML::EndMap;
  return e.c_str();
}

struct Optimizers {
  std::unique_ptr<torch::optim::Adam> adam;
  std::unique_ptr<optim::Bop> bop;
  void zero_grad() {
    adam->zero_grad();
    if (bop) bop->zero_grad();
  }
  void step() {
    if (bop) bop->step();
    adam->step();
  }
  void set_lr(double lr) {
    for (auto& g : adam->param_groups())
      static_cast<torch::optim::AdamOptions&>(g.options()).lr(lr);
  }
};

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

// The most epochs a run can have (the command's --epochs range).
constexpr int64_t kMaxEpochs = 1000000;

// The files a run writes in its output directory.
const char* const kRunFiles[] = {"checkpoint.pt", "metrics.jsonl",           "metrics.json",
                                 "curves.png",    "integer-parameters.json", "confusion.png"};

// The output directory of a run while it trains: locked; `created` when this run made it.
struct RunDirectory {
  std::unique_ptr<io::DirectoryLock> lock;
  bool created = false;
};

// Prepares the output directory of a run: created, writable, locked, cleared of the temporary files
// of killed runs; an existing run is refused unless resumed or overwritten (its files are removed
// only once the new run is ready to train: remove_run_files).
RunDirectory prepare_out_dir(const fs::path& out, const TrainOptions& o) {
  const std::string dir = out.string();
  if (dir.empty()) throw std::invalid_argument("--out: no directory given");
  if (o.resume && o.overwrite) {
    throw std::invalid_argument(
        "--resume and --overwrite exclude each other: continue the run or "
        "replace it");
  }
  RunDirectory r;
  r.created = io::ensure_writable_directory(dir);
  try {
    r.lock = std::make_unique<io::DirectoryLock>(dir);
  } catch (const std::runtime_error&) {
    throw std::runtime_error(dir +
                             ": another lowbit train is writing to this run directory (it "
                             "holds its lock); wait for it to end or choose another --out");
  }
  std::error_code ec;
  for (const char* name : kRunFiles) io::remove_stale_temporaries((out / name).string());
  fs::remove(out / "checkpoint.pt.tmp", ec);  // the temporary name of lowbit 0.1's first releases
  std::string found;
  for (const char* name : kRunFiles) {
    if (fs::exists(out / name, ec)) found += (found.empty() ? "" : ", ") + std::string(name);
  }
  if (!found.empty() && !o.resume && !o.overwrite) {
    throw std::runtime_error(dir + ": holds a run (" + found +
                             "); give --resume to continue it or --overwrite to replace it");
  }
  return r;
}

void remove_run_files(const fs::path& out) {
  std::error_code ec;
  for (const char* name : kRunFiles) {
    if (!fs::remove(out / name, ec) && ec) {
      throw std::runtime_error((out / name).string() +
                               ": cannot remove: " + io::reason(ec.value()));
    }
  }
}

// A double as the command line would give it (0.1, not 0.100000).
std::string number(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

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

void default_warning(const std::string& text) {
  std::fprintf(stderr, "lowbit: warning: %s\n", text.c_str());
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

torch::nn::Sequential build_model(const Recipe& r, int64_t height, int64_t width, int64_t classes,
                                  int64_t channels) {
  auto net = nn::build_network(network_for(r, channels, height, width, classes));
  if (r.qat == "none") return net;
  qat::QatOptions q;
  q.scheme = qat::parse_scheme(r.qat);
  q.quant_delay = r.quant_delay;
  q.freeze_bn_delay = r.freeze_bn_delay;
  q.ema_decay = r.ema_decay;
  return qat::prepare(net, q);
}

void write_file_atomically(const std::string& path, const std::string& text) {
  io::write_file_atomically(path, text);
}

Tensors to_tensors(const data::Dataset& d) { return to_tensors(d, std::nullopt); }

Tensors to_tensors(const data::Dataset& d, const Checkpoint& c) {
  if (!c.has_normalization) return to_tensors(d);
  return to_tensors(d, c.standardisation);
}

Tensors to_tensors(const data::Dataset& d, const std::optional<Standardisation>& given) {
  Tensors t;
  t.standardisation = given ? *given : channel_statistics(d.train.images);
  t.train_images = standardised_images(d.train.images, t.standardisation);
  t.test_images = standardised_images(d.test.images, t.standardisation);
  t.train_labels = label_tensor(d.train.labels);
  t.test_labels = label_tensor(d.test.labels);
  t.num_classes = d.num_classes;
  return t;
}

int set_threads(int requested) {
  const int cores = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  const int n = requested > 0 ? requested : cores;
  at::set_num_threads(n);
  return n;
}

void retain_freed_memory() {
  // glibc's defaults return freed memory above 128 KiB to the kernel (and serve large blocks by
  // mmap) until its dynamic thresholds have grown; fixed thresholds keep blocks up to 32 MiB (the
  // most mmap_threshold takes on 64-bit) in the heap and trim only beyond 1 GiB of free top.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 64 << 20);
}

Evaluation evaluate_confusion(torch::nn::Sequential& model, const at::Tensor& images,
                              const at::Tensor& labels, int64_t batch_size) {
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  Evaluation r;
  double loss = 0;
  int64_t correct = 0;
  at::Tensor counts;
  const int64_t n = images.size(0);
  for (int64_t b = 0; b < n; b += batch_size) {
    const int64_t e = std::min(n, b + batch_size);
    const auto logits = model->forward(images.slice(0, b, e));
    const auto y = labels.slice(0, b, e);
    const auto predicted = logits.argmax(1);
    loss += torch::cross_entropy_loss(logits, y, {}, at::Reduction::Sum).item<double>();
    correct += predicted.eq(y).sum().item<int64_t>();
    r.classes = logits.size(1);
    const auto cells =
        torch::bincount((y * r.classes + predicted).cpu(), {}, r.classes * r.classes);
    counts = counts.defined() ? counts + cells : cells;
  }
  model->train(was_training);
  r.loss = n > 0 ? loss / n : 0.0;
  r.accuracy = n > 0 ? static_cast<double>(correct) / n : 0.0;
  if (counts.defined()) {
    const at::Tensor c = counts.to(torch::kLong).contiguous();
    r.confusion.assign(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
  }
  return r;
}

std::pair<double, double> evaluate(torch::nn::Sequential& model, const at::Tensor& images,
                                   const at::Tensor& labels, int64_t batch_size) {
  const Evaluation e = evaluate_confusion(model, images, labels, batch_size);
  return {e.loss, e.accuracy};
}

torch::Device parse_device(const std::string& name) {
  c10::optional<torch::Device> d;
  try {
    d = torch::Device(name);
  } catch (const c10::Error&) {
    throw std::invalid_argument("--device '" + name + "': expected cpu, cuda or cuda:N");
  }
  if (d->is_cpu()) return *d;
  if (!d->is_cuda()) {
    throw std::invalid_argument("--device '" + name + "': expected cpu, cuda or cuda:N");
  }
  if (!torch::cuda::is_available()) {
    throw std::invalid_argument("--device '" + name +
                                "': no CUDA device here (or this LibTorch was built without CUDA)");
  }
  if (d->has_index() && d->index() >= static_cast<int>(torch::cuda::device_count())) {
    throw std::invalid_argument("--device '" + name + "': there are only " +
                                std::to_string(torch::cuda::device_count()) + " CUDA devices");
  }
  return *d;
}

namespace {

TrainResult train_in(const Recipe& recipe, const TrainOptions& opts, const torch::Device& device) {
  const auto start = Clock::now();
  const auto warn = opts.warn ? opts.warn : default_warning;
  const fs::path out(opts.out_dir);
  const fs::path checkpoint = out / "checkpoint.pt";
  const fs::path metrics_path = out / "metrics.jsonl";
  const std::string recipe_text = recipe_to_yaml(recipe);
  int64_t epochs = opts.epochs > 0 ? opts.epochs : recipe.epochs;

  // A resumed run is checked against the options before the data set is read.
  torch::serialize::InputArchive archive;
  int64_t first_epoch = 0;
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
  const data::Dataset dataset = data::load_dataset(opts.data_dir, load);
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
  const auto [training, validation] =
      split_for_validation(dataset.train, opts.val_split, opts.seed);
  const bool validating = opts.val_split > 0;
  const std::string held_out = validating ? "val" : "test";
  int64_t channels = train_images.channels, height = train_images.rows, width = train_images.cols;
  int64_t classes = 0;
  Standardisation standardisation;
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
  const at::Tensor test_images =
      standardised_images(dataset.test.images, standardisation).to(device);
  const at::Tensor test_labels = label_tensor(dataset.test.labels).to(device);
  const at::Tensor held_images =
      validating ? standardised_images(validation.images, standardisation).to(device) : test_images;
  const at::Tensor held_labels =
      validating ? label_tensor(validation.labels).to(device) : test_labels;
  Augmentation augmentation;
  augmentation.crop_padding = recipe.random_crop_padding;
  augmentation.horizontal_flip = recipe.horizontal_flip;

  torch::manual_seed(opts.seed);
  torch::nn::Sequential model{nullptr};
  Optimizers optimizers;
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
  std::vector<std::map<std::string, double>> history;
  std::string metrics_log;  // metrics.jsonl, rewritten whole (atomically) every epoch

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

  // Everything is checked and ready: only now does --overwrite remove the previous run.
  if (opts.overwrite) remove_run_files(out);
  optim::FlipRatio flips;
  flips.update(*model);
  const int64_t n = training.images.count;
  for (int64_t epoch = first_epoch; epoch < epochs; ++epoch) {
    const auto epoch_start = Clock::now();
    optimizers.set_lr(learning_rate(recipe, epoch, epochs));
    // Shuffling, augmentation and dropout depend only on (seed, epoch): a resumed run repeats them.
    const uint64_t epoch_seed = opts.seed * 1000003ULL + static_cast<uint64_t>(epoch) + 1;
    torch::manual_seed(epoch_seed);
    const at::Tensor permutation = torch::randperm(n, torch::kLong);
    BatchLoader loader(
        training, standardisation, augmentation,
        std::vector<int64_t>(permutation.data_ptr<int64_t>(), permutation.data_ptr<int64_t>() + n),
        recipe.batch_size, epoch_seed, opts.loader_threads);
    model->train();
    double loss_sum = 0;
    int64_t correct = 0, seen = 0;
    auto last_print = Clock::now();
    // A terminal gets a bar redrawn in place; a log file a line at every tenth of the epoch.
    const bool terminal = isatty(STDERR_FILENO) != 0;
    int64_t last_tenth = 0;
    Batch batch;
    while (loader.next(batch)) {
      const auto x = batch.images.to(device);
      const auto y = batch.labels.to(device);
      const int64_t e = seen + x.size(0);
      optimizers.zero_grad();
      const auto logits = model->forward(x);
      const auto loss = torch::cross_entropy_loss(logits, y);
      loss.backward();
      optimizers.step();
      nn::apply_constraints(*model);
      loss_sum += loss.item<double>() * static_cast<double>(x.size(0));
      correct += logits.argmax(1).eq(y).sum().item<int64_t>();
      seen = e;
      const int64_t tenth = 10 * e / n;
      if (opts.progress &&
          (terminal ? seconds_since(last_print) > 0.25 || e == n : tenth > last_tenth)) {
        last_print = Clock::now();
        last_tenth = tenth;
        const int width_bar = 24;
        const int filled = static_cast<int>(width_bar * e / n);
        std::fprintf(stderr,
                     terminal ? "\repoch %lld/%lld [%s%s] %3d%% loss %.4f acc %.4f %6.0f samples/s"
                              : "epoch %lld/%lld [%s%s] %3d%% loss %.4f acc %.4f %6.0f samples/s\n",
                     static_cast<long long>(epoch + 1), static_cast<long long>(epochs),
                     std::string(filled, '#').c_str(), std::string(width_bar - filled, '.').c_str(),
                     static_cast<int>(100 * e / n), loss_sum / seen,
                     static_cast<double>(correct) / seen, seen / seconds_since(epoch_start));
      }
    }
    const double train_seconds = seconds_since(epoch_start);
    const auto [held_loss, held_acc] = evaluate(model, held_images, held_labels);
    std::map<std::string, double> row = {
        {"epoch", static_cast<double>(epoch + 1)},
        {"train_loss", seen > 0 ? loss_sum / seen : 0.0},
        {"train_accuracy", seen > 0 ? static_cast<double>(correct) / seen : 0.0},
        {held_out + "_loss", held_loss},
        {held_out + "_accuracy", held_acc},
        {"learning_rate", learning_rate(recipe, epoch, epochs)},
        {"flip_ratio", flips.update(*model).at("")},
        {"samples_per_second", seen / std::max(train_seconds, 1e-9)},
        {"seconds", seconds_since(epoch_start)},
        {"loader_wait_seconds", loader.waited_seconds()}};
    if (opts.progress) {
      std::fprintf(stderr, " | %s loss %.4f acc %.4f (%.1f s)\n", held_out.c_str(), held_loss,
                   held_acc, row["seconds"]);
    }
    // The checkpoint first, then the log (each atomically): a run killed in between repeats the
    // epoch on resume, and read_metrics drops the line it may have left.
    torch::serialize::OutputArchive archive_out;
    torch::serialize::OutputArchive m, a;
    model->save(m);
    optimizers.adam->save(a);
    archive_out.write("model", m);
    archive_out.write("adam", a);
    if (optimizers.bop) {
      torch::serialize::OutputArchive bop;
      optimizers.bop->save(bop);
      archive_out.write("bop", bop);
    }
    archive_out.write("epoch", c10::IValue(epoch + 1));
    archive_out.write("recipe_name", c10::IValue(recipe.name));
    archive_out.write("recipe", c10::IValue(recipe_text));
    archive_out.write("seed", c10::IValue(static_cast<int64_t>(opts.seed)));
    archive_out.write("target_epochs", c10::IValue(epochs));
    archive_out.write("val_split", c10::IValue(opts.val_split));
    archive_out.write("height", c10::IValue(height));
    archive_out.write("width", c10::IValue(width));
    archive_out.write("num_classes", c10::IValue(classes));
    write_input_description(archive_out, channels, standardisation, dataset.class_names);
    write_archive(archive_out, checkpoint.string());
    metrics_log += json_line(row, recipe.name) + "\n";
    write_file_atomically(metrics_path.string(), metrics_log);
    history.push_back(row);
  }

  TrainResult result;
  result.epochs = epochs;
  // The test split, evaluated once at the end with --val-split, else as after the last epoch.
  result.test = evaluate_confusion(model, test_images, test_labels);
  result.test_accuracy = result.test.accuracy;
  result.class_names = dataset.class_names;
  result.seconds = seconds_since(start);
  std::ostringstream final_metrics;
  final_metrics.precision(8);
  final_metrics << "{\"model\": \"" << recipe.name
                << "\", \"test_accuracy\": " << result.test_accuracy
                << ", \"test_loss\": " << result.test.loss << ", \"epochs\": " << epochs
                << ", \"seconds\": " << result.seconds << ", \"seed\": " << opts.seed;
  if (validating) {
    final_metrics << ", \"val_split\": " << opts.val_split << ", \"val_accuracy\": "
                  << (history.empty() ? 0.0 : history.back().at("val_accuracy"));
  }
  final_metrics << ", \"confusion\": " << confusion_json(result.test) << "}\n";
  write_file_atomically((out / "metrics.json").string(), final_metrics.str());
  write_plot(out / "curves.png", history, held_out);
  char title[96];
  std::snprintf(title, sizeof title, "%s: test accuracy %.4f", recipe.name.c_str(),
                result.test_accuracy);
  write_confusion(out / "confusion.png", result.test, dataset.class_names, title);
  if (recipe.qat != "none") {
    write_file_atomically((out / "integer-parameters.json").string(),
                          qat::integer_parameters_json(qat::integer_parameters(model),
                                                       qat::parse_scheme(recipe.qat)));
  }
  return result;
}

}  // namespace

TrainResult train(const Recipe& recipe, const TrainOptions& opts) {
  const torch::Device device = parse_device(opts.device);
  if (opts.loader_threads < 0) throw std::invalid_argument("loader threads must be >= 0");
  if (!(opts.val_split >= 0 && opts.val_split < 1)) {
    throw std::invalid_argument("--val-split " + number(opts.val_split) +
                                ": must be a fraction in [0, 1) of the training images");
  }
  set_threads(opts.threads);
  const RunDirectory dir = prepare_out_dir(opts.out_dir, opts);
  try {
    return train_in(recipe, opts, device);
  } catch (...) {
    // A run that failed before writing anything leaves no empty directory of its own behind.
    std::error_code ec;
    if (dir.created && fs::is_empty(opts.out_dir, ec)) fs::remove(opts.out_dir, ec);
    throw;
  }
}

}  // namespace train
}  // namespace lowbit
