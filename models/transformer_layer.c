/* Megatron's TransformerLayer (pre-norm):
 *   mid = x + dropout(attention(input_norm(x)) + proj_bias)
 *   out = mid + dropout(mlp(pre_mlp_norm(mid)) + fc2_bias)
 * The two bias-dropout-adds draw their masks from --hidden-dropout. Under tensor parallelism the
 * attention and MLP outputs are partial sums reduced over the group (reduce-scattered to this
 * rank's rows with sequence parallelism, whose norm outputs are all-gathered first).
 *
 * The residual stream's elementwise steps are fused where they meet: the first bias-dropout-add
 * and pre_mlp_norm are one op, each norm's backward adds the residual gradient as it writes, and
 * without dropout the bias-dropout-add backward hands its input gradient on instead of copying it.
 * transformer_block_forward carries this across layers: each layer's last bias-dropout-add
 * computes the next layer's input norm (or the final norm). The reductions sit before the
 * bias-dropout-adds and the gathers after the norms, so every fused op works on this rank's own
 * rows, with and without sequence parallelism. On one tensor-parallel rank without hidden dropout,
 * where the backend finds it faster for the shape (op_fuses_linear_residual), linear_proj and
 * linear_fc2 add their bias and the residual in their GEMMs and the norms after them read that
 * sum: the bias-dropout-add's pass over the sublayer's output goes away. */
#include "models/layers.h"

/* One layer. Its input norm is already in a->input_norm when input_norm_ready (the layer before
 * computed it); when next_p is given, the last bias-dropout-add also computes that norm of out
 * into next_a (the next layer's input norm, or the final norm). */
static void layer_forward(const struct layer_ctx *ctx, const struct layer_params *p,
                          struct layer_acts *a, struct layer_scratch *s, struct tensor out,
                          struct tensor x, struct tensor positions, bool input_norm_ready,
                          const struct norm_params *next_p, struct norm_acts *next_a)
{
    if (!input_norm_ready) norm_forward(ctx, &p->input_norm, &a->input_norm, x);
    tp_gather_rows(ctx->tp, a->input_norm.out, a->attention_input);
    struct dropout_key key = layer_hidden_dropout_key(ctx, SITE_ATTENTION_OUT);
    bool one_rank = ctx->tp->size == 1;
    if (one_rank && key.p == 0.0f &&
        op_fuses_linear_residual(a->mid, a->attention.context, p->attention.proj_weight,
                                 p->attention.proj_bias, x)) {
        attention_forward(ctx, &p->attention, &a->attention, a->mid, a->attention_input, positions,
                          x);
        norm_forward(ctx, &p->pre_mlp_norm, &a->pre_mlp_norm, a->mid);
    } else {
        attention_forward(ctx, &p->attention, &a->attention, s->tmp_full, a->attention_input,
                          positions, tensor_none());
        tp_reduce_to_rows(ctx->tp, s->tmp_full, s->tmp);
        bias_dropout_add_norm_forward(ctx, &p->pre_mlp_norm, &a->pre_mlp_norm, a->mid, s->tmp,
                                      p->attention.proj_bias, x, key);
    }

    tp_gather_rows(ctx->tp, a->pre_mlp_norm.out, a->mlp_input);
    key = layer_hidden_dropout_key(ctx, SITE_MLP_OUT);
    if (one_rank && key.p == 0.0f &&
        op_fuses_linear_residual(out, a->mlp.act, p->mlp.fc2_weight, p->mlp.fc2_bias, a->mid)) {
        mlp_forward(ctx, &p->mlp, &a->mlp, out, a->mlp_input, a->mid);
        if (next_p) norm_forward(ctx, next_p, next_a, out);
        return;
    }
    mlp_forward(ctx, &p->mlp, &a->mlp, s->tmp_full, a->mlp_input, tensor_none());
    tp_reduce_to_rows(ctx->tp, s->tmp_full, s->tmp);
    if (next_p)
        bias_dropout_add_norm_forward(ctx, next_p, next_a, out, s->tmp, p->mlp.fc2_bias, a->mid, key);
    else
        op_bias_dropout_add_forward(out, s->tmp, p->mlp.fc2_bias, a->mid, key);
}

