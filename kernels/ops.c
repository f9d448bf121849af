/* The op interface's front door: each op_* checks its arguments (shapes agree, float tensors are
 * fp32 (or bf16/fp16 on the GPU), ids are int32, all on one device) and dispatches to the backend
 * of that device. A bad argument is a bug in the caller and ends the program with the op's name
 * and every shape. The layers' ops are here, the losses' in kernels/ops_loss.c, the checks they
 * share in kernels/ops_args.h. */
#include "kernels/ops.h"

#include "kernels/ops_args.h"

/* ---- dense layers ---- */

/* y = x w^T + b's arguments, for the forward ops */
static void check_linear_forward(struct args *a, struct tensor y, struct tensor x, struct tensor w,
                                 struct tensor b)
{
    add_arg(a, "y", y), add_arg(a, "x", x), add_arg(a, "w", w), add_arg(a, "b", b);
    need_tensor(a, "y", y, DT_F32, 2);
    need_tensor(a, "x", x, DT_F32, 2);
    need_tensor(a, "w", w, DT_F32, 2);
    maybe_tensor(a, "b", b, DT_F32, 1);
    need(a, x.shape[1] == w.shape[1], "x and w disagree on the input size");
    need(a, dims_are(y, x.shape[0], w.shape[0]), "y must be [rows of x, rows of w]");
    need(a, !tensor_present(b) || b.shape[0] == w.shape[0], "b must have one entry per row of w");
}

void op_linear_forward(struct tensor y, struct tensor x, struct tensor w, struct tensor b)
{
    struct args a = {.op = "op_linear_forward"};
    check_linear_forward(&a, y, x, w, b);
    switch (common_device(&a)) {
    case DEV_CPU: cpu_linear_forward(y, x, w, b); return;
    case DEV_CUDA: ON_CUDA(cuda_linear_forward(y, x, w, b)); return;
    }
}

void op_linear_residual_forward(struct tensor y, struct tensor x, struct tensor w, struct tensor b,
                                struct tensor residual)
{
    struct args a = {.op = "op_linear_residual_forward"};
    check_linear_forward(&a, y, x, w, b);
    add_arg(&a, "residual", residual);
    need_tensor(&a, "residual", residual, DT_F32, 2);
    need(&a, dims_are(residual, y.shape[0], y.shape[1]), "residual must have y's shape");
    need(&a, y.data != residual.data, "y must not alias residual");
    switch (common_device(&a)) {
    case DEV_CPU: {
        struct dropout_key none = {0};
        cpu_linear_forward(y, x, w, tensor_none());
        cpu_bias_dropout_add_forward(y, y, b, residual, none);
        return;
    }
    case DEV_CUDA: ON_CUDA(cuda_linear_residual_forward(y, x, w, b, residual)); return;
    }
}

bool op_fuses_linear_residual(struct tensor y, struct tensor x, struct tensor w, struct tensor b,
                              struct tensor residual)
{
    struct args a = {.op = "op_fuses_linear_residual"};
    add_arg(&a, "y", y), add_arg(&a, "x", x), add_arg(&a, "w", w), add_arg(&a, "b", b);
    add_arg(&a, "residual", residual);
    bool fused = false;
    switch (common_device(&a)) {
    case DEV_CPU: return false;
    case DEV_CUDA: ON_CUDA(fused = cuda_fuses_linear_residual(y, x, w, b, residual)); return fused;
    }
    return false;
}

void op_linear_backward(struct tensor dx, struct tensor dw, struct tensor db, struct tensor dy,
                        struct tensor x, struct tensor w)
{
    struct args a = {.op = "op_linear_backward"};
    add_arg(&a, "dx", dx), add_arg(&a, "dw", dw), add_arg(&a, "db", db), add_arg(&a, "dy", dy);
    add_arg(&a, "x", x), add_arg(&a, "w", w);
    need_tensor(&a, "dy", dy, DT_F32, 2);
    int64_t N = dy.shape[0], out = dy.shape[1];
    if (tensor_present(dx)) {
        need_tensor(&a, "dx", dx, DT_F32, 2);
        need_tensor(&a, "w", w, DT_F32, 2);
        need(&a, dims_are(w, out, dx.shape[1]), "w must be [columns of dy, columns of dx]");
        need(&a, dx.shape[0] == N, "dx and dy disagree on the rows");
    }
    if (tensor_present(dw)) {
        need_tensor(&a, "dw", dw, DT_F32, 2);
        need_tensor(&a, "x", x, DT_F32, 2);
        need(&a, dims_are(x, N, dw.shape[1]), "x must be [rows of dy, columns of dw]");
        need(&a, dw.shape[0] == out, "dw must have one row per column of dy");
    }
    maybe_tensor(&a, "db", db, DT_F32, 1);
    need(&a, !tensor_present(db) || db.shape[0] == out, "db must have one entry per column of dy");
    switch (common_device(&a)) {
    case DEV_CPU: cpu_linear_backward(dx, dw, db, dy, x, w); return;
    case DEV_CUDA: ON_CUDA(cuda_linear_backward(dx, dw, db, dy, x, w)); return;
    }
}

void op_linear_weight_grad(struct tensor dw, struct tensor dy, struct tensor x, bool accumulate)
{
    struct args a = {.op = "op_linear_weight_grad"};
    add_arg(&a, "dw", dw), add_arg(&a, "dy", dy), add_arg(&a, "x", x);
    need_tensor(&a, "dy", dy, DT_F32, 2);
    need_tensor(&a, "dw", dw, DT_F32, 2);
    need_tensor(&a, "x", x, DT_F32, 2);
    need(&a, dims_are(x, dy.shape[0], dw.shape[1]), "x must be [rows of dy, columns of dw]");
    need(&a, dw.shape[0] == dy.shape[1], "dw must have one row per column of dy");
    switch (common_device(&a)) {
    case DEV_CPU: cpu_linear_weight_grad(dw, dy, x, accumulate); return;
    case DEV_CUDA: ON_CUDA(cuda_linear_weight_grad(dw, dy, x, accumulate)); return;
    }
}

