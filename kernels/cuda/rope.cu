/* CUDA rotary position embedding (Megatron's rotate-half form, ops.h) in place on the q and k
 * heads of the fused 16-bit qkv. One block per row: its threads first compute the row's cos/sin
 * table in double from the fp32 angle, as kernels/cpu/attention.c does, then rotate every pair of
 * every q and k head with the CPU's fp32 expressions, each product and sum rounded on its own. */
#include "kernels/cuda/cuda_common.h"

enum { ROPE_THREADS = 128 };

template <class T>
static __global__ void rope_kernel(T *qkv, const int32_t *pos, int groups, int per, int d,
                                   int half, int rotary_dim, float base, float sign, int64_t W)
{
    extern __shared__ float table[]; /* cos[half], then sin[half] */
    float *cs = table, *sn = table + half;
    int64_t n = blockIdx.x;
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        /* inv_freq[i] = base^(-2i/rotary_dim), rounded to fp32 as Megatron holds it */
        float inv_freq = (float)(1.0 / pow((double)base, 2.0 * i / rotary_dim));
        float angle = (float)pos[n] * inv_freq;
        cs[i] = (float)cos((double)angle);
        sn[i] = (float)sin((double)angle);
    }
    __syncthreads();
    T *row = qkv + n * W;
    int rotated = groups * (per + 1); /* each group's query heads, then its key head */
    for (int idx = threadIdx.x; idx < rotated * half; idx += blockDim.x) {
        int hh = idx / half, i = idx % half;
        int j = hh / (per + 1), h = hh % (per + 1);
        T *x = row + ((int64_t)j * (per + 2) + h) * d;
        float a = lp_to_f32(x[i]), b = lp_to_f32(x[i + half]), s = sign * sn[i];
        x[i] = lp_from_f32<T>(__fsub_rn(__fmul_rn(a, cs[i]), __fmul_rn(b, s)));
        x[i + half] = lp_from_f32<T>(__fadd_rn(__fmul_rn(b, cs[i]), __fmul_rn(a, s)));
    }
}

static void rope_apply(const char *op, struct tensor qkv, struct tensor positions,
                       struct attention_shape s, int rotary_dim, float base, float sign)
{
    enum dtype dt = cuda_need_lp(op, "qkv", qkv);
    cuda_need(op, "positions", positions, DT_I32);
    int half = rotary_dim / 2, per = s.heads / s.groups;
    int64_t N = qkv.shape[0], W = (int64_t)s.groups * (per + 2) * s.head_dim;
    if (half == 0 || N == 0) return;
    CHECK(N <= 0x7fffffff && half <= s.head_dim / 2);
    CUDA_LP_DISPATCH(dt, rope_kernel<T><<<(unsigned)N, ROPE_THREADS, 2 * half * sizeof(float), cuda_ctx()->stream>>>(
                             (T *)qkv.data, (const int32_t *)positions.data, s.groups, per, s.head_dim,
                             half, rotary_dim, base, sign, W));
    CUDA_CHECK_LAUNCH("rope_kernel");
}

void cuda_rope_forward(struct tensor qkv, struct tensor positions, struct attention_shape s,
                       int rotary_dim, float base)
{
    rope_apply("cuda_rope_forward", qkv, positions, s, rotary_dim, base, 1.0f);
}

/* The backward is the rotation by -angle (the transpose), applied in place to dqkv. */
void cuda_rope_backward(struct tensor dqkv, struct tensor positions, struct attention_shape s,
                        int rotary_dim, float base)
{
    rope_apply("cuda_rope_backward", dqkv, positions, s, rotary_dim, base, -1.0f);
}
