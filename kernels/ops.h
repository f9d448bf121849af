/* The op interface (ARCHITECTURE.md principle 3): every computation a model does goes through
 * these functions. Each op dispatches on the device of its tensors to the CPU backend
 * (kernels/cpu/, C11 + OpenMP, fp32 math: the reference) or the CUDA backend (kernels/cuda/).
 *
 * Conventions, for every op:
 *  - Rows: activations are 2-D [N, C] with N = micro batch x sequence tokens (row n = b*T + t).
 *  - Linear weights are [out, in] as in torch.nn.Linear and Megatron.
 *  - Backward ops OVERWRITE input gradients (dx) and ACCUMULATE (+=) parameter gradients
 *    (dw, db: Megatron's main_grad). Any gradient argument may be absent (tensor_none()) and is
 *    then not computed.
 *  - An absent optional input (bias, position table) means "not used".
 *  - CPU results do not depend on the number of OpenMP threads: every reduction runs in a fixed
 *    order inside one thread.
 *  - Dropout masks are keyed by struct dropout_key, so forward and backward (and every backend
 *    and layout) see the same mask for the same element without storing it. */
#ifndef MEGATRON_KERNELS_OPS_H
#define MEGATRON_KERNELS_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/tensor.h"

/* Element e of a dropout site is kept iff rng_uniform(seed, stream, offset + e) >= p. */
struct dropout_key {
    float p;          /* drop probability; 0 disables dropout (the op is then a copy) */
    uint64_t seed;
    uint64_t stream;  /* which site, iteration and micro batch (see models/) */
    uint64_t offset;  /* counter of element 0, so a shard of a batch draws its own slice */
    /* GPU tensors only, or NULL: the iteration's part of the stream in device memory, read when the
     * kernel runs (a captured step replays with the next iteration's); the site's stream is then
     * rng_mix64(*device_stream ^ stream), `stream` holding the site's own part. */
    const uint64_t *device_stream;
};

/* ---- dense layers ---- */

/* y[N,out] = x[N,in] . w[out,in]^T + b[out] */
void op_linear_forward(struct tensor y, struct tensor x, struct tensor w, struct tensor b);
/* y[N,out] = x . w^T + b + residual[N,out] (b optional): a linear layer and the bias-dropout-add
 * after it without dropout, the add in the GEMM's epilogue where the backend fuses it
 * (op_fuses_linear_residual), else the two ops. y must not alias residual. */
void op_linear_residual_forward(struct tensor y, struct tensor x, struct tensor w, struct tensor b,
                                struct tensor residual);
/* Whether op_linear_residual_forward with these arguments is worth calling in place of the linear
 * op and a bias-dropout-add fused with the norm after it: on the GPU, where adding the residual in
 * the GEMM costs less than the norm's pass saves (timed once a shape; never with
 * MEGATRON_FUSED_RESIDUAL=0); never on the CPU, which runs it as the two ops. Runs nothing the
 * caller would see (on its first call for a shape it may write y). */
bool op_fuses_linear_residual(struct tensor y, struct tensor x, struct tensor w, struct tensor b,
                              struct tensor residual);
/* dx[N,in] = dy . w;  dw[out,in] += dy^T . x;  db[out] += sum_n dy[n,:] */
void op_linear_backward(struct tensor dx, struct tensor dw, struct tensor db, struct tensor dy,
                        struct tensor x, struct tensor w);
/* dw[out,in] = dy^T . x, or dw += dy^T . x with accumulate: a linear layer's weight gradient
 * alone. A training step's first backward writes its linear weights' gradients (no pass zeroes
 * them first: gpt_batch.write_weight_grads), the later micro batches add theirs. */
void op_linear_weight_grad(struct tensor dw, struct tensor dy, struct tensor x, bool accumulate);

/* linear_fc1 with the GeLU after it (Megatron's bias-GeLU fusion): pre[N,out] = x . w^T + b, kept
 * for the backward, and y[N,out] = gelu(pre) (the erf form, or the tanh one when tanh_approx). */
void op_linear_gelu_forward(struct tensor y, struct tensor pre, struct tensor x, struct tensor w,
                            struct tensor b, bool tanh_approx);
/* The backward of a linear layer whose input is x = gelu(pre) (linear_fc2), through the GeLU:
 * dpre[N,in] = (dy . w) * gelu'(pre);  dw[out,in] += dy^T . x;  dpre_bias[in] += sum_n dpre[n,:]
 * (the bias gradient of the layer that produced pre, linear_fc1). Equals op_linear_backward into
 * a dx followed by op_gelu_backward, with dpre_bias the db of op_linear_backward on dpre. */
