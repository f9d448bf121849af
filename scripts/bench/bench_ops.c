/* Timings of the CUDA backend's heavy ops on random bf16 data: the linear layer (cuBLASLt) at a
 * square 8192^3 GEMM and at GPT-2 124M's shapes, cuDNN attention forward + backward, and each fused
 * op of a transformer layer beside the unfused ops it replaces (with what one training step of
 * GPT-2 124M saves).
 * Then the memory-bound ops (norm backwards, the GeLU backward, the cross-entropy over GPT-2's
 * vocabulary) against the floor their bytes set: each op's GB/s beside a device copy's.
 * Each figure is the median of REPS timed runs after WARMUP runs, the stream synchronized around
 * each run; FLOPs count 2 per multiply-add, causal attention at half the square (the work done).
 * Usage: bench_ops [rows]   (rows of the GPT-2 GEMMs, default 65536 = micro batch 64 x 1024)
 *        bench_ops rows H   (a layer's GEMMs at hidden H, its MLP backward's paths, its norms)
 *        bench_ops rows H norms   (the norms alone)
 *        bench_ops rows H gemms   (the GEMMs and the MLP backward's paths alone)
 *        bench_ops rows H attention   (causal attention of sequences of 1024, heads of 64) */
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

/* Median milliseconds of one fn(arg) among BATCH calls queued back to back: the launches overlap
 * the previous calls' GPU time, so a kernel of tens of microseconds is timed without the host's
 * round trip that time_ms adds to every call. */
static double time_ms_batched(bench_fn fn, void *arg)
{
    enum { BATCH = 20 };
    double t[REPS];
    for (int i = 0; i < WARMUP; i++) fn(arg);
    cuda_synchronize();
    for (int i = 0; i < REPS; i++) {
        double t0 = now_ms();
        for (int j = 0; j < BATCH; j++) fn(arg);
        cuda_synchronize();
        t[i] = (now_ms() - t0) / BATCH;
    }
    qsort(t, REPS, sizeof t[0], cmp_double);
    return t[REPS / 2];
}

/* ---- linear ---- */

struct lin {
    int64_t N, in, out;
    void *x, *w, *b, *y, *dx, *dy;
    float *dw, *db;
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

/* dw and the bias gradient db together (the bias's layers' backward) */
static void lin_dw_db(void *a)
{
    struct lin *l = a;
    cuda_linear_backward(tensor_none(), tensor_2d(l->dw, DT_F32, DEV_CUDA, l->out, l->in),
                         tensor_1d(l->db, DT_F32, DEV_CUDA, l->out),
                         tensor_2d(l->dy, DT_BF16, DEV_CUDA, l->N, l->out),
                         tensor_2d(l->x, DT_BF16, DEV_CUDA, l->N, l->in), tensor_none());
}

/* Prints forward, dx and dw TFLOP/s of one shape (with a bias, also the time of dw with db);
 * returns the three times' sum in ms. */
static double bench_linear(const char *name, int64_t N, int64_t in, int64_t out, bool bias)
{
    struct lin l = {N, in, out, dev_randn(N * in, 1.0f, 1), dev_randn(out * in, 0.02f, 2),
                    bias ? dev_randn(out, 0.1f, 3) : NULL, cuda_alloc((size_t)(N * out * 2)),
                    cuda_alloc((size_t)(N * in * 2)), dev_randn(N * out, 1.0f, 4),
                    cuda_alloc((size_t)(out * in * 4)), cuda_alloc((size_t)out * 4)};
    cuda_memset_zero(l.dw, (size_t)(out * in * 4));
    cuda_memset_zero(l.db, (size_t)out * 4);
    double f = 2.0 * N * in * out / 1e9; /* GFLOP */
    double tf = time_ms(lin_fwd, &l), tx = time_ms(lin_dx, &l), tw = time_ms(lin_dw, &l);
    printf("%-22s N=%-6lld in=%-5lld out=%-6lld fwd %7.3f ms %5.0f TF/s | dx %7.3f ms %5.0f TF/s | "
           "dw %7.3f ms %5.0f TF/s\n",
           name, (long long)N, (long long)in, (long long)out, tf, f / tf, tx, f / tx, tw, f / tw);
    if (bias) printf("%-22s dw with the bias gradient db: %7.3f ms\n", "", time_ms(lin_dw_db, &l));
    cuda_free(l.x), cuda_free(l.w), cuda_free(l.b), cuda_free(l.y), cuda_free(l.dx);
    cuda_free(l.dy), cuda_free(l.dw), cuda_free(l.db);
    return tf + tx + tw;
}

/* ---- attention ---- */

struct att {
    struct attention_shape s;
    void *qkv, *out, *dout, *dqkv;
    float *lse;
    float *db; /* NULL: the backward alone; else linear_qkv's bias gradient with it */
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
                            t->db ? tensor_1d(t->db, DT_F32, DEV_CUDA, W) : tensor_none(),
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
                    cuda_alloc((size_t)(s.batch * s.heads * s.seq * 4)), NULL};
    att_fwd(&t); /* builds the plans (and compiles cuDNN's kernels) outside the timings */
    att_bwd(&t);
    double tf = time_ms(att_fwd, &t), tb = time_ms(att_bwd, &t);
    t.db = cuda_alloc((size_t)W * 4); /* the backward with the bias gradient, as a layer runs it */
    att_bwd(&t);
    double tbd = time_ms(att_bwd, &t);
    /* causal: half of the 2 (fwd) or 5 (bwd) T x T x d products per head */
    double fwd_flop = 2.0 * 2.0 * s.batch * s.heads * (double)s.seq * s.seq * s.head_dim / 2.0;
    double bwd_flop = 2.5 * fwd_flop;
    printf("attention B=%lld T=%lld n=%d g=%d d=%d: fwd %.3f ms %.0f TF/s | bwd %.3f ms %.0f TF/s"
           " | fwd+bwd %.3f ms %.0f TF/s | bwd with qkv's bias gradient %.3f ms\n",
           (long long)s.batch, (long long)s.seq, s.heads, s.groups, s.head_dim, tf,
           fwd_flop / tf / 1e9, tb, bwd_flop / tb / 1e9, tf + tb,
           (fwd_flop + bwd_flop) / (tf + tb) / 1e9, tbd);
    cuda_free(t.qkv), cuda_free(t.out), cuda_free(t.dout), cuda_free(t.dqkv), cuda_free(t.lse);
    cuda_free(t.db);
}

