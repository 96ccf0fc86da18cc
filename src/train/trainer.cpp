// The training loop of the `lowbit` command: checkpoints, metrics, resume, progress.
#include <optional>
#include <torch/torch.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>

#include "lowbit/nn.h"
#include "lowbit/optim.h"
#include "lowbit/plot.h"
#include "lowbit/qat.h"
#include "lowbit/train.h"

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

nn::NetworkOptions network_for(const Recipe& r, int64_t height, int64_t width, int64_t classes) {
  nn::NetworkOptions n = r.network;
  n.in_channels = 1;
  n.height = height;
  n.width = width;
  n.num_classes = classes;
  return n;
}

// Keeps the lines of metrics.jsonl whose epoch is at most `epochs` (after a resume).
void truncate_metrics(const fs::path& path, int64_t epochs) {
  if (!fs::exists(path)) return;
  std::ifstream in(path);
  std::string line, kept;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const YAML::Node n = YAML::Load(line);  // JSON is YAML
    if (n["epoch"] && n["epoch"].as<int64_t>() <= epochs) kept += line + "\n";
  }
  write_file_atomically(path.string(), kept);
}

void write_plot(const fs::path& path, const std::vector<std::map<std::string, double>>& rows) {
  plot::Chart loss{"loss", "epoch", "loss", {}}, acc{"accuracy", "epoch", "accuracy", {}};
  plot::Series tl{"train", {}, {}, 0x1f77b4}, vl{"test", {}, {}, 0xd62728};
  plot::Series ta{"train", {}, {}, 0x1f77b4}, va{"test", {}, {}, 0xd62728};
  for (const auto& r : rows) {
    const double e = r.at("epoch");
    for (auto* s : {&tl, &vl, &ta, &va}) s->x.push_back(e);
    tl.y.push_back(r.at("train_loss"));
    vl.y.push_back(r.at("test_loss"));
    ta.y.push_back(r.at("train_accuracy"));
    va.y.push_back(r.at("test_accuracy"));
  }
  loss.series = {tl, vl};
  acc.series = {ta, va};
  plot::write_png(path.string(), {loss, acc});
}

std::string json_line(const std::map<std::string, double>& row, const std::string& model) {
  std::ostringstream s;
  s.precision(8);
  s << "{\"model\": \"" << model << "\"";
  for (const auto& [k, v] : row) {
    s << ", \"" << k << "\": ";
    if (k == "epoch") {
      s << static_cast<int64_t>(v);
    } else {
      s << v;
    }
  }
  s << "}";
  return s.str();
}

}  // namespace

torch::nn::Sequential build_model(const Recipe& r, int64_t height, int64_t width, int64_t classes) {
  auto net = nn::build_network(network_for(r, height, width, classes));
  if (r.qat == "none") return net;
  qat::QatOptions q;
  q.scheme = qat::parse_scheme(r.qat);
  q.quant_delay = r.quant_delay;
  q.freeze_bn_delay = r.freeze_bn_delay;
  q.ema_decay = r.ema_decay;
  return qat::prepare(net, q);
}

void write_file_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error(tmp + ": cannot write");
    out << text;
    out.flush();
    if (!out) throw std::runtime_error(tmp + ": write failed");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    throw std::runtime_error(path + ": cannot replace with " + tmp);
  }
}

Tensors to_tensors(const data::IdxDataset& d) { return to_tensors(d, std::nullopt); }

Tensors to_tensors(const data::IdxDataset& d, const Checkpoint& c) {
  if (!c.has_normalization) return to_tensors(d);
  return to_tensors(d, std::make_pair(c.input_mean, c.input_std));
}

Tensors to_tensors(const data::IdxDataset& d,
                   const std::optional<std::pair<double, double>>& given) {
  auto images = [](const data::IdxImages& im) {
    return torch::from_blob(const_cast<uint8_t*>(im.pixels.data()), {im.count, 1, im.rows, im.cols},
                            torch::kUInt8)
        .to(torch::kFloat)
        .div_(255.0);
  };
  auto labels = [](const data::IdxLabels& l) {
    return torch::from_blob(const_cast<uint8_t*>(l.labels.data()),
                            {static_cast<int64_t>(l.labels.size())}, torch::kUInt8)
        .to(torch::kLong);
  };
  Tensors t;
  t.train_images = images(d.train.images);
  t.test_images = images(d.test.images);
  const double mean = given ? given->first : t.train_images.mean().item<double>();
  const double std = given ? given->second : std::max(t.train_images.std().item<double>(), 1e-6);
  t.train_images.sub_(mean).div_(std);
  t.test_images.sub_(mean).div_(std);
  t.input_mean = mean;
  t.input_std = std;
  t.train_labels = labels(d.train.labels);
  t.test_labels = labels(d.test.labels);
  t.num_classes = d.num_classes;
  return t;
}

