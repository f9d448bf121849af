/* GPU op tests of attention (cuDNN, with RoPE, and its dropout), the elementwise ops and dropout
 * masks, the cross-entropy losses, and determinism of the reductions, against the CPU ops. Attention dropout draws cuDNN's own mask, so those tests check its
 * properties (repeats per key, unbiased, drops p of the mass, backward = gradient) instead.
 * Method and tolerances: test_cuda_ops.c. */
#include "tests/gpu/cuda_test.h"

/* ---- attention ---- */

static int64_t qkv_width(struct attention_shape s)
{
    return (int64_t)s.groups * (s.heads / s.groups + 2) * s.head_dim;
}

static bool rope_case(struct attention_shape s, int rotary_dim)
{
    int64_t N = s.batch * s.seq, W = qkv_width(s);
    float *qkv = randn(N * W, 1.0f), *dqkv = randn(N * W, 1.0f);
    int32_t *pos = rand_ids(N, 4096);
    void *gq = to_dev_lp(qkv, N * W), *gd = to_dev_lp(dqkv, N * W), *gp = to_dev(pos, N * 4);
    cpu_rope_forward(H2(qkv, N, W), H1(pos, DT_I32, N), s, rotary_dim, 10000.0f);
    cpu_rope_backward(H2(dqkv, N, W), H1(pos, DT_I32, N), s, rotary_dim, 10000.0f);
    cuda_rope_forward(D2(gq, A.dt, N, W), D1(gp, DT_I32, N), s, rotary_dim, 10000.0f);
    cuda_rope_backward(D2(gd, A.dt, N, W), D1(gp, DT_I32, N), s, rotary_dim, 10000.0f);
    printf("   rope n=%d g=%d d=%d rotary_dim=%d\n", s.heads, s.groups, s.head_dim, rotary_dim);
    return close_to("qkv (in place)", from_dev_lp(gq, N * W), qkv, N * W, TOL_LP) &
           close_to("dqkv (in place)", from_dev_lp(gd, N * W), dqkv, N * W, TOL_LP);
}

bool test_rope_matches_cpu(void)
{
    struct attention_shape a = shape(2, 64, 8, 2, 64), b = shape(1, 32, 4, 4, 128);
    return rope_case(a, 64) & rope_case(b, 32);
}

/* The natural-log LSE of every causal score row, in double: the CUDA backend's saved statistic. */
static float *reference_lse(const float *qkv, struct attention_shape s)
{
    int64_t T = s.seq, W = qkv_width(s);
    int per = s.heads / s.groups, d = s.head_dim;
    double scale = (float)(1.0 / sqrt((double)d));
    float *lse = halloc((size_t)s.batch * s.heads * T * 4);
    for (int64_t b = 0; b < s.batch; b++)
        for (int h = 0; h < s.heads; h++)
            for (int64_t t = 0; t < T; t++) {
                int64_t group = (int64_t)(h / per) * (per + 2) * d;
                const float *q = qkv + (b * T + t) * W + group + (int64_t)(h % per) * d;
                double mx = -INFINITY, sum = 0.0, sc[4096];
                CHECK(T <= 4096);
                for (int64_t u = 0; u <= t; u++) {
                    const float *k = qkv + (b * T + u) * W + group + (int64_t)per * d;
                    double dot = 0.0;
                    for (int i = 0; i < d; i++) dot += (double)q[i] * k[i];
                    sc[u] = dot * scale;
                    mx = sc[u] > mx ? sc[u] : mx;
                }
                for (int64_t u = 0; u <= t; u++) sum += exp(sc[u] - mx);
                lse[(b * s.heads + h) * T + t] = (float)(mx + log(sum));
            }
    return lse;
}

static bool attention_case(struct attention_shape s)
{
    int64_t N = s.batch * s.seq, W = qkv_width(s), C = (int64_t)s.heads * s.head_dim;
    int64_t rows = s.batch * s.heads * s.seq;
    struct dropout_key nodrop = {0};
    float *qkv = randn(N * W, 1.0f), *dout = randn(N * C, 1.0f);
    float *out = halloc(N * C * 4), *probs = halloc(rows * s.seq * 4), *dqkv = halloc(N * W * 4);
    struct tensor hprobs = H1(probs, DT_F32, rows * s.seq);
    cpu_attention_forward(H2(out, N, C), hprobs, H2(qkv, N, W), s, nodrop);
    round_to_dtype(out, N * C, A.dt); /* the backward reads O as the GPU stores it */
    cpu_attention_backward(H2(dqkv, N, W), H2(dout, N, C), H2(qkv, N, W),
                           hprobs, H2(out, N, C), s, nodrop);
    float *lse = reference_lse(qkv, s);

    void *gq = to_dev_lp(qkv, N * W), *gdo = to_dev_lp(dout, N * C);
    void *go = dalloc(N * C * 2), *gl = dalloc(rows * 4), *gd = dalloc(N * W * 2);
    poison(go, N * C, A.dt), poison(gl, rows, DT_F32), poison(gd, N * W, A.dt);
    int64_t ldims[3] = {s.batch, s.heads, s.seq};
    struct tensor glse = tensor_make(gl, DT_F32, DEV_CUDA, 3, ldims);
    /* linear_qkv's bias gradient with it: db += the column sums of the dqkv written */
    float *db0 = randn(W, 0.1f);
    void *gdb = to_dev(db0, W * 4);
    cuda_attention_forward(D2(go, A.dt, N, C), glse, D2(gq, A.dt, N, W), s, nodrop);
    cuda_attention_backward(D2(gd, A.dt, N, W), D1(gdb, DT_F32, W), D2(gdo, A.dt, N, C),
                            D2(gq, A.dt, N, W), glse, D2(go, A.dt, N, C), s, nodrop);
    printf("   attention B=%lld T=%lld n=%d g=%d d=%d\n", (long long)s.batch, (long long)s.seq,
           s.heads, s.groups, s.head_dim);
    bool ok = close_to("out", from_dev_lp(go, N * C), out, N * C, TOL_LP);
    ok &= close_to("log-sum-exp (vs double)", from_dev_f32(gl, rows), lse, rows, TOL_F32);
    float *got = from_dev_lp(gd, N * W), *want_db = copy_f(db0, W);
    ok &= close_to("dqkv", got, dqkv, N * W, TOL_LP);
    for (int64_t c = 0; c < W; c++) {
        double sum = 0.0;
        for (int64_t n = 0; n < N; n++) sum += got[n * W + c];
        want_db[c] = (float)(db0[c] + sum);
    }
    ok &= close_to("db (+= the dqkv written, summed)", from_dev_f32(gdb, W), want_db, W, 1e-6);
    return ok;
}

bool test_attention_mha_matches_cpu(void)
{
    struct attention_shape s = shape(2, 256, 4, 4, 64);
    return attention_case(s);
}

bool test_attention_gqa_matches_cpu(void)
{
    struct attention_shape s = shape(2, 128, 8, 2, 128);
    return attention_case(s);
}

