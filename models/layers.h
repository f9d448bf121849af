/* The layers a GPT-family model is built from, each with its forward beside its backward:
 * embedding.c, norm.c, attention.c, mlp.c, transformer_layer.c, lm_head.c. A layer reads its
 * parameters through views (struct *_params), saves what its backward needs in its activations
 * (struct *_acts) and calls kernels/ops.h only. Backward functions overwrite input gradients and
 * accumulate parameter gradients, as the ops do, except the linear layers' weight gradients on a
 * step's first backward (layer_ctx.write_weight_grads), which they write. */
#ifndef MEGATRON_MODELS_LAYERS_H
#define MEGATRON_MODELS_LAYERS_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/ops.h"
#include "kernels/tensor.h"
#include "models/model_config.h"
#include "parallel/tensor_parallel.h"

/* What every layer call needs besides its tensors. Under tensor parallelism the layers hold
 * this rank's heads, ffn columns and vocabulary rows; with sequence parallelism the residual
 * stream holds rows [row_offset, row_offset + rows) of the micro batch's B*T. */
struct layer_ctx {
    const struct model_config *cfg;
    const struct tp_group *tp;
    int64_t batch, seq;       /* B, T: activations are [B*T, C] */
    int64_t rows;             /* rows of the residual stream on this rank */
    int64_t row_offset;       /* first of them within the micro batch */
    int layer;                /* transformer layer index (-1 outside the decoder) */
    uint64_t dropout_stream;  /* (iteration, micro batch) */
    const uint64_t *device_dropout_stream; /* NULL, or the same in device memory (gpt_batch's) */
    int64_t sample_offset;    /* first sequence of this micro batch within the global batch */
    bool training;
    bool write_weight_grads;  /* linear weights' gradients written, not added (gpt_batch's) */
};

/* A linear layer's weight gradient: dw = or += dy^T x, as ctx->write_weight_grads says. */
static inline void layer_weight_grad(const struct layer_ctx *ctx, struct tensor dw,
                                     struct tensor dy, struct tensor x)
{
    op_linear_weight_grad(dw, dy, x, !ctx->write_weight_grads);
}

/* A linear layer's backward: dx = dy w and db += dy's column sums (either may be absent), then
 * its weight gradient (layer_weight_grad; dw may be absent). */
static inline void layer_linear_backward(const struct layer_ctx *ctx, struct tensor dx,
                                         struct tensor dw, struct tensor db, struct tensor dy,
                                         struct tensor x, struct tensor w)
{
    op_linear_backward(dx, tensor_none(), db, dy, x, w);
    if (tensor_present(dw)) layer_weight_grad(ctx, dw, dy, x);
}

/* Dropout sites, so each draws its own stream. */
enum dropout_site { SITE_EMBEDDING, SITE_ATTENTION_PROBS, SITE_ATTENTION_OUT, SITE_MLP_OUT };

/* The key of a dropout site: masks depend on (seed, iteration, layer, site) and on the element's
 * place in the global batch; p is 0 when not training. */
struct dropout_key layer_dropout_key(const struct layer_ctx *ctx, enum dropout_site site, float p,
                                     int64_t elems_per_sample);
/* The key of a hidden-size dropout on the residual stream ([rows, H] from row_offset). */
struct dropout_key layer_hidden_dropout_key(const struct layer_ctx *ctx, enum dropout_site site);

/* ---- embedding (embedding.c): word (vocab-parallel) + learned position embeddings, dropout ---- */
struct embedding_params {
    struct tensor word;       /* [padded_vocab / TP, H]: rows from vocab_start */
    struct tensor position;   /* [max_position_embeddings, H], absent with RoPE */
    int64_t vocab_start;
};
/* out [rows, H]; out_full [B*T, H] (out itself without sequence parallelism); scratch [rows, H];
 * positions_local: the positions of this rank's rows. */
void embedding_forward(const struct layer_ctx *ctx, const struct embedding_params *p,
                       struct tensor out, struct tensor out_full, struct tensor scratch,
                       struct tensor tokens, struct tensor positions_local);
/* dout [rows, H] is consumed (dropout's backward runs in place); dout_full as out_full. */
void embedding_backward(const struct layer_ctx *ctx, const struct embedding_params *grad,
                        struct tensor dout, struct tensor dout_full, struct tensor tokens,
                        struct tensor positions_local);

