// The engine's C API over lowbit::engine::Model; no exception crosses it.
#include <cstring>
#include <exception>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

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

// Runs f(model), turning its exceptions into 1 and the message.
template <class F>
int guarded(const lowbit_model* model, char* error, size_t error_size, F&& f) {
  if (!model) {
    report(error, error_size, "model is NULL");
    return 1;
  }
  try {
    f(model->model);
    report(error, error_size, "");
    return 0;
  } catch (const std::exception& e) {
    report(error, error_size, e.what());
    return 1;
  }
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

size_t lowbit_model_output_count(const lowbit_model* model) {
  return model ? model->model.output_count() : 0;
}

size_t lowbit_model_output_dims_at(const lowbit_model* model, size_t k, int64_t* dims,
                                   size_t capacity) {
  if (!model || k >= model->model.output_count()) return 0;
  return copy_dims(model->model.output_shape(k), dims, capacity);
}

int64_t lowbit_model_output_size_at(const lowbit_model* model, size_t k) {
  return model && k < model->model.output_count() ? model->model.output_size(k) : 0;
}

const char* lowbit_model_output_name(const lowbit_model* model, size_t k) {
  return model && k < model->model.output_count() ? model->model.output_name(k).c_str() : nullptr;
}

int lowbit_model_run(const lowbit_model* model, const float* inputs, int64_t batch, float* outputs,
                     int threads, char* error, size_t error_size) {
  return guarded(model, error, error_size,
                 [&](const lowbit::engine::Model& m) { m.run(inputs, batch, outputs, threads); });
}

int lowbit_model_run_outputs(const lowbit_model* model, const float* inputs, int64_t batch,
                             float* const* outputs, size_t count, int threads, char* error,
                             size_t error_size) {
  return guarded(model, error, error_size, [&](const lowbit::engine::Model& m) {
    if (!outputs && count > 0) throw std::invalid_argument("run: outputs is NULL");
    m.run(inputs, batch, std::vector<float*>(outputs, outputs + count), threads);
  });
}

void lowbit_model_destroy(lowbit_model* model) { delete model; }

}  // extern "C"
