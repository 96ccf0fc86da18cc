// The `lowbit` command: train, evaluate, summarise and export the recipes; run and time models on
// the inference engine. One file per command (commands.h).
#include <torch/torch.h>

#include "commands.h"
#include "lowbit/train.h"

int main(int argc, char** argv) {
  lowbit::train::retain_freed_memory();  // the first epoch at the speed of the next ones
  CLI::App app{
      "lowbit: train, evaluate, summarise and export low-bit networks, run them on the inference "
      "engine (docs/training.md, docs/export.md, docs/engine.md)",
      "lowbit"};
  namespace cli = lowbit::cli;
  const std::vector<cli::Command> commands = {cli::add_train(app),   cli::add_eval(app),
                                              cli::add_summary(app), cli::add_export(app),
                                              cli::add_run(app),     cli::add_bench(app)};
  return cli::run_command(app, commands, argc, argv, [](const std::exception& e) -> std::string {
    const auto* torch_error = dynamic_cast<const c10::Error*>(&e);
    if (!torch_error) return e.what();
    const std::string what = torch_error->what_without_backtrace();
    if (what.find("DefaultCPUAllocator") != std::string::npos) {
      // LibTorch's allocator text names no option: say what it means.
      return "out of memory: the network or data set does not fit in this machine's memory "
             "(image size, blocks, hidden or batch_size too large); LibTorch: " +
             what.substr(what.find("DefaultCPUAllocator"));
    }
    return what;
  });
}