/* ---- fused ops against the sequences of ops they replace ---- */

/* GPT-2 124M's MLP ([N, H] -> [N, F] -> [N, H]) and residual stream ([N, H]) on one set of
 * buffers; the dropout key and the GeLU form are set per comparison. */
struct fused {
    int64_t N, H, F;
    void *x, *w1, *b1, *pre, *act, *w2, *dy, *dact, *dpre;
    float *db1;
    void *sub, *bias, *res, *mid, *nout, *nw, *nb, *dres, *dx;
    float *mean, *rstd, *dnw, *dnb, *drs;
    bool tanh_approx;
    struct dropout_key drop;
};

static struct tensor B2(void *p, int64_t a, int64_t b) { return tensor_2d(p, DT_BF16, DEV_CUDA, a, b); }
static struct tensor B1(void *p, int64_t a) { return tensor_1d(p, DT_BF16, DEV_CUDA, a); }
static struct tensor F1(float *p, int64_t a) { return tensor_1d(p, DT_F32, DEV_CUDA, a); }

static void fc1_gelu_fused(void *a)
{
    struct fused *f = a;
    cuda_linear_gelu_forward(B2(f->act, f->N, f->F), B2(f->pre, f->N, f->F), B2(f->x, f->N, f->H),
                             B2(f->w1, f->F, f->H), B1(f->b1, f->F), f->tanh_approx);
}

static void fc1_gelu_unfused(void *a)
{
    struct fused *f = a;
    cuda_linear_forward(B2(f->pre, f->N, f->F), B2(f->x, f->N, f->H), B2(f->w1, f->F, f->H),
                        B1(f->b1, f->F));
    cuda_gelu_forward(B2(f->act, f->N, f->F), B2(f->pre, f->N, f->F), f->tanh_approx);
}

/* fc2's input gradient through the GeLU and fc1's bias gradient (fc2's dW is the same either way) */
static void fc2_dgelu_fused(void *a)
{
    struct fused *f = a;
    cuda_linear_dgelu_backward(B2(f->dpre, f->N, f->F), F1(f->db1, f->F), tensor_none(),
                               B2(f->dy, f->N, f->H), tensor_none(), B2(f->w2, f->H, f->F),
                               B2(f->pre, f->N, f->F), f->tanh_approx);
}

static void fc2_dgelu_unfused(void *a)
{
    struct fused *f = a;
    cuda_linear_backward(B2(f->dact, f->N, f->F), tensor_none(), tensor_none(), B2(f->dy, f->N, f->H),
                         tensor_none(), B2(f->w2, f->H, f->F));
    cuda_gelu_backward(B2(f->dpre, f->N, f->F), B2(f->dact, f->N, f->F), B2(f->pre, f->N, f->F),
                       f->tanh_approx);
    cuda_linear_backward(tensor_none(), tensor_none(), F1(f->db1, f->F), B2(f->dpre, f->N, f->F),
                         tensor_none(), tensor_none());
}

static void bda_layernorm_fused(void *a)
{
    struct fused *f = a;
    cuda_bias_dropout_add_layernorm_forward(B2(f->mid, f->N, f->H), B2(f->nout, f->N, f->H),
                                            F1(f->mean, f->N), F1(f->rstd, f->N),
                                            B2(f->sub, f->N, f->H), B1(f->bias, f->H),
                                            B2(f->res, f->N, f->H), f->drop, B1(f->nw, f->H),
                                            B1(f->nb, f->H), 1e-5f);
}

