/* The op interface's front door for the losses (as kernels/ops.c for the layers): the
 * cross-entropy, the output layer's GEMM with its cross-entropy, and the per-rank pieces of
 * Megatron's vocab-parallel cross-entropy. */
#include "kernels/ops.h"

#include "kernels/ops_args.h"

/* ---- loss ---- */

/* logits [N, V], targets int32 [N], a per-row float32 [N] (losses or dlosses). */
static void need_loss_args(const struct args *a, struct tensor logits, struct tensor targets,
                           const char *rname, struct tensor per_row)
{
    char why[96];
    need_tensor(a, "logits", logits, DT_F32, 2);
    need_tensor(a, "targets", targets, DT_I32, 1);
    need_tensor(a, rname, per_row, DT_F32, 1);
    need(a, targets.shape[0] == logits.shape[0], "targets must have one entry per row of logits");
    snprintf(why, sizeof why, "%s must have one entry per row of logits", rname);
    need(a, per_row.shape[0] == logits.shape[0], why);
}

void op_cross_entropy_forward(struct tensor losses, struct tensor logits, struct tensor targets)
{
    struct args a = {.op = "op_cross_entropy_forward"};
    add_arg(&a, "losses", losses), add_arg(&a, "logits", logits), add_arg(&a, "targets", targets);
    need_loss_args(&a, logits, targets, "losses", losses);
    switch (common_device(&a)) {
    case DEV_CPU: cpu_cross_entropy_forward(losses, logits, targets); return;
    case DEV_CUDA: ON_CUDA(cuda_cross_entropy_forward(losses, logits, targets)); return;
    }
}

void op_cross_entropy_backward(struct tensor dlogits, struct tensor logits, struct tensor targets,
                               struct tensor dlosses)
{
    struct args a = {.op = "op_cross_entropy_backward"};
    add_arg(&a, "dlogits", dlogits), add_arg(&a, "logits", logits), add_arg(&a, "targets", targets);
    add_arg(&a, "dlosses", dlosses);
    need_loss_args(&a, logits, targets, "dlosses", dlosses);
    if (tensor_present(dlogits)) {
        need_tensor(&a, "dlogits", dlogits, DT_F32, 2);
        need(&a, dims_are(dlogits, logits.shape[0], logits.shape[1]), "dlogits and logits disagree in shape");
    }
    enum device dev = common_device(&a);
    if (!tensor_present(dlogits)) return; /* the only output is absent */
    switch (dev) {
    case DEV_CPU: cpu_cross_entropy_backward(dlogits, logits, targets, dlosses); return;
    case DEV_CUDA: ON_CUDA(cuda_cross_entropy_backward(dlogits, logits, targets, dlosses)); return;
    }
}

void op_cross_entropy_forward_backward(struct tensor losses, struct tensor dlogits, struct tensor logits,
                                       struct tensor targets, struct tensor dlosses)
{
    struct args a = {.op = "op_cross_entropy_forward_backward"};
    add_arg(&a, "losses", losses), add_arg(&a, "dlogits", dlogits), add_arg(&a, "logits", logits);
    add_arg(&a, "targets", targets), add_arg(&a, "dlosses", dlosses);
    need_loss_args(&a, logits, targets, "losses", losses);
    need_loss_args(&a, logits, targets, "dlosses", dlosses);
    need_tensor(&a, "dlogits", dlogits, DT_F32, 2);
    need(&a, dims_are(dlogits, logits.shape[0], logits.shape[1]), "dlogits and logits disagree in shape");
    switch (common_device(&a)) {
    case DEV_CPU: /* the loss first: dlogits may overwrite the logits */
        cpu_cross_entropy_forward(losses, logits, targets);
        cpu_cross_entropy_backward(dlogits, logits, targets, dlosses);
        return;
    case DEV_CUDA: ON_CUDA(cuda_cross_entropy_forward_backward(losses, dlogits, logits, targets, dlosses)); return;
    }
}

bool op_output_layer_cross_entropy(struct tensor losses, struct tensor probs,
                                   struct tensor row_scale, struct tensor x, struct tensor w,
                                   struct tensor targets, struct tensor dlosses)
{
    struct args a = {.op = "op_output_layer_cross_entropy"};
    add_arg(&a, "losses", losses), add_arg(&a, "probs", probs), add_arg(&a, "row_scale", row_scale);
    add_arg(&a, "x", x), add_arg(&a, "w", w), add_arg(&a, "targets", targets);
    add_arg(&a, "dlosses", dlosses);
    need_loss_args(&a, probs, targets, "losses", losses);
    need_loss_args(&a, probs, targets, "dlosses", dlosses);
    need_loss_args(&a, probs, targets, "row_scale", row_scale);
    need_tensor(&a, "x", x, DT_F32, 2);
    need_tensor(&a, "w", w, DT_F32, 2);
    need(&a, x.shape[1] == w.shape[1], "x and w disagree on the input size");
    need(&a, dims_are(probs, x.shape[0], w.shape[0]), "probs must be [rows of x, rows of w]");
    bool scaled = false;
    switch (common_device(&a)) {
    case DEV_CPU:
        cpu_linear_forward(probs, x, w, tensor_none());
        cpu_cross_entropy_forward(losses, probs, targets);
        cpu_cross_entropy_backward(probs, probs, targets, dlosses);
        return false;
    case DEV_CUDA:
        ON_CUDA(scaled = cuda_output_layer_cross_entropy(losses, probs, row_scale, x, w, targets,
                                                         dlosses));
        return scaled;
    }
    return false;
}