static void check_linear_gelu(struct args *a, struct tensor y, struct tensor pre, struct tensor x,
                              struct tensor w, struct tensor b)
{
    check_linear_forward(a, y, x, w, b);
    add_arg(a, "pre", pre);
    need_tensor(a, "pre", pre, DT_F32, 2);
    need(a, dims_are(pre, x.shape[0], w.shape[0]), "pre must be [rows of x, rows of w]");
    need(a, y.data != pre.data, "y and pre must be different tensors");
}

void op_linear_gelu_forward(struct tensor y, struct tensor pre, struct tensor x, struct tensor w,
                            struct tensor b, bool tanh_approx)
{
    struct args a = {.op = "op_linear_gelu_forward"};
    check_linear_gelu(&a, y, pre, x, w, b);
    switch (common_device(&a)) {
    case DEV_CPU: cpu_linear_gelu_forward(y, pre, x, w, b, tanh_approx); return;
    case DEV_CUDA: ON_CUDA(cuda_linear_gelu_forward(y, pre, x, w, b, tanh_approx)); return;
    }
}

bool op_linear_gelu_forward_train(struct tensor y, struct tensor pre, struct tensor x,
                                  struct tensor w, struct tensor b, bool tanh_approx)
{
    struct args a = {.op = "op_linear_gelu_forward_train"};
    check_linear_gelu(&a, y, pre, x, w, b);
    bool kept = false;
    switch (common_device(&a)) {
    case DEV_CPU: cpu_linear_gelu_forward(y, pre, x, w, b, tanh_approx); return false;
    case DEV_CUDA:
        ON_CUDA(kept = cuda_linear_gelu_forward_train(y, pre, x, w, b, tanh_approx));
        return kept;
    }
    return false;
}

/* pre_name: "pre", or "dgelu" where it holds gelu'(pre) */
static void check_linear_dgelu(struct args *a, struct tensor dpre, struct tensor dpre_bias,
                               struct tensor dw, struct tensor dy, struct tensor x, struct tensor w,
                               struct tensor pre, const char *pre_name)
{
    char why[96];
    add_arg(a, "dpre", dpre), add_arg(a, "dpre_bias", dpre_bias), add_arg(a, "dw", dw);
    add_arg(a, "dy", dy), add_arg(a, "x", x), add_arg(a, "w", w), add_arg(a, pre_name, pre);
    need_tensor(a, "dy", dy, DT_F32, 2);
    need_tensor(a, "dpre", dpre, DT_F32, 2);
    need_tensor(a, "w", w, DT_F32, 2);
    need_tensor(a, pre_name, pre, DT_F32, 2);
    int64_t N = dy.shape[0], out = dy.shape[1], in = dpre.shape[1];
    need(a, dims_are(w, out, in), "w must be [columns of dy, columns of dpre]");
    need(a, dpre.shape[0] == N, "dpre and dy disagree on the rows");
    snprintf(why, sizeof why, "%s and dpre disagree in shape", pre_name);
    need(a, dims_are(pre, N, in), why);
    snprintf(why, sizeof why, "dpre must not overwrite %s", pre_name);
    need(a, dpre.data != pre.data, why);
    maybe_tensor(a, "dpre_bias", dpre_bias, DT_F32, 1);
    need(a, !tensor_present(dpre_bias) || dpre_bias.shape[0] == in,
         "dpre_bias must have one entry per column of dpre");
    if (tensor_present(dw)) {
        need_tensor(a, "dw", dw, DT_F32, 2);
        need_tensor(a, "x", x, DT_F32, 2);
        need(a, dims_are(dw, out, in), "dw must be like w");
        need(a, dims_are(x, N, in), "x must be like dpre");
    }
}

void op_linear_dgelu_backward(struct tensor dpre, struct tensor dpre_bias, struct tensor dw,
                              struct tensor dy, struct tensor x, struct tensor w, struct tensor pre,
                              bool tanh_approx)
{
    struct args a = {.op = "op_linear_dgelu_backward"};
    check_linear_dgelu(&a, dpre, dpre_bias, dw, dy, x, w, pre, "pre");
    switch (common_device(&a)) {
    case DEV_CPU: cpu_linear_dgelu_backward(dpre, dpre_bias, dw, dy, x, w, pre, tanh_approx); return;
    case DEV_CUDA: ON_CUDA(cuda_linear_dgelu_backward(dpre, dpre_bias, dw, dy, x, w, pre, tanh_approx)); return;
    }
}

void op_linear_dgelu_backward_saved(struct tensor dpre, struct tensor dpre_bias, struct tensor dw,
                                    struct tensor dy, struct tensor x, struct tensor w,
                                    struct tensor dgelu)
{
    struct args a = {.op = "op_linear_dgelu_backward_saved"};
    check_linear_dgelu(&a, dpre, dpre_bias, dw, dy, x, w, dgelu, "dgelu");
    switch (common_device(&a)) {
    case DEV_CPU: cpu_linear_dgelu_backward_saved(dpre, dpre_bias, dw, dy, x, w, dgelu); return;
    case DEV_CUDA:
        ON_CUDA(cuda_linear_dgelu_backward_saved(dpre, dpre_bias, dw, dy, x, w, dgelu));
        return;
    }
}