static void bda_layernorm_unfused(void *a)
{
    struct fused *f = a;
    cuda_bias_dropout_add_forward(B2(f->mid, f->N, f->H), B2(f->sub, f->N, f->H), B1(f->bias, f->H),
                                  B2(f->res, f->N, f->H), f->drop);
    cuda_layernorm_forward(B2(f->nout, f->N, f->H), F1(f->mean, f->N), F1(f->rstd, f->N),
                           B2(f->mid, f->N, f->H), B1(f->nw, f->H), B1(f->nb, f->H), 1e-5f);
}

static void bda_rmsnorm_fused(void *a)
{
    struct fused *f = a;
    cuda_bias_dropout_add_rmsnorm_forward(B2(f->mid, f->N, f->H), B2(f->nout, f->N, f->H),
                                          F1(f->rstd, f->N), B2(f->sub, f->N, f->H),
                                          B1(f->bias, f->H), B2(f->res, f->N, f->H), f->drop,
                                          B1(f->nw, f->H), 1e-5f);
}

static void bda_rmsnorm_unfused(void *a)
{
    struct fused *f = a;
    cuda_bias_dropout_add_forward(B2(f->mid, f->N, f->H), B2(f->sub, f->N, f->H), B1(f->bias, f->H),
                                  B2(f->res, f->N, f->H), f->drop);
    cuda_rmsnorm_forward(B2(f->nout, f->N, f->H), F1(f->rstd, f->N), B2(f->mid, f->N, f->H),
                         B1(f->nw, f->H), 1e-5f);
}

/* the LayerNorm backward with the residual gradient added (and its column sums into rsum) */
static void layernorm_backward_add_into(struct fused *f, struct tensor rsum)
{
    cuda_layernorm_backward_add(B2(f->dx, f->N, f->H), F1(f->dnw, f->H), F1(f->dnb, f->H),
                                B2(f->dy, f->N, f->H), B2(f->mid, f->N, f->H), B1(f->nw, f->H),
                                F1(f->mean, f->N), F1(f->rstd, f->N), B2(f->dres, f->N, f->H), rsum);
}

static void layernorm_backward_add_fused(void *a) { layernorm_backward_add_into(a, tensor_none()); }

/* the same, and the residual gradient's column sums (a dropout-free bias-dropout-add's db) */
static void layernorm_backward_add_rsum(void *a)
{
    struct fused *f = a;
    layernorm_backward_add_into(f, F1(f->drs, f->H));
}

static void layernorm_backward_add_unfused(void *a)
{
    struct fused *f = a;
    cuda_layernorm_backward(B2(f->dx, f->N, f->H), F1(f->dnw, f->H), F1(f->dnb, f->H),
                            B2(f->dy, f->N, f->H), B2(f->mid, f->N, f->H), B1(f->nw, f->H),
                            F1(f->mean, f->N), F1(f->rstd, f->N), tensor_none());
    cuda_add(B2(f->dx, f->N, f->H), B2(f->dx, f->N, f->H), B2(f->dres, f->N, f->H));
}

/* The bias-dropout-add backward without dropout: the layer now keeps only the bias gradient. */
static void bda_backward_p0_fused(void *a)
{
    struct fused *f = a;
    cuda_bias_dropout_add_backward(tensor_none(), F1(f->dnb, f->H), B2(f->dy, f->N, f->H), f->drop);
}

/* With dropout: the masked gradient and the bias gradient in one pass, or (as before) in two. */
static void bda_backward_fused(void *a)
{
    struct fused *f = a;
    cuda_bias_dropout_add_backward(B2(f->dx, f->N, f->H), F1(f->dnb, f->H), B2(f->dy, f->N, f->H),
                                   f->drop);
}

static void bda_backward_unfused(void *a)
{
    struct fused *f = a;
    cuda_bias_dropout_add_backward(tensor_none(), F1(f->dnb, f->H), B2(f->dy, f->N, f->H), f->drop);
    cuda_bias_dropout_add_backward(B2(f->dx, f->N, f->H), tensor_none(), B2(f->dy, f->N, f->H),
                                   f->drop);
}

/* ---- memory-bound ops against the bandwidth floor ---- */

/* GB/s of a device-to-device copy of 1 GiB (read + written): the floor the ops below meet. */
static void copy_1gib(void *a)
{
    void **p = a;
    const int64_t n = (int64_t)1 << 29; /* bf16 values */
    cuda_copy(tensor_1d(p[1], DT_BF16, DEV_CUDA, n), tensor_1d(p[0], DT_BF16, DEV_CUDA, n));
}

