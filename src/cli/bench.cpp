// lowbit bench (and lowbit-run bench): a model's latency percentiles, throughput and per-operator
// profile on random inputs, as LCE's benchmark tool reports them (docs/engine.md).
#include <cstdio>
#include <memory>
#include <stdexcept>

#include "commands.h"
#include "lowbit/engine.h"
#include "lowbit/engine/tools.h"

namespace lowbit {
namespace cli {
namespace {

std::string dims_text(const std::vector<int64_t>& d) {
  std::string s;
  for (size_t i = 0; i < d.size(); ++i) s += (i ? "," : "") + std::to_string(d[i]);
  return s;
}

// --shape B,D1,...: the batch, then the input's shape (sizing the dimensions the file leaves
// unknown; those it fixes must agree).
std::vector<int64_t> parse_shape(const std::string& text) {
  std::vector<int64_t> dims;
  size_t at = 0;
  while (at <= text.size()) {
    const size_t end = std::min(text.find(',', at), text.size());
    const std::string part = text.substr(at, end - at);
    if (part.empty() || part.size() > 9 ||
        part.find_first_not_of("0123456789") != std::string::npos || std::stoll(part) < 1)
      throw std::invalid_argument("--shape: '" + text +
                                  "' is not a list of positive sizes (1,3,224,224)");
    dims.push_back(std::stoll(part));
    at = end + 1;
  }
  return dims;
}

}  // namespace

Command add_bench(CLI::App& app) {
  struct Args {
    std::string model, shape;
    engine::BenchOptions options;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* c = app.add_subcommand(
      "bench",
      "time a model on random inputs: latency percentiles, throughput, per-operator profile");
  c->add_option("model", a->model, "the .onnx file")->required();
  CLI::Option* shape =
      c->add_option("--shape", a->shape, "the input's shape, batch first (e.g. 1,3,224,224)");
  c->add_option("--batch", a->options.batch, "images per call")
      ->capture_default_str()
      ->transform(integer_in(1, int64_t{1} << 20))
      ->excludes(shape);
  c->add_option("--threads", a->options.threads, "threads")
      ->capture_default_str()
      ->transform(integer_in(1, 1024));
  c->add_option("--warmup", a->options.warmup, "untimed calls first")
      ->capture_default_str()
      ->transform(integer_in(0, 1000000));
  c->add_option("--runs", a->options.min_runs, "timed calls, at least")
      ->capture_default_str()
      ->transform(integer_in(1, 100000000));
  c->add_option("--seconds", a->options.min_seconds, "time the calls for this long, at least")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 86400.0));
  c->add_option("--seed", a->options.seed, "seed of the random input (uniform in [0, 1))")
      ->capture_default_str()
      ->transform(integer_in(0, UINT64_MAX));
  c->add_flag("--json", a->json, "print one JSON line instead of the table");
  paths_not_empty(c);
  return {c, [a] {
            engine::BenchOptions o = a->options;
            std::vector<int64_t> dims;
            if (!a->shape.empty()) {
              dims = parse_shape(a->shape);
              o.batch = dims[0];
              dims.erase(dims.begin());
            }
            const auto model = engine::Model::from_file(a->model, engine::Limits(), dims);
            if (!a->shape.empty() && model.input_shape() != dims) {
              throw std::invalid_argument("--shape " + a->shape + ": the model's input is B," +
                                          dims_text(model.input_shape()) +
                                          " (the file fixes those dimensions)");
            }
            const engine::BenchResult r = engine::bench(model, o);
            const std::string text =
                a->json ? engine::to_json(r, a->model) : engine::to_text(r, a->model);
            std::fputs(text.c_str(), stdout);
          }};
}

}  // namespace cli
}  // namespace lowbit
