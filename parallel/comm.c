/* Communication over MPI for host memory: start-up, one communicator per grid group, the
 * deterministic collectives (sums in group-rank order), the communication thread behind the
 * non-blocking variants, and the watchdog of --distributed-timeout-minutes.
 * With the process grid, this module's state (MPI started, the groups, the two helper threads)
 * is the program's process-wide communication state, set up once at start-up. */
#include "parallel/comm.h"

#include <limits.h>
#include <mpi.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "parallel/comm_internal.h"
#include "util/error.h"

enum { TAG_REDUCE = 101, TAG_P2P = 102 };


static struct {
    bool started;       /* comm_init ran */
    bool own_mpi;       /* we called MPI_Init, so we call MPI_Finalize */
    bool threads;       /* MPI_THREAD_MULTIPLE: helper threads may call MPI */
    int world_size, world_rank;
    bool groups_created;
    struct comm_group *groups[GRID_NUM_KINDS];
} state;

/* ------------------------------------------------------------------ errors and the watchdog */

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static _Thread_local int watch_slot_of_thread; /* 1 on the communication thread */

/* Ends every rank of the job after a one-line message. A helper thread may call MPI only at
 * MPI_THREAD_MULTIPLE; otherwise its exit without MPI_Finalize makes the launcher end the job. */
_Noreturn static void abort_job(const char *message, bool from_helper_thread)
{
    fprintf(stderr, "megatron: error: %s\n", message);
    fflush(stderr);
    fflush(stdout);
    if (state.started && (state.threads || !from_helper_thread)) MPI_Abort(MPI_COMM_WORLD, EXIT_USER_ERROR);
    _exit(EXIT_USER_ERROR);
}

static void mpi_check(int rc, const char *call)
{
    if (rc == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING], msg[MPI_MAX_ERROR_STRING + 256];
    int len = 0;
    if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) snprintf(text, sizeof text, "error code %d", rc);
    snprintf(msg, sizeof msg, "rank %d: %s failed: %s; check the launcher and the other ranks' output",
             state.world_rank, call, text);
    abort_job(msg, watch_slot_of_thread == 1);
}
#define MPI_CALL(call) mpi_check((call), #call)

/* One slot per thread that blocks in MPI: 0 for the program's thread, 1 for the communication
 * thread. The watchdog reads them under the lock. */
struct watch_slot {
    bool busy, reported;
    double since;
    const char *op;
    const struct comm_group *g; /* NULL: the world, while the groups are built */
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t thread;
    bool running, stop;
    double timeout; /* seconds; <= 0: off */
    void (*handler)(const char *message);
    struct watch_slot slot[2];
    bool timing;                        /* --timing-log-level: add up the time per group kind */
    double seconds[GRID_NUM_KINDS];
} watch = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER, .timeout = 600.0};

static void watch_begin(const char *op, const struct comm_group *g)
{
    struct watch_slot *s = &watch.slot[watch_slot_of_thread];
    pthread_mutex_lock(&watch.lock);
    s->busy = true;
    s->reported = false;
    s->since = now_seconds();
    s->op = op;
    s->g = g;
    pthread_mutex_unlock(&watch.lock);
}

static void watch_end(void)
{
    pthread_mutex_lock(&watch.lock);
    struct watch_slot *s = &watch.slot[watch_slot_of_thread];
    s->busy = false;
    if (watch.timing && s->g) watch.seconds[s->g->kind] += now_seconds() - s->since;
    pthread_mutex_unlock(&watch.lock);
}

void comm_timing_enable(bool on)
{
    pthread_mutex_lock(&watch.lock);
    watch.timing = on;
    pthread_mutex_unlock(&watch.lock);
}

bool comm_timing_enabled(void)
{
    pthread_mutex_lock(&watch.lock);
    bool on = watch.timing;
    pthread_mutex_unlock(&watch.lock);
    return on;
}

void comm_timing_take(double *seconds)
{
    pthread_mutex_lock(&watch.lock);
    for (int k = 0; k < GRID_NUM_KINDS; k++) {
        seconds[k] += watch.seconds[k];
        watch.seconds[k] = 0.0;
    }
    pthread_mutex_unlock(&watch.lock);
    comm_nccl_timing_take(seconds);
}

