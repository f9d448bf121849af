/* GPU checks of the optimizer kernels: Adam bitwise the CPU's adam_update, over one range and in
 * the one launch over a model's pieces (cuda_adam_update_chunks: weight decay on some pieces and
 * off on others, the 16-bit copy of the new weights bitwise the CPU's rounding into A.dt, the
 * step's scalars read from device memory: a step clipped as clip_scale clips, steps skipped for an
 * infinite and a NaN norm); SGD with and without momentum the same way (cuda_sgd_update_chunks
 * against sgd_update); and the sum of squares that gradient clipping takes, returned or added to
 * a device value. */
#include "optim/adam.h"
#include "optim/clip.h"
#include "optim/sgd.h"
#include "tests/gpu/cuda_test.h"

/* Pieces of a flat buffer of n elements laid out as a model's would be: long weights with decay,
 * short biases without, one longer than a chunk so it is cut; the moments of each piece sit at
 * another offset (as a shard's compact state does). Unaligned: pieces at odd offsets and of odd
 * lengths (the kernel's one-at-a-time path); aligned: every piece at a multiple of 4 elements, the
 * last with a tail of 3 (the 16-byte path). Returns the number of chunks written. */
static int64_t make_chunks(struct cuda_optim_chunk *out, int64_t *n_out, int64_t *state_n, bool aligned)
{
    const int64_t odd[] = {3 * CUDA_OPTIM_CHUNK + 17, 768, 589824, 1, 2304, 100003, 31};
    const int64_t even[] = {3 * CUDA_OPTIM_CHUNK + 16, 768, 589824, 4, 2304, 100004, 31};
    const int64_t *lens = aligned ? even : odd;
    int64_t at = aligned ? 8 : 5, state = 0, k = 0; /* elements before `at` belong to no piece: left alone */
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        for (int64_t c = 0; c < lens[i]; c += CUDA_OPTIM_CHUNK) {
            int64_t len = lens[i] - c < CUDA_OPTIM_CHUNK ? lens[i] - c : CUDA_OPTIM_CHUNK;
            out[k++] = (struct cuda_optim_chunk){at + c, state + c, (int32_t)len, (int32_t)(i % 2 == 0)};
        }
        at += lens[i];
        state += lens[i];
    }
    *n_out = at + 3;
    *state_n = state;
    return k;
}

/* The steps of the chunk cases: the gradient norm squared the device is told, and the clip
 * threshold. Step 2 is clipped, 3 and 4 are skipped (their norms are not finite), 5 is taken again. */
enum { CHUNK_STEPS = 5 };
static const double STEP_NORM_SQ[CHUNK_STEPS] = {0.25, 100.0, INFINITY, NAN, 0.5};
static const double MAX_NORM = 1.0;

/* The step's scalars in device memory for the step-th update (1-based) at rates lr, wd. */
static struct cuda_step_scalars *scalars_on_device(void *dev, double norm_sq, double lr, double wd,
                                                   struct adam_params ap, int64_t step)
{
    struct cuda_step_scalars s;
    cuda_step_scalars_fill(&s, lr, wd, ap, step, MAX_NORM, 1.0);
    s.norm_sq = norm_sq;
    cuda_memcpy_h2d(dev, &s, sizeof s);
    return dev;
}

/* What the CPU does to g before the update of a step with this norm: false when it skips. */
static bool cpu_clip(float *g, int64_t n, double norm_sq)
{
    double coeff = 1.0, norm = sqrt(norm_sq);
    if (!isfinite(norm)) return false;
    if (clip_coeff(norm, MAX_NORM, &coeff)) clip_scale(&g, &n, 1, coeff);
    return true;
}

