/* Timings of the CUDA backend's heavy ops on random bf16 data: the linear layer (cuBLASLt) at a
 * square 8192^3 GEMM and at GPT-2 124M's shapes, and cuDNN attention forward + backward.
 * Each figure is the median of REPS timed runs after WARMUP runs, the stream synchronized around
 * each run; FLOPs count 2 per multiply-add, causal attention at half the square (the work done).
 * Usage: bench_ops [rows]   (rows of the GPT-2 GEMMs, default 65536 = micro batch 64 x 1024) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/rng.h"
#include "util/error.h"

enum { WARMUP = 3, REPS = 15 };

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Device bf16 buffer of n normal values times scale (never zeros: they run faster). A block of
 * 2^20 values is drawn on the host and repeated: drawing gigabytes there would take minutes. */
static void *dev_randn(int64_t n, float scale, uint64_t stream)
{
    const int64_t block = n < (1 << 20) ? n : (1 << 20);
    uint16_t *h = xmalloc((size_t)block * 2);
    for (int64_t i = 0; i < block; i++)
        h[i] = f32_to_bf16((float)rng_normal(7, stream, (uint64_t)i) * scale);
    char *d = cuda_alloc((size_t)n * 2);
    for (int64_t at = 0; at < n; at += block) {
        int64_t len = n - at < block ? n - at : block;
        cuda_memcpy_h2d(d + at * 2, h, (size_t)len * 2);
    }
    free(h);
    return d;
}

typedef void (*bench_fn)(void *arg);

/* Median milliseconds of fn(arg). */
static double time_ms(bench_fn fn, void *arg)
{
    double t[REPS];
    for (int i = 0; i < WARMUP; i++) fn(arg);
    cuda_synchronize();
    for (int i = 0; i < REPS; i++) {
        double t0 = now_ms();
        fn(arg);
        cuda_synchronize();
        t[i] = now_ms() - t0;
    }
    qsort(t, REPS, sizeof t[0], cmp_double);
    return t[REPS / 2];
}

/* ---- linear ---- */

struct lin {
    int64_t N, in, out;
    void *x, *w, *b, *y, *dx, *dy;
    float *dw;
};

static void lin_fwd(void *a)
{
    struct lin *l = a;
    cuda_linear_forward(tensor_2d(l->y, DT_BF16, DEV_CUDA, l->N, l->out),
                        tensor_2d(l->x, DT_BF16, DEV_CUDA, l->N, l->in),
                        tensor_2d(l->w, DT_BF16, DEV_CUDA, l->out, l->in),
                        l->b ? tensor_1d(l->b, DT_BF16, DEV_CUDA, l->out) : tensor_none());
}

static void lin_dx(void *a)
{
    struct lin *l = a;
    cuda_linear_backward(tensor_2d(l->dx, DT_BF16, DEV_CUDA, l->N, l->in), tensor_none(),
                         tensor_none(), tensor_2d(l->dy, DT_BF16, DEV_CUDA, l->N, l->out),
                         tensor_none(), tensor_2d(l->w, DT_BF16, DEV_CUDA, l->out, l->in));
}

static void lin_dw(void *a)
{
    struct lin *l = a;
    cuda_linear_backward(tensor_none(), tensor_2d(l->dw, DT_F32, DEV_CUDA, l->out, l->in),
                         tensor_none(), tensor_2d(l->dy, DT_BF16, DEV_CUDA, l->N, l->out),
                         tensor_2d(l->x, DT_BF16, DEV_CUDA, l->N, l->in), tensor_none());
}

/* Prints forward, dx and dw TFLOP/s of one shape; returns the three times' sum in ms. */
static double bench_linear(const char *name, int64_t N, int64_t in, int64_t out, bool bias)
{
    struct lin l = {N, in, out, dev_randn(N * in, 1.0f, 1), dev_randn(out * in, 0.02f, 2),
                    bias ? dev_randn(out, 0.1f, 3) : NULL, cuda_alloc((size_t)(N * out * 2)),
                    cuda_alloc((size_t)(N * in * 2)), dev_randn(N * out, 1.0f, 4),
                    cuda_alloc((size_t)(out * in * 4))};
    cuda_memset_zero(l.dw, (size_t)(out * in * 4));
    double f = 2.0 * N * in * out / 1e9; /* GFLOP */
    double tf = time_ms(lin_fwd, &l), tx = time_ms(lin_dx, &l), tw = time_ms(lin_dw, &l);
    printf("%-22s N=%-6lld in=%-5lld out=%-6lld fwd %7.3f ms %5.0f TF/s | dx %7.3f ms %5.0f TF/s | "
           "dw %7.3f ms %5.0f TF/s\n",
           name, (long long)N, (long long)in, (long long)out, tf, f / tf, tx, f / tx, tw, f / tw);
    cuda_free(l.x), cuda_free(l.w), cuda_free(l.b), cuda_free(l.y), cuda_free(l.dx);
    cuda_free(l.dy), cuda_free(l.dw);
    return tf + tx + tw;
}

/* ---- attention ---- */

