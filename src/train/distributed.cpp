// Data-parallel training on c10d: the environment of torchrun, a gloo (or NCCL) process group over
// a TCP store, and the collectives of the training loop.
#include "lowbit/distributed.h"

#include <c10/util/Exception.h>
#include <torch/torch.h>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <cerrno>
#include <cstdlib>
#include <limits>
#include <map>
#include <stdexcept>
#include <utility>

namespace lowbit {
namespace train {
namespace {

// A variable's integer value in [lo, hi]; std::invalid_argument naming it otherwise.
int int_variable(const char* name, const char* text, int lo, int hi) {
  const std::string value = text;
  errno = 0;
  char* end = nullptr;
  const long v = std::strtol(value.c_str(), &end, 10);
  if (value.empty() || end == nullptr || *end != '\0' || errno != 0 || v < lo || v > hi) {
    throw std::invalid_argument(std::string(name) + "='" + value + "': expected an integer in " +
                                std::to_string(lo) + ".." + std::to_string(hi));
  }
  return static_cast<int>(v);
}

std::string message(const std::exception& e) {
  if (const auto* c = dynamic_cast<const c10::Error*>(&e)) return c->what_without_backtrace();
  return e.what();
}

}  // namespace

DistributedEnvironment distributed_environment(
    const std::function<const char*(const char*)>& lookup) {
  const auto get = [&](const char* name) -> const char* {
    const char* v = lookup ? lookup(name) : std::getenv(name);
    return v != nullptr && *v != '\0' ? v : nullptr;
  };
  DistributedEnvironment e;
  const char* rank = get("RANK");
  const char* world = get("WORLD_SIZE");
  if (rank == nullptr && world == nullptr) return e;
  if (rank == nullptr || world == nullptr) {
    throw std::invalid_argument(std::string(rank == nullptr ? "RANK" : "WORLD_SIZE") +
                                ": not set, but " + (rank == nullptr ? "WORLD_SIZE" : "RANK") +
                                " is; a data-parallel run needs both (torchrun sets them)");
  }
  constexpr int kMaxWorld = 1 << 20;
  e.world_size = int_variable("WORLD_SIZE", world, 1, kMaxWorld);
  e.rank = int_variable("RANK", rank, 0, kMaxWorld);
  if (e.rank >= e.world_size) {
    throw std::invalid_argument("RANK=" + std::to_string(e.rank) +
                                ": must be below WORLD_SIZE=" + std::to_string(e.world_size));
  }
  const char* local_world = get("LOCAL_WORLD_SIZE");
  e.local_world_size =
      local_world != nullptr ? int_variable("LOCAL_WORLD_SIZE", local_world, 1, e.world_size) : 1;
  const char* local = get("LOCAL_RANK");
  e.local_rank = local != nullptr ? int_variable("LOCAL_RANK", local, 0, e.world_size - 1)
                                  : (local_world != nullptr ? e.rank % e.local_world_size : 0);
  if (local != nullptr && local_world != nullptr && e.local_rank >= e.local_world_size) {
    throw std::invalid_argument(
        "LOCAL_RANK=" + std::to_string(e.local_rank) +
        ": must be below LOCAL_WORLD_SIZE=" + std::to_string(e.local_world_size));
  }
  if (e.world_size == 1) return e;
  const char* addr = get("MASTER_ADDR");
  const char* port = get("MASTER_PORT");
  if (addr == nullptr || port == nullptr) {
    throw std::invalid_argument(std::string(addr == nullptr ? "MASTER_ADDR" : "MASTER_PORT") +
                                ": not set; with WORLD_SIZE=" + std::to_string(e.world_size) +
                                " the ranks meet at MASTER_ADDR:MASTER_PORT (rank 0's host)");
  }
  e.master_addr = addr;
  e.master_port = int_variable("MASTER_PORT", port, 1, 65535);
  const char* agent = get("TORCHELASTIC_USE_AGENT_STORE");
  e.agent_store = agent != nullptr && std::string(agent) == "True";
  const char* restarts = get("TORCHELASTIC_RESTART_COUNT");
  e.restart_count =
      restarts != nullptr ? int_variable("TORCHELASTIC_RESTART_COUNT", restarts, 0, 1 << 30) : 0;
  return e;
}

std::vector<std::string> distributed_backends() {
  std::vector<std::string> b{"gloo"};
#ifdef USE_C10D_NCCL
  b.emplace_back("nccl");
#endif
  return b;
}

std::pair<int64_t, int64_t> shard_range(int64_t n, int rank, int world) {
  return {n * rank / world, n * (rank + 1) / world};
}

// The collectives of one backend's process group, whatever class it derives from (ProcessGroup in
// LibTorch 1.x, Backend in 2.x).
struct ProcessGroup::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  std::function<void(std::vector<at::Tensor>&)> all_reduce;
  std::function<void(std::vector<at::Tensor>&, int)> broadcast;