/* "0,2,4,6", shortened after 16 ranks. */
static void format_members(const struct comm_group *g, char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < g->size && used + 16 < n; i++) {
        if (i == 16) {
            snprintf(buf + used, n - used, ",... (%d ranks)", g->size);
            return;
        }
        used += (size_t)snprintf(buf + used, n - used, "%s%d", i ? "," : "", g->members[i]);
    }
}

static void timeout_message(const struct watch_slot *s, double waited, char *msg, size_t n)
{
    char members[256];
    if (s->g) format_members(s->g, members, sizeof members);
    else snprintf(members, sizeof members, "all %d", state.world_size);
    snprintf(msg, n,
             "rank %d: %s on the %s group (ranks %s) waited %.1f s for the other ranks, more than "
             "--distributed-timeout-minutes %g; a rank of that group stopped answering (crashed, hangs, or waits in "
             "another collective): look at its output for the first error",
             state.world_rank, s->op, s->g ? grid_group_name(s->g->kind) : "world", members, waited,
             watch.timeout / 60.0);
}

static void *watchdog_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&watch.lock);
    while (!watch.stop) {
        double limit = watch.timeout;
        double poll = limit > 0 ? limit / 8 : 1.0;
        if (poll > 1.0) poll = 1.0;
        if (poll < 0.005) poll = 0.005;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        double t = (double)until.tv_nsec * 1e-9 + poll;
        until.tv_sec += (time_t)t;
        until.tv_nsec = (long)((t - (double)(time_t)t) * 1e9);
        pthread_cond_timedwait(&watch.wake, &watch.lock, &until);
        if (watch.stop || limit <= 0) continue;
        for (int i = 0; i < 2; i++) {
            struct watch_slot *s = &watch.slot[i];
            double waited = now_seconds() - s->since;
            if (!s->busy || s->reported || waited <= limit) continue;
            char msg[1024];
            timeout_message(s, waited, msg, sizeof msg);
            s->reported = true;
            void (*handler)(const char *) = watch.handler;
            pthread_mutex_unlock(&watch.lock);
            if (!handler) abort_job(msg, true);
            handler(msg);
            pthread_mutex_lock(&watch.lock);
        }
    }
    pthread_mutex_unlock(&watch.lock);
    return NULL;
}

void comm_set_timeout(double seconds)
{
    pthread_mutex_lock(&watch.lock);
    watch.timeout = seconds;
    pthread_cond_signal(&watch.wake);
    pthread_mutex_unlock(&watch.lock);
}

void comm_set_timeout_handler(void (*handler)(const char *message))
{
    pthread_mutex_lock(&watch.lock);
    watch.handler = handler;
    pthread_mutex_unlock(&watch.lock);
}

/* ------------------------------------------------------------------ start-up and groups */

int comm_init(int *argc, char ***argv)
{
    if (state.started) return 0;
    int already = 0, provided = MPI_THREAD_SINGLE;
    MPI_CALL(MPI_Initialized(&already));
    if (already) {
        MPI_CALL(MPI_Query_thread(&provided));
    } else {
        MPI_CALL(MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided));
        state.own_mpi = true;
    }
    state.started = true;
    state.threads = provided >= MPI_THREAD_MULTIPLE;
    /* Errors come back to mpi_check, which prints one line, instead of Open MPI's banner. */
    MPI_CALL(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    MPI_CALL(MPI_Comm_size(MPI_COMM_WORLD, &state.world_size));
    MPI_CALL(MPI_Comm_rank(MPI_COMM_WORLD, &state.world_rank));
    watch.stop = false;
    if (pthread_create(&watch.thread, NULL, watchdog_main, NULL) != 0) BUG("cannot start the watchdog thread");
    watch.running = true;
    return 0;
}

static void require_started(void)
{
    if (!state.started) BUG("comm: comm_init was not called");
}

int comm_world_size(void)
{
    require_started();
    return state.world_size;
}

int comm_world_rank(void)
{
    require_started();
    return state.world_rank;
}