bool test_attention_seq_not_multiple_of_128_matches_cpu(void)
{
    struct attention_shape s = shape(2, 96, 4, 1, 64);
    return attention_case(s);
}

/* The attention backward of our own (flash_backward.cu) in both its forms, by key blocks (the
 * default) and by heads (--deterministic-mode's): each against the CPU as every attention case and
 * against cuDNN's backward on the same forward; by key blocks twice more, the two within one bf16
 * rounding of each other (its fp32 parts of dQ are added in whatever order they come) and the
 * memory the backend keeps zero between ops left all zero; then, with --deterministic-mode's
 * switch (last: it stays on in this process), against the CPU again and twice bitwise (each dQ
 * element summed by one thread in one order). The shapes: more work items than SMs (5 x 40 heads),
 * T of one key block, GPT-2's T = 1024 (8 key blocks, query blocks seeing up to 8) and T = 2048
 * (16). bf16 only: fp16 has nothing to check. */
/* One forward on fresh inputs, then two backwards of it into got[0] and got[1], by first and
 * second. */
static void flash_backward_twice(struct attention_shape s, enum cuda_attention_backward first,
                                 enum cuda_attention_backward second, float *got[2])
{
    int64_t N = s.batch * s.seq, W = qkv_width(s), C = (int64_t)s.heads * s.head_dim;
    int64_t rows = s.batch * s.heads * s.seq;
    struct dropout_key nodrop = {0};
    float *qkv = randn(N * W, 1.0f), *dout = randn(N * C, 1.0f);
    void *gq = to_dev_lp(qkv, N * W), *gdo = to_dev_lp(dout, N * C);
    void *go = dalloc(N * C * 2), *gl = dalloc(rows * 4), *gd = dalloc(N * W * 2);
    int64_t ldims[3] = {s.batch, s.heads, s.seq};
    struct tensor glse = tensor_make(gl, DT_F32, DEV_CUDA, 3, ldims);
    cuda_attention_forward(D2(go, A.dt, N, C), glse, D2(gq, A.dt, N, W), s, nodrop);
    for (int run = 0; run < 2; run++) {
        cuda_attention_force_backward(run == 0 ? first : second);
        poison(gd, N * W, A.dt);
        cuda_attention_backward(D2(gd, A.dt, N, W), tensor_none(), D2(gdo, A.dt, N, C),
                                D2(gq, A.dt, N, W), glse, D2(go, A.dt, N, C), s, nodrop);
        got[run] = from_dev_lp(gd, N * W);
    }
}

bool test_attention_flash_backward_matches_cpu(void)
{
    if (A.dt != DT_BF16 || !cuda_attention_force_backward(CUDA_ATTENTION_BACKWARD_OURS)) {
        printf("   flash backward: bf16 on sm_90 only; nothing to check here\n");
        return true;
    }
    const struct attention_shape shapes[] = {shape(5, 256, 40, 40, 64), shape(2, 128, 3, 3, 64),
                                             shape(2, 1024, 24, 24, 64),
                                             shape(1, 2048, 4, 4, 64)};
    const enum cuda_attention_backward forms[2] = {CUDA_ATTENTION_BACKWARD_OURS,
                                                   CUDA_ATTENTION_BACKWARD_HEADS};
    const char *names[2] = {"by key blocks", "by heads"};
    enum { SHAPES = sizeof shapes / sizeof shapes[0] };
    const double one_rounding = 1.0 / 256; /* bf16's relative rounding step: 8 bits */
    bool ok = true;
    float *got[2];
    for (int k = 0; k < SHAPES; k++) {
        struct attention_shape s = shapes[k];
        int64_t n = s.batch * s.seq * qkv_width(s);
        for (int f = 0; f < 2; f++) {
            cuda_attention_force_backward(forms[f]);
            if (!cuda_attention_flash_backward_applies(s, A.dt, 0.0f)) {
                printf("    flash_backward_fits says no to this shape: FAIL\n");
                return false;
            }
            printf("   ours %s:\n", names[f]);
            ok &= attention_case(s);
            flash_backward_twice(s, forms[f], CUDA_ATTENTION_BACKWARD_CUDNN, got);
            ok &= close_to("dqkv, ours vs cuDNN's", got[0], got[1], n, TOL_LP);
        }
        flash_backward_twice(s, CUDA_ATTENTION_BACKWARD_OURS, CUDA_ATTENTION_BACKWARD_OURS, got);
        ok &= close_to("dqkv, by key blocks, twice", got[1], got[0], n, one_rounding);
        bool clear = cuda_zeroed_clear();
        printf("    %-34s %s\n", "kept-zero memory left zero", clear ? "ok" : "FAIL");
        ok &= clear;
    }
    cuda_attention_force_backward(CUDA_ATTENTION_BACKWARD_OURS);
    cuda_set_deterministic();
    for (int k = 0; k < SHAPES; k++) {
        printf("   deterministic:\n");
        ok &= attention_case(shapes[k]);
        flash_backward_twice(shapes[k], CUDA_ATTENTION_BACKWARD_OURS, CUDA_ATTENTION_BACKWARD_OURS,
                             got);
        ok &= bitwise("dqkv, deterministic, twice", got[1], got[0],
                      shapes[k].batch * shapes[k].seq * qkv_width(shapes[k]));
    }
    return ok;
}

/* ---- attention dropout (cuDNN's Philox mask: not the CPU's, so checked by its properties) ---- */

/* The forward, and the backward when gd is not NULL, at key drop into the given device buffers. */
static void gpu_attention(void *go, void *gl, void *gd, void *gq, void *gdo,
                          struct attention_shape s, struct dropout_key drop)
{
    int64_t N = s.batch * s.seq, W = qkv_width(s), C = (int64_t)s.heads * s.head_dim;
    int64_t ldims[3] = {s.batch, s.heads, s.seq};
    struct tensor glse = tensor_make(gl, DT_F32, DEV_CUDA, 3, ldims);
    cuda_attention_forward(D2(go, A.dt, N, C), glse, D2(gq, A.dt, N, W), s, drop);
    if (gd)
        cuda_attention_backward(D2(gd, A.dt, N, W), tensor_none(), D2(gdo, A.dt, N, C),
                                D2(gq, A.dt, N, W), glse, D2(go, A.dt, N, C), s, drop);
}

/* got differs from ref by a relative L2 of at least 0.1: a mask drawn anew changes each output
 * by about sqrt(p / (1 - p)) = 0.33 of itself (0.47 between two masks). */
static bool differs(const char *what, const float *got, const float *ref, int64_t n)
{
    double e = rel_l2(got, ref, n);
    bool ok = e >= 0.1 && isfinite(e);
    printf("    %-34s rel L2 %.2e from the first (want >= 0.1) %s\n", what, e, ok ? "ok" : "FAIL");
    return ok;
}

