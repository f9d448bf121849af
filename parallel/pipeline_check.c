/* Checks a set of pipeline schedule tables statically (shape, coverage, message matching, order)
 * and by executing all ranks together with blocking batches, which finds deadlocks, verifies the
 * data dependencies in time and gives each rank's busy and idle time. */
#include "parallel/pipeline_check.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

static bool is_compute(enum pipeline_op op) { return op == PIPE_FORWARD || op == PIPE_BACKWARD; }
static bool is_send(enum pipeline_op op) { return op == PIPE_SEND_FORWARD || op == PIPE_SEND_BACKWARD; }
static bool is_forward_dir(enum pipeline_op op)
{
    return op == PIPE_FORWARD || op == PIPE_SEND_FORWARD || op == PIPE_RECV_FORWARD;
}

static const char *op_name(enum pipeline_op op)
{
    static const char *names[] = {"FORWARD", "BACKWARD", "SEND_FORWARD", "RECV_FORWARD", "SEND_BACKWARD",
                                  "RECV_BACKWARD"};
    return (unsigned)op < sizeof names / sizeof names[0] ? names[op] : "?";
}

/* "RECV_FORWARD of micro batch 1, chunk 0 from rank 0" */
static const char *describe(const struct pipeline_action *a, char *buf, size_t n)
{
    if (is_compute(a->op)) snprintf(buf, n, "%s of micro batch %d, chunk %d", op_name(a->op), a->mb, a->chunk);
    else snprintf(buf, n, "%s of micro batch %d, chunk %d %s rank %d", op_name(a->op), a->mb, a->chunk,
                  is_send(a->op) ? "to" : "from", a->peer);
    return buf;
}

/* Everything the checks share: the tables, and per rank and action the matching action of the
 * peer (partner, -1 for compute), indexed [rank][action]. */
struct checker {
    const struct pipeline_schedule *s;
    int stages, pairs; /* pp * vp; M * vp (micro batch, chunk) pairs per rank */
    int **partner;
};

static int stage_of(const struct checker *k, int rank, int chunk) { return chunk * k->s->pp + rank; }

/* The tensor a communication action moves, as (direction, micro batch, producing stage). */
static long message_key(const struct checker *k, int rank, const struct pipeline_action *a)
{
    int stage = stage_of(k, rank, a->chunk), dir = is_forward_dir(a->op) ? 0 : 1;
    int producer = is_send(a->op) ? stage : dir == 0 ? stage - 1 : stage + 1;
    return ((long)dir * k->s->num_micro_batches + a->mb) * k->stages + producer;
}

/* The pp rank on the other side of a communication action, or -1 when the stage has no such
 * neighbour (the first stage receives no activation, the last sends none). */
static int expected_peer(const struct checker *k, int rank, const struct pipeline_action *a)
{
    int stage = stage_of(k, rank, a->chunk), other;
    switch (a->op) {
    case PIPE_SEND_FORWARD:
    case PIPE_RECV_BACKWARD: other = stage + 1; break;
    default: other = stage - 1; break;
    }
    if (other < 0 || other >= k->stages) return -1;
    return other % k->s->pp;
}

static int check_shape(const struct checker *k, char *err, size_t errlen)
{
    const struct pipeline_schedule *s = k->s;
    char d[160];
    for (int r = 0; r < s->pp; r++) {
        const struct pipeline_table *t = &s->tables[r];
        bool open = false;
        if (t->pp_rank != r) {
            error_set(err, errlen, "pipeline table %d: says it is rank %d", r, t->pp_rank);
            return -1;
        }
        for (int i = 0; i < t->n; i++) {
            const struct pipeline_action *a = &t->actions[i];
            if ((unsigned)a->op > PIPE_RECV_BACKWARD || a->mb < 0 || a->mb >= s->num_micro_batches || a->chunk < 0 ||
                a->chunk >= s->vp) {
                error_set(err, errlen, "rank %d, action %d: op %d, micro batch %d or chunk %d out of range", r, i,
                            (int)a->op, a->mb, a->chunk);
                return -1;
            }
            if (is_compute(a->op) && open) {
                error_set(err, errlen, "rank %d, action %d (%s): comes inside an unfinished batch of sends and "
                            "receives (no action before it has wait set)", r, i, describe(a, d, sizeof d));
                return -1;
            }
            if (is_compute(a->op)) continue;
            int peer = expected_peer(k, r, a);
            if (peer < 0 || a->peer != peer) {
                error_set(err, errlen, "rank %d, action %d (%s): the %s goes to rank %d", r, i,
                            describe(a, d, sizeof d), peer < 0 ? "stage has no such neighbour; nothing" : "message",
                            peer);
                return -1;
            }
            open = !a->wait;
        }
        if (open) {
            error_set(err, errlen, "rank %d: its last batch of sends and receives never waits", r);
            return -1;
        }
    }
    return 0;
}