static struct comm_group *group_create(const struct grid *gr, enum grid_group_kind kind)
{
    int index = grid_group_index(gr, kind, gr->rank);
    MPI_Comm c;
    MPI_CALL(MPI_Comm_split(MPI_COMM_WORLD, index < 0 ? MPI_UNDEFINED : index, gr->rank, &c));
    if (index < 0) return NULL;
    struct comm_group *g = xcalloc(1, sizeof *g);
    g->kind = kind;
    g->size = grid_group_size(gr, kind);
    g->members = xmalloc((size_t)g->size * sizeof *g->members);
    grid_group_members(gr, kind, index, g->members, g->size);
    g->comm = c;
    int size = 0;
    MPI_CALL(MPI_Comm_size(c, &size));
    MPI_CALL(MPI_Comm_rank(c, &g->rank));
    if (size != g->size || g->members[g->rank] != gr->rank)
        BUG("comm: the %s communicator disagrees with the grid", grid_group_name(kind));
    MPI_CALL(MPI_Comm_dup(c, &g->comm_async));
    return g;
}

void comm_groups_create(void)
{
    require_started();
    const struct grid *gr = grid_current();
    if (!gr) BUG("comm_groups_create: no current grid (call grid_set_current first)");
    if (state.groups_created) BUG("comm_groups_create: groups exist already; comm_groups_free first");
    if (gr->world_size != state.world_size || gr->rank != state.world_rank)
        BUG("comm_groups_create: the grid is for rank %d of %d, MPI says %d of %d", gr->rank, gr->world_size,
            state.world_rank, state.world_size);
    watch_begin("creating the communicators", NULL);
    for (int k = 0; k < GRID_NUM_KINDS; k++) state.groups[k] = group_create(gr, (enum grid_group_kind)k);
    watch_end();
    state.groups_created = true;
}

static void worker_drain(void);

void comm_groups_free(void)
{
    if (!state.groups_created) return;
    worker_drain();
    for (int k = 0; k < GRID_NUM_KINDS; k++) {
        struct comm_group *g = state.groups[k];
        if (!g) continue;
        comm_nccl_free(g);
        MPI_CALL(MPI_Comm_free(&g->comm_async));
        MPI_CALL(MPI_Comm_free(&g->comm));
        free(g->members);
        free(g);
        state.groups[k] = NULL;
    }
    state.groups_created = false;
}

struct comm_group *comm_group_get(enum grid_group_kind kind)
{
    if (!state.groups_created) BUG("comm_group_get: comm_groups_create was not called");
    if ((int)kind < 0 || kind >= GRID_NUM_KINDS) BUG("comm_group_get: kind %d out of range", (int)kind);
    return state.groups[kind];
}

int comm_size(const struct comm_group *g) { return g->size; }
int comm_rank(const struct comm_group *g) { return g->rank; }
enum grid_group_kind comm_group_kind(const struct comm_group *g) { return g->kind; }

int comm_member(const struct comm_group *g, int i)
{
    if (i < 0 || i >= g->size) BUG("comm_member: %d outside a group of %d", i, g->size);
    return g->members[i];
}

/* ------------------------------------------------------------------ element types */

static size_t dtype_bytes(enum comm_dtype dt)
{
    switch (dt) {
    case COMM_F32: return 4;
    case COMM_F64: return 8;
    case COMM_I32: return 4;
    case COMM_I64: return 8;
    case COMM_BF16:
    case COMM_F16: return 2;
    }
    BUG("comm: unknown dtype %d", (int)dt);
}

static MPI_Datatype mpi_type(enum comm_dtype dt)
{
    switch (dt) {
    case COMM_F32: return MPI_FLOAT;
    case COMM_F64: return MPI_DOUBLE;
    case COMM_I32: return MPI_INT32_T;
    case COMM_I64: return MPI_INT64_T;
    case COMM_BF16:
    case COMM_F16: return MPI_UINT16_T;
    }
    BUG("comm: unknown dtype %d", (int)dt);
}

static int mpi_count(size_t n)
{
    if (n > INT_MAX) BUG("comm: %zu elements in one message; MPI counts stop at INT_MAX", n);
    return (int)n;
}

enum reduce_op { OP_SUM, OP_MAX };

/* acc[i] = acc[i] + x[i] (or max, NaN winning): element by element, so the order of the ranks
 * alone decides the result. */
