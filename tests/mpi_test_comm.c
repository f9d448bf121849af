/* MPI tests for parallel/comm, run by tests/run_all.sh under mpirun with 2, 4 and 8 ranks (and
 * as a plain single process): every collective on every group kind of several layouts against
 * sums taken here in group-rank order (bit for bit), determinism under skewed timing, the
 * non-blocking variants, and the --distributed-timeout-minutes message. Each test counts its
 * mismatches on every rank and all ranks agree before asserting, so every rank passes or fails
 * the same test; only rank 0 prints cmocka's report.
 * `mpi_test_comm --abort-on-timeout` instead runs a job in which one rank never answers
 * (tests/cli/comm_timeout.sh checks that the job ends with the one-line error). */
#include <math.h>
#include <mpi.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "parallel/comm.h"
#include "parallel/grid.h"
#include "tests/mpi_check.h"

#define MAXR 64

/* ------------------------------------------------------------------ layouts */

struct layout {
    int tp, pp, cp, ep;
    bool tp_pp_dp;
};

static const struct layout LAYOUTS[] = {
    {1, 1, 1, 1, false}, {2, 1, 1, 1, false}, {1, 2, 1, 1, true}, {1, 2, 1, 1, false}, {2, 2, 1, 1, false},
    {1, 1, 2, 1, false}, {2, 1, 2, 1, false}, {1, 1, 1, 2, false}, {2, 2, 2, 1, false}, {4, 1, 1, 1, false},
};
#define NUM_LAYOUTS (int)(sizeof LAYOUTS / sizeof LAYOUTS[0])

static struct grid the_grid;

/* Makes layout l current with its communicators; false when it does not fit this world. */
static bool use_layout(int l)
{
    const struct layout *y = &LAYOUTS[l];
    char err[256];
    if (world % (y->tp * y->pp * y->cp) || world % (y->tp * y->ep * y->pp)) return false;
    if (grid_init(&the_grid, world, me, y->tp, y->pp, y->cp, y->ep, y->tp_pp_dp, err, sizeof err)) {
        EXPECT(0, "layout %d: %s", l, err);
        return false;
    }
    grid_set_current(&the_grid);
    comm_groups_create();
    return true;
}

/* ------------------------------------------------------------------ known values */

static uint32_t hash3(uint32_t a, uint32_t b, uint32_t c)
{
    uint32_t h = a * 0x9E3779B1u ^ (b + 0x7F4A7C15u) * 0x85EBCA77u ^ (c + 0x165667B1u) * 0xC2B2AE3Du;
    h ^= h >> 15;
    h *= 0x2C1B3C6Du;
    h ^= h >> 12;
    h *= 0x297A2D39u;
    h ^= h >> 15;
    return h;
}

/* A value in [-1, 1) with all 24 mantissa bits in play, so the order of a sum shows. */
static float fval(int rank, size_t i, int salt)
{
    return (float)((double)(hash3((uint32_t)rank, (uint32_t)i, (uint32_t)salt) >> 8) / 8388608.0 - 1.0);
}

static double dval(int rank, size_t i, int salt)
{
    return (double)fval(rank, i, salt) * 1.0000001 + (double)fval(rank, i, salt + 7) * 1e-9;
}

static int64_t ival(int rank, size_t i, int salt)
{
    return (int64_t)(hash3((uint32_t)rank, (uint32_t)i, (uint32_t)salt) % 2000001) - 1000000;
}

/* The sum over the group's members of fval, added in group-rank order. */
static float fsum(const struct comm_group *g, size_t i, int salt)
{
    float acc = fval(comm_member(g, 0), i, salt);
    for (int m = 1; m < comm_size(g); m++) acc += fval(comm_member(g, m), i, salt);
    return acc;
}

static double dsum(const struct comm_group *g, size_t i, int salt)
{
    double acc = dval(comm_member(g, 0), i, salt);
    for (int m = 1; m < comm_size(g); m++) acc += dval(comm_member(g, m), i, salt);
    return acc;
}

static bool same_bits(const void *a, const void *b, size_t n)
{
    return memcmp(a, b, n) == 0;
}

static const size_t SIZES[] = {1, 3, 37, 1000};
#define NUM_SIZES (sizeof SIZES / sizeof SIZES[0])

/* Calls fn on every group kind of every layout that fits the world. */
static void for_each_group(void (*fn)(struct comm_group *g, int layout))
{
    for (int l = 0; l < NUM_LAYOUTS; l++) {
        if (!use_layout(l)) continue;
        for (int k = 0; k < GRID_NUM_KINDS; k++) {
            struct comm_group *g = comm_group_get((enum grid_group_kind)k);
            if (g) fn(g, l);
        }
        comm_groups_free();
    }
}

