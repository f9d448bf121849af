/* What the standalone GPU benchmark programs (gemm_search, wgmma_gelu_probe) share: error checks
 * (a failed CUDA runtime or cuBLASLt call prints the program's name, BENCH_PROG, defined before
 * including this, the call and the reason, and exits with status 1) and random bf16 data. */
#ifndef MEGATRON_SCRIPTS_BENCH_BENCH_UTIL_H
#define MEGATRON_SCRIPTS_BENCH_BENCH_UTIL_H

#include <cublasLt.h>
#include <cuda_runtime_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* bf16 bit patterns (round to nearest even) of n uniform values in [-scale, scale) drawn from
 * seed (never zeros, which multiply faster); malloc'ed, the caller frees them. */
static inline uint16_t *bench_random_bf16(size_t n, uint64_t seed, float scale)
{
    uint16_t *h = (uint16_t *)malloc(n * sizeof *h);
    if (!h) {
        fprintf(stderr, "%s: out of memory\n", BENCH_PROG);
        exit(1);
    }
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        float f = ((float)((s >> 40) & 0xFFFFFF) / (float)(1 << 23) - 1.0f) * scale;
        uint32_t u;
        memcpy(&u, &f, 4);
        h[i] = (uint16_t)((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
    }
    return h;
}

/* A device copy of n 16-bit values. */
static inline void *bench_upload(const uint16_t *h, size_t n)
{
    void *d;
    CK(cudaMalloc(&d, n * sizeof *h));
    CK(cudaMemcpy(d, h, n * sizeof *h, cudaMemcpyHostToDevice));
    return d;
}

#endif
