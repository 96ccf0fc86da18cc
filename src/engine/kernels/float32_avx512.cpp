// float32.h's convolution compiled for AVX-512 with FMA (the same fused multiply-adds as the
// reference, so the same bits). Chosen at run time.
#include <immintrin.h>
#define LOWBIT_FLOAT32_ISA avx512
#define LOWBIT_FLOAT32_VECTOR 16  // floats per register
#define LOWBIT_FLOAT32_VECTORS 4  // registers of outputs per channel in a block
#define LOWBIT_FLOAT32_MADD(x, w, acc) _mm512_fmadd_ps(x, _mm512_set1_ps(w), acc)
#include "float32_body.h"
