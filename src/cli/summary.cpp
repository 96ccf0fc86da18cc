// lowbit summary: the Larq-style summary of a recipe's model.
#include <cstdio>
#include <memory>

#include "commands.h"
#include "lowbit/nn.h"
#include "lowbit/train.h"

namespace lowbit {
namespace cli {

Command add_summary(CLI::App& app) {
  struct Args {
    std::string model, config;
    int64_t channels = 1, height = 28, width = 28, classes = 10;
  };
  auto a = std::make_shared<Args>();
  CLI::App* c = app.add_subcommand("summary", "Larq-style summary of a recipe's model");
  c->add_option("--model", a->model, recipes_help() + " (default: the --config's recipe:)");
  c->add_option("--config", a->config, "YAML file overriding recipe options");
  c->add_option("--channels", a->channels, "image channels (1 gray, 3 RGB)")
      ->capture_default_str()
      ->transform(integer_in(1, 4096));
  c->add_option("--height", a->height, "image height")
      ->capture_default_str()
      ->transform(integer_in(1, 65536));
  c->add_option("--width", a->width, "image width")
      ->capture_default_str()
      ->transform(integer_in(1, 65536));
  c->add_option("--classes", a->classes, "number of classes")
      ->capture_default_str()
      ->transform(integer_in(2, int64_t{1} << 20));
  paths_not_empty(c);
  return {c, [a] {
            const train::Recipe r = train::recipe_from(a->model, a->config);
            auto net = train::build_model(r, a->height, a->width, a->classes, a->channels);
            std::printf(
                "Model: %s\n\n%s", r.name.c_str(),
                nn::summary(*net, {1, a->channels, a->height, a->width}).to_string().c_str());
          }};
}

}  // namespace cli
}  // namespace lowbit
