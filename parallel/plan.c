/* `megatron plan`: prints the process grid of a world size (Megatron's groups), and per rank the
 * parameters as tensor and pipeline parallelism split them, Megatron's memory formula for
 * weights + grads + optimizer state, and the model FLOPs of one iteration. */
#include "parallel/plan.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer.h"
#include "models/model_config.h"
#include "parallel/grid.h"
#include "parallel/pipeline.h"
#include "parallel/pipeline_check.h"
#include "train.h"
#include "util/error.h"

/* Parameters of one rank (Megatron's GPT: the embeddings on the first pipeline stage, the final
 * norm and output layer on the last, L/PP transformer layers on every stage), as the part that
 * tensor parallelism splits (this rank's share) and the part every TP rank holds whole. */
struct rank_params {
    int64_t layers;
    int64_t split, whole, total;
};

/* Column-parallel layers (QKV, fc1) split their weight and bias by TP; row-parallel ones (proj,
 * fc2) split their weight and keep the bias whole; norms and position embeddings are whole on
 * every TP rank; the word embedding and output layer are split by vocabulary (Megatron-Core's
 * tensor_parallel/layers.py). Mirrors models/model_config.c:model_num_parameters. */
static struct rank_params params_on_rank(const struct model_config *c, const struct grid *g,
                                         const struct pipeline_spec *ps, int pp_rank)
{
    struct rank_params p;
    int64_t h = c->hidden_size, tp = g->tp, nd = (int64_t)c->num_attention_heads * c->kv_channels;
    int64_t qkv = (int64_t)(c->num_attention_heads + 2 * c->num_query_groups) * c->kv_channels;
    int64_t f = c->ffn_hidden_size, f1 = c->activation == ACT_SWIGLU ? 2 * f : f;
    int64_t norm = c->normalization == NORM_LAYERNORM ? 2 * h : h;
    int64_t bias = c->add_bias_linear ? 1 : 0;
    memset(&p, 0, sizeof p);
    p.layers = pipeline_rank_layers(ps, pp_rank);
    p.split = p.layers * (qkv * h + bias * qkv + h * nd + f1 * h + bias * f1 + h * f) / tp;
    p.whole = p.layers * (2 * norm + bias * h + bias * h);
    if (pp_rank == 0) {
        p.split += c->padded_vocab_size * h / tp;
        if (c->position_embedding == POS_LEARNED_ABSOLUTE) p.whole += (int64_t)c->max_position_embeddings * h;
    }
    if (pp_rank == g->pp - 1) {
        p.whole += norm;
        /* untied: the output layer; tied across stages: the last stage's copy of the word
         * embedding, kept equal through the embedding group */
        if (c->untie_embeddings_and_output_weights || g->pp > 1) p.split += c->padded_vocab_size * h / tp;
    }
    p.total = p.split + p.whole;
    return p;
}

/* One model replica's ranks hold every parameter once (whole parts once per TP group), plus the
 * tied embedding's copy on the last stage: a model change this plan does not know is a bug here. */
static void check_params_add_up(const struct model_config *c, const struct grid *g, const struct pipeline_spec *ps)
{
    int64_t sum = 0;
    for (int s = 0; s < g->pp; s++) {
        struct rank_params p = params_on_rank(c, g, ps, s);
        sum += p.split * g->tp + p.whole;
    }
    if (!c->untie_embeddings_and_output_weights && g->pp > 1) sum -= c->padded_vocab_size * c->hidden_size;
    if (sum != model_num_parameters(c))
        BUG("plan: per-rank parameters add up to %" PRId64 ", the model has %" PRId64, sum, model_num_parameters(c));
}

/* Bytes per parameter for weights + grads + optimizer state, Megatron's table
 * (docs/user-guide/features/dist_optimizer.md): bf16/fp16 weights with fp32 grads 2 + 4 + 12 = 18,
 * or 6 + 12/d with the distributed optimizer; fp32 4 + 4 + 8 = 16, or 8 + 8/d; d = the DP x CP
 * ranks that shard the fp32 main weights and Adam moments. SGD keeps one momentum buffer instead of
 * two moments. The formula goes to `text`. */
