/* Building cuDNN graphs through the backend API (attention.cu's fused attention is one): a builder
 * that owns every descriptor it creates and remembers the first failure with cuDNN's reason, so a
 * graph is written as a straight list of tensors and ops and checked once at the end; the common
 * tensors and ops; and the choice of an execution plan from cuDNN's heuristics. */
#ifndef MEGATRON_KERNELS_CUDA_CUDNN_GRAPH_H
#define MEGATRON_KERNELS_CUDA_CUDNN_GRAPH_H

#include <cudnn.h>
#include <stdbool.h>
#include <stdint.h>

enum { GB_MAX_DESCS = 256, GB_MAX_OPS = 64 };

/* Collects descriptors (all kept alive as long as the plan) and the first error. */
struct graph_builder {
    cudnnHandle_t handle; /* NULL in a dry run */
    cudnnBackendDescriptor_t descs[GB_MAX_DESCS];
    int ndescs;
    cudnnBackendDescriptor_t ops[GB_MAX_OPS];
    int nops;
    int64_t next_uid;     /* of the next virtual tensor */
    bool failed;
    char err[512];
};

/* Every call is checked: after a failure the builder does nothing more and err says why. */
bool gb_ok(struct graph_builder *gb, cudnnStatus_t st, const char *what);
cudnnBackendDescriptor_t gb_new(struct graph_builder *gb, cudnnBackendDescriptorType_t t, const char *what);
void gb_set(struct graph_builder *gb, cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t name,
            cudnnBackendAttributeType_t type, int64_t count, const void *value, const char *what);
void gb_finalize(struct graph_builder *gb, cudnnBackendDescriptor_t d, const char *what);

/* A 4-D tensor; uid 0 means a fresh virtual one. */
cudnnBackendDescriptor_t gb_tensor(struct graph_builder *gb, cudnnDataType_t dt, const int64_t dims[4],
                                   const int64_t strides[4], int64_t uid, bool by_value);
/* An fp32 scalar passed by value (a host pointer in the variant pack): 4-D [1,1,1,1] as cuDNN
 * wants for broadcasting against 4-D operands. */
cudnnBackendDescriptor_t gb_scalar(struct graph_builder *gb, int64_t uid);
/* Adds a finalized operation to the graph's list. */
void gb_op(struct graph_builder *gb, cudnnBackendDescriptor_t op);

/* y = mode(x [, b] [, t]); axis >= 0 for GEN_INDEX. */
void gb_pointwise(struct graph_builder *gb, cudnnPointwiseMode_t mode, cudnnDataType_t prec,
                  cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t b, cudnnBackendDescriptor_t t,
                  cudnnBackendDescriptor_t y, int64_t axis);
/* y = reduce(x) over the axes where y has size 1. */
void gb_reduction(struct graph_builder *gb, cudnnReduceTensorOp_t mode, cudnnBackendDescriptor_t x,
                  cudnnBackendDescriptor_t y);
/* c = a . b (batched over the first two dims, broadcasting heads for GQA), fp32 accumulation. */
void gb_matmul(struct graph_builder *gb, cudnnBackendDescriptor_t a, cudnnBackendDescriptor_t b,
               cudnnBackendDescriptor_t c);
/* y = x viewed with y's dims and strides (a transpose, say). */
void gb_reshape(struct graph_builder *gb, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t y);

/* Execution plans for the graph: the engine configs of heuristics mode A (else the fallback list)
 * that finalize, in the heuristics' order (cudnn-frontend's default policy takes the first), at
 * most max of them; each plan's workspace in bytes beside it. The plans are kept with the
 * builder's descriptors. Returns how many (0: none finalized, the reason in gb->err). */
int gb_plans(struct graph_builder *gb, cudnnBackendDescriptor_t graph, cudnnBackendDescriptor_t *plans,
             int64_t *workspaces, int max);
/* Destroys every descriptor (the plan's too) and the builder itself (xcalloc'ed). */
void gb_destroy(struct graph_builder *gb);

#endif
