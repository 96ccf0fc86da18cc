// The benchmark of a model on random inputs: latency percentiles, throughput, and a per-operator
// profile, as LCE's benchmark tool reports them.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <stdexcept>

#include "lowbit/engine/tools.h"
#include "lowbit/io/json.h"

namespace lowbit {
namespace engine {
namespace {

double percentile(const std::vector<double>& sorted, double p) {  // nearest rank
  const size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * sorted.size()));
  return sorted[std::min(sorted.size() - 1, rank == 0 ? 0 : rank - 1)];
}

std::string format(const char* pattern, double a) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, pattern, a);
  return buffer;
}

}  // namespace

BenchResult bench(const Model& model, const BenchOptions& o) {
  if (o.batch < 1) throw std::invalid_argument("bench: batch must be >= 1");
  if (o.threads < 1) throw std::invalid_argument("bench: threads must be >= 1");
  if (o.warmup < 0 || o.min_runs < 1 || !(o.min_seconds >= 0))
    throw std::invalid_argument("bench: warmup >= 0, min_runs >= 1 and min_seconds >= 0");
  using Clock = std::chrono::steady_clock;
  std::vector<float> x(static_cast<size_t>(o.batch * model.input_size()));
  std::vector<std::vector<float>> ys(model.output_count());
  std::vector<float*> y;
  for (size_t k = 0; k < ys.size(); ++k) {
    ys[k].resize(static_cast<size_t>(o.batch * model.output_size(k)));
    y.push_back(ys[k].data());
  }
  std::mt19937_64 rng(o.seed);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  for (float& v : x) v = uniform(rng);

  for (int i = 0; i < o.warmup; ++i) model.run(x.data(), o.batch, y, o.threads);
  std::vector<double> ms;
  const auto t0 = Clock::now();
  while (static_cast<int>(ms.size()) < o.min_runs ||
         std::chrono::duration<double>(Clock::now() - t0).count() < o.min_seconds) {
    const auto start = Clock::now();
    model.run(x.data(), o.batch, y, o.threads);
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
  }
  BenchResult r;
  r.batch = o.batch;
  r.threads = o.threads;
  r.runs = static_cast<int>(ms.size());
  r.mean_ms = std::accumulate(ms.begin(), ms.end(), 0.0) / ms.size();
  r.images_per_second = o.batch * 1000.0 / r.mean_ms;
  std::sort(ms.begin(), ms.end());
  r.min_ms = ms.front();
  r.p50_ms = percentile(ms, 50), r.p90_ms = percentile(ms, 90), r.p99_ms = percentile(ms, 99);

  // The profile: as many calls again, node by node on one thread.
  std::vector<double> seconds;
  for (int i = 0; i < r.runs; ++i) model.run_profiled(x.data(), o.batch, y, seconds);
  const double total = std::accumulate(seconds.begin(), seconds.end(), 0.0);
  const auto& plan = model.plan();
  for (size_t k = 0; k < plan.size(); ++k) {
    OperatorTime t;
    t.name = plan[k].name, t.op_type = plan[k].op_type, t.kernel = plan[k].kernel;
    t.ms = 1000.0 * seconds[k] / r.runs;
    t.share = total > 0 ? seconds[k] / total : 0.0;
    r.profile.push_back(t);
  }
  return r;
}

std::string to_json(const BenchResult& r, const std::string& model_path) {
  std::string s = "{\"model\": \"" + io::json_escaped(model_path) +
                  "\", \"batch\": " + std::to_string(r.batch) +
                  ", \"threads\": " + std::to_string(r.threads) +
                  ", \"runs\": " + std::to_string(r.runs);
  for (const auto& [key, v] : {std::pair<const char*, double>{"latency_ms_p50", r.p50_ms},
                               {"latency_ms_p90", r.p90_ms},
                               {"latency_ms_p99", r.p99_ms},
                               {"latency_ms_min", r.min_ms},
                               {"latency_ms_mean", r.mean_ms},
                               {"images_per_second", r.images_per_second}})
    s += std::string(", \"") + key + "\": " + format("%.6g", v);
  s += ", \"profile\": [";
  for (size_t k = 0; k < r.profile.size(); ++k) {
    const OperatorTime& t = r.profile[k];
    s += std::string(k ? ", " : "") + "{\"node\": \"" + io::json_escaped(t.name) +
         "\", \"op\": \"" + io::json_escaped(t.op_type) + "\", \"kernel\": \"" +
         io::json_escaped(t.kernel) + "\", \"ms\": " + format("%.6g", t.ms) +
         ", \"share\": " + format("%.4f", t.share) + "}";
  }
  return s + "]}\n";
}

std::string to_text(const BenchResult& r, const std::string& model_path) {
  std::string s = model_path + ": batch " + std::to_string(r.batch) + ", " +
                  std::to_string(r.threads) + (r.threads == 1 ? " thread, " : " threads, ") +
                  std::to_string(r.runs) + " runs\n";
  s += "latency (ms): p50 " + format("%.4f", r.p50_ms) + "  p90 " + format("%.4f", r.p90_ms) +
       "  p99 " + format("%.4f", r.p99_ms) + "  min " + format("%.4f", r.min_ms) + "  mean " +
       format("%.4f", r.mean_ms) + "\n";
  s += "throughput: " + format("%.1f", r.images_per_second) + " images/s\n\n";
  s += "profile (one thread), by share of the time:\n";
  std::vector<size_t> order(r.profile.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return r.profile[a].share > r.profile[b].share; });
  char line[512];
  std::snprintf(line, sizeof line, "%7s %10s  %-16s %-36s %s\n", "share", "ms", "op", "kernel",
                "node");
  s += line;
  for (size_t k : order) {
    const OperatorTime& t = r.profile[k];
    std::snprintf(line, sizeof line, "%6.1f%% %10.4f  %-16s %-36s %s\n", 100 * t.share, t.ms,
                  t.op_type.c_str(), t.kernel.c_str(), t.name.c_str());
    s += line;
  }
  return s;
}

std::string kernel_counts_json(const std::vector<PlannedNode>& plan) {
  std::vector<std::pair<std::string, int>> kernels;
  for (const auto& p : plan) {
    auto it = std::find_if(kernels.begin(), kernels.end(),
                           [&](const auto& e) { return e.first == p.kernel; });
    if (it == kernels.end()) {
      kernels.emplace_back(p.kernel, 1);
    } else {
      ++it->second;
    }
  }
  std::string s;
  for (const auto& e : kernels)
    s +=
        (s.empty() ? "\"" : ", \"") + io::json_escaped(e.first) + "\": " + std::to_string(e.second);
  return s;
}

}  // namespace engine
}  // namespace lowbit