/* ---- embeddings ---- */

void op_embedding_forward(struct tensor y, struct tensor tokens, struct tensor wte,
                          int64_t vocab_start, struct tensor wpe, struct tensor positions)
{
    struct args a = {.op = "op_embedding_forward"};
    add_arg(&a, "y", y), add_arg(&a, "tokens", tokens), add_arg(&a, "wte", wte);
    add_arg(&a, "wpe", wpe), add_arg(&a, "positions", positions);
    need_tensor(&a, "y", y, DT_F32, 2);
    need_tensor(&a, "tokens", tokens, DT_I32, 1);
    need_tensor(&a, "wte", wte, DT_F32, 2);
    need(&a, tokens.shape[0] == y.shape[0], "tokens and y disagree on the rows");
    need(&a, wte.shape[1] == y.shape[1], "wte and y disagree on the hidden size");
    if (tensor_present(wpe)) {
        need_tensor(&a, "wpe", wpe, DT_F32, 2);
        need_tensor(&a, "positions", positions, DT_I32, 1);
        need(&a, positions.shape[0] == y.shape[0], "positions and y disagree on the rows");
        need(&a, wpe.shape[1] == y.shape[1], "wpe and y disagree on the hidden size");
    }
    switch (common_device(&a)) {
    case DEV_CPU: cpu_embedding_forward(y, tokens, wte, vocab_start, wpe, positions); return;
    case DEV_CUDA: ON_CUDA(cuda_embedding_forward(y, tokens, wte, vocab_start, wpe, positions)); return;
    }
}

void op_embedding_backward(struct tensor dwte, int64_t vocab_start, struct tensor dwpe,
                           struct tensor dy, struct tensor tokens, struct tensor positions)
{
    struct args a = {.op = "op_embedding_backward"};
    add_arg(&a, "dwte", dwte), add_arg(&a, "dwpe", dwpe), add_arg(&a, "dy", dy);
    add_arg(&a, "tokens", tokens), add_arg(&a, "positions", positions);
    need_tensor(&a, "dy", dy, DT_F32, 2);
    if (tensor_present(dwte)) {
        need_tensor(&a, "dwte", dwte, DT_F32, 2);
        need_tensor(&a, "tokens", tokens, DT_I32, 1);
        need(&a, tokens.shape[0] == dy.shape[0], "tokens and dy disagree on the rows");
        need(&a, dwte.shape[1] == dy.shape[1], "dwte and dy disagree on the hidden size");
    }
    if (tensor_present(dwpe)) {
        need_tensor(&a, "dwpe", dwpe, DT_F32, 2);
        need_tensor(&a, "positions", positions, DT_I32, 1);
        need(&a, positions.shape[0] == dy.shape[0], "positions and dy disagree on the rows");
        need(&a, dwpe.shape[1] == dy.shape[1], "dwpe and dy disagree on the hidden size");
    }
    switch (common_device(&a)) {
    case DEV_CPU: cpu_embedding_backward(dwte, vocab_start, dwpe, dy, tokens, positions); return;
    case DEV_CUDA: ON_CUDA(cuda_embedding_backward(dwte, vocab_start, dwpe, dy, tokens, positions)); return;
    }
}

void op_position_embedding_backward(struct tensor dwpe, struct tensor dy, int64_t seq)
{
    struct args a = {.op = "op_position_embedding_backward"};
    add_arg(&a, "dwpe", dwpe), add_arg(&a, "dy", dy);
    need_tensor(&a, "dy", dy, DT_F32, 2);
    need_tensor(&a, "dwpe", dwpe, DT_F32, 2);
    need(&a, dwpe.dtype == DT_F32, "dwpe must be float32");
    need(&a, dwpe.shape[1] == dy.shape[1], "dwpe and dy disagree on the hidden size");
    need(&a, seq > 0 && seq <= dwpe.shape[0], "seq must be within dwpe's positions");
    need(&a, dy.shape[0] % seq == 0, "dy's rows must be whole sequences");
    switch (common_device(&a)) {
    case DEV_CPU: cpu_position_embedding_backward(dwpe, dy, seq); return;
    case DEV_CUDA: ON_CUDA(cuda_position_embedding_backward(dwpe, dy, seq)); return;
    }
}

/* ---- normalisation ---- */

/* x [N, C], w [C], optional b [C], per-row statistics [N] (each may be absent when not used). */
static void need_norm_args(const struct args *a, struct tensor x, struct tensor w, struct tensor b,
                           struct tensor stat1, struct tensor stat2)
{
    need_tensor(a, "x", x, DT_F32, 2);
    need_tensor(a, "w", w, DT_F32, 1);
    need(a, w.shape[0] == x.shape[1], "w must have one entry per column of x");
    maybe_tensor(a, "b", b, DT_F32, 1);
    need(a, !tensor_present(b) || b.shape[0] == x.shape[1], "b must have one entry per column of x");
    const struct tensor stats[2] = {stat1, stat2};
    for (int i = 0; i < 2; i++) {
        if (!tensor_present(stats[i])) continue;
        need(a, stats[i].dtype == DT_F32 && stats[i].ndim == 1 && stats[i].shape[0] == x.shape[0],
             "the saved statistics must be float32 [rows of x]");
    }
}

/* y (or dy, dx) has x's shape. */
static void need_like_x(const struct args *a, const char *name, struct tensor t, struct tensor x)
{
    char why[96];
    need_tensor(a, name, t, DT_F32, 2);
    snprintf(why, sizeof why, "%s and x disagree in shape", name);
    need(a, dims_are(t, x.shape[0], x.shape[1]), why);
}