static double bytes_per_param(const struct config *cfg, const struct grid *g, char *text, size_t n)
{
    double weight = cfg->params_dtype == DT_F32 ? 4 : 2, grad = 4;
    double main_weight = cfg->params_dtype == DT_F32 ? 0 : 4;
    double state = strcmp(cfg->optimizer, "sgd") == 0 ? (cfg->sgd_momentum != 0 ? 4 : 0) : 8;
    double shards = cfg->use_distributed_optimizer ? (double)g->dp * g->cp : 1;
    snprintf(text, n, "%g (%s weights) + %g (fp32 grads) + %g%s (%s%s)", weight, dtype_name(cfg->params_dtype), grad,
             main_weight + state, cfg->use_distributed_optimizer ? "/(DP x CP)" : "",
             main_weight > 0 ? "fp32 main weights, " : "",
             strcmp(cfg->optimizer, "sgd") == 0 ? "SGD momentum" : "Adam moments");
    return weight + grad + (main_weight + state) / shards;
}

/* Layers of a rank, chunk by chunk: "0-3,8-11" (pipeline_layers: Megatron's
 * get_transformer_layer_offset). */
static void format_layers(const struct pipeline_spec *ps, int pp_rank, char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int v = 0; v < ps->vp && used + 48 < n; v++) {
        int64_t first, count = pipeline_layers(ps, pp_rank, v, &first);
        if (count == 1) used += (size_t)snprintf(buf + used, n - used, "%s%" PRId64, v ? "," : "", first);
        else used += (size_t)snprintf(buf + used, n - used, "%s%" PRId64 "-%" PRId64, v ? "," : "", first,
                                      first + count - 1);
    }
}

/* The tokenizer's vocabulary (read from its files as pretrain does), or --vocab-size. */
static int64_t plan_vocab_size(const struct config *cfg)
{
    if (!cfg->tokenizer_type) {
        if (cfg->vocab_size > 0) return cfg->vocab_size;
        die_user("--vocab-size: missing (megatron plan needs the vocabulary size); add --vocab-size N, or "
                 "--tokenizer-type with its files");
    }
    struct tokenizer_options o = {cfg->tokenizer_type, cfg->vocab_file, cfg->merge_file, cfg->vocab_size};
    char err[512];
    struct tokenizer *t = tokenizer_create(&o, err, sizeof err);
    if (!t) die_user("%s", err);
    int64_t v = tokenizer_vocab_size(t);
    tokenizer_free(t);
    return v;
}

static void print_groups(FILE *f, const struct grid *g)
{
    int *members = xmalloc((size_t)g->world_size * sizeof *members);
    fprintf(f, "\ngroups (as Megatron-Core's parallel_state forms them; members by rank within the group):\n");
    for (int k = 0; k < GRID_NUM_KINDS; k++) {
        bool expert = k >= GRID_EP && k <= GRID_EXPERT_DP;
        if (k == GRID_WORLD || (expert && g->ep == 1)) continue;
        fprintf(f, "  %-19s", grid_group_name((enum grid_group_kind)k));
        int n = grid_num_groups(g, (enum grid_group_kind)k);
        for (int i = 0; i < n; i++) {
            int size = grid_group_members(g, (enum grid_group_kind)k, i, members, g->world_size);
            fputs(" [", f);
            for (int j = 0; j < size; j++) fprintf(f, "%s%d", j ? "," : "", members[j]);
            fputc(']', f);
        }
        fputc('\n', f);
    }
    if (g->ep == 1) fprintf(f, "  (the expert groups ep, expert-tp, expert-dp, ... are listed with EP > 1)\n");
    free(members);
}