static bool dropout_repeat_case(struct attention_shape s)
{
    int64_t N = s.batch * s.seq, W = qkv_width(s), C = (int64_t)s.heads * s.head_dim;
    int64_t rows = s.batch * s.heads * s.seq;
    float *qkv = randn(N * W, 1.0f), *dout = randn(N * C, 1.0f);
    void *gq = to_dev_lp(qkv, N * W), *gdo = to_dev_lp(dout, N * C);
    void *go = dalloc(N * C * 2), *gl = dalloc(rows * 4), *gd = dalloc(N * W * 2);
    struct dropout_key key = {0.1f, A.seed, 1000, 4096, NULL}, nodrop = {0};
    float *out[2], *lse[2], *dqkv[2];
    for (int run = 0; run < 2; run++) {
        poison(go, N * C, A.dt), poison(gl, rows, DT_F32), poison(gd, N * W, A.dt);
        gpu_attention(go, gl, gd, gq, gdo, s, key);
        out[run] = from_dev_lp(go, N * C);
        lse[run] = from_dev_f32(gl, rows);
        dqkv[run] = from_dev_lp(gd, N * W);
    }
    printf("   attention dropout 0.1 B=%lld T=%lld n=%d g=%d d=%d\n", (long long)s.batch,
           (long long)s.seq, s.heads, s.groups, s.head_dim);
    bool ok = bitwise("out, same key", out[1], out[0], N * C);
    ok &= bitwise("log-sum-exp, same key", lse[1], lse[0], rows);
    /* cuDNN's backward sums dQ with fp32 atomics in no fixed order, so a few elements may differ in
     * their last bit between two runs (5 of 393216 seen in fp16); another mask moves dqkv by ~0.5 */
    ok &= close_to("dqkv, same key", dqkv[1], dqkv[0], N * W, 1e-3);
    /* every part of the key, and the tensor-parallel rank, changes the mask */
    struct dropout_key other_stream = key, other_offset = key;
    other_stream.stream++;
    other_offset.offset++;
    struct attention_shape other_rank = s;
    other_rank.head_offset = s.heads, other_rank.total_heads = 2 * s.heads;
    const struct {
        const char *what;
        struct dropout_key key;
        struct attention_shape s;
    } others[4] = {{"out, key with another stream", other_stream, s},
                   {"out, key with another offset", other_offset, s},
                   {"out, another rank's heads", key, other_rank},
                   {"out, no dropout", nodrop, s}};
    for (int i = 0; i < 4; i++) {
        poison(go, N * C, A.dt);
        gpu_attention(go, gl, NULL, gq, NULL, others[i].s, others[i].key);
        ok &= differs(others[i].what, from_dev_lp(go, N * C), out[0], N * C);
    }
    return ok;
}

/* T = 96 takes the backward's padding-mask workaround (cuDNN <= 9.15), T = 512 several key
 * blocks per query block. */
bool test_attention_dropout_repeats_per_key_and_changes_with_it(void)
{
    return dropout_repeat_case(shape(2, 128, 8, 2, 64)) & dropout_repeat_case(shape(2, 96, 4, 1, 64)) &
           dropout_repeat_case(shape(1, 512, 4, 4, 64));
}

/* n A.dt values from the device into x (widened) through tmp, allocating nothing. */
static void read_lp(float *x, uint16_t *tmp, const void *d, int64_t n)
{
    cuda_memcpy_d2h(tmp, d, (size_t)n * 2);
    for (int64_t i = 0; i < n; i++) x[i] = A.dt == DT_F16 ? f16_to_f32(tmp[i]) : bf16_to_f32(tmp[i]);
}

/* K keys at p = 0.1 against the undropped softmax P (the CPU's, on the same inputs). Per query
 * row r (b, h, t) with value columns c:
 *  - the LSE is that of the undropped softmax, for every key (TOL_F32);
 *  - unbiased: e_rc = mean over keys of out - out(no dropout) has mean 0 and variance
 *    s2_rc = p / (1 - p) sum_u P_ru^2 v_uc^2 / K, so z_r = sum_c e_rc^2 / sum_c s2_rc has mean 1
 *    and the rows' z (independent masks) average to within about 0.02 of 1 here; a missing
 *    1 / (1 - p) makes it about 3, a missing mask 0. Bound [0.85, 1.15].
 *  - with every value 1, out = (kept probability mass) / (1 - p), so the dropped mass
 *    D_r = 1 - (1 - p) out has mean p and variance p (1 - p) sum_u P_ru^2: its mean over rows
 *    and keys must be p within 6 of its standard deviations plus 2^-8 (16-bit rounding near
 *    1), and (D_r - p)^2 over that variance must average to 1 (elements dropped independently,
 *    not whole rows or columns; bound [0.85, 1.2]). */
