/* Communication between ranks (ARCHITECTURE.md principle 8): one communicator per group of the
 * process grid, and deterministic collectives on host memory over MPI. Device buffers will go
 * over NCCL on the same groups (the CUDA backend adds it; see comm.c's struct comm_group).
 *
 * Contract:
 *  - comm_init starts MPI (under mpirun, srun, or as a plain single process) before the flags are
 *    parsed; comm_finalize ends it. Every MPI call is checked; a failure ends the program.
 *  - After grid_set_current, comm_groups_create builds the communicator of every group kind of
 *    this rank. It is collective over all ranks. comm_group_get returns NULL for a kind this rank
 *    has no group of (the embedding groups of middle pipeline stages).
 *  - Determinism: every sum is taken in the order of the ranks within the group,
 *    ((x0 + x1) + x2) + ..., whatever the timing, so the same inputs give bitwise the same result
 *    on every rank and in every run. All-reduce is a reduce-scatter (chunk c summed by group
 *    rank c) followed by an all-gather, so an element's all-reduced value equals its
 *    reduce-scattered value bit for bit. MPI_Allreduce is not used: its order is up to the library.
 *  - Collectives must be called by every member of the group in the same order. Counts are in
 *    elements; sums and maxima take COMM_F32, COMM_F64, COMM_I32 or COMM_I64; the data movers
 *    (all-gather, broadcast, send/recv) take any type. A maximum propagates NaN.
 *  - Non-blocking variants run on one communication thread in the order they were issued, on a
 *    second communicator of the group (so they never mix with blocking calls); issue them in the
 *    same order on every rank. Buffers stay untouched until comm_wait returns.
 *  - Timeout: a collective (or send/recv) that waits longer than comm_set_timeout's limit
 *    (--distributed-timeout-minutes, default 10) prints one line naming the rank, the operation
 *    and the group, and ends the whole job with MPI_Abort (exit code 2). */
#ifndef MEGATRON_PARALLEL_COMM_H
#define MEGATRON_PARALLEL_COMM_H

#include <stdbool.h>
#include <stddef.h>

#include "kernels/tensor.h"
#include "parallel/grid.h"

/* COMM_BF16 / COMM_F16: 16-bit values, moved as bits over MPI, summed in their own type by NCCL. */
enum comm_dtype { COMM_F32, COMM_F64, COMM_I32, COMM_I64, COMM_BF16, COMM_F16 };

/* The element type of a tensor of dtype dt (fp32, bf16 or fp16) on the wire. */
static inline enum comm_dtype comm_dtype_of(enum dtype dt)
{
    return dt == DT_BF16 ? COMM_BF16 : dt == DT_F16 ? COMM_F16 : COMM_F32;
}

struct comm_group;
struct comm_request;

/* MPI_Init (thread level MPI_THREAD_MULTIPLE when the library has it); 0 on success. */
int comm_init(int *argc, char ***argv);
void comm_finalize(void);
int comm_world_size(void);
int comm_world_rank(void);

/* The limit a blocking operation may wait; seconds <= 0 turns the watchdog off. */
void comm_set_timeout(double seconds);
/* For tests: called with the one-line message instead of printing it and aborting; the wait
 * then goes on. NULL restores the default. */
void comm_set_timeout_handler(void (*handler)(const char *message));

/* Communicators for grid_current()'s groups (collective over all ranks); free before a new grid. */
void comm_groups_create(void);
void comm_groups_free(void);
struct comm_group *comm_group_get(enum grid_group_kind kind);

int comm_size(const struct comm_group *g);
int comm_rank(const struct comm_group *g);
/* Global rank of member i (0 <= i < comm_size). */
int comm_member(const struct comm_group *g, int i);
enum grid_group_kind comm_group_kind(const struct comm_group *g);

/* In place over buf[n]. */
void comm_all_reduce_sum(struct comm_group *g, void *buf, size_t n, enum comm_dtype dt);
void comm_all_reduce_max(struct comm_group *g, void *buf, size_t n, enum comm_dtype dt);
/* send[n * size] -> recv[n]: group rank r receives the sum of every rank's send[r*n, (r+1)*n). */
void comm_reduce_scatter_sum(struct comm_group *g, const void *send, void *recv, size_t n, enum comm_dtype dt);
/* send[n] -> recv[n * size], rank r's part at recv[r*n]. */
void comm_all_gather(struct comm_group *g, const void *send, void *recv, size_t n, enum comm_dtype dt);
/* root is a rank within the group. */
void comm_broadcast(struct comm_group *g, void *buf, size_t n, enum comm_dtype dt, int root);
/* Point to point within the group (pipeline stages); a peer of -1 means none (a no-op side). */
void comm_send(struct comm_group *g, const void *buf, size_t n, enum comm_dtype dt, int dst);
void comm_recv(struct comm_group *g, void *buf, size_t n, enum comm_dtype dt, int src);
void comm_sendrecv(struct comm_group *g, const void *send, size_t send_n, int dst, void *recv, size_t recv_n,
                   int src, enum comm_dtype dt);
void comm_barrier(struct comm_group *g);