#define COMBINE(T)                                                                                 \
    do {                                                                                           \
        T *a = acc;                                                                                \
        const T *b = x;                                                                            \
        if (op == OP_SUM)                                                                          \
            for (size_t i = 0; i < n; i++) a[i] += b[i];                                           \
        else                                                                                       \
            for (size_t i = 0; i < n; i++)                                                         \
                if (a[i] == a[i] && (b[i] > a[i] || b[i] != b[i])) a[i] = b[i];                    \
    } while (0)

static void combine(void *acc, const void *x, size_t n, enum comm_dtype dt, enum reduce_op op)
{
    switch (dt) {
    case COMM_F32: COMBINE(float); return;
    case COMM_F64: COMBINE(double); return;
    case COMM_I32: COMBINE(int32_t); return;
    case COMM_I64: COMBINE(int64_t); return;
    case COMM_BF16:
    case COMM_F16: break;
    }
    BUG("comm: reductions take f32, f64, i32 or i64, not dtype %d", (int)dt);
}

/* ------------------------------------------------------------------ the collectives */

/* Group rank c owns elements [offs[c], offs[c+1]) of send: every rank sends each owner its
 * chunk, and the owner combines the chunks in group-rank order 0, 1, ..., size-1 into out, so
 * the result does not depend on which message arrives first. */
static void reduce_to_owners(const struct comm_group *g, MPI_Comm comm, const void *send, const size_t *offs,
                             void *out, enum comm_dtype dt, enum reduce_op op)
{
    int p = g->size, me = g->rank;
    size_t es = dtype_bytes(dt), mine = offs[me + 1] - offs[me];
    MPI_Datatype type = mpi_type(dt);
    MPI_Request *req = xmalloc((size_t)p * sizeof *req);
    int nreq = 0;
    for (int c = 0; c < p; c++)
        if (c != me)
            MPI_CALL(MPI_Isend((const char *)send + offs[c] * es, mpi_count(offs[c + 1] - offs[c]), type, c,
                               TAG_REDUCE, comm, &req[nreq++]));
    char *acc = xmalloc(mine * es + 1), *tmp = xmalloc(mine * es + 1);
    for (int src = 0; src < p; src++) {
        const void *piece = (const char *)send + offs[me] * es;
        if (src != me) {
            MPI_CALL(MPI_Recv(tmp, mpi_count(mine), type, src, TAG_REDUCE, comm, MPI_STATUS_IGNORE));
            piece = tmp;
        }
        if (src == 0) memcpy(acc, piece, mine * es);
        else combine(acc, piece, mine, dt, op);
    }
    MPI_CALL(MPI_Waitall(nreq, req, MPI_STATUSES_IGNORE));
    memcpy(out, acc, mine * es); /* after the sends: out may be this rank's own chunk of send */
    free(acc);
    free(tmp);
    free(req);
}

static void all_reduce_on(const struct comm_group *g, MPI_Comm comm, void *buf, size_t n, enum comm_dtype dt,
                          enum reduce_op op)
{
    int p = g->size;
    size_t es = dtype_bytes(dt);
    if (p == 1 || n == 0) return;
    mpi_count(n);
    size_t *offs = xmalloc((size_t)(p + 1) * sizeof *offs);
    int *counts = xmalloc((size_t)p * sizeof *counts), *displs = xmalloc((size_t)p * sizeof *displs);
    for (int c = 0; c <= p; c++) offs[c] = n / (size_t)p * (size_t)c + n % (size_t)p * (size_t)c / (size_t)p;
    reduce_to_owners(g, comm, buf, offs, (char *)buf + offs[g->rank] * es, dt, op);
    for (int c = 0; c < p; c++) {
        counts[c] = (int)(offs[c + 1] - offs[c]);
        displs[c] = (int)offs[c];
    }
    MPI_CALL(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, counts, displs, mpi_type(dt), comm));
    free(offs);
    free(counts);
    free(displs);
}

static void reduce_scatter_on(const struct comm_group *g, MPI_Comm comm, const void *send, void *recv, size_t n,
                              enum comm_dtype dt)
{
    int p = g->size;
    if (p == 1) {
        if (recv != send) memmove(recv, send, n * dtype_bytes(dt));
        return;
    }
    size_t *offs = xmalloc((size_t)(p + 1) * sizeof *offs);
    for (int c = 0; c <= p; c++) offs[c] = (size_t)c * n;
    reduce_to_owners(g, comm, send, offs, recv, dt, OP_SUM);
    free(offs);
}

