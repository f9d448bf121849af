/* A bump allocator for activations: sized once by a measuring pass, allocated once, never
 * allocates inside a training step (ARCHITECTURE.md principle 4). */
#ifndef MEGATRON_KERNELS_ARENA_H
#define MEGATRON_KERNELS_ARENA_H

#include <stddef.h>

#include "kernels/tensor.h"

struct arena {
    enum device device;
    char *base;     /* NULL while measuring */
    size_t capacity;
    size_t used;
};

/* A measuring arena hands out tensors with data == NULL and only counts bytes. */
void arena_init_measure(struct arena *a, enum device dev);
/* Allocates `bytes` (a measuring arena's `used`) on the device; tensors handed out next are real. */
void arena_init_alloc(struct arena *a, enum device dev, size_t bytes);
void arena_free(struct arena *a);

/* 2-D tensor of the arena's device, 64-byte aligned. */
struct tensor arena_tensor(struct arena *a, enum dtype dt, int64_t rows, int64_t cols);

/* Device memory in one place: host memory for DEV_CPU, device memory for DEV_CUDA (zeroed). */
void *device_alloc(enum device dev, size_t bytes);
void device_free(enum device dev, void *p);
/* Host -> device (copy_to), device -> host (copy_from), and zeroing, for either device. copy_to
 * returns once the data has arrived; copy_to_queued only queues the copy in the device's order
 * (the host does not wait for the GPU), src reusable at once either way. */
void device_copy_to(enum device dev, void *dst, const void *src, size_t bytes);
void device_copy_to_queued(enum device dev, void *dst, const void *src, size_t bytes);
void device_copy_from(enum device dev, void *dst, const void *src, size_t bytes);
void device_zero(enum device dev, void *p, size_t bytes);

#endif
