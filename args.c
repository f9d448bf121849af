/* The flag table and everything that reads it: parsing, --help, the config dump, and the
 * validation Megatron-LM does in validate_args (megatron/training/arguments.py) plus the checks
 * its OptimizerParamScheduler and TransformerConfig make at start-up. */
#include "args.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "parallel/pipeline.h"
#include "util/error.h"

enum arg_type {
    T_INT,
    T_FLOAT,
    T_BOOL,       /* store_true: default False */
    T_BOOL_FALSE, /* store_false: default True, the flag clears it */
    T_STR,
    T_CHOICE,
    T_LIST,  /* nargs='*' (or '+' with F_NONEMPTY): char ** + int count */
    T_DTYPE, /* derived params_dtype */
};

enum {
    F_UNSUPPORTED = 1, /* a Megatron flag we do not implement: rejected by name, no field */
    F_LO_OPEN = 2,     /* value must be > lo instead of >= lo */
    F_HI_OPEN = 4,     /* value must be < hi instead of <= hi */
    F_NONEMPTY = 8,    /* list: nargs='+' */
};

#define M_PRETRAIN (1u << CMD_PRETRAIN)
#define M_PREPROCESS (1u << CMD_PREPROCESS)
#define M_SAMPLES (1u << CMD_SAMPLES)
#define M_CONVERT (1u << CMD_CONVERT)
#define M_PLAN (1u << CMD_PLAN)
#define M_TRAIN (M_PRETRAIN | M_SAMPLES | M_PLAN) /* samples and plan take every pretrain flag */
#define M_TOK (M_TRAIN | M_PREPROCESS)
#define M_ALL (M_TRAIN | M_PREPROCESS | M_CONVERT)

struct arg_spec {
    const char *name;  /* "--hidden-size"; NULL for a derived field (dumped, not parsed) */
    const char *alias; /* a second spelling Megatron accepts, or NULL */
    const char *dest;  /* Megatron's argparse dest = our field name */
    enum arg_type type;
    const char *def;   /* default as text; NULL means None (-1, NAN, NULL) */
    unsigned cmds;     /* M_* mask of the subcommands that take it */
    const char *group; /* Megatron's argument-group title */
    double lo, hi;     /* allowed range of a number; NAN = unbounded */
    unsigned flags;
    const char *choices; /* "a|b|c" */
    size_t offset, count_offset;
    const char *help;
};

#define OFF(f) offsetof(struct config, f)
#define NO NAN
/* One line per flag: name, field, default, subcommands, group, range, help. */
#define INT(n, f, d, c, g, lo, hi, h) {n, NULL, #f, T_INT, d, c, g, lo, hi, 0, NULL, OFF(f), 0, h}
#define FLT(n, f, d, c, g, lo, hi, fl, h) {n, NULL, #f, T_FLOAT, d, c, g, lo, hi, fl, NULL, OFF(f), 0, h}
#define BOOL(n, f, c, g, h) {n, NULL, #f, T_BOOL, NULL, c, g, NO, NO, 0, NULL, OFF(f), 0, h}
#define STR(n, f, c, g, h) {n, NULL, #f, T_STR, NULL, c, g, NO, NO, 0, NULL, OFF(f), 0, h}
#define CHOICE(n, f, d, ch, c, g, h) {n, NULL, #f, T_CHOICE, d, c, g, NO, NO, 0, ch, OFF(f), 0, h}
#define NOT_YET(n, t, c, g, h) {n, NULL, NULL, t, NULL, c, g, NO, NO, F_UNSUPPORTED, NULL, 0, 0, h}
#define DERIVED(f, t) {NULL, NULL, #f, t, NULL, 0, NULL, NO, NO, 0, NULL, OFF(f), 0, NULL}

#define G_NET "network size"
#define G_REG "regularization"
#define G_TRAIN "training"
#define G_INIT "initialization"
#define G_LR "learning rate"
#define G_CKPT "checkpointing"
#define G_MP "mixed precision"
#define G_DIST "distributed"
#define G_VAL "validation"
#define G_DATA "data and dataloader"
#define G_TOK "tokenizer"
#define G_MOE "moe"
#define G_LOG "logging"
#define G_TE "Transformer-Engine"
#define G_IN "input data"
#define G_TOKPROC "tokenization process"
#define G_OUT "output data"
#define G_RUN "runtime"
#define G_SAMPLES "samples"
#define G_CONVERT "convert"
#define G_OURS "this implementation"

/* Megatron's --tokenizer-type choices (arguments.py _add_tokenizer_args). */
#define TOKENIZERS                                                                                 \
    "BertWordPieceLowerCase|BertWordPieceCase|GPT2BPETokenizer|SentencePieceTokenizer|"           \
    "GPTSentencePieceTokenizer|HuggingFaceTokenizer|Llama2Tokenizer|TikTokenizer|"                \
    "MultimodalTokenizer|NullTokenizer|NullMultimodalTokenizer|SFTTokenizer"

