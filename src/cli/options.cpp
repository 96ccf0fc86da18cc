// What the commands share: validators, checks of output paths, and running a command.
#include "options.h"

#include <algorithm>
#include <cctype>
#include <csignal>
#include <cstdio>
#include <stdexcept>

#include "lowbit/io/file.h"
#include "lowbit/version.h"

namespace lowbit {
namespace cli {

CLI::Validator integer_in(long long lo, unsigned long long hi) {
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
            if (v < lo || lo >= 0) throw std::out_of_range("");
          } else {
            const unsigned long long v = std::stoull(digits);
            if (v > hi || (lo > 0 && v < static_cast<unsigned long long>(lo)))
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

const CLI::Validator kNonEmpty(
    [](std::string& text) { return text.empty() ? std::string("no path given (empty)") : ""; },
    "PATH");

void paths_not_empty(CLI::App* command) {
  for (const char* name : {"--data", "--out", "--config", "--checkpoint", "--logits", "--input",
                           "--output", "model"}) {
    if (CLI::Option* o = command->get_option_no_throw(name)) o->check(kNonEmpty);
  }
}

std::pair<int64_t, int64_t> parse_image_size(const std::string& text) {
  const auto bad = [&] {
    return std::invalid_argument("--image-size '" + text +
                                 "': expected N or HxW, sides from 1 to 65536 (28, 32x32)");
  };
  const size_t x = text.find('x');
  const std::string h = text.substr(0, x), w = x == std::string::npos ? h : text.substr(x + 1);
  const auto side = [&](const std::string& s) {
    if (s.empty() || s.size() > 5 ||
        !std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); })) {
      throw bad();
    }
    const int64_t v = std::stoll(s);
    if (v < 1 || v > 65536) throw bad();
    return v;
  };
  return {side(h), side(w)};
}

void warn(const std::string& text) { std::fprintf(stderr, "lowbit: warning: %s\n", text.c_str()); }

void check_output(const std::string& out, const std::string& model, const data::Dataset& dataset) {
  io::check_not_input(out, model, "the model or checkpoint read");
  for (const auto* split : {&dataset.train, &dataset.test}) {
    io::check_not_input(out, split->images_path, "a file of the data set");
    io::check_not_input(out, split->labels_path, "a file of the data set");
  }
}

int run_command(CLI::App& app, const std::vector<Command>& commands, int argc, char** argv,
                const std::function<std::string(const std::exception&)>& describe) {
  // Over `ulimit -f` a write fails with EFBIG (reported like a full disk) instead of killing us.
  std::signal(SIGXFSZ, SIG_IGN);
  // An interrupted write leaves no temporary file behind.
  io::remove_temporaries_on_signals();
  const std::string name = app.get_name();
  app.set_version_flag("--version", name + " " + LOWBIT_VERSION);
  app.require_subcommand(1);
  // A first argument that names no command gets a message that names them (CLI11 would say "A
  // subcommand is required").
  const bool known =
      argc > 1 && std::any_of(commands.begin(), commands.end(),
                              [&](const Command& c) { return c.app->get_name() == argv[1]; });
  if (argc == 1 || (argv[1][0] != '-' && !known)) {
    std::string names;
    for (size_t i = 0; i < commands.size(); ++i)
      names += (i == 0                     ? ""
                : i + 1 == commands.size() ? " and "
                                           : ", ") +
               commands[i].app->get_name();
    const std::string what =
        argc == 1 ? "no command given" : "unknown command '" + std::string(argv[1]) + "'";
    std::fprintf(stderr, "%s: error: %s; the commands are %s (%s --help)\n", name.c_str(),
                 what.c_str(), names.c_str(), name.c_str());
    return 2;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    std::fprintf(
        stderr, "%s: error: %s (%s %s--help)\n", name.c_str(), e.what(), name.c_str(),
        app.get_subcommands().empty() ? "" : (app.get_subcommands()[0]->get_name() + " ").c_str());
    return 2;
  }
  try {
    for (const Command& c : commands)
      if (*c.app) c.run();
  } catch (const std::exception& e) {
    const std::string what = describe ? describe(e) : e.what();
    std::fprintf(stderr, "%s: error: %s\n", name.c_str(), what.c_str());
    return 2;
  }
  return 0;
}

}  // namespace cli
}  // namespace lowbit
