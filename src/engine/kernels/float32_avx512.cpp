// float32.h's convolution compiled for AVX512 (the row loops vectorized; no FMA: the same bits as
// the reference). Chosen at run time.
#define LOWBIT_FLOAT32_ISA avx512
#define LOWBIT_FLOAT32_VECTOR 16  // floats per register
#include "float32_body.h"