/* ------------------------------------------------------------------ tests */

static void test_each_group_has_the_grids_members(void **state)
{
    (void)state;
    for (int l = 0; l < NUM_LAYOUTS; l++) {
        if (!use_layout(l)) continue;
        for (int k = 0; k < GRID_NUM_KINDS; k++) {
            int members[MAXR];
            int n = grid_group(&the_grid, (enum grid_group_kind)k, members, MAXR);
            struct comm_group *g = comm_group_get((enum grid_group_kind)k);
            EXPECT((g != NULL) == (n > 0), "layout %d %s: group present %d, grid size %d", l, grid_group_name(k),
                   g != NULL, n);
            if (!g) continue;
            EXPECT(comm_size(g) == n, "layout %d %s: size %d, grid %d", l, grid_group_name(k), comm_size(g), n);
            EXPECT(comm_group_kind(g) == (enum grid_group_kind)k, "kind");
            EXPECT(comm_member(g, comm_rank(g)) == me, "layout %d %s: member %d is %d", l, grid_group_name(k),
                   comm_rank(g), comm_member(g, comm_rank(g)));
            for (int i = 0; i < n && i < comm_size(g); i++)
                EXPECT(comm_member(g, i) == members[i], "layout %d %s: member %d", l, grid_group_name(k), i);
        }
        comm_groups_free();
    }
    agree();
}

static void check_all_reduce_sum(struct comm_group *g, int l)
{
    for (size_t s = 0; s < NUM_SIZES; s++) {
        size_t n = SIZES[s];
        float *f = malloc(n * sizeof *f), *fw = malloc(n * sizeof *fw);
        double *d = malloc(n * sizeof *d), *dw = malloc(n * sizeof *dw);
        int64_t *v = malloc(n * sizeof *v);
        for (size_t i = 0; i < n; i++) {
            f[i] = fval(me, i, l);
            d[i] = dval(me, i, l);
            v[i] = ival(me, i, l);
            fw[i] = fsum(g, i, l);
            dw[i] = dsum(g, i, l);
        }
        comm_all_reduce_sum(g, f, n, COMM_F32);
        comm_all_reduce_sum(g, d, n, COMM_F64);
        comm_all_reduce_sum(g, v, n, COMM_I64);
        EXPECT(same_bits(f, fw, n * sizeof *f), "layout %d %s n %zu: f32 sum differs", l,
               grid_group_name(comm_group_kind(g)), n);
        EXPECT(same_bits(d, dw, n * sizeof *d), "layout %d %s n %zu: f64 sum differs", l,
               grid_group_name(comm_group_kind(g)), n);
        for (size_t i = 0; i < n; i++) {
            int64_t want = 0;
            for (int m = 0; m < comm_size(g); m++) want += ival(comm_member(g, m), i, l);
            EXPECT(v[i] == want, "layout %d %s: i64 sum[%zu] %lld, want %lld", l, grid_group_name(comm_group_kind(g)),
                   i, (long long)v[i], (long long)want);
        }
        free(f);
        free(fw);
        free(d);
        free(dw);
        free(v);
    }
}

static void test_all_reduce_sum_adds_in_group_rank_order(void **state)
{
    (void)state;
    for_each_group(check_all_reduce_sum);
    agree();
}

static void check_all_reduce_max(struct comm_group *g, int l)
{
    enum { N = 37 };
    float f[N];
    int64_t v[N];
    for (size_t i = 0; i < N; i++) {
        f[i] = fval(me, i, l);
        v[i] = ival(me, i, l);
    }
    int last = comm_member(g, comm_size(g) - 1);
    if (me == last) f[5] = NAN; /* one rank's NaN reaches every rank */
    comm_all_reduce_max(g, f, N, COMM_F32);
    comm_all_reduce_max(g, v, N, COMM_I64);
    for (size_t i = 0; i < N; i++) {
        float want = fval(comm_member(g, 0), i, l);
        int64_t wv = ival(comm_member(g, 0), i, l);
        for (int m = 1; m < comm_size(g); m++) {
            want = fmaxf(want, fval(comm_member(g, m), i, l));
            if (ival(comm_member(g, m), i, l) > wv) wv = ival(comm_member(g, m), i, l);
        }
        if (i == 5) EXPECT(isnan(f[i]), "layout %d %s: max[5] = %g, want NaN", l, grid_group_name(comm_group_kind(g)),
                           f[i]);
        else EXPECT(f[i] == want, "layout %d %s: max[%zu] %g, want %g", l, grid_group_name(comm_group_kind(g)), i,
                    f[i], want);
        EXPECT(v[i] == wv, "layout %d: i64 max[%zu]", l, i);
    }
}