static bool adam_chunks_case(bool decoupled, bool aligned)
{
    struct cuda_optim_chunk chunks[256];
    int64_t n = 0, sn = 0, nc = make_chunks(chunks, &n, &sn, aligned);
    const int64_t lead = aligned ? 8 : 5;
    struct adam_params ap = adam_params_default();
    ap.decoupled_weight_decay = decoupled;
    float *p = randn(n, 1.0f), *m = halloc(sn * 4), *v = halloc(sn * 4);
    float *gp = to_dev(p, n * 4), *gm = to_dev(m, sn * 4), *gv = to_dev(v, sn * 4);
    void *gc = to_dev(chunks, (size_t)nc * sizeof chunks[0]), *gg = dalloc(n * 4), *glp = dalloc(n * 2);
    void *gs = dalloc(sizeof(struct cuda_step_scalars));
    poison(glp, n, A.dt);
    int64_t step = 0;
    for (int k = 0; k < CHUNK_STEPS; k++) {
        float *g = randn(n, 0.01f);
        for (int64_t i = 0; i < n; i++) g[i] *= 1.0f + 1e-3f * (float)i / n; /* not 16-bit values */
        cuda_memcpy_h2d(gg, g, n * 4);
        double lr = 3e-4 * (k + 1);
        cuda_adam_update_chunks(gp, gg, gm, gv, gc, nc, ap, scalars_on_device(gs, STEP_NORM_SQ[k], lr, 0.1, ap, step + 1),
                                glp, A.dt);
        if (!cpu_clip(g, n, STEP_NORM_SQ[k])) continue;
        step++;
        for (int64_t c = 0; c < nc; c++) /* the CPU over each chunk, its weight decay or none */
            adam_update(p + chunks[c].param, g + chunks[c].param, m + chunks[c].state, v + chunks[c].state,
                        chunks[c].len, lr, chunks[c].decay ? 0.1 : 0.0, ap, step);
    }
    /* the copy at the pieces' positions is the new weights rounded; outside them it stays NaN */
    float *lp = from_dev_lp(glp, n), *want = copy_f(p, n);
    round_to_dtype(want, n, A.dt);
    int64_t untouched = 0;
    for (int64_t i = 0; i < n; i++) {
        if (i >= lead && i < n - 3) continue;
        untouched += isnan(lp[i]);
        lp[i] = want[i] = 0.0f;
    }
    printf("   adam in %lld chunks (%s), decoupled=%d, %d steps (one clipped, two skipped)\n", (long long)nc,
           aligned ? "at multiples of 4" : "at odd offsets", decoupled, CHUNK_STEPS);
    bool ok = untouched == lead + 3;
    printf("    16-bit copy outside the pieces     %lld of %lld left alone %s\n", (long long)untouched,
           (long long)(lead + 3), ok ? "ok" : "FAIL");
    return ok & bitwise("param", from_dev_f32(gp, n), p, n) & bitwise("exp_avg", from_dev_f32(gm, sn), m, sn) &
           bitwise("exp_avg_sq", from_dev_f32(gv, sn), v, sn) & bitwise("16-bit copy of param", lp, want, n);
}

bool test_adam_chunks_is_bitwise_the_cpu(void)
{
    return adam_chunks_case(true, false) & adam_chunks_case(false, false) & adam_chunks_case(true, true) &
           adam_chunks_case(false, true);
}

static bool sgd_chunks_case(double momentum)
{
    struct cuda_optim_chunk chunks[256];
    int64_t n = 0, sn = 0, nc = make_chunks(chunks, &n, &sn, false);
    float *p = randn(n, 1.0f), *buf = halloc(sn * 4);
    float *gp = to_dev(p, n * 4), *gb = to_dev(buf, sn * 4);
    void *gc = to_dev(chunks, (size_t)nc * sizeof chunks[0]), *gg = dalloc(n * 4), *glp = dalloc(n * 2);
    void *gs = dalloc(sizeof(struct cuda_step_scalars));
    struct adam_params ap = adam_params_default(); /* unused by SGD: only fills the scalars */
    int64_t step = 0;
    for (int k = 0; k < CHUNK_STEPS; k++) {
        float *g = randn(n, 0.01f);
        for (int64_t i = 0; i < n; i++) g[i] *= 1.0f + 1e-3f * (float)i / n; /* not 16-bit values */
        cuda_memcpy_h2d(gg, g, n * 4);
        double lr = 0.1 * (k + 1);
        cuda_sgd_update_chunks(gp, gg, gb, gc, nc, momentum, scalars_on_device(gs, STEP_NORM_SQ[k], lr, 0.01, ap, step + 1),
                               glp, A.dt);
        if (!cpu_clip(g, n, STEP_NORM_SQ[k])) continue;
        step++;
        for (int64_t c = 0; c < nc; c++)
            sgd_update(p + chunks[c].param, g + chunks[c].param, buf + chunks[c].state, chunks[c].len, lr,
                       chunks[c].decay ? 0.01 : 0.0, momentum, step == 1);
    }
    float *lp = from_dev_lp(glp, n), *want = copy_f(p, n);
    round_to_dtype(want, n, A.dt);
    for (int64_t i = 0; i < n; i++)
        if (i < 5 || i >= n - 3) lp[i] = want[i] = 0.0f; /* outside the pieces: never written */
    printf("   sgd in %lld chunks, momentum %g, %d steps (one clipped, two skipped)\n", (long long)nc, momentum,
           CHUNK_STEPS);
    bool ok = bitwise("param", from_dev_f32(gp, n), p, n) & bitwise("16-bit copy of param", lp, want, n);
    if (momentum != 0.0) ok &= bitwise("momentum buffer", from_dev_f32(gb, sn), buf, sn);
    return ok;
}