void op_layernorm_forward(struct tensor y, struct tensor mean, struct tensor rstd, struct tensor x,
                          struct tensor w, struct tensor b, float eps)
{
    struct args a = {.op = "op_layernorm_forward"};
    add_arg(&a, "y", y), add_arg(&a, "mean", mean), add_arg(&a, "rstd", rstd), add_arg(&a, "x", x);
    add_arg(&a, "w", w), add_arg(&a, "b", b);
    need(&a, tensor_present(mean) && tensor_present(rstd), "mean and rstd are required");
    need_norm_args(&a, x, w, b, mean, rstd);
    need_like_x(&a, "y", y, x);
    need(&a, eps >= 0.0f, "eps must not be negative");
    switch (common_device(&a)) {
    case DEV_CPU: cpu_layernorm_forward(y, mean, rstd, x, w, b, eps); return;
    case DEV_CUDA: ON_CUDA(cuda_layernorm_forward(y, mean, rstd, x, w, b, eps)); return;
    }
}

/* dy_row_scale: none, or fp32 with one entry per row */
static void maybe_row_scale(struct args *a, struct tensor s, struct tensor x)
{
    add_arg(a, "dy_row_scale", s);
    maybe_tensor(a, "dy_row_scale", s, DT_F32, 1);
    need(a, !tensor_present(s) || (s.dtype == DT_F32 && s.shape[0] == x.shape[0]),
         "dy_row_scale must be float32 with one entry per row of x");
}

void op_layernorm_backward(struct tensor dx, struct tensor dw, struct tensor db, struct tensor dy,
                           struct tensor x, struct tensor w, struct tensor mean, struct tensor rstd,
                           struct tensor dy_row_scale)
{
    struct args a = {.op = "op_layernorm_backward"};
    add_arg(&a, "dx", dx), add_arg(&a, "dw", dw), add_arg(&a, "db", db), add_arg(&a, "dy", dy);
    add_arg(&a, "x", x), add_arg(&a, "w", w), add_arg(&a, "mean", mean), add_arg(&a, "rstd", rstd);
    maybe_row_scale(&a, dy_row_scale, x);
    need(&a, tensor_present(mean) && tensor_present(rstd), "mean and rstd are required");
    need_norm_args(&a, x, w, tensor_none(), mean, rstd);
    need_like_x(&a, "dy", dy, x);
    if (tensor_present(dx)) need_like_x(&a, "dx", dx, x);
    maybe_tensor(&a, "dw", dw, DT_F32, 1);
    maybe_tensor(&a, "db", db, DT_F32, 1);
    need(&a, !tensor_present(dw) || dw.shape[0] == x.shape[1], "dw must be like w");
    need(&a, !tensor_present(db) || db.shape[0] == x.shape[1], "db must be like w");
    switch (common_device(&a)) {
    case DEV_CPU: cpu_layernorm_backward(dx, dw, db, dy, x, w, mean, rstd, dy_row_scale); return;
    case DEV_CUDA:
        ON_CUDA(cuda_layernorm_backward(dx, dw, db, dy, x, w, mean, rstd, dy_row_scale));
        return;
    }
}

void op_rmsnorm_forward(struct tensor y, struct tensor rstd, struct tensor x, struct tensor w, float eps)
{
    struct args a = {.op = "op_rmsnorm_forward"};
    add_arg(&a, "y", y), add_arg(&a, "rstd", rstd), add_arg(&a, "x", x), add_arg(&a, "w", w);
    need(&a, tensor_present(rstd), "rstd is required");
    need_norm_args(&a, x, w, tensor_none(), rstd, tensor_none());
    need_like_x(&a, "y", y, x);
    need(&a, eps >= 0.0f, "eps must not be negative");
    switch (common_device(&a)) {
    case DEV_CPU: cpu_rmsnorm_forward(y, rstd, x, w, eps); return;
    case DEV_CUDA: ON_CUDA(cuda_rmsnorm_forward(y, rstd, x, w, eps)); return;
    }
}

void op_rmsnorm_backward(struct tensor dx, struct tensor dw, struct tensor dy, struct tensor x,
                         struct tensor w, struct tensor rstd, struct tensor dy_row_scale)
{
    struct args a = {.op = "op_rmsnorm_backward"};
    add_arg(&a, "dx", dx), add_arg(&a, "dw", dw), add_arg(&a, "dy", dy), add_arg(&a, "x", x);
    add_arg(&a, "w", w), add_arg(&a, "rstd", rstd);
    maybe_row_scale(&a, dy_row_scale, x);
    need(&a, tensor_present(rstd), "rstd is required");
    need_norm_args(&a, x, w, tensor_none(), rstd, tensor_none());
    need_like_x(&a, "dy", dy, x);
    if (tensor_present(dx)) need_like_x(&a, "dx", dx, x);
    maybe_tensor(&a, "dw", dw, DT_F32, 1);
    need(&a, !tensor_present(dw) || dw.shape[0] == x.shape[1], "dw must be like w");
    switch (common_device(&a)) {
    case DEV_CPU: cpu_rmsnorm_backward(dx, dw, dy, x, w, rstd, dy_row_scale); return;
    case DEV_CUDA: ON_CUDA(cuda_rmsnorm_backward(dx, dw, dy, x, w, rstd, dy_row_scale)); return;
    }
}

/* The bias-dropout-add half of the fused norms: x like mid, b [C] and residual like x when present. */
static void need_bias_dropout_add_args(const struct args *a, struct tensor mid, struct tensor x,
                                       struct tensor b, struct tensor residual,
                                       struct dropout_key drop)
{
    need_tensor(a, "x", x, DT_F32, 2);
    need_like_x(a, "mid", mid, x);
    maybe_tensor(a, "b", b, DT_F32, 1);
    need(a, !tensor_present(b) || b.shape[0] == x.shape[1], "b must have one entry per column of x");
    if (tensor_present(residual)) need_like_x(a, "residual", residual, x);
    need_dropout(a, drop);
}

