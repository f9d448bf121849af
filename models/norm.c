/* The two normalisations of the GPT family behind one call: LayerNorm (GPT-2/3) and RMSNorm
 * (LLaMA), chosen by --normalization; also each fused with the bias-dropout-add before it and with
 * the residual gradient after its backward, the way a pre-norm layer's residual stream uses them. */
#include "models/layers.h"

void norm_forward(const struct layer_ctx *ctx, const struct norm_params *p, struct norm_acts *a,
                  struct tensor x)
{
    float eps = ctx->cfg->norm_epsilon;
    if (ctx->cfg->normalization == NORM_RMSNORM)
        op_rmsnorm_forward(a->out, a->rstd, x, p->weight, eps);
    else
        op_layernorm_forward(a->out, a->mean, a->rstd, x, p->weight, p->bias, eps);
}

void norm_backward(const struct layer_ctx *ctx, const struct norm_params *p,
                   const struct norm_params *grad, const struct norm_acts *a, struct tensor dx,
                   struct tensor dout, struct tensor dout_row_scale, struct tensor x)
{
    if (ctx->cfg->normalization == NORM_RMSNORM)
        op_rmsnorm_backward(dx, grad->weight, dout, x, p->weight, a->rstd, dout_row_scale);
    else
        op_layernorm_backward(dx, grad->weight, grad->bias, dout, x, p->weight, a->mean, a->rstd,
                              dout_row_scale);
}

void bias_dropout_add_norm_forward(const struct layer_ctx *ctx, const struct norm_params *p,
                                   struct norm_acts *a, struct tensor mid, struct tensor x,
                                   struct tensor bias, struct tensor residual,
                                   struct dropout_key drop)
{
    float eps = ctx->cfg->norm_epsilon;
    if (ctx->cfg->normalization == NORM_RMSNORM)
        op_bias_dropout_add_rmsnorm_forward(mid, a->out, a->rstd, x, bias, residual, drop, p->weight, eps);
    else
        op_bias_dropout_add_layernorm_forward(mid, a->out, a->mean, a->rstd, x, bias, residual, drop,
                                              p->weight, p->bias, eps);
}

void norm_backward_add(const struct layer_ctx *ctx, const struct norm_params *p,
                       const struct norm_params *grad, const struct norm_acts *a, struct tensor dx,
                       struct tensor dout, struct tensor x, struct tensor dresidual,
                       struct tensor dresidual_sum)
{
    if (ctx->cfg->normalization == NORM_RMSNORM)
        op_rmsnorm_backward_add(dx, grad->weight, dout, x, p->weight, a->rstd, dresidual,
                                dresidual_sum);
    else
        op_layernorm_backward_add(dx, grad->weight, grad->bias, dout, x, p->weight, a->mean, a->rstd,
                                  dresidual, dresidual_sum);
}
