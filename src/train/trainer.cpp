// The training loop of the `lowbit` command: checkpoints, metrics, resume, progress.
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

#include "checkpoint_file.h"
#include "lowbit/distributed.h"
#include "lowbit/io/file.h"
#include "lowbit/nn.h"
#include "lowbit/optim.h"
#include "lowbit/plot.h"
#include "lowbit/qat.h"
#include "lowbit/train.h"
#include "metrics.h"
#include "network_yaml.h"
#include "run_setup.h"

namespace lowbit {
namespace train {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

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
  // Layers the recipe quantizes itself (binary ones between 8-bit ends) stay as they are.
  return qat::prepare(net, q, /*keep_quantized_layers=*/true);
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

// The evaluation of a labelled set; in a data-parallel run each rank evaluates its shard and the
// sums are all-reduced, so every rank gets the figures of the whole set.
Evaluation evaluate_run(ProcessGroup* group, torch::nn::Sequential& model, const at::Tensor& images,
                        const at::Tensor& labels, int64_t classes) {
  if (group == nullptr) return evaluate_confusion(model, images, labels);
  const auto [begin, end] = shard_range(images.size(0), group->rank(), group->size());
  const Evaluation local =
      evaluate_confusion(model, images.slice(0, begin, end), labels.slice(0, begin, end));
  // [loss sum, count, confusion...] in float64 (counts are exact up to 2^53).
  at::Tensor sums = torch::zeros({2 + classes * classes}, torch::kDouble);
  auto* p = sums.data_ptr<double>();
  p[0] = local.loss * static_cast<double>(end - begin);
  p[1] = static_cast<double>(end - begin);
  for (size_t i = 0; i < local.confusion.size(); ++i)
    p[2 + i] = static_cast<double>(local.confusion[i]);
  group->all_reduce_sum(sums);
  Evaluation r;
  r.classes = classes;
  const double n = p[1];
  r.loss = n > 0 ? p[0] / n : 0.0;
  int64_t correct = 0;
  r.confusion.resize(static_cast<size_t>(classes * classes));
  for (int64_t i = 0; i < classes * classes; ++i) {
    r.confusion[i] = static_cast<int64_t>(p[2 + i]);
    if (i / classes == i % classes) correct += r.confusion[i];
  }
  r.accuracy = n > 0 ? static_cast<double>(correct) / n : 0.0;
  return r;
}

// Rank 0 only: the run's checkpoint after `epoch` epochs, written atomically.
void write_checkpoint(const fs::path& file, const Recipe& recipe, const TrainOptions& opts,
                      RunSetup& s, int64_t epoch) {
  torch::serialize::OutputArchive archive_out;
  torch::serialize::OutputArchive m, a;
  s.model->save(m);
  s.optimizers.adam->save(a);
  archive_out.write("model", m);
  archive_out.write("adam", a);
  if (s.optimizers.bop) {
    torch::serialize::OutputArchive bop;
    s.optimizers.bop->save(bop);
    archive_out.write("bop", bop);
  }
  archive_out.write("epoch", c10::IValue(epoch));
  archive_out.write("recipe_name", c10::IValue(recipe.name));
  archive_out.write("recipe", c10::IValue(s.recipe_text));
  archive_out.write("seed", c10::IValue(static_cast<int64_t>(opts.seed)));
  archive_out.write("target_epochs", c10::IValue(s.epochs));
  archive_out.write("val_split", c10::IValue(opts.val_split));
  archive_out.write("height", c10::IValue(s.height));
  archive_out.write("width", c10::IValue(s.width));
  archive_out.write("num_classes", c10::IValue(s.classes));
  write_input_description(archive_out, s.channels, s.standardisation, s.dataset.class_names);
  write_archive(archive_out, file.string());
}

// Batch norm's statistics estimated anew on the first batches of the epoch's order (all: every
// batch), unaugmented; each rank on its part of them, then averaged over the ranks.
int64_t recalibrate_run(ProcessGroup* group, torch::nn::Sequential& model, const RunSetup& s,
                        const at::Tensor& permutation, const Recipe& recipe, uint64_t epoch_seed,
                        int loader_threads, const torch::Device& device) {
  const int64_t all = permutation.size(0), wanted = recipe.bn_recalibration_batches;
  const int64_t n =
      wanted < 0 || wanted > all / recipe.batch_size ? all : wanted * recipe.batch_size;
  const int world = group != nullptr ? group->size() : 1;
  const int rank = group != nullptr ? group->rank() : 0;
  BatchLoader loader(
      s.training, s.standardisation, Augmentation{},
      std::vector<int64_t>(permutation.data_ptr<int64_t>(), permutation.data_ptr<int64_t>() + n),
      recipe.batch_size, epoch_seed, loader_threads, 4, 2 * world, {rank, world});
  Batch batch;
  const int64_t layers = recalibrate_batch_norm(model, [&](at::Tensor& images) {
    if (!loader.next(batch)) return false;
    images = batch.images.to(device);
    return true;
  });
  if (group != nullptr) average_buffers(*group, *model);
  return layers;
}

// Rank 0 only: metrics.json, curves.png, confusion.png (and the integer parameters of QAT).
void write_final_files(const fs::path& out, const Recipe& recipe, const TrainOptions& opts,
                       RunSetup& s, const TrainResult& result) {
  std::ostringstream final_metrics;
  final_metrics.precision(8);
  final_metrics << "{\"model\": \"" << recipe.name
                << "\", \"test_accuracy\": " << result.test_accuracy
                << ", \"test_loss\": " << result.test.loss << ", \"epochs\": " << s.epochs
                << ", \"seconds\": " << result.seconds << ", \"seed\": " << opts.seed;
  if (s.validating) {
    final_metrics << ", \"val_split\": " << opts.val_split << ", \"val_accuracy\": "
                  << (s.history.empty() ? 0.0 : s.history.back().at("val_accuracy"));
  }
  if (opts.distributed.distributed()) {
    final_metrics << ", \"world_size\": " << opts.distributed.world_size;
  }
  final_metrics << ", \"confusion\": " << confusion_json(result.test) << "}\n";
  write_file_atomically((out / "metrics.json").string(), final_metrics.str());
  write_plot(out / "curves.png", s.history, s.validating ? "val" : "test");
  char title[96];
  std::snprintf(title, sizeof title, "%s: test accuracy %.4f", recipe.name.c_str(),
                result.test_accuracy);
  write_confusion(out / "confusion.png", result.test, s.dataset.class_names, title);
  if (recipe.qat != "none") {
    write_file_atomically((out / "integer-parameters.json").string(),
                          qat::integer_parameters_json(qat::integer_parameters(s.model),
                                                       qat::parse_scheme(recipe.qat)));
  }
}

// Runs `step` on this rank, then the ranks of `group` (if any) agree that it succeeded everywhere:
// a rank whose step throws tells the others and rethrows its own error; the others then fail with
// "rank R of W: <others_failed> (its error says why)" at once instead of at a later collective.
template <class Step>
void on_every_rank(ProcessGroup* group, Step&& step, const char* others_failed) {
  try {
    step();
  } catch (...) {
    if (group != nullptr) group->fail_together();
    throw;
  }
  if (group != nullptr && !group->all_agree(true)) {
    throw std::runtime_error("rank " + std::to_string(group->rank()) + " of " +
                             std::to_string(group->size()) + ": " + others_failed +
                             " (its error says why)");
  }
}

// Every rank must train the same run (recipe, seed, epochs, data set, resumed epoch): they would
// otherwise train on overlapping samples or call different collectives. Rank 0's description is
// sent to all; a rank that differs fails naming what differs, and the others with it.
void check_same_run(ProcessGroup& group, const TrainOptions& opts, const RunSetup& s) {
  int64_t parameters = 0;
  for (const auto& p : s.model->parameters()) parameters += p.numel();
  const std::vector<std::pair<const char*, int64_t>> fields = {
      {"recipe and config (a hash)",
       static_cast<int64_t>(std::hash<std::string>()(s.recipe_text) >> 1)},
      {"--seed", static_cast<int64_t>(opts.seed)},
      {"--epochs", s.epochs},
      {"the resumed epoch (checkpoint)", s.first_epoch},
      {"training images", s.training.images.count},
      {"held-out images", s.held_images.size(0)},
      {"test images", s.test_images.size(0)},
      {"classes", s.classes},
      {"model parameters", parameters}};
  at::Tensor mine = torch::empty({static_cast<int64_t>(fields.size())}, torch::kLong);
  for (size_t i = 0; i < fields.size(); ++i) mine[static_cast<int64_t>(i)] = fields[i].second;
  at::Tensor root = mine.clone();
  group.broadcast(root, 0);
  std::string differs;
  for (size_t i = 0; i < fields.size(); ++i) {
    const int64_t theirs = root[static_cast<int64_t>(i)].item<int64_t>();
    if (theirs != fields[i].second && differs.empty()) {
      differs = fields[i].first + std::string(": ") + std::to_string(fields[i].second) + " here, " +
                std::to_string(theirs) + " on rank 0";
    }
  }
  if (!group.all_agree(differs.empty())) {
    throw std::runtime_error(
        "rank " + std::to_string(group.rank()) + " of " + std::to_string(group.size()) +
        (differs.empty() ? ": another rank's run differs from rank 0's (its error says how)"
                         : ": its run differs from rank 0's: " + differs +
                               " (every rank needs the same options, data set and --out)"));
  }
}

TrainResult train_in(const Recipe& recipe, const TrainOptions& opts, const torch::Device& device,
                     ProcessGroup* group) {
  const auto start = Clock::now();
  const auto warn = opts.warn ? opts.warn : default_warning;
  const bool writer = group == nullptr || group->rank() == 0;  // writes the run's files
  if (writer && device.is_cpu()) {
    if (const std::string slow = slow_blas_warning(); !slow.empty()) warn(slow);
  }
  const int world = group != nullptr ? group->size() : 1;
  const int rank = group != nullptr ? group->rank() : 0;
  const fs::path out(opts.out_dir);
  RunSetup s;
  on_every_rank(
      group,
      [&] {
        s = prepare_run(
            recipe, opts, device, writer ? warn : [](const std::string&) {});
        if (group != nullptr && recipe.batch_size < 2 * world) {
          throw std::invalid_argument("batch_size " + std::to_string(recipe.batch_size) +
                                      ": a data-parallel run of " + std::to_string(world) +
                                      " processes needs at least 2 samples per process in a batch");
        }
      },
      "another rank failed to prepare the run");
  if (group != nullptr) {
    check_same_run(*group, opts, s);
    // The same starting point everywhere, whatever each rank's random state.
    broadcast_state(*group, *s.model, 0);
  }
  // Everything is checked and ready: only now does --overwrite remove the previous run.
  on_every_rank(
      group,
      [&] {
        if (opts.overwrite && writer) remove_run_files(out);
      },
      "rank 0 cannot replace the run in --out");
  const std::string held_out = s.validating ? "val" : "test";
  torch::nn::Sequential& model = s.model;
  Optimizers& optimizers = s.optimizers;
  optim::FlipRatio flips;
  flips.update(*model);
  const int64_t n = s.training.images.count;
  for (int64_t epoch = s.first_epoch; epoch < s.epochs; ++epoch) {
    const auto epoch_start = Clock::now();
    optimizers.set_lr(learning_rate(recipe, epoch, s.epochs));
    // Shuffling, augmentation and dropout depend only on (seed, epoch): a resumed run repeats them,
    // and every rank draws the same order of the whole training split, of which it takes its part
    // of each batch.
    const uint64_t epoch_seed = opts.seed * 1000003ULL + static_cast<uint64_t>(epoch) + 1;
    torch::manual_seed(epoch_seed);
    const at::Tensor permutation = torch::randperm(n, torch::kLong);
    // Each rank's own dropout masks (its samples are others than the other ranks').
    if (group != nullptr) torch::manual_seed(epoch_seed ^ (0x9E3779B97F4A7C15ULL * (rank + 1)));
    BatchLoader loader(
        s.training, s.standardisation, s.augmentation,
        std::vector<int64_t>(permutation.data_ptr<int64_t>(), permutation.data_ptr<int64_t>() + n),
        recipe.batch_size, epoch_seed, opts.loader_threads, 4, 2 * world, {rank, world});
    model->train();
    double loss_sum = 0;  // of this rank's samples
    int64_t correct = 0, local_seen = 0, seen = 0;
    auto last_print = Clock::now();
    // A terminal gets a bar redrawn in place; a log file a line at every tenth of the epoch.
    const bool terminal = isatty(STDERR_FILENO) != 0;
    int64_t last_tenth = 0;
    Batch batch;
    while (loader.next(batch)) {
      const auto x = batch.images.to(device);
      const auto y = batch.labels.to(device);
      const int64_t e = seen + batch.global_count;
      optimizers.zero_grad();
      const auto logits = model->forward(x);
      double batch_loss = 0;
      if (group == nullptr) {
        const auto loss = torch::cross_entropy_loss(logits, y);
        loss.backward();
        batch_loss = loss.item<double>() * static_cast<double>(x.size(0));
      } else {
        // The mean over the whole batch: each rank's sum over its part, divided by the batch's
        // size, and the gradients summed over the ranks.
        const auto loss = torch::cross_entropy_loss(logits, y, {}, at::Reduction::Sum) /
                          static_cast<double>(batch.global_count);
        loss.backward();
        all_reduce_gradients(*group, *model);
        // Batch norm's running statistics and QAT's observers, averaged after every step: the
        // ranks keep one model (the observers' ranges fold into the quantized weights).
        average_buffers(*group, *model);
        batch_loss = loss.item<double>() * static_cast<double>(batch.global_count);
      }
      optimizers.step();
      nn::apply_constraints(*model);
      loss_sum += batch_loss;
      correct += logits.argmax(1).eq(y).sum().item<int64_t>();
      local_seen += x.size(0);
      seen = e;
      const int64_t tenth = 10 * e / n;
      if (opts.progress && writer &&
          (terminal ? seconds_since(last_print) > 0.25 || e == n : tenth > last_tenth)) {
        last_print = Clock::now();
        last_tenth = tenth;
        const int width_bar = 24;
        const int filled = static_cast<int>(width_bar * e / n);
        std::fprintf(stderr,
                     terminal ? "\repoch %lld/%lld [%s%s] %3d%% loss %.4f acc %.4f %6.0f samples/s"
                              : "epoch %lld/%lld [%s%s] %3d%% loss %.4f acc %.4f %6.0f samples/s\n",
                     static_cast<long long>(epoch + 1), static_cast<long long>(s.epochs),
                     std::string(filled, '#').c_str(), std::string(width_bar - filled, '.').c_str(),
                     static_cast<int>(100 * e / n), loss_sum / local_seen,
                     static_cast<double>(correct) / local_seen, seen / seconds_since(epoch_start));
      }
    }
    const double train_seconds = seconds_since(epoch_start);
    if (group != nullptr) {
      // The epoch's figures over every rank; the running statistics of batch norm averaged.
      at::Tensor sums = torch::tensor({loss_sum, static_cast<double>(correct)}, torch::kDouble);
      group->all_reduce_sum(sums);
      loss_sum = sums[0].item<double>();
      correct = static_cast<int64_t>(sums[1].item<double>());
    }
    // The last epoch's statistics are estimated anew before its evaluation and checkpoint.
    if (recipe.bn_recalibration_batches != 0 && epoch + 1 == s.epochs &&
        recalibrate_run(group, model, s, permutation, recipe, epoch_seed, opts.loader_threads,
                        device) == 0 &&
        writer) {
      warn(
          "bn_recalibration_batches: the model has no batch-norm layer to recalibrate (those "
          "folded by quantization-aware training keep their own statistics)");
    }
    const Evaluation held = evaluate_run(group, model, s.held_images, s.held_labels, s.classes);
    std::map<std::string, double> row = {
        {"epoch", static_cast<double>(epoch + 1)},
        {"train_loss", seen > 0 ? loss_sum / seen : 0.0},
        {"train_accuracy", seen > 0 ? static_cast<double>(correct) / seen : 0.0},
        {held_out + "_loss", held.loss},
        {held_out + "_accuracy", held.accuracy},
        {"learning_rate", learning_rate(recipe, epoch, s.epochs)},
        {"flip_ratio", flips.update(*model).at("")},
        {"samples_per_second", seen / std::max(train_seconds, 1e-9)},
        {"seconds", seconds_since(epoch_start)},
        {"loader_wait_seconds", loader.waited_seconds()}};
    if (opts.progress && writer) {
      std::fprintf(stderr, " | %s loss %.4f acc %.4f (%.1f s)\n", held_out.c_str(), held.loss,
                   held.accuracy, row["seconds"]);
    }
    s.history.push_back(row);
    if (!writer) continue;
    // The log first, then the checkpoint (each atomically): a run killed in between repeats the
    // epoch on resume, and read_metrics drops the line it left (the checkpoint does not hold that
    // epoch). The other order lost the epoch's line: the checkpoint held it, so no resume re-ran it.
    s.metrics_log += json_line(row, recipe.name) + "\n";
    write_file_atomically((out / "metrics.jsonl").string(), s.metrics_log);
    write_checkpoint(out / "checkpoint.pt", recipe, opts, s, epoch + 1);
  }

  TrainResult result;
  result.epochs = s.epochs;
  // The test split, evaluated once at the end with --val-split, else as after the last epoch.
  result.test = evaluate_run(group, model, s.test_images, s.test_labels, s.classes);
  result.test_accuracy = result.test.accuracy;
  result.class_names = s.dataset.class_names;
  result.seconds = seconds_since(start);
  if (writer) write_final_files(out, recipe, opts, s, result);
  return result;
}

}  // namespace

TrainResult train(const Recipe& recipe, const TrainOptions& opts) {
  torch::Device device = parse_device(opts.device);
  if (opts.loader_threads < 0) throw std::invalid_argument("loader threads must be >= 0");
  if (!(opts.val_split >= 0 && opts.val_split < 1)) {
    throw std::invalid_argument("--val-split " + number(opts.val_split) +
                                ": must be a fraction in [0, 1) of the training images");
  }
  const DistributedEnvironment& env = opts.distributed;
  // Processes on one machine share its cores, and each takes its own GPU (LOCAL_RANK).
  set_threads(opts.threads, env.local_world_size);
  const bool local_gpu = env.distributed() && device.is_cuda() && !device.has_index();
  const auto rank_device = [&] {
    try {
      return parse_device("cuda:" + std::to_string(env.local_rank));
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(
          "LOCAL_RANK=" + std::to_string(env.local_rank) +
          ": this rank's GPU (--device cuda takes cuda:LOCAL_RANK): " + e.what());
    }
  };
  std::unique_ptr<ProcessGroup> group;
  if (env.distributed()) {
    const std::string backend = !opts.distributed_backend.empty() ? opts.distributed_backend
                                : device.is_cuda() && distributed_backends().size() > 1 ? "nccl"
                                                                                        : "gloo";
    // NCCL needs the rank's GPU to form; gloo checks it with the other ranks (below), so that an
    // error ends them at once.
    if (local_gpu && backend == "nccl") device = rank_device();
    group = std::make_unique<ProcessGroup>(
        env, backend,
        std::chrono::milliseconds(static_cast<int64_t>(opts.distributed_timeout_seconds * 1000)),
        device);
  }
  // Rank 0 alone owns the output directory; the others read a resumed checkpoint from it.
  RunDirectory dir;
  on_every_rank(
      group.get(),
      [&] {
        if (local_gpu && !device.has_index()) device = rank_device();
        if (group == nullptr || group->rank() == 0) dir = prepare_out_dir(opts.out_dir, opts);
      },
      "another rank failed to start");
  try {
    return train_in(recipe, opts, device, group.get());
  } catch (...) {
    // A run that failed before writing anything leaves no empty directory of its own behind.
    std::error_code ec;
    if (dir.created && fs::is_empty(opts.out_dir, ec)) fs::remove(opts.out_dir, ec);
    throw;
  }
}

}  // namespace train
}  // namespace lowbit
