/* The CPU backend of the op interface (kernels/ops.h): C11 + OpenMP, fp32 math, the reference the
 * CUDA backend is tested against. Each cpu_<op> has the semantics of op_<op> in ops.h and is called
 * by it after the arguments were checked (shapes agree, float tensors DT_F32, ids DT_I32).
 * Results do not depend on the number of OpenMP threads: work is split over independent outputs
 * and every reduction runs in a fixed order inside one thread. */
#ifndef MEGATRON_KERNELS_CPU_CPU_OPS_H
#define MEGATRON_KERNELS_CPU_CPU_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/ops.h"
#include "kernels/tensor.h"

/* linear.c */
void cpu_linear_forward(struct tensor y, struct tensor x, struct tensor w, struct tensor b);
void cpu_linear_backward(struct tensor dx, struct tensor dw, struct tensor db, struct tensor dy,
                         struct tensor x, struct tensor w);
void cpu_linear_weight_grad(struct tensor dw, struct tensor dy, struct tensor x, bool accumulate);

/* embedding.c */
void cpu_embedding_forward(struct tensor y, struct tensor tokens, struct tensor wte,
                           int64_t vocab_start, struct tensor wpe, struct tensor positions);
void cpu_position_embedding_backward(struct tensor dwpe, struct tensor dy, int64_t seq);
void cpu_embedding_backward(struct tensor dwte, int64_t vocab_start, struct tensor dwpe,
                            struct tensor dy, struct tensor tokens, struct tensor positions);

/* norm.c */
void cpu_layernorm_forward(struct tensor y, struct tensor mean, struct tensor rstd, struct tensor x,
                           struct tensor w, struct tensor b, float eps);
void cpu_layernorm_backward(struct tensor dx, struct tensor dw, struct tensor db, struct tensor dy,
                            struct tensor x, struct tensor w, struct tensor mean,
                            struct tensor rstd, struct tensor dy_row_scale);
void cpu_rmsnorm_forward(struct tensor y, struct tensor rstd, struct tensor x, struct tensor w,
                         float eps);
void cpu_rmsnorm_backward(struct tensor dx, struct tensor dw, struct tensor dy, struct tensor x,
                          struct tensor w, struct tensor rstd, struct tensor dy_row_scale);
void cpu_bias_dropout_add_layernorm_forward(struct tensor mid, struct tensor y, struct tensor mean,
                                            struct tensor rstd, struct tensor x, struct tensor b,
                                            struct tensor residual, struct dropout_key drop,
                                            struct tensor w, struct tensor norm_b, float eps);
void cpu_bias_dropout_add_rmsnorm_forward(struct tensor mid, struct tensor y, struct tensor rstd,
                                          struct tensor x, struct tensor b, struct tensor residual,
                                          struct dropout_key drop, struct tensor w, float eps);
void cpu_layernorm_backward_add(struct tensor dx, struct tensor dw, struct tensor db,
                                struct tensor dy, struct tensor x, struct tensor w,
                                struct tensor mean, struct tensor rstd, struct tensor dresidual,
                                struct tensor dresidual_sum);
void cpu_rmsnorm_backward_add(struct tensor dx, struct tensor dw, struct tensor dy, struct tensor x,
                              struct tensor w, struct tensor rstd, struct tensor dresidual,
                              struct tensor dresidual_sum);

/* activation.c */
void cpu_gelu_forward(struct tensor y, struct tensor x, bool tanh_approx);
void cpu_gelu_backward(struct tensor dx, struct tensor dy, struct tensor x, bool tanh_approx);
void cpu_linear_gelu_forward(struct tensor y, struct tensor pre, struct tensor x, struct tensor w,
                             struct tensor b, bool tanh_approx);
void cpu_linear_dgelu_backward(struct tensor dpre, struct tensor dpre_bias, struct tensor dw,
                               struct tensor dy, struct tensor x, struct tensor w, struct tensor pre,
                               bool tanh_approx);
void cpu_linear_dgelu_backward_saved(struct tensor dpre, struct tensor dpre_bias, struct tensor dw,
                                     struct tensor dy, struct tensor x, struct tensor w,
                                     struct tensor dgelu);
void cpu_swiglu_forward(struct tensor y, struct tensor x);
void cpu_swiglu_backward(struct tensor dx, struct tensor dy, struct tensor x);

/* attention.c */
void cpu_rope_forward(struct tensor qkv, struct tensor positions, struct attention_shape s,
                      int rotary_dim, float base);
void cpu_rope_backward(struct tensor dqkv, struct tensor positions, struct attention_shape s,
                       int rotary_dim, float base);
void cpu_attention_forward(struct tensor out, struct tensor probs, struct tensor qkv,
                           struct attention_shape s, struct dropout_key drop);
void cpu_attention_backward(struct tensor dqkv, struct tensor dout, struct tensor qkv,
                            struct tensor probs, struct tensor out, struct attention_shape s,
                            struct dropout_key drop);

/* elementwise.c */
void cpu_bias_dropout_add_forward(struct tensor y, struct tensor x, struct tensor b,
                                  struct tensor residual, struct dropout_key drop);
void cpu_bias_dropout_add_backward(struct tensor dx, struct tensor db, struct tensor dy,
                                   struct dropout_key drop);
void cpu_add(struct tensor y, struct tensor a, struct tensor b);
void cpu_scale_rows(struct tensor y, struct tensor x, struct tensor s);
void cpu_zero(struct tensor x);
void cpu_zero_ranges(struct tensor x, struct tensor ranges);
void cpu_copy(struct tensor y, struct tensor x);

/* loss.c */
void cpu_cross_entropy_forward(struct tensor losses, struct tensor logits, struct tensor targets);
void cpu_cross_entropy_backward(struct tensor dlogits, struct tensor logits, struct tensor targets,
                                struct tensor dlosses);
void cpu_vocab_parallel_ce_stats(struct tensor row_max, struct tensor sum_exp, struct tensor target_logit,
                                 struct tensor logits, struct tensor targets, int64_t vocab_start);
void cpu_vocab_parallel_ce_rescale(struct tensor sum_exp, struct tensor row_max, struct tensor global_max);
void cpu_vocab_parallel_ce_loss(struct tensor losses, struct tensor lse, struct tensor global_max,
                                struct tensor sum_exp, struct tensor target_logit);
void cpu_vocab_parallel_ce_backward(struct tensor dlogits, struct tensor logits, struct tensor targets,
                                    int64_t vocab_start, struct tensor lse, struct tensor dlosses);

/* ---- helpers shared by the CPU kernels ---- */

/* The dropout scale 1/(1-p) of kept elements, in fp32 as torch's fused dropout computes it. */
static inline float cpu_dropout_scale(float p) { return 1.0f / (1.0f - p); }

/* dst[c] += sum over n of src[n*C + c], rows summed in order in double (db of a linear or of a
 * bias-dropout-add); parallel over column blocks. */
void cpu_sum_rows_acc(float *dst, const float *src, int64_t N, int64_t C);

/* Amount of work (elements, or multiply-adds) below which an op stays on one thread: starting a
 * parallel region costs more than a small loop takes. Only shapes decide, never thread counts. */
#define CPU_PARALLEL_MIN_WORK 16384

#endif