void op_linear_dgelu_backward(struct tensor dpre, struct tensor dpre_bias, struct tensor dw,
                              struct tensor dy, struct tensor x, struct tensor w, struct tensor pre,
                              bool tanh_approx);

/* op_linear_gelu_forward at a training step: the backend may keep gelu'(pre) in pre's place
 * instead of pre (the backward's only use of pre), and says so (true); the backward then takes
 * op_linear_dgelu_backward_saved. The CPU keeps pre (false); bf16 on Hopper keeps gelu'(pre),
 * computed with the GeLU in our GEMM's epilogue (kernels/cuda/linear.cu). */
bool op_linear_gelu_forward_train(struct tensor y, struct tensor pre, struct tensor x,
                                  struct tensor w, struct tensor b, bool tanh_approx);
/* op_linear_dgelu_backward given dgelu = gelu'(pre) instead of pre: dpre = (dy . w) * dgelu. */
void op_linear_dgelu_backward_saved(struct tensor dpre, struct tensor dpre_bias, struct tensor dw,
                                    struct tensor dy, struct tensor x, struct tensor w,
                                    struct tensor dgelu);

/* ---- embeddings ---- */

/* y[N,H] = wte[tokens[n] - vocab_start, :] + wpe[positions[n], :] (wpe optional).
 * tokens, positions: int32 [N]. wte holds the vocabulary rows [vocab_start, vocab_start + V) (a
 * tensor-parallel shard, Megatron's VocabParallelEmbedding; vocab_start 0 and V the whole padded
 * vocabulary otherwise): a token outside them contributes a zero row (the data pipeline and the
 * cross-entropy's target check catch ids beyond the vocabulary). */
void op_embedding_forward(struct tensor y, struct tensor tokens, struct tensor wte,
                          int64_t vocab_start, struct tensor wpe, struct tensor positions);
/* dwte[tokens[n] - vocab_start, :] += dy[n, :] (tokens in the shard only);
 * dwpe[positions[n], :] += dy[n, :] */
void op_embedding_backward(struct tensor dwte, int64_t vocab_start, struct tensor dwpe,
                           struct tensor dy, struct tensor tokens, struct tensor positions);
/* dwpe[t, :] += dy[b seq + t, :] for every sequence b in order: op_embedding_backward's position
 * gradient, bit for bit, where dy's rows are whole sequences of seq positions 0 .. seq - 1. */
void op_position_embedding_backward(struct tensor dwpe, struct tensor dy, int64_t seq);

/* ---- normalisation ---- */

/* y = (x - mean) * rstd * w + b per row; saves mean[N], rstd[N] (fp32) for the backward. */
void op_layernorm_forward(struct tensor y, struct tensor mean, struct tensor rstd, struct tensor x,
                          struct tensor w, struct tensor b, float eps);
/* The backward for the output gradient dy, or with dy_row_scale (fp32 [N], or none) for
 * diag(dy_row_scale) dy: an output layer's gradient given by rows (op_output_layer_cross_entropy),
 * scaled as the rows are read. */
void op_layernorm_backward(struct tensor dx, struct tensor dw, struct tensor db, struct tensor dy,
                           struct tensor x, struct tensor w, struct tensor mean, struct tensor rstd,
                           struct tensor dy_row_scale);
/* y = x * rstd * w with rstd = 1/sqrt(mean(x^2) + eps); saves rstd[N]. */
void op_rmsnorm_forward(struct tensor y, struct tensor rstd, struct tensor x, struct tensor w, float eps);
void op_rmsnorm_backward(struct tensor dx, struct tensor dw, struct tensor dy, struct tensor x,
                         struct tensor w, struct tensor rstd, struct tensor dy_row_scale);

/* A pre-norm residual stream's two steps in one pass over each row: Megatron's bias-dropout-add
 * mid = residual + dropout(x + b) (exactly op_bias_dropout_add_forward), then the next norm of mid
 * (exactly op_layernorm_forward / op_rmsnorm_forward into y, mean, rstd). mid may alias x or
 * residual; y must not overlap the others. */
void op_bias_dropout_add_layernorm_forward(struct tensor mid, struct tensor y, struct tensor mean,
                                           struct tensor rstd, struct tensor x, struct tensor b,
                                           struct tensor residual, struct dropout_key drop,
                                           struct tensor w, struct tensor norm_b, float eps);
void op_bias_dropout_add_rmsnorm_forward(struct tensor mid, struct tensor y, struct tensor rstd,
                                         struct tensor x, struct tensor b, struct tensor residual,
                                         struct dropout_key drop, struct tensor w, float eps);
