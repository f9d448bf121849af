/* The GPT family (GPT-2/GPT-3 and LLaMA-style by flags): parameters as named views into one flat
 * buffer, an activation arena for one micro batch, and the explicit forward and backward that
 * compose the layers of models/ (ARCHITECTURE.md principles 2 and 4). */
#ifndef MEGATRON_MODELS_GPT_H
#define MEGATRON_MODELS_GPT_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/tensor.h"
#include "models/layers.h"
#include "models/model_config.h"
#include "parallel/tensor_parallel.h"

/* One named parameter: Megatron-Core's name, shape, place in the flat buffers, how it starts. */
enum param_init { INIT_NORMAL, INIT_NORMAL_SCALED, INIT_ZEROS, INIT_ONES };

/* Where a run's local rows (or columns) of a parameter sit in the full logical tensor: tensor
 * parallelism gives each rank a slice, SwiGLU's fc1 two of them (its gate and up halves). */
struct param_piece {
    int64_t local_start;  /* first local index along shard_dim */
    int64_t full_start;   /* the same element's index in the full tensor */
    int64_t length;
};

struct gpt_param {
    char name[96];        /* e.g. "decoder.layers.0.self_attention.linear_qkv.weight" */
    int ndim;
    int64_t shape[2];     /* local shape on this rank */
    int64_t full_shape[2]; /* logical shape of the whole tensor (what checkpoints store) */
    int shard_dim;        /* -1: every rank holds it whole; 0: rows split; 1: columns split */
    int num_pieces;       /* pieces along shard_dim (1 or 2) */
    struct param_piece pieces[2];
    int64_t offset;       /* first element in the flat buffers */
    int64_t numel;
    int stage;            /* backward stage after which its gradient is final (gpt_batch) */
    enum param_init init;
    bool no_weight_decay; /* biases and 1-D tensors (Megatron's rule) */
    /* Tied word embeddings split over pipeline stages (Megatron's `shared_embedding`): the first
     * stage's word embeddings and the last stage's copy, whose gradients are summed over the
     * embedding group before the data-parallel reduction. */
    bool shared_embedding;
    /* The last stage's copy (Megatron's `shared`): it starts and stays equal to the first stage's
     * tensor, so the gradient norm does not count it and checkpoints do not store it. */
    bool replica;
    /* Its gradient is written whole by one weight-gradient GEMM before anything adds into it, in
     * every backward of the chunk holding it: a linear layer's weight, the output layer's (the
     * word embeddings, tied on one stage: the output layer's backward comes before the
     * embeddings'). gpt_batch.write_weight_grads. */
    bool grad_written;
};

/* The model chunks a pipeline rank holds (Megatron's virtual pipeline stages), each a run of
 * consecutive transformer layers of the whole model, see parallel/pipeline.h. pre_process: the
 * chunk starts the model (embeddings); post_process: it ends it (final norm, output layer, loss).
 * num_slots: how many micro batches' activations the chunk keeps at once (what the schedule has
 * in flight). */
struct gpt_chunk_spec {
    int64_t first_layer, num_layers;
    bool pre_process, post_process;
    int num_slots;
};

struct gpt_activations;

struct gpt_chunk {
    struct gpt_chunk_spec spec;
    struct gpt_activations **slots; /* [spec.num_slots] */
};

struct gpt_model {
    struct model_config cfg;
    enum device device;
    struct tp_group tp;       /* tensor-parallel group: size 1 without tensor parallelism */

    int num_params;
    struct gpt_param *params;
    int64_t numel;            /* total parameter elements */
    int64_t buffer_numel;     /* length of the flat buffers: numel padded (data-parallel shards) */
    float *weights;           /* fp32 weights on the model's device: what the CPU backend's forward
                                 reads (bf16/fp16 values kept as rounded fp32), and the fp32 main
                                 weights on the CUDA backend */
    void *weights_lp;         /* CUDA backend: the 16-bit copy forward and backward read; else NULL */
    enum dtype activation_dtype; /* of weights_lp and the activations: gpt_activation_dtype */
    float *grads;             /* main grads, fp32, accumulated over micro batches */
    struct tensor grad_zero_ranges; /* [n, 2] int64 on the model's device: gpt_zero_grads */
    double *loss_sum;         /* on the model's device: masked token losses summed since gpt_loss_reset */

