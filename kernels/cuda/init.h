/* Megatron's weight initialisation on the GPU: the same counter-based normal draws as the CPU
 * (kernels/rng.h), element e of a parameter's local shard keyed by its index in the full tensor,
 * written straight into the device's fp32 weights (a 1.5B-parameter model initialises in
 * milliseconds instead of a minute of host time). Callable from C. */
#ifndef MEGATRON_KERNELS_CUDA_INIT_H
#define MEGATRON_KERNELS_CUDA_INIT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* How a local shard's elements map to the full tensor (models/gpt.h's gpt_param_full_index):
 * local element (i, j) of a [rows, cols] shard is full element (i', j') of a [.., full_cols]
 * tensor, where the index along shard_dim (0 rows, 1 columns, -1 none) moves by the piece it
 * falls in. */
struct cuda_shard_index {
    int64_t cols, full_cols;
    int shard_dim, num_pieces;
    int64_t local_start[2], full_start[2], length[2];
};

/* w[e] = (float)(std x rng_normal(seed, stream, full index of e)) for e < numel. */
void cuda_init_normal(float *w, int64_t numel, double std, uint64_t seed, uint64_t stream,
                      const struct cuda_shard_index *index);
/* w[e] = value for e < numel. */
void cuda_fill_f32(float *w, int64_t numel, float value);

#ifdef __cplusplus
}
#endif

#endif