bool test_attention_dropout_is_unbiased_and_drops_p_of_the_mass(void)
{
    struct attention_shape s = shape(2, 256, 4, 4, 64);
    const int K = 32;
    const float p = 0.1f;
    int64_t T = s.seq, d = s.head_dim, N = s.batch * T, W = qkv_width(s), C = s.heads * d;
    int64_t rows = s.batch * s.heads * T;
    int per = s.heads / s.groups;
    struct dropout_key nodrop = {0};
    float *qkv = randn(N * W, 1.0f), *ones = copy_f(qkv, N * W);
    for (int64_t i = 0; i < N * W; i++)
        if ((i % W) / d % (per + 2) == per + 1) ones[i] = 1.0f; /* the value heads */
    float *probs = halloc(rows * T * 4), *cpu_out = halloc(N * C * 4);
    cpu_attention_forward(H2(cpu_out, N, C), H1(probs, DT_F32, rows * T), H2(qkv, N, W), s, nodrop);
    float *lse_ref = reference_lse(qkv, s);
    void *gq = to_dev_lp(qkv, N * W), *g1 = to_dev_lp(ones, N * W);
    void *go = dalloc(N * C * 2), *gl = dalloc(rows * 4);
    uint16_t *tmp = halloc(N * C * 2);
    float *out0 = halloc(N * C * 4), *out = halloc(N * C * 4), *lse = halloc(rows * 4);
    double *mean = halloc(N * C * 8);
    gpu_attention(go, gl, NULL, gq, NULL, s, nodrop);
    read_lp(out0, tmp, go, N * C);
    double worst_lse = 0.0, mass = 0.0, mass_var = 0.0, spread = 0.0;
    for (int k = 0; k < K; k++) {
        struct dropout_key key = {p, A.seed, 500 + (uint64_t)k, 0, NULL};
        poison(gl, rows, DT_F32);
        gpu_attention(go, gl, NULL, gq, NULL, s, key);
        read_lp(out, tmp, go, N * C);
        for (int64_t i = 0; i < N * C; i++) mean[i] += (double)out[i] / K;
        cuda_memcpy_d2h(lse, gl, rows * 4);
        double e = rel_l2(lse, lse_ref, rows);
        worst_lse = e > worst_lse ? e : worst_lse;
        gpu_attention(go, gl, NULL, g1, NULL, s, key); /* every value 1 */
        read_lp(out, tmp, go, N * C);
        for (int64_t b = 0; b < s.batch; b++)
            for (int h = 0; h < s.heads; h++)
                for (int64_t t = 0; t < T; t++) {
                    const float *P = probs + ((b * s.heads + h) * T + t) * T;
                    double sq = 0.0, D = 1.0 - (1.0 - p) * out[(b * T + t) * C + h * d];
                    for (int64_t u = 0; u <= t; u++) sq += (double)P[u] * P[u];
                    double var = p * (1.0 - p) * sq;
                    mass += D / (double)(rows * K);
                    mass_var += var / ((double)rows * K * rows * K);
                    spread += (D - p) * (D - p) / var / (double)(rows * K);
                }
    }
    double z = 0.0;
    for (int64_t b = 0; b < s.batch; b++)
        for (int h = 0; h < s.heads; h++) {
            int64_t vcol = (int64_t)(h / per) * (per + 2) * d + (int64_t)(per + 1) * d;
            for (int64_t t = 0; t < T; t++) {
                const float *P = probs + ((b * s.heads + h) * T + t) * T;
                double e2 = 0.0, s2 = 0.0;
                for (int64_t c = 0; c < d; c++) {
                    int64_t i = (b * T + t) * C + h * d + c;
                    e2 += (mean[i] - out0[i]) * (mean[i] - out0[i]);
                }
                for (int64_t u = 0; u <= t; u++) {
                    const float *v = qkv + (b * T + u) * W + vcol;
                    double vv = 0.0;
                    for (int64_t c = 0; c < d; c++) vv += (double)v[c] * v[c];
                    s2 += (double)P[u] * P[u] * vv;
                }
                z += e2 / (s2 * p / (1.0 - p) / K) / (double)rows;
            }
        }
    double mass_tol = 6.0 * sqrt(mass_var) + 0x1p-8;
    bool lse_ok = worst_lse <= TOL_F32, z_ok = z >= 0.85 && z <= 1.15;
    bool mass_ok = fabs(mass - p) <= mass_tol, spread_ok = spread >= 0.85 && spread <= 1.2;
    printf("   attention dropout p=%g B=%lld T=%lld n=%d, %d keys\n", (double)p,
           (long long)s.batch, (long long)T, s.heads, K);
    printf("    %-34s worst rel L2 %.2e vs double (tol %.0e) %s\n", "log-sum-exp, every key",
           worst_lse, TOL_F32, lse_ok ? "ok" : "FAIL");
    printf("    %-34s %.3f (want 1, bound [0.85, 1.15]) %s\n", "mean-of-keys error / its sigma^2",
           z, z_ok ? "ok" : "FAIL");
    printf("    %-34s %.5f (want %g +- %.5f) %s\n", "dropped probability mass", mass, (double)p,
           mass_tol, mass_ok ? "ok" : "FAIL");
    printf("    %-34s %.3f (want 1, bound [0.85, 1.2]) %s\n", "dropped mass spread / its var",
           spread, spread_ok ? "ok" : "FAIL");
    return close_to("out, no dropout (vs CPU)", out0, cpu_out, N * C, TOL_LP) & lse_ok & z_ok &
           mass_ok & spread_ok;
}

/* f(x) = sum(out(x) * G) in double, from the GPU's 16-bit out. */
static double weighted_sum(const float *out, const float *G, int64_t n)
{
    double f = 0.0;
    for (int64_t i = 0; i < n; i++) f += (double)out[i] * G[i];
    return f;
}

/* The gradient g (16-bit dqkv) of f at qkv x for key drop; returns f(x). */
static double value_and_gradient(float *g, const float *x, const float *G, void *gdo,
                                 struct attention_shape s, struct dropout_key drop)
{
    int64_t N = s.batch * s.seq, W = qkv_width(s), C = (int64_t)s.heads * s.head_dim;
    int64_t rows = s.batch * s.heads * s.seq;
    void *gq = to_dev_lp(x, N * W), *go = dalloc(N * C * 2), *gl = dalloc(rows * 4);
    void *gd = dalloc(N * W * 2);
    poison(go, N * C, A.dt), poison(gd, N * W, A.dt);
    gpu_attention(go, gl, gd, gq, gdo, s, drop);
    memcpy(g, from_dev_lp(gd, N * W), (size_t)(N * W) * sizeof(float));
    return weighted_sum(from_dev_lp(go, N * C), G, N * C);
}

/* The backward is the gradient of the forward at a fixed key. For each of the Q, K and V parts,
 * x1 = x0 + dx moves each element of that part by 2^-6 of itself in the direction of its
 * gradient, rounded to the 16-bit type (so dx is exact and both points are the GPU's inputs),
 * and f(x1) - f(x0) must equal the trapezoid rule <(g(x0) + g(x1)) / 2, dx>, whose error is
 * third order in the step. 16-bit rounding of out and P perturbs each f by about
 * 2^-9 sqrt(sum (out G)^2) ~ 0.05 against differences of 50 to 500, and the gradients' 16-bit
 * errors (3e-3 in L2, unsigned against dx) cancel in the sum: agreement to ~1e-3 is expected,
 * TOL_LP = 1e-2 required. The control, the gradient of another key's mask, misses by ~10%:
 * it must fail the same bound, so the check can tell the masks apart. */
bool test_attention_dropout_backward_is_the_gradient(void)
{
    struct attention_shape s = shape(2, 128, 4, 2, 64);
    int64_t N = s.batch * s.seq, W = qkv_width(s), C = (int64_t)s.heads * s.head_dim;
    int per = s.heads / s.groups;
    struct dropout_key key = {0.1f, A.seed, 77, 0, NULL}, other = {0.1f, A.seed, 78, 0, NULL};
    float *x0 = randn(N * W, 1.0f), *G = randn(N * C, 1.0f);
    void *gdo = to_dev_lp(G, N * C);
    float *g0 = halloc(N * W * 4), *g1 = halloc(N * W * 4), *h0 = halloc(N * W * 4);
    float *h1 = halloc(N * W * 4), *x1 = halloc(N * W * 4);
    double f0 = value_and_gradient(g0, x0, G, gdo, s, key);
    value_and_gradient(h0, x0, G, gdo, s, other);
    printf("   attention dropout 0.1 B=%lld T=%lld n=%d g=%d d=%d\n", (long long)s.batch,
           (long long)s.seq, s.heads, s.groups, s.head_dim);
    bool ok = true;
    const char *names[3] = {"Q", "K", "V"};
    for (int part = 0; part < 3; part++) {
        for (int64_t i = 0; i < N * W; i++) {
            int in_group = (int)((i % W) / s.head_dim % (per + 2));
            int which = in_group < per ? 0 : in_group - per + 1;
            float step = which == part ? 0x1p-6f * fabsf(x0[i]) : 0.0f;
            x1[i] = x0[i] + (g0[i] > 0 ? step : g0[i] < 0 ? -step : 0.0f);
        }
        round_to_dtype(x1, N * W, A.dt);
        double f1 = value_and_gradient(g1, x1, G, gdo, s, key);
        value_and_gradient(h1, x1, G, gdo, s, other);
        double dg = 0.0, dh = 0.0;
        for (int64_t i = 0; i < N * W; i++) {
            double dx = (double)x1[i] - x0[i];
            dg += 0.5 * ((double)g0[i] + g1[i]) * dx;
            dh += 0.5 * ((double)h0[i] + h1[i]) * dx;
        }
        double fd = f1 - f0, err = fabs(fd - dg) / fabs(dg), err_other = fabs(fd - dh) / fabs(dg);
        bool good = err <= TOL_LP && err_other > TOL_LP;
        printf("    d%s: f(x1) - f(x0) %10.4f, <g, dx> %10.4f: rel err %.1e (tol %.0e); "
               "another key's gradient %.1e %s\n",
               names[part], fd, dg, err, TOL_LP, err_other, good ? "ok" : "FAIL");
        ok &= good;
    }
    return ok;
}

