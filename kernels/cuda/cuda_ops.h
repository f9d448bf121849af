/* The CUDA backend of the op interface (kernels/ops.h): each cuda_<op> has the signature and the
 * semantics of op_<op>, and kernels/ops.c (or ops_loss.c) calls it for tensors on DEV_CUDA after
 * checking shapes.
 * Callable from C. Everything runs on one stream per process, asynchronously: only the functions
 * that return host values (cuda_sum_squares) or say so (memcpy, cuda_synchronize) wait.
 *
 * dtype contract (what the GPU training step uses; a mismatch is a bug, exit 1):
 *  - activations and weights of one 16-bit dtype, DT_BF16 or DT_F16 (biases and norm weights too),
 *    the same for every 16-bit argument of a call;
 *  - parameter gradients dw, db, embedding and norm weight grads DT_F32, accumulated (+=);
 *  - saved statistics DT_F32: norm mean/rstd [N], attention log-sum-exp [B, n, T] (the `probs`
 *    argument of attention is the natural-log LSE on this backend, not P);
 *  - tokens, targets, positions DT_I32; losses, dlosses and the per-row statistics of the
 *    vocab-parallel cross-entropy (row_max, sum_exp, target_logit, global_max, lse) DT_F32.
 * Math inside every kernel is fp32. Hidden dropout masks come from kernels/rng.h with the same keys
 * as the CPU backend, so both draw the same mask. Attention dropout is drawn inside cuDNN's fused
 * attention by its Philox generator, seeded from the same key (forward and backward agree, runs
 * repeat), so that mask differs from the CPU backend's: same distribution, other draws.
 * Our reductions run in an order fixed by the shape (no float atomics): their results repeat
 * bitwise. The one exception is cuDNN's attention backward, which sums dQ with fp32 atomics (the
 * frontend's default engine): its last bits may vary from run to run. */
#ifndef MEGATRON_KERNELS_CUDA_CUDA_OPS_H
#define MEGATRON_KERNELS_CUDA_CUDA_OPS_H

/* System headers first, outside the C-linkage block (C++ math headers hold templates). */
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "kernels/ops.h"
#include "kernels/tensor.h"
#include "optim/adam.h"

/* ---- device, memory, streams ---- */

/* Number of usable GPUs; 0 when there is no GPU or no driver (never fails). */
int cuda_device_count(void);
/* Selects the GPU and creates the stream, cuBLASLt and cuDNN handles and workspaces, once per
 * process. A second call with the same index does nothing; another index is a bug. */
void cuda_init(int device_index);
/* Device memory (NULL for 0 bytes). Running out is a user error naming the size. */
void *cuda_alloc(size_t bytes);
void cuda_free(void *p);
/* Device memory in bytes, for Megatron's memory report: what the backend holds (cuda_alloc, its
 * scratch and cuBLASLt workspace) now and at most so far; and what the device has in use by the
 * driver's count (the CUDA context and the libraries' own memory included) at the last
 * cuda_memory_sample and at most over the samples. */
struct cuda_memory {
    size_t allocated, max_allocated, in_use, max_in_use;
};
void cuda_memory_sample(void);
struct cuda_memory cuda_memory_report(void);
/* Copies that return once the data has arrived (the host buffer can be reused at once). */
void cuda_memcpy_h2d(void *dst, const void *src, size_t bytes);
void cuda_memcpy_d2h(void *dst, const void *src, size_t bytes);
/* A host-to-device copy queued in stream order without waiting for the device: src is copied into
 * pinned staging first, so it may be reused as soon as the call returns. */
void cuda_memcpy_h2d_staged(void *dst, const void *src, size_t bytes);
/* Zeroes device memory, ordered on the backend stream. */
void cuda_memset_zero(void *dst, size_t bytes);
/* Waits for everything queued on the backend stream; reports any asynchronous error. */
void cuda_synchronize(void);

/* CUDA graphs (graph.cu): cuda_graph_begin starts capturing what this thread queues on the stream
 * (nothing runs: no waits, allocations or host reads of device values are allowed until
 * cuda_graph_end, which returns the graph ready to launch). cuda_graph_launch queues the captured
 * work again, reading whatever the captured pointers hold by then. A graph is current while the
 * backend has freed none of the memory it may use (cuda_graph_launch of one that is not is a bug).
 * cuda_graph_allowed: false with MEGATRON_CUDA_GRAPH=0 in the environment, or while
 * MEGATRON_OP_TIMING times ops one by one. */
