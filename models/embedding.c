/* Megatron's LanguageModelEmbedding: word embeddings (+ learned absolute positions), then the
 * embedding dropout (--hidden-dropout). Also the dropout key shared by all layers. */
#include "kernels/rng.h"
#include "models/layers.h"

struct dropout_key layer_dropout_key(const struct layer_ctx *ctx, enum dropout_site site, float p,
                                     int64_t elems_per_sample)
{
    struct dropout_key k;
    k.p = ctx->training ? p : 0.0f;
    k.seed = ctx->cfg->seed;
    k.stream = rng_mix64(ctx->dropout_stream ^ rng_mix64((uint64_t)(ctx->layer + 1) * 16 + (uint64_t)site));
    k.offset = (uint64_t)ctx->sample_offset * (uint64_t)elems_per_sample;
    return k;
}

static struct dropout_key embedding_dropout(const struct layer_ctx *ctx)
{
    return layer_dropout_key(ctx, SITE_EMBEDDING, ctx->cfg->hidden_dropout,
                             ctx->seq * ctx->cfg->hidden_size);
}

void embedding_forward(const struct layer_ctx *ctx, const struct embedding_params *p,
                       struct tensor out, struct tensor tokens, struct tensor positions)
{
    op_embedding_forward(out, tokens, p->word, 0, p->position, positions);
    op_bias_dropout_add_forward(out, out, tensor_none(), tensor_none(), embedding_dropout(ctx));
}

void embedding_backward(const struct layer_ctx *ctx, const struct embedding_params *grad,
                        struct tensor dout, struct tensor tokens, struct tensor positions)
{
    op_bias_dropout_add_backward(dout, tensor_none(), dout, embedding_dropout(ctx));
    op_embedding_backward(grad->word, 0, grad->position, dout, tokens, positions);
}
