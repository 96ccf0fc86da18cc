// lowbit export: a trained model to ONNX (docs/export.md).
#include "lowbit/export.h"

#include <cstdio>
#include <memory>

#include "commands.h"
#include "lowbit/io/json.h"

namespace lowbit {
namespace cli {

Command add_export(CLI::App& app) {
  struct Args {
    std::string checkpoint, out, format = "qonnx", data;
  };
  auto a = std::make_shared<Args>();
  CLI::App* c = app.add_subcommand("export", "export a trained model to ONNX (docs/export.md)");
  c->add_option("--checkpoint", a->checkpoint,
                "the output directory of a training run, or its checkpoint file")
      ->required();
  c->add_option("--out", a->out, "the .onnx file to write")->required();
  c->add_option("--format", a->format,
                "qonnx (Quant/BipolarQuant nodes, for FINN, hls4ml and lowbit's engine) or "
                "standard (standard operators only, for onnxruntime)")
      ->capture_default_str();
  c->add_option("--data", a->data,
                "the training data set, to recompute the input standardisation of checkpoints "
                "that do not store it");
  paths_not_empty(c);
  return {c, [a] {
            exporter::ExportOptions o;
            o.format = exporter::parse_format(a->format);
            o.data_dir = a->data;
            const auto result = exporter::export_checkpoint(a->checkpoint, a->out, o);
            for (const auto& w : result.warnings) warn(w);
            std::string ops;
            for (const auto& [op, n] : result.op_counts)
              ops +=
                  (ops.empty() ? "" : ", ") + std::string("\"") + op + "\": " + std::to_string(n);
            std::printf("{\"out\": \"%s\", \"format\": \"%s\", \"bytes\": %lld, \"nodes\": {%s}}\n",
                        io::json_escaped(result.path).c_str(),
                        exporter::format_name(result.format).c_str(),
                        static_cast<long long>(result.bytes), ops.c_str());
          }};
}

}  // namespace cli
}  // namespace lowbit