static double copy_bandwidth_gbs(void)
{
    void *p[2] = {cuda_alloc((size_t)1 << 30), cuda_alloc((size_t)1 << 30)};
    cuda_memset_zero(p[0], (size_t)1 << 30);
    double ms = time_ms(copy_1gib, p);
    cuda_free(p[0]), cuda_free(p[1]);
    double gbs = 2.0 * (double)(1 << 30) / 1e6 / ms;
    printf("device copy of 1 GiB: %.3f ms, %.0f GB/s (read + write): the floor below\n", ms, gbs);
    return gbs;
}

/* One line: an op's time, the bytes it must move at least, its GB/s and how far from the floor. */
static void bandwidth_line(const char *name, double ms, double bytes, double copy_gbs)
{
    double gbs = bytes / 1e6 / ms, floor_ms = bytes / 1e6 / copy_gbs;
    printf("%-44s %8.3f ms | %7.3f GB moved | %5.0f GB/s = %3.0f%% of copy | floor %7.3f ms\n",
           name, ms, bytes / 1e9, gbs, 100.0 * gbs / copy_gbs, floor_ms);
}

struct ce {
    int64_t N, V;
    void *logits, *dlogits, *targets;
    float *losses, *dlosses, *row_max, *sum_exp, *target_logit, *lse;
};

static struct tensor CE2(void *p, const struct ce *c)
{
    return tensor_2d(p, DT_BF16, DEV_CUDA, c->N, c->V);
}
static struct tensor CEF(float *p, const struct ce *c)
{
    return tensor_1d(p, DT_F32, DEV_CUDA, c->N);
}
static struct tensor CET(const struct ce *c)
{
    return tensor_1d(c->targets, DT_I32, DEV_CUDA, c->N);
}

static void ce_fwd(void *a)
{
    struct ce *c = a;
    cuda_cross_entropy_forward(CEF(c->losses, c), CE2(c->logits, c), CET(c));
}

/* Into dlogits, not over the logits, so every run sees the same inputs (in place moves as much). */
static void ce_bwd(void *a)
{
    struct ce *c = a;
    cuda_cross_entropy_backward(CE2(c->dlogits, c), CE2(c->logits, c), CET(c), CEF(c->dlosses, c));
}

static void ce_vp_stats(void *a)
{
    struct ce *c = a;
    cuda_vocab_parallel_ce_stats(CEF(c->row_max, c), CEF(c->sum_exp, c), CEF(c->target_logit, c),
                                 CE2(c->logits, c), CET(c), 0);
}

static void ce_vp_bwd(void *a)
{
    struct ce *c = a;
    cuda_vocab_parallel_ce_backward(CE2(c->dlogits, c), CE2(c->logits, c), CET(c), 0,
                                    CEF(c->lse, c), CEF(c->dlosses, c));
}

/* GPT-2's loss over [rows, 50304] bf16 logits: the forward reads them once, the backward reads
 * them and writes the gradient (the plain op keeps a row in shared memory while it finds the
 * row's log-sum-exp; the vocab-parallel one is given it). */
static void bench_cross_entropy(int64_t rows, double copy_gbs)
{
    struct ce c = {.N = rows, .V = 50304};
    c.logits = dev_randn(c.N * c.V, 3.0f, 31), c.dlogits = cuda_alloc((size_t)(c.N * c.V * 2));
    int32_t *t = xmalloc((size_t)c.N * 4);
    float *g = xmalloc((size_t)c.N * 4);
    for (int64_t n = 0; n < c.N; n++) {
        t[n] = (int32_t)(rng_bits(7, 32, (uint64_t)n) % 50257);
        g[n] = 1.0f / (float)c.N;
    }
    c.targets = cuda_alloc((size_t)c.N * 4), c.dlosses = cuda_alloc((size_t)c.N * 4);
    cuda_memcpy_h2d(c.targets, t, (size_t)c.N * 4), cuda_memcpy_h2d(c.dlosses, g, (size_t)c.N * 4);
    float **f32[] = {&c.losses, &c.row_max, &c.sum_exp, &c.target_logit, &c.lse};
    for (size_t i = 0; i < sizeof f32 / sizeof f32[0]; i++) *f32[i] = cuda_alloc((size_t)c.N * 4);
    double logits_bytes = 2.0 * (double)c.N * c.V;
    ce_vp_stats(&c); /* the lse of one rank holding the whole vocabulary */
    cuda_vocab_parallel_ce_loss(CEF(c.losses, &c), CEF(c.lse, &c), CEF(c.row_max, &c),
                                CEF(c.sum_exp, &c), CEF(c.target_logit, &c));
    printf("cross-entropy over [%lld, %lld] bf16 logits:\n", (long long)c.N, (long long)c.V);
    bandwidth_line("cross-entropy forward", time_ms(ce_fwd, &c), logits_bytes, copy_gbs);
    bandwidth_line("cross-entropy backward", time_ms(ce_bwd, &c), 2 * logits_bytes, copy_gbs);
    bandwidth_line("vocab-parallel CE stats (1 rank)", time_ms(ce_vp_stats, &c), logits_bytes,
                   copy_gbs);
    bandwidth_line("vocab-parallel CE backward (given lse)", time_ms(ce_vp_bwd, &c),
                   2 * logits_bytes, copy_gbs);
    free(t), free(g);
    cuda_free(c.logits), cuda_free(c.dlogits), cuda_free(c.targets), cuda_free(c.dlosses);
    for (size_t i = 0; i < sizeof f32 / sizeof f32[0]; i++) cuda_free(*f32[i]);
}

