/* The output layer and the language-model loss: logits over the padded vocabulary (tied to the
 * word embeddings unless --untie-embeddings-and-output-weights) and per-token cross-entropy.
 * Under tensor parallelism the output layer is column-parallel over the vocabulary and the loss is
 * Megatron's vocab-parallel cross-entropy: the full logits are never gathered, only three numbers
 * per token cross the group. */
#include "models/layers.h"

void lm_head_forward(const struct layer_ctx *ctx, struct tensor weight, int64_t vocab_start,
                     struct lm_head_acts *a, struct tensor labels, struct tensor dlosses)
{
    const struct tp_group *tp = ctx->tp;
    a->grad_in_logits = tp->size == 1 && tensor_present(dlosses);
    if (a->grad_in_logits) { /* the logits' gradient in their place, maybe by rows */
        a->rows_scaled = op_output_layer_cross_entropy(a->losses, a->logits, a->row_scale, a->input,
                                                       weight, labels, dlosses);
        return;
    }
    op_linear_forward(a->logits, a->input, weight, tensor_none());
    if (tp->size == 1) {
        op_cross_entropy_forward(a->losses, a->logits, labels);
        return;
    }
    op_vocab_parallel_ce_stats(a->row_max, a->sum_exp, a->target_logit, a->logits, labels, vocab_start);
    op_copy(a->global_max, a->row_max);
    tp_all_reduce_max(tp, a->global_max);
    op_vocab_parallel_ce_rescale(a->sum_exp, a->row_max, a->global_max);
    tp_all_reduce(tp, a->sum_exp);
    tp_all_reduce(tp, a->target_logit);
    op_vocab_parallel_ce_loss(a->losses, a->lse, a->global_max, a->sum_exp, a->target_logit);
}

struct tensor lm_head_backward(const struct layer_ctx *ctx, struct tensor weight,
                               struct tensor dweight, int64_t vocab_start, struct lm_head_acts *a,
                               struct tensor dlosses, struct tensor dx_full, struct tensor labels)
{
    if (a->grad_in_logits)
        a->grad_in_logits = false; /* done by the forward */
    else if (ctx->tp->size == 1)
        op_cross_entropy_backward(a->logits, a->logits, labels, dlosses);
    else
        op_vocab_parallel_ce_backward(a->logits, a->logits, labels, vocab_start, a->lse, dlosses);
    if (!a->rows_scaled) {
        layer_linear_backward(ctx, dx_full, dweight, tensor_none(), a->logits, a->input, weight);
        return tensor_none();
    }
    /* dlogits = diag(row_scale) probs: dweight takes probs^T (row_scale x), the input gradient is
       probs w's rows scaled (by the final norm's backward as it reads them: a pass over them
       saved) */
    a->rows_scaled = false;
    op_scale_rows(a->scaled_input, a->input, a->row_scale);
    layer_linear_backward(ctx, dx_full, dweight, tensor_none(), a->logits, a->scaled_input, weight);
    return a->row_scale;
}
