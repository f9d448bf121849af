/* The argument checks every op_* runs before it dispatches (kernels/ops.c, kernels/ops_loss.c):
 * the call's arguments kept so a failed check prints the op's name and every shape, the checks
 * themselves, and ON_CUDA, where the CUDA backend plugs in. Internal to the op interface. */
#ifndef MEGATRON_KERNELS_OPS_ARGS_H
#define MEGATRON_KERNELS_OPS_ARGS_H

#include <stdio.h>
#include <string.h>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/ops.h"
#ifdef MEGATRON_CUDA
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/op_timing.h"
#endif
#include "util/error.h"

/* The arguments of one op call, kept so a failed check can print all of them. */
struct args {
    const char *op;
    int n;
    const char *names[10];
    struct tensor ts[10];
};

static inline void add_arg(struct args *a, const char *name, struct tensor t)
{
    CHECK(a->n < 10);
    a->names[a->n] = name;
    a->ts[a->n] = t;
    a->n++;
}

/* "float32[4, 8]", or "absent". */
static inline void format_tensor(char *buf, size_t len, struct tensor t)
{
    if (!tensor_present(t)) {
        snprintf(buf, len, "absent");
        return;
    }
    int k = snprintf(buf, len, "%s%s[", dtype_name(t.dtype), t.device == DEV_CUDA ? "@cuda" : "");
    for (int i = 0; i < t.ndim && k > 0 && (size_t)k < len; i++)
        k += snprintf(buf + k, len - (size_t)k, i ? ", %lld" : "%lld", (long long)t.shape[i]);
    if (k > 0 && (size_t)k < len) snprintf(buf + k, len - (size_t)k, "]");
}

static inline _Noreturn void fail(const struct args *a, const char *why)
{
    char shapes[1024] = "", one[80];
    for (int i = 0; i < a->n; i++) {
        format_tensor(one, sizeof one, a->ts[i]);
        size_t used = strlen(shapes);
        snprintf(shapes + used, sizeof shapes - used, "%s%s %s", i ? ", " : "", a->names[i], one);
    }
    BUG("%s: %s (%s)", a->op, why, shapes);
}

static inline void need(const struct args *a, bool cond, const char *why)
{
    if (!cond) fail(a, why);
}

/* t is present, of dtype dt, with ndim dims. */
static inline void need_tensor(const struct args *a, const char *name, struct tensor t,
                               enum dtype dt, int ndim)
{
    char why[160];
    if (!tensor_present(t)) {
        snprintf(why, sizeof why, "%s is absent", name);
        fail(a, why);
    }
    /* a float argument on the GPU may be bf16 or fp16 (activations, weights) or fp32 */
    bool cuda_float =
        t.device == DEV_CUDA && dt == DT_F32 && (t.dtype == DT_BF16 || t.dtype == DT_F16);
    if ((t.dtype != dt && !cuda_float) || t.ndim != ndim) {
        snprintf(why, sizeof why, "%s must be a %d-D %s tensor", name, ndim, dtype_name(dt));
        fail(a, why);
    }
}

/* fp32, or bf16 or fp16 on the GPU. */
static inline bool is_float(struct tensor t)
{
    return t.dtype == DT_F32 || (t.device == DEV_CUDA && (t.dtype == DT_BF16 || t.dtype == DT_F16));
}

/* Like need_tensor, for an argument that may be absent. */
static inline void maybe_tensor(const struct args *a, const char *name, struct tensor t,
                                enum dtype dt, int ndim)
{
    if (tensor_present(t)) need_tensor(a, name, t, dt, ndim);
}

static inline bool dims_are(struct tensor t, int64_t d0, int64_t d1)
{
    return t.shape[0] == d0 && (t.ndim < 2 || t.shape[1] == d1);
}

/* The device every present argument lives on. */
static inline enum device common_device(const struct args *a)
{
    int first = -1;
    for (int i = 0; i < a->n; i++) {
        if (!tensor_present(a->ts[i])) continue;
        if (first < 0) first = i;
        need(a, a->ts[i].device == a->ts[first].device, "arguments are on different devices");
    }
    need(a, first >= 0, "no tensor argument");
    return a->ts[first].device;
}

static inline void need_dropout(const struct args *a, struct dropout_key d)
{
    need(a, d.p >= 0.0f && d.p < 1.0f, "dropout probability must be in [0, 1)");
    need(a, !d.device_stream || common_device(a) == DEV_CUDA, "a dropout stream in device memory needs GPU tensors");
}

/* The CUDA backend plugs in here: with MEGATRON_CUDA each op's DEV_CUDA branch calls its cuda_<op>
 * from kernels/cuda/cuda_ops.h (which checks the CUDA dtype contract: 16-bit activations and
 * weights, fp32 gradients and statistics); a build without CUDA never makes CUDA tensors. */
#ifdef MEGATRON_CUDA
#define ON_CUDA(call)                                    \
    do {                                                 \
        int timing_ = cuda_op_timing_begin(a.op);        \
        call;                                            \
        cuda_op_timing_end(timing_);                     \
    } while (0)
#else
#define ON_CUDA(call) BUG("%s: this build has no CUDA backend", a.op)
#endif

#endif
