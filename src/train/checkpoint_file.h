// Checkpoint files as ZIP archives (PyTorch's format), written atomically and verified on reading.
#pragma once

#include <torch/nn/module.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <string>
#include <vector>

#include "lowbit/batches.h"

namespace lowbit {
namespace train {

// Reads `file` into `archive`, tensors on `device`, after checking the CRC-32 of every member of
// its ZIP container (io::verify_zip): a missing, unreadable, corrupt or non-checkpoint file is an
// std::runtime_error naming it.
void read_archive(const std::string& file, torch::serialize::InputArchive& archive,
                  const torch::Device& device);

// An integer or string entry of a checkpoint archive: std::runtime_error "FILE: not a lowbit
// checkpoint (no 'KEY' entry)" when missing, "FILE: 'KEY' is not an integer" (a string) otherwise.
int64_t archive_int(torch::serialize::InputArchive& archive, const char* key,
                    const std::string& file);
std::string archive_string(torch::serialize::InputArchive& archive, const char* key,
                           const std::string& file);

// The input of a run's model as a checkpoint stores it: channels (1 where an older checkpoint lacks
// the entry), the standardisation (false where absent; one double per channel, or the single double
// of checkpoints written before per-channel statistics), class names (empty where absent). Bad
// values are std::runtime_error naming the file.
int64_t archive_channels(torch::serialize::InputArchive& archive, const std::string& file);
bool archive_standardisation(torch::serialize::InputArchive& archive, const std::string& file,
                             int64_t channels, Standardisation* out);
std::vector<std::string> archive_class_names(torch::serialize::InputArchive& archive);
// Writes the entries the three above read.
void write_input_description(torch::serialize::OutputArchive& archive, int64_t channels,
                             const Standardisation& standardisation,
                             const std::vector<std::string>& class_names);

// Loads a module's parameters and buffers from `archive`, requiring each to keep the shape the
// module gave it (std::runtime_error naming `file` and the tensor otherwise).
void load_weights(torch::nn::Module& model, torch::serialize::InputArchive& archive,
                  const std::string& file);

// Serializes `archive` in memory and writes it to `file` atomically (io::write_file_atomically):
// a full disk is an std::runtime_error "FILE: no space left on device" and leaves the previous
// file as it was.
void write_archive(torch::serialize::OutputArchive& archive, const std::string& file);

}  // namespace train
}  // namespace lowbit