/* One send or receive of a batch between pipeline stages. Messages with the same tag between two
 * ranks arrive in the order they were sent; the pipeline uses one tag per direction. */
struct comm_p2p {
    bool send;
    void *buf;
    size_t n;
    int peer; /* rank within the group */
    int tag;  /* 0 or 1 */
};
/* Posts every send and receive of the batch at once, then waits for all of them (Megatron's
 * batched p2p communication), on host memory. */
void comm_p2p_batch(struct comm_group *g, const struct comm_p2p *ops, int n, enum comm_dtype dt);

/* The same batch, started now and waited for later (--overlap-p2p-communication): the buffers
 * stay untouched until comm_p2p_wait returned for it. On host memory the sends and receives are
 * posted to MPI; on device memory (device = true) they are queued as one NCCL group on the
 * group's communication stream after everything the compute stream queued so far, and the wait
 * makes the compute stream wait for them (the host does not block). Waiting twice is harmless;
 * comm_p2p_free waits if needed and frees the handle. */
struct comm_p2p_handle;
struct comm_p2p_handle *comm_p2p_start(struct comm_group *g, const struct comm_p2p *ops, int n, enum comm_dtype dt,
                                       bool device);
void comm_p2p_wait(struct comm_p2p_handle *h);
void comm_p2p_free(struct comm_p2p_handle *h);

/* Communication time (--timing-log-level): while on, every collective and send/recv adds the
 * time it took to its group's kind: the wall time of blocking host operations (the communication
 * thread's too), and on the GPU the time its NCCL kernels ran on their stream (CUDA events, read
 * when taken). comm_timing_take adds what accumulated since the last take to seconds[k] for
 * every grid_group_kind k (GRID_NUM_KINDS entries) and starts again from zero. */
void comm_timing_enable(bool on);
bool comm_timing_enabled(void);
void comm_timing_take(double *seconds);

/* Non-blocking: same results, bit for bit, as the blocking calls. */
/* ---- device memory (NCCL), with the CUDA backend ----
 * comm_nccl_init creates an NCCL communicator for every group of this rank (group rank 0's
 * ncclUniqueId broadcast over MPI); collective over all ranks, after cuda_init. The device
 * collectives run on the CUDA backend's stream, in order with the compute around them; sums take
 * COMM_F32, COMM_BF16 and COMM_F16 (each summed in its own type). Without MEGATRON_CUDA they end the program. */
void comm_nccl_init(void);
void comm_nccl_free(struct comm_group *g);
bool comm_has_nccl(const struct comm_group *g);
void comm_device_all_reduce_sum(struct comm_group *g, void *buf, size_t n, enum comm_dtype dt);
void comm_device_all_reduce_max(struct comm_group *g, void *buf, size_t n, enum comm_dtype dt);
void comm_device_reduce_scatter_sum(struct comm_group *g, const void *send, void *recv, size_t n,
                                    enum comm_dtype dt);
void comm_device_all_gather(struct comm_group *g, const void *send, void *recv, size_t n, enum comm_dtype dt);
/* The same sum and reduce-scatter on the group's own communication stream, after everything the
 * compute stream has queued so far: they overlap the compute queued after them. comm_device_join
 * makes the compute stream wait for everything issued on the group's communication stream. The
 * in-place forms of NCCL apply: a reduce-scatter's recv may be send + rank * n. */
void comm_device_iall_reduce_sum(struct comm_group *g, void *buf, size_t n, enum comm_dtype dt);
void comm_device_ireduce_scatter_sum(struct comm_group *g, const void *send, void *recv, size_t n,
                                     enum comm_dtype dt);
/* --grad-reduce-in-bf16: the same on the communication stream with bf16 on the wire. buf holds
 * fp32 values; they are rounded into wire (bf16, as long as buf), summed there as bf16 by NCCL,
 * and the sums written back to buf as fp32: all of it for the all-reduce (n elements), this
 * rank's chunk buf + rank * n for the reduce-scatter (buf and wire n x size elements). */
void comm_device_iall_reduce_sum_bf16(struct comm_group *g, float *buf, void *wire, size_t n);
void comm_device_ireduce_scatter_sum_bf16(struct comm_group *g, float *buf, void *wire, size_t n);
void comm_device_join(struct comm_group *g);
/* The batch of comm_p2p_batch on device buffers: one NCCL group on the compute stream (NCCL keeps
 * the order of the messages between two ranks; tags are not needed). */
void comm_device_p2p_batch(struct comm_group *g, const struct comm_p2p *ops, int n, enum comm_dtype dt);

struct comm_request *comm_iall_reduce_sum(struct comm_group *g, void *buf, size_t n, enum comm_dtype dt);
struct comm_request *comm_ireduce_scatter_sum(struct comm_group *g, const void *send, void *recv, size_t n,
                                              enum comm_dtype dt);
struct comm_request *comm_iall_gather(struct comm_group *g, const void *send, void *recv, size_t n,
                                      enum comm_dtype dt);
/* Waits for the operation and frees the request. */
void comm_wait(struct comm_request *r);

#endif
