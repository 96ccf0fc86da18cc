// The commands, one file each (src/cli/NAME.cpp): each adds its subcommand and options to the
// application and returns what runs it. `run` and `bench` are torch-free (lowbit-run has them
// alone); compiled into `lowbit` (LOWBIT_CLI_TORCH), `run` also compares with LibTorch.
#pragma once

#include "options.h"

namespace lowbit {
namespace cli {

Command add_train(CLI::App& app);
Command add_eval(CLI::App& app);
Command add_summary(CLI::App& app);
Command add_export(CLI::App& app);
Command add_run(CLI::App& app);
Command add_bench(CLI::App& app);

// "recipe: bnn, xnor, ..." (train.cpp).
std::string recipes_help();

constexpr const char* kDefaultData = "/usr/share/datasets/fashion-mnist";

}  // namespace cli
}  // namespace lowbit
