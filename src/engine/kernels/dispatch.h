// Run-time dispatch over a kernel family's list: the last implementation this CPU supports (the
// lists run from the scalar reference to the widest instruction set).
#pragma once

#include <cstddef>
#include <vector>

namespace lowbit {
namespace engine {

template <class Kernels>
const Kernels& best_of(const std::vector<Kernels>& list) {
  for (size_t i = list.size(); i-- > 0;) {
    if (list[i].supported()) return list[i];
  }
  return list[0];
}

}  // namespace engine
}  // namespace lowbit