void op_bias_dropout_add_layernorm_forward(struct tensor mid, struct tensor y, struct tensor mean,
                                           struct tensor rstd, struct tensor x, struct tensor b,
                                           struct tensor residual, struct dropout_key drop,
                                           struct tensor w, struct tensor norm_b, float eps)
{
    struct args a = {.op = "op_bias_dropout_add_layernorm_forward"};
    add_arg(&a, "mid", mid), add_arg(&a, "y", y), add_arg(&a, "mean", mean), add_arg(&a, "rstd", rstd);
    add_arg(&a, "x", x), add_arg(&a, "b", b), add_arg(&a, "residual", residual), add_arg(&a, "w", w);
    add_arg(&a, "norm_b", norm_b);
    need_bias_dropout_add_args(&a, mid, x, b, residual, drop);
    need(&a, tensor_present(mean) && tensor_present(rstd), "mean and rstd are required");
    need_norm_args(&a, mid, w, norm_b, mean, rstd);
    need_like_x(&a, "y", y, mid);
    need(&a, y.data != mid.data && y.data != x.data && y.data != residual.data,
         "y must not overlap mid, x or residual");
    need(&a, eps >= 0.0f, "eps must not be negative");
    switch (common_device(&a)) {
    case DEV_CPU: cpu_bias_dropout_add_layernorm_forward(mid, y, mean, rstd, x, b, residual, drop, w, norm_b, eps); return;
    case DEV_CUDA: ON_CUDA(cuda_bias_dropout_add_layernorm_forward(mid, y, mean, rstd, x, b, residual, drop, w, norm_b, eps)); return;
    }
}

void op_bias_dropout_add_rmsnorm_forward(struct tensor mid, struct tensor y, struct tensor rstd,
                                         struct tensor x, struct tensor b, struct tensor residual,
                                         struct dropout_key drop, struct tensor w, float eps)
{
    struct args a = {.op = "op_bias_dropout_add_rmsnorm_forward"};
    add_arg(&a, "mid", mid), add_arg(&a, "y", y), add_arg(&a, "rstd", rstd), add_arg(&a, "x", x);
    add_arg(&a, "b", b), add_arg(&a, "residual", residual), add_arg(&a, "w", w);
    need_bias_dropout_add_args(&a, mid, x, b, residual, drop);
    need(&a, tensor_present(rstd), "rstd is required");
    need_norm_args(&a, mid, w, tensor_none(), rstd, tensor_none());
    need_like_x(&a, "y", y, mid);
    need(&a, y.data != mid.data && y.data != x.data && y.data != residual.data,
         "y must not overlap mid, x or residual");
    need(&a, eps >= 0.0f, "eps must not be negative");
    switch (common_device(&a)) {
    case DEV_CPU: cpu_bias_dropout_add_rmsnorm_forward(mid, y, rstd, x, b, residual, drop, w, eps); return;
    case DEV_CUDA: ON_CUDA(cuda_bias_dropout_add_rmsnorm_forward(mid, y, rstd, x, b, residual, drop, w, eps)); return;
    }
}

/* dx and dresidual are like x; dx overwrites neither dy nor x; dresidual_sum, when present, has
 * one fp32 entry per column. */
static void need_backward_add_args(const struct args *a, struct tensor dx, struct tensor dy,
                                   struct tensor x, struct tensor dresidual,
                                   struct tensor dresidual_sum)
{
    need_like_x(a, "dy", dy, x);
    need_like_x(a, "dx", dx, x);
    need_like_x(a, "dresidual", dresidual, x);
    need(a, dx.data != dy.data && dx.data != x.data, "dx must not overlap dy or x");
    maybe_tensor(a, "dresidual_sum", dresidual_sum, DT_F32, 1);
    need(a, !tensor_present(dresidual_sum) || dresidual_sum.shape[0] == x.shape[1],
         "dresidual_sum must have one entry per column of x");
}

void op_layernorm_backward_add(struct tensor dx, struct tensor dw, struct tensor db,
                               struct tensor dy, struct tensor x, struct tensor w,
                               struct tensor mean, struct tensor rstd, struct tensor dresidual,
                               struct tensor dresidual_sum)
{
    struct args a = {.op = "op_layernorm_backward_add"};
    add_arg(&a, "dx", dx), add_arg(&a, "dw", dw), add_arg(&a, "db", db), add_arg(&a, "dy", dy);
    add_arg(&a, "x", x), add_arg(&a, "w", w), add_arg(&a, "mean", mean), add_arg(&a, "rstd", rstd);
    add_arg(&a, "dresidual", dresidual), add_arg(&a, "dresidual_sum", dresidual_sum);
    need(&a, tensor_present(mean) && tensor_present(rstd), "mean and rstd are required");
    need_norm_args(&a, x, w, tensor_none(), mean, rstd);
    need_backward_add_args(&a, dx, dy, x, dresidual, dresidual_sum);
    maybe_tensor(&a, "dw", dw, DT_F32, 1);
    maybe_tensor(&a, "db", db, DT_F32, 1);
    need(&a, !tensor_present(dw) || dw.shape[0] == x.shape[1], "dw must be like w");
    need(&a, !tensor_present(db) || db.shape[0] == x.shape[1], "db must be like w");
    switch (common_device(&a)) {
    case DEV_CPU: cpu_layernorm_backward_add(dx, dw, db, dy, x, w, mean, rstd, dresidual, dresidual_sum); return;
    case DEV_CUDA: ON_CUDA(cuda_layernorm_backward_add(dx, dw, db, dy, x, w, mean, rstd, dresidual, dresidual_sum)); return;
    }
}

