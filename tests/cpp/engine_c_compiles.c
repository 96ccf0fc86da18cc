/* The engine's C API header compiles as C (C99); its behaviour is tested in test_engine.cpp. */
#include "lowbit/engine_c.h"

int lowbit_engine_c_header_compiles(void) {
  int64_t shape[3] = {0, 0, 0};
  lowbit_model_input_shape((const lowbit_model*)0, shape);
  return (int)shape[0];
}