/* Each (micro batch, chunk) forwarded once and backwarded once, in that order. */
static int check_coverage(const struct checker *k, char *err, size_t errlen)
{
    const struct pipeline_schedule *s = k->s;
    int *fpos = xmalloc((size_t)k->pairs * sizeof *fpos), *bpos = xmalloc((size_t)k->pairs * sizeof *bpos);
    int rc = 0;
    for (int r = 0; r < s->pp && rc == 0; r++) {
        const struct pipeline_table *t = &s->tables[r];
        for (int p = 0; p < k->pairs; p++) fpos[p] = bpos[p] = -1;
        for (int i = 0; i < t->n && rc == 0; i++) {
            const struct pipeline_action *a = &t->actions[i];
            if (!is_compute(a->op)) continue;
            int *pos = a->op == PIPE_FORWARD ? fpos : bpos, p = a->mb * s->vp + a->chunk;
            if (pos[p] >= 0) {
                error_set(err, errlen, "rank %d: runs the %s of micro batch %d, chunk %d twice (actions %d and %d)", r,
                          a->op == PIPE_FORWARD ? "forward" : "backward", a->mb, a->chunk, pos[p], i);
                rc = -1;
            } else if (a->op == PIPE_BACKWARD && fpos[p] < 0) {
                error_set(err, errlen, "rank %d, action %d: the backward of micro batch %d, chunk %d comes before its "
                          "forward", r, i, a->mb, a->chunk);
                rc = -1;
            }
            pos[p] = i;
        }
        for (int p = 0; p < k->pairs && rc == 0; p++)
            if (fpos[p] < 0 || bpos[p] < 0) {
                error_set(err, errlen, "rank %d: never runs the %s of micro batch %d, chunk %d", r,
                          fpos[p] < 0 ? "forward" : "backward", p / s->vp, p % s->vp);
                rc = -1;
            }
    }
    free(fpos);
    free(bpos);
    return rc;
}

/* Pairs every receive with the one send of its tensor (and the reverse), filling k->partner. */
static int match_messages(struct checker *k, char *err, size_t errlen)
{
    const struct pipeline_schedule *s = k->s;
    long keys = 2L * s->num_micro_batches * k->stages;
    int *send_rank = xmalloc((size_t)keys * sizeof *send_rank), *send_idx = xmalloc((size_t)keys * sizeof *send_idx);
    char d[160];
    int rc = 0;
    for (long i = 0; i < keys; i++) send_rank[i] = -1;
    for (int r = 0; r < s->pp && rc == 0; r++)
        for (int i = 0; i < s->tables[r].n && rc == 0; i++) {
            const struct pipeline_action *a = &s->tables[r].actions[i];
            k->partner[r][i] = -1;
            if (!is_send(a->op)) continue;
            long key = message_key(k, r, a);
            if (send_rank[key] >= 0) {
                error_set(err, errlen, "rank %d, action %d (%s): the same tensor is sent twice (also action %d)", r, i,
                          describe(a, d, sizeof d), send_idx[key]);
                rc = -1;
            }
            send_rank[key] = r;
            send_idx[key] = i;
        }
    for (int r = 0; r < s->pp && rc == 0; r++)
        for (int i = 0; i < s->tables[r].n && rc == 0; i++) {
            const struct pipeline_action *a = &s->tables[r].actions[i];
            if (is_compute(a->op) || is_send(a->op)) continue;
            long key = message_key(k, r, a);
            if (send_rank[key] < 0) {
                error_set(err, errlen, "rank %d, action %d (%s): rank %d never sends it, so rank %d would wait "
                          "forever", r, i, describe(a, d, sizeof d), a->peer, r);
                rc = -1;
            } else if (k->partner[send_rank[key]][send_idx[key]] >= 0) {
                error_set(err, errlen, "rank %d, action %d (%s): received twice (also action %d)", r, i,
                          describe(a, d, sizeof d), k->partner[send_rank[key]][send_idx[key]]);
                rc = -1;
            } else {
                k->partner[r][i] = send_idx[key];
                k->partner[send_rank[key]][send_idx[key]] = i;
            }
        }
    for (int r = 0; r < s->pp && rc == 0; r++)
        for (int i = 0; i < s->tables[r].n && rc == 0; i++)
            if (is_send(s->tables[r].actions[i].op) && k->partner[r][i] < 0) {
                error_set(err, errlen, "rank %d, action %d (%s): rank %d never receives it, so rank %d would wait "
                          "forever", r, i, describe(&s->tables[r].actions[i], d, sizeof d),
                          s->tables[r].actions[i].peer, r);
                rc = -1;
            }
    free(send_rank);
    free(send_idx);
    return rc;
}