/* The norm backward with the residual branch's gradient added: dx = (the norm's input gradient)
 * + dresidual, where a pre-norm layer's residual stream forks. dw, db as op_layernorm_backward /
 * op_rmsnorm_backward. dresidual_sum (fp32 [C], or none) += the column sums of dresidual: the bias
 * gradient of the bias-dropout-add whose output gradient dresidual is, when it has no dropout,
 * summed as the rows pass (op_bias_dropout_add_backward's db). dx may alias dresidual, not dy or
 * x. */
void op_layernorm_backward_add(struct tensor dx, struct tensor dw, struct tensor db,
                               struct tensor dy, struct tensor x, struct tensor w,
                               struct tensor mean, struct tensor rstd, struct tensor dresidual,
                               struct tensor dresidual_sum);
void op_rmsnorm_backward_add(struct tensor dx, struct tensor dw, struct tensor dy, struct tensor x,
                             struct tensor w, struct tensor rstd, struct tensor dresidual,
                             struct tensor dresidual_sum);

/* ---- activations ---- */

/* GeLU: exact erf form, or the tanh approximation (--openai-gelu, HF gelu_new) when tanh_approx. */
void op_gelu_forward(struct tensor y, struct tensor x, bool tanh_approx);
void op_gelu_backward(struct tensor dx, struct tensor dy, struct tensor x, bool tanh_approx);
/* SwiGLU as Megatron's fc1 output is laid out: x[N, 2F] = [gate | up] along columns,
 * y[N, F] = silu(x[:, :F]) * x[:, F:]. */
void op_swiglu_forward(struct tensor y, struct tensor x);
void op_swiglu_backward(struct tensor dx, struct tensor dy, struct tensor x);

/* ---- attention ---- */

struct attention_shape {
    int64_t batch, seq;   /* B, T: rows are n = b*T + t */
    int heads;            /* n: query heads (of this rank, under tensor parallelism) */
    int groups;           /* g: key/value heads (query groups); heads % groups == 0 */
    int head_dim;         /* d */
    /* Under tensor parallelism a rank holds heads [head_offset, head_offset + heads) of
     * total_heads; attention dropout keys use the global head index so masks do not depend on
     * the layout. 0 and 0 mean "all heads" (head_offset 0, total_heads = heads). */
    int head_offset, total_heads;
};

/* Rotary position embedding in Megatron's rotate-half form, in place on the q and k parts of a
 * fused qkv [N, g*(n/g + 2)*d] (Megatron's layout: for each query group, its n/g query heads,
 * then its key head, then its value head). Only the first rotary_dim dims of each head rotate
 * (rotary_dim = d * --rotary-percent, even): with half = rotary_dim/2,
 * inv_freq[i] = base^(-2i/rotary_dim), angle = positions[n] * inv_freq[i mod half],
 * x'[i] = x[i]*cos - x[i+half]*sin, x'[i+half] = x[i+half]*cos + x[i]*sin (i < half).
 * The backward is the same rotation by -angle, applied in place to the gradient dqkv. */
void op_rope_forward(struct tensor qkv, struct tensor positions, struct attention_shape s,
                     int rotary_dim, float base);
void op_rope_backward(struct tensor dqkv, struct tensor positions, struct attention_shape s,
                      int rotary_dim, float base);

/* Causal self-attention on the fused qkv above: for query head h in group h / (n/g),
 * P = softmax(q k^T / sqrt(d)) over keys t' <= t, out[N, n*d] = dropout(P) v; the dropout
 * element of P[b, h, t, t'] is its index in [B, n, T, T], e = ((b*n + h)*T + t)*T + t'.
 * probs [B, n, T, T] keeps P (before dropout) for the backward on the CPU backend; the CUDA
 * backend keeps the log-sum-exp [B, n, T] instead (fp32 in both cases). */
void op_attention_forward(struct tensor out, struct tensor probs, struct tensor qkv,
                          struct attention_shape s, struct dropout_key drop);
/* dqkv[N, g*(n/g+2)*d] (overwritten) from dout[N, n*d]; with db [g*(n/g+2)*d] (optional),
 * db += sum_n dqkv[n,:] too: linear_qkv's bias gradient, which the backend may sum as it writes
 * dqkv (op_linear_backward's db of dqkv otherwise). */
void op_attention_backward(struct tensor dqkv, struct tensor db, struct tensor dout,
                           struct tensor qkv, struct tensor probs, struct tensor out,
                           struct attention_shape s, struct dropout_key drop);

/* ---- elementwise ---- */

/* y = dropout(x + b) + residual, b [C] broadcast over rows (optional), residual optional:
 * Megatron's bias-dropout-add. y may alias x or residual (all elementwise). */
void op_bias_dropout_add_forward(struct tensor y, struct tensor x, struct tensor b,
                                 struct tensor residual, struct dropout_key drop);
