/* Activation arena and device memory allocation. */
#include "kernels/arena.h"

#include <stdlib.h>
#include <string.h>

#include "util/error.h"

#define ARENA_ALIGN 64

void *device_alloc(enum device dev, size_t bytes)
{
    if (dev != DEV_CPU) BUG("device_alloc: no CUDA allocator in this build yet");
    size_t rounded = (bytes + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    void *p = aligned_alloc(ARENA_ALIGN, rounded ? rounded : ARENA_ALIGN);
    if (!p) die_user("out of memory: allocating %zu bytes failed; use a smaller model or micro batch", bytes);
    memset(p, 0, rounded);
    return p;
}

void device_free(enum device dev, void *p)
{
    if (dev != DEV_CPU) BUG("device_free: no CUDA allocator in this build yet");
    free(p);
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