struct cuda_graph;
bool cuda_graph_allowed(void);
void cuda_graph_begin(void);
struct cuda_graph *cuda_graph_end(void);
bool cuda_graph_current(const struct cuda_graph *g);
size_t cuda_graph_nodes(const struct cuda_graph *g);
void cuda_graph_launch(struct cuda_graph *g);
void cuda_graph_free(struct cuda_graph *g);
bool cuda_capturing(void);
/* The backend's stream (a cudaStream_t): where NCCL collectives run, in order with the kernels. */
void *cuda_stream(void);

/* ---- ops: exactly op_<op> of ops.h ---- */

void cuda_linear_forward(struct tensor y, struct tensor x, struct tensor w, struct tensor b);
void cuda_linear_residual_forward(struct tensor y, struct tensor x, struct tensor w,
                                  struct tensor b, struct tensor residual);
bool cuda_fuses_linear_residual(struct tensor y, struct tensor x, struct tensor w,
                                struct tensor b, struct tensor residual);
void cuda_linear_backward(struct tensor dx, struct tensor dw, struct tensor db, struct tensor dy,
                          struct tensor x, struct tensor w);
void cuda_linear_weight_grad(struct tensor dw, struct tensor dy, struct tensor x, bool accumulate);
void cuda_linear_gelu_forward(struct tensor y, struct tensor pre, struct tensor x, struct tensor w,
                              struct tensor b, bool tanh_approx);
void cuda_linear_dgelu_backward(struct tensor dpre, struct tensor dpre_bias, struct tensor dw,
                                struct tensor dy, struct tensor x, struct tensor w,
                                struct tensor pre, bool tanh_approx);
bool cuda_linear_gelu_forward_train(struct tensor y, struct tensor pre, struct tensor x,
                                    struct tensor w, struct tensor b, bool tanh_approx);
void cuda_linear_dgelu_backward_saved(struct tensor dpre, struct tensor dpre_bias, struct tensor dw,
                                      struct tensor dy, struct tensor x, struct tensor w,
                                      struct tensor dgelu);

void cuda_embedding_forward(struct tensor y, struct tensor tokens, struct tensor wte,
                            int64_t vocab_start, struct tensor wpe, struct tensor positions);
void cuda_position_embedding_backward(struct tensor dwpe, struct tensor dy, int64_t seq);
void cuda_embedding_backward(struct tensor dwte, int64_t vocab_start, struct tensor dwpe,
                             struct tensor dy, struct tensor tokens, struct tensor positions);

void cuda_layernorm_forward(struct tensor y, struct tensor mean, struct tensor rstd,
                            struct tensor x, struct tensor w, struct tensor b, float eps);
void cuda_layernorm_backward(struct tensor dx, struct tensor dw, struct tensor db,
                             struct tensor dy, struct tensor x, struct tensor w,
                             struct tensor mean, struct tensor rstd, struct tensor dy_row_scale);
void cuda_rmsnorm_forward(struct tensor y, struct tensor rstd, struct tensor x, struct tensor w,
                          float eps);
void cuda_rmsnorm_backward(struct tensor dx, struct tensor dw, struct tensor dy, struct tensor x,
                           struct tensor w, struct tensor rstd, struct tensor dy_row_scale);
void cuda_bias_dropout_add_layernorm_forward(struct tensor mid, struct tensor y, struct tensor mean,
                                             struct tensor rstd, struct tensor x, struct tensor b,
                                             struct tensor residual, struct dropout_key drop,
                                             struct tensor w, struct tensor norm_b, float eps);
void cuda_bias_dropout_add_rmsnorm_forward(struct tensor mid, struct tensor y, struct tensor rstd,
                                           struct tensor x, struct tensor b,
                                           struct tensor residual, struct dropout_key drop,
                                           struct tensor w, float eps);
void cuda_layernorm_backward_add(struct tensor dx, struct tensor dw, struct tensor db,
                                 struct tensor dy, struct tensor x, struct tensor w,
                                 struct tensor mean, struct tensor rstd, struct tensor dresidual,
                                 struct tensor dresidual_sum);
void cuda_rmsnorm_backward_add(struct tensor dx, struct tensor dw, struct tensor dy,
                               struct tensor x, struct tensor w, struct tensor rstd,
                               struct tensor dresidual, struct tensor dresidual_sum);

void cuda_gelu_forward(struct tensor y, struct tensor x, bool tanh_approx);
void cuda_gelu_backward(struct tensor dx, struct tensor dy, struct tensor x, bool tanh_approx);
void cuda_swiglu_forward(struct tensor y, struct tensor x);
void cuda_swiglu_backward(struct tensor dx, struct tensor dy, struct tensor x);

