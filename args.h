/* The command line: one static table of Megatron-LM's flags (name, type, default, group, help,
 * subcommands, validation, field) drives parsing, --help, validation and the config dump
 * (ARCHITECTURE.md principle 1). Flag names and defaults are Megatron's; a Megatron flag we do not
 * implement is in the table and rejected by name ("not supported yet").
 *
 * Contract:
 *  - struct config field names are Megatron's argparse `dest` names. Integers are int64_t, floats
 *    double, booleans bool, strings and choices `const char *` (NULL when unset and no default).
 *    An integer flag whose Megatron default is None reads -1 when unset; a float one reads NAN.
 *    List flags are `char **x; int x_count;` (the array is owned by cfg, the strings are not).
 *  - Strings in cfg point into argv or into static text, so argv must outlive cfg.
 *  - Order of use: args_defaults, args_parse, args_finalize (validates and fills derived fields);
 *    after that the config is read-only. args_free releases the list arrays.
 *  - Errors are one line "<what>: <why>; <what to do>" written to err (without the
 *    "megatron: error: " prefix that die_user adds); nothing here exits except
 *    args_parse_or_die. */
#ifndef MEGATRON_ARGS_H
#define MEGATRON_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kernels/tensor.h"

enum subcommand { CMD_PRETRAIN, CMD_PREPROCESS, CMD_SAMPLES, CMD_CONVERT, CMD_PLAN };

struct config {
    enum subcommand cmd; /* set by args_defaults */
    bool help_requested; /* -h/--help was given: args_parse stops there */

    /* network size */
    int64_t num_layers, hidden_size, ffn_hidden_size, num_attention_heads, kv_channels;
    bool group_query_attention;
    int64_t num_query_groups; /* after finalize: num_attention_heads when GQA is off */
    int64_t max_position_embeddings;
    const char *position_embedding_type; /* learned_absolute | rope | none */
    bool use_rotary_position_embeddings; /* deprecated spelling of --position-embedding-type rope */
    int64_t rotary_base;
    double rotary_percent;
    int64_t make_vocab_size_divisible_by;
    const char *normalization; /* LayerNorm | RMSNorm */
    double norm_epsilon;
    bool openai_gelu, swiglu, untie_embeddings_and_output_weights;

    /* regularization */
    double attention_dropout, hidden_dropout;
    double weight_decay, start_weight_decay, end_weight_decay; /* start/end: weight_decay after
                                                                  finalize with style constant */
    const char *weight_decay_incr_style;
    double clip_grad, adam_beta1, adam_beta2, adam_eps, sgd_momentum;

    /* training */
    int64_t micro_batch_size, global_batch_size, train_iters, train_samples;
    int64_t log_interval; /* 100 for pretrain, 1000 for preprocess (Megatron's two defaults) */
    int64_t exit_interval, exit_duration_in_mins;
    bool exit_signal_handler;
    bool add_bias_linear; /* false with --disable-bias-linear */
    const char *optimizer;
    bool sequence_parallel;

    /* initialization */
    int64_t seed;
    double init_method_std;

    /* learning rate */
    double lr, min_lr, lr_warmup_fraction, lr_warmup_init;
    const char *lr_decay_style, *lr_wsd_decay_style;
    int64_t lr_decay_iters, lr_decay_samples, lr_wsd_decay_iters, lr_wsd_decay_samples;
    int64_t lr_warmup_iters, lr_warmup_samples;

    /* checkpointing */
    const char *save, *load;
    const char *pretrained_checkpoint; /* loaded as --finetune when --load holds no checkpoint */
    int64_t save_interval;
    int64_t save_retain_interval; /* -1: keep every checkpoint; else only multiples of it and the latest */
    bool finetune, no_load_optim, no_load_rng, no_save_optim, no_save_rng;
    bool exit_on_missing_checkpoint; /* --load finding no checkpoint is an error, not a fresh start */
    bool override_opt_param_scheduler; /* what a resume does anyway: the flags' schedule, the checkpoint's step */
    bool use_checkpoint_opt_param_scheduler; /* the checkpoint's schedule in place of the flags' */

    /* mixed precision */
    bool fp16, bf16, accumulate_allreduce_grads_in_fp32;
    bool grad_reduce_in_bf16; /* sums of gradients over data-parallel ranks in bf16 */
    bool bias_gelu_fusion;    /* Megatron's fused bias-GeLU (tanh approximation); cleared without biases */
    double loss_scale, initial_loss_scale, min_loss_scale, loss_scale_window;
    int64_t hysteresis;

    /* distributed */
    int64_t tensor_model_parallel_size, pipeline_model_parallel_size, context_parallel_size;
    int64_t expert_model_parallel_size;
    int64_t num_layers_per_virtual_pipeline_stage, num_virtual_stages_per_pipeline_rank;
    int64_t decoder_first_pipeline_num_layers, decoder_last_pipeline_num_layers; /* -1: even split */
    int64_t microbatch_group_size_per_vp_stage; /* after finalize: PP when unset */
    bool overlap_p2p_comm;                      /* false with --no-overlap-p2p-communication */
    bool use_distributed_optimizer, overlap_grad_reduce, overlap_param_gather;
    int64_t ddp_bucket_size;
    bool use_tp_pp_dp_mapping;           /* rank order tp-cp-ep-pp-dp instead of tp-cp-ep-dp-pp */
    int64_t distributed_timeout_minutes; /* a collective waiting longer ends the job */

