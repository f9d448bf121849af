/* Megatron's mixed-precision optimizer over a model's flat buffers: fp32 main parameters (a copy
 * when the model stores bf16 or fp16, the model's own buffer in fp32), fp32 main grads, loss-scale
 * handling, global-norm clipping, Adam or SGD with per-parameter weight decay (none on biases and
 * 1-D tensors), the LR/WD schedule, and the skip of a step whose gradients are not finite.
 *
 * The optimizer updates the ranges of the flat buffers it owns: all of them, or with the
 * distributed optimizer (--use-distributed-optimizer) this data-parallel rank's shard, holding
 * main parameters and moments for those ranges only. The gradient norm is summed over what each
 * rank owns (a parameter every tensor-parallel rank holds whole is counted on tp rank 0 only, the
 * last pipeline stage's replica of tied embeddings not at all) and all-reduced, as Megatron's
 * get_grad_norm_fp32 does; --log-num-zeros-in-grad counts the zeros of the same gradients after
 * clipping (count_zeros_fp32). */
#ifndef MEGATRON_OPTIM_OPTIMIZER_H
#define MEGATRON_OPTIM_OPTIMIZER_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/tensor.h"
#include "models/gpt.h"
#include "optim/adam.h"
#include "optim/scaler.h"
#include "optim/schedule.h"

struct comm_group;

enum optimizer_type { OPTIMIZER_ADAM, OPTIMIZER_SGD };

struct optimizer_options {
    enum optimizer_type type;
    struct adam_params adam;
    double sgd_momentum;
    double clip_grad;          /* --clip-grad; 0 disables clipping */
    bool count_zeros;          /* --log-num-zeros-in-grad: each step counts its gradients' zeros */
    enum dtype params_dtype;   /* DT_F32, DT_BF16 or DT_F16: how the model stores its weights */
    struct loss_scaler scaler;
    struct lr_schedule schedule;
    /* Groups the gradient norm is summed over (NULL: one rank): tensor and pipeline parallel
     * always, data parallel when each data-parallel rank owns a different shard. */
    struct comm_group *norm_tp_group, *norm_dp_group, *norm_pp_group;
};

/* A range [lo, hi) of the flat buffers. */
struct buffer_range {
    int64_t lo, hi;
};

struct optimizer {
    struct optimizer_options opt;
    struct gpt_model *model;
    int num_ranges;
    struct buffer_range *ranges; /* what this rank updates */
    int64_t owned;             /* elements in the ranges */
    float *main_params;        /* [owned] fp32 copy, or NULL when the model's weights are fp32 */
    float *exp_avg;            /* [owned] Adam's first moment, or SGD's momentum buffer */
    float *exp_avg_sq;         /* [owned] Adam only */
    int64_t step;              /* successful updates so far (Adam's bias-correction count) */
    int64_t schedule_samples;  /* the scheduler's count: advances by the global batch on each
                                  successful step only, as OptimizerParamScheduler.step is called */
    void *device_chunks;       /* CUDA backend: the owned pieces cut into chunks, one Adam launch */
    int64_t num_chunks;
    void *device_scalars;      /* CUDA backend: the step's struct cuda_step_scalars */
    double *device_params_sq;  /* CUDA backend: optimizer_params_norm's sum */
    /* Between optimizer_prepare and optimizer_finish: this step's rates and, on the CPU, its norm
     * and number of zeros. */
    double pending_lr, pending_wd, pending_norm, pending_zeros;
};

struct step_result {
    double grad_norm;          /* before clipping; NaN/Inf when the step was skipped */
    double lr;                 /* the rate after the schedule advanced (what Megatron logs) */
    double loss_scale;         /* the scale used for this iteration's backward */
    double num_zeros;          /* --log-num-zeros-in-grad: elements of the counted gradients that
                                  are zero after unscaling and clipping, over all ranks (Megatron's
                                  count_zeros_fp32); NaN when not counted or the step was skipped */
    bool skipped;
};

/* Takes the model's current weights in the given ranges as the fp32 main parameters. */
struct optimizer *optimizer_create(struct gpt_model *m, const struct optimizer_options *o,
                                   const struct buffer_range *ranges, int num_ranges);
void optimizer_free(struct optimizer *o);

/* The scale the next backward multiplies the loss by. */
double optimizer_loss_scale(const struct optimizer *o);

/* One optimizer step on the model's accumulated (and already data-parallel reduced) grads,
 * scaled by optimizer_loss_scale(): unscale, clip, update with the schedule's values before this
 * step, advance the schedule by global_batch samples, copy main parameters into the model's
 * storage precision. The caller zeroes the grads and, with the distributed optimizer, gathers
 * the updated shards (a skipped step leaves them as they were: gathering them changes nothing).
 *
 * The step comes in three parts, so the CUDA backend queues it without waiting for the GPU and a
 * CUDA graph can hold the middle one:
 *  - optimizer_prepare: this step's host values (loss scale, rates, Adam's count, clip threshold)
 *    written where the step reads them (on the GPU by a queued copy);
 *  - optimizer_queue: unscale, gradient norm (all-reduced over the norm groups), clip, update and
 *    the 16-bit copy: queued on the GPU (the skip decided there from the norm), done at once on
 *    the CPU;
 *  - optimizer_finish: once the device has run it, the host's part: the norm read (a wait on the
 *    GPU, after the trainer's own for the loss), the loss scaler, update count and schedule.
 * optimizer_step runs the three in turn. */
void optimizer_prepare(struct optimizer *o);
void optimizer_queue(struct optimizer *o);
struct step_result optimizer_finish(struct optimizer *o, int64_t global_batch);
struct step_result optimizer_step(struct optimizer *o, int64_t global_batch);

/* Megatron's --log-params-norm (training.py's calc_params_l2_norm): the L2 norm of the fp32 main
 * parameters over every rank, each parameter counted once (as the gradient norm counts it). A
 * collective over the norm groups: every rank calls it. Waits for the device. */
double optimizer_params_norm(struct optimizer *o);

#endif
