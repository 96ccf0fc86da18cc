// layout.h's kernels compiled for AVX2 (the same operations as the reference). Chosen at run
// time.
#define LOWBIT_LAYOUT_ISA avx2
#include "layout_body.h"
