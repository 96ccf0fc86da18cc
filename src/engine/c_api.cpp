// The engine's C API over lowbit::engine::Model; no exception crosses it.
#include <cstring>
#include <exception>
#include <new>
#include <string>

#include "lowbit/engine.h"
#include "lowbit/engine_c.h"

struct lowbit_model {
  lowbit::engine::Model model;
};

namespace {

void report(char* error, size_t size, const char* message) {
  if (!error || size == 0) return;
  std::strncpy(error, message, size - 1);
  error[size - 1] = '\0';
}

template <class F>
lowbit_model* make(F&& load, char* error, size_t error_size) {
  try {
    auto* m = new lowbit_model{load()};
    report(error, error_size, "");
    return m;
  } catch (const std::bad_alloc&) {
    report(error, error_size, "out of memory");
  } catch (const std::exception& e) {
    report(error, error_size, e.what());
  }
  return nullptr;
}

}  // namespace

extern "C" {

lowbit_model* lowbit_model_from_file(const char* path, char* error, size_t error_size) {
  if (!path) {
    report(error, error_size, "path is NULL");
    return nullptr;
  }
  return make([&] { return lowbit::engine::Model::from_file(path); }, error, error_size);
}

lowbit_model* lowbit_model_from_buffer(const void* data, size_t size, char* error,
                                       size_t error_size) {
  if (!data && size > 0) {
    report(error, error_size, "data is NULL");
    return nullptr;
  }
  return make([&] { return lowbit::engine::Model::from_buffer(data, size); }, error, error_size);
}

void lowbit_model_input_shape(const lowbit_model* model, int64_t shape[3]) {
  if (!model || !shape) return;
  const auto s = model->model.input_shape();
  for (size_t i = 0; i < 3; ++i) shape[i] = s.size() == 3 ? s[i] : 0;
}

namespace {
size_t copy_dims(const std::vector<int64_t>& s, int64_t* dims, size_t capacity) {
  for (size_t i = 0; dims && i < s.size() && i < capacity; ++i) dims[i] = s[i];
  return s.size();
}
}  // namespace

size_t lowbit_model_input_dims(const lowbit_model* model, int64_t* dims, size_t capacity) {
  return model ? copy_dims(model->model.input_shape(), dims, capacity) : 0;
}

size_t lowbit_model_output_dims(const lowbit_model* model, int64_t* dims, size_t capacity) {
  return model ? copy_dims(model->model.output_shape(), dims, capacity) : 0;
}

int64_t lowbit_model_input_size(const lowbit_model* model) {
  return model ? model->model.input_size() : 0;
}

int64_t lowbit_model_output_size(const lowbit_model* model) {
  return model ? model->model.output_size() : 0;
}

int lowbit_model_run(const lowbit_model* model, const float* inputs, int64_t batch, float* outputs,
                     int threads, char* error, size_t error_size) {
  if (!model) {
    report(error, error_size, "model is NULL");
    return 1;
  }
  try {
    model->model.run(inputs, batch, outputs, threads);
    report(error, error_size, "");
    return 0;
  } catch (const std::exception& e) {
    report(error, error_size, e.what());
    return 1;
  }
}

void lowbit_model_destroy(lowbit_model* model) { delete model; }

}  // extern "C"
