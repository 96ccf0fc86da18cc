// lowbit eval: the test accuracy of a trained model, its logits, its integer parameters.
#include <torch/torch.h>

#include <cstdio>
#include <memory>

#include "commands.h"
#include "lowbit/io/npy.h"
#include "lowbit/qat.h"
#include "lowbit/train.h"

namespace lowbit {
namespace cli {

Command add_eval(CLI::App& app) {
  struct Args {
    std::string checkpoint, data = kDefaultData, logits;
    bool integer_params = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* c = app.add_subcommand("eval", "test accuracy of a trained model");
  c->add_option("--checkpoint", a->checkpoint,
                "the output directory of a training run, or its checkpoint file")
      ->required();
  c->add_option("--data", a->data, "directory with the IDX files")->capture_default_str();
  c->add_option("--logits", a->logits,
                "also write the test set's logits to this .npy file (float32, [images, "
                "classes])");
  c->add_flag("--integer-parameters", a->integer_params,
              "also print every layer's integer parameters (quantization-aware recipes)");
  paths_not_empty(c);
  return {c, [a] {
            const auto ck = train::load_checkpoint(a->checkpoint);
            const train::Recipe& r = ck.recipe;
            if (a->integer_params && r.qat == "none") {
              throw std::invalid_argument("--integer-parameters: recipe '" + r.name +
                                          "' is not quantization-aware (qat: none)");
            }
            auto net = ck.model;
            // Standardised as in training (the checkpoint's values), whatever data set is
            // evaluated; the training split is read only for older checkpoints that do not store
            // them.
            data::LoadOptions load;
            load.with_train = !ck.has_normalization;
            load.height = ck.height;  // image folders are resized to the model's input
            load.width = ck.width;
            const auto dataset = data::load_dataset(a->data, load);
            check_output(a->logits, ck.file, dataset);
            const std::string note = train::check_compatible(dataset, a->data, ck);
            if (!note.empty()) warn(note);
            const auto t = train::to_tensors(dataset, ck);
            const auto [loss, acc] = train::evaluate(net, t.test_images, t.test_labels);
            if (!a->logits.empty()) {
              torch::NoGradGuard no_grad;
              std::vector<at::Tensor> parts;
              for (const auto& batch : t.test_images.split(500))
                parts.push_back(net->forward(batch));
              const at::Tensor y = torch::cat(parts).to(torch::kFloat).contiguous();
              io::write_npy(a->logits, y.sizes().vec(), y.data_ptr<float>());
            }
            std::printf("{\"model\": \"%s\", \"test_accuracy\": %.6f, \"test_loss\": %.6f}\n",
                        r.name.c_str(), acc, loss);
            if (a->integer_params) {
              std::printf("%s", qat::integer_parameters_json(qat::integer_parameters(net),
                                                             qat::parse_scheme(r.qat))
                                    .c_str());
            }
          }};
}

}  // namespace cli
}  // namespace lowbit