/* Norm backwards and the GeLU backward on GPT-2 124M's activations (the fused-ops buffers). */
static void ln_backward_plain(void *a)
{
    struct fused *f = a;
    cuda_layernorm_backward(B2(f->dx, f->N, f->H), F1(f->dnw, f->H), F1(f->dnb, f->H),
                            B2(f->dy, f->N, f->H), B2(f->mid, f->N, f->H), B1(f->nw, f->H),
                            F1(f->mean, f->N), F1(f->rstd, f->N), tensor_none());
}

static void rms_backward_add(void *a)
{
    struct fused *f = a;
    cuda_rmsnorm_backward_add(B2(f->dx, f->N, f->H), F1(f->dnw, f->H), B2(f->dy, f->N, f->H),
                              B2(f->mid, f->N, f->H), B1(f->nw, f->H), F1(f->rstd, f->N),
                              B2(f->dres, f->N, f->H), tensor_none());
}

static void fc2_dx_gemm(void *a)
{
    struct fused *f = a;
    cuda_linear_backward(B2(f->dact, f->N, f->F), tensor_none(), tensor_none(),
                         B2(f->dy, f->N, f->H), tensor_none(), B2(f->w2, f->H, f->F));
}

static void gelu_backward_alone(void *a)
{
    struct fused *f = a;
    cuda_gelu_backward(B2(f->dpre, f->N, f->F), B2(f->dact, f->N, f->F), B2(f->pre, f->N, f->F),
                       f->tanh_approx);
}

static void fc1_bias_grad_alone(void *a)
{
    struct fused *f = a;
    cuda_linear_backward(tensor_none(), tensor_none(), F1(f->db1, f->F), B2(f->dpre, f->N, f->F),
                         tensor_none(), tensor_none());
}

static void bench_bandwidth(struct fused *f, double copy_gbs)
{
    double nh = 2.0 * (double)f->N * f->H, nf = 2.0 * (double)f->N * f->F; /* bytes of one tensor */
    printf("memory-bound ops of a GPT-2 124M layer (rows %lld, hidden %lld, ffn %lld):\n",
           (long long)f->N, (long long)f->H, (long long)f->F);
    /* layernorm statistics (mean, rstd: 8 bytes a row) are counted; dw, db are negligible */
    f->drop = (struct dropout_key){0};
    bandwidth_line("layernorm backward + residual (dx, dw, db)",
                   time_ms(layernorm_backward_add_fused, f), 4 * nh + 8.0 * f->N, copy_gbs);
    bandwidth_line("layernorm backward (dx, dw, db)", time_ms(ln_backward_plain, f),
                   3 * nh + 8.0 * f->N, copy_gbs);
    bandwidth_line("rmsnorm backward + residual (dx, dw)", time_ms(rms_backward_add, f),
                   4 * nh + 4.0 * f->N, copy_gbs);
    bandwidth_line("bias-dropout-add + layernorm forward (p=0)", time_ms(bda_layernorm_fused, f),
                   4 * nh + 8.0 * f->N, copy_gbs);
    f->tanh_approx = false;
    double fused = time_ms(fc2_dgelu_fused, f), gemm = time_ms(fc2_dx_gemm, f);
    printf("%-44s %8.3f ms, of which the dx GEMM alone %.3f ms\n",
           "fc2 dx + dGeLU (erf) + fc1 db", fused, gemm);
    bandwidth_line("  dGeLU (erf) + fc1 db kernel (difference)", fused - gemm, 3 * nf, copy_gbs);
    bandwidth_line("GeLU backward (erf) alone", time_ms(gelu_backward_alone, f), 3 * nf, copy_gbs);
    bandwidth_line("fc1 bias gradient alone (column sum)", time_ms(fc1_bias_grad_alone, f), nf,
                   copy_gbs);
}

/* Prints both timings; returns the milliseconds saved by one call of the fused op. */
static double compare(const char *name, bench_fn fused, bench_fn unfused, struct fused *f)
{
    double tf = time_ms(fused, f), tu = time_ms(unfused, f);
    printf("%-40s fused %7.3f ms | unfused %7.3f ms | saves %6.3f ms (%.2fx)\n", name, tf, tu,
           tu - tf, tu / tf);
    return tu - tf;
}