std::pair<double, double> evaluate(torch::nn::Sequential& model, const at::Tensor& images,
                                   const at::Tensor& labels, int64_t batch_size) {
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  double loss = 0;
  int64_t correct = 0;
  const int64_t n = images.size(0);
  for (int64_t b = 0; b < n; b += batch_size) {
    const int64_t e = std::min(n, b + batch_size);
    const auto logits = model->forward(images.slice(0, b, e));
    const auto y = labels.slice(0, b, e);
    loss += torch::cross_entropy_loss(logits, y, {}, at::Reduction::Sum).item<double>();
    correct += logits.argmax(1).eq(y).sum().item<int64_t>();
  }
  model->train(was_training);
  return {n > 0 ? loss / n : 0.0, n > 0 ? static_cast<double>(correct) / n : 0.0};
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

TrainResult train(const Recipe& recipe, const TrainOptions& opts) {
  const auto start = Clock::now();
  const torch::Device device = parse_device(opts.device);
  const fs::path out(opts.out_dir);
  fs::create_directories(out);
  const data::IdxDataset dataset = data::load_idx_dataset(opts.data_dir);
  Tensors t = to_tensors(dataset);
  if (!device.is_cpu()) {
    t.train_images = t.train_images.to(device);
    t.train_labels = t.train_labels.to(device);
    t.test_images = t.test_images.to(device);
    t.test_labels = t.test_labels.to(device);
  }
  const int64_t epochs = opts.epochs > 0 ? opts.epochs : recipe.epochs;
  const int64_t height = dataset.train.images.rows, width = dataset.train.images.cols;

  torch::manual_seed(opts.seed);
  auto model = build_model(recipe, height, width, t.num_classes);
  // Parameters move before the optimizers see them (the same initial values on every device).
  model->to(device);
  Optimizers optimizers = make_optimizers(recipe, model);
  const std::string recipe_text = recipe_to_yaml(recipe);
  const fs::path checkpoint = out / "checkpoint.pt";
  const fs::path metrics_path = out / "metrics.jsonl";
  int64_t first_epoch = 0;
  std::vector<std::map<std::string, double>> history;

  if (opts.resume) {
    if (!fs::exists(checkpoint)) {
      throw std::runtime_error(checkpoint.string() + ": no checkpoint to resume from");
    }
    torch::serialize::InputArchive archive;
    archive.load_from(checkpoint.string(), device);
    c10::IValue v;
    archive.read("recipe_name", v);
    const std::string saved_name = v.toStringRef();
    archive.read("recipe", v);
    if (saved_name != recipe.name || v.toStringRef() != recipe_text) {
      throw std::runtime_error(checkpoint.string() + ": written by recipe '" + saved_name +
                               "' with other options; resume with the same --model and --config");
    }
    archive.read("seed", v);
    if (static_cast<uint64_t>(v.toInt()) != opts.seed) {
      throw std::runtime_error(checkpoint.string() + ": written with --seed " +
                               std::to_string(v.toInt()) + "; resume with the same seed");
    }
    archive.read("epoch", v);
    first_epoch = v.toInt();
    torch::serialize::InputArchive m, a;
    archive.read("model", m);
    model->load(m);
    archive.read("adam", a);
    optimizers.adam->load(a);
    if (optimizers.bop) {
      torch::serialize::InputArchive b;
      archive.read("bop", b);
      optimizers.bop->load(b);
    }
    truncate_metrics(metrics_path, first_epoch);
    std::ifstream in(metrics_path);
    std::string line;
    while (std::getline(in, line)) {
      std::map<std::string, double> row;
      for (const auto& kv : YAML::Load(line)) {
        if (kv.first.as<std::string>() != "model") {
          row[kv.first.as<std::string>()] = kv.second.as<double>();
        }
      }
      history.push_back(row);
    }
  } else if (fs::exists(metrics_path)) {
    fs::remove(metrics_path);  // a fresh run starts a fresh log
  }

  optim::FlipRatio flips;
  flips.update(*model);
  const int64_t n = t.train_images.size(0);
  for (int64_t epoch = first_epoch; epoch < epochs; ++epoch) {
    const auto epoch_start = Clock::now();
    optimizers.set_lr(learning_rate(recipe, epoch, epochs));
    // Shuffling and dropout depend only on (seed, epoch): a resumed run repeats them exactly.
    torch::manual_seed(opts.seed * 1000003ULL + static_cast<uint64_t>(epoch) + 1);
    // The order is drawn on the CPU: the same shuffle on every device.
    const auto order = torch::randperm(n, torch::kLong).to(device);
    model->train();
    double loss_sum = 0;
    int64_t correct = 0, seen = 0;
    auto last_print = Clock::now();
    // A terminal gets a bar redrawn in place; a log file a line at every tenth of the epoch.
    const bool terminal = isatty(STDERR_FILENO) != 0;
    int64_t last_tenth = 0;
    for (int64_t b = 0; b < n; b += recipe.batch_size) {
      const int64_t e = std::min(n, b + recipe.batch_size);
      if (e - b < 2) break;  // batch norm needs two samples
      const auto idx = order.slice(0, b, e);
      const auto x = t.train_images.index_select(0, idx);
      const auto y = t.train_labels.index_select(0, idx);
      optimizers.zero_grad();
      const auto logits = model->forward(x);
      const auto loss = torch::cross_entropy_loss(logits, y);
      loss.backward();
      optimizers.step();
      nn::apply_constraints(*model);
      loss_sum += loss.item<double>() * static_cast<double>(e - b);
      correct += logits.argmax(1).eq(y).sum().item<int64_t>();
      seen += e - b;
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
    const auto [test_loss, test_acc] = evaluate(model, t.test_images, t.test_labels);
    std::map<std::string, double> row = {
        {"epoch", static_cast<double>(epoch + 1)},
        {"train_loss", seen > 0 ? loss_sum / seen : 0.0},
        {"train_accuracy", seen > 0 ? static_cast<double>(correct) / seen : 0.0},
        {"test_loss", test_loss},
        {"test_accuracy", test_acc},
        {"learning_rate", learning_rate(recipe, epoch, epochs)},
        {"flip_ratio", flips.update(*model).at("")},
        {"samples_per_second", seen / std::max(train_seconds, 1e-9)},
        {"seconds", seconds_since(epoch_start)}};
    if (opts.progress) {
      std::fprintf(stderr, " | test loss %.4f acc %.4f (%.1f s)\n", test_loss, test_acc,
                   row["seconds"]);
    }
    // The checkpoint first (atomically), then the log line: a run killed in between repeats the
    // epoch on resume, and truncate_metrics drops the line it may have left.
    torch::serialize::OutputArchive archive;
    torch::serialize::OutputArchive m, a;
    model->save(m);
    optimizers.adam->save(a);
    archive.write("model", m);
    archive.write("adam", a);
    if (optimizers.bop) {
      torch::serialize::OutputArchive bop;
      optimizers.bop->save(bop);
      archive.write("bop", bop);
    }
    archive.write("epoch", c10::IValue(epoch + 1));
    archive.write("recipe_name", c10::IValue(recipe.name));
    archive.write("recipe", c10::IValue(recipe_text));
    archive.write("seed", c10::IValue(static_cast<int64_t>(opts.seed)));
    archive.write("height", c10::IValue(height));
    archive.write("width", c10::IValue(width));
    archive.write("num_classes", c10::IValue(t.num_classes));
    archive.write("input_mean", c10::IValue(t.input_mean));
    archive.write("input_std", c10::IValue(t.input_std));
    const std::string tmp = checkpoint.string() + ".tmp";
    archive.save_to(tmp);
    fs::rename(tmp, checkpoint);
    std::ofstream log(metrics_path, std::ios::app);
    log << json_line(row, recipe.name) << "\n";
    log.flush();
    history.push_back(row);
  }

  TrainResult result;
  result.epochs = epochs;
  // The last epoch's test accuracy is the final one (a run resumed after its last epoch evaluates).
  result.test_accuracy = !history.empty() && history.back().at("epoch") == epochs
                             ? history.back().at("test_accuracy")
                             : evaluate(model, t.test_images, t.test_labels).second;
  result.seconds = seconds_since(start);
  std::ostringstream final_metrics;
  final_metrics.precision(8);
  final_metrics << "{\"model\": \"" << recipe.name
                << "\", \"test_accuracy\": " << result.test_accuracy << ", \"epochs\": " << epochs
                << ", \"seconds\": " << result.seconds << ", \"seed\": " << opts.seed << "}\n";
  write_file_atomically((out / "metrics.json").string(), final_metrics.str());
  write_plot(out / "curves.png", history);
  if (recipe.qat != "none") {
    write_file_atomically((out / "integer-parameters.json").string(),
                          qat::integer_parameters_json(qat::integer_parameters(model),
                                                       qat::parse_scheme(recipe.qat)));
  }
  return result;
}

Checkpoint load_checkpoint(const std::string& path) {
  fs::path file = path;
  if (fs::is_directory(file)) file /= "checkpoint.pt";
  if (!fs::exists(file)) throw std::runtime_error(file.string() + ": no such checkpoint");
  Checkpoint c;
  c.file = file.string();
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(c.file, torch::Device(torch::kCPU));  // CUDA-trained runs too
  } catch (const c10::Error& e) {
    throw std::runtime_error(c.file + ": not a lowbit checkpoint (" + e.what_without_backtrace() +
                             ")");
  }
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