/* ---- norm (norm.c): LayerNorm or RMSNorm by config ---- */
struct norm_params {
    struct tensor weight;     /* [H] */
    struct tensor bias;       /* [H], absent for RMSNorm */
};
struct norm_acts {
    struct tensor out;        /* [N, H] */
    struct tensor mean, rstd; /* [N]; mean unused for RMSNorm */
};
void norm_forward(const struct layer_ctx *ctx, const struct norm_params *p, struct norm_acts *a,
                  struct tensor x);
/* dout_row_scale: none, or [N] for an output gradient of diag(dout_row_scale) dout (as
 * lm_head_backward gives it). */
void norm_backward(const struct layer_ctx *ctx, const struct norm_params *p,
                   const struct norm_params *grad, const struct norm_acts *a, struct tensor dx,
                   struct tensor dout, struct tensor dout_row_scale, struct tensor x);
/* The residual stream entering a pre-norm sublayer, in one op: mid = residual + dropout(x + bias)
 * (Megatron's bias-dropout-add), then the norm of mid into a. mid may alias x or residual. */
void bias_dropout_add_norm_forward(const struct layer_ctx *ctx, const struct norm_params *p,
                                   struct norm_acts *a, struct tensor mid, struct tensor x,
                                   struct tensor bias, struct tensor residual,
                                   struct dropout_key drop);
/* norm_backward with dresidual added into dx: the gradient of a residual stream that feeds both the
 * norm and the residual connection past it. dresidual_sum, when present, accumulates dresidual's
 * column sums (the bias gradient of the dropout-free bias-dropout-add dresidual comes out of). dx
 * may alias dresidual. */
void norm_backward_add(const struct layer_ctx *ctx, const struct norm_params *p,
                       const struct norm_params *grad, const struct norm_acts *a, struct tensor dx,
                       struct tensor dout, struct tensor x, struct tensor dresidual,
                       struct tensor dresidual_sum);

/* ---- self-attention (attention.c): linear_qkv, RoPE, core attention, linear_proj ---- */
struct attention_params {
    struct tensor qkv_weight; /* [g*(n/g+2)*d, H], Megatron's grouped layout */
    struct tensor qkv_bias;
    struct tensor proj_weight; /* [H, n*d] */
    struct tensor proj_bias;   /* added in the bias-dropout-add of the layer */
};
struct attention_acts {
    struct tensor qkv;        /* after RoPE */
    struct tensor probs;      /* saved by the core attention for its backward */
    struct tensor context;    /* [N, n*d] */
};
struct attention_scratch {
    struct tensor dqkv, dcontext;
};
/* out [N, H] = linear_proj(attention(linear_qkv(x))), without linear_proj's bias; with a residual
 * (one tensor-parallel rank), out = that + linear_proj's bias + residual. */
void attention_forward(const struct layer_ctx *ctx, const struct attention_params *p,
                       struct attention_acts *a, struct tensor out, struct tensor x,
                       struct tensor positions, struct tensor residual);
void attention_backward(const struct layer_ctx *ctx, const struct attention_params *p,
                        const struct attention_params *grad, const struct attention_acts *a,
                        struct attention_scratch *s, struct tensor dx, struct tensor dout,
                        struct tensor x, struct tensor positions);

/* ---- MLP (mlp.c): linear_fc1, GeLU or SwiGLU, linear_fc2 ---- */
struct mlp_params {
    struct tensor fc1_weight; /* [F or 2F, H] ([gate; up] with SwiGLU) */
    struct tensor fc1_bias;
    struct tensor fc2_weight; /* [H, F] */
    struct tensor fc2_bias;   /* added in the bias-dropout-add of the layer (or by fc2) */
};
struct mlp_acts {
    struct tensor fc1;        /* [N, F or 2F] */
    struct tensor act;        /* [N, F] */
    bool fc1_is_gelu_grad;    /* fc1 holds gelu'(fc1) (op_linear_gelu_forward_train) */
};
struct mlp_scratch {
    struct tensor dfc1, dact;
};
/* out = linear_fc2(act(linear_fc1(x))) without fc2's bias; with a residual (one tensor-parallel
 * rank), out = that + fc2's bias + residual. */
void mlp_forward(const struct layer_ctx *ctx, const struct mlp_params *p, struct mlp_acts *a,
                 struct tensor out, struct tensor x, struct tensor residual);
void mlp_backward(const struct layer_ctx *ctx, const struct mlp_params *p,
                  const struct mlp_params *grad, const struct mlp_acts *a, struct mlp_scratch *s,
                  struct tensor dx, struct tensor dout, struct tensor x);

