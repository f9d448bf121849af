/* Error checks of the standalone GPU benchmark programs (gemm_search, wgmma_gelu_probe): a failed
 * CUDA runtime or cuBLASLt call prints the program's name (BENCH_PROG, defined before including
 * this), the call and the reason, and exits with status 1. */
#ifndef MEGATRON_SCRIPTS_BENCH_BENCH_CHECK_H
#define MEGATRON_SCRIPTS_BENCH_BENCH_CHECK_H

#include <cublasLt.h>
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>

#define CK(call)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "%s: %s: %s\n", BENCH_PROG, #call, cudaGetErrorString(e_));            \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)
#define LT(call)                                                                                   \
    do {                                                                                           \
        cublasStatus_t s_ = (call);                                                                \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                         \
            fprintf(stderr, "%s: %s: status %d\n", BENCH_PROG, #call, (int)s_);                    \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#endif
