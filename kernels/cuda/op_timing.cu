/* Op-by-op GPU time: see op_timing.h. */
#include "kernels/cuda/op_timing.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_common.h"

enum { PENDING_MAX = 8192, NAMES_MAX = 128 };

struct op_total {
    const char *op; /* ops.c's static names */
    double ms;
    long calls;
};

static struct {
    int state; /* 0: not read yet, 1: on, -1: off */
    double skip_ms;
    cudaEvent_t first, start[PENDING_MAX], end[PENDING_MAX];
    const char *op[PENDING_MAX];
    int pending, created;
    bool have_first;
    struct op_total totals[NAMES_MAX];
    int names;
} timing;

static void fold(void)
{
    for (int i = 0; i < timing.pending; i++) {
        float since = 0.0f, ms = 0.0f;
        CUDA_CHECK(cudaEventSynchronize(timing.end[i]));
        CUDA_CHECK(cudaEventElapsedTime(&since, timing.first, timing.start[i]));
        CUDA_CHECK(cudaEventElapsedTime(&ms, timing.start[i], timing.end[i]));
        if (since < timing.skip_ms) continue;
        int k = 0;
        while (k < timing.names && strcmp(timing.totals[k].op, timing.op[i]) != 0) k++;
        if (k == timing.names) {
            if (timing.names == NAMES_MAX) continue;
            timing.totals[timing.names++] = (struct op_total){timing.op[i], 0.0, 0};
        }
        timing.totals[k].ms += ms;
        timing.totals[k].calls++;
    }
    timing.pending = 0;
}

static int by_time(const void *a, const void *b)
{
    double x = ((const struct op_total *)a)->ms, y = ((const struct op_total *)b)->ms;
    return x < y ? 1 : x > y ? -1 : 0;
}

static void report(void)
{
    fold();
    double all = 0.0;
    for (int k = 0; k < timing.names; k++) all += timing.totals[k].ms;
    qsort(timing.totals, (size_t)timing.names, sizeof *timing.totals, by_time);
    fprintf(stderr, "op timing (CUDA events around each op; the first %.0f ms skipped): %.1f ms in all\n",
            timing.skip_ms, all);
    fprintf(stderr, "%10s %8s %10s %6s  %s\n", "total ms", "calls", "mean us", "share", "op");
    for (int k = 0; k < timing.names; k++)
        fprintf(stderr, "%10.2f %8ld %10.1f %5.1f%%  %s\n", timing.totals[k].ms, timing.totals[k].calls,
                1000.0 * timing.totals[k].ms / (double)timing.totals[k].calls, 100.0 * timing.totals[k].ms / all,
                timing.totals[k].op);
}

extern "C" int cuda_op_timing_begin(const char *op)
{
    if (timing.state == 0) {
        const char *v = getenv("MEGATRON_OP_TIMING");
        timing.state = v ? 1 : -1;
        if (v) {
            timing.skip_ms = atof(v);
            atexit(report);
        }
    }
    if (timing.state < 0) return -1;
    struct cuda_context *ctx = cuda_ctx();
    if (!timing.have_first) {
        CUDA_CHECK(cudaEventCreate(&timing.first));
        CUDA_CHECK(cudaEventRecord(timing.first, ctx->stream));
        timing.have_first = true;
    }
    if (timing.pending == PENDING_MAX) fold();
    int i = timing.pending;
    if (i == timing.created) {
        CUDA_CHECK(cudaEventCreate(&timing.start[i]));
        CUDA_CHECK(cudaEventCreate(&timing.end[i]));
        timing.created++;
    }
    timing.op[i] = op;
    CUDA_CHECK(cudaEventRecord(timing.start[i], ctx->stream));
    return i;
}

extern "C" void cuda_op_timing_end(int slot)
{
    if (slot < 0) return;
    CUDA_CHECK(cudaEventRecord(timing.end[slot], cuda_ctx()->stream));
    timing.pending = slot + 1;
}
