/* The second stage of the CUDA backend's deterministic column sums (cuda_common.h): partial rows,
 * one per chunk of rows, added into the fp32 gradient in double. A block takes 32 columns and 32
 * chunk lanes; lane l adds chunks l, l + 32, ... in order, then one thread adds the 32 lanes in
 * order. The order depends on the number of chunks and columns only, never on the GPU or the run.
 * Many lanes per column keep each thread's chain of loads short: one thread per column would wait
 * on hundreds of dependent round trips to memory. */
#include "kernels/cuda/cuda_common.h"

enum { REDUCE_COLS = 32, REDUCE_LANES = 32 };

/* blockIdx.y picks the sum: partials[k] into dst0, dst1 or dst2 (k = 0, 1, 2). */
static __global__ void __launch_bounds__(REDUCE_COLS * REDUCE_LANES)
    colsum_reduce_kernel(float *dst0, float *dst1, float *dst2, const float *partials, int chunks,
                         int64_t C)
{
    __shared__ double part[REDUCE_LANES][REDUCE_COLS + 1];
    const int tx = threadIdx.x, ty = threadIdx.y, k = blockIdx.y;
    float *dst = k == 0 ? dst0 : k == 1 ? dst1 : dst2;
    if (!dst) return; /* the whole block: no barrier is left waiting */
    const int64_t c = (int64_t)blockIdx.x * REDUCE_COLS + tx;
    const float *p = partials + (int64_t)k * chunks * C;
    double s = 0.0;
    if (c < C) {
#pragma unroll 8
        for (int j = ty; j < chunks; j += REDUCE_LANES) s += (double)p[(int64_t)j * C + c];
    }
    part[ty][tx] = s;
    __syncthreads();
    if (ty == 0 && c < C) {
        double t = part[0][tx];
        for (int l = 1; l < REDUCE_LANES; l++) t += part[l][tx];
        dst[c] += (float)t;
    }
}

void cuda_colsum_reduce3(float *dst0, float *dst1, float *dst2, const float *partials,
                         int chunks, int64_t C)
{
    if (C == 0 || (!dst0 && !dst1 && !dst2)) return;
    CHECK((C + REDUCE_COLS - 1) / REDUCE_COLS <= 0x7fffffff);
    dim3 grid((unsigned)((C + REDUCE_COLS - 1) / REDUCE_COLS), dst2 ? 3 : dst1 ? 2 : 1);
    dim3 block(REDUCE_COLS, REDUCE_LANES);
    colsum_reduce_kernel<<<grid, block, 0, cuda_ctx()->stream>>>(dst0, dst1, dst2, partials,
                                                                 chunks, C);
    CUDA_CHECK_LAUNCH("colsum_reduce_kernel");
}

void cuda_colsum_reduce(float *dst0, float *dst1, const float *partials, int chunks, int64_t C)
{
    cuda_colsum_reduce3(dst0, dst1, NULL, partials, chunks, C);
}