void op_rmsnorm_backward_add(struct tensor dx, struct tensor dw, struct tensor dy, struct tensor x,
                             struct tensor w, struct tensor rstd, struct tensor dresidual,
                             struct tensor dresidual_sum)
{
    struct args a = {.op = "op_rmsnorm_backward_add"};
    add_arg(&a, "dx", dx), add_arg(&a, "dw", dw), add_arg(&a, "dy", dy), add_arg(&a, "x", x);
    add_arg(&a, "w", w), add_arg(&a, "rstd", rstd), add_arg(&a, "dresidual", dresidual);
    add_arg(&a, "dresidual_sum", dresidual_sum);
    need(&a, tensor_present(rstd), "rstd is required");
    need_norm_args(&a, x, w, tensor_none(), rstd, tensor_none());
    need_backward_add_args(&a, dx, dy, x, dresidual, dresidual_sum);
    maybe_tensor(&a, "dw", dw, DT_F32, 1);
    need(&a, !tensor_present(dw) || dw.shape[0] == x.shape[1], "dw must be like w");
    switch (common_device(&a)) {
    case DEV_CPU: cpu_rmsnorm_backward_add(dx, dw, dy, x, w, rstd, dresidual, dresidual_sum); return;
    case DEV_CUDA: ON_CUDA(cuda_rmsnorm_backward_add(dx, dw, dy, x, w, rstd, dresidual, dresidual_sum)); return;
    }
}

/* ---- activations ---- */

void op_gelu_forward(struct tensor y, struct tensor x, bool tanh_approx)
{
    struct args a = {.op = "op_gelu_forward"};
    add_arg(&a, "y", y), add_arg(&a, "x", x);
    need_tensor(&a, "x", x, DT_F32, 2);
    need_like_x(&a, "y", y, x);
    switch (common_device(&a)) {
    case DEV_CPU: cpu_gelu_forward(y, x, tanh_approx); return;
    case DEV_CUDA: ON_CUDA(cuda_gelu_forward(y, x, tanh_approx)); return;
    }
}

void op_gelu_backward(struct tensor dx, struct tensor dy, struct tensor x, bool tanh_approx)
{
    struct args a = {.op = "op_gelu_backward"};
    add_arg(&a, "dx", dx), add_arg(&a, "dy", dy), add_arg(&a, "x", x);
    need_tensor(&a, "x", x, DT_F32, 2);
    need_like_x(&a, "dy", dy, x);
    if (tensor_present(dx)) need_like_x(&a, "dx", dx, x);
    enum device dev = common_device(&a);
    if (!tensor_present(dx)) return; /* the only output is absent */
    switch (dev) {
    case DEV_CPU: cpu_gelu_backward(dx, dy, x, tanh_approx); return;
    case DEV_CUDA: ON_CUDA(cuda_gelu_backward(dx, dy, x, tanh_approx)); return;
    }
}

/* x [N, 2F] = [gate | up], y or dy [N, F]. */
static void need_swiglu_args(const struct args *a, const char *yname, struct tensor y, struct tensor x)
{
    need_tensor(a, "x", x, DT_F32, 2);
    need_tensor(a, yname, y, DT_F32, 2);
    need(a, dims_are(x, y.shape[0], 2 * y.shape[1]), "x must be [rows, 2 x the columns of the output]");
}

void op_swiglu_forward(struct tensor y, struct tensor x)
{
    struct args a = {.op = "op_swiglu_forward"};
    add_arg(&a, "y", y), add_arg(&a, "x", x);
    need_swiglu_args(&a, "y", y, x);
    switch (common_device(&a)) {
    case DEV_CPU: cpu_swiglu_forward(y, x); return;
    case DEV_CUDA: ON_CUDA(cuda_swiglu_forward(y, x)); return;
    }
}

void op_swiglu_backward(struct tensor dx, struct tensor dy, struct tensor x)
{
    struct args a = {.op = "op_swiglu_backward"};
    add_arg(&a, "dx", dx), add_arg(&a, "dy", dy), add_arg(&a, "x", x);
    need_swiglu_args(&a, "dy", dy, x);
    if (tensor_present(dx)) need_like_x(&a, "dx", dx, x);
    enum device dev = common_device(&a);
    if (!tensor_present(dx)) return; /* the only output is absent */
    switch (dev) {
    case DEV_CPU: cpu_swiglu_backward(dx, dy, x); return;
    case DEV_CUDA: ON_CUDA(cuda_swiglu_backward(dx, dy, x)); return;
    }
}

/* ---- attention ---- */

/* The attention shape is consistent and qkv (or dqkv) is its fused [B*T, g*(n/g+2)*d]. */
static void need_attention_shape(const struct args *a, const char *name, struct tensor qkv,
                                 struct attention_shape s)
{
    char why[224];
    snprintf(why, sizeof why,
             "attention shape B=%lld T=%lld heads=%d groups=%d head_dim=%d is inconsistent",
             (long long)s.batch, (long long)s.seq, s.heads, s.groups, s.head_dim);
    need(a, s.batch >= 0 && s.seq >= 0 && s.heads > 0 && s.groups > 0 && s.head_dim > 0, why);
    need(a, s.heads % s.groups == 0, why);
    need_tensor(a, name, qkv, DT_F32, 2);
    int64_t width = (int64_t)s.groups * (s.heads / s.groups + 2) * s.head_dim;
    snprintf(why, sizeof why, "%s must be [B*T = %lld, g*(n/g+2)*d = %lld]", name,
             (long long)(s.batch * s.seq), (long long)width);
    need(a, dims_are(qkv, s.batch * s.seq, width), why);
}

