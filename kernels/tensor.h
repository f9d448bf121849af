/* Tensors: a typed, shaped view of memory on one device. A tensor never owns its memory; flat
 * buffers and the activation arena do (ARCHITECTURE.md principle 4). Also the exact bf16/fp16
 * conversions (round-to-nearest-even) that the CPU backend uses to store reduced precision. */
#ifndef MEGATRON_KERNELS_TENSOR_H
#define MEGATRON_KERNELS_TENSOR_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum dtype { DT_F32, DT_BF16, DT_F16, DT_I32, DT_I64, DT_U16, DT_U8 };
enum device { DEV_CPU, DEV_CUDA };

#define TENSOR_MAX_DIMS 4

struct tensor {
    void *data; /* NULL means "absent" (an optional argument such as a missing bias) */
    enum dtype dtype;
    enum device device;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
};

size_t dtype_size(enum dtype dt);
const char *dtype_name(enum dtype dt);

/* Builds a view; unused trailing dims are 0. */
struct tensor tensor_make(void *data, enum dtype dt, enum device dev, int ndim, const int64_t *shape);
struct tensor tensor_1d(void *data, enum dtype dt, enum device dev, int64_t d0);
struct tensor tensor_2d(void *data, enum dtype dt, enum device dev, int64_t d0, int64_t d1);
static inline struct tensor tensor_none(void) { struct tensor t; memset(&t, 0, sizeof t); return t; }
static inline bool tensor_present(struct tensor t) { return t.data != NULL; }
int64_t tensor_numel(struct tensor t);
size_t tensor_bytes(struct tensor t);

/* bf16: the upper 16 bits of an fp32, rounded to nearest even; NaN stays NaN. */
static inline uint16_t f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* IEEE half precision, round to nearest even, with subnormals, overflow to infinity. */
uint16_t f32_to_f16(float f);
float f16_to_f32(uint16_t h);

/* Rounds every element of x[n] to the nearest value representable in dt (DT_BF16 or DT_F16),
 * keeping it in fp32: how the CPU backend stores reduced precision while computing in fp32. */
void round_to_dtype(float *x, int64_t n, enum dtype dt);

#endif
