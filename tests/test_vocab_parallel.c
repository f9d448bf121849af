/* The vocab-parallel ops (Megatron's VocabParallelEmbedding and vocab-parallel cross-entropy):
 * splitting the vocabulary over "ranks" in one process and combining the shards as the model does
 * must give the whole-vocabulary ops' results. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kernels/ops.h"
#include "kernels/rng.h"

static struct tensor f1(float *p, int64_t n) { return tensor_1d(p, DT_F32, DEV_CPU, n); }
static struct tensor f2(float *p, int64_t r, int64_t c) { return tensor_2d(p, DT_F32, DEV_CPU, r, c); }
static struct tensor i1(int32_t *p, int64_t n) { return tensor_1d(p, DT_I32, DEV_CPU, n); }

static void fill(float *x, int64_t n, uint64_t stream)
{
    for (int64_t i = 0; i < n; i++) x[i] = (float)(4.0 * (rng_uniform(7, stream, (uint64_t)i) - 0.5));
}

static double rel_err(const float *a, const float *b, int64_t n)
{
    double d = 0, r = 0;
    for (int64_t i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        r += (double)b[i] * b[i];
    }
    return sqrt(d / (r + 1e-30));
}

/* Copies columns [c0, c0 + nc) of x [n, c] into out [n, nc]. */
static void columns(const float *x, int64_t n, int64_t c, int64_t c0, int64_t nc, float *out)
{
    for (int64_t i = 0; i < n; i++) memcpy(out + i * nc, x + i * c + c0, (size_t)nc * sizeof(float));
}

static void test_sharded_cross_entropy_equals_whole_vocabulary(void **state)
{
    (void)state;
    enum { N = 12, V = 64, TP = 4, VL = V / TP };
    float logits[N * V], losses[N], dlogits[N * V], dl[N];
    int32_t targets[N];
    fill(logits, N * V, 1);
    fill(dl, N, 2);
    for (int i = 0; i < N; i++) targets[i] = (int32_t)((i * 37) % V);
    op_cross_entropy_forward(f1(losses, N), f2(logits, N, V), i1(targets, N));
    op_cross_entropy_backward(f2(dlogits, N, V), f2(logits, N, V), i1(targets, N), f1(dl, N));

    /* per-rank statistics, then the all-reduces done by hand */
    float shard[TP][N * VL], mx[TP][N], se[TP][N], tl[TP][N], gmax[N], ssum[N] = {0}, tsum[N] = {0};
    for (int r = 0; r < TP; r++) {
        columns(logits, N, V, r * VL, VL, shard[r]);
        op_vocab_parallel_ce_stats(f1(mx[r], N), f1(se[r], N), f1(tl[r], N), f2(shard[r], N, VL),
                                   i1(targets, N), r * VL);
    }
    for (int i = 0; i < N; i++) {
        gmax[i] = mx[0][i];
        for (int r = 1; r < TP; r++) gmax[i] = fmaxf(gmax[i], mx[r][i]);
    }
    for (int r = 0; r < TP; r++) {
        op_vocab_parallel_ce_rescale(f1(se[r], N), f1(mx[r], N), f1(gmax, N));
        for (int i = 0; i < N; i++) ssum[i] += se[r][i], tsum[i] += tl[r][i];
    }
    float got[N], lse[N];
    op_vocab_parallel_ce_loss(f1(got, N), f1(lse, N), f1(gmax, N), f1(ssum, N), f1(tsum, N));
    assert_true(rel_err(got, losses, N) < 1e-6);

    for (int r = 0; r < TP; r++) {
        float want[N * VL];
        columns(dlogits, N, V, r * VL, VL, want);
        op_vocab_parallel_ce_backward(f2(shard[r], N, VL), f2(shard[r], N, VL), i1(targets, N), r * VL,
                                      f1(lse, N), f1(dl, N));
        assert_true(rel_err(shard[r], want, N * VL) < 1e-5);
    }
}

static void test_sharded_embedding_sums_to_whole_table(void **state)
{
    (void)state;
    enum { N = 10, V = 32, H = 8, TP = 2, VL = V / TP };
    float wte[V * H], whole[N * H], part[N * H], sum[N * H] = {0}, dy[N * H];
    float dwhole[V * H] = {0}, dshard[V * H] = {0};
    int32_t tokens[N];
    fill(wte, V * H, 3);
    fill(dy, N * H, 4);
    for (int i = 0; i < N; i++) tokens[i] = (int32_t)((i * 11) % V);
    op_embedding_forward(f2(whole, N, H), i1(tokens, N), f2(wte, V, H), 0, tensor_none(), tensor_none());
    op_embedding_backward(f2(dwhole, V, H), 0, tensor_none(), f2(dy, N, H), i1(tokens, N), tensor_none());
    for (int r = 0; r < TP; r++) {
        op_embedding_forward(f2(part, N, H), i1(tokens, N), f2(wte + r * VL * H, VL, H), r * VL, tensor_none(),
                             tensor_none());
        for (int i = 0; i < N * H; i++) sum[i] += part[i];
        op_embedding_backward(f2(dshard + r * VL * H, VL, H), r * VL, tensor_none(), f2(dy, N, H),
                              i1(tokens, N), tensor_none());
    }
    assert_memory_equal(sum, whole, sizeof sum);
    assert_memory_equal(dshard, dwhole, sizeof dshard);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sharded_cross_entropy_equals_whole_vocabulary),
        cmocka_unit_test(test_sharded_embedding_sums_to_whole_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