void cuda_rope_forward(struct tensor qkv, struct tensor positions, struct attention_shape s,
                       int rotary_dim, float base);
void cuda_rope_backward(struct tensor dqkv, struct tensor positions, struct attention_shape s,
                        int rotary_dim, float base);
void cuda_attention_forward(struct tensor out, struct tensor probs, struct tensor qkv,
                            struct attention_shape s, struct dropout_key drop);
void cuda_attention_backward(struct tensor dqkv, struct tensor db, struct tensor dout,
                             struct tensor qkv, struct tensor probs, struct tensor out,
                             struct attention_shape s, struct dropout_key drop);

void cuda_bias_dropout_add_forward(struct tensor y, struct tensor x, struct tensor b,
                                   struct tensor residual, struct dropout_key drop);
void cuda_bias_dropout_add_backward(struct tensor dx, struct tensor db, struct tensor dy,
                                    struct dropout_key drop);
void cuda_add(struct tensor y, struct tensor a, struct tensor b);
void cuda_scale_rows(struct tensor y, struct tensor x, struct tensor s);
void cuda_zero(struct tensor x);
void cuda_zero_ranges(struct tensor x, struct tensor ranges);
void cuda_copy(struct tensor y, struct tensor x);

void cuda_cross_entropy_forward(struct tensor losses, struct tensor logits, struct tensor targets);
/* Both in one read of the logits (where a row fits in shared memory): losses, and dlogits (which
 * may alias logits) from dlosses known at the forward. */
void cuda_cross_entropy_forward_backward(struct tensor losses, struct tensor dlogits, struct tensor logits,
                                         struct tensor targets, struct tensor dlosses);
bool cuda_output_layer_cross_entropy(struct tensor losses, struct tensor probs,
                                     struct tensor row_scale, struct tensor x, struct tensor w,
                                     struct tensor targets, struct tensor dlosses);
void cuda_cross_entropy_backward(struct tensor dlogits, struct tensor logits,
                                 struct tensor targets, struct tensor dlosses);
void cuda_vocab_parallel_ce_stats(struct tensor row_max, struct tensor sum_exp,
                                  struct tensor target_logit, struct tensor logits,
                                  struct tensor targets, int64_t vocab_start);
void cuda_vocab_parallel_ce_rescale(struct tensor sum_exp, struct tensor row_max,
                                    struct tensor global_max);
void cuda_vocab_parallel_ce_loss(struct tensor losses, struct tensor lse, struct tensor global_max,
                                 struct tensor sum_exp, struct tensor target_logit);
void cuda_vocab_parallel_ce_backward(struct tensor dlogits, struct tensor logits,
                                     struct tensor targets, int64_t vocab_start, struct tensor lse,
                                     struct tensor dlosses);

/* ---- optimizer ---- */

/* adam_update (optim/adam.h) on device pointers, bitwise equal to the CPU version: the same fp32
 * expressions in the same order, each rounded (no fused multiply-add). */
/* acc[0] += sum over i < n of mask[i] x x[i], in double and in an order that depends on n only:
 * a micro batch's loss summed on the device, read once per step. */
void cuda_masked_sum_accumulate(double *acc, const float *x, const float *mask, int64_t n);

void cuda_adam_update(float *param, const float *grad, float *exp_avg, float *exp_avg_sq,
                      int64_t n, double lr, double weight_decay, struct adam_params ap,
                      int64_t step);
/* A piece of the flat buffers Adam (or SGD) updates in one launch: elements [param, param + len)
 * of the weights and grads, [state, state + len) of the moments, with weight decay or without. */
enum { CUDA_OPTIM_CHUNK = 8192 }; /* most elements in one chunk (one thread block) */
struct cuda_optim_chunk {
    int64_t param, state;
    int32_t len;   /* 1 .. CUDA_OPTIM_CHUNK */
    int32_t decay; /* 1: weight_decay applies; 0: none (biases, 1-D tensors) */
};
/* The optimizer step's scalars, in device memory: the host writes the inputs with a queued copy
 * before the step (norm_sq = 0 among them), the device adds the gradients' sum of squares. Every
 * launch of the step reads them there, so the step waits for nothing and a captured step replays
 * with the next step's values. */