static void print_ranks(FILE *f, const struct config *cfg, const struct grid *g, const struct model_config *mc,
                        const struct pipeline_spec *ps)
{
    char formula[160];
    double bpp = bytes_per_param(cfg, g, formula, sizeof formula);
    double flops = model_flops_per_batch(mc, cfg->global_batch_size) / g->world_size;
    char layers[256];
    fprintf(f, "\nper rank (parameters: as TP and PP split them, exact for this model;\n"
               "          memory: weights + grads + optimizer state, %s = %.4g bytes per parameter,\n"
               "                  Megatron's formula (docs/user-guide/features/dist_optimizer.md);\n"
               "          FLOPs: the model's FLOPs per iteration (num_floating_point_operations) / %d ranks):\n",
            formula, bpp, g->world_size);
    fprintf(f, "  %5s %3s %3s %3s %3s  %-16s %15s %14s %14s\n", "rank", "tp", "cp", "dp", "pp", "layers", "parameters",
            "memory (MB)", "FLOPs/iter");
    for (int r = 0; r < g->world_size; r++) {
        struct grid_coords c = grid_coords_of(g, r);
        struct rank_params p = params_on_rank(mc, g, ps, c.pp);
        format_layers(ps, c.pp, layers, sizeof layers);
        fprintf(f, "  %5d %3d %3d %3d %3d  %-16s %15" PRId64 " %14.2f %14.4e\n", r, c.tp, c.cp, c.dp, c.pp, layers,
                p.total, (double)p.total * bpp / (1024.0 * 1024.0), flops);
    }
}

/* Tables larger than this many compute actions (all ranks) are described, not built. */
#define PLAN_MAX_COMPUTE_ACTIONS 2000000
/* Compute actions printed per rank before the middle of the list is elided. */
#define PLAN_SHOWN_ACTIONS 64

/* Forward time of each (rank, chunk) for the simulation: 1 for a chunk of L / (PP x vp) layers,
 * in proportion otherwise (an uneven split). */
static double *chunk_costs(const struct pipeline_spec *ps)
{
    double *cost = xmalloc((size_t)ps->pp * (size_t)ps->vp * sizeof *cost);
    double mean = (double)ps->num_layers / ((double)ps->pp * ps->vp);
    for (int r = 0; r < ps->pp; r++)
        for (int v = 0; v < ps->vp; v++) cost[r * ps->vp + v] = (double)pipeline_layers(ps, r, v, NULL) / mean;
    return cost;
}

/* "0-3 (chunk 0, embedding), 8-11 (chunk 1)" */
static void print_stage_layers(FILE *f, const struct pipeline_spec *ps, int r)
{
    for (int v = 0; v < ps->vp; v++) {
        int64_t first, count = pipeline_layers(ps, r, v, &first);
        bool emb = pipeline_holds_embedding(ps, r, v), loss = pipeline_holds_loss(ps, r, v);
        char chunk[24] = "";
        if (ps->vp > 1) snprintf(chunk, sizeof chunk, "chunk %d%s", v, emb || loss ? ", " : "");
        fprintf(f, "%s", v ? ", " : "");
        if (count == 1) fprintf(f, "%" PRId64, first);
        else fprintf(f, "%" PRId64 "-%" PRId64, first, first + count - 1);
        if (ps->vp > 1 || emb || loss)
            fprintf(f, " (%s%s%s%s)", chunk, emb ? "embedding" : "", emb && loss ? ", " : "",
                    loss ? "output layer and loss" : "");
    }
}

static void print_schedule_header(FILE *f, const struct pipeline_schedule *sc, const struct pipeline_spec *ps,
                                  bool uneven)
{
    double textbook = (double)(ps->pp - 1) / ((double)ps->vp * ps->num_micro_batches);
    fprintf(f, "\npipeline schedule: %s, PP %d", pipeline_kind_name(sc->kind), ps->pp);
    if (ps->vp > 1) fprintf(f, " x %d virtual stages (micro batches in groups of %d)", ps->vp, ps->group_size);
    fprintf(f, ", %d micro batches per iteration\n", ps->num_micro_batches);
    fprintf(f, "  F<m>.<c> / B<m>.<c>: forward / backward of micro batch m on the rank's model chunk c; '|' separates "
               "warm-up, steady 1F1B and cool-down\n");
    fprintf(f, "  bubble: idle / total time of the tables run together with a chunk's forward taking %s and its "
               "backward twice that, communication free; the textbook (PP - 1) / (vp x M) = %.4g of the compute is "
               "%.1f%% of the time\n", uneven ? "time in proportion to its layers" : "1 time unit", textbook,
            100.0 * textbook / (1.0 + textbook));
}

