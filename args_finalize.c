/* args_finalize: the validation Megatron-LM does in validate_args
 * (megatron/training/arguments.py) plus the checks its OptimizerParamScheduler and
 * TransformerConfig make at start-up, and the fields derived from the flags. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args_internal.h"
#include "parallel/pipeline.h"
#include "util/error.h"

#define PRI PRId64

static bool mul_ok(int64_t a, int64_t b, int64_t *out) { return !__builtin_mul_overflow(a, b, out); }

static int missing(const char *flag, enum subcommand cmd, const char *example, char *err, size_t errlen)
{
    return args_fail(err, errlen, "%s: missing (megatron %s needs it); add %s %s", flag, args_subcommand_name(cmd), flag,
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
    if (c->world_size < 1) return args_fail(err, errlen, "world size %" PRI ": must be >= 1; launch at least one rank", c->world_size);
    if (!mul_ok(c->tensor_model_parallel_size, c->pipeline_model_parallel_size, &mp) ||
        !mul_ok(mp, c->context_parallel_size, &mpc) || c->world_size % mpc != 0)
        return args_fail(err, errlen,
                    "world size %" PRI ": not divisible by tensor x pipeline x context parallel size = %" PRI " x %" PRI
                    " x %" PRI "%s; launch a multiple of that product or change the parallel sizes",
                    c->world_size, c->tensor_model_parallel_size, c->pipeline_model_parallel_size,
                    c->context_parallel_size, product_text(mp, mpc, c->context_parallel_size, b, sizeof b));
    c->data_parallel_size = c->world_size / mpc;
    if (c->num_layers_per_virtual_pipeline_stage > 0 && c->num_virtual_stages_per_pipeline_rank > 0)
        return args_fail(err, errlen, "--num-layers-per-virtual-pipeline-stage: cannot be combined with "
                    "--num-virtual-stages-per-pipeline-rank; give only one of them");
    if (c->overlap_param_gather && !c->use_distributed_optimizer)
        return args_fail(err, errlen, "--overlap-param-gather: only supported with the distributed optimizer; add "
                    "--use-distributed-optimizer");
    if (c->overlap_param_gather && !c->overlap_grad_reduce)
        return args_fail(err, errlen, "--overlap-param-gather: must be used with --overlap-grad-reduce; add it");
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
        return args_fail(err, errlen, "--hidden-size %" PRI ": with --swiglu the default --ffn-hidden-size "
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
            return args_fail(err, errlen, "--hidden-size %" PRI ": must be divisible by --num-attention-heads = %" PRI
                        " (or give --kv-channels); use %s", c->hidden_size, heads, b);
        }
        c->kv_channels = c->hidden_size / heads;
    }
    if (!c->group_query_attention) {
        c->num_query_groups = heads;
    } else if (c->num_query_groups > heads || heads % c->num_query_groups != 0) {
        divisors_text(heads, b, sizeof b);
        return args_fail(err, errlen, "--num-query-groups %" PRI ": must divide --num-attention-heads = %" PRI
                    "; use one of %s", c->num_query_groups, heads, b);
    }
    if (heads % tp != 0)
        return args_fail(err, errlen, "--num-attention-heads %" PRI ": must be a multiple of --tensor-model-parallel-size = %"
                    PRI "; change one of them", heads, tp);
    if (c->num_query_groups % tp != 0)
        return args_fail(err, errlen, "--num-query-groups %" PRI ": must be a multiple of --tensor-model-parallel-size = %"
                    PRI "; change one of them", c->num_query_groups, tp);
    if (c->ffn_hidden_size % tp != 0)
        return args_fail(err, errlen, "--ffn-hidden-size %" PRI ": must be a multiple of --tensor-model-parallel-size = %"
                    PRI "; change one of them", c->ffn_hidden_size, tp);
    if (c->deterministic_mode && c->use_flash_attn) /* Megatron's validate_args refuses it too */
        return args_fail(err, errlen, "--use-flash-attn: Flash attention can not be used in deterministic mode "
                    "(--deterministic-mode); drop one of them");
    return 0;
}