/* ---- elementwise ---- */

/* Element e of a site is kept iff rng_uniform(seed, stream, offset + e) >= p (ops.h). */
static bool kept(struct dropout_key d, int64_t e)
{
    return rng_uniform(d.seed, d.stream, d.offset + (uint64_t)e) >= d.p;
}

bool test_bias_dropout_add_matches_cpu_and_cpu_mask(void)
{
    const int64_t N = 200, C = 264;
    struct dropout_key drop = {0.1f, A.seed, 77, 12345, NULL};
    float *x = randn(N * C, 1.0f), *b = randn(C, 0.5f), *r = randn(N * C, 1.0f);
    float *dy = randn(N * C, 1.0f), *db0 = randn(C, 0.1f);
    float *y = halloc(N * C * 4), *y2 = halloc(N * C * 4), *dx = halloc(N * C * 4);
    float *db = copy_f(db0, C);
    cpu_bias_dropout_add_forward(H2(y, N, C), H2(x, N, C), H1(b, DT_F32, C), H2(r, N, C), drop);
    cpu_bias_dropout_add_forward(H2(y2, N, C), H2(x, N, C), H1(b, DT_F32, C), tensor_none(), drop);
    cpu_bias_dropout_add_backward(H2(dx, N, C), H1(db, DT_F32, C), H2(dy, N, C), drop);

    void *gx = to_dev_lp(x, N * C), *gb = to_dev_lp(b, C), *gr = to_dev_lp(r, N * C);
    void *gx2 = to_dev_lp(x, N * C), *gdy = to_dev_lp(dy, N * C), *gdb = to_dev(db0, C * 4);
    /* y aliases x (in place), y2 has no residual; dx aliases dy */
    cuda_bias_dropout_add_forward(D2(gx, A.dt, N, C), D2(gx, A.dt, N, C), D1(gb, A.dt, C),
                                  D2(gr, A.dt, N, C), drop);
    cuda_bias_dropout_add_forward(D2(gx2, A.dt, N, C), D2(gx2, A.dt, N, C),
                                  D1(gb, A.dt, C), tensor_none(), drop);
    cuda_bias_dropout_add_backward(D2(gdy, A.dt, N, C), D1(gdb, DT_F32, C),
                                   D2(gdy, A.dt, N, C), drop);
    float *gy2 = from_dev_lp(gx2, N * C), *gdx = from_dev_lp(gdy, N * C);
    int64_t wrong = 0, dropped = 0;
    for (int64_t e = 0; e < N * C; e++) {
        bool keep = kept(drop, e);
        dropped += !keep;
        if (x[e] + b[e % C] != 0.0f && (gy2[e] != 0.0f) != keep) wrong++;
        if (dy[e] != 0.0f && (gdx[e] != 0.0f) != keep) wrong++;
    }
    printf("    %-34s %lld dropped of %lld, %lld disagree with rng.h %s\n", "masks",
           (long long)dropped, (long long)(N * C), (long long)wrong, wrong ? "FAIL" : "ok");
    bool ok = wrong == 0 && dropped > 0;
    ok &= close_to("y = dropout(x + b) + r", from_dev_lp(gx, N * C), y, N * C, TOL_LP);
    ok &= close_to("y = dropout(x + b)", gy2, y2, N * C, TOL_LP);
    ok &= close_to("dx", gdx, dx, N * C, TOL_LP);
    ok &= close_to("db (+=)", from_dev_f32(gdb, C), db, C, TOL_F32);
    return ok;
}

/* A key whose iteration part is in device memory (a captured step's) draws the mask of the key
 * resolved on the host: bias-dropout-add forward and backward, the fused bias-dropout-add +
 * LayerNorm, and attention's cuDNN seed, each bitwise. */
