/* The one table of flags (ARCHITECTURE.md principle 1): every flag of every subcommand with
 * Megatron-LM's spelling, default, argument group and help, the field it fills, and the Megatron
 * flags we do not implement yet, which are rejected by name. args.c and args_finalize.c read it. */
#include "args_internal.h"

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

const struct arg_spec ARGS_TABLE[] = {
    /* network size (_add_network_size_args) */
    INT("--num-layers", num_layers, NULL, M_TRAIN, G_NET, 1, NO, "Number of transformer layers."),
    INT("--hidden-size", hidden_size, NULL, M_TRAIN, G_NET, 1, NO, "Transformer hidden size."),
    INT("--ffn-hidden-size", ffn_hidden_size, NULL, M_TRAIN, G_NET, 1, NO,
        "Transformer Feed-Forward Network hidden size. This is set to 4*hidden-size if not provided "
        "(int(4*hidden-size*2/3/64)*64 with --swiglu)."),
    INT("--num-attention-heads", num_attention_heads, NULL, M_TRAIN, G_NET, 1, NO,
        "Number of transformer attention heads."),
    CHOICE("--attention-backend", attention_backend, "auto", "flash|fused|unfused|local|auto", M_TRAIN, G_NET,
           "Attention backend to use (flash,fused,unfused,local,auto). Every choice runs the same exact attention "
           "(on the GPU cuDNN's fused flash attention)."),
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
    STR("--tensorboard-dir", tensorboard_dir, M_TRAIN, G_TRAIN, "Write TensorBoard logs to this directory."),
    BOOL("--use-flash-attn", use_flash_attn, M_TRAIN, G_TRAIN,
         "use FlashAttention implementation of attention. (Attention here is always one exact fused kernel.)"),
    {"--disable-bias-linear", NULL, "add_bias_linear", T_BOOL_FALSE, NULL, M_TRAIN, G_TRAIN, NO, NO, 0, NULL,
     OFF(add_bias_linear), 0, "Disable bias in the linear layers"},
    NOT_YET("--add-qkv-bias", T_BOOL, M_TRAIN, G_TRAIN, "Enable bias only in the QKV linear layers"),
    {"--no-bias-gelu-fusion", NULL, "bias_gelu_fusion", T_BOOL_FALSE, NULL, M_TRAIN, G_TRAIN, NO, NO, 0, NULL,
     OFF(bias_gelu_fusion), 0,
     "Disable bias and gelu fusion. The fused bias-GeLU is the tanh approximation, so by default a GPT with biases "
     "uses the tanh GeLU, as Megatron does; with this flag (or --disable-bias-linear) the MLP applies erf GeLU."},
    CHOICE("--optimizer", optimizer, "adam", "adam|sgd|muon|dist_muon|lion|soap|adaptive_muon", M_TRAIN,
           G_TRAIN, "Optimizer function"),
    BOOL("--sequence-parallel", sequence_parallel, M_TRAIN, G_TRAIN, "Enable sequence parallel optimization."),
    NOT_YET("--tp-comm-overlap", T_BOOL, M_TRAIN, G_TRAIN, "Enables the overlap of Tensor parallel communication and GEMM kernels."),
    BOOL("--calculate-per-token-loss", calculate_per_token_loss, M_TRAIN, G_TRAIN, "Scale cross entropy loss by the number of non-padded tokens in the global batch."),
    NOT_YET("--profile", T_BOOL, M_TRAIN, G_TRAIN, "Enable nsys profiling."),
    BOOL("--deterministic-mode", deterministic_mode, M_TRAIN, G_TRAIN, "Choose code that has deterministic execution. This usually means slower execution, but is good for debugging and testing."),

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
    BOOL("--override-opt_param-scheduler", override_opt_param_scheduler, M_TRAIN, G_LR,
         "Reset the values of the scheduler from input arguments. (A resumed run here always takes the "
         "schedule from the flags and its step count from the checkpoint.)"),
    BOOL("--use-checkpoint-opt_param-scheduler", use_checkpoint_opt_param_scheduler, M_TRAIN, G_LR,
         "Use checkpoint to set the values of the scheduler."),

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
    STR("--pretrained-checkpoint", pretrained_checkpoint, M_TRAIN, G_CKPT,
        "Directory containing a pretrained model checkpoint for finetuning."),
    INT("--save-retain-interval", save_retain_interval, NULL, M_TRAIN, G_CKPT, 1, NO,
        "Number of iterations between retained checkpoints (other checkpoints except the last checkpoint are "
        "automatically deleted)."),
    NOT_YET("--non-persistent-save-interval", T_INT, M_TRAIN, G_CKPT, "Number of iterations between non-persistent saves."),
    BOOL("--exit-on-missing-checkpoint", exit_on_missing_checkpoint, M_TRAIN, G_CKPT, "Exit if --load is set but no checkpoint is found."),

    /* mixed precision (_add_mixed_precision_args) */
    BOOL("--fp16", fp16, M_TRAIN, G_MP, "Run model in fp16 mode."),
    BOOL("--bf16", bf16, M_TRAIN, G_MP, "Run model in bfloat16 mode."),
    BOOL("--grad-reduce-in-bf16", grad_reduce_in_bf16, M_TRAIN, G_MP,
         "Reduce gradients in bfloat16 (they still accumulate over micro batches in fp32 here)."),
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
    BOOL("--log-params-norm", log_params_norm, M_TRAIN, G_LOG, "If set, calculate and log parameters norm."),
    BOOL("--log-num-zeros-in-grad", log_num_zeros_in_grad, M_TRAIN, G_LOG, "If set, calculate and log the number of zeros in gradient."),
    BOOL("--log-throughput", log_throughput, M_TRAIN, G_LOG, "If set, calculate and log throughput per GPU."),
    INT("--timing-log-level", timing_log_level, "0", M_TRAIN, G_LOG, 0, 2,
        "Granularity level to measure and report timing. 0: report only iteration time; 1 and 2: also the time of "
        "forward-backward, gradient reduction and optimizer, and of each group's communication."),
    INT("--tensorboard-log-interval", tensorboard_log_interval, "1", M_TRAIN, G_LOG, 1, NO, "Report to tensorboard interval."),
    INT("--tensorboard-queue-size", tensorboard_queue_size, "1000", M_TRAIN, G_LOG, 1, NO,
        "Size of the tensorboard queue for pending events and summaries before one of the 'add' calls forces a "
        "flush to disk."),
    BOOL("--log-timers-to-tensorboard", log_timers_to_tensorboard, M_TRAIN, G_LOG, "If set, write timers to tensorboard."),
    {"--no-log-loss-scale-to-tensorboard", NULL, "log_loss_scale_to_tensorboard", T_BOOL_FALSE, NULL, M_TRAIN, G_LOG,
     NO, NO, 0, NULL, OFF(log_loss_scale_to_tensorboard), 0, "Disable loss-scale logging to tensorboard."},
    BOOL("--log-world-size-to-tensorboard", log_world_size_to_tensorboard, M_TRAIN, G_LOG,
         "Enable world size logging to tensorboard."),
    BOOL("--log-validation-ppl-to-tensorboard", log_validation_ppl_to_tensorboard, M_TRAIN, G_LOG,
         "If set, write validation perplexity to tensorboard."),
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
    STR("--eval-batch", eval_batch, M_PRETRAIN, G_OURS,
        "With --skip-train: evaluate the model (after --load) on the batch in this safetensors file (int32 tokens "
        "and targets [B, seq-length]) and print its lm loss; with float logits [B, seq-length, V] in the file, also "
        "the relative L2 error of ours against them. One process; no training data is needed."),
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

const int ARGS_TABLE_SIZE = (int)(sizeof ARGS_TABLE / sizeof ARGS_TABLE[0]);
