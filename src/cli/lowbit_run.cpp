// lowbit-run: the inference engine's commands without LibTorch (run and bench; docs/engine.md).
#include "commands.h"

int main(int argc, char** argv) {
  CLI::App app{
      "lowbit-run: run and time ONNX models on lowbit's inference engine, without LibTorch "
      "(docs/engine.md)",
      "lowbit-run"};
  const std::vector<lowbit::cli::Command> commands = {lowbit::cli::add_run(app),
                                                      lowbit::cli::add_bench(app)};
  return lowbit::cli::run_command(app, commands, argc, argv);
}