bool test_dropout_stream_in_device_memory_is_the_same_mask(void)
{
    const int64_t N = 200, C = 264;
    const uint64_t iteration = 0x9e3779b97f4a7c15ull * 5, site = 77;
    struct dropout_key host = {0.1f, A.seed, rng_mix64(iteration ^ site), 12345, NULL};
    struct dropout_key dev = {0.1f, A.seed, site, 12345, to_dev(&iteration, sizeof iteration)};
    float *x = randn(N * C, 1.0f), *b = randn(C, 0.5f), *r = randn(N * C, 1.0f), *w = randn(C, 1.0f);
    void *gx = to_dev_lp(x, N * C), *gb = to_dev_lp(b, C), *gr = to_dev_lp(r, N * C), *gw = to_dev_lp(w, C);
    float *y[2], *dx[2], *db[2], *mid[2], *ny[2];
    for (int k = 0; k < 2; k++) {
        struct dropout_key key = k ? dev : host;
        void *gy = dalloc(N * C * 2), *gdx = dalloc(N * C * 2), *gdb = dalloc(C * 4);
        void *gmid = dalloc(N * C * 2), *gny = dalloc(N * C * 2), *gm = dalloc(N * 4), *gs = dalloc(N * 4);
        cuda_memset_zero(gdb, C * 4);
        cuda_bias_dropout_add_forward(D2(gy, A.dt, N, C), D2(gx, A.dt, N, C), D1(gb, A.dt, C), D2(gr, A.dt, N, C),
                                      key);
        cuda_bias_dropout_add_backward(D2(gdx, A.dt, N, C), D1(gdb, DT_F32, C), D2(gr, A.dt, N, C), key);
        cuda_bias_dropout_add_layernorm_forward(D2(gmid, A.dt, N, C), D2(gny, A.dt, N, C), D1(gm, DT_F32, N),
                                                D1(gs, DT_F32, N), D2(gx, A.dt, N, C), D1(gb, A.dt, C),
                                                D2(gr, A.dt, N, C), key, D1(gw, A.dt, C), D1(gb, A.dt, C), 1e-5f);
        y[k] = from_dev_lp(gy, N * C), dx[k] = from_dev_lp(gdx, N * C), db[k] = from_dev_f32(gdb, C);
        mid[k] = from_dev_lp(gmid, N * C), ny[k] = from_dev_lp(gny, N * C);
    }
    printf("   dropout 0.1, stream on the host vs in device memory, N=%lld C=%lld\n", (long long)N, (long long)C);
    bool ok = bitwise("bias-dropout-add y", y[1], y[0], N * C) & bitwise("its dx", dx[1], dx[0], N * C) &
              bitwise("its db", db[1], db[0], C) & bitwise("fused with layernorm: mid", mid[1], mid[0], N * C) &
              bitwise("fused with layernorm: y", ny[1], ny[0], N * C);
    struct attention_shape s = shape(2, 128, 4, 4, 64);
    int64_t M = s.batch * s.seq, W = qkv_width(s), H = (int64_t)s.heads * s.head_dim;
    int64_t rows = s.batch * s.heads * s.seq;
    void *gq = to_dev_lp(randn(M * W, 1.0f), M * W);
    float *out[2], *lse[2];
    for (int k = 0; k < 2; k++) {
        void *go = dalloc(M * H * 2), *gl = dalloc(rows * 4);
        gpu_attention(go, gl, NULL, gq, NULL, s, k ? dev : host);
        out[k] = from_dev_lp(go, M * H), lse[k] = from_dev_f32(gl, rows);
    }
    struct dropout_key other = dev;
    other.stream++; /* and the site's part still counts */
    void *go = dalloc(M * H * 2), *gl = dalloc(rows * 4);
    gpu_attention(go, gl, NULL, gq, NULL, s, other);
    ok &= bitwise("attention out", out[1], out[0], M * H) & bitwise("attention lse", lse[1], lse[0], rows);
    ok &= differs("attention out, another site", from_dev_lp(go, M * H), out[0], M * H);
    return ok;
}

bool test_add_zero_and_copy(void)
{
    const int64_t n = 10007;
    float *a = randn(n, 1.0f), *b = randn(n, 1.0f), *y = halloc(n * 4), *z = halloc(n * 4);
    cpu_add(H1(y, DT_F32, n), H1(a, DT_F32, n), H1(b, DT_F32, n));
    void *ga = to_dev_lp(a, n), *gb = to_dev_lp(b, n), *gy = dalloc(n * 2), *gz = dalloc(n * 4);
    void *gc = dalloc(n * 2);
    poison(gy, n, A.dt), poison(gz, n, DT_F32), poison(gc, n, A.dt);
    cuda_copy(D1(gc, A.dt, n), D1(ga, A.dt, n)); /* before a changes below */
    cuda_add(D1(gy, A.dt, n), D1(ga, A.dt, n), D1(gb, A.dt, n));
    cuda_add(D1(ga, A.dt, n), D1(ga, A.dt, n), D1(gb, A.dt, n)); /* y aliases a */
    cuda_zero(D1(gz, DT_F32, n));
    bool ok = close_to("y = a + b", from_dev_lp(gy, n), y, n, TOL_LP);
    ok &= close_to("a += b (aliased)", from_dev_lp(ga, n), y, n, TOL_LP);
    ok &= bitwise("zero", from_dev_f32(gz, n), z, n);
    ok &= bitwise("copy", from_dev_lp(gc, n), a, n);
    return ok;
}

/* ---- loss ---- */

/* In place (as the LM head does) or into its own buffer. V = 50304 takes the backward that keeps
 * a row in shared memory; V = 128256 (Llama 3's vocabulary) is past it (statistics, then a second
 * read); V = 1003 has no 16-byte pieces. */
static bool cross_entropy_case(int64_t N, int64_t V, bool in_place)
{
    float *logits = randn(N * V, 3.0f), *dl = randn(N, 1.0f), *loss = halloc(N * 4);
    float *dlogits = halloc(N * V * 4);
    int32_t *t = rand_ids(N, V);
    cpu_cross_entropy_forward(H1(loss, DT_F32, N), H2(logits, N, V), H1(t, DT_I32, N));
    cpu_cross_entropy_backward(H2(dlogits, N, V), H2(logits, N, V), H1(t, DT_I32, N),
                               H1(dl, DT_F32, N));
    void *gl = to_dev_lp(logits, N * V), *gt = to_dev(t, N * 4), *gdl = to_dev(dl, N * 4);
    void *gloss = dalloc(N * 4), *gd = in_place ? gl : dalloc(N * V * 2);
    poison(gloss, N, DT_F32);
    if (!in_place) poison(gd, N * V, A.dt);
    cuda_cross_entropy_forward(D1(gloss, DT_F32, N), D2(gl, A.dt, N, V), D1(gt, DT_I32, N));
    cuda_cross_entropy_backward(D2(gd, A.dt, N, V), D2(gl, A.dt, N, V), D1(gt, DT_I32, N),
                                D1(gdl, DT_F32, N));
    printf("   cross-entropy N=%lld V=%lld%s\n", (long long)N, (long long)V,
           in_place ? " (in place)" : "");
    bool ok = close_to("losses (fp32)", from_dev_f32(gloss, N), loss, N, TOL_F32) &
              close_to(in_place ? "dlogits (in place)" : "dlogits", from_dev_lp(gd, N * V), dlogits,
                       N * V, TOL_LP);
    /* the forward and backward in one op (a training step's forward), on fresh copies */
    void *fl = to_dev_lp(logits, N * V), *fd = in_place ? fl : dalloc(N * V * 2), *floss = dalloc(N * 4);
    poison(floss, N, DT_F32);
    if (!in_place) poison(fd, N * V, A.dt);
    cuda_cross_entropy_forward_backward(D1(floss, DT_F32, N), D2(fd, A.dt, N, V), D2(fl, A.dt, N, V),
                                        D1(gt, DT_I32, N), D1(gdl, DT_F32, N));
    ok &= close_to("fused: losses (fp32)", from_dev_f32(floss, N), loss, N, TOL_F32);
    ok &= close_to("fused: dlogits", from_dev_lp(fd, N * V), dlogits, N * V, TOL_LP);
    return ok;
}

bool test_cross_entropy_matches_cpu(void)
{
    return cross_entropy_case(64, 50304, true) & cross_entropy_case(300, 50304, false) &
           cross_entropy_case(33, 1003, true) & cross_entropy_case(5, 1003, false) &
           cross_entropy_case(12, 128256, true) & cross_entropy_case(3, 16, true);
}

/* op_output_layer_cross_entropy against the CPU's logits (rounded to A.dt, as the GPU's are)
 * and cross-entropy: the losses, and the gradient as probs times row_scale where the op says its
 * rows are scaled. With bf16 on Hopper the GEMM's epilogue computes the exponentials (the op must
 * say so); rows_blown multiplies rows 0 and 5 of x by 300 (their logits spread past what the
 * exponentials hold), which the fallback must redo as the unfused path (row_scale all 1). N and V
 * past whole tiles (128 rows, 192 columns) leave partial tiles. Also op_scale_rows. */
