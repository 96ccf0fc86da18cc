// The `lowbit` command: train, evaluate, summarise and export the recipes on IDX data sets.
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <stdexcept>

#include "lowbit/data/idx.h"
#include "lowbit/engine.h"
#include "lowbit/export.h"
#include "lowbit/io/file.h"
#include "lowbit/network.h"
#include "lowbit/nn.h"
#include "lowbit/qat.h"
#include "lowbit/train.h"

namespace {

constexpr const char* kDefaultData = "/usr/share/datasets/fashion-mnist";

// A file path inside a JSON string: quotes, backslashes and control characters escaped.
std::string json_escaped(const std::string& text) {
  std::string out;
  for (const char ch : text) {
    const auto u = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (u < 0x20) {
      char buffer[8];
      std::snprintf(buffer, sizeof buffer, "\\u%04x", u);
      out += buffer;
    } else {
      out += ch;
    }
  }
  return out;
}

std::string recipe_list() {
  std::string s;
  for (const auto& n : lowbit::train::recipe_names()) s += (s.empty() ? "" : ", ") + n;
  return s;
}

// A float32 matrix as a NumPy .npy file (format 1.0), written atomically.
void write_npy(const std::string& path, const at::Tensor& m) {
  const at::Tensor t = m.to(torch::kFloat).contiguous();
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (";
  for (int64_t d : t.sizes()) header += std::to_string(d) + ", ";
  header += "), }";
  // Magic (6) + version (2) + length (2) + header, padded with spaces to a multiple of 64, '\n'.
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string bytes = "\x93NUMPY";
  bytes += '\x01';
  bytes += '\x00';
  bytes += static_cast<char>(header.size() & 0xff);
  bytes += static_cast<char>(header.size() >> 8);
  bytes += header;
  bytes.append(static_cast<const char*>(t.data_ptr()), t.nbytes());
  lowbit::train::write_file_atomically(path, bytes);
}

// Outputs, accuracy and speed of a model over n images: throughput in batches of `batch`, latency
// as the median over up to 100 single images.
struct Timing {
  std::vector<float> outputs;
  std::vector<int64_t> predictions;
  double throughput = 0, median_ms = 0;
  double accuracy(const std::vector<uint8_t>& labels) const {
    int64_t correct = 0;
    for (size_t i = 0; i < predictions.size(); ++i) correct += predictions[i] == labels[i];
    return predictions.empty() ? 0.0 : static_cast<double>(correct) / predictions.size();
  }
};

template <class Run>
Timing timed(int64_t n, int64_t k, int64_t batch, Run&& run) {
  using Clock = std::chrono::steady_clock;
  Timing t;
  t.outputs.resize(static_cast<size_t>(n * k));
  const auto t0 = Clock::now();
  for (int64_t i = 0; i < n; i += batch) run(i, std::min(batch, n - i), t.outputs.data() + i * k);
  t.throughput = n / std::chrono::duration<double>(Clock::now() - t0).count();
  for (int64_t i = 0; i < n; ++i) {
    const float* row = t.outputs.data() + i * k;
    t.predictions.push_back(std::max_element(row, row + k) - row);
  }
  std::vector<double> ms;
  std::vector<float> one(static_cast<size_t>(k));
  for (int64_t i = 0; i < std::min<int64_t>(n, 100); ++i) {
    const auto start = Clock::now();
    run(i, 1, one.data());
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
  }
  std::sort(ms.begin(), ms.end());
  t.median_ms = ms.empty() ? 0.0 : ms[ms.size() / 2];
  return t;
}

// An integer option: digits only (a sign only where negatives are allowed), within [lo, hi]; the
// message names the value ("'abc' is not an integer", "-5 is not in 0..18446744073709551615").
template <class T>
CLI::Validator integer_in(T lo, T hi) {
  const std::string range = std::to_string(lo) + ".." + std::to_string(hi);
  return CLI::Validator(
      [lo, hi, range](std::string& text) -> std::string {
        const std::string given = text;
        size_t i = text.size() > 0 && (text[0] == '-' || text[0] == '+') ? 1 : 0;
        if (i == text.size()) return "'" + given + "' is not an integer";
        for (size_t k = i; k < text.size(); ++k)
          if (!std::isdigit(static_cast<unsigned char>(text[k])))
            return "'" + given + "' is not an integer";
        const bool negative = text[0] == '-';
        // Decimal, whatever the leading zeros (CLI11 would read 010 as octal 8).
        std::string digits = text.substr(i);
        digits.erase(0, std::min(digits.find_first_not_of('0'), digits.size() - 1));
        try {
          if (negative) {
            const long long v = -std::stoll(digits);
            if (v < static_cast<long long>(lo) || lo >= 0) throw std::out_of_range("");
          } else {
            const unsigned long long v = std::stoull(digits);
            if (v > static_cast<unsigned long long>(hi) ||
                (lo > 0 && v < static_cast<unsigned long long>(lo)))
              throw std::out_of_range("");
          }
        } catch (const std::out_of_range&) {
          return given + " is not in " + range;
        }
        text = (negative ? "-" : "") + digits;
        return "";
      },
      "INT in " + range);
}

// Refuses an output file that is one of the command's inputs: the checkpoint or model, the data.
void check_output(const std::string& out, const std::string& model,
                  const lowbit::data::IdxDataset& dataset) {
  lowbit::io::check_not_input(out, model, "the model or checkpoint read");
  for (const auto* split : {&dataset.train, &dataset.test}) {
    lowbit::io::check_not_input(out, split->images_path, "a file of the data set");
    lowbit::io::check_not_input(out, split->labels_path, "a file of the data set");
  }
}

// A path option must not be empty (an empty --config or --logits would otherwise be ignored).
const CLI::Validator kNonEmpty(
    [](std::string& text) { return text.empty() ? std::string("no path given (empty)") : ""; },
    "PATH");

lowbit::train::Recipe resolve(const std::string& model, const std::string& config) {
  lowbit::train::Recipe r = lowbit::train::recipe(model);
  if (!config.empty()) lowbit::train::apply_config(r, config);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  // Over `ulimit -f` a write fails with EFBIG (reported like a full disk) instead of killing us.
  std::signal(SIGXFSZ, SIG_IGN);
  // An interrupted write leaves no temporary file behind.
  lowbit::io::remove_temporaries_on_signals();
  CLI::App app{
      "lowbit: train, evaluate, summarise and export low-bit networks (docs/training.md, "
      "docs/export.md)"};
  app.require_subcommand(1);

  std::string model, data = kDefaultData, out, config;
  int64_t epochs = -1, num_classes = 0;
  uint64_t seed = 0;
  bool resume = false, overwrite = false, no_progress = false;
  auto* train = app.add_subcommand("train", "train a recipe on an IDX data set");
  train->add_option("--model", model, "recipe: " + recipe_list())->required();
  train->add_option("--data", data, "directory with the IDX files (plain or .gz)")
      ->capture_default_str();
  train->add_option("--epochs", epochs, "epochs (default: the recipe's)")
      ->transform(integer_in<int64_t>(1, 1000000));
  train->add_option("--out", out, "output directory")->required();
  train->add_option("--config", config, "YAML file overriding recipe options");
  train->add_option("--seed", seed, "random seed")
      ->capture_default_str()
      ->transform(integer_in<uint64_t>(0, UINT64_MAX));
  train->add_flag("--resume", resume, "continue from OUT/checkpoint.pt");
  train->add_flag("--overwrite", overwrite, "replace the run that OUT holds");
  train
      ->add_option("--num-classes", num_classes,
                   "classes of the model (default: the largest label + 1)")
      ->transform(integer_in<int64_t>(2, 256));
  train->add_flag("--no-progress", no_progress, "no progress bar");
  std::string device = "cpu";
  train->add_option("--device", device, "cpu, cuda or cuda:N (needs a LibTorch with CUDA)")
      ->capture_default_str();

  std::string checkpoint_dir;
  auto* eval = app.add_subcommand("eval", "test accuracy of a trained model");
  eval->add_option("--checkpoint", checkpoint_dir,
                   "the output directory of a training run, or its checkpoint file")
      ->required();
  eval->add_option("--data", data, "directory with the IDX files")->capture_default_str();
  std::string logits_path;
  eval->add_option("--logits", logits_path,
                   "also write the test set's logits to this .npy file (float32, [images, "
                   "classes])");
  bool integer_params = false;
  eval->add_flag("--integer-parameters", integer_params,
                 "also print every layer's integer parameters (quantization-aware recipes)");

  std::string summary_model, summary_config;
  int64_t height = 28, width = 28, classes = 10;
  auto* summary = app.add_subcommand("summary", "Larq-style summary of a recipe's model");
  summary->add_option("--model", summary_model, "recipe: " + recipe_list())->required();
  summary->add_option("--config", summary_config, "YAML file overriding recipe options");
  summary->add_option("--height", height, "image height")
      ->capture_default_str()
      ->transform(integer_in<int64_t>(1, 65536));
  summary->add_option("--width", width, "image width")
      ->capture_default_str()
      ->transform(integer_in<int64_t>(1, 65536));
  summary->add_option("--classes", classes, "number of classes")
      ->capture_default_str()
      ->transform(integer_in<int64_t>(2, int64_t{1} << 20));

  std::string export_checkpoint, export_out, export_format = "qonnx", export_data;
  auto* exp = app.add_subcommand("export", "export a trained model to ONNX (docs/export.md)");
  exp->add_option("--checkpoint", export_checkpoint,
                  "the output directory of a training run, or its checkpoint file")
      ->required();
  exp->add_option("--out", export_out, "the .onnx file to write")->required();
  exp->add_option("--format", export_format,
                  "qonnx (Quant/BipolarQuant nodes, for FINN, hls4ml and lowbit's engine) or "
                  "standard (standard operators only, for onnxruntime)")
      ->capture_default_str();
  exp->add_option("--data", export_data,
                  "the training data set, to recompute the input standardisation of checkpoints "
                  "that do not store it");

  std::string run_model, run_data = kDefaultData, run_logits;
  int run_threads = 1;
  int64_t run_batch = 256;
  auto* run = app.add_subcommand(
      "run", "run an exported model on the inference engine (no LibTorch; docs/engine.md)");
  run->add_option("model", run_model, "the .onnx file (a lowbit export)")->required();
  run->add_option("--data", run_data, "directory with the IDX test files")->capture_default_str();
  run->add_option("--threads", run_threads, "threads")
      ->capture_default_str()
      ->transform(integer_in<int>(1, 1024));
  run->add_option("--batch", run_batch, "images per run for the throughput")
      ->capture_default_str()
      ->transform(integer_in<int64_t>(1, int64_t{1} << 20));
  run->add_option("--logits", run_logits, "also write the test set's outputs to this .npy file");
  std::string run_checkpoint;
  run->add_option("--checkpoint", run_checkpoint,
                  "also time LibTorch's eval-mode model of this training run on the same images");

  for (CLI::App* sub : {train, eval, summary, exp, run}) {
    for (const char* name : {"--data", "--out", "--config", "--checkpoint", "--logits", "model"}) {
      if (CLI::Option* o = sub->get_option_no_throw(name)) o->check(kNonEmpty);
    }
  }

  // A first argument that names no subcommand gets a message that names them (CLI11 would say "A
  // subcommand is required").
  const auto commands = app.get_subcommands([](const CLI::App*) { return true; });
  const bool known = argc > 1 && std::any_of(commands.begin(), commands.end(),
                                             [&](CLI::App* c) { return c->get_name() == argv[1]; });
  if (argc == 1 || (argv[1][0] != '-' && !known)) {
    std::string names;
    for (size_t i = 0; i < commands.size(); ++i)
      names += (i == 0 ? "" : i + 1 == commands.size() ? " and " : ", ") + commands[i]->get_name();
    const std::string what =
        argc == 1 ? "no command given" : "unknown command '" + std::string(argv[1]) + "'";
    std::fprintf(stderr, "lowbit: error: %s; the commands are %s (lowbit --help)\n", what.c_str(),
                 names.c_str());
    return 2;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    std::fprintf(
        stderr, "lowbit: error: %s (lowbit %s--help)\n", e.what(),
        app.get_subcommands().empty() ? "" : (app.get_subcommands()[0]->get_name() + " ").c_str());
    return 2;
  }
  const auto warn = [](const std::string& text) {
    std::fprintf(stderr, "lowbit: warning: %s\n", text.c_str());
  };
  try {
    if (*train) {
      lowbit::train::TrainOptions o;
      o.data_dir = data;
      o.out_dir = out;
      o.epochs = epochs;
      o.seed = seed;
      o.resume = resume;
      o.overwrite = overwrite;
      o.num_classes = num_classes;
      o.progress = !no_progress;
      o.config_path = config;
      o.device = device;
      const auto r = resolve(model, config);
      const auto result = lowbit::train::train(r, o);
      std::printf(
          "{\"model\": \"%s\", \"test_accuracy\": %.6f, \"epochs\": %lld, \"seconds\": %.1f, "
          "\"out\": \"%s\"}\n",
          r.name.c_str(), result.test_accuracy, static_cast<long long>(result.epochs),
          result.seconds, json_escaped(out).c_str());
    } else if (*eval) {
      const auto c = lowbit::train::load_checkpoint(checkpoint_dir);
      const lowbit::train::Recipe& r = c.recipe;
      if (integer_params && r.qat == "none") {
        throw std::invalid_argument("--integer-parameters: recipe '" + r.name +
                                    "' is not quantization-aware (qat: none)");
      }
      auto net = c.model;
      // Standardised as in training (the checkpoint's values), whatever data set is evaluated;
      // the training split is read only for older checkpoints that do not store them.
      const auto dataset = lowbit::data::load_idx_dataset(data, !c.has_normalization);
      check_output(logits_path, c.file, dataset);
      const std::string note = lowbit::train::check_compatible(dataset, data, c);
      if (!note.empty()) warn(note);
      const auto t = lowbit::train::to_tensors(dataset, c);
      const auto [loss, acc] = lowbit::train::evaluate(net, t.test_images, t.test_labels);
      if (!logits_path.empty()) {
        torch::NoGradGuard no_grad;
        std::vector<at::Tensor> parts;
        for (const auto& batch : t.test_images.split(500)) parts.push_back(net->forward(batch));
        write_npy(logits_path, torch::cat(parts));
      }
      std::printf("{\"model\": \"%s\", \"test_accuracy\": %.6f, \"test_loss\": %.6f}\n",
                  r.name.c_str(), acc, loss);
      if (integer_params) {
        std::printf("%s", lowbit::qat::integer_parameters_json(lowbit::qat::integer_parameters(net),
                                                               lowbit::qat::parse_scheme(r.qat))
                              .c_str());
      }
    } else if (*run) {
      const auto model = lowbit::engine::Model::from_file(run_model);
      // The model holds its standardisation: the test split is all it needs.
      const auto dataset = lowbit::data::load_idx_dataset(run_data, /*with_train=*/false);
      check_output(run_logits, run_model, dataset);
      const auto& test = dataset.test;
      const auto shape = model.input_shape();
      lowbit::data::ModelShape model_shape;
      model_shape.channels = shape[0];
      model_shape.height = shape[1];
      model_shape.width = shape[2];
      model_shape.classes = model.output_size();
      const std::string note =
          lowbit::data::check_compatible(dataset, run_data, model_shape, run_model);
      if (!note.empty()) warn(note);
      const int64_t n = test.images.count, per = shape[1] * shape[2], k = model.output_size();
      const std::vector<float> pixels(test.images.pixels.begin(), test.images.pixels.end());
      const Timing engine = timed(n, k, run_batch, [&](int64_t first, int64_t m, float* out) {
        model.run(pixels.data() + first * per, m, out, run_threads);
      });
      if (!run_logits.empty()) {
        write_npy(run_logits, torch::from_blob(const_cast<float*>(engine.outputs.data()), {n, k},
                                               torch::kFloat));
      }
      std::string compare;
      if (!run_checkpoint.empty()) {
        // LibTorch's eval-mode model on the same images (standardised as in training).
        at::set_num_threads(run_threads);
        torch::NoGradGuard no_grad;
        const auto c = lowbit::train::load_checkpoint(run_checkpoint);
        auto net = c.model;
        lowbit::train::check_compatible(dataset, run_data, c);
        check_output(run_logits, c.file, dataset);
        if (c.num_classes != k) {
          throw std::invalid_argument(run_checkpoint + ": the checkpoint's model has " +
                                      std::to_string(c.num_classes) + " classes, " + run_model +
                                      " has " + std::to_string(k) + " outputs");
        }
        const auto t = lowbit::train::to_tensors(
            c.has_normalization ? dataset : lowbit::data::load_idx_dataset(run_data), c);
        const Timing torch_timing =
            timed(n, k, run_batch, [&](int64_t first, int64_t m, float* out) {
              const at::Tensor y = net->forward(t.test_images.narrow(0, first, m)).contiguous();
              std::copy(y.data_ptr<float>(), y.data_ptr<float>() + m * k, out);
            });
        int64_t same = 0;
        for (int64_t i = 0; i < n; ++i)
          same += engine.predictions[i] == torch_timing.predictions[i];
        if (same < n * 0.95) {
          warn("only " + std::to_string(100.0 * same / n).substr(0, 5) +
               "% of the predictions agree: was " + run_model + " exported from " + run_checkpoint +
               "?");
        }
        char buffer[512];
        std::snprintf(buffer, sizeof buffer,
                      ", \"libtorch\": {\"test_accuracy\": %.6f, \"latency_ms_batch1\": %.4f, "
                      "\"throughput_images_per_second\": %.1f}, \"same_predictions\": %.6f, "
                      "\"speedup_batch1\": %.2f, \"speedup_throughput\": %.2f",
                      torch_timing.accuracy(test.labels.labels), torch_timing.median_ms,
                      torch_timing.throughput, static_cast<double>(same) / n,
                      torch_timing.median_ms / engine.median_ms,
                      engine.throughput / torch_timing.throughput);
        compare = buffer;
      }
      // How many planned nodes run on each kernel, in the order they first appear.
      std::vector<std::pair<std::string, int>> kernels;
      for (const auto& p : model.plan()) {
        auto it = std::find_if(kernels.begin(), kernels.end(),
                               [&](const auto& e) { return e.first == p.kernel; });
        if (it == kernels.end()) {
          kernels.emplace_back(p.kernel, 1);
        } else {
          ++it->second;
        }
      }
      std::string kernel_json;
      for (const auto& e : kernels)
        kernel_json +=
            (kernel_json.empty() ? "\"" : ", \"") + e.first + "\": " + std::to_string(e.second);
      std::printf(
          "{\"model\": \"%s\", \"images\": %lld, \"test_accuracy\": %.6f, "
          "\"latency_ms_batch1\": %.4f, \"throughput_images_per_second\": %.1f, \"batch\": %lld, "
          "\"threads\": %d, \"file_bytes\": %lld, \"parameter_bytes\": %lld, \"kernels\": "
          "{%s}%s}\n",
          json_escaped(run_model).c_str(), static_cast<long long>(n),
          engine.accuracy(test.labels.labels), engine.median_ms, engine.throughput,
          static_cast<long long>(std::min(run_batch, n)), run_threads,
          static_cast<long long>(std::filesystem::file_size(run_model)),
          static_cast<long long>(model.parameter_bytes()), kernel_json.c_str(), compare.c_str());
    } else if (*exp) {
      lowbit::exporter::ExportOptions o;
      o.format = lowbit::exporter::parse_format(export_format);
      o.data_dir = export_data;
      const auto result = lowbit::exporter::export_checkpoint(export_checkpoint, export_out, o);
      for (const auto& w : result.warnings) warn(w);
      std::string ops;
      for (const auto& [op, n] : result.op_counts) {
        ops += (ops.empty() ? "" : ", ") + std::string("\"") + op + "\": " + std::to_string(n);
      }
      std::printf("{\"out\": \"%s\", \"format\": \"%s\", \"bytes\": %lld, \"nodes\": {%s}}\n",
                  json_escaped(result.path).c_str(),
                  lowbit::exporter::format_name(result.format).c_str(),
                  static_cast<long long>(result.bytes), ops.c_str());
    } else if (*summary) {
      auto r = resolve(summary_model, summary_config);
      auto net = lowbit::train::build_model(r, height, width, classes);
      std::printf("Model: %s\n\n%s", r.name.c_str(),
                  lowbit::nn::summary(*net, {1, 1, height, width}).to_string().c_str());
    }
  } catch (const c10::Error& e) {
    const std::string what = e.what_without_backtrace();
    if (what.find("DefaultCPUAllocator") != std::string::npos) {
      // LibTorch's allocator text names no option: say what it means.
      std::fprintf(
          stderr,
          "lowbit: error: out of memory: the network or data set does not fit in this "
          "machine's memory (image size, blocks, hidden or batch_size too large); LibTorch: "
          "%s\n",
          what.substr(what.find("DefaultCPUAllocator")).c_str());
      return 2;
    }
    std::fprintf(stderr, "lowbit: error: %s\n", what.c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lowbit: error: %s\n", e.what());
    return 2;
  }
  return 0;
}
