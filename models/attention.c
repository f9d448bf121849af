/* Megatron's SelfAttention: linear_qkv (fused, grouped per query group), rotary embeddings on q
 * and k, causal core attention (grouped-query when num_query_groups < heads), linear_proj. The
 * projection's bias is added by the transformer layer's bias-dropout-add, as in Megatron. Under
 * tensor parallelism linear_qkv is column-parallel (this rank's query groups) and linear_proj
 * row-parallel: its output is a partial sum the layer reduces. Where the layer asks (one rank, no
 * dropout after it), linear_proj adds its bias and the residual itself. */
#include "models/layers.h"

/* This rank's heads and query groups (all of them without tensor parallelism). */
static struct attention_shape shape_of(const struct layer_ctx *ctx)
{
    const struct model_config *c = ctx->cfg;
    struct attention_shape s;
    s.batch = ctx->batch;
    s.seq = ctx->seq;
    s.heads = c->num_attention_heads / ctx->tp->size;
    s.groups = c->num_query_groups / ctx->tp->size;
    s.head_dim = c->kv_channels;
    s.head_offset = ctx->tp->rank * s.heads;
    s.total_heads = c->num_attention_heads;
    return s;
}

static int rotary_dim(const struct model_config *c)
{
    return (int)((float)c->kv_channels * c->rotary_percent);
}

static struct dropout_key probs_dropout(const struct layer_ctx *ctx)
{
    int64_t per_sample = (int64_t)ctx->cfg->num_attention_heads * ctx->seq * ctx->seq;
    return layer_dropout_key(ctx, SITE_ATTENTION_PROBS, ctx->cfg->attention_dropout, per_sample);
}

void attention_forward(const struct layer_ctx *ctx, const struct attention_params *p,
                       struct attention_acts *a, struct tensor out, struct tensor x,
                       struct tensor positions, struct tensor residual)
{
    const struct model_config *c = ctx->cfg;
    struct attention_shape s = shape_of(ctx);
    op_linear_forward(a->qkv, x, p->qkv_weight, p->qkv_bias);
    if (c->position_embedding == POS_ROPE)
        op_rope_forward(a->qkv, positions, s, rotary_dim(c), c->rotary_base);
    op_attention_forward(a->context, a->probs, a->qkv, s, probs_dropout(ctx));
    if (tensor_present(residual))
        op_linear_residual_forward(out, a->context, p->proj_weight, p->proj_bias, residual);
    else
        op_linear_forward(out, a->context, p->proj_weight, tensor_none());
}

void attention_backward(const struct layer_ctx *ctx, const struct attention_params *p,
                        const struct attention_params *grad, const struct attention_acts *a,
                        struct attention_scratch *s, struct tensor dx, struct tensor dout,
                        struct tensor x, struct tensor positions)
{
    const struct model_config *c = ctx->cfg;
    struct attention_shape sh = shape_of(ctx);
    layer_linear_backward(ctx, s->dcontext, grad->proj_weight, tensor_none(), dout, a->context,
                          p->proj_weight);
    /* linear_qkv's bias gradient, the column sums of dqkv: summed by the attention backward as it
       writes dqkv, unless RoPE changes dqkv after it */
    const bool rope = c->position_embedding == POS_ROPE;
    op_attention_backward(s->dqkv, rope ? tensor_none() : grad->qkv_bias, s->dcontext, a->qkv,
                          a->probs, a->context, sh, probs_dropout(ctx));
    if (rope) op_rope_backward(s->dqkv, positions, sh, rotary_dim(c), c->rotary_base);
    layer_linear_backward(ctx, dx, grad->qkv_weight, rope ? grad->qkv_bias : tensor_none(), s->dqkv,
                          x, p->qkv_weight);
}
