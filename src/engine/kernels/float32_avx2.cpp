// float32.h's convolution compiled for AVX2 (the row loops vectorized; no FMA: the same bits as the
// reference). Chosen at run time.
#define LOWBIT_FLOAT32_ISA avx2
#define LOWBIT_FLOAT32_VECTOR 8  // floats per register
#include "float32_body.h"