/* dx = dropout_backward(dy) (same mask, same 1/(1-p) scale); db += sum over rows of dx.
 * The residual's gradient is dy itself, so the caller keeps dy. dx may alias dy. */
void op_bias_dropout_add_backward(struct tensor dx, struct tensor db, struct tensor dy,
                                  struct dropout_key drop);
/* y = a + b, y may alias a or b. */
void op_add(struct tensor y, struct tensor a, struct tensor b);
/* x = 0 */
void op_zero(struct tensor x);
/* x[offset, offset + length) = 0 for every row (offset, length) of ranges ([n, 2] int64 on x's
 * device; within x's elements, which it counts flat): the parts of a buffer zeroed in one pass. */
void op_zero_ranges(struct tensor x, struct tensor ranges);
/* y[n, :] = x[n, :] * s[n] for x, y [N, C] and s [N] fp32; y may alias x. */
void op_scale_rows(struct tensor y, struct tensor x, struct tensor s);
/* y = x (same shape and dtype); y must not overlap x. */
void op_copy(struct tensor y, struct tensor x);

/* ---- loss ---- */

/* losses[n] = logsumexp(logits[n, :]) - logits[n, targets[n]] over all V columns of logits
 * (a padded vocabulary included, as Megatron's vocab-parallel cross-entropy does). */
void op_cross_entropy_forward(struct tensor losses, struct tensor logits, struct tensor targets);
/* dlogits[n, :] = (softmax(logits[n, :]) - onehot(targets[n])) * dlosses[n].
 * dlogits may alias logits. */
void op_cross_entropy_backward(struct tensor dlogits, struct tensor logits, struct tensor targets,
                               struct tensor dlosses);
/* Both at once, when dlosses is known at the forward (a training step): the same losses and
 * dlogits (which may alias logits) as the two ops, the logits read once on the GPU. */
void op_cross_entropy_forward_backward(struct tensor losses, struct tensor dlogits, struct tensor logits,
                                       struct tensor targets, struct tensor dlosses);

/* The output layer and its cross-entropy at a training step's forward (dlosses known), the whole
 * vocabulary on this rank: the losses of logits = x w^T (w [V, H]) as op_cross_entropy_forward
 * gives them, and their gradient dlogits = (softmax - onehot) * dlosses left in probs [N, V]: as it
 * is (false), or by rows (true): dlogits[n, :] = row_scale[n] * probs[n, :]. The CPU, fp16 and
 * GPUs without the GEMM of our own take the first (the logits, then
 * op_cross_entropy_forward_backward in place); bf16 on Hopper the second, the exponentials
 * computed in the GEMM's epilogue so the logits are never read back
 * (kernels/cuda/output_layer_ce.cu). */
bool op_output_layer_cross_entropy(struct tensor losses, struct tensor probs,
                                   struct tensor row_scale, struct tensor x, struct tensor w,
                                   struct tensor targets, struct tensor dlosses);

/* Megatron's vocab-parallel cross-entropy, for logits [N, V] holding the vocabulary columns
 * [vocab_start, vocab_start + V) of a tensor-parallel rank; the caller combines ranks:
 *   1. stats: row_max[n] = max_v logits[n, v]; sum_exp[n] = sum_v exp(logits[n, v] - row_max[n]);
 *      target_logit[n] = logits[n, targets[n] - vocab_start] when the target is in the shard, else 0
 *   2. the caller all-reduces row_max with max into global_max, then
 *      op_vocab_parallel_ce_rescale: sum_exp[n] *= exp(row_max[n] - global_max[n]),
 *      then all-reduces sum_exp and target_logit with sum
 *   3. op_vocab_parallel_ce_loss: lse[n] = global_max[n] + log(sum_exp[n]),
 *      losses[n] = lse[n] - target_logit[n]
 *   backward: dlogits[n, v] = (exp(logits[n, v] - lse[n]) - [v + vocab_start == targets[n]]) * dlosses[n]
 * All per-row tensors are fp32 [N]; dlogits may alias logits. */
void op_vocab_parallel_ce_stats(struct tensor row_max, struct tensor sum_exp, struct tensor target_logit,
                                struct tensor logits, struct tensor targets, int64_t vocab_start);
void op_vocab_parallel_ce_rescale(struct tensor sum_exp, struct tensor row_max, struct tensor global_max);
void op_vocab_parallel_ce_loss(struct tensor losses, struct tensor lse, struct tensor global_max,
                               struct tensor sum_exp, struct tensor target_logit);
void op_vocab_parallel_ce_backward(struct tensor dlogits, struct tensor logits, struct tensor targets,
                                   int64_t vocab_start, struct tensor lse, struct tensor dlosses);

#endif
