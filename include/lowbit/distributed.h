// Data-parallel training on PyTorch's distributed engine (c10d): the variables that torchrun and
// cluster schedulers set, a process group (gloo on CPUs, NCCL on GPUs where LibTorch has it), and
// the collectives the training loop needs (docs/training.md, "Several processes").
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace lowbit {
namespace train {

// The place of this process in a run of world_size processes. One process (world_size 1) when
// none of the variables is set.
struct DistributedEnvironment {
  int rank = 0, world_size = 1;
  int local_rank = 0, local_world_size = 1;  // on this machine
  std::string master_addr;                   // rank 0's host, which serves the rendezvous store
  int master_port = 0;
  // Under torchrun, its agent already serves the store (TORCHELASTIC_USE_AGENT_STORE=True): every
  // rank connects as a client, under the prefix of the agent's attempt
  // (TORCHELASTIC_RESTART_COUNT).
  bool agent_store = false;
  int restart_count = 0;
  bool distributed() const { return world_size > 1; }
};

// Reads RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT through
// `lookup` (getenv by default). RANK and WORLD_SIZE go together; with WORLD_SIZE > 1, MASTER_ADDR
// and MASTER_PORT are required; LOCAL_WORLD_SIZE defaults to 1 and LOCAL_RANK to RANK modulo
// LOCAL_WORLD_SIZE when that is set (else 0); torchrun's
// TORCHELASTIC_USE_AGENT_STORE and TORCHELASTIC_RESTART_COUNT are read too. A missing,
// malformed or inconsistent variable is an std::invalid_argument naming it.
DistributedEnvironment distributed_environment(
    const std::function<const char*(const char*)>& lookup = nullptr);

// The backends this LibTorch build offers ("gloo", and "nccl" where it has NCCL).
std::vector<std::string> distributed_backends();

// The processes of a run, connected through a TCP store at MASTER_ADDR:MASTER_PORT (served by
// rank 0). Every collective blocks until all ranks have called it, or fails (std::runtime_error)
// after `timeout` or when a peer has gone (gloo; NCCL may wait for its watchdog). Tensors may live
// anywhere: gloo reduces host copies of CUDA tensors, NCCL device copies of host tensors (on
// `device`, the rank's GPU; nccl needs a CUDA device).
class ProcessGroup {
 public:
  ProcessGroup(const DistributedEnvironment& environment, const std::string& backend,
               std::chrono::milliseconds timeout, const c10::Device& device = c10::Device("cpu"));
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  const std::string& backend() const { return backend_; }

  // Sums `tensor` (contiguous) over the ranks, in place.
  void all_reduce_sum(at::Tensor& tensor);
  // Copies root's `tensor` into every rank's.
  void broadcast(at::Tensor& tensor, int root);
  // True on every rank when `ok` is true on every rank: how ranks agree that each is ready, so that
  // one rank's error ends the others at once instead of at the timeout.
  bool all_agree(bool ok);
  // all_agree(false) from a rank that is failing: errors of the collective itself (a peer gone)
  // are ignored, so that the rank's own error is the one reported.
  void fail_together() noexcept;

 private:
  struct Impl;
  // The tensor a collective runs on: `t` itself, or a copy where the backend needs one.
  at::Tensor staged(const at::Tensor& t) const;

  std::unique_ptr<Impl> impl_;
  int rank_ = 0, size_ = 1;
  std::string backend_;
  c10::Device device_{c10::kCPU};
};

// Sums the gradients of `module`'s parameters over the ranks (one flat buffer per dtype and device,
// one collective each), then scales them by `scale`. Parameters without a gradient are skipped
// (they must lack it on every rank).
void all_reduce_gradients(ProcessGroup& group, torch::nn::Module& module, double scale = 1.0);
// Averages the floating-point buffers (batch norm's running statistics, observers) over the ranks.
// Running means are then those of one process on the whole batches: an exponential moving average
// is linear in what it averages.
void average_buffers(ProcessGroup& group, torch::nn::Module& module);
// Copies root's parameters and buffers to every rank.
void broadcast_state(ProcessGroup& group, torch::nn::Module& module, int root = 0);

// Rank `rank`'s part [begin, end) of n items shared by `world` ranks as evenly as possible.
std::pair<int64_t, int64_t> shard_range(int64_t n, int rank, int world);

}  // namespace train
}  // namespace lowbit
