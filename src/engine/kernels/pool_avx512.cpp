// pool.h's kernels compiled for AVX-512 (the same operations as the reference). Chosen at run
// time.
#define LOWBIT_POOL_ISA avx512
#include "pool_body.h"