static void test_all_reduce_max_takes_the_largest_and_propagates_nan(void **state)
{
    (void)state;
    for_each_group(check_all_reduce_max);
    agree();
}

/* Rank r's part of a reduce-scatter is bitwise the same as those elements after an all-reduce. */
static void check_reduce_scatter(struct comm_group *g, int l)
{
    int p = comm_size(g), r = comm_rank(g);
    for (size_t s = 0; s < NUM_SIZES; s++) {
        size_t n = SIZES[s];
        float *send = malloc(n * (size_t)p * sizeof *send), *all = malloc(n * (size_t)p * sizeof *all);
        float *recv = malloc(n * sizeof *recv);
        double *dsend = malloc(n * (size_t)p * sizeof *dsend), *drecv = malloc(n * sizeof *drecv);
        for (size_t i = 0; i < n * (size_t)p; i++) {
            send[i] = all[i] = fval(me, i, 100 + l);
            dsend[i] = dval(me, i, 100 + l);
        }
        comm_reduce_scatter_sum(g, send, recv, n, COMM_F32);
        comm_reduce_scatter_sum(g, dsend, drecv, n, COMM_F64);
        comm_all_reduce_sum(g, all, n * (size_t)p, COMM_F32);
        for (size_t i = 0; i < n; i++) {
            float want = fsum(g, (size_t)r * n + i, 100 + l);
            double dwant = dsum(g, (size_t)r * n + i, 100 + l);
            EXPECT(same_bits(&recv[i], &want, sizeof want), "layout %d %s n %zu: shard[%zu] %.9g, want %.9g", l,
                   grid_group_name(comm_group_kind(g)), n, i, recv[i], want);
            EXPECT(same_bits(&drecv[i], &dwant, sizeof dwant), "layout %d: f64 shard[%zu]", l, i);
        }
        EXPECT(same_bits(recv, all + (size_t)r * n, n * sizeof *recv), "layout %d %s n %zu: reduce-scatter and "
               "all-reduce disagree", l, grid_group_name(comm_group_kind(g)), n);
        free(send);
        free(all);
        free(recv);
        free(dsend);
        free(drecv);
    }
}

static void test_reduce_scatter_gives_rank_r_the_sum_of_chunk_r(void **state)
{
    (void)state;
    for_each_group(check_reduce_scatter);
    agree();
}

static void check_all_gather(struct comm_group *g, int l)
{
    int p = comm_size(g), r = comm_rank(g);
    enum { N = 13 };
    float send[N], recv[N * MAXR], inplace[N * MAXR];
    uint16_t hs[N], hr[N * MAXR];
    for (int i = 0; i < N; i++) {
        send[i] = fval(me, (size_t)i, 200 + l);
        hs[i] = (uint16_t)(hash3((uint32_t)me, (uint32_t)i, 3) & 0xffff);
    }
    memset(inplace, 0, sizeof inplace);
    memcpy(inplace + r * N, send, sizeof send);
    comm_all_gather(g, send, recv, N, COMM_F32);
    comm_all_gather(g, inplace + r * N, inplace, N, COMM_F32); /* this rank's part already in place */
    comm_all_gather(g, hs, hr, N, COMM_BF16);
    for (int m = 0; m < p; m++)
        for (int i = 0; i < N; i++) {
            float want = fval(comm_member(g, m), (size_t)i, 200 + l);
            uint16_t hw = (uint16_t)(hash3((uint32_t)comm_member(g, m), (uint32_t)i, 3) & 0xffff);
            EXPECT(recv[m * N + i] == want && inplace[m * N + i] == want, "layout %d %s: part %d [%d]", l,
                   grid_group_name(comm_group_kind(g)), m, i);
            EXPECT(hr[m * N + i] == hw, "layout %d: u16 part %d [%d]", l, m, i);
        }
}

static void test_all_gather_concatenates_in_group_rank_order(void **state)
{
    (void)state;
    for_each_group(check_all_gather);
    agree();
}

