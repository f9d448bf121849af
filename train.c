/* The training loop of `megatron pretrain`, after Megatron's megatron/training/training.py:
 * pretrain -> train -> train_step / training_log / evaluate_and_print_results. */
#include "train.h"
#include "train_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ckpt/ckpt.h"
#include "ckpt/exit_signal.h"
#include "data/loader.h"
#include "data/tokenizer.h"
#include "kernels/rng.h"
#include "models/gpt.h"
#include "optim/optimizer.h"
#include "parallel/comm.h"
#include "parallel/ddp.h"
#include "parallel/grid.h"
#include "parallel/pipeline.h"
#include "parallel/schedules.h"
#include "kernels/arena.h"
#ifdef MEGATRON_CUDA
#include "kernels/cuda/cuda_ops.h"
#endif
#include "util/error.h"
#include "util/tensorboard.h"

/* Totals between two log lines, as training_log keeps them in total_loss_dict. */
struct log_interval_totals {
    double loss_sum;       /* sum of per-iteration lm loss over advanced iterations */
    int64_t advanced;
    int64_t skipped;
    int64_t nan;
    double seconds;
};

/* " [YYYY-MM-DD HH:MM:SS.ffffff]" as Python's datetime.now() prints it. */
static void print_timestamp(FILE *out)
{
    struct timespec ts;
    struct tm tm;
    char text[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    localtime_r(&ts.tv_sec, &tm);
    strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S", &tm);
    fprintf(out, " [%s.%06ld]", text, ts.tv_nsec / 1000);
}

void train_model_config(const struct config *cfg, int64_t vocab_size, struct model_config *mc)
{
    memset(mc, 0, sizeof *mc);
    mc->num_layers = (int)cfg->num_layers;
    mc->hidden_size = (int)cfg->hidden_size;
    mc->ffn_hidden_size = (int)cfg->ffn_hidden_size;
    mc->num_attention_heads = (int)cfg->num_attention_heads;
    mc->num_query_groups = (int)cfg->num_query_groups;
    mc->kv_channels = (int)cfg->kv_channels;
    mc->seq_length = (int)cfg->seq_length;
    mc->max_position_embeddings = (int)cfg->max_position_embeddings;
    mc->vocab_size = vocab_size;
    mc->padded_vocab_size = model_padded_vocab_size(vocab_size, cfg->make_vocab_size_divisible_by,
                                                    cfg->tensor_model_parallel_size);
    mc->normalization = strcmp(cfg->normalization, "RMSNorm") == 0 ? NORM_RMSNORM : NORM_LAYERNORM;
    mc->position_embedding = strcmp(cfg->position_embedding_type, "rope") == 0 ? POS_ROPE
                             : strcmp(cfg->position_embedding_type, "none") == 0 ? POS_NONE
                                                                                 : POS_LEARNED_ABSOLUTE;
    /* Megatron's MLP applies its fused bias-GeLU, the tanh approximation, unless --no-bias-gelu-fusion
       or --disable-bias-linear (then F.gelu, the erf form); --openai-gelu is the tanh form too */
    mc->activation = cfg->swiglu ? ACT_SWIGLU : cfg->openai_gelu || cfg->bias_gelu_fusion ? ACT_GELU_TANH : ACT_GELU;
    mc->add_bias_linear = cfg->add_bias_linear;
    mc->untie_embeddings_and_output_weights = cfg->untie_embeddings_and_output_weights;
    mc->norm_epsilon = (float)cfg->norm_epsilon;
    mc->rotary_base = (float)cfg->rotary_base;
    mc->rotary_percent = (float)cfg->rotary_percent;
    mc->hidden_dropout = (float)cfg->hidden_dropout;
    mc->attention_dropout = (float)cfg->attention_dropout;
    mc->init_method_std = (float)cfg->init_method_std;
    mc->seed = (uint64_t)cfg->seed;
    mc->fp16 = cfg->fp16;
    mc->positions_arange = !cfg->reset_position_ids; /* gpt_dataset.c's position ids */
}

static struct tokenizer *build_tokenizer(const struct config *cfg)
{
    struct tokenizer_options o = {cfg->tokenizer_type, cfg->vocab_file, cfg->merge_file, cfg->vocab_size};
    char err[512];
    struct tokenizer *t = tokenizer_create(&o, err, sizeof err);
    if (!t) die_user("%s", err);
    return t;
}

static void build_optimizer(struct trainer *t)
{
    const struct config *cfg = t->cfg;
    struct optimizer_options o;
    struct lr_schedule_flags f;
    memset(&o, 0, sizeof o);
    o.type = strcmp(cfg->optimizer, "sgd") == 0 ? OPTIMIZER_SGD : OPTIMIZER_ADAM;
    o.adam = adam_params_default();
    o.adam.beta1 = cfg->adam_beta1;
    o.adam.beta2 = cfg->adam_beta2;
    o.adam.eps = cfg->adam_eps;
    o.sgd_momentum = cfg->sgd_momentum;
    o.clip_grad = cfg->clip_grad;
    o.count_zeros = cfg->log_num_zeros_in_grad;
    o.params_dtype = cfg->params_dtype;
    o.norm_tp_group = t->model->tp.comm;
    o.norm_dp_group = cfg->use_distributed_optimizer ? t->dp : NULL;
    o.norm_pp_group = t->pp;
    if (cfg->fp16 && isnan(cfg->loss_scale))
        scaler_init_dynamic(&o.scaler, cfg->initial_loss_scale, cfg->min_loss_scale,
                            (int64_t)cfg->loss_scale_window, cfg->hysteresis);
    else
        scaler_init_constant(&o.scaler, cfg->fp16 ? cfg->loss_scale : 1.0);

    lr_schedule_flags_default(&f);
    f.lr = cfg->lr;
    f.min_lr = cfg->min_lr;
    f.lr_warmup_init = cfg->lr_warmup_init;
    f.lr_decay_style = cfg->lr_decay_style;
    f.lr_wsd_decay_style = cfg->lr_wsd_decay_style;
    f.train_iters = cfg->train_iters;
    f.train_samples = cfg->train_samples;
    f.global_batch_size = cfg->global_batch_size;
    f.lr_decay_iters = cfg->lr_decay_iters;
    f.lr_decay_samples = cfg->lr_decay_samples;
    f.lr_warmup_fraction = cfg->lr_warmup_fraction;
    f.lr_warmup_iters = cfg->lr_warmup_iters;
    f.lr_warmup_samples = cfg->lr_warmup_samples;
    f.lr_wsd_decay_iters = cfg->lr_wsd_decay_iters;
    f.lr_wsd_decay_samples = cfg->lr_wsd_decay_samples;
    f.weight_decay = cfg->weight_decay;
    if (strcmp(cfg->weight_decay_incr_style, "constant") != 0) { /* finalize fills them for constant */
        f.start_weight_decay = cfg->start_weight_decay;
        f.end_weight_decay = cfg->end_weight_decay;
    }
    f.weight_decay_incr_style = cfg->weight_decay_incr_style;
    lr_schedule_from_flags_or_die(&o.schedule, &f);
    struct buffer_range ranges[4];
    int n = ddp_owned_ranges(t->ddp, ranges, 4);
    t->optimizer = optimizer_create(t->model, &o, ranges, n);
}

/* Python's format of a float with a C format: "nan", "inf" ("NAN", "INF" for E formats) where C
 * would print "-nan". */
static const char *py_format(char *buf, size_t n, const char *fmt, double v, bool upper)
{
    if (isnan(v)) return upper ? "NAN" : "nan";
    if (isinf(v)) return v > 0 ? (upper ? "INF" : "inf") : (upper ? "-INF" : "-inf");
    snprintf(buf, n, fmt, v);
    return buf;
}

static void evaluate_and_print(struct trainer *t, enum data_split split, const char *prefix)
{
    int64_t test_consumed = 0;
    int64_t *consumed = split == SPLIT_VALID ? &t->consumed_valid_samples : &test_consumed;
    double loss = train_evaluate(t, split, consumed);
    char line[512];
    char value[32], ppl[32];
    /* math.exp(min(20, loss)): Python's min keeps 20 when loss is NaN */
    int len = snprintf(line, sizeof line, " validation loss at %s | lm loss value: %s | lm loss PPL: %s | ", prefix,
                       py_format(value, sizeof value, "%.6E", loss, true),
                       py_format(ppl, sizeof ppl, "%.6E", exp(loss < 20.0 ? loss : 20.0), true));
    char dashes[512];
    int n = len + 1 < (int)sizeof dashes ? len + 1 : (int)sizeof dashes - 1;
    memset(dashes, '-', (size_t)n);
    dashes[n] = 0;
    if (t->tb && split == SPLIT_VALID) { /* evaluate_and_print_results' scalars */
        tb_scalar(t->tb, "lm loss validation", loss, t->iteration);
        tb_scalar(t->tb, "lm loss validation vs samples", loss, t->consumed_train_samples);
        if (t->cfg->log_validation_ppl_to_tensorboard) {
            tb_scalar(t->tb, "lm loss validation ppl", exp(loss < 20.0 ? loss : 20.0), t->iteration);
            tb_scalar(t->tb, "lm loss validation ppl vs samples", exp(loss < 20.0 ? loss : 20.0),
                      t->consumed_train_samples);
        }
    }
    if (!t->out) return;
    fprintf(t->out, "%s\n%s\n%s\n", dashes, line, dashes);
    fflush(t->out);
}

/* A scalar against the iteration and against the consumed samples, as training_log writes both. */
static void tb_pair(struct trainer *t, const char *tag, double value)
{
    char vs[128];
    snprintf(vs, sizeof vs, "%s vs samples", tag);
    tb_scalar(t->tb, tag, value, t->iteration);
    tb_scalar(t->tb, vs, value, t->consumed_train_samples);
}

/* Megatron's training_log scalars of this iteration (every --tensorboard-log-interval): a skipped
 * step has no loss, gradient norm or count of zeros. */
static void tb_iteration(struct trainer *t, const struct step_result *r, double lm_loss, double params_norm)
{
    const struct config *cfg = t->cfg;
    tb_pair(t, "learning-rate", r->lr);
    tb_pair(t, "batch-size", (double)cfg->global_batch_size);
    if (!r->skipped) tb_pair(t, "lm loss", lm_loss);
    if (cfg->log_loss_scale_to_tensorboard) /* after the step, as the log line */
        tb_pair(t, "loss-scale", optimizer_loss_scale(t->optimizer));
    if (cfg->log_world_size_to_tensorboard) tb_pair(t, "world-size", (double)cfg->world_size);
    if (!r->skipped) tb_pair(t, "grad-norm", r->grad_norm);
    if (!r->skipped && cfg->log_num_zeros_in_grad) tb_pair(t, "num-zeros", r->num_zeros);
    if (cfg->log_params_norm) tb_pair(t, "params-norm", params_norm);
}

/* params_norm: --log-params-norm's value, printed where Megatron prints it (NaN: not asked for). */
static void print_log_line(struct trainer *t, const struct step_result *r, double params_norm,
                           struct log_interval_totals *tot)
{
    const struct config *cfg = t->cfg;
    double per_iter = tot->seconds / (double)cfg->log_interval;
    FILE *out = t->out;
    if (!out) {
        memset(tot, 0, sizeof *tot);
        return;
    }
    print_timestamp(out);
    fprintf(out, " iteration %8lld/%8lld |", (long long)t->iteration, (long long)cfg->train_iters);
    fprintf(out, " consumed samples: %12lld |", (long long)t->consumed_train_samples);
    fprintf(out, " elapsed time per iteration (ms): %.1f |", per_iter * 1000.0);
    if (cfg->log_throughput)
        fprintf(out, " throughput per GPU (TFLOP/s/GPU): %.1f |",
                t->flops_per_batch / (per_iter * 1e12 * (double)cfg->world_size));
    fprintf(out, " learning rate: %.6E |", r->lr);
    fprintf(out, " global batch size: %5lld |", (long long)cfg->global_batch_size);
    char num[32];
    if (tot->advanced > 0)
        fprintf(out, " lm loss: %s |", py_format(num, sizeof num, "%.6E", tot->loss_sum / (double)tot->advanced, true));
    fprintf(out, " loss scale: %.1f |", optimizer_loss_scale(t->optimizer));
    fprintf(out, " grad norm: %s |", py_format(num, sizeof num, "%.3f", r->grad_norm, false));
    if (cfg->log_num_zeros_in_grad && !r->skipped) /* Megatron has no count for a skipped step */
        fprintf(out, " num zeros: %.1f |", r->num_zeros);
    if (cfg->log_params_norm)
        fprintf(out, " params norm: %s |", py_format(num, sizeof num, "%.3f", params_norm, false));
    fprintf(out, " number of skipped iterations: %3lld |", (long long)tot->skipped);
    fprintf(out, " number of nan iterations: %3lld |\n", (long long)tot->nan);
    fflush(out);
    memset(tot, 0, sizeof *tot);
}

/* --timing-log-level: Megatron's "(min, max) time across ranks (ms)" block, per iteration over the
 * last log interval: the step's phases, then the time each group's communication took on this
 * rank (blocking host operations: their wall time, waiting for the other members included; GPU:
 * the time the NCCL kernels ran). Every rank takes part in the reduction; the last one prints. */
static void print_timers(struct trainer *t)
{
    static const struct { enum grid_group_kind kind; const char *name; } comm[] = {
        {GRID_TP, "tensor-parallel-communication"},
        {GRID_PP, "pipeline-parallel-communication"},
        {GRID_DP_CP, "data-parallel-communication"},
        {GRID_EMBEDDING, "embedding-grads-all-reduce"},
    };
    enum { PHASES = 3, COMMS = sizeof comm / sizeof comm[0], N = PHASES + COMMS };
    static const char *const phases[PHASES] = {"forward-backward", "all-grads-sync", "optimizer"};
    double seconds[GRID_NUM_KINDS] = {0}, v[2 * N];
    comm_timing_take(seconds);
    for (int i = 0; i < N; i++) {
        double x = 1000.0 * (i < PHASES ? t->phase_seconds[i] : seconds[comm[i - PHASES].kind]) /
                   (double)t->cfg->log_interval;
        v[i] = x;      /* max */
        v[N + i] = -x; /* -min */
    }
    memset(t->phase_seconds, 0, sizeof t->phase_seconds);
    struct comm_group *world = comm_group_get(GRID_WORLD);
    if (world) comm_all_reduce_max(world, v, 2 * N, COMM_F64);
    if (!t->out) return;
    fprintf(t->out, "(min, max) time across ranks (ms):\n");
    for (int i = 0; i < N; i++) {
        if (i >= PHASES && grid_group_size(&t->grid, comm[i - PHASES].kind) < 2) continue;
        char name[64];
        snprintf(name, sizeof name, "%s ", i < PHASES ? phases[i] : comm[i - PHASES].name);
        fprintf(t->out, "    %s", name);
        for (size_t k = strlen(name); k < 48; k++) fputc('.', t->out);
        fprintf(t->out, ": (%.2f, %.2f)\n", -v[N + i], v[i]);
    }
    fflush(t->out);
}

/* What a checkpoint saves of the trainer, and what a load restores. */
static struct ckpt_state ckpt_state_of(const struct trainer *t)
{
    struct ckpt_state s = {t->model, t->optimizer, t->cfg->params_dtype, t->iteration, t->consumed_train_samples,
                           t->consumed_valid_samples, t->cfg, NULL};
    return s;
}

static void load_checkpoint(struct trainer *t)
{
    struct ckpt_state s = ckpt_state_of(t);
    ckpt_load_for_training(t->cfg, &s, stdout);
    t->iteration = s.iteration;
    t->consumed_train_samples = s.consumed_train_samples;
    t->consumed_valid_samples = s.consumed_valid_samples;
}

#ifdef MEGATRON_CUDA
/* Python's str() of a float: the shortest digits that read back as v, with ".0" when integral. */
static const char *py_float(char *buf, size_t n, double v)
{
    for (int digits = 1; digits <= 17; digits++) {
        snprintf(buf, n, "%.*g", digits, v);
        if (strtod(buf, NULL) == v) break;
    }
    if (!strpbrk(buf, ".en")) strncat(buf, ".0", n - strlen(buf) - 1);
    return buf;
}
#endif

/* Megatron's report_memory after the first log interval (training.py:training_log), on every
 * rank of data-parallel rank 0 with a GPU: allocated is what the backend holds, reserved what the
 * device has in use by the driver's count (there is no caching allocator between the two). */
static void report_memory(const struct trainer *t)
{
#ifdef MEGATRON_CUDA
    if (t->model->device != DEV_CUDA || t->grid.dp_rank != 0) return;
    struct cuda_memory m = cuda_memory_report();
    const double mb = 1024.0 * 1024.0;
    char a[32], ma[32], r[32], mr[32];
    printf("[Rank %d] (after %lld iterations) memory (MB) | allocated: %s | max allocated: %s | reserved: %s | "
           "max reserved: %s\n", t->grid.rank, (long long)t->iteration, py_float(a, sizeof a, (double)m.allocated / mb),
           py_float(ma, sizeof ma, (double)m.max_allocated / mb), py_float(r, sizeof r, (double)m.in_use / mb),
           py_float(mr, sizeof mr, (double)m.max_in_use / mb));
    fflush(stdout);
#else
    (void)t;
#endif
}

/* Returns true when an exit condition (--exit-interval, --exit-duration-in-mins, a signal with
 * --exit-signal-handler) ended training: the program then stops as Megatron's sys.exit does. */
static bool train(struct trainer *t)
{
    const struct config *cfg = t->cfg;
    struct log_interval_totals tot = {0};
    bool do_valid = loader_num_samples(t->loader, SPLIT_VALID) > 0;
    double start = train_now_seconds();
    if (cfg->exit_signal_handler) exit_signal_install();
    bool memory_reported = false;
    while (t->iteration < cfg->train_iters) {
        double lm_loss;
        struct step_result r = train_step(t, &lm_loss);
#ifdef MEGATRON_CUDA
        if (t->model->device == DEV_CUDA) cuda_memory_sample();
#endif
        if (t->steps_run == 1 && t->grid.rank == 0) {
            /* no "iteration" in it: scripts count the log lines that hold one */
            printf(" > time from start-up to the end of the first training step: %.2f s\n",
                   train_now_seconds() - t->start_seconds);
            fflush(stdout);
        }
        t->iteration++;
        if (r.skipped) {
            tot.skipped++;
            if (!isfinite(lm_loss)) tot.nan++;
        } else {
            tot.loss_sum += lm_loss;
            tot.advanced++;
        }
        bool log_now = t->iteration % cfg->log_interval == 0;
        bool tb_now = cfg->tensorboard_dir && t->iteration % cfg->tensorboard_log_interval == 0;
        /* every rank takes part (the norm is all-reduced), inside the interval's time */
        double params_norm = cfg->log_params_norm && (log_now || tb_now) ? optimizer_params_norm(t->optimizer) : NAN;
        if (t->tb && tb_now) tb_iteration(t, &r, lm_loss, params_norm);
        if (log_now) {
            double now = train_now_seconds();
            tot.seconds = now - start;
            if (t->tb && cfg->log_timers_to_tensorboard) { /* training_log's, at its log lines */
                double per_iter = tot.seconds / (double)cfg->log_interval;
                tb_scalar(t->tb, "iteration-time", per_iter, t->iteration);
                if (cfg->log_throughput)
                    tb_scalar(t->tb, "throughput", t->flops_per_batch / (per_iter * 1e12 * (double)cfg->world_size),
                              t->iteration);
            }
            print_log_line(t, &r, params_norm, &tot);
            if (!memory_reported) report_memory(t);
            memory_reported = true;
            if (cfg->timing_log_level >= 1) print_timers(t);
            start = now;
        }
        if (cfg->eval_interval > 0 && t->iteration % cfg->eval_interval == 0 && do_valid) {
            double paused = train_now_seconds();
            char prefix[64];
            snprintf(prefix, sizeof prefix, "iteration %lld", (long long)t->iteration);
            evaluate_and_print(t, SPLIT_VALID, prefix);
            start += train_now_seconds() - paused; /* evaluation is not training time */
        }
        struct ckpt_state s = ckpt_state_of(t);
        if (ckpt_and_decide_exit(cfg, &s, (train_now_seconds() - t->start_seconds) / 60.0, stdout)) return true;
    }
    return false;
}

/* Megatron's memory formula for weights, grads and optimizer state per parameter
 * (docs/user-guide/features/dist_optimizer.md): fp32 main weights and Adam moments (12 bytes)
 * are divided over data-parallel ranks by the distributed optimizer. */
static double bytes_per_parameter(const struct config *cfg)
{
    double dp = cfg->use_distributed_optimizer ? (double)cfg->data_parallel_size : 1.0;
    if (cfg->params_dtype == DT_F32) return 4.0 + 12.0 / dp; /* fp32 weights double as main weights */
    return 6.0 + 12.0 / dp;                                  /* bf16/fp16 weights, fp32 grads */
}

/* This rank's index among the ranks of its node, from the launcher (Open MPI, SLURM, MPICH), so
 * each rank takes its own GPU; the world rank when no launcher says. */
static int local_rank(const struct grid *g)
{
    const char *names[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *v = getenv(names[i]);
        if (v && *v) return atoi(v);
    }
    return g->rank;
}

#ifdef MEGATRON_CUDA
/* --deterministic-mode on the GPU: every kernel chosen for the same bits run after run (the CPU
 * backend's are so already). Attention's backward is then our own, which takes bf16, head
 * dimension 64, no grouped query attention, no attention dropout and sequences of a multiple of
 * 128 on a Hopper GPU: anything else is refused before the first step. */
static void deterministic_on_gpu(const struct config *cfg)
{
    cuda_set_deterministic();
    struct attention_shape s;
    memset(&s, 0, sizeof s);
    s.batch = cfg->micro_batch_size;
    s.seq = cfg->seq_length / cfg->context_parallel_size;
    s.heads = (int)(cfg->num_attention_heads / cfg->tensor_model_parallel_size);
    s.groups = (int)(cfg->num_query_groups / cfg->tensor_model_parallel_size);
    s.head_dim = (int)cfg->kv_channels;
    if (!cuda_attention_flash_backward_applies(s, cfg->bf16 ? DT_BF16 : DT_F16,
                                               (float)cfg->attention_dropout))
        die_user("--deterministic-mode on the GPU: its attention backward takes --bf16, a head dimension "
                 "(--kv-channels) of 64, no --group-query-attention, --attention-dropout 0 and a sequence "
                 "length of a multiple of 128 on a Hopper (sm_90) GPU, and this run has %s, head dimension "
                 "%d, %d query groups for %d heads, attention dropout %g, sequence %lld; change those, or "
                 "drop --deterministic-mode (or use --device cpu, which is deterministic)",
                 cfg->bf16 ? "bf16" : "fp16", s.head_dim, s.groups, s.heads, cfg->attention_dropout,
                 (long long)s.seq);
}
#endif

/* --device auto|cpu|cuda: the GPU when this build has the CUDA backend and the machine a GPU;
 * one GPU per rank, trained in bf16 or fp16, ranks talking over NCCL. */
static enum device select_device(const struct config *cfg, const struct grid *g)
{
    bool want = strcmp(cfg->device, "cuda") == 0, maybe = strcmp(cfg->device, "auto") == 0;
    int gpus = 0;
#ifdef MEGATRON_CUDA
    if (want || maybe) gpus = cuda_device_count();
#endif
    if (want && gpus == 0)
        die_user("--device cuda: no GPU found, or this build has no CUDA backend; use --device cpu");
    if (!want && !(maybe && gpus > 0)) return DEV_CPU;
    if (!cfg->bf16 && !cfg->fp16) {
        if (want)
            die_user("--device cuda: the CUDA backend trains in bf16 or fp16; add --bf16 or --fp16 (or use --device cpu)");
        if (g->rank == 0)
            warn_user("--device auto: %d GPU(s) here, but the CUDA backend trains in bf16 or fp16 only (this run is "
                      "fp32); training on the CPU, which is far slower: add --bf16 or --fp16 to use the GPU, or "
                      "--device cpu to silence this", gpus);
        return DEV_CPU;
    }
    int local = local_rank(g);
    if (local >= gpus)
        die_user("rank %d is local rank %d of its node, which has %d GPU(s): launch at most %d ranks per node "
                 "(or use --device cpu)", g->rank, local, gpus, gpus);
#ifdef MEGATRON_CUDA
    cuda_init(local);
    if (cfg->deterministic_mode) deterministic_on_gpu(cfg);
#endif
    if (g->world_size > 1) comm_nccl_init(); /* after the device is chosen: NCCL binds to it */
    return DEV_CUDA;
}

/* The process grid and the groups this rank belongs to. */
static void setup_parallel(struct trainer *t, struct tp_group *tp)
{
    const struct config *cfg = t->cfg;
    char err[512];
    if (grid_init(&t->grid, comm_world_size(), comm_world_rank(), (int)cfg->tensor_model_parallel_size,
                  (int)cfg->pipeline_model_parallel_size, (int)cfg->context_parallel_size,
                  (int)cfg->expert_model_parallel_size, cfg->use_tp_pp_dp_mapping, err, sizeof err))
        die_user("%s", err);
    grid_set_current(&t->grid);
    comm_set_timeout(60.0 * (double)cfg->distributed_timeout_minutes);
    comm_groups_create();
    comm_timing_enable(cfg->timing_log_level >= 1);
    *tp = tp_group_single();
    tp->size = t->grid.tp;
    tp->rank = t->grid.tp_rank;
    tp->sequence_parallel = cfg->sequence_parallel;
    tp->comm = t->grid.tp > 1 ? comm_group_get(GRID_TP) : NULL;
    t->dp = t->grid.dp > 1 ? comm_group_get(GRID_DP_CP) : NULL;
    t->pp = t->grid.pp > 1 ? comm_group_get(GRID_PP) : NULL;
    /* tied embeddings live on the first and the last stage: their gradients meet over this group */
    t->embedding = t->grid.pp > 1 && !cfg->untie_embeddings_and_output_weights ? comm_group_get(GRID_EMBEDDING) : NULL;
    if (pipeline_spec_from_config(cfg, &t->pipeline, err, sizeof err)) die_user("%s", err);
    pipeline_schedule_build(&t->schedule, &t->pipeline);
    t->last_stage = t->grid.pp_rank == t->grid.pp - 1;
}

/* The chunks of this pipeline rank: their layers, which ends of the model they hold, and how many
 * micro batches' activations the schedule keeps on each. */
static struct gpt_chunk_spec *stage_chunks(const struct trainer *t)
{
    const struct pipeline_spec *p = &t->pipeline;
    int r = t->grid.pp_rank;
    struct pipeline_memory *mem = xcalloc((size_t)p->vp, sizeof *mem);
    struct gpt_chunk_spec *chunks = xcalloc((size_t)p->vp, sizeof *chunks);
    pipeline_table_memory(&t->schedule.tables[r], p->vp, p->num_micro_batches, mem);
    for (int v = 0; v < p->vp; v++) {
        struct gpt_chunk_spec *c = &chunks[v];
        c->num_layers = pipeline_layers(p, r, v, &c->first_layer);
        c->pre_process = pipeline_holds_embedding(p, r, v);
        c->post_process = pipeline_holds_loss(p, r, v);
        c->num_slots = mem[v].activations > 0 ? mem[v].activations : 1;
    }
    free(mem);
    return chunks;
}

/* The datasets, training (unless --skip-train) and the final validation and test losses. */
static void train_and_evaluate(struct trainer *t, const struct model_config *mc, int64_t vocab, int64_t eod, FILE *out)
{
    const struct config *cfg = t->cfg;
    bool first = t->grid.rank == 0;
    t->loader = loader_create(cfg, vocab, eod);
    t->flops_per_batch = model_flops_per_batch(mc, cfg->global_batch_size);
    train_alloc_buffers(t);
    fflush(out);

    bool exited = false;
    if (cfg->skip_train) {
        if (first) fprintf(out, "skipping training (--skip-train is on) ...\n");
    } else {
        if (first) fprintf(out, "training ...\n");
        fflush(out);
        exited = train(t);
        if (!exited && cfg->save && t->iteration != 0 && t->iteration % cfg->save_interval != 0) {
            struct ckpt_state s = ckpt_state_of(t);
            ckpt_save_for_training(cfg, &s, stdout);
        }
    }
    char prefix[96];
    if (!exited && loader_num_samples(t->loader, SPLIT_VALID) > 0 && cfg->eval_iters > 0) {
        snprintf(prefix, sizeof prefix, "iteration %lld on validation set", (long long)t->iteration);
        evaluate_and_print(t, SPLIT_VALID, prefix);
    }
    if (!exited && loader_num_samples(t->loader, SPLIT_TEST) > 0 && cfg->eval_iters > 0) {
        snprintf(prefix, sizeof prefix, "iteration %lld on test set", (long long)t->iteration);
        evaluate_and_print(t, SPLIT_TEST, prefix);
    }

    train_free_buffers(t);
    loader_free(t->loader);
}

int pretrain_main(const struct config *cfg, FILE *out)
{
    struct trainer t;
    struct model_config mc;
    struct tp_group tp;
    memset(&t, 0, sizeof t);
    t.cfg = cfg;
    t.start_seconds = train_now_seconds();
    setup_parallel(&t, &tp);
    bool first = t.grid.rank == 0;
    t.out = t.grid.rank == t.grid.world_size - 1 ? out : NULL; /* print_rank_last */
    if (cfg->tensorboard_dir && t.grid.rank == t.grid.world_size - 1) {
        char err[512];
        t.tb = tb_open(cfg->tensorboard_dir, cfg->tensorboard_queue_size, err, sizeof err);
        if (!t.tb)
            die_user("--tensorboard-dir %s: %s; point it at a directory this user can write", cfg->tensorboard_dir,
                     err);
    }

    struct tokenizer *tok = build_tokenizer(cfg);
    int64_t vocab = tokenizer_vocab_size(tok), eod = tokenizer_eod(tok);
    tokenizer_free(tok);
    train_model_config(cfg, vocab, &mc);
    if (first) {
        fprintf(out, " > padded vocab (size: %lld) with %lld dummy tokens (new size: %lld)\n", (long long)vocab,
                (long long)(mc.padded_vocab_size - vocab), (long long)mc.padded_vocab_size);
        fprintf(out, "building GPT model ...\n");
    }
    struct eval_batch *eval = cfg->eval_batch ? train_eval_batch_open(cfg, &mc) : NULL;
    struct gpt_chunk_spec *chunks = stage_chunks(&t);
    t.model = gpt_create_stage(&mc, cfg->micro_batch_size, select_device(cfg, &t.grid), &tp, t.grid.dp, chunks,
                               t.pipeline.vp);
    free(chunks);
    t.runner = schedule_create(t.model, &t.schedule, t.grid.pp_rank, t.pp, cfg->overlap_p2p_comm);
    gpt_init_weights(t.model);
    if (t.grid.dp_rank == 0)
        fprintf(out, " > number of parameters on (tensor, pipeline) model parallel rank (%d, %d): %lld\n", t.grid.tp_rank,
               t.grid.pp_rank, (long long)t.model->numel);
    if (first)
        fprintf(out, " > weights, grads and optimizer state: %.1f bytes/parameter (Megatron's formula) = %.3f GiB per rank\n",
               bytes_per_parameter(cfg), bytes_per_parameter(cfg) * (double)t.model->numel / 1073741824.0);
    /* Megatron's default bucket: max(40M, 1M x dp) parameters */
    int64_t bucket = cfg->ddp_bucket_size > 0 ? cfg->ddp_bucket_size
                                              : (t.grid.dp > 40 ? 1000000LL * t.grid.dp : 40000000LL);
    t.ddp = ddp_create(t.model, t.dp, bucket, cfg->use_distributed_optimizer, cfg->overlap_grad_reduce,
                       cfg->grad_reduce_in_bf16);
    build_optimizer(&t);
    if (cfg->load || cfg->pretrained_checkpoint) load_checkpoint(&t);
    if (eval) train_eval_batch_run(eval, t.model, out); /* with --skip-train: the file's batch, no datasets */
    else train_and_evaluate(&t, &mc, vocab, eod, out);
    optimizer_free(t.optimizer);
    ddp_free(t.ddp);
    schedule_free(t.runner);
    gpt_free(t.model);
    pipeline_schedule_free(&t.schedule);
    tb_close(t.tb);
    comm_groups_free();
    return 0;
}