/* Each pp rank's layers, its table of compute actions and the bubble the tables predict. */
static void print_pipeline_schedule(FILE *f, const struct pipeline_spec *ps)
{
    if (ps->pp == 1) {
        fprintf(f, "\npipeline schedule: none (PP 1): every rank runs forward_backward_no_pipelining over %d micro "
                   "batches per iteration\n", ps->num_micro_batches);
        return;
    }
    if ((double)ps->num_micro_batches * ps->vp * ps->pp * 2 > PLAN_MAX_COMPUTE_ACTIONS) {
        fprintf(f, "\npipeline schedule: %d micro batches x %d model chunks per rank x %d ranks are too many to "
                   "tabulate here; "
                   "textbook bubble (PP - 1) / (vp x M) = %.4g of the compute\n", ps->num_micro_batches, ps->vp, ps->pp,
                (double)(ps->pp - 1) / ((double)ps->vp * ps->num_micro_batches));
        return;
    }
    struct pipeline_schedule sc;
    struct pipeline_rank_stats *stats = xcalloc((size_t)ps->pp, sizeof *stats);
    bool uneven = ps->first_stage_layers >= 0 || ps->last_stage_layers >= 0;
    double *cost = chunk_costs(ps), makespan;
    char err[512];
    pipeline_schedule_build(&sc, ps);
    if (pipeline_simulate(&sc, cost, stats, &makespan, err, sizeof err)) BUG("plan: schedule table: %s", err);
    print_schedule_header(f, &sc, ps, uneven);
    for (int r = 0; r < ps->pp; r++) {
        fprintf(f, "  pp rank %d: layers ", r);
        print_stage_layers(f, ps, r);
        fprintf(f, "; warm-up %d forward%s, at most %d micro-batch chunk%s alive, bubble %.1f%%\n    ",
                sc.tables[r].num_warmup, sc.tables[r].num_warmup == 1 ? "" : "s", stats[r].peak_alive,
                stats[r].peak_alive == 1 ? "" : "s", 100.0 * stats[r].bubble);
        pipeline_table_format(&sc.tables[r], PLAN_SHOWN_ACTIONS, f);
        fputc('\n', f);
    }
    pipeline_schedule_free(&sc);
    free(stats);
    free(cost);
}

int plan_main(const struct config *cfg)
{
    struct grid g;
    struct model_config mc;
    struct pipeline_spec ps;
    char err[512];
    if (cfg->world_size > INT_MAX)
        die_user("--world-size %" PRId64 ": too large; plan at most %d ranks", cfg->world_size, INT_MAX);
    if (grid_init(&g, (int)cfg->world_size, 0, (int)cfg->tensor_model_parallel_size,
                  (int)cfg->pipeline_model_parallel_size, (int)cfg->context_parallel_size,
                  (int)cfg->expert_model_parallel_size, cfg->use_tp_pp_dp_mapping, err, sizeof err))
        die_user("%s", err);
    if (pipeline_spec_from_config(cfg, &ps, err, sizeof err)) die_user("%s", err);
    train_model_config(cfg, plan_vocab_size(cfg), &mc);
    check_params_add_up(&mc, &g, &ps);
    FILE *f = stdout;
    fprintf(f, "megatron plan: %d ranks; GPT with %d layers, hidden %d, %d heads (%d query groups), ffn %d, seq %d, "
               "padded vocabulary %" PRId64 "; %" PRId64 " parameters\n",
            g.world_size, mc.num_layers, mc.hidden_size, mc.num_attention_heads, mc.num_query_groups,
            mc.ffn_hidden_size, mc.seq_length, mc.padded_vocab_size, model_num_parameters(&mc));
    fprintf(f, "layout: TP %d x CP %d x PP %d x DP %d = %d ranks, EP %d, rank order %s\n", g.tp, g.cp, g.pp, g.dp,
            g.world_size, g.ep, grid_order_name(&g));
    fprintf(f, "batch: global batch %" PRId64 " = micro batch %" PRId64 " x DP %d x %" PRId64
               " micro batches per global batch\n",
            cfg->global_batch_size, cfg->micro_batch_size, g.dp, cfg->num_micro_batches);
    fprintf(f, "precision: %s weights, fp32 grads; optimizer %s%s\n", dtype_name(cfg->params_dtype), cfg->optimizer,
            cfg->use_distributed_optimizer ? ", distributed over DP x CP" : "");
    print_groups(f, &g);
    print_ranks(f, cfg, &g, &mc, &ps);
    print_pipeline_schedule(f, &ps);
    return 0;
}
