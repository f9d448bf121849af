/* Activation arena and device memory allocation. */
#include "kernels/arena.h"

#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#ifdef MEGATRON_CUDA
#include "kernels/cuda/cuda_ops.h"
#endif

#define ARENA_ALIGN 64

void *device_alloc(enum device dev, size_t bytes)
{
    if (dev == DEV_CUDA) {
#ifdef MEGATRON_CUDA
        void *d = cuda_alloc(bytes ? bytes : ARENA_ALIGN);
        cuda_memset_zero(d, bytes ? bytes : ARENA_ALIGN);
        return d;
#else
        BUG("device_alloc: this build has no CUDA backend");
#endif
    }
    size_t rounded = (bytes + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    void *p = aligned_alloc(ARENA_ALIGN, rounded ? rounded : ARENA_ALIGN);
    if (!p) die_user("out of memory: allocating %zu bytes failed; use a smaller model or micro batch", bytes);
    memset(p, 0, rounded);
    return p;
}

void device_free(enum device dev, void *p)
{
    if (dev == DEV_CUDA) {
#ifdef MEGATRON_CUDA
        cuda_free(p);
        return;
#else
        BUG("device_free: this build has no CUDA backend");
#endif
    }
    free(p);
}

void device_copy_to(enum device dev, void *dst, const void *src, size_t bytes)
{
    if (dev == DEV_CPU) {
        memcpy(dst, src, bytes);
        return;
    }
#ifdef MEGATRON_CUDA
    cuda_memcpy_h2d(dst, src, bytes);
#else
    BUG("device_copy_to: this build has no CUDA backend");
#endif
}

void device_copy_to_queued(enum device dev, void *dst, const void *src, size_t bytes)
{
    if (dev == DEV_CPU) {
        memcpy(dst, src, bytes);
        return;
    }
#ifdef MEGATRON_CUDA
    cuda_memcpy_h2d_staged(dst, src, bytes);
#else
    BUG("device_copy_to_queued: this build has no CUDA backend");
#endif
}

void device_copy_from(enum device dev, void *dst, const void *src, size_t bytes)
{
    if (dev == DEV_CPU) {
        memcpy(dst, src, bytes);
        return;
    }
#ifdef MEGATRON_CUDA
    cuda_memcpy_d2h(dst, src, bytes);
#else
    BUG("device_copy_from: this build has no CUDA backend");
#endif
}

void device_zero(enum device dev, void *p, size_t bytes)
{
    if (dev == DEV_CPU) {
        memset(p, 0, bytes);
        return;
    }
#ifdef MEGATRON_CUDA
    cuda_memset_zero(p, bytes);
#else
    BUG("device_zero: this build has no CUDA backend");
#endif
}

void arena_init_measure(struct arena *a, enum device dev)
{
    memset(a, 0, sizeof *a);
    a->device = dev;
}

void arena_init_alloc(struct arena *a, enum device dev, size_t bytes)
{
    memset(a, 0, sizeof *a);
    a->device = dev;
    a->capacity = bytes;
    a->base = device_alloc(dev, bytes);
}

void arena_free(struct arena *a)
{
    if (a->base) device_free(a->device, a->base);
    memset(a, 0, sizeof *a);
}

struct tensor arena_tensor(struct arena *a, enum dtype dt, int64_t rows, int64_t cols)
{
    size_t bytes = (size_t)(rows * cols) * dtype_size(dt);
    size_t start = (a->used + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    void *data = NULL;
    if (a->base) {
        if (start + bytes > a->capacity) BUG("arena overflow: %zu + %zu > %zu", start, bytes, a->capacity);
        data = a->base + start;
    }
    a->used = start + bytes;
    return tensor_2d(data, dt, a->device, rows, cols);
}