/* Looks for op on (mb, chunk) in t between from and to (exclusive), stepping by step. */
static bool find_action(const struct pipeline_table *t, enum pipeline_op op, int mb, int chunk, int from, int to,
                        int step)
{
    for (int i = from; i != to; i += step)
        if (t->actions[i].op == op && t->actions[i].mb == mb && t->actions[i].chunk == chunk) return true;
    return false;
}

/* A forward on a stage after the first receives its input before it runs; one before the last
 * sends its output after; a backward likewise receives its output gradient and sends its input
 * gradient. */
static int check_compute_messages(const struct checker *k, char *err, size_t errlen)
{
    const struct pipeline_schedule *s = k->s;
    char d[160];
    for (int r = 0; r < s->pp; r++) {
        const struct pipeline_table *t = &s->tables[r];
        for (int i = 0; i < t->n; i++) {
            const struct pipeline_action *a = &t->actions[i];
            if (!is_compute(a->op)) continue;
            int stage = stage_of(k, r, a->chunk);
            bool fwd = a->op == PIPE_FORWARD;
            bool needs_input = fwd ? stage > 0 : stage < k->stages - 1, has_output = fwd ? stage < k->stages - 1
                                                                                         : stage > 0;
            enum pipeline_op in = fwd ? PIPE_RECV_FORWARD : PIPE_RECV_BACKWARD;
            enum pipeline_op out = fwd ? PIPE_SEND_FORWARD : PIPE_SEND_BACKWARD;
            if (needs_input && !find_action(t, in, a->mb, a->chunk, i - 1, -1, -1)) {
                error_set(err, errlen, "rank %d, action %d (%s): its input is never received before it (no %s)", r,
                            i, describe(a, d, sizeof d), op_name(in));
                return -1;
            }
            if (has_output && !find_action(t, out, a->mb, a->chunk, i + 1, t->n, 1)) {
                error_set(err, errlen, "rank %d, action %d (%s): its output is never sent after it (no %s)", r, i,
                            describe(a, d, sizeof d), op_name(out));
                return -1;
            }
        }
    }
    return 0;
}

/* Within one direction between two ranks the receiver meets the messages in the order they were
 * sent (so an executor can match them with one tag per direction). */
static int check_message_order(const struct checker *k, char *err, size_t errlen)
{
    const struct pipeline_schedule *s = k->s;
    int *last = xmalloc((size_t)s->pp * 2 * sizeof *last);
    char d[160];
    int rc = 0;
    for (int r = 0; r < s->pp && rc == 0; r++) {
        for (int i = 0; i < 2 * s->pp; i++) last[i] = -1;
        for (int i = 0; i < s->tables[r].n && rc == 0; i++) {
            const struct pipeline_action *a = &s->tables[r].actions[i];
            if (!is_send(a->op)) continue;
            int *l = &last[a->peer * 2 + (a->op == PIPE_SEND_FORWARD ? 0 : 1)];
            if (k->partner[r][i] < *l) {
                error_set(err, errlen, "rank %d, action %d (%s): rank %d receives it before an earlier message of "
                          "the same direction; keep the receive order equal to the send order", r, i,
                          describe(a, d, sizeof d), a->peer);
                rc = -1;
            }
            *l = k->partner[r][i];
        }
    }
    free(last);
    return rc;
}

/* ------------------------------------------------------------------ execution */

struct sim {
    const struct checker *k;
    const double *cost;   /* forward cost per rank * vp + chunk, or NULL */
    int *pc, *batch_end;  /* next action; last action of the posted batch (-1: none posted) */
    double *time, *post;  /* rank's clock; when its current batch was posted */
    double **match_time;  /* [rank][action] when a communication action met its partner; < 0: not yet */
    double *fwd_start, *fwd_end, *bwd_start, *bwd_end; /* [mb * stages + stage] */
};

static double forward_cost(const struct sim *m, int rank, int chunk)
{
    return m->cost ? m->cost[rank * m->k->s->vp + chunk] : 1.0;
}

