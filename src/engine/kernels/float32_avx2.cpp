// float32.h's convolution compiled for AVX2 (the row loops vectorized; no FMA: the same bits as the
// reference). Chosen at run time.
#define LOWBIT_FLOAT32_ISA avx2
#include "float32_body.h"
