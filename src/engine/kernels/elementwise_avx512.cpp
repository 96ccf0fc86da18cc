// elementwise.h's kernels compiled for AVX-512 (the same operations as the reference). Chosen
// at run time.
#define LOWBIT_ELEMENTWISE_ISA avx512
#include "elementwise_body.h"