static const struct arg_spec TABLE[] = {
    /* network size (_add_network_size_args) */
    INT("--num-layers", num_layers, NULL, M_TRAIN, G_NET, 1, NO, "Number of transformer layers."),
    INT("--hidden-size", hidden_size, NULL, M_TRAIN, G_NET, 1, NO, "Transformer hidden size."),
    INT("--ffn-hidden-size", ffn_hidden_size, NULL, M_TRAIN, G_NET, 1, NO,
        "Transformer Feed-Forward Network hidden size. This is set to 4*hidden-size if not provided "
        "(int(4*hidden-size*2/3/64)*64 with --swiglu)."),
    INT("--num-attention-heads", num_attention_heads, NULL, M_TRAIN, G_NET, 1, NO,
        "Number of transformer attention heads."),
    NOT_YET("--attention-backend", T_CHOICE, M_TRAIN, G_NET, "Attention backend to use (flash,fused,unfused,local,auto)."),
    INT("--kv-channels", kv_channels, NULL, M_TRAIN, G_NET, 1, NO,
        "Projection weights dimension in multi-head attention. This is set to hidden-size // "
        "num-attention-heads if not provided."),
    BOOL("--group-query-attention", group_query_attention, M_TRAIN, G_NET, "Use group-query attention."),
    INT("--num-query-groups", num_query_groups, "1", M_TRAIN, G_NET, 1, NO,
        "Number of query groups (key/value heads) with --group-query-attention."),
    INT("--max-position-embeddings", max_position_embeddings, NULL, M_TRAIN, G_NET, 1, NO,
        "Maximum number of position embeddings to use. This is the size of position embedding."),
    CHOICE("--position-embedding-type", position_embedding_type, "learned_absolute",
           "learned_absolute|rope|yarn|mrope|relative|none", M_TRAIN, G_NET, "Position embedding type."),
    BOOL("--use-rotary-position-embeddings", use_rotary_position_embeddings, M_TRAIN, G_NET,
         "Use rotary positional embeddings or not. Deprecated: use --position-embedding-type"),
    INT("--rotary-base", rotary_base, "10000", M_TRAIN, G_NET, 1, NO,
        "Base to use for rotary positional embeddings."),
    FLT("--rotary-percent", rotary_percent, "1.0", M_TRAIN, G_NET, 0, 1, F_LO_OPEN,
        "Percent of rotary dimension to use."),
    NOT_YET("--rotary-interleaved", T_BOOL, M_TRAIN, G_NET, "Use interleaved rotary embedding."),
    NOT_YET("--use-rope-scaling", T_BOOL, M_TRAIN, G_NET, "Apply rope scaling as used in llama3.x"),
    NOT_YET("--rope-scaling-factor", T_FLOAT, M_TRAIN, G_NET, "Rope scaling factor in llama3.x models"),
    NOT_YET("--no-position-embedding", T_BOOL, M_TRAIN, G_NET, "Disable position embedding. Deprecated."),
    INT("--make-vocab-size-divisible-by", make_vocab_size_divisible_by, "128", M_TRAIN, G_NET, 1, NO,
        "Pad the vocab size to be divisible by this value (times the tensor-parallel size)."),
    CHOICE("--normalization", normalization, "LayerNorm", "LayerNorm|RMSNorm", M_TRAIN, G_NET,
           "Which normalization technique to use."),
    FLT("--norm-epsilon", norm_epsilon, "1e-5", M_TRAIN, G_NET, 0, NO, F_LO_OPEN,
        "Epsilon for layer norm and RMS norm."),
    NOT_YET("--apply-layernorm-1p", T_BOOL, M_TRAIN, G_NET, "Adjust LayerNorm weights such that they are centered around zero."),
    NOT_YET("--apply-residual-connection-post-layernorm", T_BOOL, M_TRAIN, G_NET, "Use original BERT residual connection ordering."),
    BOOL("--openai-gelu", openai_gelu, M_TRAIN, G_NET, "Use OpenAIs GeLU implementation (the tanh approximation)."),
    NOT_YET("--squared-relu", T_BOOL, M_TRAIN, G_NET, "Use squared relu activation instead of default gelu"),
    BOOL("--swiglu", swiglu, M_TRAIN, G_NET, "Use gated linear units and SiLU activation instead of default gelu"),
    NOT_YET("--quick-geglu", T_BOOL, M_TRAIN, G_NET, "Use quick geglu activation instead of default gelu"),
    BOOL("--untie-embeddings-and-output-weights", untie_embeddings_and_output_weights, M_TRAIN, G_NET,
         "Untie embeddings and output weights."),
    NOT_YET("--multi-latent-attention", T_BOOL, M_TRAIN, G_NET, "Use multi-latent attention for model."),
    NOT_YET("--qk-layernorm", T_BOOL, M_TRAIN, G_NET, "Whether to layer normalize the q and k attention embeddings."),
    NOT_YET("--mtp-num-layers", T_INT, M_TRAIN, G_NET, "Number of Multi-Token Prediction (MTP) Layers."),
    NOT_YET("--encoder-num-layers", T_INT, M_TRAIN, G_NET, "Number of encoder transformer layers."),
    NOT_YET("--decoder-num-layers", T_INT, M_TRAIN, G_NET, "Number of decoder transformer layers."),

    /* regularization (_add_regularization_args) */
    FLT("--attention-dropout", attention_dropout, "0.1", M_TRAIN, G_REG, 0, 1, F_HI_OPEN,
        "Post attention dropout probability."),
    FLT("--hidden-dropout", hidden_dropout, "0.1", M_TRAIN, G_REG, 0, 1, F_HI_OPEN,
        "Dropout probability for hidden state transformer."),
    FLT("--weight-decay", weight_decay, "0.01", M_TRAIN, G_REG, 0, NO, 0,
        "Weight decay coefficient for L2 regularization."),
    FLT("--start-weight-decay", start_weight_decay, NULL, M_TRAIN, G_REG, 0, NO, 0,
        "Initial weight decay coefficient for L2 regularization."),
    FLT("--end-weight-decay", end_weight_decay, NULL, M_TRAIN, G_REG, 0, NO, 0,
        "End of run weight decay coefficient for L2 regularization."),
    CHOICE("--weight-decay-incr-style", weight_decay_incr_style, "constant", "constant|linear|cosine",
           M_TRAIN, G_REG, "Weight decay increment function."),
    FLT("--clip-grad", clip_grad, "1.0", M_TRAIN, G_REG, 0, NO, 0, "Gradient clipping based on global L2 norm."),
    FLT("--adam-beta1", adam_beta1, "0.9", M_TRAIN, G_REG, 0, 1, F_HI_OPEN,
        "First coefficient for computing running averages of gradient and its square"),
    FLT("--adam-beta2", adam_beta2, "0.999", M_TRAIN, G_REG, 0, 1, F_HI_OPEN,
        "Second coefficient for computing running averages of gradient and its square"),
    FLT("--adam-eps", adam_eps, "1e-08", M_TRAIN, G_REG, 0, NO, F_LO_OPEN,
        "Term added to the denominator to improve numerical stability"),
    FLT("--sgd-momentum", sgd_momentum, "0.9", M_TRAIN, G_REG, 0, 1, 0, "Momentum factor for sgd"),

    /* training (_add_training_args) */
    INT("--micro-batch-size", micro_batch_size, NULL, M_TRAIN, G_TRAIN, 1, NO,
        "Batch size per model instance (local batch size). Global batch size is local batch size "
        "times data parallel size times number of micro batches."),
    INT("--global-batch-size", global_batch_size, NULL, M_TRAIN, G_TRAIN, 1, NO,
        "Training batch size. If set, it should be a multiple of micro-batch-size times "
        "data-parallel-size. If this value is None, then use micro-batch-size * data-parallel-size."),
    NOT_YET("--rampup-batch-size", T_LIST, M_TRAIN, G_TRAIN, "Batch size ramp up with the following values: start, increment, ramp-up samples."),
    NOT_YET("--recompute-activations", T_BOOL, M_TRAIN, G_TRAIN, "recompute activation to allow for training with larger models, sequences, and batch sizes."),
    NOT_YET("--recompute-granularity", T_CHOICE, M_TRAIN, G_TRAIN, "Checkpoint activations at granularity full or selective."),
    NOT_YET("--recompute-method", T_CHOICE, M_TRAIN, G_TRAIN, "uniform or block recomputation."),
    NOT_YET("--recompute-num-layers", T_INT, M_TRAIN, G_TRAIN, "Layers per recompute unit (uniform) or per stage (block)."),
    NOT_YET("--distribute-saved-activations", T_BOOL, M_TRAIN, G_TRAIN, "Distribute recomputed activations across model parallel group."),
    INT("--train-iters", train_iters, NULL, M_TRAIN, G_TRAIN, 1, NO,
        "Total number of iterations to train over all training runs. Note that either train-iters or "
        "train-samples should be provided."),
    INT("--train-samples", train_samples, NULL, M_TRAIN, G_TRAIN, 1, NO,
        "Total number of samples to train over all training runs. Note that either train-iters or "
        "train-samples should be provided."),
    INT("--log-interval", log_interval, "100", M_TRAIN, G_TRAIN, 1, NO, "Report loss and timing interval."),
    INT("--exit-interval", exit_interval, NULL, M_TRAIN, G_TRAIN, 1, NO,
        "Exit the program after the iteration is divisible by this value."),
    INT("--exit-duration-in-mins", exit_duration_in_mins, NULL, M_TRAIN, G_TRAIN, 1, NO,
        "Exit the program after this many minutes."),
    BOOL("--exit-signal-handler", exit_signal_handler, M_TRAIN, G_TRAIN,
         "Dynamically save the checkpoint and shutdown the training if SIGTERM is received"),
    NOT_YET("--tensorboard-dir", T_STR, M_TRAIN, G_TRAIN, "Write TensorBoard logs to this directory."),
    NOT_YET("--use-flash-attn", T_BOOL, M_TRAIN, G_TRAIN, "use FlashAttention implementation of attention."),
    {"--disable-bias-linear", NULL, "add_bias_linear", T_BOOL_FALSE, NULL, M_TRAIN, G_TRAIN, NO, NO, 0, NULL,
     OFF(add_bias_linear), 0, "Disable bias in the linear layers"},
    NOT_YET("--add-qkv-bias", T_BOOL, M_TRAIN, G_TRAIN, "Enable bias only in the QKV linear layers"),
    CHOICE("--optimizer", optimizer, "adam", "adam|sgd|muon|dist_muon|lion|soap|adaptive_muon", M_TRAIN,
           G_TRAIN, "Optimizer function"),
    BOOL("--sequence-parallel", sequence_parallel, M_TRAIN, G_TRAIN, "Enable sequence parallel optimization."),
    NOT_YET("--tp-comm-overlap", T_BOOL, M_TRAIN, G_TRAIN, "Enables the overlap of Tensor parallel communication and GEMM kernels."),
    NOT_YET("--calculate-per-token-loss", T_BOOL, M_TRAIN, G_TRAIN, "Scale cross entropy loss by the number of non-padded tokens in the global batch."),
    NOT_YET("--profile", T_BOOL, M_TRAIN, G_TRAIN, "Enable nsys profiling."),

    /* initialization (_add_initialization_args) */
    INT("--seed", seed, "1234", M_TRAIN, G_INIT, 0, 4294967295.0, "Random seed used for python, numpy, pytorch, and cuda."),
    FLT("--init-method-std", init_method_std, "0.02", M_TRAIN, G_INIT, 0, NO, 0,
        "Standard deviation of the zero mean normal distribution used for weight initialization."),
    NOT_YET("--embedding-init-method-std", T_FLOAT, M_TRAIN, G_INIT, "Standard deviation for embedding weight initialization."),
    NOT_YET("--init-method-xavier-uniform", T_BOOL, M_TRAIN, G_INIT, "Enable Xavier uniform parameter initialization"),
    NOT_YET("--data-parallel-random-init", T_BOOL, M_TRAIN, G_INIT, "Enable random initialization of params across data parallel ranks"),

    /* learning rate (_add_learning_rate_args) */
    FLT("--lr", lr, NULL, M_TRAIN, G_LR, 0, NO, 0,
        "Initial learning rate. Depending on decay style and initial warmup, the learning rate at each "
        "iteration would be different."),
    CHOICE("--lr-decay-style", lr_decay_style, "linear", "constant|linear|cosine|inverse-square-root|WSD", M_TRAIN,
           G_LR, "Learning rate decay function."),
    CHOICE("--lr-wsd-decay-style", lr_wsd_decay_style, "exponential", "exponential|linear|cosine|minus_sqrt",
           M_TRAIN, G_LR, "Decay style for the annealing phase of WSD"),
    INT("--lr-decay-iters", lr_decay_iters, NULL, M_TRAIN, G_LR, 1, NO,
        "number of iterations to decay learning rate over, If None defaults to `--train-iters`"),
    INT("--lr-decay-samples", lr_decay_samples, NULL, M_TRAIN, G_LR, 1, NO,
        "number of samples to decay learning rate over, If None defaults to `--train-samples`"),
    INT("--lr-wsd-decay-samples", lr_wsd_decay_samples, NULL, M_TRAIN, G_LR, 1, NO,
        "number of samples for the annealing phase in the wsd schedule"),
    INT("--lr-wsd-decay-iters", lr_wsd_decay_iters, NULL, M_TRAIN, G_LR, 1, NO,
        "number of iterations for the annealing phase in the wsd schedule"),
    FLT("--lr-warmup-fraction", lr_warmup_fraction, NULL, M_TRAIN, G_LR, 0, 1, F_HI_OPEN,
        "fraction of lr-warmup-(iters/samples) to use for warmup (as a float)"),
    INT("--lr-warmup-iters", lr_warmup_iters, "0", M_TRAIN, G_LR, 0, NO,
        "number of iterations to linearly warmup learning rate over."),
    INT("--lr-warmup-samples", lr_warmup_samples, "0", M_TRAIN, G_LR, 0, NO,
        "number of samples to linearly warmup learning rate over."),
    FLT("--lr-warmup-init", lr_warmup_init, "0.0", M_TRAIN, G_LR, 0, NO, 0,
        "Initial value for learning rate warmup. The scheduler starts warmup from this value."),
    FLT("--min-lr", min_lr, "0.0", M_TRAIN, G_LR, 0, NO, 0,
        "Minimum value for learning rate. The scheduler clip values below this threshold."),
    NOT_YET("--decoupled-lr", T_FLOAT, M_TRAIN, G_LR, "Separate learning rate for the input and output layer"),
    NOT_YET("--override-opt_param-scheduler", T_BOOL, M_TRAIN, G_LR, "Reset the values of the scheduler from input arguments."),
    NOT_YET("--use-checkpoint-opt_param-scheduler", T_BOOL, M_TRAIN, G_LR, "Use checkpoint to set the values of the scheduler."),

    /* checkpointing (_add_checkpointing_args) */
    STR("--save", save, M_PRETRAIN | M_PLAN | M_SAMPLES | M_CONVERT, G_CKPT, "Output directory to save checkpoints to."),
    {"--save-interval", "--persistent-save-interval", "save_interval", T_INT, NULL, M_TRAIN, G_CKPT, 1, NO, 0,
     NULL, OFF(save_interval), 0, "Number of iterations between persistent checkpoint saves."},
    BOOL("--no-save-optim", no_save_optim, M_TRAIN, G_CKPT, "Do not save current optimizer."),
    BOOL("--no-save-rng", no_save_rng, M_TRAIN, G_CKPT, "Do not save current rng state."),
    STR("--load", load, M_PRETRAIN | M_PLAN | M_SAMPLES | M_CONVERT, G_CKPT, "Directory containing a model checkpoint."),
    BOOL("--no-load-optim", no_load_optim, M_TRAIN, G_CKPT, "Do not load optimizer when loading checkpoint."),
    BOOL("--no-load-rng", no_load_rng, M_TRAIN, G_CKPT, "Do not load rng state when loading checkpoint."),
    BOOL("--finetune", finetune, M_TRAIN, G_CKPT,
         "Load model for finetuning. Do not load optimizer or rng state from checkpoint and set iteration to 0."),
    NOT_YET("--ckpt-format", T_CHOICE, M_TRAIN, G_CKPT, "Checkpoint format to use (torch, torch_dist, torch_dcp, fsdp_dtensor)."),
    NOT_YET("--async-save", T_BOOL, M_TRAIN, G_CKPT, "Apply async checkpointing save."),
    NOT_YET("--use-checkpoint-args", T_BOOL, M_TRAIN, G_CKPT, "Override model-related command-line arguments with arguments from checkpoint"),
    NOT_YET("--pretrained-checkpoint", T_STR, M_TRAIN, G_CKPT, "Directory containing a pretrained model checkpoint for finetuning."),
    NOT_YET("--save-retain-interval", T_INT, M_TRAIN, G_CKPT, "Number of iterations between retained checkpoints."),
    NOT_YET("--non-persistent-save-interval", T_INT, M_TRAIN, G_CKPT, "Number of iterations between non-persistent saves."),
    NOT_YET("--exit-on-missing-checkpoint", T_BOOL, M_TRAIN, G_CKPT, "Exit if --load is set but no checkpoint is found."),

    /* mixed precision (_add_mixed_precision_args) */
    BOOL("--fp16", fp16, M_TRAIN, G_MP, "Run model in fp16 mode."),
    BOOL("--bf16", bf16, M_TRAIN, G_MP, "Run model in bfloat16 mode."),
    NOT_YET("--grad-reduce-in-bf16", T_BOOL, M_TRAIN, G_MP, "Reduce gradients in bfloat16."),
    FLT("--loss-scale", loss_scale, NULL, M_TRAIN, G_MP, 0, NO, F_LO_OPEN,
        "Static loss scaling, positive power of 2 values can improve fp16 convergence. If None, dynamic "
        "loss scaling is used."),
    FLT("--initial-loss-scale", initial_loss_scale, "4294967296", M_TRAIN, G_MP, 0, NO, F_LO_OPEN,
        "Initial loss-scale for dynamic loss scaling."),
    FLT("--min-loss-scale", min_loss_scale, "1.0", M_TRAIN, G_MP, 0, NO, F_LO_OPEN,
        "Minimum loss scale for dynamic loss scaling."),
    FLT("--loss-scale-window", loss_scale_window, "1000", M_TRAIN, G_MP, 1, NO, 0,
        "Window over which to raise/lower dynamic scale."),
    INT("--hysteresis", hysteresis, "2", M_TRAIN, G_MP, 1, NO, "hysteresis for dynamic loss scaling"),
    NOT_YET("--fp32-residual-connection", T_BOOL, M_TRAIN, G_MP, "Move residual connections to fp32."),
    NOT_YET("--apply-query-key-layer-scaling", T_BOOL, M_TRAIN, G_MP, "Scale Q * K^T by 1 / layer-number."),
    NOT_YET("--attention-softmax-in-fp32", T_BOOL, M_TRAIN, G_MP, "Run attention masking and softmax in fp32."),
    BOOL("--accumulate-allreduce-grads-in-fp32", accumulate_allreduce_grads_in_fp32, M_TRAIN, G_MP,
         "Gradient accumulation and all-reduce in fp32 (always on with --bf16)."),
    NOT_YET("--fp16-lm-cross-entropy", T_BOOL, M_TRAIN, G_MP, "Move the cross entropy unreduced loss calculation for lm head to fp16."),

    /* distributed (_add_distributed_args) */
    INT("--tensor-model-parallel-size", tensor_model_parallel_size, "1", M_TRAIN, G_DIST, 1, NO,
        "Degree of tensor model parallelism."),
    INT("--pipeline-model-parallel-size", pipeline_model_parallel_size, "1", M_TRAIN, G_DIST, 1, NO,
        "Degree of pipeline model parallelism."),
    INT("--decoder-first-pipeline-num-layers", decoder_first_pipeline_num_layers, NULL, M_TRAIN, G_DIST, 1, NO,
        "The number of transformer layers on the first pipeline stage of the decoder. Default None is even split of "
        "transformer layers across all pipeline stages"),
    INT("--decoder-last-pipeline-num-layers", decoder_last_pipeline_num_layers, NULL, M_TRAIN, G_DIST, 1, NO,
        "The number of transformer layers on the last pipeline stage of the decoder. Default None is even split of "
        "transformer layers across all pipeline stages"),
    NOT_YET("--pipeline-model-parallel-layout", T_STR, M_TRAIN, G_DIST, "A string that describes a custom pipeline model parallel layout."),
    INT("--num-layers-per-virtual-pipeline-stage", num_layers_per_virtual_pipeline_stage, NULL, M_TRAIN, G_DIST, 1,
        NO, "Number of layers per virtual pipeline stage"),
    INT("--num-virtual-stages-per-pipeline-rank", num_virtual_stages_per_pipeline_rank, NULL, M_TRAIN, G_DIST, 1,
        NO, "Number of virtual pipeline stages per pipeline parallelism rank"),
    INT("--microbatch-group-size-per-virtual-pipeline-stage", microbatch_group_size_per_vp_stage, NULL, M_TRAIN,
        G_DIST, 1, NO, "Number of contiguous microbatches per virtual pipeline stage (default: the pipeline size)"),
    {"--no-overlap-p2p-communication", NULL, "overlap_p2p_comm", T_BOOL_FALSE, NULL, M_TRAIN, G_DIST, NO, NO, 0, NULL,
     OFF(overlap_p2p_comm), 0, "overlap pipeline parallel communication with forward and backward chunks in 1F1B"},
    BOOL("--overlap-grad-reduce", overlap_grad_reduce, M_TRAIN, G_DIST, "If set, overlap DDP grad reduce."),
    INT("--ddp-bucket-size", ddp_bucket_size, NULL, M_TRAIN, G_DIST, 1, NO, "Bucket size for data-parallel communication"),
    BOOL("--overlap-param-gather", overlap_param_gather, M_TRAIN, G_DIST,
         "If set, overlap param all-gather in distributed optimizer."),
    BOOL("--use-distributed-optimizer", use_distributed_optimizer, M_TRAIN, G_DIST, "Use distributed optimizer."),
    NOT_YET("--use-torch-fsdp2", T_BOOL, M_TRAIN, G_DIST, "Use the torch FSDP2 implementation."),
    NOT_YET("--use-megatron-fsdp", T_BOOL, M_TRAIN, G_DIST, "Use the Megatron FSDP code path in DDP."),
    INT("--context-parallel-size", context_parallel_size, "1", M_TRAIN, G_DIST, 1, NO, "Degree of context parallelism."),
    BOOL("--use-tp-pp-dp-mapping", use_tp_pp_dp_mapping, M_TRAIN, G_DIST,
         "If set, distributed ranks are ordered tp-cp-ep-pp-dp instead of the default tp-cp-ep-dp-pp."),
    INT("--distributed-timeout-minutes", distributed_timeout_minutes, "10", M_TRAIN, G_DIST, 1, NO,
        "Timeout minutes for collectives: a rank that stops answering ends the job with an error naming the group."),
    NOT_YET("--cp-comm-type", T_LIST, M_TRAIN, G_DIST, "Inter-gpu communication type for context parallelism."),

    /* validation (_add_validation_args; eval-interval's default is None since ValidationConfig) */
    INT("--eval-iters", eval_iters, "100", M_TRAIN, G_VAL, 0, NO,
        "Number of iterations to run for evaluation validation/test for."),
    INT("--eval-interval", eval_interval, NULL, M_TRAIN, G_VAL, 1, NO,
        "Interval between running evaluation on validation set. If not set, evaluation will not run "
        "during training."),
    BOOL("--skip-train", skip_train, M_TRAIN, G_VAL,
         "If set, bypass the training loop, optionally do evaluation for validation/test, and exit."),
    NOT_YET("--full-validation", T_BOOL, M_TRAIN, G_VAL, "Use the full validation dataset(s) each time validation occurs."),
    NOT_YET("--multiple-validation-sets", T_BOOL, M_TRAIN, G_VAL, "Evaluate each validation dataset independently."),

    /* data and dataloader (_add_data_args) */
    {"--data-path", NULL, "data_path", T_LIST, NULL, M_TRAIN, G_DATA, NO, NO, 0, NULL, OFF(data_path),
     OFF(data_path_count),
     "The weight and prefix list for a set of train, validation, and test datasets which split according to "
     "--split: a single prefix, weight prefix pairs, or a list of prefixes."},
    STR("--split", split, M_TRAIN, G_DATA,
        "Comma-separated list of proportions for training, validation, and test split. For example the "
        "split `90,5,5` will use 90% of data for training, 5% for validation and 5% for test."),
    {"--train-data-path", NULL, "train_data_path", T_LIST, NULL, M_TRAIN, G_DATA, NO, NO, 0, NULL,
     OFF(train_data_path), OFF(train_data_path_count), "The weight and prefix list for an independent train dataset."},
    {"--valid-data-path", NULL, "valid_data_path", T_LIST, NULL, M_TRAIN, G_DATA, NO, NO, 0, NULL,
     OFF(valid_data_path), OFF(valid_data_path_count),
     "The weight and prefix list for an independent validation dataset."},
    {"--test-data-path", NULL, "test_data_path", T_LIST, NULL, M_TRAIN, G_DATA, NO, NO, 0, NULL,
     OFF(test_data_path), OFF(test_data_path_count), "The weight and prefix list for an independent test dataset."},
    NOT_YET("--data-args-path", T_STR, M_TRAIN, G_DATA, "Path to data-args."),
    STR("--data-cache-path", data_cache_path, M_TRAIN, G_DATA, "Path to a directory to hold cached index files."),
    BOOL("--mock-data", mock_data, M_TRAIN, G_DATA,
         "Skip data loading and validation and opt for artificial generation of mock data."),
    INT("--seq-length", seq_length, NULL, M_TRAIN, G_DATA, 1, NO, "Maximum sequence length to process."),
    NOT_YET("--encoder-seq-length", T_INT, M_TRAIN, G_DATA, "Maximum encoder sequence length to process."),
    INT("--num-workers", num_workers, "2", M_TRAIN, G_DATA, 0, NO, "Dataloader number of workers."),
    BOOL("--reset-position-ids", reset_position_ids, M_TRAIN, G_DATA, "Reset posistion ids after end-of-document token."),
    BOOL("--reset-attention-mask", reset_attention_mask, M_TRAIN, G_DATA,
         "Reset self attention mask after end-of-document token."),
    BOOL("--eod-mask-loss", eod_mask_loss, M_TRAIN, G_DATA, "Mask loss for the end of document tokens."),
    FLT("--mid-level-dataset-surplus", mid_level_dataset_surplus, "0.005", M_TRAIN, G_DATA, 0, NO, 0,
        "The sample surplus to build for the mid-level datasets(s)"),

    /* tokenizer (_add_tokenizer_args, shared with tools/preprocess_data.py) */
    INT("--vocab-size", vocab_size, NULL, M_TOK, G_TOK, 1, NO, "Size of vocab before EOD or padding."),
    STR("--vocab-file", vocab_file, M_TOK, G_TOK, "Path to the vocab file."),
    STR("--merge-file", merge_file, M_TOK, G_TOK, "Path to the BPE merge file."),
    NOT_YET("--vocab-extra-ids", T_INT, M_TOK, G_TOK, "Number of additional vocabulary tokens."),
    CHOICE("--tokenizer-type", tokenizer_type, NULL, TOKENIZERS, M_TOK, G_TOK, "What type of tokenizer to use."),
    STR("--tokenizer-model", tokenizer_model, M_TOK, G_TOK, "Sentencepiece tokenizer model."),
    NOT_YET("--tiktoken-pattern", T_STR, M_TOK, G_TOK, "Which tiktoken pattern to use."),

    /* moe (_add_moe_args) */
    INT("--expert-model-parallel-size", expert_model_parallel_size, "1", M_TRAIN, G_MOE, 1, NO,
        "Degree of expert model parallelism."),
    NOT_YET("--expert-tensor-parallel-size", T_INT, M_TRAIN, G_MOE, "Degree of expert tensor parallelism."),
    NOT_YET("--num-experts", T_INT, M_TRAIN, G_MOE, "Number of Experts in MoE (None means no MoE)"),
    NOT_YET("--moe-layer-freq", T_STR, M_TRAIN, G_MOE, "Frequency between MoE layers and Dense layers."),
    NOT_YET("--moe-ffn-hidden-size", T_INT, M_TRAIN, G_MOE, "The hidden size of each expert's feed-forward network."),
    NOT_YET("--moe-shared-expert-intermediate-size", T_INT, M_TRAIN, G_MOE, "Shared expert total ffn hidden size."),
    NOT_YET("--moe-grouped-gemm", T_BOOL, M_TRAIN, G_MOE, "Use grouped GEMMs for the experts of a rank."),
    NOT_YET("--moe-router-load-balancing-type", T_LIST, M_TRAIN, G_MOE, "Load balancing strategy for the router."),
    NOT_YET("--moe-router-topk", T_INT, M_TRAIN, G_MOE, "Number of experts to route to for each token."),
    NOT_YET("--moe-aux-loss-coeff", T_FLOAT, M_TRAIN, G_MOE, "Scaling coefficient for the aux loss."),
    NOT_YET("--moe-token-dispatcher-type", T_CHOICE, M_TRAIN, G_MOE, "Token dispatcher: allgather, alltoall or flex."),

    /* logging (_add_logging_args) */
    NOT_YET("--log-params-norm", T_BOOL, M_TRAIN, G_LOG, "If set, calculate and log parameters norm."),
    NOT_YET("--log-num-zeros-in-grad", T_BOOL, M_TRAIN, G_LOG, "If set, calculate and log the number of zeros in gradient."),
    BOOL("--log-throughput", log_throughput, M_TRAIN, G_LOG, "If set, calculate and log throughput per GPU."),
    NOT_YET("--timing-log-level", T_INT, M_TRAIN, G_LOG, "Granularity level to measure and report timing."),
    NOT_YET("--tensorboard-log-interval", T_INT, M_TRAIN, G_LOG, "Report to tensorboard interval."),
    NOT_YET("--log-timers-to-tensorboard", T_BOOL, M_TRAIN, G_LOG, "If set, write timers to tensorboard."),
    NOT_YET("--log-validation-ppl-to-tensorboard", T_BOOL, M_TRAIN, G_LOG, "If set, write validation perplexity to tensorboard."),
    NOT_YET("--log-memory-to-tensorboard", T_BOOL, M_TRAIN, G_LOG, "Enable memory logging to tensorboard."),
    NOT_YET("--wandb-project", T_STR, M_TRAIN, G_LOG, "The wandb project name. Ignore wandb by default."),
    NOT_YET("--wandb-exp-name", T_STR, M_TRAIN, G_LOG, "The wandb experiment name."),
    NOT_YET("--wandb-save-dir", T_STR, M_TRAIN, G_LOG, "Path to save the wandb results locally."),

    /* Transformer-Engine (_add_transformer_engine_args) */
    NOT_YET("--fp8-format", T_CHOICE, M_TRAIN, G_TE, "Which fp8 format scheme to use for FP8 tensors (e4m3, hybrid)."),
    NOT_YET("--fp8-recipe", T_CHOICE, M_TRAIN, G_TE, "Which fp8 recipe to use for FP8 tensors."),
    NOT_YET("--fp8-amax-history-len", T_INT, M_TRAIN, G_TE, "Number of steps for which amax history is recorded per tensor"),
    NOT_YET("--fp8-param-gather", T_BOOL, M_TRAIN, G_TE, "Keep the compute param in fp8 and all-gather in fp8."),
    NOT_YET("--fp4-format", T_CHOICE, M_TRAIN, G_TE, "Which nvfp4 format scheme to use for FP4 tensors."),
    CHOICE("--transformer-impl", transformer_impl, "transformer_engine", "local|transformer_engine|inference_optimized",
           M_TRAIN, G_TE, "Which Transformer implementation to use. local and transformer_engine both select this "
           "program's own implementation."),

    /* tools/preprocess_data.py */
    STR("--input", input, M_PREPROCESS, G_IN, "Path to input JSON (a glob when --partitions > 1)."),
    {"--json-keys", NULL, "json_keys", T_LIST, "text", M_PREPROCESS, G_IN, NO, NO, F_NONEMPTY, NULL, OFF(json_keys),
     OFF(json_keys_count), "space separate listed of keys to extract from json"},
    {"--split-sentences", NULL, "split_sentences", T_BOOL, NULL, M_PREPROCESS, G_IN, NO, NO, F_UNSUPPORTED, NULL,
     OFF(split_sentences), 0, "Split documents into sentences."},
    NOT_YET("--keep-newlines", T_BOOL, M_PREPROCESS, G_IN, "Keep newlines between sentences when splitting."),
    BOOL("--append-eod", append_eod, M_PREPROCESS, G_TOKPROC, "Append an <eod> token to the end of a document."),
    NOT_YET("--lang", T_STR, M_PREPROCESS, G_TOKPROC, "Language to use for NLTK-powered sentence splitting."),
    STR("--output-prefix", output_prefix, M_PREPROCESS, G_OUT, "Path to binary output file without suffix"),
    INT("--workers", workers, NULL, M_PREPROCESS, G_RUN, 1, NO, "Number of worker processes to launch."),
    NOT_YET("--find-optimal-num-workers", T_BOOL, M_PREPROCESS, G_RUN, "Find optimal number of workers."),
    INT("--partitions", partitions, "1", M_PREPROCESS, G_RUN, 1, NO, "Number of file partitions"),
    INT("--log-interval", log_interval, "1000", M_PREPROCESS, G_RUN, 1, NO, "Interval between progress updates"),
    BOOL("--keep-sequential-samples", keep_sequential_samples, M_PREPROCESS, G_RUN,
         "Ensure ordering of samples in .jsonl files is preserved when using partitions>1."),

    /* megatron samples */
    CHOICE("--samples-split", samples_split, "train", "train|valid|test", M_SAMPLES, G_SAMPLES,
           "Which split's samples to show."),
    INT("--samples-count", samples_count, "10", M_SAMPLES, G_SAMPLES, 1, NO, "How many samples to show."),
    STR("--samples-output", samples_output, M_SAMPLES, G_SAMPLES, "Write the samples to this file instead of stdout."),

    /* megatron convert */
    STR("--load-hf", load_hf, M_CONVERT, G_CONVERT, "Hugging Face model directory to convert into a checkpoint (--save)."),
    STR("--save-hf", save_hf, M_CONVERT, G_CONVERT, "Hugging Face model directory to write from a checkpoint (--load)."),

    /* ours */
    CHOICE("--model", model, "gpt", "gpt", M_TRAIN, G_OURS, "Model family (GPT-2/3, LLaMA and Mistral are set by flags)."),
    CHOICE("--device", device, "auto", "auto|cpu|cuda", M_TRAIN, G_OURS, "Where to run: auto uses CUDA when present."),
    CHOICE("--on-invalid", on_invalid, "stop", "stop|skip", M_PREPROCESS, G_OURS,
           "What to do with a malformed JSON line or invalid UTF-8: stop with an error, or skip the line "
           "with a warning."),
    INT("--world-size", world_size, "1", M_PLAN, G_OURS, 1, NO, "Number of ranks to plan for."),
    BOOL("--print-config", print_config, M_ALL, G_OURS, "Print the configuration (Megatron's argument dump) and exit."),

    /* derived by args_finalize */
    {NULL, NULL, "world_size", T_INT, NULL, M_PRETRAIN | M_SAMPLES, NULL, NO, NO, 0, NULL, OFF(world_size), 0, NULL},
    DERIVED(data_parallel_size, T_INT),
    DERIVED(num_micro_batches, T_INT),
    DERIVED(virtual_pipeline_model_parallel_size, T_INT),
    DERIVED(params_dtype, T_DTYPE),
    DERIVED(lr_decay_steps, T_INT),
    DERIVED(lr_warmup_steps, T_FLOAT),
    DERIVED(wd_incr_steps, T_INT),
    DERIVED(wsd_decay_steps, T_INT),
};