static int finalize_positions(struct config *c, char *err, size_t errlen)
{
    if (c->use_rotary_position_embeddings) c->position_embedding_type = "rope";
    bool learned = strcmp(c->position_embedding_type, "learned_absolute") == 0;
    if (c->max_position_embeddings < 1) {
        if (learned)
            return args_fail(err, errlen, "--max-position-embeddings: missing (learned absolute positions need a table "
                        "size); add --max-position-embeddings %" PRI " or more", c->seq_length);
        c->max_position_embeddings = c->seq_length; /* only the learned table uses it */
    }
    if (c->seq_length > c->max_position_embeddings)
        return args_fail(err, errlen, "--seq-length %" PRI ": must be <= --max-position-embeddings = %" PRI
                    "; lower --seq-length or raise --max-position-embeddings", c->seq_length,
                    c->max_position_embeddings);
    if (c->context_parallel_size > 1 && c->seq_length % (2 * c->context_parallel_size) != 0)
        return args_fail(err, errlen, "--seq-length %" PRI ": must be a multiple of 2 x --context-parallel-size = %" PRI
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
        return args_fail(err, errlen, "--hidden-size %" PRI ": too large; give a realistic model size", c->hidden_size);
    if (c->swiglu && c->openai_gelu)
        return args_fail(err, errlen, "--openai-gelu: cannot be combined with --swiglu; choose one activation");
    if (!c->add_bias_linear) c->bias_gelu_fusion = false; /* Megatron: the fusion needs the bias */
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
        return args_fail(err, errlen, "--micro-batch-size %" PRI ": too large; give a smaller micro batch", c->micro_batch_size);
    if (c->global_batch_size < 1) c->global_batch_size = unit;
    if (c->global_batch_size % unit != 0) {
        nearest_multiples(c->global_batch_size, unit, b, sizeof b);
        return args_fail(err, errlen, "--global-batch-size %" PRI ": must be divisible by --micro-batch-size x "
                    "data-parallel size = %" PRI " x %" PRI " = %" PRI "; use %s", c->global_batch_size,
                    c->micro_batch_size, c->data_parallel_size, unit, b);
    }
    c->num_micro_batches = c->global_batch_size / unit;
    return 0;
}

static int finalize_precision(struct config *c, char *err, size_t errlen)
{
    if (c->fp16 && c->bf16) return args_fail(err, errlen, "--fp16: cannot be combined with --bf16; choose one precision");
    c->params_dtype = c->fp16 ? DT_F16 : c->bf16 ? DT_BF16 : DT_F32;
    /* Megatron: bf16 grads reduce in fp32 unless --grad-reduce-in-bf16 */
    if (c->bf16 && !c->grad_reduce_in_bf16) c->accumulate_allreduce_grads_in_fp32 = true;
    return 0;
}

/* Iteration- vs sample-based training (validate_args) and update_train_iters. */
static int finalize_iterations(struct config *c, enum subcommand cmd, char *err, size_t errlen)
{
    if (c->train_iters > 0 && c->train_samples > 0)
        return args_fail(err, errlen, "--train-iters %" PRI ": cannot be combined with --train-samples %" PRI
                    "; give only one of them", c->train_iters, c->train_samples);
    if (c->train_iters < 1 && c->train_samples < 1)
        return args_fail(err, errlen, "--train-iters: missing (megatron %s needs --train-iters or --train-samples); add "
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
        return args_fail(err, errlen, "%s: training is %s-based (%s); use %s instead", bad, iters ? "iteration" : "sample",
                    iters ? "--train-iters" : "--train-samples", use);
    if (!isnan(c->lr_warmup_fraction) && (iters ? c->lr_warmup_iters : c->lr_warmup_samples) > 0)
        return args_fail(err, errlen, "--lr-warmup-fraction %g: cannot be combined with %s %" PRI "; give only one of them",
                    c->lr_warmup_fraction, iters ? "--lr-warmup-iters" : "--lr-warmup-samples",
                    iters ? c->lr_warmup_iters : c->lr_warmup_samples);
    if (!iters) {
        c->train_iters = c->train_samples / c->global_batch_size;
        if (c->train_iters < 1)
            return args_fail(err, errlen, "--train-samples %" PRI ": less than one global batch (%" PRI "); give at least %"
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
    if (c->min_lr > c->lr) return args_fail(err, errlen, "--min-lr %g: must be <= --lr = %g; lower it", c->min_lr, c->lr);
    if (c->lr_warmup_init > c->lr)
        return args_fail(err, errlen, "--lr-warmup-init %g: must be <= --lr = %g; lower it", c->lr_warmup_init, c->lr);
    if (iters && c->lr_decay_iters < 1) c->lr_decay_iters = c->train_iters;
    if (!iters && c->lr_decay_samples < 1) c->lr_decay_samples = c->train_samples;
    bool ok = iters ? mul_ok(c->lr_decay_iters, gbs, &c->lr_decay_steps) && mul_ok(c->train_iters, gbs, &c->wd_incr_steps)
                    : (c->lr_decay_steps = c->lr_decay_samples, c->wd_incr_steps = c->train_samples, true);
    c->wsd_decay_steps = -1;
    if (ok && wsd > 0) ok = iters ? mul_ok(wsd, gbs, &c->wsd_decay_steps) : (c->wsd_decay_steps = wsd, true);
    if (!ok) return args_fail(err, errlen, "--train-iters %" PRI ": too many samples to count; lower it", c->train_iters);
    if (!isnan(c->lr_warmup_fraction)) c->lr_warmup_steps = c->lr_warmup_fraction * (double)c->lr_decay_steps;
    else c->lr_warmup_steps = iters ? (double)c->lr_warmup_iters * (double)gbs : (double)c->lr_warmup_samples;
    if (!(c->lr_warmup_steps < (double)c->lr_decay_steps))
        return args_fail(err, errlen, "%s %" PRI ": warmup must end before the learning-rate decay ends (%s = %" PRI
                    "); lower the warmup or raise %s", iters ? "--lr-warmup-iters" : "--lr-warmup-samples",
                    iters ? c->lr_warmup_iters : c->lr_warmup_samples, iters ? "--lr-decay-iters" : "--lr-decay-samples",
                    iters ? c->lr_decay_iters : c->lr_decay_samples, iters ? "--lr-decay-iters" : "--lr-decay-samples");
    if (strcmp(c->lr_decay_style, "WSD") == 0 && wsd < 1)
        return args_fail(err, errlen, "--lr-decay-style WSD: needs the length of its annealing phase; add %s N",
                    iters ? "--lr-wsd-decay-iters" : "--lr-wsd-decay-samples");
    return 0;
}

static int finalize_weight_decay(struct config *c, char *err, size_t errlen)
{
    if (strcmp(c->weight_decay_incr_style, "constant") == 0) {
        if (!isnan(c->start_weight_decay) || !isnan(c->end_weight_decay))
            return args_fail(err, errlen, "%s: only used with --weight-decay-incr-style linear or cosine; remove it or set "
                        "the style", isnan(c->start_weight_decay) ? "--end-weight-decay" : "--start-weight-decay");
        c->start_weight_decay = c->end_weight_decay = c->weight_decay;
        return 0;
    }
    if (isnan(c->start_weight_decay) || isnan(c->end_weight_decay))
        return args_fail(err, errlen, "%s: required with --weight-decay-incr-style %s; add --start-weight-decay and "
                    "--end-weight-decay", isnan(c->start_weight_decay) ? "--start-weight-decay" : "--end-weight-decay",
                    c->weight_decay_incr_style);
    if (c->end_weight_decay < c->start_weight_decay)
        return args_fail(err, errlen, "--end-weight-decay %g: must be >= --start-weight-decay = %g; swap or change them",
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
            return args_fail(err, errlen, "--split %s: at most three proportions (train, valid, test); e.g. --split 949,50,1",
                        args_shown(c->split, b, sizeof b));
        memcpy(num, p, len);
        num[len] = '\0';
        if (args_parse_float(num, &v))
            return args_fail(err, errlen, "--split %s: '%s' is not a number; e.g. --split 949,50,1", args_shown(c->split, b, sizeof b), num);
        w[n++] = v;
        sum += v;
        p += len;
    }
    if (n == 0 || !(sum > 0))
        return args_fail(err, errlen, "--split %s: needs positive proportions; e.g. --split 949,50,1", args_shown(c->split, b, sizeof b));
    for (int i = 0; i < 3; i++) c->split_weights[i] = w[i] / sum;
    return 0;
}

static int finalize_tokenizer(struct config *c, enum subcommand cmd, char *err, size_t errlen)
{
    if (!c->tokenizer_type)
        return args_fail(err, errlen, "--tokenizer-type: missing (megatron %s needs it); add --tokenizer-type "
                    "GPT2BPETokenizer (with --vocab-file and --merge-file) or NullTokenizer (with --vocab-size)",
                    args_subcommand_name(cmd));
    if (strcmp(c->tokenizer_type, "NullTokenizer") == 0 && c->vocab_size < 1)
        return args_fail(err, errlen, "--vocab-size: required with --tokenizer-type NullTokenizer; add --vocab-size N");
    if (strcmp(c->tokenizer_type, "GPT2BPETokenizer") == 0 && (!c->vocab_file || !c->merge_file))
        return args_fail(err, errlen, "%s: required with --tokenizer-type GPT2BPETokenizer; add %s",
                    c->vocab_file ? "--merge-file" : "--vocab-file",
                    c->vocab_file ? "--merge-file merges.txt" : "--vocab-file vocab.json");
    return 0;
}

static int finalize_data(struct config *c, enum subcommand cmd, char *err, size_t errlen)
{
    if (c->seq_length < 1) return missing("--seq-length", cmd, "SEQ_LENGTH", err, errlen);
    int per_split = c->train_data_path_count + c->valid_data_path_count + c->test_data_path_count;
    if ((c->mock_data ? 1 : 0) + (c->data_path_count > 0 ? 1 : 0) + (per_split > 0 ? 1 : 0) > 1)
        return args_fail(err, errlen, "%s: cannot be combined with %s (a single data source must be provided); remove one "
                    "of them", c->mock_data ? "--mock-data" : "--data-path",
                    c->mock_data && c->data_path_count > 0 ? "--data-path" : "--train/valid/test-data-path");
    if (!c->mock_data && c->data_path_count == 0 && per_split == 0 && !c->eval_batch)
        return args_fail(err, errlen, "no training data: megatron %s needs --data-path PREFIX [PREFIX ...], "
                    "--train-data-path ... or --mock-data; add one of them", args_subcommand_name(cmd));
    if (per_split > 0 && c->train_data_path_count == 0 && cmd == CMD_PRETRAIN)
        return args_fail(err, errlen, "--valid-data-path/--test-data-path: need --train-data-path too; add it");
    if (cmd == CMD_PRETRAIN && c->reset_attention_mask)
        return args_fail(err, errlen, "--reset-attention-mask: not supported yet by the model (megatron samples shows the "
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
        return args_fail(err, errlen, "--save: needs --save-interval (iterations between checkpoints); add --save-interval N");
    if (c->override_opt_param_scheduler && c->use_checkpoint_opt_param_scheduler)
        return args_fail(err, errlen, "--override-opt_param-scheduler with --use-checkpoint-opt_param-scheduler: "
                         "both override and use-checkpoint are set (Megatron refuses this too); keep one");
    if (c->log_timers_to_tensorboard && c->timing_log_level >= 1)
        return args_fail(err, errlen, "--log-timers-to-tensorboard with --timing-log-level %" PRId64 ": the per-phase "
                         "timers are not written to TensorBoard yet (iteration-time and throughput are); use "
                         "--timing-log-level 0 with it", c->timing_log_level);
    if (c->save_retain_interval > 0 && c->save_interval > 0 && c->save_retain_interval % c->save_interval != 0)
        return args_fail(err, errlen, "--save-retain-interval %" PRId64 ": not a multiple of --save-interval %" PRId64
                         " (Megatron requires one); use a multiple of %" PRId64,
                         c->save_retain_interval, c->save_interval, c->save_interval);
    return 0;
}

static int finalize_preprocess(struct config *c, char *err, size_t errlen)
{
    if (!c->input) return missing("--input", CMD_PREPROCESS, "FILE.jsonl", err, errlen);
    if (!c->output_prefix) return missing("--output-prefix", CMD_PREPROCESS, "PREFIX", err, errlen);
    if (c->workers < 1) return missing("--workers", CMD_PREPROCESS, "N", err, errlen);
    if (c->workers % c->partitions != 0)
        return args_fail(err, errlen, "--workers %" PRI ": must be divisible by --partitions = %" PRI
                    "; use a multiple of %" PRI, c->workers, c->partitions, c->partitions);
    return finalize_tokenizer(c, CMD_PREPROCESS, err, errlen);
}

static int finalize_convert(struct config *c, char *err, size_t errlen)
{
    if (c->load_hf && (c->save_hf || c->load))
        return args_fail(err, errlen, "--load-hf: cannot be combined with %s; convert one direction at a time",
                    c->save_hf ? "--save-hf" : "--load");
    if (c->load_hf && !c->save) return args_fail(err, errlen, "--load-hf: needs --save (the checkpoint to write); add --save DIR");
    if (c->save_hf && c->save)
        return args_fail(err, errlen, "--save-hf: cannot be combined with --save; convert one direction at a time");
    if (c->save_hf && !c->load) return args_fail(err, errlen, "--save-hf: needs --load (the checkpoint to read); add --load DIR");
    if (!c->load_hf && !c->save_hf)
        return args_fail(err, errlen, "megatron convert: nothing to convert; give --load-hf DIR --save DIR or --load DIR "
                    "--save-hf DIR");
    return 0;
}

/* Everything that Megatron-LM accepts and this program does not do YET: each check here goes away
 * when its feature lands (context/expert parallelism, the
 * distributed optimizer and overlaps, checkpoints, more tokenizers, positions and optimizers). */
static int reject_not_yet_supported(const struct config *c, enum subcommand cmd, char *err, size_t errlen)
{
    const struct { const char *flag; int64_t v; const char *what; } sizes[] = {
        {"--context-parallel-size", c->context_parallel_size, "context"},
        {"--expert-model-parallel-size", c->expert_model_parallel_size, "expert"},
    };
    const struct { const char *flag; bool on; } flags[] = {
        {"--overlap-param-gather", c->overlap_param_gather},
    };
    if (cmd == CMD_PRETRAIN) {
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
            if (sizes[i].v > 1)
                return args_fail(err, errlen, "%s %" PRI ": %s parallelism is not supported yet; use %s 1", sizes[i].flag,
                            sizes[i].v, sizes[i].what, sizes[i].flag);
        for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
            if (flags[i].on) return args_fail(err, errlen, "%s: not supported yet; remove it", flags[i].flag);
    }
    if (cmd == CMD_PRETRAIN || cmd == CMD_PLAN) {
        if (strcmp(c->position_embedding_type, "learned_absolute") && strcmp(c->position_embedding_type, "rope") &&
            strcmp(c->position_embedding_type, "none"))
            return args_fail(err, errlen, "--position-embedding-type %s: not supported yet; use learned_absolute, rope or none",
                        c->position_embedding_type);
        if (strcmp(c->optimizer, "adam") && strcmp(c->optimizer, "sgd"))
            return args_fail(err, errlen, "--optimizer %s: not supported yet; use adam or sgd", c->optimizer);
        if (strcmp(c->transformer_impl, "inference_optimized") == 0)
            return args_fail(err, errlen, "--transformer-impl inference_optimized: not supported yet; use local or "
                        "transformer_engine (both select this program's implementation)");
    }
    if (cmd != CMD_PLAN && cmd != CMD_CONVERT && c->tokenizer_type &&
        strcmp(c->tokenizer_type, "GPT2BPETokenizer") && strcmp(c->tokenizer_type, "NullTokenizer"))
        return args_fail(err, errlen, "--tokenizer-type %s: not supported yet; use GPT2BPETokenizer or NullTokenizer",
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
    if (c->eval_batch && !c->skip_train)
        return args_fail(err, errlen, "--eval-batch: evaluates a model instead of training it; add --skip-train (and "
                    "--load CKPT)");
    if (c->eval_batch && c->world_size > 1)
        return args_fail(err, errlen, "--eval-batch: runs as one process, this job has %" PRI " ranks; run it "
                    "without mpirun", c->world_size);
    if (c->tensor_model_parallel_size == 1) c->sequence_parallel = false; /* Megatron: needs TP > 1 */
    if (c->sequence_parallel && c->seq_length % c->tensor_model_parallel_size != 0)
        return args_fail(err, errlen, "--sequence-parallel: --seq-length %" PRI " must be divisible by "
                    "--tensor-model-parallel-size = %" PRI "; change one of them", c->seq_length,
                    c->tensor_model_parallel_size);
    return 0;
}