  template <typename Group>
  void bind(c10::intrusive_ptr<Group> group) {
    all_reduce = [group](std::vector<at::Tensor>& t) {
      c10d::AllreduceOptions o;
      o.reduceOp = c10d::ReduceOp::SUM;
      group->allreduce(t, o)->wait();
    };
    broadcast = [group](std::vector<at::Tensor>& t, int root) {
      c10d::BroadcastOptions o;
      o.rootRank = root;
      group->broadcast(t, o)->wait();
    };
  }
};

ProcessGroup::ProcessGroup(const DistributedEnvironment& env, const std::string& backend,
                           std::chrono::milliseconds timeout, const c10::Device& device)
    : impl_(std::make_unique<Impl>()),
      rank_(env.rank),
      size_(env.world_size),
      backend_(backend),
      device_(device) {
  const auto backends = distributed_backends();
  if (std::find(backends.begin(), backends.end(), backend) == backends.end()) {
    throw std::invalid_argument(
        "distributed backend '" + backend +
        "': " + (backend == "nccl" ? "this LibTorch was built without NCCL; " : "unknown; ") +
        "this build has " + c10::Join(", ", backends));
  }
  if (backend == "nccl" && !device.is_cuda()) {
    throw std::invalid_argument(
        "--dist-backend nccl: NCCL reduces GPU memory; train on --device "
        "cuda, or use gloo on the CPU");
  }
  const std::string where = env.master_addr + ":" + std::to_string(env.master_port);
  const bool serves = env.rank == 0 && !env.agent_store;
  try {
    c10d::TCPStoreOptions o;
    o.port = static_cast<uint16_t>(env.master_port);
    o.isServer = serves;
    o.numWorkers = env.world_size;
    o.waitWorkers = true;
    o.timeout = timeout;
    impl_->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, o);
    if (env.agent_store) {
      impl_->store = c10::make_intrusive<c10d::PrefixStore>(
          "/worker/attempt_" + std::to_string(env.restart_count), impl_->store);
    }
  } catch (const std::exception& e) {
    throw std::runtime_error(
        "MASTER_ADDR:MASTER_PORT " + where + ": rank " + std::to_string(env.rank) + " of " +
        std::to_string(env.world_size) +
        (serves ? ": serving the rendezvous store failed (the port in use, or not every rank "
                  "joined within --dist-timeout): "
                : ": cannot reach the rendezvous store (rank 0 not started or not reachable "
                  "within --dist-timeout): ") +
        message(e));
  }
  try {
    if (backend == "gloo") {
      auto options = c10d::ProcessGroupGloo::Options::create(timeout);
      const char* interface = std::getenv("GLOO_SOCKET_IFNAME");
      options->devices.push_back(interface != nullptr && *interface != '\0'
                                     ? c10d::ProcessGroupGloo::createDeviceForInterface(interface)
                                     : c10d::ProcessGroupGloo::createDefaultDevice());
      options->threads = 2;
      impl_->bind(c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, env.rank,
                                                              env.world_size, options));
    } else {
#ifdef USE_C10D_NCCL
      auto options = c10d::ProcessGroupNCCL::Options::create();
      options->timeout = timeout;
      impl_->bind(c10::make_intrusive<c10d::ProcessGroupNCCL>(impl_->store, env.rank,
                                                              env.world_size, options));
#endif
    }
  } catch (const std::exception& e) {
    throw std::runtime_error("rank " + std::to_string(env.rank) + " of " +
                             std::to_string(env.world_size) + ": cannot form the " + backend +
                             " process group through " + where + ": " + message(e));
  }
}