    /* views into weights / grads; layers are indexed by their index in the whole model, and only
       this rank's are bound */
    struct embedding_params embedding, embedding_grad;
    struct layer_params *layers, *layer_grads;
    struct norm_params final_norm, final_norm_grad;
    struct tensor output_weight, output_weight_grad; /* = word embeddings when tied */

    /* the chunks of this rank with their activations, one arena per micro batch in flight, and
       the scratch every backward shares */
    int64_t batch;            /* micro batch size the arenas were sized for */
    int num_chunks;
    struct gpt_chunk *chunks;
    struct gpt_shared_scratch *scratch;
};

/* Builds the parameter table (this tensor-parallel rank's shards) and allocates weights, grads
 * and activations for micro batches of `micro_batch` sequences. Weights are initialised by
 * gpt_init_weights. tp may be NULL (one process). The flat buffers are zero-padded to a multiple
 * of buffer_multiple elements (the data-parallel size, so distributed-optimizer shards are equal). */
struct gpt_model *gpt_create(const struct model_config *cfg, int64_t micro_batch, enum device dev,
                             const struct tp_group *tp, int64_t buffer_multiple);
/* The same for a pipeline rank: only the layers, embeddings and output layer of its chunks
 * (num_chunks >= 1, in the order of their layers). With tied embeddings a last stage without the
 * embeddings holds a replica of the word embeddings as "output_layer.weight". */
struct gpt_model *gpt_create_stage(const struct model_config *cfg, int64_t micro_batch, enum device dev,
                                   const struct tp_group *tp, int64_t buffer_multiple,
                                   const struct gpt_chunk_spec *chunks, int num_chunks);
void gpt_free(struct gpt_model *m);
/* Zeroes the gradients a step adds into: all but those of the parameters marked grad_written,
 * which the step's first backward writes (gpt_batch.write_weight_grads). A step that sets it
 * calls this in place of zeroing the whole buffer. */
void gpt_zero_grads(struct gpt_model *m);

/* The dtype a model on dev computes in: fp32 on the CPU backend (bf16/fp16 weights are kept there
 * as rounded fp32 values); on the CUDA backend fp16 with --fp16, else bf16. */
enum dtype gpt_activation_dtype(const struct model_config *cfg, enum device dev);

/* Replaces every weight by host[0 .. buffer_numel) (fp32, the flat layout): copied to the device
 * and, on the CUDA backend, converted into the 16-bit compute copy too. */
void gpt_set_weights(struct gpt_model *m, const float *host);
/* After the fp32 weights in [lo, hi) changed on the device: refresh the 16-bit compute copy. */
void gpt_weights_changed(struct gpt_model *m, int64_t lo, int64_t hi);

/* Megatron's init from the counter-based RNG keyed by (seed, parameter name, element):
 * normal(0, std) for weights, std/sqrt(2 x layers) for the layers' output projections,
 * zeros for biases, ones for norm weights. */
void gpt_init_weights(struct gpt_model *m);

const struct gpt_param *gpt_find_param(const struct gpt_model *m, const char *name);
/* The parameter table of the whole model (every layer, embeddings and output layer, one
 * tensor-parallel rank), in the model's order: the tensors a checkpoint holds whatever the layout.
 * *count receives its length; free() it. */
struct gpt_param *gpt_whole_params(const struct model_config *cfg, int *count);
const struct gpt_param *gpt_params_find(const struct gpt_param *params, int count, const char *name);
/* The name under which a checkpoint stores p: the word embeddings for the last stage's replica. */
const char *gpt_param_stored_name(const struct gpt_param *p);

/* The index in the full logical tensor (row-major over full_shape) of local element `local`. */
int64_t gpt_param_full_index(const struct gpt_param *p, int64_t local);

/* One micro batch. tokens, labels, positions: int32 [B*T] (B <= the arena's micro batch);
 * loss_mask: fp32 [B*T]. dropout_stream identifies the (iteration, micro batch) and
 * sample_offset is the index of the batch's first sequence within the global batch, so dropout
 * masks do not depend on how the batch is split. Returns the sum of loss_mask-weighted token
 * losses; *num_tokens receives sum(loss_mask). */
