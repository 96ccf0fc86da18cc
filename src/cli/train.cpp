// lowbit train: a recipe on an IDX data set (docs/training.md).
#include "lowbit/train.h"

#include <cstdio>
#include <memory>

#include "commands.h"
#include "lowbit/io/json.h"

namespace lowbit {
namespace cli {

namespace {
std::string recipe_list() {
  std::string s;
  for (const auto& n : train::recipe_names()) s += (s.empty() ? "" : ", ") + n;
  return s;
}
}  // namespace

std::string recipes_help() { return "recipe: " + recipe_list(); }

Command add_train(CLI::App& app) {
  struct Args {
    std::string model, data = kDefaultData, out, config, device = "cpu";
    std::string image_size, dist_backend;
    double dist_timeout = 1800;
    int64_t epochs = -1, num_classes = 0;
    int threads = 0;
    double val_split = 0;
    uint64_t seed = 0;
    bool resume = false, overwrite = false, no_progress = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* c = app.add_subcommand("train", "train a recipe on a data set");
  c->add_option("--model", a->model, recipes_help() + " (default: the --config's recipe:)");
  c->add_option("--data", a->data,
                "data set directory: IDX files, CIFAR-10/100 binary files, or train/ and test/ "
                "folders of images by class")
      ->capture_default_str();
  c->add_option("--epochs", a->epochs, "epochs (default: the recipe's)")
      ->transform(integer_in(1, 1000000));
  c->add_option("--out", a->out, "output directory")->required();
  c->add_option("--config", a->config, "YAML file overriding recipe options");
  c->add_option("--seed", a->seed, "random seed")
      ->capture_default_str()
      ->transform(integer_in(0, UINT64_MAX));
  c->add_flag("--resume", a->resume, "continue from OUT/checkpoint.pt");
  c->add_flag("--overwrite", a->overwrite, "replace the run that OUT holds");
  c->add_option("--num-classes", a->num_classes,
                "classes of the model (default: the largest label + 1)")
      ->transform(integer_in(2, 256));
  c->add_flag("--no-progress", a->no_progress, "no progress bar");
  c->add_option("--threads", a->threads, "threads of the training (default: every core)")
      ->transform(integer_in(1, 1024));
  c->add_option("--val-split", a->val_split,
                "fraction of the training images held out for the metrics of each epoch (the "
                "test set is then evaluated only at the end)")
      ->check(CLI::Range(0.0, 0.99));
  c->add_option("--image-size", a->image_size,
                "image folders: resize every image to N (NxN) or HxW (default: the first "
                "training image's size)");
  c->add_option("--device", a->device, "cpu, cuda or cuda:N (needs a LibTorch with CUDA)")
      ->capture_default_str();
  c->add_option(
      "--dist-backend", a->dist_backend,
      "data-parallel runs (started by torchrun: RANK, WORLD_SIZE, MASTER_ADDR, ...): gloo "
      "or nccl (default: nccl on CUDA devices where LibTorch has it, else gloo)");
  c->add_option("--dist-timeout", a->dist_timeout,
                "data-parallel runs: seconds a rank waits for the others")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 86400.0));
  paths_not_empty(c);
  return {c, [a] {
            train::TrainOptions o;
            o.data_dir = a->data;
            o.out_dir = a->out;
            o.epochs = a->epochs;
            o.seed = a->seed;
            o.resume = a->resume;
            o.overwrite = a->overwrite;
            o.num_classes = a->num_classes;
            o.progress = !a->no_progress;
            o.config_path = a->config;
            o.device = a->device;
            o.threads = a->threads;
            o.val_split = a->val_split;
            if (!a->image_size.empty()) {
              const auto [h, w] = parse_image_size(a->image_size);
              o.image_height = h;
              o.image_width = w;
            }
            o.distributed = train::distributed_environment();
            o.distributed_backend = a->dist_backend;
            o.distributed_timeout_seconds = a->dist_timeout;
            const train::Recipe r = train::recipe_from(a->model, a->config);
            const auto result = train::train(r, o);
            if (o.distributed.rank != 0) return;  // rank 0 speaks for the run
            std::printf(
                "{\"model\": \"%s\", \"test_accuracy\": %.6f, \"epochs\": %lld, \"seconds\": %.1f, "
                "\"out\": \"%s\"%s}\n",
                r.name.c_str(), result.test_accuracy, static_cast<long long>(result.epochs),
                result.seconds, io::json_escaped(a->out).c_str(),
                o.distributed.distributed()
                    ? (", \"world_size\": " + std::to_string(o.distributed.world_size)).c_str()
                    : "");
            // The confusion matrix of the test split goes with the final metrics, for people.
            if (!a->no_progress) {
              std::fprintf(stderr, "%s",
                           train::confusion_text(result.test, result.class_names).c_str());
            }
          }};
}

}  // namespace cli
}  // namespace lowbit