static bool output_layer_ce_case(int64_t N, int64_t H, int64_t V, bool rows_blown)
{
    float *x = randn(N * H, 1.0f), *w = randn(V * H, 0.05f), *dl = randn(N, 1.0f);
    if (rows_blown)
        for (int64_t k = 0; k < H; k++) x[k] *= 300.0f, x[5 * H + k] *= 300.0f;
    round_to_dtype(x, N * H, A.dt);
    int32_t *t = rand_ids(N, V);
    float *logits = halloc(N * V * 4), *loss = halloc(N * 4);
    cpu_linear_forward(H2(logits, N, V), H2(x, N, H), H2(w, V, H), tensor_none());
    round_to_dtype(logits, N * V, A.dt);
    cpu_cross_entropy_forward(H1(loss, DT_F32, N), H2(logits, N, V), H1(t, DT_I32, N));
    cpu_cross_entropy_backward(H2(logits, N, V), H2(logits, N, V), H1(t, DT_I32, N),
                               H1(dl, DT_F32, N));
    void *gx = to_dev_lp(x, N * H), *gw = to_dev_lp(w, V * H), *gt = to_dev(t, N * 4);
    void *gdl = to_dev(dl, N * 4), *gp = dalloc(N * V * 2), *gloss = dalloc(N * 4);
    void *gs = dalloc(N * 4);
    poison(gp, N * V, A.dt), poison(gloss, N, DT_F32), poison(gs, N, DT_F32);
    const bool scaled = cuda_output_layer_cross_entropy(
        D1(gloss, DT_F32, N), D2(gp, A.dt, N, V), D1(gs, DT_F32, N), D2(gx, A.dt, N, H),
        D2(gw, A.dt, V, H), D1(gt, DT_I32, N), D1(gdl, DT_F32, N));
    printf("   output layer + cross-entropy N=%lld H=%lld V=%lld%s: %s\n", (long long)N,
           (long long)H, (long long)V, rows_blown ? " (two rows past the range)" : "",
           scaled ? "fused" : "unfused");
    bool ok = true;
    const bool fusing = A.dt == DT_BF16 && cuda_linear_hopper_gemm_available();
    if (scaled != fusing) {
        printf("   the op %s the exponentials where it should%s\n",
               scaled ? "fused" : "did not fuse", scaled ? " not" : "");
        ok = false;
    }
    float *probs = from_dev_lp(gp, N * V), *rs = scaled ? from_dev_f32(gs, N) : NULL;
    if (scaled) {
        for (int64_t n = 0; n < N; n++)
            for (int64_t v = 0; v < V; v++) probs[n * V + v] *= rs[n];
        if (rows_blown) { /* the fallback ran: every row as the unfused path left it */
            int64_t not_one = 0;
            for (int64_t n = 0; n < N; n++) not_one += rs[n] != 1.0f;
            if (not_one)
                printf("   %lld rows' scale is not 1 after the fallback\n", (long long)not_one);
            ok &= not_one == 0;
        }
    }
    ok &= close_to("losses (fp32)", from_dev_f32(gloss, N), loss, N, TOL_F32);
    ok &= close_to("dlogits = row_scale probs", probs, logits, N * V, TOL_LP);
    /* op_scale_rows: x's rows by dl, and in place */
    float *xs = halloc(N * H * 4);
    cpu_scale_rows(H2(xs, N, H), H2(x, N, H), H1(dl, DT_F32, N));
    void *gy = dalloc(N * H * 2);
    poison(gy, N * H, A.dt);
    cuda_scale_rows(D2(gy, A.dt, N, H), D2(gx, A.dt, N, H), D1(gdl, DT_F32, N));
    cuda_scale_rows(D2(gx, A.dt, N, H), D2(gx, A.dt, N, H), D1(gdl, DT_F32, N));
    ok &= close_to("scale_rows", from_dev_lp(gy, N * H), xs, N * H, TOL_LP);
    ok &= close_to("scale_rows (in place)", from_dev_lp(gx, N * H), xs, N * H, TOL_LP);
    return ok;
}

bool test_output_layer_cross_entropy_matches_cpu(void)
{
    return output_layer_ce_case(300, 768, 50304, false) &
           output_layer_ce_case(64, 64, 1000, false) & output_layer_ce_case(200, 128, 4000, true);
}

/* One rank's shard [start, start + V) of a vocabulary of 3V; the other ranks' statistics are
 * stood in for by a global max above the local one, which the rescale must apply. */
bool test_vocab_parallel_cross_entropy_matches_cpu(void)
{
    const int64_t N = 48, V = 1000, start = 1000;
    float *logits = randn(N * V, 3.0f), *dl = randn(N, 1.0f);
    int32_t *t = rand_ids(N, 3 * V);
    float *mx = halloc(N * 4), *se = halloc(N * 4), *tl = halloc(N * 4), *gmax = halloc(N * 4);
    float *loss = halloc(N * 4), *lse = halloc(N * 4), *dlogits = halloc(N * V * 4);
    cpu_vocab_parallel_ce_stats(H1(mx, DT_F32, N), H1(se, DT_F32, N), H1(tl, DT_F32, N),
                                H2(logits, N, V), H1(t, DT_I32, N), start);
    for (int64_t n = 0; n < N; n++) gmax[n] = mx[n] + 0.25f * (float)(n % 3);
    void *gl = to_dev_lp(logits, N * V), *gt = to_dev(t, N * 4), *gdl = to_dev(dl, N * 4);
    void *ggm = to_dev(gmax, N * 4), *gmx = dalloc(N * 4), *gse = dalloc(N * 4);
    void *gtl = dalloc(N * 4), *gloss = dalloc(N * 4), *glse = dalloc(N * 4);
    poison(gmx, N, DT_F32), poison(gse, N, DT_F32), poison(gtl, N, DT_F32);
    poison(gloss, N, DT_F32), poison(glse, N, DT_F32);
    cuda_vocab_parallel_ce_stats(D1(gmx, DT_F32, N), D1(gse, DT_F32, N), D1(gtl, DT_F32, N),
                                 D2(gl, A.dt, N, V), D1(gt, DT_I32, N), start);
    bool ok = bitwise("row_max", from_dev_f32(gmx, N), mx, N);
    ok &= close_to("sum_exp", from_dev_f32(gse, N), se, N, TOL_F32);
    ok &= bitwise("target_logit", from_dev_f32(gtl, N), tl, N);
    cpu_vocab_parallel_ce_rescale(H1(se, DT_F32, N), H1(mx, DT_F32, N), H1(gmax, DT_F32, N));
    cpu_vocab_parallel_ce_loss(H1(loss, DT_F32, N), H1(lse, DT_F32, N), H1(gmax, DT_F32, N),
                               H1(se, DT_F32, N), H1(tl, DT_F32, N));
    cpu_vocab_parallel_ce_backward(H2(dlogits, N, V), H2(logits, N, V), H1(t, DT_I32, N), start,
                                   H1(lse, DT_F32, N), H1(dl, DT_F32, N));
    cuda_vocab_parallel_ce_rescale(D1(gse, DT_F32, N), D1(gmx, DT_F32, N), D1(ggm, DT_F32, N));
    cuda_vocab_parallel_ce_loss(D1(gloss, DT_F32, N), D1(glse, DT_F32, N), D1(ggm, DT_F32, N),
                                D1(gse, DT_F32, N), D1(gtl, DT_F32, N));
    cuda_vocab_parallel_ce_backward(D2(gl, A.dt, N, V), D2(gl, A.dt, N, V),
                                    D1(gt, DT_I32, N), start, D1(glse, DT_F32, N),
                                    D1(gdl, DT_F32, N));
    ok &= close_to("sum_exp rescaled", from_dev_f32(gse, N), se, N, TOL_F32);
    ok &= close_to("lse", from_dev_f32(glse, N), lse, N, TOL_F32);
    ok &= close_to("losses", from_dev_f32(gloss, N), loss, N, TOL_F32);
    ok &= close_to("dlogits (in place)", from_dev_lp(gl, N * V), dlogits, N * V, TOL_LP);
    return ok;
}