/* out (or dout) is [B*T, n*d]. */
static void need_attention_out(const struct args *a, const char *name, struct tensor out,
                               struct attention_shape s)
{
    char why[128];
    need_tensor(a, name, out, DT_F32, 2);
    snprintf(why, sizeof why, "%s must be [B*T, heads*head_dim]", name);
    need(a, dims_are(out, s.batch * s.seq, (int64_t)s.heads * s.head_dim), why);
}

/* probs is [B, n, T, T] on the CPU backend (P itself) and [B, n, T] on CUDA (log-sum-exp). */
static void need_attention_probs(const struct args *a, struct tensor probs, struct attention_shape s,
                                 enum device dev)
{
    int ndim = dev == DEV_CPU ? 4 : 3;
    need_tensor(a, "probs", probs, DT_F32, ndim);
    bool ok = probs.shape[0] == s.batch && probs.shape[1] == s.heads && probs.shape[2] == s.seq &&
              (ndim == 3 || probs.shape[3] == s.seq);
    need(a, ok, dev == DEV_CPU ? "probs must be [B, heads, T, T]" : "probs must be [B, heads, T]");
}

static void need_rope_args(const struct args *a, struct tensor qkv, struct tensor positions,
                           struct attention_shape s, int rotary_dim, float base)
{
    need_attention_shape(a, "qkv", qkv, s);
    need_tensor(a, "positions", positions, DT_I32, 1);
    need(a, positions.shape[0] == qkv.shape[0], "positions must have one entry per row of qkv");
    need(a, rotary_dim >= 0 && rotary_dim <= s.head_dim && rotary_dim % 2 == 0,
         "rotary_dim must be even and at most head_dim");
    need(a, base > 0.0f, "the rotary base must be positive");
}

void op_rope_forward(struct tensor qkv, struct tensor positions, struct attention_shape s,
                     int rotary_dim, float base)
{
    struct args a = {.op = "op_rope_forward"};
    add_arg(&a, "qkv", qkv), add_arg(&a, "positions", positions);
    need_rope_args(&a, qkv, positions, s, rotary_dim, base);
    switch (common_device(&a)) {
    case DEV_CPU: cpu_rope_forward(qkv, positions, s, rotary_dim, base); return;
    case DEV_CUDA: ON_CUDA(cuda_rope_forward(qkv, positions, s, rotary_dim, base)); return;
    }
}

void op_rope_backward(struct tensor dqkv, struct tensor positions, struct attention_shape s,
                      int rotary_dim, float base)
{
    struct args a = {.op = "op_rope_backward"};
    add_arg(&a, "dqkv", dqkv), add_arg(&a, "positions", positions);
    need_rope_args(&a, dqkv, positions, s, rotary_dim, base);
    switch (common_device(&a)) {
    case DEV_CPU: cpu_rope_backward(dqkv, positions, s, rotary_dim, base); return;
    case DEV_CUDA: ON_CUDA(cuda_rope_backward(dqkv, positions, s, rotary_dim, base)); return;
    }
}

void op_attention_forward(struct tensor out, struct tensor probs, struct tensor qkv,
                          struct attention_shape s, struct dropout_key drop)
{
    struct args a = {.op = "op_attention_forward"};
    add_arg(&a, "out", out), add_arg(&a, "probs", probs), add_arg(&a, "qkv", qkv);
    need_attention_shape(&a, "qkv", qkv, s);
    need_attention_out(&a, "out", out, s);
    need_dropout(&a, drop);
    enum device dev = common_device(&a);
    need_attention_probs(&a, probs, s, dev);
    switch (dev) {
    case DEV_CPU: cpu_attention_forward(out, probs, qkv, s, drop); return;
    case DEV_CUDA: ON_CUDA(cuda_attention_forward(out, probs, qkv, s, drop)); return;
    }
}

void op_attention_backward(struct tensor dqkv, struct tensor db, struct tensor dout,
                           struct tensor qkv, struct tensor probs, struct tensor out,
                           struct attention_shape s, struct dropout_key drop)
{
    struct args a = {.op = "op_attention_backward"};
    add_arg(&a, "dqkv", dqkv), add_arg(&a, "db", db), add_arg(&a, "dout", dout);
    add_arg(&a, "qkv", qkv), add_arg(&a, "probs", probs), add_arg(&a, "out", out);
    need_attention_shape(&a, "qkv", qkv, s);
    need_attention_shape(&a, "dqkv", dqkv, s);
    need_attention_out(&a, "dout", dout, s);
    need_attention_out(&a, "out", out, s);
    need_dropout(&a, drop);
    maybe_tensor(&a, "db", db, DT_F32, 1);
    need(&a, !tensor_present(db) || db.shape[0] == dqkv.shape[1],
         "db must have one entry per column of dqkv");
    enum device dev = common_device(&a);
    need_attention_probs(&a, probs, s, dev);
    switch (dev) {
    case DEV_CPU:
        cpu_attention_backward(dqkv, dout, qkv, probs, out, s, drop);
        if (tensor_present(db)) cpu_sum_rows_acc(db.data, dqkv.data, dqkv.shape[0], dqkv.shape[1]);
        return;
    case DEV_CUDA: ON_CUDA(cuda_attention_backward(dqkv, db, dout, qkv, probs, out, s, drop)); return;
    }
}

/* ---- elementwise ---- */

