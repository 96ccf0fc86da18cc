// What the commands of `lowbit` and `lowbit-run` share (torch-free): option validators, the
// command table, and parsing and running a command with the commands' error conventions.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

#include "lowbit/data/dataset.h"

namespace lowbit {
namespace cli {

// A subcommand and what it does once parsed.
struct Command {
  CLI::App* app = nullptr;
  std::function<void()> run;
};

// An integer option: digits only (a sign only where negatives are allowed), within [lo, hi],
// decimal whatever the leading zeros; the message names the value.
CLI::Validator integer_in(long long lo, unsigned long long hi);

// --image-size: "N" (N x N) or "HxW", each 1..65536; std::invalid_argument naming the option.
std::pair<int64_t, int64_t> parse_image_size(const std::string& text);
// A path option must not be empty (an empty path would otherwise be ignored).
extern const CLI::Validator kNonEmpty;
// Checks every path option of `command` (--data, --out, --config, --checkpoint, --logits, --input,
// --output, the model) with kNonEmpty.
void paths_not_empty(CLI::App* command);

// "lowbit: warning: TEXT" on stderr.
void warn(const std::string& text);

// Refuses an output file that is one of the command's inputs: the checkpoint or model, the data.
void check_output(const std::string& out, const std::string& model, const data::Dataset& dataset);

// Parses argv into one of the commands and runs it. Returns 0, or 2 with "NAME: error: WHAT" on
// stderr for a bad command line or a failure (`describe` may reword an exception's text). An
// unknown or missing command gets a message listing the commands.
int run_command(CLI::App& app, const std::vector<Command>& commands, int argc, char** argv,
                const std::function<std::string(const std::exception&)>& describe = nullptr);

}  // namespace cli
}  // namespace lowbit