/* ---- determinism ---- */

bool test_gradient_reductions_repeat_bitwise(void)
{
    const int64_t N = 4096, C = 768, V = 50;
    float *dy = randn(N * C, 1.0f), *x = randn(N * C, 1.0f);
    int32_t *tok = rand_ids(N, V);
    void *gdy = to_dev_lp(dy, N * C), *gx = to_dev_lp(x, N * C), *gt = to_dev(tok, N * 4);
    void *gw = to_dev_lp(randn(C * C, 0.05f), C * C);
    float *first[3] = {0};
    bool ok = true;
    for (int run = 0; run < 2; run++) {
        void *db = dalloc(C * 4), *dw = dalloc(C * C * 4), *dwte = dalloc(V * C * 4);
        cuda_memset_zero(db, C * 4), cuda_memset_zero(dw, C * C * 4);
        cuda_memset_zero(dwte, V * C * 4);
        cuda_linear_backward(tensor_none(), D2(dw, DT_F32, C, C), D1(db, DT_F32, C),
                             D2(gdy, A.dt, N, C), D2(gx, A.dt, N, C), D2(gw, A.dt, C, C));
        cuda_embedding_backward(D2(dwte, DT_F32, V, C), 0, tensor_none(),
                                D2(gdy, A.dt, N, C), D1(gt, DT_I32, N), tensor_none());
        float *now[3] = {from_dev_f32(db, C), from_dev_f32(dw, C * C), from_dev_f32(dwte, V * C)};
        if (run == 0) {
            memcpy(first, now, sizeof now);
            continue;
        }
        ok &= bitwise("linear db, second run", now[0], first[0], C);
        ok &= bitwise("linear dw, second run", now[1], first[1], C * C);
        ok &= bitwise("embedding dwte, second run", now[2], first[2], V * C);
    }
    /* linear_fc2's backward through the GeLU: the bias gradient of either path, and dpre */
    for (int form = 0; form < 2; form++) {
        void *pre = to_dev_lp(randn(N * C, 2.0f), N * C), *dpre = dalloc(N * C * 2);
        float *dbs[2], *dpres[2];
        for (int run = 0; run < 2; run++) {
            void *db = dalloc(C * 4);
            cuda_memset_zero(db, C * 4);
            cuda_linear_dgelu_backward(D2(dpre, A.dt, N, C), D1(db, DT_F32, C), tensor_none(),
                                       D2(gdy, A.dt, N, C), tensor_none(),
                                       D2(gw, A.dt, C, C), D2(pre, A.dt, N, C), form == 1);
            dbs[run] = from_dev_f32(db, C);
            dpres[run] = from_dev_lp(dpre, N * C);
        }
        ok &= bitwise(form ? "dgelu (tanh) fc1 db, second run" : "dgelu (erf) fc1 db, second run",
                      dbs[1], dbs[0], C);
        ok &= bitwise("dgelu dpre, second run", dpres[1], dpres[0], N * C);
    }
    /* the norm backwards with the residual add: dx, dw (and db) and the residual's column sums of
       the one-pass kernel */
    for (int rms = 0; rms < 2; rms++) {
        void *nw = to_dev_lp(randn(C, 1.0f), C), *dres = to_dev_lp(randn(N * C, 1.0f), N * C);
        float *m = randn(N, 0.1f), *r = randn(N, 0.2f);
        for (int64_t i = 0; i < N; i++) r[i] = 1.0f + fabsf(r[i]);
        void *gm = to_dev(m, N * 4), *gr = to_dev(r, N * 4), *dx = dalloc(N * C * 2);
        float *got[2][4];
        for (int run = 0; run < 2; run++) {
            void *dw = dalloc(C * 4), *db = dalloc(C * 4), *rs = dalloc(C * 4);
            cuda_memset_zero(dw, C * 4), cuda_memset_zero(db, C * 4), cuda_memset_zero(rs, C * 4);
            if (rms)
                cuda_rmsnorm_backward_add(D2(dx, A.dt, N, C), D1(dw, DT_F32, C),
                                          D2(gdy, A.dt, N, C), D2(gx, A.dt, N, C),
                                          D1(nw, A.dt, C), D1(gr, DT_F32, N),
                                          D2(dres, A.dt, N, C), D1(rs, DT_F32, C));
            else
                cuda_layernorm_backward_add(D2(dx, A.dt, N, C), D1(dw, DT_F32, C),
                                            D1(db, DT_F32, C), D2(gdy, A.dt, N, C),
                                            D2(gx, A.dt, N, C), D1(nw, A.dt, C),
                                            D1(gm, DT_F32, N), D1(gr, DT_F32, N),
                                            D2(dres, A.dt, N, C), D1(rs, DT_F32, C));
            got[run][0] = from_dev_lp(dx, N * C);
            got[run][1] = from_dev_f32(dw, C);
            got[run][2] = from_dev_f32(db, C);
            got[run][3] = from_dev_f32(rs, C);
        }
        ok &= bitwise(rms ? "rmsnorm backward dx, second run" : "layernorm backward dx, second run",
                      got[1][0], got[0][0], N * C);
        ok &= bitwise(rms ? "rmsnorm dw, second run" : "layernorm dw, second run", got[1][1],
                      got[0][1], C);
        if (!rms) ok &= bitwise("layernorm db, second run", got[1][2], got[0][2], C);
        ok &= bitwise("the residual's column sums, second run", got[1][3], got[0][3], C);
    }
    return ok;
}
