/* The cuDNN graph builder: see cudnn_graph.h. */
#include "kernels/cuda/cudnn_graph.h"

#include <stdio.h>
#include <stdlib.h>

#include "kernels/cuda/cuda_common.h"

bool gb_ok(struct graph_builder *gb, cudnnStatus_t st, const char *what)
{
    if (gb->failed) return false;
    if (st == CUDNN_STATUS_SUCCESS) return true;
    char last[320] = "";
    cudnnGetLastErrorString(last, sizeof last);
    snprintf(gb->err, sizeof gb->err, "%s: %s%s%s", what, cudnnGetErrorString(st),
             last[0] ? ": " : "", last);
    gb->failed = true;
    return false;
}

cudnnBackendDescriptor_t gb_new(struct graph_builder *gb, cudnnBackendDescriptorType_t t, const char *what)
{
    cudnnBackendDescriptor_t d = NULL;
    if (gb->failed) return NULL;
    if (gb->ndescs == GB_MAX_DESCS) {
        snprintf(gb->err, sizeof gb->err, "%s: too many descriptors", what);
        gb->failed = true;
        return NULL;
    }
    if (!gb_ok(gb, cudnnBackendCreateDescriptor(t, &d), what)) return NULL;
    gb->descs[gb->ndescs++] = d;
    return d;
}

void gb_set(struct graph_builder *gb, cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t name,
            cudnnBackendAttributeType_t type, int64_t count, const void *value, const char *what)
{
    if (gb->failed) return;
    gb_ok(gb, cudnnBackendSetAttribute(d, name, type, count, value), what);
}

void gb_finalize(struct graph_builder *gb, cudnnBackendDescriptor_t d, const char *what)
{
    if (gb->failed) return;
    gb_ok(gb, cudnnBackendFinalize(d), what);
}

cudnnBackendDescriptor_t gb_tensor(struct graph_builder *gb, cudnnDataType_t dt, const int64_t dims[4],
                                   const int64_t strides[4], int64_t uid, bool by_value)
{
    bool is_virtual = uid == 0;
    if (is_virtual) uid = gb->next_uid++;
    int64_t align = 16;
    cudnnBackendDescriptor_t t = gb_new(gb, CUDNN_BACKEND_TENSOR_DESCRIPTOR, "tensor");
    gb_set(gb, t, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &dt, "tensor data type");
    gb_set(gb, t, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims, "tensor dims");
    gb_set(gb, t, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides, "tensor strides");
    gb_set(gb, t, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid, "tensor uid");
    gb_set(gb, t, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align, "tensor align");
    gb_set(gb, t, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &is_virtual, "virtual");
    if (by_value)
        gb_set(gb, t, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &by_value, "by value");
    gb_finalize(gb, t, "tensor");
    return t;
}

cudnnBackendDescriptor_t gb_scalar(struct graph_builder *gb, int64_t uid)
{
    const int64_t one[4] = {1, 1, 1, 1};
    return gb_tensor(gb, CUDNN_DATA_FLOAT, one, one, uid, true);
}

void gb_op(struct graph_builder *gb, cudnnBackendDescriptor_t op)
{
    if (gb->failed) return;
    if (gb->nops == GB_MAX_OPS) {
        snprintf(gb->err, sizeof gb->err, "too many operations");
        gb->failed = true;
        return;
    }
    gb->ops[gb->nops++] = op;
}

void gb_pointwise(struct graph_builder *gb, cudnnPointwiseMode_t mode, cudnnDataType_t prec,
                  cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t b, cudnnBackendDescriptor_t t,
                  cudnnBackendDescriptor_t y, int64_t axis)
{
    cudnnBackendDescriptor_t pw = gb_new(gb, CUDNN_BACKEND_POINTWISE_DESCRIPTOR, "pointwise");
    gb_set(gb, pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode, "pw mode");
    gb_set(gb, pw, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &prec, "pw prec");
    if (axis >= 0) gb_set(gb, pw, CUDNN_ATTR_POINTWISE_AXIS, CUDNN_TYPE_INT64, 1, &axis, "pw axis");
    gb_finalize(gb, pw, "pointwise descriptor");
    cudnnBackendDescriptor_t op =
        gb_new(gb, CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, "pointwise op");
    const float one = 1.0f;
    gb_set(gb, op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
           &pw, "pw op desc");
    gb_set(gb, op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x,
           "pw x");
    if (b)
        gb_set(gb, op, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b,
               "pw b");
    if (t)
        gb_set(gb, op, CUDNN_ATTR_OPERATION_POINTWISE_TDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &t,
               "pw t");
    gb_set(gb, op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y,
           "pw y");
    gb_set(gb, op, CUDNN_ATTR_OPERATION_POINTWISE_ALPHA1, CUDNN_TYPE_FLOAT, 1, &one, "pw alpha1");
    gb_set(gb, op, CUDNN_ATTR_OPERATION_POINTWISE_ALPHA2, CUDNN_TYPE_FLOAT, 1, &one, "pw alpha2");
    gb_finalize(gb, op, "pointwise op");
    gb_op(gb, op);
}