static void all_gather_on(const struct comm_group *g, MPI_Comm comm, const void *send, void *recv, size_t n,
                          enum comm_dtype dt)
{
    size_t es = dtype_bytes(dt);
    char *mine = (char *)recv + (size_t)g->rank * n * es;
    if (g->size == 1) {
        if (mine != send) memmove(mine, send, n * es);
        return;
    }
    int count = mpi_count(n);
    mpi_count(n * (size_t)g->size);
    if (send == mine) /* Megatron's parameter gather writes each shard in place */
        MPI_CALL(MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, recv, count, mpi_type(dt), comm));
    else
        MPI_CALL(MPI_Allgather(send, count, mpi_type(dt), recv, count, mpi_type(dt), comm));
}

static void check_group(const struct comm_group *g, const char *op)
{
    if (!g) BUG("%s: no group (this rank is not in a group of that kind)", op);
}

void comm_all_reduce_sum(struct comm_group *g, void *buf, size_t n, enum comm_dtype dt)
{
    check_group(g, "comm_all_reduce_sum");
    watch_begin("comm_all_reduce_sum", g);
    all_reduce_on(g, g->comm, buf, n, dt, OP_SUM);
    watch_end();
}

void comm_all_reduce_max(struct comm_group *g, void *buf, size_t n, enum comm_dtype dt)
{
    check_group(g, "comm_all_reduce_max");
    watch_begin("comm_all_reduce_max", g);
    all_reduce_on(g, g->comm, buf, n, dt, OP_MAX);
    watch_end();
}

void comm_reduce_scatter_sum(struct comm_group *g, const void *send, void *recv, size_t n, enum comm_dtype dt)
{
    check_group(g, "comm_reduce_scatter_sum");
    watch_begin("comm_reduce_scatter_sum", g);
    reduce_scatter_on(g, g->comm, send, recv, n, dt);
    watch_end();
}

void comm_all_gather(struct comm_group *g, const void *send, void *recv, size_t n, enum comm_dtype dt)
{
    check_group(g, "comm_all_gather");
    watch_begin("comm_all_gather", g);
    all_gather_on(g, g->comm, send, recv, n, dt);
    watch_end();
}

void comm_broadcast(struct comm_group *g, void *buf, size_t n, enum comm_dtype dt, int root)
{
    check_group(g, "comm_broadcast");
    if (root < 0 || root >= g->size) BUG("comm_broadcast: root %d outside a group of %d", root, g->size);
    if (g->size == 1) return;
    watch_begin("comm_broadcast", g);
    MPI_CALL(MPI_Bcast(buf, mpi_count(n), mpi_type(dt), root, g->comm));
    watch_end();
}

static int peer(const struct comm_group *g, int r, const char *op)
{
    if (r == -1) return MPI_PROC_NULL;
    if (r < 0 || r >= g->size) BUG("%s: peer %d outside a group of %d", op, r, g->size);
    return r;
}

void comm_send(struct comm_group *g, const void *buf, size_t n, enum comm_dtype dt, int dst)
{
    check_group(g, "comm_send");
    int to = peer(g, dst, "comm_send");
    watch_begin("comm_send", g);
    MPI_CALL(MPI_Send(buf, mpi_count(n), mpi_type(dt), to, TAG_P2P, g->comm));
    watch_end();
}

void comm_recv(struct comm_group *g, void *buf, size_t n, enum comm_dtype dt, int src)
{
    check_group(g, "comm_recv");
    int from = peer(g, src, "comm_recv");
    watch_begin("comm_recv", g);
    MPI_CALL(MPI_Recv(buf, mpi_count(n), mpi_type(dt), from, TAG_P2P, g->comm, MPI_STATUS_IGNORE));
    watch_end();
}

void comm_sendrecv(struct comm_group *g, const void *send, size_t send_n, int dst, void *recv, size_t recv_n,
                   int src, enum comm_dtype dt)
{
    check_group(g, "comm_sendrecv");
    int to = peer(g, dst, "comm_sendrecv"), from = peer(g, src, "comm_sendrecv");
    watch_begin("comm_sendrecv", g);
    MPI_CALL(MPI_Sendrecv(send, mpi_count(send_n), mpi_type(dt), to, TAG_P2P, recv, mpi_count(recv_n), mpi_type(dt),
                          from, TAG_P2P, g->comm, MPI_STATUS_IGNORE));
    watch_end();
}

