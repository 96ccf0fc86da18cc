// float32.h's convolution compiled for AVX2 with FMA (the same fused multiply-adds as the
// reference, so the same bits). Chosen at run time.
#include <immintrin.h>
#define LOWBIT_FLOAT32_ISA avx2
#define LOWBIT_FLOAT32_VECTOR 8   // floats per register
#define LOWBIT_FLOAT32_VECTORS 2  // registers of outputs per channel in a block
#define LOWBIT_FLOAT32_MADD(x, w, acc) _mm256_fmadd_ps(x, _mm256_set1_ps(w), acc)
#include "float32_body.h"
