// metrics.jsonl, curves.png and the confusion matrix of a training run.
#include "metrics.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>
#include <sstream>
#include <stdexcept>

#include "lowbit/io/file.h"
#include "lowbit/plot.h"

namespace lowbit {
namespace train {

namespace fs = std::filesystem;

std::string read_metrics(const fs::path& path, int64_t epochs, std::vector<MetricsRow>* history) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return "";
  std::string kept;
  std::istringstream in(io::read_file(path.string(), int64_t{1} << 30));
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    YAML::Node n;
    try {
      n = YAML::Load(line);  // JSON is YAML
    } catch (const YAML::Exception& e) {
      throw std::runtime_error(path.string() + ": not a metrics log line: " + e.what());
    }
    if (!n.IsMap() || !n["epoch"] || n["epoch"].as<int64_t>() > epochs) continue;
    kept += line + "\n";
    MetricsRow row;
    for (const auto& kv : n) {
      if (kv.first.as<std::string>() != "model") {
        row[kv.first.as<std::string>()] = kv.second.as<double>();
      }
    }
    history->push_back(row);
  }
  return kept;
}

void write_plot(const fs::path& path, const std::vector<MetricsRow>& rows,
                const std::string& held_out) {
  plot::Chart loss{"loss", "epoch", "loss", {}}, acc{"accuracy", "epoch", "accuracy", {}};
  plot::Series tl{"train", {}, {}, 0x1f77b4}, vl{held_out, {}, {}, 0xd62728};
  plot::Series ta{"train", {}, {}, 0x1f77b4}, va{held_out, {}, {}, 0xd62728};
  for (const auto& r : rows) {
    const double e = r.at("epoch");
    for (auto* s : {&tl, &vl, &ta, &va}) s->x.push_back(e);
    tl.y.push_back(r.at("train_loss"));
    vl.y.push_back(r.at(held_out + "_loss"));
    ta.y.push_back(r.at("train_accuracy"));
    va.y.push_back(r.at(held_out + "_accuracy"));
  }
  loss.series = {tl, vl};
  acc.series = {ta, va};
  plot::write_png(path.string(), {loss, acc});
}

std::string json_line(const MetricsRow& row, const std::string& model) {
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

std::string confusion_text(const Evaluation& e, const std::vector<std::string>& names) {
  const int64_t n = e.classes;
  const auto name = [&](int64_t i) {
    return i < static_cast<int64_t>(names.size()) ? names[i] : std::to_string(i);
  };
  size_t first = 4;  // "true"
  for (int64_t i = 0; i < n; ++i) first = std::max(first, std::min<size_t>(name(i).size(), 16));
  int64_t largest = 1;
  for (const int64_t c : e.confusion) largest = std::max(largest, c);
  const size_t width =
      std::max<size_t>(std::to_string(largest).size(), std::to_string(n - 1).size()) + 1;
  const auto pad = [](std::string s, size_t w) {
    if (s.size() > w) s = s.substr(0, w);
    return std::string(w - s.size(), ' ') + s;
  };
  std::ostringstream out;
  out << "confusion matrix (rows: true class, columns: predicted class)\n";
  out << pad("true", first);
  for (int64_t p = 0; p < n; ++p) out << pad(std::to_string(p), width);
  out << "\n";
  for (int64_t t = 0; t < n; ++t) {
    out << pad(name(t), first);
    for (int64_t p = 0; p < n; ++p) out << pad(std::to_string(e.confusion[t * n + p]), width);
    out << "\n";
  }
  return out.str();
}

std::string confusion_json(const Evaluation& e) {
  std::string s = "[";
  for (int64_t t = 0; t < e.classes; ++t) {
    s += t ? ", [" : "[";
    for (int64_t p = 0; p < e.classes; ++p) {
      s += (p ? ", " : "") + std::to_string(e.confusion[t * e.classes + p]);
    }
    s += "]";
  }
  return s + "]";
}

void write_confusion(const fs::path& path, const Evaluation& e,
                     const std::vector<std::string>& names, const std::string& title) {
  plot::Confusion c;
  c.title = title;
  c.labels = names;
  c.classes = e.classes;
  c.counts = e.confusion;
  plot::write_confusion_png(path.string(), c);
}

}  // namespace train
}  // namespace lowbit