void gb_reduction(struct graph_builder *gb, cudnnReduceTensorOp_t mode, cudnnBackendDescriptor_t x,
                  cudnnBackendDescriptor_t y)
{
    cudnnDataType_t f32 = CUDNN_DATA_FLOAT;
    cudnnBackendDescriptor_t r = gb_new(gb, CUDNN_BACKEND_REDUCTION_DESCRIPTOR, "reduction");
    gb_set(gb, r, CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &mode,
           "reduction operator");
    gb_set(gb, r, CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &f32, "reduction type");
    gb_finalize(gb, r, "reduction descriptor");
    cudnnBackendDescriptor_t op =
        gb_new(gb, CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR, "reduction op");
    gb_set(gb, op, CUDNN_ATTR_OPERATION_REDUCTION_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x,
           "reduction x");
    gb_set(gb, op, CUDNN_ATTR_OPERATION_REDUCTION_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y,
           "reduction y");
    gb_set(gb, op, CUDNN_ATTR_OPERATION_REDUCTION_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &r,
           "reduction desc");
    gb_finalize(gb, op, "reduction op");
    gb_op(gb, op);
}

void gb_matmul(struct graph_builder *gb, cudnnBackendDescriptor_t a, cudnnBackendDescriptor_t b,
               cudnnBackendDescriptor_t c)
{
    cudnnDataType_t f32 = CUDNN_DATA_FLOAT;
    cudnnBackendDescriptor_t m = gb_new(gb, CUDNN_BACKEND_MATMUL_DESCRIPTOR, "matmul");
    gb_set(gb, m, CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &f32, "matmul type");
    gb_finalize(gb, m, "matmul descriptor");
    cudnnBackendDescriptor_t op =
        gb_new(gb, CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR, "matmul op");
    gb_set(gb, op, CUDNN_ATTR_OPERATION_MATMUL_ADESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &a, "mm a");
    gb_set(gb, op, CUDNN_ATTR_OPERATION_MATMUL_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b, "mm b");
    gb_set(gb, op, CUDNN_ATTR_OPERATION_MATMUL_CDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &c, "mm c");
    gb_set(gb, op, CUDNN_ATTR_OPERATION_MATMUL_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &m,
           "mm desc");
    gb_finalize(gb, op, "matmul op");
    gb_op(gb, op);
}

void gb_reshape(struct graph_builder *gb, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t y)
{
    cudnnBackendDescriptor_t op =
        gb_new(gb, CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR, "reshape op");
    gb_set(gb, op, CUDNN_ATTR_OPERATION_RESHAPE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x,
           "reshape x");
    gb_set(gb, op, CUDNN_ATTR_OPERATION_RESHAPE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y,
           "reshape y");
    gb_finalize(gb, op, "reshape op");
    gb_op(gb, op);
}

void gb_destroy(struct graph_builder *gb)
{
    for (int i = gb->ndescs - 1; i >= 0; i--)
        CUDNN_CHECK(cudnnBackendDestroyDescriptor(gb->descs[i]));
    free(gb);
}

int gb_plans(struct graph_builder *gb, cudnnBackendDescriptor_t graph, cudnnBackendDescriptor_t *plans,
             int64_t *workspaces, int max)
{
    const cudnnBackendHeurMode_t modes[2] = {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK};
    int made = 0;
    for (int mi = 0; mi < 2 && made == 0 && !gb->failed; mi++) {
        cudnnBackendDescriptor_t heur = gb_new(gb, CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, "heur");
        gb_set(gb, heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph,
               "heur graph");
        gb_set(gb, heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &modes[mi], "heur mode");
        gb_finalize(gb, heur, "heuristics");
        int64_t count = 0;
        if (gb->failed || !gb_ok(gb, cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                                              CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, NULL),
                                 "heuristics count"))
            return 0;
        if (count > 16) count = 16;
        cudnnBackendDescriptor_t cfgs[16];
        for (int64_t i = 0; i < count; i++) cfgs[i] = gb_new(gb, CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, "engine config");
        int64_t got = 0;
        if (count == 0 || gb->failed ||
            !gb_ok(gb, cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                                                count, &got, cfgs),
                   "heuristics results"))
            continue;
        for (int64_t i = 0; i < got && made < max; i++) {
            cudnnBackendDescriptor_t p = NULL;
            if (cudnnBackendCreateDescriptor(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, &p) != CUDNN_STATUS_SUCCESS)
                continue;
            bool ok = cudnnBackendSetAttribute(p, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1,
                                               &gb->handle) == CUDNN_STATUS_SUCCESS &&
                      cudnnBackendSetAttribute(p, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG,
                                               CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cfgs[i]) == CUDNN_STATUS_SUCCESS &&
                      cudnnBackendFinalize(p) == CUDNN_STATUS_SUCCESS;
            int64_t n = 0;
            if (ok && gb->ndescs < GB_MAX_DESCS &&
                cudnnBackendGetAttribute(p, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, &n,
                                         &workspaces[made]) == CUDNN_STATUS_SUCCESS) {
                plans[made++] = p;
                gb->descs[gb->ndescs++] = p;
                continue;
            }
            cudnnBackendDestroyDescriptor(p);
        }
    }
    if (made == 0 && !gb->failed) {
        char last[320] = "";
        cudnnGetLastErrorString(last, sizeof last);
        snprintf(gb->err, sizeof gb->err, "no engine config of the graph finalized%s%s", last[0] ? ": " : "",
                 last);
        gb->failed = true;
    }
    return made;
}