static void post_p2p(struct comm_group *g, const struct comm_p2p *ops, int n, enum comm_dtype dt, MPI_Request *req)
{
    for (int i = 0; i < n; i++) {
        const struct comm_p2p *o = &ops[i];
        int other = peer(g, o->peer, "comm_p2p_batch"), tag = TAG_P2P + 1 + (o->tag & 1);
        if (o->send)
            MPI_CALL(MPI_Isend(o->buf, mpi_count(o->n), mpi_type(dt), other, tag, g->comm, &req[i]));
        else
            MPI_CALL(MPI_Irecv(o->buf, mpi_count(o->n), mpi_type(dt), other, tag, g->comm, &req[i]));
    }
}

void comm_p2p_batch(struct comm_group *g, const struct comm_p2p *ops, int n, enum comm_dtype dt)
{
    check_group(g, "comm_p2p_batch");
    if (n <= 0) return;
    MPI_Request *req = xmalloc((size_t)n * sizeof *req);
    watch_begin("comm_p2p_batch", g);
    post_p2p(g, ops, n, dt, req);
    MPI_CALL(MPI_Waitall(n, req, MPI_STATUSES_IGNORE));
    watch_end();
    free(req);
}

struct comm_p2p_handle *comm_p2p_start(struct comm_group *g, const struct comm_p2p *ops, int n, enum comm_dtype dt,
                                       bool device)
{
    check_group(g, "comm_p2p_start");
    struct comm_p2p_handle *h = xcalloc(1, sizeof *h);
    h->g = g;
    h->device = device;
    h->n = n;
    if (device) {
        comm_nccl_p2p_start(h, ops, n, dt);
        return h;
    }
    h->requests = xmalloc((size_t)(n > 0 ? n : 1) * sizeof *h->requests);
    post_p2p(g, ops, n, dt, h->requests);
    return h;
}

void comm_p2p_wait(struct comm_p2p_handle *h)
{
    if (!h || h->done) return;
    if (h->device) {
        comm_nccl_p2p_wait(h);
    } else if (h->n > 0) {
        watch_begin("comm_p2p_wait", h->g);
        MPI_CALL(MPI_Waitall(h->n, h->requests, MPI_STATUSES_IGNORE));
        watch_end();
    }
    h->done = true;
}

void comm_p2p_free(struct comm_p2p_handle *h)
{
    if (!h) return;
    comm_p2p_wait(h);
    if (h->device) comm_nccl_p2p_release(h);
    free(h->requests);
    free(h);
}

void comm_barrier(struct comm_group *g)
{
    check_group(g, "comm_barrier");
    if (g->size == 1) return;
    watch_begin("comm_barrier", g);
    MPI_CALL(MPI_Barrier(g->comm));
    watch_end();
}

/* ------------------------------------------------------------------ non-blocking operations */

enum async_op { ASYNC_ALL_REDUCE_SUM, ASYNC_REDUCE_SCATTER_SUM, ASYNC_ALL_GATHER };

static const char *const ASYNC_NAMES[] = {"comm_iall_reduce_sum", "comm_ireduce_scatter_sum", "comm_iall_gather"};

struct comm_request {
    enum async_op op;
    struct comm_group *g;
    const void *send;
    void *recv;
    size_t n;
    enum comm_dtype dt;
    bool done;
    struct comm_request *next;
};

