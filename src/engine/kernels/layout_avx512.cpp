// layout.h's kernels compiled for AVX-512 (the same operations as the reference). Chosen at
// run time.
#define LOWBIT_LAYOUT_ISA avx512
#include "layout_body.h"
