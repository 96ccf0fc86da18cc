// lowbit run (and lowbit-run run): a model on the inference engine, on a .npy file or on an IDX
// data set's test split (docs/engine.md). Compiled into `lowbit` (LOWBIT_CLI_TORCH), --checkpoint
// also times LibTorch's model of a training run on the same images.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <stdexcept>

#include "commands.h"
#include "lowbit/engine.h"
#include "lowbit/engine/tools.h"
#include "lowbit/io/file.h"
#include "lowbit/io/json.h"
#include "lowbit/io/npy.h"
#ifdef LOWBIT_CLI_TORCH
#include "lowbit/compare.h"
#endif

namespace lowbit {
namespace cli {
namespace {

struct Args {
  std::string model, data, input, logits, checkpoint;
  std::vector<std::string> outputs;  // --output, once per model output
  int threads = 1;
  int64_t batch = 256;
};

std::string dims_text(const std::vector<int64_t>& d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + "]";
}

// --input IN.npy --output OUT.npy [--output OUT2.npy ...]: any model, a file per output.
void run_files(const Args& a) {
  for (size_t k = 0; k < a.outputs.size(); ++k) {
    io::check_not_input(a.outputs[k], a.model, "the model read");
    io::check_not_input(a.outputs[k], a.input, "the input read");
    // Two outputs to one file (which need not exist yet): the later would replace the earlier.
    for (size_t j = 0; j < k; ++j) {
      std::error_code ek, ej;
      const auto pk = std::filesystem::weakly_canonical(a.outputs[k], ek);
      const auto pj = std::filesystem::weakly_canonical(a.outputs[j], ej);
      if (!ek && !ej && pk == pj)
        throw std::invalid_argument(a.outputs[k] + ": is given as --output twice (outputs " +
                                    std::to_string(j) + " and " + std::to_string(k) + ")");
    }
  }
  const engine::NpyRun r = engine::run_npy(a.model, a.input, a.outputs, a.threads);
  std::string files = "[", shapes = "[";
  for (size_t k = 0; k < a.outputs.size(); ++k) {
    files += (k ? ", \"" : "\"") + io::json_escaped(a.outputs[k]) + "\"";
    shapes += (k ? ", " : "") + dims_text(r.output_shapes[k]);
  }
  // "output" and "output_shape": the first output's (one-output models' keys).
  std::printf(
      "{\"model\": \"%s\", \"input\": \"%s\", \"output\": \"%s\", \"images\": %lld, "
      "\"output_shape\": %s, \"outputs\": %s], \"output_shapes\": %s], \"threads\": %d, "
      "\"seconds\": %.6f}\n",
      io::json_escaped(a.model).c_str(), io::json_escaped(a.input).c_str(),
      io::json_escaped(a.outputs[0]).c_str(), static_cast<long long>(r.images),
      dims_text(r.output_shapes[0]).c_str(), files.c_str(), shapes.c_str(), a.threads, r.seconds);
}

// --data DIR: an image classifier on the test split, its accuracy and speed.
void run_data(const Args& a) {
  const std::string data_dir = a.data.empty() ? kDefaultData : a.data;
  const auto model = engine::Model::from_file(a.model);
  const auto shape = model.input_shape();
  if (shape.size() != 3 || model.output_count() != 1 || model.output_shape().size() != 1) {
    throw std::invalid_argument(
        a.model +
        ": --data runs image classifiers ([batch, channels, height, width] in, [batch, "
        "classes] out); this model takes [batch, " +
        dims_text(shape).substr(1) + " and gives [batch, " +
        dims_text(model.output_shape()).substr(1) +
        (model.output_count() == 1
             ? ""
             : " and " + std::to_string(model.output_count() - 1) + " more outputs") +
        ": use --input and --output");
  }
  // The model holds its standardisation: the test split is all it needs.
  data::LoadOptions load;
  load.with_train = false;
  load.height = shape[1];  // image folders are resized to the model's input
  load.width = shape[2];
  const auto dataset = data::load_dataset(data_dir, load);
  check_output(a.logits, a.model, dataset);
#ifdef LOWBIT_CLI_TORCH
  std::unique_ptr<train::Checkpoint> ck;
  if (!a.checkpoint.empty()) {
    ck = std::make_unique<train::Checkpoint>(train::load_checkpoint(a.checkpoint));
    check_output(a.logits, ck->file, dataset);
  }
#endif
  const auto& test = dataset.test;
  data::ModelShape model_shape;
  model_shape.channels = shape[0];
  model_shape.height = shape[1];
  model_shape.width = shape[2];
  model_shape.classes = model.output_size();
  const std::string note = data::check_compatible(dataset, data_dir, model_shape, a.model);
  if (!note.empty()) warn(note);
  const int64_t n = test.images.count, per = shape[0] * shape[1] * shape[2],
                k = model.output_size();
  const std::vector<float> pixels(test.images.pixels.begin(), test.images.pixels.end());
  const engine::Timing timing =
      engine::timed(n, k, a.batch, [&](int64_t first, int64_t m, float* out) {
        model.run(pixels.data() + first * per, m, out, a.threads);
      });
  if (!a.logits.empty()) io::write_npy(a.logits, {n, k}, timing.outputs.data());
  std::string compare;
#ifdef LOWBIT_CLI_TORCH
  if (ck) {
    const engine::Timing torch_timing =
        train::time_checkpoint(*ck, dataset, data_dir, a.threads, a.batch, k, a.model);
    int64_t same = 0;
    for (int64_t i = 0; i < n; ++i) same += timing.predictions[i] == torch_timing.predictions[i];
    if (same < n * 0.95) {
      warn("only " + std::to_string(100.0 * same / n).substr(0, 5) +
           "% of the predictions agree: was " + a.model + " exported from " + a.checkpoint + "?");
    }
    char buffer[512];
    std::snprintf(buffer, sizeof buffer,
                  ", \"libtorch\": {\"test_accuracy\": %.6f, \"latency_ms_batch1\": %.4f, "
                  "\"throughput_images_per_second\": %.1f}, \"same_predictions\": %.6f, "
                  "\"speedup_batch1\": %.2f, \"speedup_throughput\": %.2f",
                  torch_timing.accuracy(test.labels.labels), torch_timing.median_ms,
                  torch_timing.throughput, static_cast<double>(same) / n,
                  torch_timing.median_ms / timing.median_ms,
                  timing.throughput / torch_timing.throughput);
    compare = buffer;
  }
#endif
  std::printf(
      "{\"model\": \"%s\", \"images\": %lld, \"test_accuracy\": %.6f, "
      "\"latency_ms_batch1\": %.4f, \"throughput_images_per_second\": %.1f, \"batch\": %lld, "
      "\"threads\": %d, \"file_bytes\": %lld, \"parameter_bytes\": %lld, \"kernels\": "
      "{%s}%s}\n",
      io::json_escaped(a.model).c_str(), static_cast<long long>(n),
      timing.accuracy(test.labels.labels), timing.median_ms, timing.throughput,
      static_cast<long long>(std::min(a.batch, n)), a.threads,
      static_cast<long long>(std::filesystem::file_size(a.model)),
      static_cast<long long>(model.parameter_bytes()),
      engine::kernel_counts_json(model.plan()).c_str(), compare.c_str());
}

}  // namespace

Command add_run(CLI::App& app) {
  auto a = std::make_shared<Args>();
  CLI::App* c = app.add_subcommand(
      "run",
      "run an ONNX model on the inference engine (no LibTorch; docs/engine.md): on a .npy file "
      "(--input, --output), or on an IDX data set's test split (--data; the default)");
  c->add_option("model", a->model, "the .onnx file")->required();
  CLI::Option* input =
      c->add_option("--input", a->input,
                    "a .npy file of inputs, [batch, ...the model's input shape] (float32, or any "
                    "numeric type NumPy writes)");
  CLI::Option* output =
      c->add_option("--output", a->outputs,
                    "the .npy file to write the outputs to (float32, [batch, ...the model's "
                    "output shape]); models of several outputs: once per output, in the model's "
                    "order")
          ->allow_extra_args(false)  // one file per --output
          ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  input->needs(output);
  output->needs(input);
  CLI::Option* data = c->add_option(
      "--data", a->data,
      std::string("directory with the IDX test files (default ") + kDefaultData + ")");
  data->excludes(input);
  c->add_option("--threads", a->threads, "threads")
      ->capture_default_str()
      ->transform(integer_in(1, 1024));
  CLI::Option* batch =
      c->add_option("--batch", a->batch, "--data: images per run for the throughput")
          ->capture_default_str()
          ->transform(integer_in(1, int64_t{1} << 20));
  CLI::Option* logits = c->add_option(
      "--logits", a->logits, "--data: also write the test set's outputs to this .npy file");
  std::vector<CLI::Option*> data_only = {batch, logits};
#ifdef LOWBIT_CLI_TORCH
  data_only.push_back(c->add_option(
      "--checkpoint", a->checkpoint,
      "--data: also time LibTorch's eval-mode model of this training run on the same images"));
#endif
  for (CLI::Option* o : data_only) o->excludes(input);
  paths_not_empty(c);
  return {c, [a] {
            if (!a->input.empty()) {
              run_files(*a);
            } else {
              run_data(*a);
            }
          }};
}

}  // namespace cli
}  // namespace lowbit