#define TABLE_SIZE ((int)(sizeof TABLE / sizeof TABLE[0]))

/* Derived fields belong to the training subcommands; a NULL-name entry with cmds 0 means that. */
static unsigned spec_cmds(const struct arg_spec *s)
{
    if (!s->name && s->cmds == 0) return M_TRAIN;
    return s->cmds;
}

static bool spec_for(const struct arg_spec *s, enum subcommand cmd) { return (spec_cmds(s) >> cmd) & 1u; }

#define FIELD(cfg, s, T) ((T *)((char *)(cfg) + (s)->offset))
#define CFIELD(cfg, s, T) ((const T *)((const char *)(cfg) + (s)->offset))

const char *args_subcommand_name(enum subcommand cmd)
{
    switch (cmd) {
    case CMD_PRETRAIN: return "pretrain";
    case CMD_PREPROCESS: return "preprocess";
    case CMD_SAMPLES: return "samples";
    case CMD_CONVERT: return "convert";
    case CMD_PLAN: return "plan";
    }
    return "?";
}

/* ---------------------------------------------------------------- messages */

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (errlen) vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* User text inside a message: printable ASCII only (the message stays one line), at most 60. */
static const char *shown(const char *s, char *buf, size_t n)
{
    size_t j = 0;
    for (size_t i = 0; s[i] && j + 4 < n; i++) {
        if (i == 60) {
            memcpy(buf + j, "...", 3);
            j += 3;
            break;
        }
        unsigned char c = (unsigned char)s[i];
        buf[j++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    buf[j] = '\0';
    return buf;
}

/* --num-layers -> NUM_LAYERS, as argparse names a value. */
static void metavar(const struct arg_spec *s, char *buf, size_t n)
{
    if (s->type == T_CHOICE && s->choices) {
        snprintf(buf, n, "{%s}", s->choices);
        for (char *p = buf; *p; p++)
            if (*p == '|') *p = ',';
        return;
    }
    const char *src = s->dest ? s->dest : s->name + 2;
    size_t j = 0;
    for (size_t i = 0; src[i] && j + 1 < n; i++)
        buf[j++] = src[i] == '-' ? '_' : (char)toupper((unsigned char)src[i]);
    buf[j] = '\0';
}

/* Levenshtein distance, for "did you mean". */
static int edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 80 || lb > 80) return 1000;
    int row[81];
    for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* ---------------------------------------------------------------- values */

/* Python's int(): optional sign, decimal digits. 0, -1 (not an integer) or -2 (overflow). */
static int parse_int(const char *s, int64_t *out)
{
    const char *p = s + (*s == '+' || *s == '-');
    if (!isdigit((unsigned char)*p)) return -1;
    for (const char *q = p; *q; q++)
        if (!isdigit((unsigned char)*q)) return -1;
    errno = 0;
    long long v = strtoll(s, NULL, 10);
    if (errno == ERANGE) return -2;
    *out = v;
    return 0;
}

/* A finite decimal number (no hex, no leading space). 0, -1 (not a number) or -2 (not finite). */
static int parse_float(const char *s, double *out)
{
    if (!*s || isspace((unsigned char)*s) || strpbrk(s, "xX")) return -1;
    char *end;
    double v = strtod(s, &end);
    if (*end) return -1;
    if (!isfinite(v)) return -2;
    *out = v;
    return 0;
}

static bool choice_ok(const char *choices, const char *v)
{
    size_t n = strlen(v);
    for (const char *p = choices; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0) return true;
        p += len + (bar != NULL);
    }
    return false;
}

