/* classify: runs an ONNX model on lowbit's inference engine (C API) on one image.
 *
 *   classify MODEL.onnx IMAGE.pgm|IMAGE.ppm [THREADS]
 *
 * The image is a binary PGM (grayscale, P5) or PPM (RGB, P6) of 8-bit samples, of the model's input
 * size; it is given to the model as floats 0..255 in [1, channels, height, width] order, which is
 * what lowbit's exports take (their graph begins with the data set's normalisation). Prints the
 * top class, then every output value. Exit status 0, or 1 with a message naming what failed. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lowbit/engine_c.h"
#include "lowbit/version.h"

/* Reads one PNM header field (a decimal number), skipping white space and # comments. */
static int read_field(FILE* f, long* value) {
  int c = fgetc(f);
  for (;;) {
    while (c == ' ' || c == '\t' || c == '\n' || c == '\r') c = fgetc(f);
    if (c != '#') break;
    while (c != '\n' && c != EOF) c = fgetc(f);
  }
  if (c < '0' || c > '9') return 0;
  long v = 0;
  while (c >= '0' && c <= '9') {
    if (v > 1000000) return 0;
    v = v * 10 + (c - '0');
    c = fgetc(f);
  }
  *value = v;
  return c == ' ' || c == '\t' || c == '\n' || c == '\r'; /* one white space ends the header */
}

/* The image as planar floats, of the model's shape {channels, height, width}; NULL with a message
 * on error (checked before any allocation). */
static float* read_image(const char* path, const int64_t shape[3]) {
  FILE* f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "classify: cannot open image %s: %s\n", path, strerror(errno));
    return NULL;
  }
  char magic[2] = {0, 0};
  long maxval = 0;
  float* image = NULL;
  unsigned char* bytes = NULL;
  if (fread(magic, 1, 2, f) != 2 || magic[0] != 'P' || (magic[1] != '5' && magic[1] != '6')) {
    fprintf(stderr, "classify: %s is not a binary PGM (P5) or PPM (P6) image\n", path);
    goto done;
  }
  const long channels = magic[1] == '5' ? 1 : 3;
  long width = 0, height = 0;
  if (!read_field(f, &width) || !read_field(f, &height) || !read_field(f, &maxval) || width <= 0 ||
      height <= 0 || maxval != 255) {
    fprintf(stderr, "classify: %s: bad header (width, height, and a maximum value of 255 wanted)\n",
            path);
    goto done;
  }
  if (shape[0] != channels || shape[1] != height || shape[2] != width) {
    fprintf(stderr,
            "classify: %s is %ldx%ld with %ld channel(s); the model takes %lldx%lld with %lld\n",
            path, width, height, channels, (long long)shape[2], (long long)shape[1],
            (long long)shape[0]);
    goto done;
  }
  /* The model's input size, which the engine has checked: no overflow below. */
  const size_t pixels = (size_t)width * (size_t)height;
  const size_t count = pixels * (size_t)channels;
  bytes = malloc(count);
  image = malloc(count * sizeof(float));
  if (!bytes || !image) {
    fprintf(stderr, "classify: %s: out of memory\n", path);
    free(image);
    image = NULL;
    goto done;
  }
  if (fread(bytes, 1, count, f) != count) {
    fprintf(stderr, "classify: %s: truncated (%zu bytes of pixels wanted)\n", path, count);
    free(image);
    image = NULL;
    goto done;
  }
  /* Interleaved RGB -> planar [channel][y][x]. */
  for (size_t p = 0; p < pixels; ++p)
    for (long c = 0; c < channels; ++c) image[(size_t)c * pixels + p] = bytes[p * channels + c];
done:
  free(bytes);
  fclose(f);
  return image;
}

int main(int argc, char** argv) {
  if (argc < 3 || argc > 4) {
    fprintf(stderr, "usage: %s MODEL.onnx IMAGE.pgm|IMAGE.ppm [THREADS]   (lowbit %s)\n", argv[0],
            LOWBIT_VERSION);
    return 1;
  }
  int threads = 1;
  if (argc == 4) {
    char* end = NULL;
    const long t = strtol(argv[3], &end, 10);
    if (*argv[3] == '\0' || *end != '\0' || t < 1 || t > 1024) {
      fprintf(stderr, "classify: THREADS must be a whole number in 1..1024, got '%s'\n", argv[3]);
      return 1;
    }
    threads = (int)t;
  }
  char error[512];
  lowbit_model* model = lowbit_model_from_file(argv[1], error, sizeof error);
  if (!model) {
    fprintf(stderr, "classify: %s\n", error);
    return 1;
  }
  int status = 1;
  float* image = NULL;
  float* output = NULL;
  int64_t shape[3];
  lowbit_model_input_shape(model, shape);
  if (shape[0] != 1 && shape[0] != 3) {
    fprintf(stderr, "classify: %s does not take [batch, 1 or 3, height, width] images\n", argv[1]);
    goto done;
  }
  image = read_image(argv[2], shape);
  if (!image) goto done;
  const int64_t classes = lowbit_model_output_size(model);
  output = malloc((size_t)classes * sizeof(float));
  if (!output) {
    fprintf(stderr, "classify: out of memory\n");
    goto done;
  }
  if (lowbit_model_run(model, image, 1, output, threads, error, sizeof error) != 0) {
    fprintf(stderr, "classify: %s\n", error);
    goto done;
  }
  int64_t best = 0;
  for (int64_t k = 1; k < classes; ++k)
    if (output[k] > output[best]) best = k;
  printf("class %lld\n", (long long)best);
  for (int64_t k = 0; k < classes; ++k) printf("%lld %.9g\n", (long long)k, output[k]);
  status = 0;
done:
  free(output);
  free(image);
  lowbit_model_destroy(model);
  return status;
}