/* The communication thread: runs queued requests one after another, in issue order. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t work, done;
    pthread_t thread;
    bool running, stop;
    struct comm_request *head, *tail;
    int pending;
} worker = {.lock = PTHREAD_MUTEX_INITIALIZER, .work = PTHREAD_COND_INITIALIZER, .done = PTHREAD_COND_INITIALIZER};

static void run_request(struct comm_request *r, MPI_Comm comm)
{
    watch_begin(ASYNC_NAMES[r->op], r->g);
    switch (r->op) {
    case ASYNC_ALL_REDUCE_SUM: all_reduce_on(r->g, comm, r->recv, r->n, r->dt, OP_SUM); break;
    case ASYNC_REDUCE_SCATTER_SUM: reduce_scatter_on(r->g, comm, r->send, r->recv, r->n, r->dt); break;
    case ASYNC_ALL_GATHER: all_gather_on(r->g, comm, r->send, r->recv, r->n, r->dt); break;
    }
    watch_end();
}

static void *worker_main(void *arg)
{
    (void)arg;
    watch_slot_of_thread = 1;
    pthread_mutex_lock(&worker.lock);
    for (;;) {
        while (!worker.head && !worker.stop) pthread_cond_wait(&worker.work, &worker.lock);
        if (!worker.head) break;
        struct comm_request *r = worker.head;
        worker.head = r->next;
        if (!worker.head) worker.tail = NULL;
        pthread_mutex_unlock(&worker.lock);
        run_request(r, r->g->comm_async);
        pthread_mutex_lock(&worker.lock);
        r->done = true;
        worker.pending--;
        pthread_cond_broadcast(&worker.done);
    }
    pthread_mutex_unlock(&worker.lock);
    return NULL;
}

static struct comm_request *submit(enum async_op op, struct comm_group *g, const void *send, void *recv, size_t n,
                                   enum comm_dtype dt)
{
    check_group(g, ASYNC_NAMES[op]);
    dtype_bytes(dt);
    struct comm_request *r = xcalloc(1, sizeof *r);
    *r = (struct comm_request){op, g, send, recv, n, dt, false, NULL};
    if (!state.threads || g->size == 1) { /* no thread may call MPI, or nothing to wait for */
        run_request(r, g->comm);
        r->done = true;
        return r;
    }
    pthread_mutex_lock(&worker.lock);
    if (!worker.running) {
        worker.stop = false;
        if (pthread_create(&worker.thread, NULL, worker_main, NULL) != 0) BUG("cannot start the communication thread");
        worker.running = true;
    }
    if (worker.tail) worker.tail->next = r;
    else worker.head = r;
    worker.tail = r;
    worker.pending++;
    pthread_cond_signal(&worker.work);
    pthread_mutex_unlock(&worker.lock);
    return r;
}

struct comm_request *comm_iall_reduce_sum(struct comm_group *g, void *buf, size_t n, enum comm_dtype dt)
{
    return submit(ASYNC_ALL_REDUCE_SUM, g, buf, buf, n, dt);
}

struct comm_request *comm_ireduce_scatter_sum(struct comm_group *g, const void *send, void *recv, size_t n,
                                              enum comm_dtype dt)
{
    return submit(ASYNC_REDUCE_SCATTER_SUM, g, send, recv, n, dt);
}

struct comm_request *comm_iall_gather(struct comm_group *g, const void *send, void *recv, size_t n,
                                      enum comm_dtype dt)
{
    return submit(ASYNC_ALL_GATHER, g, send, recv, n, dt);
}

void comm_wait(struct comm_request *r)
{
    pthread_mutex_lock(&worker.lock);
    while (!r->done) pthread_cond_wait(&worker.done, &worker.lock);
    pthread_mutex_unlock(&worker.lock);
    free(r);
}

/* Every queued request must have been issued and waited for before the groups go away. */
static void worker_drain(void)
{
    pthread_mutex_lock(&worker.lock);
    int pending = worker.pending;
    pthread_mutex_unlock(&worker.lock);
    if (pending) BUG("comm: %d non-blocking operations still running; comm_wait them first", pending);
}

static void worker_stop(void)
{
    pthread_mutex_lock(&worker.lock);
    bool running = worker.running;
    worker.stop = true;
    pthread_cond_signal(&worker.work);
    pthread_mutex_unlock(&worker.lock);
    if (running) pthread_join(worker.thread, NULL);
    worker.running = false;
}

void comm_finalize(void)
{
    if (!state.started) return;
    comm_groups_free();
    worker_stop();
    pthread_mutex_lock(&watch.lock);
    watch.stop = true;
    pthread_cond_signal(&watch.wake);
    pthread_mutex_unlock(&watch.lock);
    if (watch.running) pthread_join(watch.thread, NULL);
    watch.running = false;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (state.own_mpi && !finalized) MPI_CALL(MPI_Finalize());
    state.started = false;
}
