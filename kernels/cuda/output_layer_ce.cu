/* The output layer and its cross-entropy in one GEMM (ops.h: op_output_layer_cross_entropy), for a
 * training step with the whole vocabulary on this rank, bf16, on Hopper: the losses and the
 * logits' gradient without the logits being written and read back by a pass of their own (6.6 GB
 * each way at GPT-2 124M's micro batch of 64).
 *
 * First each row n takes a reference ref[n] = z[n, t] + CE_REF_MARGIN from its target t's logit
 * (one dot product a row, rounded to bf16 as the GEMM's logits are). The GEMM of our own
 * (hopper_gemm.cu, OUTS 7) then writes probs[n, v] = exp(z[n, v] - ref[n]), z the product rounded
 * to bf16 (the logits of the unfused path), and per column tile each row's fp32 sum of those
 * exponentials. A last pass a row adds its tiles' sums in order into S[n] and writes
 *   losses[n] = ref[n] - z[n, t] + log S[n]
 *   probs[n, t] -= S[n],  row_scale[n] = dlosses[n] / S[n]
 * so the logits' gradient (softmax - onehot) * dlosses is row_scale[n] * probs[n, :] (probs as
 * rounded): the backward's GEMMs read probs, the input gradient's rows are scaled as the final
 * norm's backward reads them and the weight gradient's GEMM reads row_scale * x
 * (models/lm_head.c).
 *
 * Why the target's logit: the exponentials must stay inside fp32's range (bf16's is the same),
 * and the target's logit is the token's loss below the row's log-sum-exp. With the margin none
 * overflows unless a token's loss passes ~128 (e^88.7 is fp32's largest), and an exponential is
 * flushed to zero only below e^-47 times the target's own (e^-87.3, fp32's smallest normal): a
 * softmax value under 4e-21, where the unfused path writes that value times dlosses. Where a row's
 * S is not finite and positive (a larger loss, a NaN, a target outside the vocabulary) the last
 * pass sets a flag instead, and two kernels launched in every step after it, which return at once
 * unless it is set, redo the whole output layer the unfused way: the logits GEMM into probs and
 * loss.cu's cross-entropy over them (row_scale 1). The step never waits on the flag (no host
 * synchronisation, and the whole sequence is captured in the step's CUDA graph). */
#include <float.h>

#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_ops.h"

enum { REF_WARPS = 8 }; /* rows per block of the per-row kernels (a warp each) */

/* ref[n] - z[n, t]: see above */
#define CE_REF_MARGIN 40.0f

static __global__ void __launch_bounds__(REF_WARPS * 32)
    ce_reference_kernel(float *ref, float *target_logit, int *flag, const bf16 *x, const bf16 *w,
                        const int32_t *targets, int64_t N, int64_t K, int64_t V)
{
    if (blockIdx.x == 0 && threadIdx.x == 0) *flag = 0; /* before the GEMM: no fallback yet */
    const int64_t n = (int64_t)blockIdx.x * REF_WARPS + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (n >= N) return;
    const int32_t t = targets[n];
    if (t < 0 || t >= V) { /* the GEMM's row becomes NaN, and the fallback gives the NaN loss */
        if (lane == 0) ref[n] = target_logit[n] = __int_as_float(0x7fc00000);
        return;
    }
    const uint4 *xr = reinterpret_cast<const uint4 *>(x + n * K);
    const uint4 *wr = reinterpret_cast<const uint4 *>(w + (int64_t)t * K);
    float acc = 0.0f;
    for (int64_t p = lane; p < K / 8; p += 32) {
        float a[8], b[8];
        lp8_unpack<bf16>(xr[p], a);
        lp8_unpack<bf16>(wr[p], b);
#pragma unroll
        for (int i = 0; i < 8; i++) acc = fmaf(a[i], b[i], acc);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (lane == 0) {
        const float z = __bfloat162float(__float2bfloat16_rn(acc));
        target_logit[n] = z;
        ref[n] = z + CE_REF_MARGIN;
    }
}

static __global__ void __launch_bounds__(REF_WARPS * 32)
    ce_finalize_kernel(float *losses, float *row_scale, bf16 *probs, int *flag,
                       const float *tile_sums, int tiles, const float *ref,
                       const float *target_logit, const int32_t *targets, const float *dlosses,
                       int64_t N, int64_t V)
{
    const int64_t n = (int64_t)blockIdx.x * REF_WARPS + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (n >= N) return;
    const float *sums = tile_sums + n * tiles;
    float s = 0.0f;
    for (int t = lane; t < tiles; t += 32) s += sums[t];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane != 0) return; /* lane 0's order of the sum, the same every run */
    if (!(s > 0.0f && s <= FLT_MAX)) { /* out of range, or NaN: the fallback redoes every row */
        *flag = 1;
        return;
    }
    losses[n] = (ref[n] - target_logit[n]) + logf(s);
    row_scale[n] = dlosses[n] / s;
    bf16 *pt = probs + n * V + targets[n];
    *pt = __float2bfloat16_rn(__bfloat162float(*pt) - s);
}