struct gpt_batch {
    int64_t batch;
    const int32_t *tokens;
    const int32_t *labels;
    const int32_t *positions;
    const float *loss_mask;
    uint64_t dropout_stream;
    int64_t sample_offset;
    bool training;            /* false: no dropout (evaluation) */
    /* A training step's loss gradient, known at the forward: d loss / d token loss = loss_mask x
     * loss_scale / (tokens x loss_divisor) (tokens: the micro batch's sum of loss_mask, 1 if 0;
     * with per_token_loss 1, loss_divisor then being the global batch's tokens).
     * With loss_divisor > 0 a chunk with post_process computes the logits' gradient in its
     * forward (one pass over the logits) and its backward starts from it; 0: the backward does. */
    double loss_scale, loss_divisor;
    bool per_token_loss;
    /* On the GPU, a training step's inputs already in device memory (the trainer uploads the whole
     * iteration before the step; NULL: the forward copies the host arrays above): the same arrays,
     * and the loss gradient's factor gpt_loss_grad_factor(loss_scale, tokens, loss_divisor), read
     * there instead of computed at the forward. Nothing the host computes then reaches a launch,
     * so a CUDA graph of the step replays with the next iteration's data. */
    const int32_t *device_tokens, *device_labels, *device_positions;
    const float *device_loss_mask, *device_loss_grad_factor;
    const uint64_t *device_dropout_stream; /* dropout_stream, in device memory */
    /* Called during gpt_backward when every gradient of a stage is final: stage num_layers after
     * the output layer and final norm, then l after layer l, then -1 after the embeddings. */
    void (*on_grads_ready)(void *ctx, int stage);
    void *hook_ctx;
    /* The backward writes the gradients of the parameters marked grad_written (the linear
     * layers' weights) instead of adding into them: a step's first backward of each chunk, so
     * that the step zeroes only the rest (gpt_zero_grads). false: every gradient is added. */
    bool write_weight_grads;
};

/* The whole model (one chunk holding every layer, one slot). */
double gpt_forward(struct gpt_model *m, const struct gpt_batch *b, double *num_tokens);

/* Backward of the last forward with loss = loss_scale x sum(loss_mask x token loss): accumulates
 * parameter gradients into m->grads. */
void gpt_backward(struct gpt_model *m, const struct gpt_batch *b, float loss_scale);

/* Logits of the last forward, [B*T, padded_vocab] (valid until the next backward). */
struct tensor gpt_logits(const struct gpt_model *m);

/* One pipeline stage: the forward of micro batch b through chunk `chunk`, keeping its activations
 * in slot `slot` until the backward of the same (chunk, slot). A chunk without pre_process reads
 * its input from gpt_chunk_input (received there before). A chunk with post_process adds the
 * masked sum of its token losses to the model's loss sum, on the device (no host
 * synchronisation), and returns sum(loss_mask) (the micro batch's tokens); others return 0. */
double gpt_forward_chunk(struct gpt_model *m, int chunk, int slot, const struct gpt_batch *b);
/* The masked loss summed on the device by every post_process forward since gpt_loss_reset (queued,
 * no wait); gpt_loss_read waits for the device and returns it. */
void gpt_loss_reset(struct gpt_model *m);
double gpt_loss_read(struct gpt_model *m);
/* d loss / d token loss of a training micro batch with this many tokens (sum of its loss_mask; 1
 * when 0): loss_scale / (tokens x loss_divisor), rounded to fp32 once. */
float gpt_loss_grad_factor(double loss_scale, double tokens, double loss_divisor);
/* sum(loss_mask[0..n)) in index order, in double: a micro batch's tokens. */
double gpt_batch_tokens(const float *loss_mask, int64_t n);
/* Its backward: a chunk with post_process starts from the loss (scaled by loss_scale), others
 * from the gradient of their output, received in gpt_chunk_grad before. A chunk without
 * pre_process leaves the gradient of its input in gpt_chunk_grad. */
void gpt_backward_chunk(struct gpt_model *m, int chunk, int slot, const struct gpt_batch *b, float loss_scale);
/* The hidden states [rows, hidden] crossing stage boundaries (rows: this rank's rows of the micro
 * batch, B*T / TP with sequence parallelism): the chunk's input, its output, and the gradient
 * buffer (the output's gradient before the backward, the input's after it). */
struct tensor gpt_chunk_input(const struct gpt_model *m, int chunk, int slot);
struct tensor gpt_chunk_output(const struct gpt_model *m, int chunk, int slot);
struct tensor gpt_chunk_grad(const struct gpt_model *m, int chunk, int slot);

#endif