/* The choice nearest to v (edit distance <= 3, case-insensitive match preferred), or NULL. */
static const char *nearest_choice(const char *choices, const char *v, char *buf, size_t n)
{
    int best = 4;
    const char *found = NULL;
    for (const char *p = choices; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        char c[64];
        snprintf(c, sizeof c, "%.*s", (int)len, p);
        int d = strcasecmp(c, v) == 0 ? 0 : edit_distance(c, v);
        if (d < best) {
            best = d;
            snprintf(buf, n, "%s", c);
            found = buf;
        }
        p += len + (bar != NULL);
    }
    return found;
}

static void range_text(const struct arg_spec *s, char *buf, size_t n)
{
    bool has_lo = !isnan(s->lo), has_hi = !isnan(s->hi);
    if (has_lo && has_hi)
        snprintf(buf, n, "in %c%g, %.10g%c", (s->flags & F_LO_OPEN) ? '(' : '[', s->lo, s->hi,
                 (s->flags & F_HI_OPEN) ? ')' : ']');
    else if (has_lo)
        snprintf(buf, n, "%s %g", (s->flags & F_LO_OPEN) ? ">" : ">=", s->lo);
    else
        snprintf(buf, n, "%s %.10g", (s->flags & F_HI_OPEN) ? "<" : "<=", s->hi);
}

static bool in_range(const struct arg_spec *s, double v)
{
    if (!isnan(s->lo) && ((s->flags & F_LO_OPEN) ? !(v > s->lo) : !(v >= s->lo))) return false;
    if (!isnan(s->hi) && ((s->flags & F_HI_OPEN) ? !(v < s->hi) : !(v <= s->hi))) return false;
    return true;
}

static int out_of_range(const struct arg_spec *s, const char *v, char *err, size_t errlen)
{
    char b1[80], range[96];
    range_text(s, range, sizeof range);
    if (s->def)
        return fail(err, errlen, "%s %s: must be %s; use a value in that range (default %s)", s->name,
                    shown(v, b1, sizeof b1), range, s->def);
    return fail(err, errlen, "%s %s: must be %s; use a value in that range", s->name, shown(v, b1, sizeof b1), range);
}

