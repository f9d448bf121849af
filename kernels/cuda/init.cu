/* Weight initialisation on the GPU: see init.h. */
#include "kernels/cuda/init.h"

#include "kernels/cuda/cuda_common.h"
#include "kernels/rng.h"

static __device__ int64_t full_index(const struct cuda_shard_index &x, int64_t e)
{
    int64_t i = e / x.cols, j = e % x.cols;
    if (x.shard_dim >= 0) {
        int64_t idx = x.shard_dim == 0 ? i : j;
        for (int k = 0; k < x.num_pieces; k++)
            if (idx >= x.local_start[k] && idx < x.local_start[k] + x.length[k]) {
                idx = idx - x.local_start[k] + x.full_start[k];
                break;
            }
        if (x.shard_dim == 0) i = idx;
        else j = idx;
    }
    return i * x.full_cols + j;
}

static __global__ void init_normal_kernel(float *w, int64_t n, double sd, uint64_t seed, uint64_t stream,
                                          struct cuda_shard_index x)
{
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x)
        w[e] = (float)(sd * rng_normal(seed, stream, (uint64_t)full_index(x, e)));
}

static __global__ void fill_kernel(float *w, int64_t n, float v)
{
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x)
        w[e] = v;
}

extern "C" void cuda_init_normal(float *w, int64_t numel, double std, uint64_t seed, uint64_t stream,
                                 const struct cuda_shard_index *index)
{
    if (numel <= 0) return;
    struct cuda_context *ctx = cuda_ctx();
    init_normal_kernel<<<cuda_blocks(numel, 256), 256, 0, ctx->stream>>>(w, numel, std, seed, stream, *index);
    CUDA_CHECK_LAUNCH("init_normal_kernel");
}

extern "C" void cuda_fill_f32(float *w, int64_t numel, float value)
{
    if (numel <= 0) return;
    struct cuda_context *ctx = cuda_ctx();
    fill_kernel<<<cuda_blocks(numel, 256), 256, 0, ctx->stream>>>(w, numel, value);
    CUDA_CHECK_LAUNCH("fill_kernel");
}
