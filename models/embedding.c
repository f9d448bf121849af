/* Megatron's LanguageModelEmbedding: vocab-parallel word embeddings (each tensor-parallel rank
 * looks up the tokens of its vocabulary rows and the ranks' rows are summed, or reduce-scattered
 * with sequence parallelism), plus learned absolute positions, then the embedding dropout
 * (--hidden-dropout). Also the dropout keys shared by all layers. */
#include "kernels/rng.h"
#include "models/layers.h"

struct dropout_key layer_dropout_key(const struct layer_ctx *ctx, enum dropout_site site, float p,
                                     int64_t elems_per_sample)
{
    struct dropout_key k;
    k.p = ctx->training ? p : 0.0f;
    k.seed = ctx->cfg->seed;
    uint64_t site_part = rng_mix64((uint64_t)(ctx->layer + 1) * 16 + (uint64_t)site);
    k.stream = ctx->device_dropout_stream ? site_part : rng_mix64(ctx->dropout_stream ^ site_part);
    k.offset = (uint64_t)ctx->sample_offset * (uint64_t)elems_per_sample;
    k.device_stream = ctx->device_dropout_stream;
    return k;
}

struct dropout_key layer_hidden_dropout_key(const struct layer_ctx *ctx, enum dropout_site site)
{
    int64_t h = ctx->cfg->hidden_size;
    struct dropout_key k = layer_dropout_key(ctx, site, ctx->cfg->hidden_dropout, ctx->seq * h);
    k.offset += (uint64_t)(ctx->row_offset * h); /* a sequence-parallel rank's rows */
    return k;
}

void embedding_forward(const struct layer_ctx *ctx, const struct embedding_params *p,
                       struct tensor out, struct tensor out_full, struct tensor scratch,
                       struct tensor tokens, struct tensor positions_local)
{
    if (ctx->tp->size == 1 && tensor_present(p->position)) {
        /* one rank holds the whole vocabulary: both rows looked up and added in one pass (the same
           fp32 sum of the two 16-bit values, rounded once, as the lookup and add below) */
        op_embedding_forward(out, tokens, p->word, p->vocab_start, p->position, positions_local);
    } else {
        op_embedding_forward(out_full, tokens, p->word, p->vocab_start, tensor_none(),
                             tensor_none());
        tp_reduce_to_rows(ctx->tp, out_full, out);
        if (tensor_present(p->position)) { /* the position table looked up, then added */
            op_embedding_forward(scratch, positions_local, p->position, 0, tensor_none(),
                                 tensor_none());
            op_add(out, out, scratch);
        }
    }
    op_bias_dropout_add_forward(out, out, tensor_none(), tensor_none(),
                                layer_hidden_dropout_key(ctx, SITE_EMBEDDING));
}

void embedding_backward(const struct layer_ctx *ctx, const struct embedding_params *grad,
                        struct tensor dout, struct tensor dout_full, struct tensor tokens,
                        struct tensor positions_local)
{
    op_bias_dropout_add_backward(dout, tensor_none(), dout, layer_hidden_dropout_key(ctx, SITE_EMBEDDING));
    /* positions 0 .. s-1 in every sequence and this rank's rows whole sequences: summed by
       sequence, without op_embedding_backward's sort by position (the same sums, the same bits) */
    bool by_sequence = ctx->cfg->positions_arange && dout.shape[0] == ctx->batch * ctx->seq;
    if (tensor_present(grad->position) && by_sequence)
        op_position_embedding_backward(grad->position, dout, ctx->seq);
    else if (tensor_present(grad->position))
        op_embedding_backward(grad->position, 0, tensor_none(), dout, positions_local, tensor_none());
    tp_gather_rows(ctx->tp, dout, dout_full);
    op_embedding_backward(grad->word, grad->vocab_start, tensor_none(), dout_full, tokens, tensor_none());
}
