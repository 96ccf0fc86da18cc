// Tests the data-parallel environment and collectives: torchrun's variables and their errors, and a
// two-rank gloo group (two threads of this process on loopback) against sums written out here.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <torch/torch.h>
#include <unistd.h>

#include <functional>
#include <map>
#include <string>
#include <thread>

#include "lowbit/distributed.h"

namespace lowbit {
namespace train {
namespace {

DistributedEnvironment from(const std::map<std::string, std::string>& vars) {
  return distributed_environment([&](const char* name) -> const char* {
    const auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
}

std::string error_of(const std::map<std::string, std::string>& vars) {
  try {
    from(vars);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(Distributed, TheEnvironmentOfTorchrun) {
  EXPECT_FALSE(from({}).distributed());
  const auto e = from({{"RANK", "3"},
                       {"WORLD_SIZE", "4"},
                       {"LOCAL_RANK", "1"},
                       {"LOCAL_WORLD_SIZE", "2"},
                       {"MASTER_ADDR", "node0"},
                       {"MASTER_PORT", "29500"}});
  EXPECT_TRUE(e.distributed());
  EXPECT_EQ(e.rank, 3);
  EXPECT_EQ(e.world_size, 4);
  EXPECT_EQ(e.local_rank, 1);
  EXPECT_EQ(e.local_world_size, 2);
  EXPECT_EQ(e.master_addr, "node0");
  EXPECT_EQ(e.master_port, 29500);
  EXPECT_FALSE(e.agent_store);
  // Without LOCAL_*: one process per machine; under torchrun's agent: its store and attempt.
  const auto f = from({{"RANK", "1"},
                       {"WORLD_SIZE", "2"},
                       {"MASTER_ADDR", "a"},
                       {"MASTER_PORT", "1"},
                       {"TORCHELASTIC_USE_AGENT_STORE", "True"},
                       {"TORCHELASTIC_RESTART_COUNT", "2"}});
  EXPECT_EQ(f.local_rank, 0);
  EXPECT_EQ(f.local_world_size, 1);
  EXPECT_TRUE(f.agent_store);
  EXPECT_EQ(f.restart_count, 2);
  // One process needs no rendezvous.
  EXPECT_FALSE(from({{"RANK", "0"}, {"WORLD_SIZE", "1"}}).distributed());
}

TEST(Distributed, BadVariablesAreErrorsNamingThem) {
  const std::map<std::string, std::string> ok = {
      {"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "29500"}};
  const auto with = [&](const std::string& key, const char* value) {
    auto v = ok;
    if (value == nullptr) {
      v.erase(key);
    } else {
      v[key] = value;
    }
    return error_of(v);
  };
  EXPECT_EQ(error_of(ok), "");
  EXPECT_NE(with("WORLD_SIZE", nullptr).find("WORLD_SIZE: not set"), std::string::npos);
  EXPECT_NE(with("RANK", nullptr).find("RANK: not set"), std::string::npos);
  EXPECT_NE(with("RANK", "2").find("RANK=2: must be below WORLD_SIZE=2"), std::string::npos);
  EXPECT_NE(with("RANK", "-1").find("RANK='-1'"), std::string::npos);
  EXPECT_NE(with("WORLD_SIZE", "two").find("WORLD_SIZE='two'"), std::string::npos);
  EXPECT_NE(with("MASTER_PORT", "70000").find("MASTER_PORT='70000'"), std::string::npos);
  EXPECT_NE(with("MASTER_PORT", "29500x").find("MASTER_PORT"), std::string::npos);
  EXPECT_NE(with("MASTER_PORT", nullptr).find("MASTER_PORT: not set"), std::string::npos);
  EXPECT_NE(with("MASTER_ADDR", nullptr).find("MASTER_ADDR: not set"), std::string::npos);
  EXPECT_NE(with("LOCAL_RANK", "5").find("LOCAL_RANK='5'"), std::string::npos);
}

TEST(Distributed, ShardsCoverEveryItemOnce) {
  for (int64_t n : {0, 1, 7, 100}) {
    for (int world : {1, 2, 3, 8}) {
      int64_t next = 0;
      for (int r = 0; r < world; ++r) {
        const auto [b, e] = shard_range(n, r, world);
        EXPECT_EQ(b, next);
        EXPECT_LE(e - b, n / world + 1);
        next = e;
      }
      EXPECT_EQ(next, n);
    }
  }
}

// A port nobody listens on now (the kernel's choice for a socket bound to port 0).
int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  EXPECT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  close(fd);
  return ntohs(a.sin_port);
}

// Runs `body(group)` on ranks 0 and 1 of a gloo group, each on its own thread.
void on_two_ranks(const std::function<void(ProcessGroup&)>& body) {
  const int port = free_port();
  std::vector<std::thread> threads;
  std::vector<std::string> errors(2);
  for (int rank = 0; rank < 2; ++rank) {
    threads.emplace_back([&, rank] {
      try {
        DistributedEnvironment env;
        env.rank = rank;
        env.world_size = 2;
        env.master_addr = "127.0.0.1";
        env.master_port = port;
        ProcessGroup group(env, "gloo", std::chrono::seconds(60));
        body(group);
      } catch (const std::exception& e) {
        errors[rank] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors[0], "");
  EXPECT_EQ(errors[1], "");
}

// A module whose parameters and buffers depend on the rank.
struct Net : torch::nn::Module {
  explicit Net(int rank) {
    w = register_parameter("w", torch::full({2, 3}, 1.0 + rank));
    b = register_parameter("b", torch::full({4}, -2.0 * rank));
    none = register_parameter("none", torch::zeros({2}));  // never gets a gradient
    mean = register_buffer("mean", torch::full({3}, 10.0 * rank));
    count = register_buffer("count", torch::full({1}, 5 + rank, torch::kLong));
  }
  torch::Tensor w, b, none, mean, count;
};

TEST(Distributed, GradientsAreSummedAndBuffersAveragedOverTheRanks) {
  on_two_ranks([](ProcessGroup& group) {
    const int r = group.rank();
    EXPECT_EQ(group.size(), 2);
    Net net(r);
    net.w.mutable_grad() = torch::arange(6, torch::kFloat).view({2, 3}) * (r + 1);
    net.b.mutable_grad() = torch::full({4}, 0.5 + r);
    all_reduce_gradients(group, net, 0.25);
    // (g0 + g1) * scale: w's rank-r gradient is arange * (r + 1), so the sum is arange * 3.
    EXPECT_TRUE(torch::allclose(net.w.grad(), torch::arange(6, torch::kFloat).view({2, 3}) * 0.75));
    EXPECT_TRUE(torch::allclose(net.b.grad(), torch::full({4}, (0.5 + 1.5) * 0.25)));
    EXPECT_FALSE(net.none.grad().defined());
    average_buffers(group, net);
    EXPECT_TRUE(torch::allclose(net.mean, torch::full({3}, 5.0)));  // (0 + 10) / 2
    EXPECT_EQ(net.count.item<int64_t>(), 5 + r);                    // integers are left alone
    broadcast_state(group, net, 1);
    EXPECT_TRUE(torch::allclose(net.w, torch::full({2, 3}, 2.0)));
    EXPECT_TRUE(torch::allclose(net.b, torch::full({4}, -2.0)));
    EXPECT_EQ(net.count.item<int64_t>(), 6);
    // Agreement: true only when every rank says so.
    EXPECT_TRUE(group.all_agree(true));
    EXPECT_FALSE(group.all_agree(r == 0));
  });
}

TEST(Distributed, AnUnknownBackendIsAnErrorListingTheKnownOnes) {
  DistributedEnvironment env;
  env.world_size = 2;
  env.master_addr = "127.0.0.1";
  env.master_port = 1;
  try {
    ProcessGroup group(env, "mpi", std::chrono::seconds(1));
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("distributed backend 'mpi': unknown; this build has gloo"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace train
}  // namespace lowbit