void op_bias_dropout_add_forward(struct tensor y, struct tensor x, struct tensor b,
                                 struct tensor residual, struct dropout_key drop)
{
    struct args a = {.op = "op_bias_dropout_add_forward"};
    add_arg(&a, "y", y), add_arg(&a, "x", x), add_arg(&a, "b", b), add_arg(&a, "residual", residual);
    need_tensor(&a, "x", x, DT_F32, 2);
    need_like_x(&a, "y", y, x);
    maybe_tensor(&a, "b", b, DT_F32, 1);
    need(&a, !tensor_present(b) || b.shape[0] == x.shape[1], "b must have one entry per column of x");
    if (tensor_present(residual)) need_like_x(&a, "residual", residual, x);
    need_dropout(&a, drop);
    switch (common_device(&a)) {
    case DEV_CPU: cpu_bias_dropout_add_forward(y, x, b, residual, drop); return;
    case DEV_CUDA: ON_CUDA(cuda_bias_dropout_add_forward(y, x, b, residual, drop)); return;
    }
}

void op_bias_dropout_add_backward(struct tensor dx, struct tensor db, struct tensor dy,
                                  struct dropout_key drop)
{
    struct args a = {.op = "op_bias_dropout_add_backward"};
    add_arg(&a, "dx", dx), add_arg(&a, "db", db), add_arg(&a, "dy", dy);
    need_tensor(&a, "dy", dy, DT_F32, 2);
    if (tensor_present(dx)) {
        need_tensor(&a, "dx", dx, DT_F32, 2);
        need(&a, dims_are(dx, dy.shape[0], dy.shape[1]), "dx and dy disagree in shape");
    }
    maybe_tensor(&a, "db", db, DT_F32, 1);
    need(&a, !tensor_present(db) || db.shape[0] == dy.shape[1], "db must have one entry per column of dy");
    need_dropout(&a, drop);
    switch (common_device(&a)) {
    case DEV_CPU: cpu_bias_dropout_add_backward(dx, db, dy, drop); return;
    case DEV_CUDA: ON_CUDA(cuda_bias_dropout_add_backward(dx, db, dy, drop)); return;
    }
}

static bool same_shape(struct tensor a, struct tensor b)
{
    if (a.ndim != b.ndim) return false;
    for (int i = 0; i < a.ndim; i++)
        if (a.shape[i] != b.shape[i]) return false;
    return true;
}

void op_add(struct tensor y, struct tensor a_, struct tensor b)
{
    struct args a = {.op = "op_add"};
    add_arg(&a, "y", y), add_arg(&a, "a", a_), add_arg(&a, "b", b);
    need(&a, tensor_present(y) && tensor_present(a_) && tensor_present(b), "an argument is absent");
    need(&a, y.dtype == a_.dtype && y.dtype == b.dtype && is_float(y), "all must be float32 (or bf16/fp16 on the GPU)");
    need(&a, same_shape(y, a_) && same_shape(y, b), "the shapes differ");
    switch (common_device(&a)) {
    case DEV_CPU: cpu_add(y, a_, b); return;
    case DEV_CUDA: ON_CUDA(cuda_add(y, a_, b)); return;
    }
}

void op_scale_rows(struct tensor y, struct tensor x, struct tensor s)
{
    struct args a = {.op = "op_scale_rows"};
    add_arg(&a, "y", y), add_arg(&a, "x", x), add_arg(&a, "s", s);
    need_tensor(&a, "x", x, DT_F32, 2);
    need_tensor(&a, "y", y, DT_F32, 2);
    need(&a, y.dtype == x.dtype && same_shape(y, x), "y and x differ in dtype or shape");
    need_tensor(&a, "s", s, DT_F32, 1);
    need(&a, s.dtype == DT_F32 && s.shape[0] == x.shape[0],
         "s must be float32 with one entry per row of x");
    switch (common_device(&a)) {
    case DEV_CPU: cpu_scale_rows(y, x, s); return;
    case DEV_CUDA: ON_CUDA(cuda_scale_rows(y, x, s)); return;
    }
}

void op_copy(struct tensor y, struct tensor x)
{
    struct args a = {.op = "op_copy"};
    add_arg(&a, "y", y), add_arg(&a, "x", x);
    need(&a, tensor_present(y) && tensor_present(x), "an argument is absent");
    need(&a, y.dtype == x.dtype && same_shape(y, x), "y and x differ in dtype or shape");
    switch (common_device(&a)) {
    case DEV_CPU: cpu_copy(y, x); return;
    case DEV_CUDA: ON_CUDA(cuda_copy(y, x)); return;
    }
}

/* Any dtype: zero bits are zero in all of them. */
void op_zero(struct tensor x)
{
    struct args a = {.op = "op_zero"};
    add_arg(&a, "x", x);
    need(&a, tensor_present(x), "x is absent");
    switch (common_device(&a)) {
    case DEV_CPU: cpu_zero(x); return;
    case DEV_CUDA: ON_CUDA(cuda_zero(x)); return;
    }
}

void op_zero_ranges(struct tensor x, struct tensor ranges)
{
    struct args a = {.op = "op_zero_ranges"};
    add_arg(&a, "x", x), add_arg(&a, "ranges", ranges);
    need(&a, tensor_present(x), "x is absent");
    need_tensor(&a, "ranges", ranges, DT_I64, 2);
    need(&a, ranges.shape[1] == 2, "ranges must be [n, 2]: (offset, length) rows");
    switch (common_device(&a)) {
    case DEV_CPU: cpu_zero_ranges(x, ranges); return;
    case DEV_CUDA: ON_CUDA(cuda_zero_ranges(x, ranges)); return;
    }
}
