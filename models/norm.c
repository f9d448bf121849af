/* The two normalisations of the GPT family behind one call: LayerNorm (GPT-2/3) and RMSNorm
 * (LLaMA), chosen by --normalization. */
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
                   struct tensor dout, struct tensor x)
{
    if (ctx->cfg->normalization == NORM_RMSNORM)
        op_rmsnorm_backward(dx, grad->weight, dout, x, p->weight, a->rstd);
    else
        op_layernorm_backward(dx, grad->weight, grad->bias, dout, x, p->weight, a->mean, a->rstd);
}
