/* Megatron's TransformerLayer (pre-norm):
 *   mid = x + dropout(attention(input_norm(x)) + proj_bias)
 *   out = mid + dropout(mlp(pre_mlp_norm(mid)) + fc2_bias)
 * The two bias-dropout-adds draw their masks from --hidden-dropout. */
#include "models/layers.h"

static struct dropout_key hidden_dropout(const struct layer_ctx *ctx, enum dropout_site site)
{
    return layer_dropout_key(ctx, site, ctx->cfg->hidden_dropout, ctx->seq * ctx->cfg->hidden_size);
}

void transformer_layer_forward(const struct layer_ctx *ctx, const struct layer_params *p,
                               struct layer_acts *a, struct layer_scratch *s, struct tensor out,
                               struct tensor x, struct tensor positions)
{
    norm_forward(ctx, &p->input_norm, &a->input_norm, x);
    attention_forward(ctx, &p->attention, &a->attention, s->tmp, a->input_norm.out, positions);
    op_bias_dropout_add_forward(a->mid, s->tmp, p->attention.proj_bias, x,
                                hidden_dropout(ctx, SITE_ATTENTION_OUT));
    norm_forward(ctx, &p->pre_mlp_norm, &a->pre_mlp_norm, a->mid);
    mlp_forward(ctx, &p->mlp, &a->mlp, s->tmp, a->pre_mlp_norm.out);
    op_bias_dropout_add_forward(out, s->tmp, p->mlp.fc2_bias, a->mid,
                                hidden_dropout(ctx, SITE_MLP_OUT));
}

void transformer_layer_backward(const struct layer_ctx *ctx, const struct layer_params *p,
                                const struct layer_params *grad, const struct layer_acts *a,
                                struct layer_scratch *s, struct tensor dx, struct tensor dout,
                                struct tensor x, struct tensor positions)
{
    /* MLP half: d mid = dout (residual) + pre_mlp_norm' (mlp' (dropout' dout)) */
    op_bias_dropout_add_backward(s->dsub, grad->mlp.fc2_bias, dout, hidden_dropout(ctx, SITE_MLP_OUT));
    mlp_backward(ctx, &p->mlp, &grad->mlp, &a->mlp, &s->mlp, s->dnorm, s->dsub, a->pre_mlp_norm.out);
    norm_backward(ctx, &p->pre_mlp_norm, &grad->pre_mlp_norm, &a->pre_mlp_norm, s->dmid, s->dnorm, a->mid);
    op_add(s->dmid, s->dmid, dout);

    /* attention half: dx = d mid (residual) + input_norm' (attention' (dropout' d mid)) */
    op_bias_dropout_add_backward(s->dsub, grad->attention.proj_bias, s->dmid,
                                 hidden_dropout(ctx, SITE_ATTENTION_OUT));
    attention_backward(ctx, &p->attention, &grad->attention, &a->attention, &s->attention, s->dnorm,
                       s->dsub, a->input_norm.out, positions);
    norm_backward(ctx, &p->input_norm, &grad->input_norm, &a->input_norm, dx, s->dnorm, x);
    op_add(dx, dx, s->dmid);
}
