/* Megatron's MLP: linear_fc1, then GeLU or SwiGLU (fc1 emits [gate; up]), then linear_fc2. The GeLU is
 * the tanh approximation (Megatron's fused bias-GeLU, its default with biases, and --openai-gelu) or
 * erf (--no-bias-gelu-fusion, or no biases). fc2's bias is added by the layer's bias-dropout-add,
 * or with the residual by fc2 itself where the layer asks (as attention's linear_proj).
 * With GeLU, fc1 and the activation are one op, and so are fc2's input gradient and the GeLU's
 * backward (with fc1's bias gradient): on the GPU they become GEMM epilogues or single passes, and
 * on Hopper in bf16 the forward keeps gelu'(pre) in fc1's place for the backward to multiply in. */
#include "models/layers.h"

void mlp_forward(const struct layer_ctx *ctx, const struct mlp_params *p, struct mlp_acts *a,
                 struct tensor out, struct tensor x, struct tensor residual)
{
    enum activation_type act = ctx->cfg->activation;
    if (act == ACT_SWIGLU) {
        op_linear_forward(a->fc1, x, p->fc1_weight, p->fc1_bias);
        op_swiglu_forward(a->act, a->fc1);
    } else {
        a->fc1_is_gelu_grad = op_linear_gelu_forward_train(a->act, a->fc1, x, p->fc1_weight,
                                                           p->fc1_bias, act == ACT_GELU_TANH);
    }
    if (tensor_present(residual))
        op_linear_residual_forward(out, a->act, p->fc2_weight, p->fc2_bias, residual);
    else
        op_linear_forward(out, a->act, p->fc2_weight, tensor_none());
}

void mlp_backward(const struct layer_ctx *ctx, const struct mlp_params *p,
                  const struct mlp_params *grad, const struct mlp_acts *a, struct mlp_scratch *s,
                  struct tensor dx, struct tensor dout, struct tensor x)
{
    enum activation_type act = ctx->cfg->activation;
    if (act == ACT_SWIGLU) {
        layer_linear_backward(ctx, s->dact, grad->fc2_weight, tensor_none(), dout, a->act,
                              p->fc2_weight);
        op_swiglu_backward(s->dfc1, s->dact, a->fc1);
        layer_linear_backward(ctx, dx, grad->fc1_weight, grad->fc1_bias, s->dfc1, x, p->fc1_weight);
        return;
    }
    /* fc2's weight gradient, then its input gradient through the GeLU with fc1's bias gradient */
    layer_weight_grad(ctx, grad->fc2_weight, dout, a->act);
    if (a->fc1_is_gelu_grad)
        op_linear_dgelu_backward_saved(s->dfc1, grad->fc1_bias, tensor_none(), dout, a->act,
                                       p->fc2_weight, a->fc1);
    else
        op_linear_dgelu_backward(s->dfc1, grad->fc1_bias, tensor_none(), dout, a->act,
                                 p->fc2_weight, a->fc1, act == ACT_GELU_TANH);
    layer_linear_backward(ctx, dx, grad->fc1_weight, tensor_none(), s->dfc1, x, p->fc1_weight);
}