static void check_broadcast(struct comm_group *g, int l)
{
    for (int root = 0; root < comm_size(g); root++) {
        double buf[5];
        int64_t iv[3];
        for (int i = 0; i < 5; i++) buf[i] = comm_rank(g) == root ? dval(me, (size_t)i, 300 + l) : -7.0;
        for (int i = 0; i < 3; i++) iv[i] = comm_rank(g) == root ? ival(me, (size_t)i, 300) : 0;
        comm_broadcast(g, buf, 5, COMM_F64, root);
        comm_broadcast(g, iv, 3, COMM_I64, root);
        for (int i = 0; i < 5; i++)
            EXPECT(buf[i] == dval(comm_member(g, root), (size_t)i, 300 + l), "layout %d %s root %d: [%d]", l,
                   grid_group_name(comm_group_kind(g)), root, i);
        for (int i = 0; i < 3; i++) EXPECT(iv[i] == ival(comm_member(g, root), (size_t)i, 300), "i64 root %d", root);
    }
}

static void test_broadcast_copies_the_roots_buffer(void **state)
{
    (void)state;
    for_each_group(check_broadcast);
    agree();
}

/* A ring through the group with sendrecv, then pairs (0,1), (2,3), ... with send/recv, the way
 * pipeline stages pass activations forward and gradients back. */
static void check_point_to_point(struct comm_group *g, int l)
{
    int p = comm_size(g), r = comm_rank(g);
    float out[4], in[4];
    for (int i = 0; i < 4; i++) out[i] = fval(me, (size_t)i, 400 + l);
    comm_sendrecv(g, out, 4, (r + 1) % p, in, 4, (r + p - 1) % p, COMM_F32);
    int prev = comm_member(g, (r + p - 1) % p);
    for (int i = 0; i < 4; i++) EXPECT(in[i] == fval(prev, (size_t)i, 400 + l), "layout %d: ring [%d]", l, i);
    /* the first and last stage have no neighbour on one side: -1 is a no-op side */
    float edge[2] = {-1, -1};
    comm_sendrecv(g, out, 2, r + 1 < p ? r + 1 : -1, edge, 2, r > 0 ? r - 1 : -1, COMM_F32);
    if (r > 0) EXPECT(edge[0] == fval(comm_member(g, r - 1), 0, 400 + l), "layout %d: chain", l);
    else EXPECT(edge[0] == -1, "layout %d: first stage received something", l);
    if (r % 2 == 0 && r + 1 < p) {
        comm_send(g, out, 4, COMM_F32, r + 1);
        comm_recv(g, in, 4, COMM_F32, r + 1);
        for (int i = 0; i < 4; i++) EXPECT(in[i] == fval(comm_member(g, r + 1), (size_t)i, 400 + l), "pair back");
    } else if (r % 2 == 1) {
        comm_recv(g, in, 4, COMM_F32, r - 1);
        for (int i = 0; i < 4; i++) EXPECT(in[i] == fval(comm_member(g, r - 1), (size_t)i, 400 + l), "pair fwd");
        comm_send(g, out, 4, COMM_F32, r - 1);
    }
}

static void test_send_recv_and_sendrecv_reach_the_right_peer(void **state)
{
    (void)state;
    for_each_group(check_point_to_point);
    agree();
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* one clock for every process of this machine */
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* No member leaves the barrier before the last one entered it (the group's last rank enters
 * late on purpose). */
static void check_barrier(struct comm_group *g, int l)
{
    int p = comm_size(g);
    if (comm_rank(g) == p - 1) usleep(20000);
    double t[2] = {now(), 0}, all[2 * MAXR];
    comm_barrier(g);
    t[1] = now();
    comm_all_gather(g, t, all, 2, COMM_F64);
    double last_in = all[0], first_out = all[1];
    for (int m = 1; m < p; m++) {
        if (all[2 * m] > last_in) last_in = all[2 * m];
        if (all[2 * m + 1] < first_out) first_out = all[2 * m + 1];
    }
    EXPECT(first_out >= last_in, "layout %d %s: a rank left the barrier %.6f s before the last entered", l,
           grid_group_name(comm_group_kind(g)), last_in - first_out);
}

static void test_barrier_waits_for_every_member(void **state)
{
    (void)state;
    for (int l = 0; l < NUM_LAYOUTS; l++) {
        if (!use_layout(l)) continue;
        check_barrier(comm_group_get(GRID_WORLD), l);
        check_barrier(comm_group_get(GRID_DP), l);
        check_barrier(comm_group_get(GRID_TP), l);
        comm_groups_free();
    }
    agree();
}

/* The same inputs, with the ranks arriving in the opposite order, give the same bits; and every
 * rank holds the same bits. */
static void test_sums_do_not_depend_on_timing(void **state)
{
    (void)state;
    enum { N = 4099 };
    float *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b), *all = malloc((size_t)N * MAXR * sizeof *all);
    use_layout(0);
    struct comm_group *g = comm_group_get(GRID_WORLD);
    for (int round = 0; round < 2; round++) {
        float *x = round ? b : a;
        for (size_t i = 0; i < N; i++) x[i] = fval(me, i, 500) * (float)(1 + (i % 7) * 1000);
        usleep((useconds_t)(round ? (world - 1 - me) : me) * 3000); /* arrival order reversed */
        comm_all_reduce_sum(g, x, N, COMM_F32);
    }
    EXPECT(same_bits(a, b, N * sizeof *a), "two runs of the same all-reduce differ");
    comm_all_gather(g, a, all, N, COMM_F32);
    for (int m = 1; m < world; m++) EXPECT(same_bits(all, all + (size_t)m * N, N * sizeof *a), "rank %d differs", m);
    comm_groups_free();
    free(a);
    free(b);
    free(all);
    agree();
}