/* Stores text v into s's field of cfg after checking it; text comes from argv or the table. */
static int store_value(struct config *cfg, const struct arg_spec *s, const char *v, char *err, size_t errlen)
{
    char b1[80];
    if (*v == '\0') return fail(err, errlen, "%s: empty value; give a value after the flag", s->name);
    if (s->type == T_INT) {
        int64_t x;
        int rc = parse_int(v, &x);
        if (rc == -1) return fail(err, errlen, "%s %s: not an integer; give a whole number", s->name, shown(v, b1, sizeof b1));
        if (rc == -2)
            return fail(err, errlen, "%s %s: out of range of a 64-bit integer; give a smaller number", s->name,
                        shown(v, b1, sizeof b1));
        if (!in_range(s, (double)x)) return out_of_range(s, v, err, errlen);
        *FIELD(cfg, s, int64_t) = x;
    } else if (s->type == T_FLOAT) {
        double x;
        int rc = parse_float(v, &x);
        if (rc == -1) return fail(err, errlen, "%s %s: not a number; give a decimal number such as 0.1", s->name, shown(v, b1, sizeof b1));
        if (rc == -2) return fail(err, errlen, "%s %s: not a finite number; give a finite decimal number", s->name, shown(v, b1, sizeof b1));
        if (!in_range(s, x)) return out_of_range(s, v, err, errlen);
        *FIELD(cfg, s, double) = x;
    } else if (s->type == T_CHOICE) {
        if (!choice_ok(s->choices, v)) {
            char all[512], near[64];
            size_t j = 0;
            for (const char *p = s->choices; *p && j + 3 < sizeof all; p++) {
                if (*p == '|') all[j++] = ',', all[j++] = ' ';
                else all[j++] = *p;
            }
            all[j] = '\0';
            const char *guess = nearest_choice(s->choices, v, near, sizeof near);
            if (guess)
                return fail(err, errlen, "%s %s: invalid choice (choose from %s); did you mean %s?", s->name,
                            shown(v, b1, sizeof b1), all, guess);
            return fail(err, errlen, "%s %s: invalid choice (choose from %s); use one of those", s->name,
                        shown(v, b1, sizeof b1), all);
        }
        *FIELD(cfg, s, const char *) = v;
    } else {
        *FIELD(cfg, s, const char *) = v;
    }
    return 0;
}

static void set_list(struct config *cfg, const struct arg_spec *s, char **values, int n)
{
    char ***list = FIELD(cfg, s, char **);
    free(*list);
    *list = NULL;
    if (n > 0 || s->type == T_LIST) {
        *list = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(char *));
        for (int i = 0; i < n; i++) (*list)[i] = values[i];
    }
    *(int *)((char *)cfg + s->count_offset) = n;
}

/* ---------------------------------------------------------------- defaults */

static void apply_default(struct config *cfg, const struct arg_spec *s)
{
    switch (s->type) {
    case T_INT:
        if (s->def) parse_int(s->def, FIELD(cfg, s, int64_t));
        else *FIELD(cfg, s, int64_t) = -1;
        break;
    case T_FLOAT: *FIELD(cfg, s, double) = s->def ? strtod(s->def, NULL) : NAN; break;
    case T_BOOL: *FIELD(cfg, s, bool) = false; break;
    case T_BOOL_FALSE: *FIELD(cfg, s, bool) = true; break;
    case T_STR:
    case T_CHOICE: *FIELD(cfg, s, const char *) = s->def; break;
    case T_LIST: {
        char *one = (char *)s->def;
        if (s->def) set_list(cfg, s, &one, 1);
        else {
            free(*FIELD(cfg, s, char **));
            *FIELD(cfg, s, char **) = NULL;
            *(int *)((char *)cfg + s->count_offset) = 0;
        }
        break;
    }
    case T_DTYPE: *FIELD(cfg, s, enum dtype) = DT_F32; break;
    }
}

void args_defaults(struct config *cfg, enum subcommand cmd)
{
    memset(cfg, 0, sizeof *cfg);
    /* Every field gets a default; then the entries of cmd win where two share a field. */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < TABLE_SIZE; i++) {
            const struct arg_spec *s = &TABLE[i];
            if ((s->flags & F_UNSUPPORTED) && !s->dest) continue;
            if (spec_for(s, cmd) == (pass == 1)) apply_default(cfg, s);
        }
    for (int i = 0; i < 3; i++) cfg->split_weights[i] = NAN;
    cfg->cmd = cmd;
}

void args_free(struct config *cfg)
{
    free(cfg->data_path);
    free(cfg->json_keys);
    free(cfg->train_data_path);
    free(cfg->valid_data_path);
    free(cfg->test_data_path);
    cfg->data_path = cfg->json_keys = cfg->train_data_path = cfg->valid_data_path = cfg->test_data_path = NULL;
    cfg->data_path_count = cfg->json_keys_count = 0;
    cfg->train_data_path_count = cfg->valid_data_path_count = cfg->test_data_path_count = 0;
}

/* ---------------------------------------------------------------- parsing */

static const struct arg_spec *find_flag(const char *name, size_t len, unsigned mask)
{
    for (int i = 0; i < TABLE_SIZE; i++) {
        const struct arg_spec *s = &TABLE[i];
        if (!s->name || !(spec_cmds(s) & mask)) continue;
        if ((strlen(s->name) == len && strncmp(s->name, name, len) == 0) ||
            (s->alias && strlen(s->alias) == len && strncmp(s->alias, name, len) == 0))
            return s;
    }
    return NULL;
}

/* argparse treats "-5" and "-.5" as values, other "-x" tokens as options. */
static bool looks_like_flag(const char *t)
{
    if (t[0] != '-' || t[1] == '\0') return false;
    if (isdigit((unsigned char)t[1])) return false;
    if (t[1] == '.' && isdigit((unsigned char)t[2])) return false;
    return true;
}

static int unknown_flag(const char *tok, size_t len, enum subcommand cmd, char *err, size_t errlen)
{
    const char *cname = args_subcommand_name(cmd);
    char name[96], b[80];
    snprintf(name, sizeof name, "%.*s", (int)(len < 90 ? len : 90), tok);
    shown(name, b, sizeof b);
    for (int c = 0; c <= CMD_PLAN; c++) {
        if (find_flag(tok, len, 1u << c))
            return fail(err, errlen, "%s: not a flag of megatron %s (it belongs to megatron %s); see megatron %s --help",
                        b, cname, args_subcommand_name((enum subcommand)c), cname);
    }
    const char *best = NULL;
    int best_d = 1000;
    for (int i = 0; i < TABLE_SIZE; i++) {
        const struct arg_spec *s = &TABLE[i];
        if (!s->name || !spec_for(s, cmd)) continue;
        int d = edit_distance(name, s->name);
        if (d < best_d) {
            best_d = d;
            best = s->name;
        }
    }
    if (best && best_d <= (int)(strlen(best) > 10 ? strlen(best) / 5 : 2))
        return fail(err, errlen, "unknown flag %s: did you mean %s?; see megatron %s --help", b, best, cname);
    return fail(err, errlen, "unknown flag %s: not a flag of megatron %s; see megatron %s --help", b, cname, cname);
}

static int unexpected_argument(const char *tok, enum subcommand cmd, char *err, size_t errlen)
{
    char b[80], dashed[96];
    snprintf(dashed, sizeof dashed, "--%.80s", tok);
    const struct arg_spec *s = find_flag(dashed, strlen(dashed), 1u << cmd);
    if (s)
        return fail(err, errlen, "unexpected argument '%s': flags start with two dashes; did you mean %s?",
                    shown(tok, b, sizeof b), s->name);
    return fail(err, errlen, "unexpected argument '%s': megatron %s takes only --flags with their values; "
                "put each value right after its flag", shown(tok, b, sizeof b), args_subcommand_name(cmd));
}

/* Consumes a list flag's values (argparse nargs='*' or '+') starting at argv[*i + 1]. */
static int parse_list(struct config *cfg, const struct arg_spec *s, int argc, char **argv, int *i,
                      const char *eq_value, char *err, size_t errlen)
{
    char *one = (char *)eq_value;
    int first = *i + 1, n = 0;
    if (eq_value) {
        if (!*eq_value) return fail(err, errlen, "%s: empty value; give a value after the flag", s->name);
        set_list(cfg, s, &one, 1);
        return 0;
    }
    while (first + n < argc && !looks_like_flag(argv[first + n])) {
        if (!*argv[first + n]) return fail(err, errlen, "%s: empty value; give non-empty values", s->name);
        n++;
    }
    if (n == 0 && (s->flags & F_NONEMPTY))
        return fail(err, errlen, "%s: needs at least one value; e.g. %s %s", s->name, s->name, s->def ? s->def : "VALUE");
    set_list(cfg, s, argv + first, n);
    *i += n;
    return 0;
}

static int parse_one(struct config *cfg, enum subcommand cmd, int argc, char **argv, int *i, char *err,
                     size_t errlen)
{
    const char *tok = argv[*i];
    const char *eq = strncmp(tok, "--", 2) == 0 ? strchr(tok, '=') : NULL;
    size_t len = eq ? (size_t)(eq - tok) : strlen(tok);
    const struct arg_spec *s = find_flag(tok, len, 1u << cmd);
    char b[80], mv[512];
    if (!s) return unknown_flag(tok, len, cmd, err, errlen);
    if (s->flags & F_UNSUPPORTED)
        return fail(err, errlen, "%s: a Megatron-LM flag that is not supported yet; remove it (see megatron %s --help)",
                    s->name, args_subcommand_name(cmd));
    if (s->type == T_BOOL || s->type == T_BOOL_FALSE) {
        if (eq) return fail(err, errlen, "%s: takes no value (got '%s'); write just %s", s->name, shown(eq + 1, b, sizeof b), s->name);
        *FIELD(cfg, s, bool) = s->type == T_BOOL;
        return 0;
    }
    if (s->type == T_LIST) return parse_list(cfg, s, argc, argv, i, eq ? eq + 1 : NULL, err, errlen);
    const char *v = eq ? eq + 1 : NULL;
    if (!v) {
        if (*i + 1 >= argc || looks_like_flag(argv[*i + 1])) {
            metavar(s, mv, sizeof mv);
            return fail(err, errlen, "%s: missing value; write %s %s", s->name, s->name, mv);
        }
        v = argv[++*i];
    }
    return store_value(cfg, s, v, err, errlen);
}

int args_parse(struct config *cfg, enum subcommand cmd, int argc, char **argv, char *err, size_t errlen)
{
    /* As with argparse, -h anywhere wins over mistakes elsewhere on the line. */
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            cfg->help_requested = true;
            return 0;
        }
    for (int i = 0; i < argc; i++) {
        const char *tok = argv[i];
        if (!looks_like_flag(tok)) return unexpected_argument(tok, cmd, err, errlen);
        if (parse_one(cfg, cmd, argc, argv, &i, err, errlen)) return -1;
    }
    return 0;
}

int args_flag_names(enum subcommand cmd, const char **names, int max)
{
    int n = 0;
    for (int i = 0; i < TABLE_SIZE; i++) {
        if (!TABLE[i].name || !spec_for(&TABLE[i], cmd)) continue;
        if (n < max) names[n] = TABLE[i].name;
        n++;
    }
    return n;
}

/* ---------------------------------------------------------------- validation (args_finalize) */

#define PRI PRId64

static bool mul_ok(int64_t a, int64_t b, int64_t *out) { return !__builtin_mul_overflow(a, b, out); }

static int missing(const char *flag, enum subcommand cmd, const char *example, char *err, size_t errlen)
{
    return fail(err, errlen, "%s: missing (megatron %s needs it); add %s %s", flag, args_subcommand_name(cmd), flag,
                example);
}

/* "use 8 or 12": the multiples of unit around v. */
static void nearest_multiples(int64_t v, int64_t unit, char *buf, size_t n)
{
    int64_t lo = v - v % unit, hi;
    if (__builtin_add_overflow(lo, unit, &hi)) hi = lo;
    if (lo > 0 && hi != lo) snprintf(buf, n, "%" PRI " or %" PRI, lo, hi);
    else snprintf(buf, n, "%" PRI, lo > 0 ? lo : hi);
}

/* "1, 2, 4, 8": the divisors of v (the first dozen). */
static void divisors_text(int64_t v, char *buf, size_t n)
{
    size_t used = 0;
    int shown_count = 0;
    buf[0] = '\0';
    for (int64_t d = 1; d <= v && shown_count < 12 && used + 24 < n; d++) {
        if (d > 100000 && d != v) d = v; /* huge v: only say v itself */
        if (v % d) continue;
        used += (size_t)snprintf(buf + used, n - used, "%s%" PRI, shown_count ? ", " : "", d);
        shown_count++;
    }
}