ProcessGroup::~ProcessGroup() = default;

at::Tensor ProcessGroup::staged(const at::Tensor& t) const {
  // gloo reduces host memory (Debian's gloo has no CUDA); NCCL device memory.
  if (backend_ == "gloo" && !t.is_cpu()) return t.cpu();
  if (backend_ == "nccl" && t.device() != device_) return t.to(device_);
  return t;
}

void ProcessGroup::all_reduce_sum(at::Tensor& tensor) {
  std::vector<at::Tensor> t{staged(tensor)};
  try {
    impl_->all_reduce(t);
    if (!t[0].is_same(tensor)) tensor.copy_(t[0]);
  } catch (const std::exception& e) {
    throw std::runtime_error("rank " + std::to_string(rank_) + " of " + std::to_string(size_) +
                             ": all-reduce failed (a rank stopped or timed out): " + message(e));
  }
}

void ProcessGroup::broadcast(at::Tensor& tensor, int root) {
  std::vector<at::Tensor> t{staged(tensor)};
  try {
    impl_->broadcast(t, root);
    if (!t[0].is_same(tensor)) tensor.copy_(t[0]);
  } catch (const std::exception& e) {
    throw std::runtime_error("rank " + std::to_string(rank_) + " of " + std::to_string(size_) +
                             ": broadcast failed (a rank stopped or timed out): " + message(e));
  }
}

bool ProcessGroup::all_agree(bool ok) {
  at::Tensor failed = torch::full({1}, ok ? 0 : 1, torch::kInt);
  all_reduce_sum(failed);
  return failed.item<int>() == 0;
}

void ProcessGroup::fail_together() noexcept {
  try {
    all_agree(false);
  } catch (...) {
    // The peers are gone already; this rank's own error is the one to report.
  }
}

namespace {

// Runs `f` on flat buffers of `tensors` grouped by dtype and device, copying the results back.
void flat_collective(std::vector<at::Tensor> tensors, const std::function<void(at::Tensor&)>& f) {
  std::map<std::pair<int, std::string>, std::vector<at::Tensor>> groups;
  for (auto& t : tensors) {
    groups[{static_cast<int>(t.scalar_type()), t.device().str()}].push_back(t);
  }
  for (auto& [key, members] : groups) {
    std::vector<at::Tensor> flat;
    flat.reserve(members.size());
    for (const auto& t : members) flat.push_back(t.reshape({-1}));
    at::Tensor buffer = torch::cat(flat);
    f(buffer);
    int64_t offset = 0;
    for (auto& t : members) {
      const int64_t n = t.numel();
      t.copy_(buffer.slice(0, offset, offset + n).view_as(t));
      offset += n;
    }
  }
}

}  // namespace

void all_reduce_gradients(ProcessGroup& group, torch::nn::Module& module, double scale) {
  std::vector<at::Tensor> grads;
  for (auto& p : module.parameters()) {
    if (p.grad().defined()) grads.push_back(p.mutable_grad());
  }
  flat_collective(grads, [&](at::Tensor& buffer) {
    group.all_reduce_sum(buffer);
    if (scale != 1.0) buffer.mul_(scale);
  });
}

void average_buffers(ProcessGroup& group, torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> floats;
  for (auto& b : module.buffers()) {
    if (b.is_floating_point()) floats.push_back(b);
  }
  flat_collective(floats, [&](at::Tensor& buffer) {
    group.all_reduce_sum(buffer);
    buffer.div_(group.size());
  });
}

void broadcast_state(ProcessGroup& group, torch::nn::Module& module, int root) {
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> state = module.parameters();
  for (auto& b : module.buffers()) state.push_back(b);
  flat_collective(state, [&](at::Tensor& buffer) { group.broadcast(buffer, root); });
}

}  // namespace train
}  // namespace lowbit