static unsigned row_blocks(int64_t N)
{
    const int64_t b = (N + REF_WARPS - 1) / REF_WARPS;
    CHECK(b <= 0x7fffffff);
    return (unsigned)b;
}

/* The scratch of one call: ref, the target logits, the flag, the tiles' sums (16-byte aligned). */
struct ce_scratch {
    float *ref, *target_logit, *tile_sums;
    int *flag;
};

static struct ce_scratch ce_scratch_of(int64_t N, int tiles)
{
    const size_t rows = ((size_t)N + 3) / 4 * 4; /* floats, a multiple of 16 bytes */
    char *p = (char *)cuda_scratch((2 * rows + 4 + (size_t)N * tiles) * sizeof(float));
    struct ce_scratch s;
    s.ref = (float *)p;
    s.target_logit = s.ref + rows;
    s.flag = (int *)(s.target_logit + rows);
    s.tile_sums = (float *)(s.flag + 4);
    return s;
}

bool cuda_output_layer_cross_entropy(struct tensor losses, struct tensor probs,
                                     struct tensor row_scale, struct tensor x, struct tensor w,
                                     struct tensor targets, struct tensor dlosses)
{
    const char *op = "cuda_output_layer_cross_entropy";
    cuda_need(op, "losses", losses, DT_F32);
    cuda_need(op, "row_scale", row_scale, DT_F32);
    cuda_need(op, "targets", targets, DT_I32);
    cuda_need(op, "dlosses", dlosses, DT_F32);
    const int64_t N = x.shape[0], K = x.shape[1], V = w.shape[0];
    const bool fuse = cuda_ctx()->fused_ce && N > 0 && probs.dtype == DT_BF16 &&
                      x.dtype == DT_BF16 && w.dtype == DT_BF16 &&
                      hopper_gemm_fits(probs.data, NULL, x.data, w.data, NULL, N, K, V) &&
                      cuda_cross_entropy_row_fits(V);
    if (!fuse) { /* the logits, then the cross-entropy over them in place */
        cuda_linear_forward(probs, x, w, tensor_none());
        cuda_cross_entropy_forward_backward(losses, probs, probs, targets, dlosses);
        return false;
    }
    const int tiles = hopper_output_layer_ce_tiles(V);
    const struct ce_scratch s = ce_scratch_of(N, tiles);
    cudaStream_t st = cuda_ctx()->stream;
    const int32_t *tg = (const int32_t *)targets.data;
    const bf16 *xp = (const bf16 *)x.data, *wp = (const bf16 *)w.data;
    bf16 *pp = (bf16 *)probs.data;
    ce_reference_kernel<<<row_blocks(N), REF_WARPS * 32, 0, st>>>(s.ref, s.target_logit, s.flag,
                                                                  xp, wp, tg, N, K, V);
    CUDA_CHECK_LAUNCH("ce_reference_kernel");
    hopper_output_layer_exp(pp, xp, wp, s.ref, s.tile_sums, N, K, V);
    ce_finalize_kernel<<<row_blocks(N), REF_WARPS * 32, 0, st>>>(
        (float *)losses.data, (float *)row_scale.data, pp, s.flag, s.tile_sums, tiles, s.ref,
        s.target_logit, tg, (const float *)dlosses.data, N, V);
    CUDA_CHECK_LAUNCH("ce_finalize_kernel");
    /* the fallback, returning at once unless the flag is set */
    hopper_output_layer_logits_if(s.flag, pp, xp, wp, N, K, V);
    cuda_cross_entropy_forward_backward_if(s.flag, (float *)losses.data,
                                           (float *)row_scale.data, pp, tg,
                                           (const float *)dlosses.data, N, V);
    return true;
}
