/* The inference engine's C API, for embedding (docs/engine.md). Every function that can fail
 * returns NULL or a non-zero code and writes a NUL-terminated message to `error` (when not NULL,
 * truncated to error_size bytes). A model may be run from several threads at once. */
#ifndef LOWBIT_ENGINE_C_H
#define LOWBIT_ENGINE_C_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lowbit_model lowbit_model;

/* Loads an ONNX model from a file or from memory (the bytes are copied). */
lowbit_model* lowbit_model_from_file(const char* path, char* error, size_t error_size);
lowbit_model* lowbit_model_from_buffer(const void* data, size_t size, char* error,
                                       size_t error_size);

/* The per-image input and output shapes (without the batch dimension): each writes up to
 * `capacity` dimensions to `dims` (which may be NULL to ask the rank) and returns the rank.
 * lowbit_model_output_dims is output 0's. */
size_t lowbit_model_input_dims(const lowbit_model* model, int64_t* dims, size_t capacity);
size_t lowbit_model_output_dims(const lowbit_model* model, int64_t* dims, size_t capacity);
/* Floats per image of the input and of output 0 (the products of those shapes). */
int64_t lowbit_model_input_size(const lowbit_model* model);
int64_t lowbit_model_output_size(const lowbit_model* model);
/* Models of several outputs: their number, and output k's shape (as above), floats per image and
 * name (valid while the model lives); 0, 0 and NULL for a k past the outputs. */
size_t lowbit_model_output_count(const lowbit_model* model);
size_t lowbit_model_output_dims_at(const lowbit_model* model, size_t k, int64_t* dims,
                                   size_t capacity);
int64_t lowbit_model_output_size_at(const lowbit_model* model, size_t k);
const char* lowbit_model_output_name(const lowbit_model* model, size_t k);
/* The input's per-image shape {channels, height, width} of an image model; {0, 0, 0} where the
 * input is not [batch, channels, height, width] (lowbit_model_input_dims gives any rank). */
void lowbit_model_input_shape(const lowbit_model* model, int64_t shape[3]);

/* Runs `batch` images (batch x input_size floats) into `outputs` (batch x output_size floats)
 * with up to `threads` threads: models of one output. Returns 0, or 1 with a message. */
int lowbit_model_run(const lowbit_model* model, const float* inputs, int64_t batch, float* outputs,
                     int threads, char* error, size_t error_size);
/* The same into one buffer per output: outputs[k] holds batch x output_size_at(k) floats;
 * `count` must be the model's output count. */
int lowbit_model_run_outputs(const lowbit_model* model, const float* inputs, int64_t batch,
                             float* const* outputs, size_t count, int threads, char* error,
                             size_t error_size);

void lowbit_model_destroy(lowbit_model* model);

#ifdef __cplusplus
}
#endif

#endif /* LOWBIT_ENGINE_C_H */
