// elementwise.h's kernels compiled for AVX2 (the same operations as the reference). Chosen at
// run time.
#define LOWBIT_ELEMENTWISE_ISA avx2
#include "elementwise_body.h"