static void bench_fused(int64_t rows, double copy_gbs)
{
    const int64_t H = 768, F = 3072;
    struct fused f = {.N = rows, .H = H, .F = F};
    f.x = dev_randn(rows * H, 1.0f, 11), f.w1 = dev_randn(F * H, 0.02f, 12);
    f.b1 = dev_randn(F, 0.1f, 13), f.pre = dev_randn(rows * F, 1.0f, 14);
    f.act = cuda_alloc((size_t)(rows * F * 2)), f.w2 = dev_randn(H * F, 0.02f, 15);
    f.dy = dev_randn(rows * H, 1.0f, 16), f.dact = cuda_alloc((size_t)(rows * F * 2));
    f.dpre = cuda_alloc((size_t)(rows * F * 2)), f.db1 = cuda_alloc((size_t)F * 4);
    f.sub = dev_randn(rows * H, 1.0f, 17), f.bias = dev_randn(H, 0.1f, 18);
    f.res = dev_randn(rows * H, 1.0f, 19), f.mid = dev_randn(rows * H, 1.0f, 20);
    f.nout = cuda_alloc((size_t)(rows * H * 2)), f.nw = dev_randn(H, 1.0f, 21);
    f.nb = dev_randn(H, 0.1f, 22), f.dres = dev_randn(rows * H, 1.0f, 23);
    f.dx = cuda_alloc((size_t)(rows * H * 2)), f.mean = cuda_alloc((size_t)rows * 4);
    f.rstd = cuda_alloc((size_t)rows * 4), f.dnw = cuda_alloc((size_t)H * 4);
    f.dnb = cuda_alloc((size_t)H * 4);
    cuda_memset_zero(f.db1, (size_t)F * 4), cuda_memset_zero(f.dnw, (size_t)H * 4);
    cuda_memset_zero(f.dnb, (size_t)H * 4);
    printf("fused ops, GPT-2 124M shapes (rows %lld, hidden %lld, ffn %lld):\n", (long long)rows,
           (long long)H, (long long)F);
    double step = 0.0; /* per training step, 12 layers, dropout 0, erf GeLU (the benchmark run) */
    for (int form = 0; form < 2; form++) {
        f.tanh_approx = form == 1;
        double a = compare(form ? "fc1 + GeLU (tanh) forward" : "fc1 + GeLU (erf) forward",
                           fc1_gelu_fused, fc1_gelu_unfused, &f);
        struct cuda_gelu_paths pf = cuda_linear_gelu_paths();
        double b = compare(form ? "fc2 dx + dGeLU (tanh) + fc1 db" : "fc2 dx + dGeLU (erf) + fc1 db",
                           fc2_dgelu_fused, fc2_dgelu_unfused, &f);
        struct cuda_gelu_paths pb = cuda_linear_gelu_paths();
        printf("    (forward %s, backward %s)\n", pf.forward_epilogue ? "epilogue" : "GEMM + kernel",
               pb.bias_grad_epilogue    ? "DGELU_BGRAD epilogue"
               : pb.backward_row_halves ? "DGELU epilogue in row halves + column sum"
               : pb.backward_epilogue   ? "DGELU epilogue + column sum"
                                        : "GEMM + kernel");
        if (!f.tanh_approx) step += 12 * (a + b);
    }
    for (int k = 0; k < 2; k++) {
        f.drop = (struct dropout_key){.p = k ? 0.1f : 0.0f, .seed = 1, .stream = 2, .offset = 0};
        char name[64];
        snprintf(name, sizeof name, "bias-dropout-add + layernorm (p=%.1f)", f.drop.p);
        double a = compare(name, bda_layernorm_fused, bda_layernorm_unfused, &f);
        snprintf(name, sizeof name, "bias-dropout-add + rmsnorm (p=%.1f)", f.drop.p);
        compare(name, bda_rmsnorm_fused, bda_rmsnorm_unfused, &f);
        if (k == 0) step += 12 * a;
    }
    step += 2 * 12 * compare("layernorm backward + residual add", layernorm_backward_add_fused,
                             layernorm_backward_add_unfused, &f);
    f.drop = (struct dropout_key){0};
    step += 2 * 12 * compare("bias-dropout-add backward (p=0)", bda_backward_p0_fused,
                             bda_backward_unfused, &f);
    f.drop = (struct dropout_key){.p = 0.1f, .seed = 1, .stream = 2, .offset = 0};
    compare("bias-dropout-add backward (p=0.1)", bda_backward_fused, bda_backward_unfused, &f);
    printf("gpt2 124M, one step (12 layers, dropout 0, erf GeLU): the fused ops save %.1f ms\n", step);
    bench_bandwidth(&f, copy_gbs);
    void *bufs[] = {f.x, f.w1, f.b1, f.pre, f.act, f.w2, f.dy, f.dact, f.dpre, f.db1, f.sub, f.bias,
                    f.res, f.mid, f.nout, f.nw, f.nb, f.dres, f.dx, f.mean, f.rstd, f.dnw, f.dnb};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) cuda_free(bufs[i]);
}