/* Several operations in flight on the dp-cp group while blocking ones run on the tp group: the
 * results equal the blocking calls' bit for bit. */
static void check_non_blocking(int l)
{
    struct comm_group *dpcp = comm_group_get(GRID_DP_CP), *tp = comm_group_get(GRID_TP);
    int p = comm_size(dpcp);
    enum { N = 1001 };
    float *ar = malloc(N * sizeof *ar), *ar_ref = malloc(N * sizeof *ar_ref);
    float *rs_send = malloc((size_t)N * p * sizeof *rs_send), *rs = malloc(N * sizeof *rs), *rs_ref = malloc(N * sizeof *rs_ref);
    float *ag = malloc((size_t)N * p * sizeof *ag), *ag_ref = malloc((size_t)N * p * sizeof *ag_ref);
    float *ag_send = malloc(N * sizeof *ag_send), tpbuf[64];
    for (size_t i = 0; i < N; i++) {
        ar[i] = ar_ref[i] = fval(me, i, 600 + l);
        ag_send[i] = fval(me, i, 700 + l);
    }
    for (size_t i = 0; i < (size_t)N * p; i++) rs_send[i] = fval(me, i, 800 + l);
    struct comm_request *r1 = comm_iall_reduce_sum(dpcp, ar, N, COMM_F32);
    struct comm_request *r2 = comm_ireduce_scatter_sum(dpcp, rs_send, rs, N, COMM_F32);
    struct comm_request *r3 = comm_iall_gather(dpcp, ag_send, ag, N, COMM_F32);
    for (int i = 0; i < 64; i++) tpbuf[i] = fval(me, (size_t)i, 900);
    comm_all_reduce_sum(tp, tpbuf, 64, COMM_F32); /* meanwhile, on another group */
    for (int i = 0; i < 64; i++) EXPECT(same_bits(&tpbuf[i], &(float){fsum(tp, (size_t)i, 900)}, 4), "tp [%d]", i);
    comm_wait(r2);
    comm_wait(r1);
    comm_wait(r3);
    comm_all_reduce_sum(dpcp, ar_ref, N, COMM_F32);
    comm_reduce_scatter_sum(dpcp, rs_send, rs_ref, N, COMM_F32);
    comm_all_gather(dpcp, ag_send, ag_ref, N, COMM_F32);
    EXPECT(same_bits(ar, ar_ref, N * sizeof *ar), "layout %d: iall_reduce_sum differs", l);
    EXPECT(same_bits(rs, rs_ref, N * sizeof *rs), "layout %d: ireduce_scatter_sum differs", l);
    EXPECT(same_bits(ag, ag_ref, (size_t)N * p * sizeof *ag), "layout %d: iall_gather differs", l);
    for (size_t i = 0; i < N; i++) EXPECT(same_bits(&ar[i], &(float){fsum(dpcp, i, 600 + l)}, 4), "ar [%zu]", i);
    free(ar);
    free(ar_ref);
    free(rs_send);
    free(rs);
    free(rs_ref);
    free(ag);
    free(ag_ref);
    free(ag_send);
}

static void test_non_blocking_variants_match_the_blocking_ones(void **state)
{
    (void)state;
    for (int l = 0; l < NUM_LAYOUTS; l++) {
        if (!use_layout(l)) continue;
        check_non_blocking(l);
        comm_groups_free();
    }
    agree();
}