/* " = 8" when the product did not overflow. */
static const char *product_text(int64_t mp, int64_t mpc, int64_t cp, char *buf, size_t n)
{
    int64_t check;
    if (mul_ok(mp, cp, &check) && check == mpc) snprintf(buf, n, " = %" PRI, mpc);
    else snprintf(buf, n, " (too large)");
    return buf;
}

static int finalize_parallel(struct config *c, char *err, size_t errlen)
{
    int64_t mp = 0, mpc = 0;
    char b[48];
    if (c->world_size < 1) return fail(err, errlen, "world size %" PRI ": must be >= 1; launch at least one rank", c->world_size);
    if (!mul_ok(c->tensor_model_parallel_size, c->pipeline_model_parallel_size, &mp) ||
        !mul_ok(mp, c->context_parallel_size, &mpc) || c->world_size % mpc != 0)
        return fail(err, errlen,
                    "world size %" PRI ": not divisible by tensor x pipeline x context parallel size = %" PRI " x %" PRI
                    " x %" PRI "%s; launch a multiple of that product or change the parallel sizes",
                    c->world_size, c->tensor_model_parallel_size, c->pipeline_model_parallel_size,
                    c->context_parallel_size, product_text(mp, mpc, c->context_parallel_size, b, sizeof b));
    c->data_parallel_size = c->world_size / mpc;
    if (c->num_layers_per_virtual_pipeline_stage > 0 && c->num_virtual_stages_per_pipeline_rank > 0)
        return fail(err, errlen, "--num-layers-per-virtual-pipeline-stage: cannot be combined with "
                    "--num-virtual-stages-per-pipeline-rank; give only one of them");
    if (c->overlap_param_gather && !c->use_distributed_optimizer)
        return fail(err, errlen, "--overlap-param-gather: only supported with the distributed optimizer; add "
                    "--use-distributed-optimizer");
    if (c->overlap_param_gather && !c->overlap_grad_reduce)
        return fail(err, errlen, "--overlap-param-gather: must be used with --overlap-grad-reduce; add it");
    return 0;
}

/* Stages, virtual stages and micro-batch groups: parallel/pipeline.c holds Megatron's rules
 * (arguments.py, TransformerConfig, the interleaved schedule's checks) and explains each failure. */
static int finalize_pipeline(struct config *c, char *err, size_t errlen)
{
    struct pipeline_spec s;
    if (pipeline_spec_from_config(c, &s, err, errlen)) return -1;
    c->virtual_pipeline_model_parallel_size = s.vp > 1 ? s.vp : -1;
    if (c->microbatch_group_size_per_vp_stage < 1) c->microbatch_group_size_per_vp_stage = c->pipeline_model_parallel_size;
    if (s.vp == 1) c->overlap_p2p_comm = false; /* Megatron: only the interleaved schedule overlaps p2p */
    return 0;
}

/* ffn default: megatron/training/arguments.py validate_args; with SwiGLU two projections share
 * the 4h budget, kept a multiple of 64. */
static int finalize_ffn(struct config *c, char *err, size_t errlen)
{
    if (c->ffn_hidden_size > 0) return 0;
    if (c->swiglu) c->ffn_hidden_size = (int64_t)((double)(8 * c->hidden_size) / 3.0 / 64.0) * 64;
    else c->ffn_hidden_size = 4 * c->hidden_size;
    if (c->ffn_hidden_size < 1)
        return fail(err, errlen, "--hidden-size %" PRI ": with --swiglu the default --ffn-hidden-size "
                    "int(4h*2/3/64)*64 is 0; give --ffn-hidden-size", c->hidden_size);
    return 0;
}

static int finalize_attention(struct config *c, char *err, size_t errlen)
{
    int64_t heads = c->num_attention_heads, tp = c->tensor_model_parallel_size;
    char b[200];
    if (c->kv_channels < 1) {
        if (c->hidden_size % heads != 0) {
            nearest_multiples(c->hidden_size, heads, b, sizeof b);
            return fail(err, errlen, "--hidden-size %" PRI ": must be divisible by --num-attention-heads = %" PRI
                        " (or give --kv-channels); use %s", c->hidden_size, heads, b);
        }
        c->kv_channels = c->hidden_size / heads;
    }
    if (!c->group_query_attention) {
        c->num_query_groups = heads;
    } else if (c->num_query_groups > heads || heads % c->num_query_groups != 0) {
        divisors_text(heads, b, sizeof b);
        return fail(err, errlen, "--num-query-groups %" PRI ": must divide --num-attention-heads = %" PRI
                    "; use one of %s", c->num_query_groups, heads, b);
    }
    if (heads % tp != 0)
        return fail(err, errlen, "--num-attention-heads %" PRI ": must be a multiple of --tensor-model-parallel-size = %"
                    PRI "; change one of them", heads, tp);
    if (c->num_query_groups % tp != 0)
        return fail(err, errlen, "--num-query-groups %" PRI ": must be a multiple of --tensor-model-parallel-size = %"
                    PRI "; change one of them", c->num_query_groups, tp);
    if (c->ffn_hidden_size % tp != 0)
        return fail(err, errlen, "--ffn-hidden-size %" PRI ": must be a multiple of --tensor-model-parallel-size = %"
                    PRI "; change one of them", c->ffn_hidden_size, tp);
    return 0;
}

static int finalize_positions(struct config *c, char *err, size_t errlen)
{
    if (c->use_rotary_position_embeddings) c->position_embedding_type = "rope";
    bool learned = strcmp(c->position_embedding_type, "learned_absolute") == 0;
    if (c->max_position_embeddings < 1) {
        if (learned)
            return fail(err, errlen, "--max-position-embeddings: missing (learned absolute positions need a table "
                        "size); add --max-position-embeddings %" PRI " or more", c->seq_length);
        c->max_position_embeddings = c->seq_length; /* only the learned table uses it */
    }
    if (c->seq_length > c->max_position_embeddings)
        return fail(err, errlen, "--seq-length %" PRI ": must be <= --max-position-embeddings = %" PRI
                    "; lower --seq-length or raise --max-position-embeddings", c->seq_length,
                    c->max_position_embeddings);
    if (c->context_parallel_size > 1 && c->seq_length % (2 * c->context_parallel_size) != 0)
        return fail(err, errlen, "--seq-length %" PRI ": must be a multiple of 2 x --context-parallel-size = %" PRI
                    "; change one of them", c->seq_length, 2 * c->context_parallel_size);
    return 0;
}

static int finalize_model(struct config *c, enum subcommand cmd, char *err, size_t errlen)
{
    if (c->num_layers < 1) return missing("--num-layers", cmd, "NUM_LAYERS", err, errlen);
    if (c->hidden_size < 1) return missing("--hidden-size", cmd, "HIDDEN_SIZE", err, errlen);
    if (c->num_attention_heads < 1) return missing("--num-attention-heads", cmd, "NUM_ATTENTION_HEADS", err, errlen);
    if (c->seq_length < 1) return missing("--seq-length", cmd, "SEQ_LENGTH", err, errlen);
    if (c->hidden_size > ((int64_t)1 << 40))
        return fail(err, errlen, "--hidden-size %" PRI ": too large; give a realistic model size", c->hidden_size);
    if (c->swiglu && c->openai_gelu)
        return fail(err, errlen, "--openai-gelu: cannot be combined with --swiglu; choose one activation");
    if (finalize_ffn(c, err, errlen) || finalize_attention(c, err, errlen) || finalize_positions(c, err, errlen))
        return -1;
    return 0;
}

static int finalize_batch(struct config *c, enum subcommand cmd, char *err, size_t errlen)
{
    int64_t unit;
    char b[80];
    if (c->micro_batch_size < 1) return missing("--micro-batch-size", cmd, "MICRO_BATCH_SIZE", err, errlen);
    if (!mul_ok(c->micro_batch_size, c->data_parallel_size, &unit))
        return fail(err, errlen, "--micro-batch-size %" PRI ": too large; give a smaller micro batch", c->micro_batch_size);
    if (c->global_batch_size < 1) c->global_batch_size = unit;
    if (c->global_batch_size % unit != 0) {
        nearest_multiples(c->global_batch_size, unit, b, sizeof b);
        return fail(err, errlen, "--global-batch-size %" PRI ": must be divisible by --micro-batch-size x "
                    "data-parallel size = %" PRI " x %" PRI " = %" PRI "; use %s", c->global_batch_size,
                    c->micro_batch_size, c->data_parallel_size, unit, b);
    }
    c->num_micro_batches = c->global_batch_size / unit;
    return 0;
}

static int finalize_precision(struct config *c, char *err, size_t errlen)
{
    if (c->fp16 && c->bf16) return fail(err, errlen, "--fp16: cannot be combined with --bf16; choose one precision");
    c->params_dtype = c->fp16 ? DT_F16 : c->bf16 ? DT_BF16 : DT_F32;
    if (c->bf16) c->accumulate_allreduce_grads_in_fp32 = true; /* Megatron: bf16 grads reduce in fp32 */
    return 0;
}

/* Iteration- vs sample-based training (validate_args) and update_train_iters. */
static int finalize_iterations(struct config *c, enum subcommand cmd, char *err, size_t errlen)
{
    if (c->train_iters > 0 && c->train_samples > 0)
        return fail(err, errlen, "--train-iters %" PRI ": cannot be combined with --train-samples %" PRI
                    "; give only one of them", c->train_iters, c->train_samples);
    if (c->train_iters < 1 && c->train_samples < 1)
        return fail(err, errlen, "--train-iters: missing (megatron %s needs --train-iters or --train-samples); add "
                    "--train-iters N", args_subcommand_name(cmd));
    bool iters = c->train_iters > 0;
    const char *bad = NULL, *use = NULL;
    if (iters && c->lr_decay_samples > 0) bad = "--lr-decay-samples", use = "--lr-decay-iters";
    else if (iters && c->lr_warmup_samples > 0) bad = "--lr-warmup-samples", use = "--lr-warmup-iters";
    else if (iters && c->lr_wsd_decay_samples > 0) bad = "--lr-wsd-decay-samples", use = "--lr-wsd-decay-iters";
    else if (!iters && c->lr_decay_iters > 0) bad = "--lr-decay-iters", use = "--lr-decay-samples";
    else if (!iters && c->lr_warmup_iters > 0) bad = "--lr-warmup-iters", use = "--lr-warmup-samples";
    else if (!iters && c->lr_wsd_decay_iters > 0) bad = "--lr-wsd-decay-iters", use = "--lr-wsd-decay-samples";
    if (bad)
        return fail(err, errlen, "%s: training is %s-based (%s); use %s instead", bad, iters ? "iteration" : "sample",
                    iters ? "--train-iters" : "--train-samples", use);
    if (!isnan(c->lr_warmup_fraction) && (iters ? c->lr_warmup_iters : c->lr_warmup_samples) > 0)
        return fail(err, errlen, "--lr-warmup-fraction %g: cannot be combined with %s %" PRI "; give only one of them",
                    c->lr_warmup_fraction, iters ? "--lr-warmup-iters" : "--lr-warmup-samples",
                    iters ? c->lr_warmup_iters : c->lr_warmup_samples);
    if (!iters) {
        c->train_iters = c->train_samples / c->global_batch_size;
        if (c->train_iters < 1)
            return fail(err, errlen, "--train-samples %" PRI ": less than one global batch (%" PRI "); give at least %"
                        PRI, c->train_samples, c->global_batch_size, c->global_batch_size);
    }
    return 0;
}

/* OptimizerParamScheduler's steps are samples (megatron/training/training.py
 * get_optimizer_param_scheduler) and its asserts (megatron/core/optimizer_param_scheduler.py). */
