/* Megatron's MLP: linear_fc1, then GeLU (erf, or tanh with --openai-gelu) or SwiGLU (fc1 emits
 * [gate; up]), then linear_fc2. fc2's bias is added by the layer's bias-dropout-add. */
#include "models/layers.h"

void mlp_forward(const struct layer_ctx *ctx, const struct mlp_params *p, struct mlp_acts *a,
                 struct tensor out, struct tensor x)
{
    enum activation_type act = ctx->cfg->activation;
    op_linear_forward(a->fc1, x, p->fc1_weight, p->fc1_bias);
    if (act == ACT_SWIGLU)
        op_swiglu_forward(a->act, a->fc1);
    else
        op_gelu_forward(a->act, a->fc1, act == ACT_GELU_TANH);
    op_linear_forward(out, a->act, p->fc2_weight, tensor_none());
}

void mlp_backward(const struct layer_ctx *ctx, const struct mlp_params *p,
                  const struct mlp_params *grad, const struct mlp_acts *a, struct mlp_scratch *s,
                  struct tensor dx, struct tensor dout, struct tensor x)
{
    enum activation_type act = ctx->cfg->activation;
    op_linear_backward(s->dact, grad->fc2_weight, tensor_none(), dout, a->act, p->fc2_weight);
    if (act == ACT_SWIGLU)
        op_swiglu_backward(s->dfc1, s->dact, a->fc1);
    else
        op_gelu_backward(s->dfc1, s->dact, a->fc1, act == ACT_GELU_TANH);
    op_linear_backward(dx, grad->fc1_weight, grad->fc1_bias, s->dfc1, x, p->fc1_weight);
}