/* The norm kernels of a layer at hidden H (rows x H, bf16), batched timings against the copy
 * floor: the fused bias-dropout-add + LayerNorm forward, the LayerNorm backward with the residual
 * gradient added, and the bias-dropout-add backward without dropout (the bias gradient, a column
 * sum). */
static void bench_norms(int64_t rows, int64_t H, double copy_gbs)
{
    struct fused f = {.N = rows, .H = H};
    f.sub = dev_randn(rows * H, 1.0f, 17), f.bias = dev_randn(H, 0.1f, 18);
    f.res = dev_randn(rows * H, 1.0f, 19), f.mid = dev_randn(rows * H, 1.0f, 20);
    f.nout = cuda_alloc((size_t)(rows * H * 2)), f.nw = dev_randn(H, 1.0f, 21);
    f.nb = dev_randn(H, 0.1f, 22), f.dres = dev_randn(rows * H, 1.0f, 23);
    f.dy = dev_randn(rows * H, 1.0f, 16), f.dx = cuda_alloc((size_t)(rows * H * 2));
    f.mean = cuda_alloc((size_t)rows * 4), f.rstd = cuda_alloc((size_t)rows * 4);
    f.dnw = cuda_alloc((size_t)H * 4), f.dnb = cuda_alloc((size_t)H * 4);
    f.drs = cuda_alloc((size_t)H * 4);
    cuda_memset_zero(f.dnw, (size_t)H * 4), cuda_memset_zero(f.dnb, (size_t)H * 4);
    cuda_memset_zero(f.drs, (size_t)H * 4);
    double nh = 2.0 * (double)rows * H; /* bytes of one [rows, H] tensor */
    printf("norm kernels (rows %lld, hidden %lld, bf16, batched):\n", (long long)rows, (long long)H);
    bandwidth_line("  bias-dropout-add + layernorm forward (p=0)", time_ms_batched(bda_layernorm_fused, &f),
                   4 * nh + 8.0 * rows, copy_gbs);
    bandwidth_line("  layernorm backward + residual (dx, dw, db)",
                   time_ms_batched(layernorm_backward_add_fused, &f), 4 * nh + 8.0 * rows, copy_gbs);
    bandwidth_line("  bias-dropout-add backward (p=0: db)", time_ms_batched(bda_backward_p0_fused, &f),
                   nh, copy_gbs);
    bandwidth_line("  the two above in one (the residual's sums)",
                   time_ms_batched(layernorm_backward_add_rsum, &f), 4 * nh + 8.0 * rows, copy_gbs);
    void *bufs[] = {f.sub, f.bias, f.res, f.mid, f.nout, f.nw, f.nb, f.dres, f.dy, f.dx, f.mean,
                    f.rstd, f.dnw, f.dnb, f.drs};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) cuda_free(bufs[i]);
}

/* ---- fc2's backward through the GeLU ---- */

/* A layer's MLP backward at hidden H (ffn 4H, tanh GeLU), and fc2's dx through the GeLU with
 * fc1's bias gradient by each of its paths (linear.cu times them per shape and keeps the
 * fastest): the figures behind that choice. */
struct mlp_bwd {
    int64_t N, H, F;
    void *x, *w1, *pre, *act, *w2, *dy, *dpre, *dx;
    float *db1, *dw1, *dw2;
};

static void mlp_backward_all(void *a)
{
    struct mlp_bwd *b = a;
    cuda_linear_dgelu_backward(B2(b->dpre, b->N, b->F), F1(b->db1, b->F),
                               tensor_2d(b->dw2, DT_F32, DEV_CUDA, b->H, b->F), B2(b->dy, b->N, b->H),
                               B2(b->act, b->N, b->F), B2(b->w2, b->H, b->F), B2(b->pre, b->N, b->F), true);
    cuda_linear_backward(B2(b->dx, b->N, b->H), tensor_2d(b->dw1, DT_F32, DEV_CUDA, b->F, b->H),
                         tensor_none(), B2(b->dpre, b->N, b->F), B2(b->x, b->N, b->H),
                         B2(b->w1, b->F, b->H));
}

static void fc2_dx_dgelu_db(void *a)
{
    struct mlp_bwd *b = a;
    cuda_linear_dgelu_backward(B2(b->dpre, b->N, b->F), F1(b->db1, b->F), tensor_none(),
                               B2(b->dy, b->N, b->H), tensor_none(), B2(b->w2, b->H, b->F),
                               B2(b->pre, b->N, b->F), true);
}

