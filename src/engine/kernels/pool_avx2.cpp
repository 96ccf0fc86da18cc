// pool.h's kernels compiled for AVX2 (the same operations as the reference). Chosen at run time.
#define LOWBIT_POOL_ISA avx2
#include "pool_body.h"