struct cuda_step_scalars {
    double norm_sq;       /* device: sum of squares of the unscaled gradients (after the all-reduces) */
    double num_zeros;     /* device: --log-num-zeros-in-grad's count (right after norm_sq: read together) */
    double max_norm;      /* --clip-grad; 0: no clipping */
    float inv_loss_scale; /* (float)(1 / loss scale) */
    float lr, wd;         /* the schedule's values for this step */
    float bc1, bc2;       /* Adam's bias corrections for this step's count */
    int32_t first_step;   /* SGD: the momentum buffer starts from this step's gradient */
};
/* Adam's constants (b1, b2, eps, decoupled) and the step's scalars from s, as the host computes
 * them for step `step` (1-based) at rates lr, wd: what the host writes into cuda_step_scalars. */
void cuda_step_scalars_fill(struct cuda_step_scalars *s, double lr, double weight_decay, struct adam_params ap,
                            int64_t step, double max_norm, double loss_scale);
/* The step's update over every chunk of the device table chunks[num_chunks] in one launch, read
 * from s: nothing happens when sqrt(norm_sq) is not finite (the skipped step); each gradient is
 * multiplied by (float)(max_norm / (norm + 1e-6)) when that is below 1 (clip_coeff), then each
 * element is updated bitwise as cuda_adam_update computes it; when lp is not NULL the new weights
 * are also rounded into lp (the model's 16-bit copy, lp_dtype DT_BF16 or DT_F16) at their flat
 * positions. The gradients are left as they were. The weights, gradients, both moments and lp are
 * five buffers that do not overlap. */
void cuda_adam_update_chunks(float *weights, const float *grads, float *exp_avg, float *exp_avg_sq,
                             const struct cuda_optim_chunk *chunks, int64_t num_chunks, struct adam_params ap,
                             const struct cuda_step_scalars *s, void *lp, enum dtype lp_dtype);
/* sgd_update (optim/sgd.h) the same way (the skip and clip too), bitwise the CPU's per element (a
 * chunk without decay gets weight decay 0), momentum_buf indexed like the moments. */
void cuda_sgd_update_chunks(float *weights, const float *grads, float *momentum_buf,
                            const struct cuda_optim_chunk *chunks, int64_t num_chunks, double momentum,
                            const struct cuda_step_scalars *s, void *lp, enum dtype lp_dtype);
/* Sum of squares of x[0..n) in double, reduced in an order fixed by n alone (deterministic);
 * waits for the result. */
double cuda_sum_squares(const float *x, int64_t n);
/* acc[0] += the same sum, queued (no wait): the pieces of a gradient norm added in call order. */
void cuda_sum_squares_add(double *acc, const float *x, int64_t n);
/* acc[0] += the number of elements of g[0..n) that are zero after the step's clipping (each
 * multiplied by the clip factor the update uses, read from s), queued; nothing when the step is
 * skipped (its norm is not finite). Exact and in any order: whole counts added in double. */
void cuda_count_zeros_add(double *acc, const float *g, int64_t n, const struct cuda_step_scalars *s);
/* x *= c in fp32 (gradient unscaling and clipping, as clip_scale does on the CPU). */
void cuda_scale_f32(float *x, int64_t n, float c);
/* x *= *c, the factor read from device memory when the kernel runs. */
void cuda_scale_f32_by(float *x, int64_t n, const float *c);
/* dst (dt: DT_BF16 or DT_F16) = src rounded to nearest even: the model's 16-bit weights from its
 * fp32 main weights. */
void cuda_f32_to_lp(void *dst, const float *src, int64_t n, enum dtype dt);
/* The same, and back (dst fp32 = src bf16), on the given stream (a communication stream):
 * --grad-reduce-in-bf16's wire format. */
void cuda_f32_to_bf16_on(void *stream, void *dst, const float *src, int64_t n);
void cuda_bf16_to_f32_on(void *stream, float *dst, const void *src, int64_t n);

/* ---- which path a fused op took (for the GPU tests and benchmarks) ---- */

/* The GeLU-fused linear ops run as one cuBLASLt GEMM with a GeLU epilogue (the tanh form only,
 * which is the GeLU cuBLASLt implements, and widths that are multiples of 8) or, when cuBLASLt
 * offers no such algorithm, as a GEMM and a separate kernel. The backward has four paths (fc1's
 * bias gradient in the GEMM's DGELU_BGRAD epilogue; a DGELU epilogue and a column sum; the same
 * GEMM over each half of the rows; a plain GEMM and the GeLU-backward kernel): each shape times
 * those cuBLASLt offers on its first call and keeps the fastest (linear.cu). What the last call of
 * each did: */
