// lowbit::_version(): the library's version (lowbit/version.h), read by Python's lowbit.__version__
// so that the version is defined once, in CMakeLists.txt.
#include "lowbit/version.h"

#include <torch/library.h>

#include <string>

namespace {
std::string version_op() { return LOWBIT_VERSION; }
}  // namespace

TORCH_LIBRARY_FRAGMENT(lowbit, m) { m.def("_version() -> str", &version_op); }