static int finalize_schedule(struct config *c, char *err, size_t errlen)
{
    bool iters = c->train_samples < 1;
    int64_t gbs = c->global_batch_size, wsd = iters ? c->lr_wsd_decay_iters : c->lr_wsd_decay_samples;
    if (isnan(c->lr)) return missing("--lr", CMD_PRETRAIN, "LR (e.g. 3e-4)", err, errlen);
    if (c->min_lr > c->lr) return fail(err, errlen, "--min-lr %g: must be <= --lr = %g; lower it", c->min_lr, c->lr);
    if (c->lr_warmup_init > c->lr)
        return fail(err, errlen, "--lr-warmup-init %g: must be <= --lr = %g; lower it", c->lr_warmup_init, c->lr);
    if (iters && c->lr_decay_iters < 1) c->lr_decay_iters = c->train_iters;
    if (!iters && c->lr_decay_samples < 1) c->lr_decay_samples = c->train_samples;
    bool ok = iters ? mul_ok(c->lr_decay_iters, gbs, &c->lr_decay_steps) && mul_ok(c->train_iters, gbs, &c->wd_incr_steps)
                    : (c->lr_decay_steps = c->lr_decay_samples, c->wd_incr_steps = c->train_samples, true);
    c->wsd_decay_steps = -1;
    if (ok && wsd > 0) ok = iters ? mul_ok(wsd, gbs, &c->wsd_decay_steps) : (c->wsd_decay_steps = wsd, true);
    if (!ok) return fail(err, errlen, "--train-iters %" PRI ": too many samples to count; lower it", c->train_iters);
    if (!isnan(c->lr_warmup_fraction)) c->lr_warmup_steps = c->lr_warmup_fraction * (double)c->lr_decay_steps;
    else c->lr_warmup_steps = iters ? (double)c->lr_warmup_iters * (double)gbs : (double)c->lr_warmup_samples;
    if (!(c->lr_warmup_steps < (double)c->lr_decay_steps))
        return fail(err, errlen, "%s %" PRI ": warmup must end before the learning-rate decay ends (%s = %" PRI
                    "); lower the warmup or raise %s", iters ? "--lr-warmup-iters" : "--lr-warmup-samples",
                    iters ? c->lr_warmup_iters : c->lr_warmup_samples, iters ? "--lr-decay-iters" : "--lr-decay-samples",
                    iters ? c->lr_decay_iters : c->lr_decay_samples, iters ? "--lr-decay-iters" : "--lr-decay-samples");
    if (strcmp(c->lr_decay_style, "WSD") == 0 && wsd < 1)
        return fail(err, errlen, "--lr-decay-style WSD: needs the length of its annealing phase; add %s N",
                    iters ? "--lr-wsd-decay-iters" : "--lr-wsd-decay-samples");
    return 0;
}

static int finalize_weight_decay(struct config *c, char *err, size_t errlen)
{
    if (strcmp(c->weight_decay_incr_style, "constant") == 0) {
        if (!isnan(c->start_weight_decay) || !isnan(c->end_weight_decay))
            return fail(err, errlen, "%s: only used with --weight-decay-incr-style linear or cosine; remove it or set "
                        "the style", isnan(c->start_weight_decay) ? "--end-weight-decay" : "--start-weight-decay");
        c->start_weight_decay = c->end_weight_decay = c->weight_decay;
        return 0;
    }
    if (isnan(c->start_weight_decay) || isnan(c->end_weight_decay))
        return fail(err, errlen, "%s: required with --weight-decay-incr-style %s; add --start-weight-decay and "
                    "--end-weight-decay", isnan(c->start_weight_decay) ? "--start-weight-decay" : "--end-weight-decay",
                    c->weight_decay_incr_style);
    if (c->end_weight_decay < c->start_weight_decay)
        return fail(err, errlen, "--end-weight-decay %g: must be >= --start-weight-decay = %g; swap or change them",
                    c->end_weight_decay, c->start_weight_decay);
    return 0;
}

/* Megatron's parse_and_normalize_split: the numbers in the text (anything else separates them),
 * at most three, padded with zeros, normalised to sum 1. */
static int parse_split(struct config *c, char *err, size_t errlen)
{
    double w[3] = {0, 0, 0}, sum = 0;
    int n = 0;
    char b[80];
    for (const char *p = c->split; *p;) {
        size_t len = strspn(p, "0123456789.");
        if (len == 0) {
            p++;
            continue;
        }
        char num[64];
        double v;
        if (n == 3 || len >= sizeof num)
            return fail(err, errlen, "--split %s: at most three proportions (train, valid, test); e.g. --split 949,50,1",
                        shown(c->split, b, sizeof b));
        memcpy(num, p, len);
        num[len] = '\0';
        if (parse_float(num, &v))
            return fail(err, errlen, "--split %s: '%s' is not a number; e.g. --split 949,50,1", shown(c->split, b, sizeof b), num);
        w[n++] = v;
        sum += v;
        p += len;
    }
    if (n == 0 || !(sum > 0))
        return fail(err, errlen, "--split %s: needs positive proportions; e.g. --split 949,50,1", shown(c->split, b, sizeof b));
    for (int i = 0; i < 3; i++) c->split_weights[i] = w[i] / sum;
    return 0;
}

static int finalize_tokenizer(struct config *c, enum subcommand cmd, char *err, size_t errlen)
{
    if (!c->tokenizer_type)
        return fail(err, errlen, "--tokenizer-type: missing (megatron %s needs it); add --tokenizer-type "
                    "GPT2BPETokenizer (with --vocab-file and --merge-file) or NullTokenizer (with --vocab-size)",
                    args_subcommand_name(cmd));
    if (strcmp(c->tokenizer_type, "NullTokenizer") == 0 && c->vocab_size < 1)
        return fail(err, errlen, "--vocab-size: required with --tokenizer-type NullTokenizer; add --vocab-size N");
    if (strcmp(c->tokenizer_type, "GPT2BPETokenizer") == 0 && (!c->vocab_file || !c->merge_file))
        return fail(err, errlen, "%s: required with --tokenizer-type GPT2BPETokenizer; add %s",
                    c->vocab_file ? "--merge-file" : "--vocab-file",
                    c->vocab_file ? "--merge-file merges.txt" : "--vocab-file vocab.json");
    return 0;
}

static int finalize_data(struct config *c, enum subcommand cmd, char *err, size_t errlen)
{
    if (c->seq_length < 1) return missing("--seq-length", cmd, "SEQ_LENGTH", err, errlen);
    int per_split = c->train_data_path_count + c->valid_data_path_count + c->test_data_path_count;
    if ((c->mock_data ? 1 : 0) + (c->data_path_count > 0 ? 1 : 0) + (per_split > 0 ? 1 : 0) > 1)
        return fail(err, errlen, "%s: cannot be combined with %s (a single data source must be provided); remove one "
                    "of them", c->mock_data ? "--mock-data" : "--data-path",
                    c->mock_data && c->data_path_count > 0 ? "--data-path" : "--train/valid/test-data-path");
    if (!c->mock_data && c->data_path_count == 0 && per_split == 0)
        return fail(err, errlen, "no training data: megatron %s needs --data-path PREFIX [PREFIX ...], "
                    "--train-data-path ... or --mock-data; add one of them", args_subcommand_name(cmd));
    if (per_split > 0 && c->train_data_path_count == 0 && cmd == CMD_PRETRAIN)
        return fail(err, errlen, "--valid-data-path/--test-data-path: need --train-data-path too; add it");
    if (cmd == CMD_PRETRAIN && c->reset_attention_mask)
        return fail(err, errlen, "--reset-attention-mask: not supported yet by the model (megatron samples shows the "
                    "document boundaries); remove it or use --reset-position-ids");
    if (!c->split) {
        c->split = "969, 30, 1"; /* Megatron's legacy default, with a warning for --data-path */
        c->split_defaulted = c->data_path_count > 0;
    }
    if (parse_split(c, err, errlen)) return -1;
    return finalize_tokenizer(c, cmd, err, errlen);
}

static int finalize_checkpointing(struct config *c, char *err, size_t errlen)
{
    if (c->save && c->save_interval < 1)
        return fail(err, errlen, "--save: needs --save-interval (iterations between checkpoints); add --save-interval N");
    return 0;
}

static int finalize_preprocess(struct config *c, char *err, size_t errlen)
{
    if (!c->input) return missing("--input", CMD_PREPROCESS, "FILE.jsonl", err, errlen);
    if (!c->output_prefix) return missing("--output-prefix", CMD_PREPROCESS, "PREFIX", err, errlen);
    if (c->workers < 1) return missing("--workers", CMD_PREPROCESS, "N", err, errlen);
    if (c->workers % c->partitions != 0)
        return fail(err, errlen, "--workers %" PRI ": must be divisible by --partitions = %" PRI
                    "; use a multiple of %" PRI, c->workers, c->partitions, c->partitions);
    return finalize_tokenizer(c, CMD_PREPROCESS, err, errlen);
}

static int finalize_convert(struct config *c, char *err, size_t errlen)
{
    if (c->load_hf && (c->save_hf || c->load))
        return fail(err, errlen, "--load-hf: cannot be combined with %s; convert one direction at a time",
                    c->save_hf ? "--save-hf" : "--load");
    if (c->load_hf && !c->save) return fail(err, errlen, "--load-hf: needs --save (the checkpoint to write); add --save DIR");
    if (c->save_hf && c->save)
        return fail(err, errlen, "--save-hf: cannot be combined with --save; convert one direction at a time");
    if (c->save_hf && !c->load) return fail(err, errlen, "--save-hf: needs --load (the checkpoint to read); add --load DIR");
    if (!c->load_hf && !c->save_hf)
        return fail(err, errlen, "megatron convert: nothing to convert; give --load-hf DIR --save DIR or --load DIR "
                    "--save-hf DIR");
    return 0;
}

/* Everything that Megatron-LM accepts and this program does not do YET: each check here goes away
 * when its feature lands (tensor/pipeline/context/expert parallelism, sequence parallelism, the
 * distributed optimizer and overlaps, checkpoints, more tokenizers, positions and optimizers). */
static int reject_not_yet_supported(const struct config *c, enum subcommand cmd, char *err, size_t errlen)
{
    const struct { const char *flag; int64_t v; const char *what; } sizes[] = {
        {"--pipeline-model-parallel-size", c->pipeline_model_parallel_size, "pipeline"},
        {"--context-parallel-size", c->context_parallel_size, "context"},
        {"--expert-model-parallel-size", c->expert_model_parallel_size, "expert"},
    };
    const struct { const char *flag; bool on; } flags[] = {
        {"--overlap-param-gather", c->overlap_param_gather},
        {"--num-layers-per-virtual-pipeline-stage", c->num_layers_per_virtual_pipeline_stage > 0},
        {"--num-virtual-stages-per-pipeline-rank", c->num_virtual_stages_per_pipeline_rank > 0},
    };
    if (cmd == CMD_PRETRAIN) {
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
            if (sizes[i].v > 1)
                return fail(err, errlen, "%s %" PRI ": %s parallelism is not supported yet; use %s 1", sizes[i].flag,
                            sizes[i].v, sizes[i].what, sizes[i].flag);
        for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
            if (flags[i].on) return fail(err, errlen, "%s: not supported yet; remove it", flags[i].flag);
    }
    if (cmd == CMD_PRETRAIN || cmd == CMD_PLAN) {
        if (strcmp(c->position_embedding_type, "learned_absolute") && strcmp(c->position_embedding_type, "rope") &&
            strcmp(c->position_embedding_type, "none"))
            return fail(err, errlen, "--position-embedding-type %s: not supported yet; use learned_absolute, rope or none",
                        c->position_embedding_type);
        if (strcmp(c->optimizer, "adam") && strcmp(c->optimizer, "sgd"))
            return fail(err, errlen, "--optimizer %s: not supported yet; use adam or sgd", c->optimizer);
        if (strcmp(c->transformer_impl, "inference_optimized") == 0)
            return fail(err, errlen, "--transformer-impl inference_optimized: not supported yet; use local or "
                        "transformer_engine (both select this program's implementation)");
    }
    if (cmd != CMD_PLAN && cmd != CMD_CONVERT && c->tokenizer_type &&
        strcmp(c->tokenizer_type, "GPT2BPETokenizer") && strcmp(c->tokenizer_type, "NullTokenizer"))
        return fail(err, errlen, "--tokenizer-type %s: not supported yet; use GPT2BPETokenizer or NullTokenizer",
                    c->tokenizer_type);
    return 0;
}