    /* validation */
    int64_t eval_iters;
    int64_t eval_interval; /* -1 (Megatron's None): no evaluation during training */
    bool skip_train;
    const char *eval_batch; /* ours: a fixed batch to evaluate with --skip-train */

    /* data and dataloader */
    bool mock_data;
    char **data_path;
    int data_path_count;
    char **train_data_path, **valid_data_path, **test_data_path; /* independent split datasets */
    int train_data_path_count, valid_data_path_count, test_data_path_count;
    const char *split;       /* after finalize: "969, 30, 1" if unset (Megatron's legacy default) */
    double split_weights[3]; /* --split parsed and normalised to sum 1 (train, valid, test) */
    bool split_defaulted;    /* finalize filled --split for --data-path; args_parse_or_die warns */
    const char *data_cache_path;
    int64_t seq_length, num_workers;
    bool eod_mask_loss, reset_position_ids, reset_attention_mask;
    double mid_level_dataset_surplus;

    /* tokenizer */
    const char *tokenizer_type, *vocab_file, *merge_file, *tokenizer_model;
    int64_t vocab_size;

    /* logging */
    bool log_throughput;
    bool calculate_per_token_loss; /* the loss is the global batch's token mean, not a mean of micro-batch means */
    bool deterministic_mode; /* the GPU's kernels chosen for the same bits run after run (train.c) */
    bool log_params_norm; /* the L2 norm of the (main) parameters in each log line */
    bool log_num_zeros_in_grad; /* the number of zeros in the clipped main gradients, each log line */
    const char *tensorboard_dir; /* event files of the training scalars, written by the last rank */
    int64_t tensorboard_log_interval, tensorboard_queue_size;
    bool log_validation_ppl_to_tensorboard;
    bool log_timers_to_tensorboard; /* iteration-time and throughput at each log line */
    bool log_loss_scale_to_tensorboard, log_world_size_to_tensorboard;
    int64_t timing_log_level; /* 0: none; 1 and 2: per-phase and communication times at each log line */

    /* Transformer-Engine */
    const char *transformer_impl; /* local and transformer_engine both mean our implementation */
    /* --attention-backend (flash, fused, unfused, local, auto) and --use-flash-attn pick among
       Megatron's kernels for the same exact attention; every choice runs this program's one (cuDNN's
       fused flash attention on the GPU) */
    const char *attention_backend;
    bool use_flash_attn;

    /* ours */
    const char *model;  /* gpt */
    const char *device; /* auto | cpu | cuda */
    bool print_config;

    /* preprocess (Megatron's tools/preprocess_data.py) */
    const char *input, *output_prefix;
    char **json_keys;
    int json_keys_count;
    bool append_eod, split_sentences, keep_sequential_samples;
    int64_t workers, partitions;
    const char *on_invalid; /* ours: stop | skip, for a malformed JSON line or invalid UTF-8 */

    /* samples */
    const char *samples_split; /* train | valid | test */
    int64_t samples_count;
    const char *samples_output; /* NULL: stdout */

    /* convert */
    const char *load_hf, *save_hf;

    /* derived by args_finalize (Megatron's validate_args and scheduler set-up) */
    int64_t world_size; /* for plan: the --world-size flag */
    int64_t data_parallel_size, num_micro_batches;
    int64_t virtual_pipeline_model_parallel_size; /* model chunks per pipeline rank; -1 (None): no interleaving */
    enum dtype params_dtype; /* DT_F32, DT_BF16 or DT_F16 */
    int64_t lr_decay_steps, wd_incr_steps, wsd_decay_steps; /* in samples; wsd: -1 if unset */
    double lr_warmup_steps;                                 /* in samples */
};

/* Sets every field to its default for cmd (Megatron's defaults) and cfg->cmd = cmd. */
void args_defaults(struct config *cfg, enum subcommand cmd);

/* argv excludes the program name and the subcommand. 0 on success; -1 with a one-line message
 * "<what>: <why>; <what to do>" in err (no exit). -h/--help anywhere: 0 with help_requested set. */
int args_parse(struct config *cfg, enum subcommand cmd, int argc, char **argv, char *err, size_t errlen);

/* Validates as Megatron's validate_args does and fills the derived fields. world_size is the
 * number of ranks (for CMD_PLAN it is ignored: plan takes --world-size). 0 or -1 with err. */
int args_finalize(struct config *cfg, enum subcommand cmd, int world_size, char *err, size_t errlen);

/* Flags of cmd grouped as Megatron groups them, with defaults. */
void args_print_help(FILE *f, enum subcommand cmd);

/* Megatron's startup dump: "------------------------ arguments ------------------------", one
 * "  name ....... value" line per field, sorted by name, values printed as Python prints them. */
void args_print_config(FILE *f, const struct config *cfg);

void args_free(struct config *cfg);

/* defaults + parse + finalize; dies with die_user on error; prints help and exits 0 on
 * --help/-h; prints the config and exits 0 on --print-config. */
void args_parse_or_die(struct config *cfg, enum subcommand cmd, int argc, char **argv, int world_size);

/* "pretrain", "preprocess", ... */
const char *args_subcommand_name(enum subcommand cmd);

/* The flag names cmd accepts (unsupported ones included), in table order: fills up to max names
 * and returns how many there are. For tests and the fuzz dictionary. */
int args_flag_names(enum subcommand cmd, const char **names, int max);

#endif