static void run_compute(struct sim *m, int r, const struct pipeline_action *a)
{
    double c = forward_cost(m, r, a->chunk) * (a->op == PIPE_FORWARD ? 1.0 : 2.0);
    int idx = a->mb * m->k->stages + stage_of(m->k, r, a->chunk);
    (a->op == PIPE_FORWARD ? m->fwd_start : m->bwd_start)[idx] = m->time[r];
    m->time[r] += c;
    (a->op == PIPE_FORWARD ? m->fwd_end : m->bwd_end)[idx] = m->time[r];
    m->pc[r]++;
}

/* Posts r's current batch (once) and completes it when every action in it has met its partner,
 * which must be in the partner rank's posted batch. */
static bool try_batch(struct sim *m, int r)
{
    const struct pipeline_schedule *s = m->k->s;
    const struct pipeline_table *t = &s->tables[r];
    int lo = m->pc[r];
    if (m->batch_end[r] < 0) {
        int hi = lo;
        while (!t->actions[hi].wait) hi++;
        m->batch_end[r] = hi;
        m->post[r] = m->time[r];
    }
    bool done = true;
    double when = m->time[r];
    for (int i = lo; i <= m->batch_end[r]; i++) {
        if (m->match_time[r][i] < 0) {
            int p = t->actions[i].peer, j = m->k->partner[r][i];
            if (m->batch_end[p] < 0 || j < m->pc[p] || j > m->batch_end[p]) {
                done = false;
                continue;
            }
            double at = m->post[r] > m->post[p] ? m->post[r] : m->post[p];
            m->match_time[r][i] = m->match_time[p][j] = at;
        }
        if (m->match_time[r][i] > when) when = m->match_time[r][i];
    }
    if (!done) return false;
    m->time[r] = when;
    m->pc[r] = m->batch_end[r] + 1;
    m->batch_end[r] = -1;
    return true;
}

static void run_all(struct sim *m)
{
    const struct pipeline_schedule *s = m->k->s;
    bool progress = true;
    while (progress) {
        progress = false;
        for (int r = 0; r < s->pp; r++)
            while (m->pc[r] < s->tables[r].n) {
                const struct pipeline_action *a = &s->tables[r].actions[m->pc[r]];
                if (is_compute(a->op)) run_compute(m, r, a);
                else if (!try_batch(m, r)) break;
                progress = true;
            }
    }
}

static int report_deadlock(const struct sim *m, char *err, size_t errlen)
{
    const struct pipeline_schedule *s = m->k->s;
    char d[160], e[160];
    for (int r = 0; r < s->pp; r++) {
        const struct pipeline_table *t = &s->tables[r];
        if (m->pc[r] >= t->n) continue;
        for (int i = m->pc[r]; i <= m->batch_end[r]; i++) {
            if (m->match_time[r][i] >= 0) continue;
            int p = t->actions[i].peer;
            if (m->pc[p] >= s->tables[p].n) {
                error_set(err, errlen, "deadlock: rank %d waits at action %d (%s), but rank %d has finished", r, i,
                            describe(&t->actions[i], d, sizeof d), p);
                return -1;
            }
            error_set(err, errlen, "deadlock: rank %d waits at action %d (%s) while rank %d waits at action %d (%s)",
                        r, i, describe(&t->actions[i], d, sizeof d), p, m->pc[p],
                        describe(&s->tables[p].actions[m->pc[p]], e, sizeof e));
            return -1;
        }
    }
    error_set(err, errlen, "deadlock: no rank can move");
    return -1;
}

/* The order in time the tables promise: forward after the previous stage's forward, backward
 * after its own forward and the next stage's backward. */
static int check_dependencies(const struct sim *m, char *err, size_t errlen)
{
    const struct checker *k = m->k;
    for (int mb = 0; mb < k->s->num_micro_batches; mb++)
        for (int st = 0; st < k->stages; st++) {
            int i = mb * k->stages + st;
            const char *what = NULL;
            if (st > 0 && m->fwd_start[i] < m->fwd_end[i - 1]) what = "forward starts before the previous stage's forward";
            else if (m->bwd_start[i] < m->fwd_end[i]) what = "backward starts before its forward";
            else if (st < k->stages - 1 && m->bwd_start[i] < m->bwd_end[i + 1])
                what = "backward starts before the next stage's backward";
            if (what) {
                error_set(err, errlen, "micro batch %d, stage %d (rank %d, chunk %d): the %s ended", mb, st,
                            st % k->s->pp, st / k->s->pp, what);
                return -1;
            }
        }
    return 0;
}

