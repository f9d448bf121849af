/* Collectives on device memory over NCCL, on the same groups as the MPI ones (comm.c): one
 * ncclComm per group, made from an ncclUniqueId that group rank 0 broadcasts over the group's
 * MPI communicator. They run on the CUDA backend's stream, so they are ordered with the kernels
 * before and after them without host synchronisation. */
#include "parallel/comm.h"

#include <stdio.h>
#include <stdlib.h>

#include "parallel/comm_internal.h"
#include "util/error.h"

#ifdef MEGATRON_CUDA
#include <cuda_runtime.h>
#include <nccl.h>

#include "kernels/cuda/cuda_ops.h"

#define NCCL_CALL(call)                                                                             \
    do {                                                                                            \
        ncclResult_t r_ = (call);                                                                   \
        if (r_ != ncclSuccess)                                                                      \
            die_user("NCCL: %s failed: %s; check NCCL_DEBUG=INFO output and the GPUs' links", #call, \
                     ncclGetErrorString(r_));                                                       \
    } while (0)

static ncclDataType_t nccl_type(enum comm_dtype dt)
{
    switch (dt) {
    case COMM_F32: return ncclFloat32;
    case COMM_F64: return ncclFloat64;
    case COMM_I32: return ncclInt32;
    case COMM_I64: return ncclInt64;
    case COMM_BF16: return ncclBfloat16;
    case COMM_F16: return ncclFloat16;
    }
    BUG("nccl_type: %d", (int)dt);
}

void comm_nccl_init(void)
{
    for (int k = 0; k < GRID_NUM_KINDS; k++) {
        struct comm_group *g = comm_group_get((enum grid_group_kind)k);
        if (!g || g->nccl_comm || g->size < 2) continue;
        ncclUniqueId id;
        if (g->rank == 0) NCCL_CALL(ncclGetUniqueId(&id));
        if (MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, g->comm) != MPI_SUCCESS)
            die_user("NCCL set-up: broadcasting the communicator id over MPI failed; check the MPI launch");
        ncclComm_t c;
        NCCL_CALL(ncclCommInitRank(&c, g->size, id, g->rank));
        g->nccl_comm = c;
    }
}

static ncclComm_t need_nccl(const struct comm_group *g, const char *op)
{
    if (!g->nccl_comm) BUG("%s on the %s group: comm_nccl_init was not called", op, grid_group_name(g->kind));
    return (ncclComm_t)g->nccl_comm;
}

void comm_nccl_free(struct comm_group *g)
{
    if (!g->nccl_comm) return;
    ncclCommDestroy((ncclComm_t)g->nccl_comm);
    g->nccl_comm = NULL;
    if (g->nccl_stream) cudaStreamDestroy((cudaStream_t)g->nccl_stream);
    g->nccl_stream = NULL;
}

static void cuda_call(cudaError_t e, const char *what)
{
    if (e != cudaSuccess) die_user("CUDA: %s failed: %s; check the GPU and driver", what, cudaGetErrorString(e));
}

/* --timing-log-level: a pair of events around each NCCL call, read when the time is taken. */
enum { TIMED_MAX = 4096 };
static struct {
    cudaEvent_t start[TIMED_MAX], end[TIMED_MAX];
    int kind[TIMED_MAX];
    int n, created;
    double seconds[GRID_NUM_KINDS];
} timed;

static void timing_fold(void)
{
    for (int i = 0; i < timed.n; i++) {
        float ms = 0.0f;
        cuda_call(cudaEventSynchronize(timed.end[i]), "cudaEventSynchronize");
        cuda_call(cudaEventElapsedTime(&ms, timed.start[i], timed.end[i]), "cudaEventElapsedTime");
        timed.seconds[timed.kind[i]] += ms / 1000.0;
    }
    timed.n = 0;
}

/* The slot of the call about to be queued on stream s, or -1 when timing is off. */
static int timing_begin(const struct comm_group *g, cudaStream_t s)
{
    if (!comm_timing_enabled()) return -1;
    if (timed.n == TIMED_MAX) timing_fold();
    int i = timed.n;
    if (i == timed.created) {
        cuda_call(cudaEventCreate(&timed.start[i]), "cudaEventCreate");
        cuda_call(cudaEventCreate(&timed.end[i]), "cudaEventCreate");
        timed.created++;
    }
    timed.kind[i] = (int)g->kind;
    cuda_call(cudaEventRecord(timed.start[i], s), "cudaEventRecord");
    return i;
}

static void timing_end(int i, cudaStream_t s)
{
    if (i < 0) return;
    cuda_call(cudaEventRecord(timed.end[i], s), "cudaEventRecord");
    timed.n = i + 1;
}

void comm_nccl_timing_take(double *seconds)
{
    timing_fold();
    for (int k = 0; k < GRID_NUM_KINDS; k++) {
        seconds[k] += timed.seconds[k];
        timed.seconds[k] = 0.0;
    }
}

