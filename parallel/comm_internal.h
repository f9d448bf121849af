/* The inside of a communication group, shared by comm.c (MPI, host memory) and comm_nccl.c
 * (NCCL, device memory); not part of the communication interface. */
#ifndef MEGATRON_PARALLEL_COMM_INTERNAL_H
#define MEGATRON_PARALLEL_COMM_INTERNAL_H

#include <mpi.h>

#include "parallel/grid.h"

struct comm_group {
    enum grid_group_kind kind;
    int size, rank;
    int *members;        /* global ranks, by group rank (ascending) */
    MPI_Comm comm;       /* blocking operations, from the caller's thread */
    MPI_Comm comm_async; /* operations run by the communication thread */
    /* NCCL, for device buffers (added with the CUDA backend, issue 6 part 2): an ncclComm_t made
     * from an ncclUniqueId that group rank 0 broadcasts over `comm`, and the cudaStream_t its
     * collectives run on so they overlap compute. NULL until then. */
    void *nccl_comm;
    void *nccl_stream;
};

/* A started batch of sends and receives (comm_p2p_start): MPI requests on host memory, or the
 * CUDA event after the NCCL group on device memory. */
struct comm_p2p_handle {
    struct comm_group *g;
    bool device, done;
    int n;
    MPI_Request *requests;
    void *event; /* cudaEvent_t */
};

/* comm_nccl.c's device side of comm_p2p_start / comm_p2p_wait / comm_p2p_free. */
void comm_nccl_p2p_start(struct comm_p2p_handle *h, const struct comm_p2p *ops, int n, enum comm_dtype dt);
void comm_nccl_p2p_wait(struct comm_p2p_handle *h);
void comm_nccl_p2p_release(struct comm_p2p_handle *h);

/* comm_nccl.c's share of comm_timing_take: adds the device time recorded so far, and resets. */
void comm_nccl_timing_take(double *seconds);

#endif
