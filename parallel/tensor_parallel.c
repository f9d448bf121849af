/* Tensor- and sequence-parallel collectives on activations (see tensor_parallel.h), over the
 * tensor-parallel group's communicator. Host memory today; device tensors go through the same
 * group's NCCL communicator once the CUDA backend carries one. */
#include "parallel/tensor_parallel.h"

#include <string.h>

#include "parallel/comm.h"
#include "util/error.h"

struct tp_group tp_group_single(void)
{
    struct tp_group g = {1, 0, false, NULL};
    return g;
}

/* Host fp32 goes over MPI; device fp32, bf16 or fp16 over NCCL. */
static enum comm_dtype comm_type(const char *op, struct tensor t)
{
    if (t.dtype == DT_F32) return COMM_F32;
    if (t.device == DEV_CUDA && (t.dtype == DT_BF16 || t.dtype == DT_F16)) return comm_dtype_of(t.dtype);
    BUG("%s: %s tensors cannot be reduced", op, dtype_name(t.dtype));
}

void tp_all_reduce(const struct tp_group *tp, struct tensor t)
{
    if (tp->size == 1) return;
    enum comm_dtype dt = comm_type("tp_all_reduce", t);
    if (t.device == DEV_CUDA) comm_device_all_reduce_sum(tp->comm, t.data, (size_t)tensor_numel(t), dt);
    else comm_all_reduce_sum(tp->comm, t.data, (size_t)tensor_numel(t), dt);
}

void tp_all_reduce_max(const struct tp_group *tp, struct tensor t)
{
    if (tp->size == 1) return;
    enum comm_dtype dt = comm_type("tp_all_reduce_max", t);
    if (t.device == DEV_CUDA) comm_device_all_reduce_max(tp->comm, t.data, (size_t)tensor_numel(t), dt);
    else comm_all_reduce_max(tp->comm, t.data, (size_t)tensor_numel(t), dt);
}

void tp_reduce_scatter_rows(const struct tp_group *tp, struct tensor full, struct tensor shard)
{
    if (tensor_numel(full) != tensor_numel(shard) * tp->size) BUG("tp_reduce_scatter_rows: shapes");
    if (tp->size == 1) {
        if (full.data != shard.data) memcpy(shard.data, full.data, tensor_bytes(full));
        return;
    }
    enum comm_dtype dt = comm_type("tp_reduce_scatter_rows", full);
    if (full.device == DEV_CUDA) comm_device_reduce_scatter_sum(tp->comm, full.data, shard.data, (size_t)tensor_numel(shard), dt);
    else comm_reduce_scatter_sum(tp->comm, full.data, shard.data, (size_t)tensor_numel(shard), dt);
}

void tp_all_gather_rows(const struct tp_group *tp, struct tensor shard, struct tensor full)
{
    if (tensor_numel(full) != tensor_numel(shard) * tp->size) BUG("tp_all_gather_rows: shapes");
    if (tp->size == 1) {
        if (full.data != shard.data) memcpy(full.data, shard.data, tensor_bytes(full));
        return;
    }
    enum comm_dtype dt = comm_type("tp_all_gather_rows", full);
    if (full.device == DEV_CUDA) comm_device_all_gather(tp->comm, shard.data, full.data, (size_t)tensor_numel(shard), dt);
    else comm_all_gather(tp->comm, shard.data, full.data, (size_t)tensor_numel(shard), dt);
}

void tp_reduce_to_rows(const struct tp_group *tp, struct tensor full, struct tensor local)
{
    if (tp->sequence_parallel) {
        tp_reduce_scatter_rows(tp, full, local);
        return;
    }
    if (full.data != local.data) BUG("tp_reduce_to_rows: without sequence parallelism full is local");
    tp_all_reduce(tp, full);
}

void tp_gather_rows(const struct tp_group *tp, struct tensor local, struct tensor full)
{
    if (tp->sequence_parallel) {
        tp_all_gather_rows(tp, local, full);
        return;
    }
    if (full.data != local.data) BUG("tp_gather_rows: without sequence parallelism full is local");
}

void tp_all_reduce_buffer(const struct tp_group *tp, enum device dev, float *buf, int64_t n)
{
    if (tp->size == 1 || n == 0) return;
    if (dev == DEV_CUDA) comm_device_all_reduce_sum(tp->comm, buf, (size_t)n, COMM_F32);
    else comm_all_reduce_sum(tp->comm, buf, (size_t)n, COMM_F32);
}
