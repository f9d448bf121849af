/* Megatron's TransformerLayer (pre-norm):
 *   mid = x + dropout(attention(input_norm(x)) + proj_bias)
 *   out = mid + dropout(mlp(pre_mlp_norm(mid)) + fc2_bias)
 * The two bias-dropout-adds draw their masks from --hidden-dropout. Under tensor parallelism the
 * attention and MLP outputs are partial sums reduced over the group (reduce-scattered to this
 * rank's rows with sequence parallelism, whose norm outputs are all-gathered first). */
#include "models/layers.h"

void transformer_layer_forward(const struct layer_ctx *ctx, const struct layer_params *p,
                               struct layer_acts *a, struct layer_scratch *s, struct tensor out,
                               struct tensor x, struct tensor positions)
{
    norm_forward(ctx, &p->input_norm, &a->input_norm, x);
    tp_gather_rows(ctx->tp, a->input_norm.out, a->attention_input);
    attention_forward(ctx, &p->attention, &a->attention, s->tmp_full, a->attention_input, positions);
    tp_reduce_to_rows(ctx->tp, s->tmp_full, s->tmp);
    op_bias_dropout_add_forward(a->mid, s->tmp, p->attention.proj_bias, x,
                                layer_hidden_dropout_key(ctx, SITE_ATTENTION_OUT));

    norm_forward(ctx, &p->pre_mlp_norm, &a->pre_mlp_norm, a->mid);
    tp_gather_rows(ctx->tp, a->pre_mlp_norm.out, a->mlp_input);
    mlp_forward(ctx, &p->mlp, &a->mlp, s->tmp_full, a->mlp_input);
    tp_reduce_to_rows(ctx->tp, s->tmp_full, s->tmp);
    op_bias_dropout_add_forward(out, s->tmp, p->mlp.fc2_bias, a->mid, layer_hidden_dropout_key(ctx, SITE_MLP_OUT));
}

void transformer_layer_backward(const struct layer_ctx *ctx, const struct layer_params *p,
                                const struct layer_params *grad, const struct layer_acts *a,
                                struct layer_scratch *s, struct tensor dx, struct tensor dout,
                                struct tensor x, struct tensor positions)
{
    /* MLP half: d mid = dout (residual) + pre_mlp_norm' (mlp' (dropout' dout)) */
    op_bias_dropout_add_backward(s->dsub, grad->mlp.fc2_bias, dout, layer_hidden_dropout_key(ctx, SITE_MLP_OUT));
    tp_gather_rows(ctx->tp, s->dsub, s->dsub_full);
    mlp_backward(ctx, &p->mlp, &grad->mlp, &a->mlp, &s->mlp, s->dnorm_full, s->dsub_full, a->mlp_input);
    tp_reduce_to_rows(ctx->tp, s->dnorm_full, s->dnorm);
    norm_backward(ctx, &p->pre_mlp_norm, &grad->pre_mlp_norm, &a->pre_mlp_norm, s->dmid, s->dnorm, a->mid);
    op_add(s->dmid, s->dmid, dout);

    /* attention half: dx = d mid (residual) + input_norm' (attention' (dropout' d mid)) */
    op_bias_dropout_add_backward(s->dsub, grad->attention.proj_bias, s->dmid,
                                 layer_hidden_dropout_key(ctx, SITE_ATTENTION_OUT));
    tp_gather_rows(ctx->tp, s->dsub, s->dsub_full);
    attention_backward(ctx, &p->attention, &grad->attention, &a->attention, &s->attention, s->dnorm_full,
                       s->dsub_full, a->attention_input, positions);
    tp_reduce_to_rows(ctx->tp, s->dnorm_full, s->dnorm);
    norm_backward(ctx, &p->input_norm, &grad->input_norm, &a->input_norm, dx, s->dnorm, x);
    op_add(dx, dx, s->dmid);
}
