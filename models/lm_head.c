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
    op_linear_forward(a->logits, a->input, weight, tensor_none());
    a->grad_in_logits = tp->size == 1 && tensor_present(dlosses);
    if (a->grad_in_logits) {
        op_cross_entropy_forward_backward(a->losses, a->logits, a->logits, labels, dlosses);
        return;
    }
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

void lm_head_backward(const struct layer_ctx *ctx, struct tensor weight, struct tensor dweight,
                      int64_t vocab_start, struct lm_head_acts *a, struct tensor dlosses,
                      struct tensor dx_full, struct tensor labels)
{
    if (a->grad_in_logits)
        a->grad_in_logits = false; /* done by the forward */
    else if (ctx->tp->size == 1)
        op_cross_entropy_backward(a->logits, a->logits, labels, dlosses);
    else
        op_vocab_parallel_ce_backward(a->logits, a->logits, labels, vocab_start, a->lse, dlosses);
    op_linear_backward(dx_full, dweight, tensor_none(), a->logits, a->input, weight);
}
