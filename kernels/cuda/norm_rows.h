/* What the LayerNorm/RMSNorm kernels (norm.cu) and the forward fused with the bias-dropout-add
 * (norm_fused.cu) share: the widest row a lane keeps in registers, rstd as the CPU rounds it, and
 * the test for rows that go as whole 16-byte vectors. */
#ifndef MEGATRON_KERNELS_CUDA_NORM_ROWS_H
#define MEGATRON_KERNELS_CUDA_NORM_ROWS_H

#include "kernels/cuda/cuda_common.h"

/* 8-wide pieces a lane keeps in the one-pass kernels: rows of C <= 2048 */
enum { NORM_MAX_PIECES = 8 };
static_assert(NORM_MAX_PIECES == 8, "the one-pass launches instantiate P = 1..8");

/* 1 / sqrt(var + eps) rounded once from double, as the CPU computes it. */
__device__ __forceinline__ float norm_rstd(float mean_sq, float eps)
{
    return (float)(1.0 / sqrt((double)mean_sq + (double)eps));
}

/* Rows of C elements that four tensors hold as whole 16-byte vectors. */
static inline bool rows_vectorizable(int64_t C, const void *a, const void *b, const void *c,
                                     const void *d)
{
    return C % 8 == 0 && cuda_aligned16(a) && cuda_aligned16(b) && cuda_aligned16(c) &&
           cuda_aligned16(d);
}

#endif