int args_finalize(struct config *c, enum subcommand cmd, int world_size, char *err, size_t errlen)
{
    if (cmd == CMD_PREPROCESS)
        return finalize_preprocess(c, err, errlen) || reject_not_yet_supported(c, cmd, err, errlen) ? -1 : 0;
    if (cmd == CMD_CONVERT) return finalize_convert(c, err, errlen);
    if (cmd != CMD_PLAN) c->world_size = world_size;
    if (finalize_parallel(c, err, errlen)) return -1;
    if (cmd != CMD_SAMPLES && finalize_model(c, cmd, err, errlen)) return -1;
    if (finalize_batch(c, cmd, err, errlen) || finalize_precision(c, err, errlen)) return -1;
    /* samples reads no model, but checks the pipeline flags when it is told the layers */
    if ((cmd != CMD_SAMPLES || c->num_layers > 0) && finalize_pipeline(c, err, errlen)) return -1;
    if (cmd != CMD_PLAN && (finalize_iterations(c, cmd, err, errlen) || finalize_data(c, cmd, err, errlen))) return -1;
    if (cmd == CMD_PRETRAIN && (finalize_schedule(c, err, errlen) || finalize_weight_decay(c, err, errlen) ||
                                finalize_checkpointing(c, err, errlen)))
        return -1;
    if (reject_not_yet_supported(c, cmd, err, errlen)) return -1;
    if (c->tensor_model_parallel_size == 1) c->sequence_parallel = false; /* Megatron: needs TP > 1 */
    if (c->sequence_parallel && c->seq_length % c->tensor_model_parallel_size != 0)
        return fail(err, errlen, "--sequence-parallel: --seq-length %" PRI " must be divisible by "
                    "--tensor-model-parallel-size = %" PRI "; change one of them", c->seq_length,
                    c->tensor_model_parallel_size);
    return 0;
}

/* ---------------------------------------------------------------- help and config dump */

/* Python's repr(float): shortest round-trip digits, fixed notation for 1e-4 <= |v| < 1e16. */
static void py_float(double v, char *buf, size_t n)
{
    if (isnan(v)) {
        snprintf(buf, n, "nan");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, n, v < 0 ? "-inf" : "inf");
        return;
    }
    char e[40], digits[24];
    int p;
    for (p = 1; p < 17; p++) {
        snprintf(e, sizeof e, "%.*e", p - 1, v);
        if (strtod(e, NULL) == v) break;
    }
    snprintf(e, sizeof e, "%.*e", p - 1, v);
    const char *m = e + (e[0] == '-');
    int nd = 0;
    for (const char *q = m; *q && *q != 'e'; q++)
        if (isdigit((unsigned char)*q)) digits[nd++] = *q;
    digits[nd] = '\0';
    int exp10 = atoi(strchr(e, 'e') + 1);
    const char *sign = e[0] == '-' ? "-" : "";
    if (exp10 < -4 || exp10 >= 16) {
        snprintf(buf, n, "%s%c%s%.*se%c%02d", sign, digits[0], nd > 1 ? "." : "", nd - 1, digits + 1,
                 exp10 < 0 ? '-' : '+', abs(exp10));
    } else if (exp10 < 0) {
        snprintf(buf, n, "%s0.%0*d%s", sign, -exp10 - 1, 0, digits);
        if (-exp10 - 1 == 0) snprintf(buf, n, "%s0.%s", sign, digits);
    } else if (nd <= exp10 + 1) {
        snprintf(buf, n, "%s%s%0*d.0", sign, digits, exp10 + 1 - nd, 0);
        if (exp10 + 1 - nd == 0) snprintf(buf, n, "%s%s.0", sign, digits);
    } else {
        snprintf(buf, n, "%s%.*s.%s", sign, exp10 + 1, digits, digits + exp10 + 1);
    }
}

/* A scalar field as Python prints it in Megatron's dump; lists are printed by print_value. */
static void format_scalar(const struct arg_spec *s, const struct config *c, char *buf, size_t n)
{
    switch (s->type) {
    case T_INT: {
        int64_t v = *CFIELD(c, s, int64_t);
        if (!s->def && v == -1) snprintf(buf, n, "None");
        else snprintf(buf, n, "%" PRI, v);
        break;
    }
    case T_FLOAT: {
        double v = *CFIELD(c, s, double);
        if (isnan(v)) snprintf(buf, n, "None");
        else py_float(v, buf, n);
        break;
    }
    case T_BOOL:
    case T_BOOL_FALSE: snprintf(buf, n, "%s", *CFIELD(c, s, bool) ? "True" : "False"); break;
    case T_STR:
    case T_CHOICE: {
        const char *v = *(const char *const *)((const char *)c + s->offset);
        snprintf(buf, n, "%s", v ? v : "None");
        break;
    }
    case T_DTYPE: {
        enum dtype d = *CFIELD(c, s, enum dtype);
        snprintf(buf, n, "torch.%s", d == DT_BF16 ? "bfloat16" : d == DT_F16 ? "float16" : "float32");
        break;
    }
    case T_LIST: snprintf(buf, n, "[...]"); break;
    }
}

static void print_value(FILE *f, const struct arg_spec *s, const struct config *c)
{
    if (s->type != T_LIST) {
        char buf[128];
        format_scalar(s, c, buf, sizeof buf);
        fputs(buf, f);
        return;
    }
    char *const *list = *(char **const *)((const char *)c + s->offset);
    int count = *(const int *)((const char *)c + s->count_offset);
    if (!list) {
        fputs("None", f);
        return;
    }
    fputc('[', f);
    for (int i = 0; i < count; i++) {
        fputs(i ? ", '" : "'", f);
        for (const char *p = list[i]; *p; p++) {
            if (*p == '\'' || *p == '\\') fputc('\\', f);
            fputc(*p, f);
        }
        fputc('\'', f);
    }
    fputc(']', f);
}

static int compare_dest(const void *a, const void *b)
{
    return strcasecmp((*(const struct arg_spec *const *)a)->dest, (*(const struct arg_spec *const *)b)->dest);
}

void args_print_config(FILE *f, const struct config *cfg)
{
    const struct arg_spec *rows[TABLE_SIZE];
    int n = 0;
    for (int i = 0; i < TABLE_SIZE; i++)
        if (TABLE[i].dest && spec_for(&TABLE[i], cfg->cmd)) rows[n++] = &TABLE[i];
    qsort(rows, (size_t)n, sizeof rows[0], compare_dest);
    fprintf(f, "------------------------ arguments ------------------------\n");
    for (int i = 0; i < n; i++) {
        int dots = 48 - (int)strlen(rows[i]->dest);
        fprintf(f, "  %s ", rows[i]->dest);
        for (int d = 0; d < dots; d++) fputc('.', f);
        fputc(' ', f);
        print_value(f, rows[i], cfg);
        fputc('\n', f);
    }
    fprintf(f, "-------------------- end of arguments ---------------------\n");
}

/* Writes text from column `indent`, wrapped before column 100. */
static void print_wrapped(FILE *f, const char *text, int col, int indent)
{
    const char *p = text;
    while (*p) {
        while (*p == ' ') p++;
        size_t w = strcspn(p, " ");
        if (w == 0) break;
        if (col > indent && col + 1 + (int)w > 100) {
            fprintf(f, "\n%*s", indent, "");
            col = indent;
        } else if (col > indent) {
            fputc(' ', f);
            col++;
        }
        fwrite(p, 1, w, f);
        col += (int)w;
        p += w;
    }
    fputc('\n', f);
}

static void print_flag_help(FILE *f, const struct arg_spec *s, const struct config *defaults)
{
    char mv[512], spec[640], text[1024], dflt[160] = "";
    metavar(s, mv, sizeof mv);
    bool takes_value = s->type != T_BOOL && s->type != T_BOOL_FALSE;
    if (s->type == T_LIST) snprintf(mv + strlen(mv), sizeof mv - strlen(mv), " ...");
    snprintf(spec, sizeof spec, "  %s%s%s", s->name, takes_value ? " " : "", takes_value ? mv : "");
    if (s->alias) snprintf(spec + strlen(spec), sizeof spec - strlen(spec), ", %s", s->alias);
    if (!(s->flags & F_UNSUPPORTED) && takes_value) {
        if (s->type == T_LIST && s->def) snprintf(dflt, sizeof dflt, " (default: ['%s'])", s->def);
        else if (s->type != T_LIST && s->def) {
            char v[128];
            format_scalar(s, defaults, v, sizeof v);
            snprintf(dflt, sizeof dflt, " (default: %s)", v);
        }
    }
    snprintf(text, sizeof text, "%s%s%s", (s->flags & F_UNSUPPORTED) ? "[not supported yet] " : "", s->help, dflt);
    fputs(spec, f);
    int col = (int)strlen(spec);
    if (col > 28) {
        fprintf(f, "\n%*s", 30, "");
        col = 30;
    } else {
        fprintf(f, "%*s", 30 - col, "");
        col = 30;
    }
    print_wrapped(f, text, col, 30);
}

void args_print_help(FILE *f, enum subcommand cmd)
{
    static const char *const what[] = {
        [CMD_PRETRAIN] = "Pretrains a GPT model (pretrain_gpt.py).",
        [CMD_PREPROCESS] = "Turns JSONL documents into Megatron .bin/.idx files (tools/preprocess_data.py).",
        [CMD_SAMPLES] = "Shows the samples the trainer would see; takes every flag of megatron pretrain.",
        [CMD_CONVERT] = "Converts between Hugging Face models and checkpoints.",
        [CMD_PLAN] = "Plans the layout, memory and FLOPs per rank without allocating; takes every flag of "
                     "megatron pretrain.",
    };
    const char *groups[64];
    int ng = 0;
    struct config defaults;
    args_defaults(&defaults, cmd);
    fprintf(f, "usage: megatron %s [--flag VALUE ...]\n\n%s\nFlag names and defaults are Megatron-LM's; "
            "[not supported yet] marks a Megatron-LM flag this program rejects.\n",
            args_subcommand_name(cmd), what[cmd]);
    for (int i = 0; i < TABLE_SIZE; i++) {
        const struct arg_spec *s = &TABLE[i];
        if (!s->name || !spec_for(s, cmd)) continue;
        int g = 0;
        while (g < ng && strcmp(groups[g], s->group) != 0) g++;
        if (g == ng && ng < 64) groups[ng++] = s->group;
    }
    for (int g = 0; g < ng; g++) {
        fprintf(f, "\n%s:\n", groups[g]);
        for (int i = 0; i < TABLE_SIZE; i++)
            if (TABLE[i].name && spec_for(&TABLE[i], cmd) && strcmp(TABLE[i].group, groups[g]) == 0)
                print_flag_help(f, &TABLE[i], &defaults);
    }
    fprintf(f, "\n  -h, --help                  show this help message and exit\n");
    args_free(&defaults);
}

void args_parse_or_die(struct config *cfg, enum subcommand cmd, int argc, char **argv, int world_size)
{
    char err[1024];
    args_defaults(cfg, cmd);
    if (args_parse(cfg, cmd, argc, argv, err, sizeof err)) {
        args_free(cfg);
        die_user("%s", err);
    }
    if (cfg->help_requested) {
        args_print_help(stdout, cmd);
        args_free(cfg);
        exit(0);
    }
    if (args_finalize(cfg, cmd, world_size, err, sizeof err)) {
        args_free(cfg);
        die_user("%s", err);
    }
    if (cfg->split_defaulted)
        warn_user("--split: not given; using Megatron's legacy default \"969, 30, 1\"; give --split (e.g. 949,50,1)");
    if (cfg->print_config) {
        args_print_config(stdout, cfg);
        args_free(cfg);
        exit(0);
    }
}