bool test_sgd_chunks_is_bitwise_the_cpu(void) { return sgd_chunks_case(0.9) & sgd_chunks_case(0.0); }

static bool adam_case(bool decoupled)
{
    const int64_t n = 100003;
    struct adam_params ap = adam_params_default();
    ap.decoupled_weight_decay = decoupled;
    float *p = randn(n, 1.0f), *m = halloc(n * 4), *v = halloc(n * 4);
    float *gp = to_dev(p, n * 4), *gm = to_dev(m, n * 4), *gv = to_dev(v, n * 4);
    void *gg = dalloc(n * 4);
    for (int64_t step = 1; step <= 3; step++) {
        float *g = randn(n, 0.01f);
        for (int64_t i = 0; i < n; i++) g[i] *= 1.0f + 1e-3f * (float)i / n; /* not bf16 values */
        cuda_memcpy_h2d(gg, g, n * 4);
        adam_update(p, g, m, v, n, 3e-4 * step, 0.1, ap, step);
        cuda_adam_update(gp, gg, gm, gv, n, 3e-4 * step, 0.1, ap, step);
    }
    printf("   adam decoupled=%d, 3 steps\n", decoupled);
    return bitwise("param", from_dev_f32(gp, n), p, n) &
           bitwise("exp_avg", from_dev_f32(gm, n), m, n) &
           bitwise("exp_avg_sq", from_dev_f32(gv, n), v, n);
}

bool test_adam_is_bitwise_the_cpu(void) { return adam_case(true) & adam_case(false); }

bool test_sum_squares_matches_clip_norm(void)
{
    bool ok = true;
    const int64_t sizes[4] = {1, 1000, 3000017, 3000017};
    for (int i = 0; i < 4; i++) {
        int64_t n = sizes[i];
        float *x = halloc(n * 4);
        for (int64_t k = 0; k < n; k++) x[k] = (float)rng_normal(A.seed, 3, A.counter++);
        void *gx0 = to_dev(x, n * 4);
        /* an odd size starts the blocks' spans at every offset modulo 4; the last case sums from
         * element 1, a buffer 4 bytes past a 16-byte boundary */
        const int64_t skip = i == 3 ? 1 : 0;
        n -= skip;
        const float *bufs[1] = {x + skip};
        double want = clip_global_norm_sq(bufs, &n, 1);
        float *gx = (float *)gx0 + skip;
        double got = cuda_sum_squares(gx, n), again = cuda_sum_squares(gx, n);
        /* added to a device value: 0.5 + the same sum, twice */
        double start = 0.5, added = 0.0, twice = start + got + got;
        void *acc = to_dev(&start, sizeof start);
        cuda_sum_squares_add(acc, gx, n);
        cuda_sum_squares_add(acc, gx, n);
        cuda_memcpy_d2h(&added, acc, sizeof added);
        double rel = fabs(got - want) / want;
        bool good = rel <= 1e-12 && memcmp(&got, &again, sizeof got) == 0 && memcmp(&added, &twice, sizeof added) == 0;
        printf("    n=%-10lld rel diff %.1e (tol 1e-12), repeat %s, added on the device %s %s\n", (long long)n, rel,
               memcmp(&got, &again, sizeof got) ? "differs" : "bitwise equal",
               memcmp(&added, &twice, sizeof added) ? "differs" : "bitwise equal", good ? "ok" : "FAIL");
        ok &= good;
    }
    return ok;
}
