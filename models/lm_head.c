/* The output layer and the language-model loss: logits over the padded vocabulary (tied to the
 * word embeddings unless --untie-embeddings-and-output-weights) and per-token cross-entropy. */
#include "models/layers.h"

void lm_head_forward(const struct layer_ctx *ctx, struct tensor weight, struct tensor logits,
                     struct tensor losses, struct tensor x, struct tensor labels)
{
    (void)ctx;
    op_linear_forward(logits, x, weight, tensor_none());
    op_cross_entropy_forward(losses, logits, labels);
}

void lm_head_backward(const struct layer_ctx *ctx, struct tensor weight, struct tensor dweight,
                      struct tensor logits, struct tensor dlosses, struct tensor dx, struct tensor x,
                      struct tensor labels)
{
    (void)ctx;
    op_cross_entropy_backward(logits, logits, labels, dlosses);
    op_linear_backward(dx, dweight, tensor_none(), logits, x, weight);
}
