// What the machine gives a training run: threads, memory kept for reuse, and the BLAS LibTorch's
// dense layers call.
#include <dlfcn.h>
#include <malloc.h>
#include <torch/torch.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <string>
#include <thread>

#include "lowbit/train.h"

namespace lowbit {
namespace train {

int set_threads(int requested, int processes) {
  const int cores = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  const int n = requested > 0 ? requested : std::max(1, cores / std::max(1, processes));
  at::set_num_threads(n);
  return n;
}

void retain_freed_memory() {
  // glibc's defaults return freed memory above 128 KiB to the kernel (and serve large blocks by
  // mmap) until its dynamic thresholds have grown; fixed thresholds keep blocks up to 32 MiB (the
  // most mmap_threshold takes on 64-bit) in the heap and trim only beyond 1 GiB of free top.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 64 << 20);
}

BlasLibrary blas_library() {
  BlasLibrary blas;
  // The library whose sgemm_ the process resolves is the one LibTorch's matrix products call.
  void* sgemm = dlsym(RTLD_DEFAULT, "sgemm_");
  Dl_info info{};
  if (sgemm == nullptr || dladdr(sgemm, &info) == 0 || info.dli_fname == nullptr) return blas;
  blas.path = info.dli_fname;
  char resolved[PATH_MAX];
  if (realpath(info.dli_fname, resolved) != nullptr) blas.path = resolved;
  // Optimised BLAS libraries export a function of their own beside the BLAS interface; the
  // reference BLAS (Debian's libblas3) exports the interface alone.
  void* handle = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
  if (handle == nullptr) return blas;
  static const char* const kOptimised[][2] = {{"openblas_get_config", "OpenBLAS"},
                                              {"bli_info_get_version_str", "BLIS"},
                                              {"mkl_get_version", "MKL"},
                                              {"ATL_buildinfo", "ATLAS"}};
  blas.name = "reference";
  for (const auto& [symbol, name] : kOptimised) {
    if (dlsym(handle, symbol) != nullptr) {
      blas.name = name;
      break;
    }
  }
  dlclose(handle);
  return blas;
}

std::string slow_blas_warning() {
  const BlasLibrary blas = blas_library();
  if (blas.name != "reference") return "";
  return "LibTorch's matrix products run on the reference BLAS (" + blas.path +
         "), 5-30x slower than an optimised one for dense layers; install Debian's "
         "libopenblas0-openmp (./scripts/setup does), which LibTorch then uses";
}

}  // namespace train
}  // namespace lowbit