static void fc2_dx_plain(void *a)
{
    struct mlp_bwd *b = a;
    cuda_linear_backward(B2(b->dpre, b->N, b->F), tensor_none(), tensor_none(), B2(b->dy, b->N, b->H),
                         tensor_none(), B2(b->w2, b->H, b->F));
}

static void bench_mlp_backward(int64_t N, int64_t H)
{
    const int64_t F = 4 * H;
    struct mlp_bwd b = {.N = N, .H = H, .F = F};
    b.x = dev_randn(N * H, 1.0f, 31), b.w1 = dev_randn(F * H, 0.02f, 32);
    b.pre = dev_randn(N * F, 1.0f, 33), b.act = dev_randn(N * F, 1.0f, 34);
    b.w2 = dev_randn(H * F, 0.02f, 35), b.dy = dev_randn(N * H, 1.0f, 36);
    b.dpre = cuda_alloc((size_t)(N * F * 2)), b.dx = cuda_alloc((size_t)(N * H * 2));
    b.db1 = cuda_alloc((size_t)F * 4), b.dw1 = cuda_alloc((size_t)(F * H * 4));
    b.dw2 = cuda_alloc((size_t)(F * H * 4));
    cuda_memset_zero(b.db1, (size_t)F * 4), cuda_memset_zero(b.dw1, (size_t)(F * H * 4));
    cuda_memset_zero(b.dw2, (size_t)(F * H * 4));
    double g = 2.0 * N * H * F / 1e9; /* GFLOP of one MLP GEMM */
    printf("MLP backward (rows %lld, hidden %lld, ffn %lld, tanh GeLU):\n", (long long)N, (long long)H,
           (long long)F);
    double all = time_ms(mlp_backward_all, &b);
    printf("  its four GEMMs and fc1's bias gradient: %.3f ms, %.0f TF/s\n", all, 4 * g / all);
    double plain = time_ms(fc2_dx_plain, &b);
    printf("  fc2 dx GEMM alone: %.3f ms (%.0f TF/s); with the dGeLU and fc1's bias gradient:\n", plain,
           g / plain);
    static const char *const names[] = {"DGELU_BGRAD epilogue", "DGELU epilogue + column sum",
                                        "DGELU epilogue, row halves", "GEMM + kernel"};
    for (int p = CUDA_DGELU_TIMED; p <= CUDA_DGELU_GEMM_KERNEL; p++) {
        cuda_linear_dgelu_force_path((enum cuda_dgelu_path)p);
        double t = time_ms(fc2_dx_dgelu_db, &b);
        struct cuda_gelu_paths taken = cuda_linear_gelu_paths();
        int k = taken.bias_grad_epilogue    ? 0
                : taken.backward_row_halves ? 2
                : taken.backward_epilogue   ? 1
                                            : 3;
        printf("    %-30s %.3f ms (%s)\n",
               p == CUDA_DGELU_TIMED ? "the timed choice:" : names[p], t, names[k]);
    }
    cuda_linear_dgelu_force_path(CUDA_DGELU_TIMED);
    void *bufs[] = {b.x, b.w1, b.pre, b.act, b.w2, b.dy, b.dpre, b.dx, b.db1, b.dw1, b.dw2};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) cuda_free(bufs[i]);
}

int main(int argc, char **argv)
{
    int64_t rows = argc > 1 ? strtoll(argv[1], NULL, 10) : 65536;
    if (cuda_device_count() == 0) {
        fprintf(stderr, "bench_ops: no GPU\n");
        return 1;
    }
    cuda_init(0);
    if (argc > 2) { /* a GPT layer's GEMMs at hidden H (heads of 64): bench_ops rows H */
        int64_t H = strtoll(argv[2], NULL, 10);
        if (argc > 3 && strcmp(argv[3], "attention") == 0) { /* bench_ops rows H attention */
            struct attention_shape a = {.batch = rows / 1024, .seq = 1024, .heads = (int)(H / 64),
                                        .groups = (int)(H / 64), .head_dim = 64};
            bench_attention(a);
            return 0;
        }
        if (argc > 3 && strcmp(argv[3], "norms") == 0) { /* bench_ops rows H norms: those alone */
            bench_norms(rows, H, copy_bandwidth_gbs());
            return 0;
        }
        bench_linear("qkv", rows, H, 3 * H, true);
        bench_linear("attn proj", rows, H, H, true);
        bench_linear("fc1", rows, H, 4 * H, true);
        bench_linear("fc2", rows, 4 * H, H, true);
        bench_linear("lm head", rows, H, 50304, false);
        bench_mlp_backward(rows, H);
        if (argc > 3 && strcmp(argv[3], "gemms") == 0) return 0; /* bench_ops rows H gemms */
        bench_norms(rows, H, copy_bandwidth_gbs());
        return 0;
    }
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
    double copy_gbs = copy_bandwidth_gbs();
    bench_fused(rows, copy_gbs);
    bench_cross_entropy(rows, copy_gbs);
    return 0;
}