/* The group's communication stream, made to wait for what the compute stream queued so far. */
static cudaStream_t comm_stream_after_compute(struct comm_group *g)
{
    if (!g->nccl_stream) {
        cudaStream_t s;
        cuda_call(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
        g->nccl_stream = s;
    }
    cudaEvent_t ev;
    cuda_call(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "cudaEventCreate");
    cuda_call(cudaEventRecord(ev, (cudaStream_t)cuda_stream()), "cudaEventRecord");
    cuda_call(cudaStreamWaitEvent((cudaStream_t)g->nccl_stream, ev, 0), "cudaStreamWaitEvent");
    cuda_call(cudaEventDestroy(ev), "cudaEventDestroy"); /* released once the wait is satisfied */
    return (cudaStream_t)g->nccl_stream;
}

void comm_device_iall_reduce_sum(struct comm_group *g, void *buf, size_t n, enum comm_dtype dt)
{
    ncclComm_t c = need_nccl(g, "all-reduce");
    cudaStream_t s = comm_stream_after_compute(g);
    int t = timing_begin(g, s);
    NCCL_CALL(ncclAllReduce(buf, buf, n, nccl_type(dt), ncclSum, c, s));
    timing_end(t, s);
}

void comm_device_ireduce_scatter_sum(struct comm_group *g, const void *send, void *recv, size_t n, enum comm_dtype dt)
{
    ncclComm_t c = need_nccl(g, "reduce-scatter");
    cudaStream_t s = comm_stream_after_compute(g);
    int t = timing_begin(g, s);
    NCCL_CALL(ncclReduceScatter(send, recv, n, nccl_type(dt), ncclSum, c, s));
    timing_end(t, s);
}

void comm_device_iall_reduce_sum_bf16(struct comm_group *g, float *buf, void *wire, size_t n)
{
    ncclComm_t c = need_nccl(g, "all-reduce");
    cudaStream_t s = comm_stream_after_compute(g);
    int t = timing_begin(g, s);
    cuda_f32_to_bf16_on(s, wire, buf, (int64_t)n);
    NCCL_CALL(ncclAllReduce(wire, wire, n, ncclBfloat16, ncclSum, c, s));
    cuda_bf16_to_f32_on(s, buf, wire, (int64_t)n);
    timing_end(t, s);
}

void comm_device_ireduce_scatter_sum_bf16(struct comm_group *g, float *buf, void *wire, size_t n)
{
    ncclComm_t c = need_nccl(g, "reduce-scatter");
    cudaStream_t s = comm_stream_after_compute(g);
    int t = timing_begin(g, s);
    size_t mine = (size_t)comm_rank(g) * n;
    cuda_f32_to_bf16_on(s, wire, buf, (int64_t)(n * (size_t)comm_size(g)));
    NCCL_CALL(ncclReduceScatter(wire, (uint16_t *)wire + mine, n, ncclBfloat16, ncclSum, c, s));
    cuda_bf16_to_f32_on(s, buf + mine, (uint16_t *)wire + mine, (int64_t)n);
    timing_end(t, s);
}

void comm_device_join(struct comm_group *g)
{
    if (!g->nccl_stream) return;
    cudaEvent_t ev;
    cuda_call(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "cudaEventCreate");
    cuda_call(cudaEventRecord(ev, (cudaStream_t)g->nccl_stream), "cudaEventRecord");
    cuda_call(cudaStreamWaitEvent((cudaStream_t)cuda_stream(), ev, 0), "cudaStreamWaitEvent");
    cuda_call(cudaEventDestroy(ev), "cudaEventDestroy");
}

bool comm_has_nccl(const struct comm_group *g) { return g && g->nccl_comm; }

/* The ops as one NCCL group on stream s. */
static void p2p_group(struct comm_group *g, const struct comm_p2p *ops, int n, enum comm_dtype dt, cudaStream_t s)
{
    ncclComm_t c = need_nccl(g, "send/recv");
    int t = timing_begin(g, s);
    NCCL_CALL(ncclGroupStart());
    for (int i = 0; i < n; i++) {
        const struct comm_p2p *o = &ops[i];
        if (o->send)
            NCCL_CALL(ncclSend(o->buf, o->n, nccl_type(dt), o->peer, c, s));
        else
            NCCL_CALL(ncclRecv(o->buf, o->n, nccl_type(dt), o->peer, c, s));
    }
    NCCL_CALL(ncclGroupEnd());
    timing_end(t, s);
}

void comm_device_p2p_batch(struct comm_group *g, const struct comm_p2p *ops, int n, enum comm_dtype dt)
{
    if (n <= 0) return;
    p2p_group(g, ops, n, dt, (cudaStream_t)cuda_stream());
}

void comm_nccl_p2p_start(struct comm_p2p_handle *h, const struct comm_p2p *ops, int n, enum comm_dtype dt)
{
    cudaStream_t s = comm_stream_after_compute(h->g);
    if (n > 0) p2p_group(h->g, ops, n, dt, s);
    cudaEvent_t ev;
    cuda_call(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "cudaEventCreate");
    cuda_call(cudaEventRecord(ev, s), "cudaEventRecord");
    h->event = ev;
}

void comm_nccl_p2p_wait(struct comm_p2p_handle *h)
{
    cuda_call(cudaStreamWaitEvent((cudaStream_t)cuda_stream(), (cudaEvent_t)h->event, 0), "cudaStreamWaitEvent");
}

void comm_nccl_p2p_release(struct comm_p2p_handle *h)
{
    if (h->event) cuda_call(cudaEventDestroy((cudaEvent_t)h->event), "cudaEventDestroy");
    h->event = NULL;
}

/* A collective on the compute stream, timed when timing is on. */
#define ON_COMPUTE(g, call)                            \
    do {                                               \
        cudaStream_t s_ = (cudaStream_t)cuda_stream(); \
        int t_ = timing_begin(g, s_);                  \
        NCCL_CALL(call);                               \
        timing_end(t_, s_);                            \
    } while (0)

void comm_device_all_reduce_sum(struct comm_group *g, void *buf, size_t n, enum comm_dtype dt)
{
    ON_COMPUTE(g, ncclAllReduce(buf, buf, n, nccl_type(dt), ncclSum, need_nccl(g, "all-reduce"), s_));
}

void comm_device_all_reduce_max(struct comm_group *g, void *buf, size_t n, enum comm_dtype dt)
{
    ON_COMPUTE(g, ncclAllReduce(buf, buf, n, nccl_type(dt), ncclMax, need_nccl(g, "all-reduce"), s_));
}

void comm_device_reduce_scatter_sum(struct comm_group *g, const void *send, void *recv, size_t n, enum comm_dtype dt)
{
    ON_COMPUTE(g, ncclReduceScatter(send, recv, n, nccl_type(dt), ncclSum, need_nccl(g, "reduce-scatter"), s_));
}

void comm_device_all_gather(struct comm_group *g, const void *send, void *recv, size_t n, enum comm_dtype dt)
{
    ON_COMPUTE(g, ncclAllGather(send, recv, n, nccl_type(dt), need_nccl(g, "all-gather"), s_));
}

#else /* a build without the CUDA backend has no device buffers to move */

void comm_nccl_init(void) { die_user("NCCL: this build has no CUDA backend; rebuild with nvcc available"); }
void comm_nccl_free(struct comm_group *g) { (void)g; }
bool comm_has_nccl(const struct comm_group *g) { (void)g; return false; }

static _Noreturn void no_nccl(void) { BUG("device collective in a build without the CUDA backend"); }
void comm_device_all_reduce_sum(struct comm_group *g, void *buf, size_t n, enum comm_dtype dt)
{
    (void)g, (void)buf, (void)n, (void)dt;
    no_nccl();
}
void comm_device_all_reduce_max(struct comm_group *g, void *buf, size_t n, enum comm_dtype dt)
{
    (void)g, (void)buf, (void)n, (void)dt;
    no_nccl();
}
void comm_device_reduce_scatter_sum(struct comm_group *g, const void *send, void *recv, size_t n, enum comm_dtype dt)
{
    (void)g, (void)send, (void)recv, (void)n, (void)dt;
    no_nccl();
}
void comm_device_all_gather(struct comm_group *g, const void *send, void *recv, size_t n, enum comm_dtype dt)
{
    (void)g, (void)send, (void)recv, (void)n, (void)dt;
    no_nccl();
}
void comm_device_iall_reduce_sum(struct comm_group *g, void *buf, size_t n, enum comm_dtype dt)
{
    (void)g, (void)buf, (void)n, (void)dt;
    no_nccl();
}
void comm_device_ireduce_scatter_sum(struct comm_group *g, const void *send, void *recv, size_t n, enum comm_dtype dt)
{
    (void)g, (void)send, (void)recv, (void)n, (void)dt;
    no_nccl();
}
void comm_device_iall_reduce_sum_bf16(struct comm_group *g, float *buf, void *wire, size_t n)
{
    (void)g, (void)buf, (void)wire, (void)n;
    no_nccl();
}
void comm_device_ireduce_scatter_sum_bf16(struct comm_group *g, float *buf, void *wire, size_t n)
{
    (void)g, (void)buf, (void)wire, (void)n;
    no_nccl();
}
void comm_device_join(struct comm_group *g) { (void)g; }
void comm_nccl_timing_take(double *seconds) { (void)seconds; }
void comm_nccl_p2p_start(struct comm_p2p_handle *h, const struct comm_p2p *ops, int n, enum comm_dtype dt)
{
    (void)h, (void)ops, (void)n, (void)dt;
    no_nccl();
}
void comm_nccl_p2p_wait(struct comm_p2p_handle *h)
{
    (void)h;
    no_nccl();
}
void comm_nccl_p2p_release(struct comm_p2p_handle *h) { (void)h; }
void comm_device_p2p_batch(struct comm_group *g, const struct comm_p2p *ops, int n, enum comm_dtype dt)
{
    (void)g, (void)ops, (void)n, (void)dt;
    no_nccl();
}
#endif