/* ---- transformer layer (transformer_layer.c): pre-norm attention and MLP with residuals ---- */
struct layer_params {
    struct norm_params input_norm;
    struct attention_params attention;
    struct norm_params pre_mlp_norm;
    struct mlp_params mlp;
};
struct layer_acts {
    struct norm_acts input_norm;
    struct tensor attention_input;  /* [B*T, H]: input_norm.out gathered (the same tensor without
                                       sequence parallelism) */
    struct attention_acts attention;
    struct tensor mid;        /* residual stream after attention */
    struct norm_acts pre_mlp_norm;
    struct tensor mlp_input;  /* pre_mlp_norm.out gathered, likewise */
    struct mlp_acts mlp;
};
struct layer_scratch {
    struct tensor tmp;        /* [rows, H]: a sublayer's output before bias-dropout-add */
    struct tensor tmp_full;   /* [B*T, H]: its partial sums before the tensor-parallel reduction */
    struct tensor dmid, dnorm, dsub;    /* [rows, H] */
    struct tensor dnorm_full, dsub_full; /* [B*T, H] (aliases without sequence parallelism) */
    struct attention_scratch attention;
    struct mlp_scratch mlp;
};
/* out = layer(x); out must not alias x (x is kept for the backward). */
void transformer_layer_forward(const struct layer_ctx *ctx, const struct layer_params *p,
                               struct layer_acts *a, struct layer_scratch *s, struct tensor out,
                               struct tensor x, struct tensor positions);
/* Megatron's TransformerBlock forward: layers first_layer .. first_layer + num_layers - 1 (p[l],
 * a[l] local to the block, ctx->layer ignored) in turn from hidden[0], layer l writing
 * hidden[l + 1], then final_p's norm of hidden[num_layers] into final_a (NULL for a block that ends
 * before the final norm). The same results as transformer_layer_forward for each layer and
 * norm_forward after them, with each layer's last bias-dropout-add fused with the norm that
 * follows it. */
void transformer_block_forward(const struct layer_ctx *ctx, int first_layer, int num_layers,
                               const struct layer_params *p, struct layer_acts *a,
                               struct layer_scratch *s, const struct tensor *hidden,
                               const struct norm_params *final_p, struct norm_acts *final_a,
                               struct tensor positions);
/* dx = d layer / d x given dout; dx may alias dout. */
void transformer_layer_backward(const struct layer_ctx *ctx, const struct layer_params *p,
                                const struct layer_params *grad, const struct layer_acts *a,
                                struct layer_scratch *s, struct tensor dx, struct tensor dout,
                                struct tensor x, struct tensor positions);

/* ---- output layer and loss (lm_head.c) ---- */
struct lm_head_acts {
    struct tensor input;      /* [B*T, H]: the final norm's output gathered */
    struct tensor logits;     /* [B*T, V / TP]: this rank's vocabulary columns */
    struct tensor losses;     /* [B*T] per-token cross-entropy (whole vocabulary) */
    struct tensor lse;        /* [B*T] log-sum-exp over the whole vocabulary */
    struct tensor row_max, sum_exp, target_logit, global_max; /* [B*T] vocab-parallel statistics */
    bool grad_in_logits;      /* the forward already replaced the logits by their gradient */
    bool rows_scaled;         /* ... as probs: the gradient's row n is row_scale[n] times it */
    struct tensor row_scale;  /* [B*T] */
    struct tensor scaled_input; /* [B*T, H]: row_scale times input, for the weight gradient */
};
/* logits = input . weight^T over this rank's vocabulary rows (from vocab_start); losses. With
 * dlosses (d loss / d token loss, known at a training step's forward) and the whole vocabulary on
 * this rank, the logits' place receives their gradient at once (op_output_layer_cross_entropy: on
 * Hopper the logits are never written, their exponentials are) and the backward starts from it. */
void lm_head_forward(const struct layer_ctx *ctx, struct tensor weight, int64_t vocab_start,
                     struct lm_head_acts *a, struct tensor labels, struct tensor dlosses);
/* dlosses [B*T] holds d loss / d token loss; logits are overwritten by their gradient (unless the
 * forward did it); dx_full [B*T, H] receives this rank's partial input gradient (not yet reduced),
 * or where the gradient came by rows (rows_scaled) the input gradient is diag(row_scale) dx_full:
 * then row_scale is returned for the final norm's backward to scale the rows as it reads them,
 * else an absent tensor. */
struct tensor lm_head_backward(const struct layer_ctx *ctx, struct tensor weight,
                               struct tensor dweight, int64_t vocab_start, struct lm_head_acts *a,
                               struct tensor dlosses, struct tensor dx_full, struct tensor labels);

#endif
