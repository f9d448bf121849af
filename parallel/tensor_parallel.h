/* Tensor and sequence parallelism as the layers see it: the tensor-parallel group and the
 * collectives of Megatron's tensor_parallel/mappings.py on activations. Without tensor parallelism
 * (size 1) every call is a no-op or a copy, so the layers have one code path.
 *
 *   forward                                   backward
 *   copy_to_tensor_model_parallel_region      tp_all_reduce of the input gradient
 *   reduce_from_tensor_model_parallel_region  identity
 *   gather_from_sequence_parallel_region      tp_reduce_scatter_rows
 *   reduce_scatter_to_sequence_parallel_region tp_all_gather_rows
 *
 * Sequence parallelism shards activations by rows of [B*T, H]: rank r holds rows
 * [r*N/TP, (r+1)*N/TP). Per-token work (norms, dropout, residuals) is indifferent to which rows a
 * rank holds, and row blocks are contiguous in our batch-major layout. */
#ifndef MEGATRON_PARALLEL_TENSOR_PARALLEL_H
#define MEGATRON_PARALLEL_TENSOR_PARALLEL_H

#include <stdbool.h>

#include "kernels/tensor.h"

struct comm_group;

struct tp_group {
    int size, rank;
    bool sequence_parallel;
    struct comm_group *comm;  /* NULL when size is 1 */
};

/* The layout of a single process: size 1, rank 0, no sequence parallelism. */
struct tp_group tp_group_single(void);

/* t = sum of t over the group, in place. */
void tp_all_reduce(const struct tp_group *tp, struct tensor t);
/* t = max of t over the group, in place. */
void tp_all_reduce_max(const struct tp_group *tp, struct tensor t);
/* shard [N/size, C] = rows [rank*N/size, ...) of the sum of full [N, C] over the group. */
void tp_reduce_scatter_rows(const struct tp_group *tp, struct tensor full, struct tensor shard);
/* full [N, C] = the shards [N/size, C] of every rank, in rank order. */
void tp_all_gather_rows(const struct tp_group *tp, struct tensor shard, struct tensor full);

/* The two moves the layers make, each its own backward's counterpart:
 * tp_reduce_to_rows: a row-parallel layer's partial output [N, C] becomes the summed activation the
 *   rank keeps: all-reduce in place (full and local are the same tensor) or, with sequence
 *   parallelism, reduce-scatter to the rank's rows. Also the backward of tp_gather_rows and of the
 *   column-parallel input copy.
 * tp_gather_rows: the rank's activation becomes a column-parallel layer's whole input: nothing
 *   (the same tensor) or, with sequence parallelism, all-gather. Also the backward of
 *   tp_reduce_to_rows. */
void tp_reduce_to_rows(const struct tp_group *tp, struct tensor full, struct tensor local);
void tp_gather_rows(const struct tp_group *tp, struct tensor local, struct tensor full);

/* After the last micro batch's backward, what reduces over the tensor-parallel group: with
 * sequence parallelism the gradients of parameters every rank holds whole but applies to its row
 * shard only (norms, row-parallel biases, position embeddings), as Megatron's
 * _allreduce_layernorm_grads does. */
void tp_all_reduce_buffer(const struct tp_group *tp, enum device dev, float *buf, int64_t n);

#endif