struct cuda_gelu_paths {
    bool forward_epilogue;   /* cuda_linear_gelu_forward: GELU_AUX(_BIAS) */
    bool forward_own_gemm;   /* the last linear forward (with the GeLU or not) ran the GEMM of
                                our own (then the GeLU of the rounded pre) */
    bool backward_epilogue;  /* cuda_linear_dgelu_backward: DGELU(_BGRAD) */
    bool backward_row_halves; /* ... DGELU over each half of the rows (where a half declined it:
                                 the plain GEMM and kernel for that half) */
    bool bias_grad_epilogue; /* ... and fc1's bias gradient summed in fp32 by DGELU_BGRAD */
};
enum cuda_dgelu_path {
    CUDA_DGELU_TIMED = -1,       /* each shape's fastest (the default) */
    CUDA_DGELU_BGRAD_EPILOGUE,   /* DGELU_BGRAD (without a bias gradient: DGELU) */
    CUDA_DGELU_EPILOGUE_COLSUM,  /* DGELU, then the column sum of dpre */
    CUDA_DGELU_EPILOGUE_HALVES,  /* the same over each half of the rows, then one column sum */
    CUDA_DGELU_GEMM_KERNEL,      /* the plain GEMM, then the GeLU-backward kernel */
};
/* For the tests: every later call takes path p where cuBLASLt offers it (the next one else). */
void cuda_linear_dgelu_force_path(enum cuda_dgelu_path p);
/* The forward GEMM of our own (kernels/cuda/hopper_gemm.cu, bf16 on Hopper GPUs): its variants,
 * and for the tests every later linear forward by variant v (< CUDA_HOPPER_GEMM_VARIANTS)
 * wherever it fits, never (the default), or where timed faster than cuBLASLt for the shape (what
 * MEGATRON_HOPPER_GEMM=1 sets). */
enum { CUDA_HOPPER_GEMM_VARIANTS = 3, CUDA_HOPPER_GEMM_TIMED = -1, CUDA_HOPPER_GEMM_NEVER = -2 };
void cuda_linear_force_hopper_gemm(int v);
bool cuda_linear_hopper_gemm_available(void); /* this GPU runs it */
struct cuda_gelu_paths cuda_linear_gelu_paths(void);
/* Attention's backward where ours (kernels/cuda/flash_backward.cu) applies: ours by key blocks
 * (the default), cuDNN's (MEGATRON_FLASH_BACKWARD=cudnn or 0), or ours by heads, deterministic
 * (MEGATRON_FLASH_BACKWARD=heads; what --deterministic-mode runs whatever is set here).
 * For the tests: cuda_attention_force_backward sets it for every later call, false (nothing
 * changed) where this GPU cannot run ours; cuda_attention_flash_backward_applies: whether ours
 * takes shape s on 16-bit dtype dt with attention dropout probability dropout_p (16-byte aligned
 * tensors) unless cuDNN's is set; cuda_zeroed_clear: whether the memory the backend keeps zero
 * between ops (ours by key blocks leaves its sums there) is all zero. */
enum cuda_attention_backward {
    CUDA_ATTENTION_BACKWARD_OURS,
    CUDA_ATTENTION_BACKWARD_CUDNN,
    CUDA_ATTENTION_BACKWARD_HEADS,
};
bool cuda_attention_force_backward(enum cuda_attention_backward which);
bool cuda_attention_flash_backward_applies(struct attention_shape s, enum dtype dt,
                                           float dropout_p);
bool cuda_zeroed_clear(void);
/* --deterministic-mode: from now on nothing is chosen by timing (cuBLASLt's first algorithm for
 * each GEMM and the untimed GeLU-backward path, cuDNN's first attention config, the residual
 * added in the GEMM by a size rule alone) and attention's backward is ours by heads (by key
 * blocks, and cuDNN's, it sums dQ in no fixed order). Called after cuda_init, before any op. */
void cuda_set_deterministic(void);

/* ---- checks that need no GPU ---- */

/* Builds and finalizes the cuDNN operation graphs (forward and backward) of attention shape s on
 * 16-bit dtype dt (DT_BF16 or DT_F16) with attention dropout probability dropout_p (0: none)
 * without executing them: every descriptor is validated by the cuDNN library alone. Returns true,
 * or false with the reason in err. cuda_attention_dry_run is the bf16 case without dropout. */
bool cuda_attention_dry_run_dtype(struct attention_shape s, enum dtype dt, float dropout_p,
                                  char *err, size_t errlen);
bool cuda_attention_dry_run(struct attention_shape s, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