/* ---- vocab-parallel cross-entropy ---- */

static void need_rows(const struct args *a, const char *name, struct tensor t, int64_t rows)
{
    char why[96];
    need_tensor(a, name, t, DT_F32, 1);
    snprintf(why, sizeof why, "%s must have one entry per row", name);
    need(a, t.shape[0] == rows, why);
}

void op_vocab_parallel_ce_stats(struct tensor row_max, struct tensor sum_exp, struct tensor target_logit,
                                struct tensor logits, struct tensor targets, int64_t vocab_start)
{
    struct args a = {.op = "op_vocab_parallel_ce_stats"};
    add_arg(&a, "row_max", row_max), add_arg(&a, "sum_exp", sum_exp), add_arg(&a, "target_logit", target_logit);
    add_arg(&a, "logits", logits), add_arg(&a, "targets", targets);
    need_tensor(&a, "logits", logits, DT_F32, 2);
    need_tensor(&a, "targets", targets, DT_I32, 1);
    int64_t n = logits.shape[0];
    need(&a, targets.shape[0] == n, "targets must have one entry per row of logits");
    need_rows(&a, "row_max", row_max, n), need_rows(&a, "sum_exp", sum_exp, n);
    need_rows(&a, "target_logit", target_logit, n);
    switch (common_device(&a)) {
    case DEV_CPU: cpu_vocab_parallel_ce_stats(row_max, sum_exp, target_logit, logits, targets, vocab_start); return;
    case DEV_CUDA: ON_CUDA(cuda_vocab_parallel_ce_stats(row_max, sum_exp, target_logit, logits, targets, vocab_start)); return;
    }
}

void op_vocab_parallel_ce_rescale(struct tensor sum_exp, struct tensor row_max, struct tensor global_max)
{
    struct args a = {.op = "op_vocab_parallel_ce_rescale"};
    add_arg(&a, "sum_exp", sum_exp), add_arg(&a, "row_max", row_max), add_arg(&a, "global_max", global_max);
    int64_t n = sum_exp.shape[0];
    need_rows(&a, "sum_exp", sum_exp, n), need_rows(&a, "row_max", row_max, n);
    need_rows(&a, "global_max", global_max, n);
    switch (common_device(&a)) {
    case DEV_CPU: cpu_vocab_parallel_ce_rescale(sum_exp, row_max, global_max); return;
    case DEV_CUDA: ON_CUDA(cuda_vocab_parallel_ce_rescale(sum_exp, row_max, global_max)); return;
    }
}

void op_vocab_parallel_ce_loss(struct tensor losses, struct tensor lse, struct tensor global_max,
                               struct tensor sum_exp, struct tensor target_logit)
{
    struct args a = {.op = "op_vocab_parallel_ce_loss"};
    add_arg(&a, "losses", losses), add_arg(&a, "lse", lse), add_arg(&a, "global_max", global_max);
    add_arg(&a, "sum_exp", sum_exp), add_arg(&a, "target_logit", target_logit);
    int64_t n = losses.shape[0];
    need_rows(&a, "losses", losses, n), need_rows(&a, "lse", lse, n), need_rows(&a, "global_max", global_max, n);
    need_rows(&a, "sum_exp", sum_exp, n), need_rows(&a, "target_logit", target_logit, n);
    switch (common_device(&a)) {
    case DEV_CPU: cpu_vocab_parallel_ce_loss(losses, lse, global_max, sum_exp, target_logit); return;
    case DEV_CUDA: ON_CUDA(cuda_vocab_parallel_ce_loss(losses, lse, global_max, sum_exp, target_logit)); return;
    }
}

void op_vocab_parallel_ce_backward(struct tensor dlogits, struct tensor logits, struct tensor targets,
                                   int64_t vocab_start, struct tensor lse, struct tensor dlosses)
{
    struct args a = {.op = "op_vocab_parallel_ce_backward"};
    add_arg(&a, "dlogits", dlogits), add_arg(&a, "logits", logits), add_arg(&a, "targets", targets);
    add_arg(&a, "lse", lse), add_arg(&a, "dlosses", dlosses);
    need_tensor(&a, "logits", logits, DT_F32, 2);
    need_tensor(&a, "dlogits", dlogits, DT_F32, 2);
    need_tensor(&a, "targets", targets, DT_I32, 1);
    int64_t n = logits.shape[0];
    need(&a, dims_are(dlogits, n, logits.shape[1]), "dlogits and logits disagree in shape");
    need(&a, targets.shape[0] == n, "targets must have one entry per row of logits");
    need_rows(&a, "lse", lse, n), need_rows(&a, "dlosses", dlosses, n);
    switch (common_device(&a)) {
    case DEV_CPU: cpu_vocab_parallel_ce_backward(dlogits, logits, targets, vocab_start, lse, dlosses); return;
    case DEV_CUDA: ON_CUDA(cuda_vocab_parallel_ce_backward(dlogits, logits, targets, vocab_start, lse, dlosses)); return;
    }
}