/* ------------------------------------------------------------------ timeout */

static pthread_mutex_t timeout_lock = PTHREAD_MUTEX_INITIALIZER;
static char timeout_text[1024];

static void record_timeout(const char *message)
{
    pthread_mutex_lock(&timeout_lock);
    snprintf(timeout_text, sizeof timeout_text, "%s", message);
    pthread_mutex_unlock(&timeout_lock);
}

/* The dp group's last rank arrives a second late with a 0.2 s limit: the others report the
 * collective and the group by name (the handler stands in for MPI_Abort, so the wait goes on). */
static void test_timeout_names_the_collective_and_the_group(void **state)
{
    (void)state;
    use_layout(world >= 4 ? 1 : 0);
    struct comm_group *dp = comm_group_get(GRID_DP);
    bool late = comm_rank(dp) == comm_size(dp) - 1;
    timeout_text[0] = '\0';
    comm_set_timeout(0.2);
    comm_set_timeout_handler(record_timeout);
    int64_t x = me;
    if (late) usleep(1000000);
    comm_all_reduce_sum(dp, &x, 1, COMM_I64);
    comm_set_timeout(120);
    comm_set_timeout_handler(NULL);
    char members[256] = "", want[512];
    for (int m = 0; m < comm_size(dp); m++)
        snprintf(members + strlen(members), sizeof members - strlen(members), "%s%d", m ? "," : "", comm_member(dp, m));
    snprintf(want, sizeof want, "rank %d: comm_all_reduce_sum on the dp group (ranks %s) waited ", me, members);
    pthread_mutex_lock(&timeout_lock);
    if (comm_size(dp) > 1 && !late) {
        EXPECT(strncmp(timeout_text, want, strlen(want)) == 0, "message \"%s\", want it to start \"%s\"", timeout_text,
               want);
        EXPECT(strstr(timeout_text, "more than --distributed-timeout-minutes") != NULL, "message \"%s\"", timeout_text);
        EXPECT(strchr(timeout_text, '\n') == NULL, "message has more than one line");
    } else {
        EXPECT(timeout_text[0] == '\0', "the late rank reported \"%s\"", timeout_text);
    }
    pthread_mutex_unlock(&timeout_lock);
    int64_t want_sum = 0;
    for (int m = 0; m < comm_size(dp); m++) want_sum += comm_member(dp, m);
    EXPECT(x == want_sum, "the late collective still completes: %lld, want %lld", (long long)x, (long long)want_sum);
    comm_groups_free();
    agree();
}

/* One rank never answers: the job must end with the one-line error, not hang. */
static int abort_on_timeout(void)
{
    use_layout(0);
    comm_set_timeout(0.5);
    struct comm_group *dp = comm_group_get(GRID_DP);
    if (me == world - 1) sleep(60);
    float x = 1.0f;
    comm_all_reduce_sum(dp, &x, 1, COMM_F32);
    fprintf(stderr, "rank %d: the collective returned without the last rank\n", me);
    return 0;
}

int main(int argc, char **argv)
{
    comm_init(&argc, &argv);
    world = comm_world_size();
    me = comm_world_rank();
    if (argc > 1 && strcmp(argv[1], "--abort-on-timeout") == 0) return abort_on_timeout();
    comm_set_timeout(120); /* a hang in a test ends the job instead of the suite */
    diag = fdopen(dup(2), "w");
    setvbuf(diag, NULL, _IONBF, 0);
    if (me != 0) { /* one cmocka report for the job: every rank reaches the same verdicts */
        if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr)) return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_group_has_the_grids_members),
        cmocka_unit_test(test_all_reduce_sum_adds_in_group_rank_order),
        cmocka_unit_test(test_all_reduce_max_takes_the_largest_and_propagates_nan),
        cmocka_unit_test(test_reduce_scatter_gives_rank_r_the_sum_of_chunk_r),
        cmocka_unit_test(test_all_gather_concatenates_in_group_rank_order),
        cmocka_unit_test(test_broadcast_copies_the_roots_buffer),
        cmocka_unit_test(test_send_recv_and_sendrecv_reach_the_right_peer),
        cmocka_unit_test(test_barrier_waits_for_every_member),
        cmocka_unit_test(test_sums_do_not_depend_on_timing),
        cmocka_unit_test(test_non_blocking_variants_match_the_blocking_ones),
        cmocka_unit_test(test_timeout_names_the_collective_and_the_group),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    comm_finalize();
    return failed;
}
