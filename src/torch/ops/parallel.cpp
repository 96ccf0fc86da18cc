// lowbit::_parallel_threads(tasks): how many threads at::parallel_for, as compiled into this
// library, spreads `tasks` one-element tasks over. The CPU operators share its threading; a build
// that misses LibTorch's OpenMP flags gets 1 whatever torch.set_num_threads says.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <mutex>
#include <set>

#include "lowbit/ops.h"

namespace lowbit {
namespace internal {

int64_t parallel_threads(int64_t tasks) {
  TORCH_CHECK_VALUE(tasks >= 1, "tasks must be >= 1, got ", tasks);
  std::mutex mutex;
  std::set<int> ids;
  at::parallel_for(0, tasks, 1, [&](int64_t, int64_t) {
    const std::lock_guard<std::mutex> lock(mutex);
    ids.insert(at::get_thread_num());
  });
  return static_cast<int64_t>(ids.size());
}

}  // namespace internal
}  // namespace lowbit

TORCH_LIBRARY_FRAGMENT(lowbit, m) {
  m.def("_parallel_threads(int tasks) -> int", &lowbit::internal::parallel_threads);
}
