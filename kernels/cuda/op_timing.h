/* Where a GPU step's time goes, op by op, without a profiler: with MEGATRON_OP_TIMING set in the
 * environment, every op of kernels/ops.h that runs on the CUDA backend is bracketed by two CUDA
 * events, and at exit a table goes to stderr: per op name the GPU time between its events (its
 * kernels, and any wait for the host to queue them), calls and share. MEGATRON_OP_TIMING=<ms>
 * ignores the ops that start within that many milliseconds of the first one (plan building,
 * warm-up iterations). Off by default: then each bracket costs one branch. Callable from C. */
#ifndef MEGATRON_KERNELS_CUDA_OP_TIMING_H
#define MEGATRON_KERNELS_CUDA_OP_TIMING_H

#ifdef __cplusplus
extern "C" {
#endif

/* A bracket's slot, or -1 when timing is off. */
int cuda_op_timing_begin(const char *op);
void cuda_op_timing_end(int slot);

#ifdef __cplusplus
}
#endif

#endif
