/* MPI tests for parallel/ddp (run by tests/run_all.sh as a plain process and under mpirun with 2,
 * 4 and 8 ranks): the gradient buffer of a small GPT after the data-parallel reduction, against
 * sums taken here in group-rank order, bit for bit: all-reduce in one bucket and in small buckets
 * launched by the backward's progress (--overlap-grad-reduce), reduce-scatter of the distributed
 * optimizer (each rank's owned shard), each with fp32 sums and with --grad-reduce-in-bf16 (the
 * values rounded to bf16 before the sum and the sum rounded after it). Every rank counts its
 * mismatches and all ranks agree before asserting (tests/mpi_check.h); only rank 0 prints
 * cmocka's report. */
#include <mpi.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "kernels/tensor.h"
#include "models/gpt.h"
#include "parallel/comm.h"
#include "parallel/ddp.h"
#include "parallel/grid.h"
#include "tests/mpi_check.h"
#include "tests/tiny_model.h"

/* A gradient value of rank r, element i: all 24 mantissa bits in play, so rounding and order show. */
static float gval(int r, int64_t i)
{
    uint32_t h = (uint32_t)r * 0x9E3779B1u ^ (uint32_t)i * 0x85EBCA77u;
    h ^= h >> 15;
    h *= 0x2C1B3C6Du;
    h ^= h >> 12;
    return (float)((double)(h >> 8) / 8388608.0 - 1.0) * 1e-2f;
}

static float bf16(float x)
{
    round_to_dtype(&x, 1, DT_BF16);
    return x;
}

/* Data-parallel rank m's gradient summed over the group in group-rank order, as the reduction must. */
static float expected(struct comm_group *dp, int64_t i, bool reduce_bf16)
{
    float acc = 0.0f;
    for (int m = 0; m < comm_size(dp); m++) {
        float v = gval(comm_member(dp, m), i);
        acc = m == 0 ? (reduce_bf16 ? bf16(v) : v) : acc + (reduce_bf16 ? bf16(v) : v);
    }
    return reduce_bf16 ? bf16(acc) : acc;
}

/* One reduction of the gradient buffer with the given options, checked element by element. */
static void check_reduction(bool distributed, bool overlap, int64_t bucket, bool reduce_bf16)
{
    struct grid g;
    char err[256];
    if (grid_init(&g, world, me, 1, 1, 1, 1, false, err, sizeof err)) {
        EXPECT(0, "grid: %s", err);
        return;
    }
    grid_set_current(&g);
    comm_groups_create();
    struct comm_group *dp = comm_group_get(GRID_DP);
    struct model_config c = tiny_config(16, true);
    c.num_layers = 3;
    struct gpt_model *m = gpt_create(&c, 1, DEV_CPU, NULL, world);
    for (int64_t i = 0; i < m->buffer_numel; i++) m->grads[i] = gval(me, i);
    struct ddp *d = ddp_create(m, world > 1 ? dp : NULL, bucket, distributed, overlap, reduce_bf16);
    ddp_start_grad_sync(d);
    if (overlap) /* the backward's progress: stages from the output layer down to the embeddings */
        for (int stage = c.num_layers; stage >= -1; stage--) ddp_grads_ready(d, stage);
    ddp_finish_grad_sync(d);
    struct buffer_range owned;
    ddp_owned_ranges(d, &owned, 1);
    bool rounds = reduce_bf16 && world > 1;
    for (int64_t i = owned.lo; i < owned.hi; i++) {
        float want = expected(dp, i, rounds);
        if (memcmp(&m->grads[i], &want, sizeof want) != 0)
            EXPECT(0, "%s%s bucket %lld%s: element %lld is %.9g, want %.9g", distributed ? "reduce-scatter" : "all-reduce",
                   overlap ? " overlapped" : "", (long long)bucket, reduce_bf16 ? " bf16" : "", (long long)i,
                   m->grads[i], want);
    }
    ddp_free(d);
    gpt_free(m);
    comm_groups_free();
}

static void test_all_reduce_sums_in_group_rank_order(void **state)
{
    (void)state;
    check_reduction(false, false, 0, false);
    check_reduction(false, true, 300, false); /* several buckets, launched as the backward goes */
    agree();
}

static void test_reduce_scatter_gives_each_rank_its_summed_shard(void **state)
{
    (void)state;
    check_reduction(true, false, 0, false);
    check_reduction(true, true, 300, false);
    agree();
}

static void test_grad_reduce_in_bf16_sums_rounded_values(void **state)
{
    (void)state;
    check_reduction(false, false, 0, true);
    check_reduction(false, true, 300, true);
    check_reduction(true, true, 300, true);
    agree();
}

int main(int argc, char **argv)
{
    comm_init(&argc, &argv);
    world = comm_world_size();
    me = comm_world_rank();
    comm_set_timeout(120);
    diag = fdopen(dup(2), "w");
    setvbuf(diag, NULL, _IONBF, 0);
    if (me != 0) {
        if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr)) return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_reduce_sums_in_group_rank_order),
        cmocka_unit_test(test_reduce_scatter_gives_each_rank_its_summed_shard),
        cmocka_unit_test(test_grad_reduce_in_bf16_sums_rounded_values),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    comm_finalize();
    return failed;
}
