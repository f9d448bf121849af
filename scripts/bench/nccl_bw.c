/* NCCL all-reduce bus bandwidth on this machine's GPUs, through the same communicators training
 * uses (parallel/comm.h): one rank per GPU under mpirun, fp32 buffers from 64 MiB to 4 GiB summed
 * over the data-parallel group, 5 warm-up then 20 timed iterations per size. Prints, as
 * nccl-tests does, the algorithm bandwidth (bytes / time) and the bus bandwidth
 * (2 (n - 1) / n x algorithm bandwidth), the number to compare with the DP gradient reduction's.
 *   mpirun -np 4 build/scripts/bench/nccl_bw */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "kernels/arena.h"
#include "kernels/cuda/cuda_ops.h"
#include "parallel/comm.h"
#include "parallel/grid.h"
#include "util/error.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    if (comm_init(&argc, &argv)) return 2;
    int n = comm_world_size(), rank = comm_world_rank();
    struct grid g;
    char err[256];
    if (grid_init(&g, n, rank, 1, 1, 1, 1, false, err, sizeof err)) die_user("%s", err);
    grid_set_current(&g);
    comm_groups_create();
    const char *local = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
    cuda_init(local ? atoi(local) : rank);
    comm_nccl_init();
    struct comm_group *dp = comm_group_get(GRID_DP);
    size_t max_bytes = (size_t)4 << 30;
    float *buf = device_alloc(DEV_CUDA, max_bytes);
    if (rank == 0) printf("%d ranks, fp32 all-reduce sum\n%12s %10s %12s %12s\n", n, "bytes", "ms", "algbw GB/s", "busbw GB/s");
    for (size_t bytes = (size_t)64 << 20; bytes <= max_bytes; bytes *= 4) {
        size_t count = bytes / sizeof(float);
        for (int i = 0; i < 5; i++) comm_device_all_reduce_sum(dp, buf, count, COMM_F32);
        cuda_synchronize();
        comm_barrier(dp);
        double t0 = now();
        for (int i = 0; i < 20; i++) comm_device_all_reduce_sum(dp, buf, count, COMM_F32);
        cuda_synchronize();
        double dt = (now() - t0) / 20.0, alg = (double)bytes / dt / 1e9;
        if (rank == 0) printf("%12zu %10.3f %12.1f %12.1f\n", bytes, dt * 1e3, alg, alg * 2.0 * (n - 1) / n);
    }
    device_free(DEV_CUDA, buf);
    comm_groups_free();
    comm_finalize();
    return 0;
}