static void sim_init(struct sim *m, const struct checker *k, const double *cost)
{
    const struct pipeline_schedule *s = k->s;
    size_t pp = (size_t)s->pp, cells = (size_t)s->num_micro_batches * (size_t)k->stages;
    memset(m, 0, sizeof *m);
    m->k = k;
    m->cost = cost;
    m->pc = xcalloc(pp, sizeof *m->pc);
    m->batch_end = xmalloc(pp * sizeof *m->batch_end);
    m->time = xcalloc(pp, sizeof *m->time);
    m->post = xcalloc(pp, sizeof *m->post);
    m->match_time = xcalloc(pp, sizeof *m->match_time);
    for (int r = 0; r < s->pp; r++) {
        m->batch_end[r] = -1;
        m->match_time[r] = xmalloc((size_t)(s->tables[r].n + 1) * sizeof **m->match_time);
        for (int i = 0; i < s->tables[r].n; i++) m->match_time[r][i] = -1;
    }
    m->fwd_start = xcalloc(cells, sizeof *m->fwd_start);
    m->fwd_end = xcalloc(cells, sizeof *m->fwd_end);
    m->bwd_start = xcalloc(cells, sizeof *m->bwd_start);
    m->bwd_end = xcalloc(cells, sizeof *m->bwd_end);
}

static void sim_free(struct sim *m)
{
    for (int r = 0; r < m->k->s->pp; r++) free(m->match_time[r]);
    free(m->match_time);
    free(m->pc);
    free(m->batch_end);
    free(m->time);
    free(m->post);
    free(m->fwd_start);
    free(m->fwd_end);
    free(m->bwd_start);
    free(m->bwd_end);
}

static void fill_stats(const struct sim *m, struct pipeline_rank_stats *stats, double *makespan)
{
    const struct pipeline_schedule *s = m->k->s;
    double end = 0;
    for (int r = 0; r < s->pp; r++)
        if (m->time[r] > end) end = m->time[r];
    for (int r = 0; r < s->pp; r++) {
        const struct pipeline_table *t = &s->tables[r];
        struct pipeline_rank_stats *st = &stats[r];
        int alive = 0;
        memset(st, 0, sizeof *st);
        for (int i = 0; i < t->n; i++) {
            const struct pipeline_action *a = &t->actions[i];
            /* a chunk's input is held from its arrival (or the data, on stage 0) to its backward */
            bool arrives = a->op == PIPE_RECV_FORWARD || (a->op == PIPE_FORWARD && stage_of(m->k, r, a->chunk) == 0);
            alive += arrives ? 1 : a->op == PIPE_BACKWARD ? -1 : 0;
            if (alive > st->peak_alive) st->peak_alive = alive;
            if (is_compute(a->op)) st->busy += forward_cost(m, r, a->chunk) * (a->op == PIPE_FORWARD ? 1.0 : 2.0);
        }
        st->idle = end - st->busy;
        st->bubble = end > 0 ? st->idle / end : 0;
    }
    *makespan = end;
}

static int check_static(struct checker *k, char *err, size_t errlen)
{
    return check_shape(k, err, errlen) || check_coverage(k, err, errlen) || match_messages(k, err, errlen) ||
                   check_compute_messages(k, err, errlen) || check_message_order(k, err, errlen)
               ? -1
               : 0;
}

int pipeline_simulate(const struct pipeline_schedule *sched, const double *forward_cost,
                      struct pipeline_rank_stats *stats, double *makespan, char *err, size_t errlen)
{
    struct checker k = {sched, sched->pp * sched->vp, sched->num_micro_batches * sched->vp, NULL};
    int rc;
    k.partner = xcalloc((size_t)sched->pp, sizeof *k.partner);
    for (int r = 0; r < sched->pp; r++) k.partner[r] = xmalloc((size_t)(sched->tables[r].n + 1) * sizeof **k.partner);
    rc = check_static(&k, err, errlen);
    if (rc == 0) {
        struct sim m;
        sim_init(&m, &k, forward_cost);
        run_all(&m);
        bool finished = true;
        for (int r = 0; r < sched->pp; r++) finished = finished && m.pc[r] >= sched->tables[r].n;
        rc = !finished ? report_deadlock(&m, err, errlen) : check_dependencies(&m, err, errlen);
        if (rc == 0 && stats) fill_stats(&m, stats, makespan);
        sim_free(&m);
    }
    for (int r = 0; r < sched->pp; r++) free(k.partner[r]);
    free(k.partner);
    return rc;
}

int pipeline_schedule_check(const struct pipeline_schedule *sched, char *err, size_t errlen)
{
    return pipeline_simulate(sched, NULL, NULL, NULL, err, errlen);
}