struct att {
    struct attention_shape s;
    void *qkv, *out, *dout, *dqkv;
    float *lse;
};

static int64_t qkv_width(struct attention_shape s)
{
    return (int64_t)s.groups * (s.heads / s.groups + 2) * s.head_dim;
}

static void att_fwd(void *a)
{
    struct att *t = a;
    int64_t N = t->s.batch * t->s.seq, W = qkv_width(t->s);
    int64_t C = (int64_t)t->s.heads * t->s.head_dim, ld[3] = {t->s.batch, t->s.heads, t->s.seq};
    struct dropout_key nodrop = {0};
    cuda_attention_forward(tensor_2d(t->out, DT_BF16, DEV_CUDA, N, C),
                           tensor_make(t->lse, DT_F32, DEV_CUDA, 3, ld),
                           tensor_2d(t->qkv, DT_BF16, DEV_CUDA, N, W), t->s, nodrop);
}

static void att_bwd(void *a)
{
    struct att *t = a;
    int64_t N = t->s.batch * t->s.seq, W = qkv_width(t->s);
    int64_t C = (int64_t)t->s.heads * t->s.head_dim, ld[3] = {t->s.batch, t->s.heads, t->s.seq};
    struct dropout_key nodrop = {0};
    cuda_attention_backward(tensor_2d(t->dqkv, DT_BF16, DEV_CUDA, N, W),
                            tensor_2d(t->dout, DT_BF16, DEV_CUDA, N, C),
                            tensor_2d(t->qkv, DT_BF16, DEV_CUDA, N, W),
                            tensor_make(t->lse, DT_F32, DEV_CUDA, 3, ld),
                            tensor_2d(t->out, DT_BF16, DEV_CUDA, N, C), t->s, nodrop);
}

static void bench_attention(struct attention_shape s)
{
    int64_t N = s.batch * s.seq, W = qkv_width(s);
    int64_t C = (int64_t)s.heads * s.head_dim;
    struct att t = {s, dev_randn(N * W, 1.0f, 5), cuda_alloc((size_t)(N * C * 2)),
                    dev_randn(N * C, 1.0f, 6), cuda_alloc((size_t)(N * W * 2)),
                    cuda_alloc((size_t)(s.batch * s.heads * s.seq * 4))};
    att_fwd(&t); /* builds the plans (and compiles cuDNN's kernels) outside the timings */
    att_bwd(&t);
    double tf = time_ms(att_fwd, &t), tb = time_ms(att_bwd, &t);
    /* causal: half of the 2 (fwd) or 5 (bwd) T x T x d products per head */
    double fwd_flop = 2.0 * 2.0 * s.batch * s.heads * (double)s.seq * s.seq * s.head_dim / 2.0;
    double bwd_flop = 2.5 * fwd_flop;
    printf("attention B=%lld T=%lld n=%d g=%d d=%d: fwd %.3f ms %.0f TF/s | bwd %.3f ms %.0f TF/s"
           " | fwd+bwd %.3f ms %.0f TF/s\n",
           (long long)s.batch, (long long)s.seq, s.heads, s.groups, s.head_dim, tf,
           fwd_flop / tf / 1e9, tb, bwd_flop / tb / 1e9, tf + tb,
           (fwd_flop + bwd_flop) / (tf + tb) / 1e9);
    cuda_free(t.qkv), cuda_free(t.out), cuda_free(t.dout), cuda_free(t.dqkv), cuda_free(t.lse);
}

int main(int argc, char **argv)
{
    int64_t rows = argc > 1 ? strtoll(argv[1], NULL, 10) : 65536;
    if (cuda_device_count() == 0) {
        fprintf(stderr, "bench_ops: no GPU\n");
        return 1;
    }
    cuda_init(0);
    bench_linear("square", 8192, 8192, 8192, false);
    /* GPT-2 124M: hidden 768, 4h MLP, vocab 50304 (padded), per layer qkv, proj, fc1, fc2 */
    double layer = bench_linear("gpt2 qkv", rows, 768, 2304, true);
    layer += bench_linear("gpt2 attn proj", rows, 768, 768, true);
    layer += bench_linear("gpt2 fc1", rows, 768, 3072, true);
    layer += bench_linear("gpt2 fc2", rows, 3072, 768, true);
    double head = bench_linear("gpt2 lm head", rows, 768, 50304, false);
    double flop = 3 * 2.0 * rows * (12.0 * 768 * 768 * 12 + 768.0 * 50304); /* fwd + 2 bwd GEMMs */
    printf("gpt2 124M all linear layers (12 layers + head), fwd+bwd: %.1f ms, %.0f TF/s\n",
           12 * layer + head, flop / (12 * layer + head) / 1e9);
    struct attention_shape gpt2 = {.batch = 64, .seq = 1024, .heads = 12, .groups = 12,
                                   .head_dim = 64};
    struct attention_shape gqa = {.batch = 8, .seq = 4096, .heads = 32, .groups = 8,
                                  .head_dim = 128};
    bench_attention(gpt2);
    bench_attention(gqa);
    return 0;
}