void transformer_layer_forward(const struct layer_ctx *ctx, const struct layer_params *p,
                               struct layer_acts *a, struct layer_scratch *s, struct tensor out,
                               struct tensor x, struct tensor positions)
{
    layer_forward(ctx, p, a, s, out, x, positions, false, NULL, NULL);
}

void transformer_block_forward(const struct layer_ctx *ctx, int first_layer, int num_layers,
                               const struct layer_params *p, struct layer_acts *a,
                               struct layer_scratch *s, const struct tensor *hidden,
                               const struct norm_params *final_p, struct norm_acts *final_a,
                               struct tensor positions)
{
    struct layer_ctx c = *ctx;
    for (int l = 0; l < num_layers; l++) {
        bool last = l + 1 == num_layers;
        c.layer = first_layer + l;
        layer_forward(&c, &p[l], &a[l], s, hidden[l + 1], hidden[l], positions, l > 0,
                      last ? final_p : &p[l + 1].input_norm, last ? final_a : &a[l + 1].input_norm);
    }
    if (num_layers == 0 && final_p) norm_forward(ctx, final_p, final_a, hidden[0]);
}

/* The backward of a bias-dropout-add at `site` given the gradient dy of its output: returns the
 * gradient of the sublayer's output, gathered to the whole micro batch for the sublayer's
 * backward. Without dropout that gradient is dy itself, so nothing is copied, and the bias
 * gradient (dy's column sums) is left to the norm backward that reads dy as its residual
 * gradient later: *dbias_left = dbias. Else the gradient goes to scratch (then scratch_full, with
 * sequence parallelism), the bias gradient summed in the same pass. */
static struct tensor sublayer_output_grad(const struct layer_ctx *ctx, enum dropout_site site,
                                          struct tensor dbias, struct tensor dy,
                                          struct tensor scratch, struct tensor scratch_full,
                                          struct tensor *dbias_left)
{
    struct dropout_key key = layer_hidden_dropout_key(ctx, site);
    struct tensor dsub = scratch;
    *dbias_left = tensor_none();
    if (key.p == 0.0f) {
        *dbias_left = dbias;
        dsub = dy;
    } else {
        op_bias_dropout_add_backward(scratch, dbias, dy, key);
    }
    struct tensor dsub_full = ctx->tp->sequence_parallel ? scratch_full : dsub;
    tp_gather_rows(ctx->tp, dsub, dsub_full);
    return dsub_full;
}

void transformer_layer_backward(const struct layer_ctx *ctx, const struct layer_params *p,
                                const struct layer_params *grad, const struct layer_acts *a,
                                struct layer_scratch *s, struct tensor dx, struct tensor dout,
                                struct tensor x, struct tensor positions)
{
    /* MLP half: d mid = dout (residual) + pre_mlp_norm' (mlp' (dropout' dout)) */
    struct tensor dbias;
    struct tensor dsub_full = sublayer_output_grad(ctx, SITE_MLP_OUT, grad->mlp.fc2_bias, dout,
                                                   s->dsub, s->dsub_full, &dbias);
    mlp_backward(ctx, &p->mlp, &grad->mlp, &a->mlp, &s->mlp, s->dnorm_full, dsub_full, a->mlp_input);
    tp_reduce_to_rows(ctx->tp, s->dnorm_full, s->dnorm);
    norm_backward_add(ctx, &p->pre_mlp_norm, &grad->pre_mlp_norm, &a->pre_mlp_norm, s->dmid, s->dnorm,
                      a->mid, dout, dbias);

    /* attention half: dx = d mid (residual) + input_norm' (attention' (dropout' d mid)) */
    dsub_full = sublayer_output_grad(ctx, SITE_ATTENTION_OUT, grad->attention.proj_bias, s->dmid,
                                     s->dsub, s->dsub_full, &dbias);
    attention_backward(ctx, &p->attention, &grad->attention, &a->attention, &s->attention, s->dnorm_full,
                       dsub_full, a->attention_input, positions);
    tp_reduce_to_rows(ctx->tp, s->dnorm_full, s->dnorm);
    norm_backward_add(ctx, &p->input_norm, &grad->input_norm, &a->input_norm, dx, s->dnorm, x, s->dmid,
                      dbias);
}
