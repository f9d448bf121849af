/* What save and load share (paths, the tracker, metadata reading, dtype names) and the glue that
 * `pretrain` calls (Megatron's messages, flags -> options, one-line errors). Contract in ckpt.h;
 * the save itself is in save.c, the load in load.c. */
#include "ckpt/ckpt.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "ckpt/dirs.h"
#include "ckpt/exit_signal.h"
#include "parallel/comm.h"
#include "parallel/grid.h"
#include "util/error.h"

struct ckpt_rank ckpt_rank_single(void)
{
    struct ckpt_rank r = {0, 1, 0, 0, false, NULL, NULL, NULL};
    return r;
}

static void world_barrier(void *ctx) { comm_barrier(ctx); }

/* Sums mod 2^64 through the int64 sum: 32-bit halves cannot overflow for fewer than 2^31 ranks. */
static void world_sum_u64(uint64_t *v, size_t n, void *ctx)
{
    int64_t *halves = xmalloc(2 * (n ? n : 1) * sizeof *halves);
    for (size_t i = 0; i < n; i++) {
        halves[2 * i] = (int64_t)(v[i] & 0xffffffffu);
        halves[2 * i + 1] = (int64_t)(v[i] >> 32);
    }
    comm_all_reduce_sum(ctx, halves, 2 * n, COMM_I64);
    for (size_t i = 0; i < n; i++) v[i] = (uint64_t)halves[2 * i] + ((uint64_t)halves[2 * i + 1] << 32);
    free(halves);
}

struct ckpt_rank ckpt_rank_current(const struct config *cfg)
{
    struct ckpt_rank r = ckpt_rank_single();
    const struct grid *g = grid_current();
    if (!g || g->world_size == 1) return r;
    struct comm_group *world = comm_group_get(GRID_WORLD), *dp_cp = comm_group_get(GRID_DP_CP);
    r.rank = g->rank;
    r.world_size = g->world_size;
    r.tp_rank = g->tp_rank;
    r.dp_rank = dp_cp ? comm_rank(dp_cp) : g->dp_rank;
    r.optimizer_sharded = cfg->use_distributed_optimizer;
    r.barrier = world_barrier;
    r.sum_u64 = world_sum_u64;
    r.ctx = world;
    return r;
}

enum st_dtype ckpt_st_dtype(enum dtype dt)
{
    return dt == DT_BF16 ? ST_BF16 : dt == DT_F16 ? ST_F16 : ST_F32;
}

enum dtype ckpt_dtype(enum st_dtype dt)
{
    return dt == ST_BF16 ? DT_BF16 : dt == ST_F16 ? DT_F16 : DT_F32;
}

void ckpt_paths(const char *dir, bool release, int64_t iteration, char final[CKPT_PATH_MAX], char tmp[CKPT_PATH_MAX],
                char old[CKPT_PATH_MAX])
{
    char name[32];
    if (release) snprintf(name, sizeof name, "release");
    else snprintf(name, sizeof name, "iter_%07" PRId64, iteration); /* Megatron's iter_{:07d} */
    snprintf(final, CKPT_PATH_MAX, "%.4096s/%s", dir, name);
    snprintf(tmp, CKPT_PATH_MAX, "%.4096s/.%s.tmp", dir, name);
    snprintf(old, CKPT_PATH_MAX, "%.4096s/.%s.old", dir, name);
}

/* The tracker's text: an iteration number or "release", surrounding whitespace allowed. */
static int parse_tracker(const char *text, struct ckpt_location *loc)
{
    while (isspace((unsigned char)*text)) text++;
    size_t n = strlen(text);
    while (n > 0 && isspace((unsigned char)text[n - 1])) n--;
    if (n == 7 && strncmp(text, "release", 7) == 0) {
        loc->release = true;
        return 0;
    }
    if (n == 0 || n > 15) return -1;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)text[i])) return -1;
        v = v * 10 + (text[i] - '0');
    }
    loc->iteration = v;
    return 0;
}

int ckpt_locate(const char *dir, struct ckpt_location *loc, char *err, size_t errlen)
{
    char tracker[CKPT_PATH_MAX + 64], final[CKPT_PATH_MAX], tmp[CKPT_PATH_MAX], old[CKPT_PATH_MAX];
    memset(loc, 0, sizeof *loc);
    snprintf(tracker, sizeof tracker, "%.4096s/%s", dir, CKPT_TRACKER);
    size_t len;
    bool missing;
    char *text = dirs_read_file(tracker, 4096, &len, &missing, err, errlen);
    if (!text) return missing ? 0 : -1;
    int bad = parse_tracker(text, loc);
    free(text);
    if (bad) {
        snprintf(err, errlen, "%s: holds neither an iteration number nor \"release\"; fix the file or remove it to start from scratch",
                 tracker);
        return -1;
    }
    ckpt_paths(dir, loc->release, loc->iteration, final, tmp, old);
    /* a replacing save killed between its two renames leaves the checkpoint under the .old name */
    const char *path = dirs_is_dir(final) ? final : dirs_is_dir(old) ? old : NULL;
    if (!path) {
        snprintf(err, errlen, "%s names %s, which does not exist; restore that directory or point the tracker at a checkpoint that exists",
                 tracker, final);
        return -1;
    }
    snprintf(loc->path, sizeof loc->path, "%s", path);
    loc->found = true;
    return 0;
}

int ckpt_read_meta(const char *path, struct ckpt_meta *m, char *err, size_t errlen)
{
    char file[CKPT_PATH_MAX + 32], why[512];
    snprintf(file, sizeof file, "%.4096s/%s", path, CKPT_META_FILE);
    size_t len;
    bool missing;
    char *text = dirs_read_file(file, META_MAX_BYTES, &len, &missing, why, sizeof why);
    if (!text) {
        if (missing)
            snprintf(err, errlen, "%s: missing; %s is not a checkpoint of this program (Megatron-LM's torch formats are not read)",
                     file, path);
        else
            snprintf(err, errlen, "%s", why);
        return -1;
    }
    int rc = meta_parse(text, len, m, why, sizeof why);
    free(text);
    if (rc) snprintf(err, errlen, "%s: %s; the checkpoint is damaged, load an earlier one", file, why);
    return rc;
}

/* ---- pretrain glue ---- */

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Bytes of the tensor files of a checkpoint directory (what a save writes, a full load reads). */
static double files_bytes(const char *path, bool optimizer)
{
    const char *files[2] = {CKPT_MODEL_FILE, CKPT_OPTIM_FILE};
    char file[CKPT_PATH_MAX + 64];
    double total = 0.0;
    for (int i = 0; i < (optimizer ? 2 : 1); i++) {
        struct stat st;
        snprintf(file, sizeof file, "%.4096s/%s", path, files[i]);
        if (stat(file, &st) == 0) total += (double)st.st_size;
    }
    return total;
}

/* Megatron's timers print save/load times; this adds the rate, for comparing with the disk. */
static void print_rate(FILE *out, const char *what, double bytes, double seconds)
{
    if (!out) return;
    fprintf(out, " > %s %.3f GB in %.2f s (%.2f GB/s)\n", what, bytes / 1e9, seconds,
            seconds > 0 ? bytes / 1e9 / seconds : 0.0);
}

/* "YYYY-MM-DD HH:MM:SS.ffffff" as Python's datetime.now() prints it. */
static void timestamp(char out[64])
{
    struct timespec ts;
    struct tm tm;
    char text[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    localtime_r(&ts.tv_sec, &tm);
    strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S", &tm);
    snprintf(out, 64, "%s.%06ld", text, (long)(ts.tv_nsec / 1000));
}

void ckpt_load_for_training(const struct config *cfg, struct ckpt_state *s, FILE *out)
{
    struct ckpt_location loc = {0};
    struct ckpt_loaded loaded;
    struct ckpt_load_options o = {!cfg->no_load_optim, !cfg->no_load_rng, cfg->finetune, 0,
                                  cfg->use_checkpoint_opt_param_scheduler};
    struct ckpt_rank r = ckpt_rank_current(cfg);
    char err[1024];
    if (r.rank != 0) out = NULL; /* Megatron's print_rank_0 */
    const char *dir = cfg->load, *flag = "--load";
    if (dir && ckpt_locate(dir, &loc, err, sizeof err)) die_user("--load %s: %s", dir, err);
    if (!loc.found && cfg->pretrained_checkpoint) { /* Megatron's load_checkpoint: finetune from it */
        if (out)
            fprintf(out, "Checkpoint file not found in load directory %s attempting to finetune with checkpoint in %s\n",
                    dir ? dir : "None", cfg->pretrained_checkpoint);
        dir = cfg->pretrained_checkpoint, flag = "--pretrained-checkpoint";
        o.finetune = true;
        if (ckpt_locate(dir, &loc, err, sizeof err)) die_user("--pretrained-checkpoint %s: %s", dir, err);
        if (!loc.found)
            die_user("--pretrained-checkpoint %s: no checkpoint there (no %s), and none in --load; point it at a "
                     "directory a run saved into", dir, CKPT_TRACKER);
    }
    if (!loc.found) {
        if (cfg->exit_on_missing_checkpoint) /* Megatron exits too (with status 0): a scheduler sees this */
            die_user("--load %s: no checkpoint there (no %s) and --exit-on-missing-checkpoint is set; point "
                     "--load at a directory a run saved into, or drop the flag to start from random weights",
                     cfg->load, CKPT_TRACKER);
        if (r.rank == 0)
            warn_user("--load %s: no checkpoint there (no %s); starting from random weights", cfg->load, CKPT_TRACKER);
        return;
    }
    if (out) fprintf(out, " loading checkpoint from %s at iteration %" PRId64 "\n", dir, loc.iteration);
    if (out) fflush(out);
    double start = now_seconds();
    if (ckpt_load(dir, s, &o, &r, &loaded, err, sizeof err)) die_user("%s %s: %s", flag, dir, err);
    if (!out) return;
    print_rate(out, "checkpoint read and verified:", files_bytes(loaded.where.path, loaded.optimizer_loaded),
               now_seconds() - start);
    fprintf(out, "  successfully loaded checkpoint from %s [ t 1/%" PRId64 ", p 1/%" PRId64 " ] at iteration %" PRId64 "\n",
            dir, cfg->tensor_model_parallel_size, cfg->pipeline_model_parallel_size, s->iteration);
    fflush(out);
}

/* --save-retain-interval, after the save of iteration `saved` (rank 0): the checkpoint the tracker
 * named before it is deleted unless it is a multiple of the interval (or a symbolic link), as
 * Megatron's save_checkpoint does; a failure to delete is reported and not fatal. */
static void retire_previous(const struct config *cfg, const struct ckpt_location *prev, int64_t saved, FILE *out)
{
    if (!prev->found || prev->release || prev->iteration <= 0 || prev->iteration == saved ||
        prev->iteration % cfg->save_retain_interval == 0)
        return;
    struct stat st;
    if (lstat(prev->path, &st) == 0 && S_ISLNK(st.st_mode)) {
        if (out) fprintf(out, "  skipping deleting checkpoint from iteration %7" PRId64 " at %s since it is a "
                              "symbolic link\n", prev->iteration, cfg->save);
        return;
    }
    if (dirs_remove_tree(prev->path) == 0) {
        if (out) fprintf(out, "  successfully deleted checkpoint from iteration %7" PRId64 " at %s\n", prev->iteration,
                         cfg->save);
    } else {
        warn_user("--save-retain-interval: could not delete %s: %s; delete it by hand", prev->path, strerror(errno));
    }
}

void ckpt_save_for_training(const struct config *cfg, const struct ckpt_state *s, FILE *out)
{
    struct ckpt_save_options o = {!cfg->no_save_optim, !cfg->no_save_rng, false, 0};
    struct ckpt_rank r = ckpt_rank_current(cfg);
    char err[1024], ts[64];
    if (r.rank != 0) out = NULL;
    timestamp(ts);
    if (out) fprintf(out, "[%s] saving checkpoint at iteration %7" PRId64 " to %s in megatron-checkpoint format\n", ts,
            s->iteration, cfg->save);
    if (out) fflush(out);
    double start = now_seconds();
    struct ckpt_location prev = {0};
    if (r.rank == 0 && cfg->save_retain_interval > 0 && ckpt_locate(cfg->save, &prev, err, sizeof err) != 0)
        prev.found = false; /* a tracker naming nothing valid: nothing to retire */
    if (ckpt_save(cfg->save, s, &o, &r, err, sizeof err))
        die_user("--save %s: the checkpoint of iteration %" PRId64 " was not saved: %s; free space or fix the "
                 "directory (earlier checkpoints are intact)", cfg->save, s->iteration, err);
    if (out) {
        timestamp(ts);
        fprintf(out, "  [%s] successfully saved checkpoint from iteration %7" PRId64 " to %s [ t 1/%" PRId64
                     ", p 1/%" PRId64 " ]\n",
                ts, s->iteration, cfg->save, cfg->tensor_model_parallel_size, cfg->pipeline_model_parallel_size);
        char final[CKPT_PATH_MAX], tmp[CKPT_PATH_MAX], old[CKPT_PATH_MAX];
        ckpt_paths(cfg->save, false, s->iteration, final, tmp, old);
        print_rate(out, "checkpoint written and synced:", files_bytes(final, o.save_optim && s->optimizer),
                   now_seconds() - start);
    }
    if (r.rank == 0 && cfg->save_retain_interval > 0) retire_previous(cfg, &prev, s->iteration, out);
    if (out) fflush(out);
}

/* One line on rank 0's out (NULL elsewhere), flushed: the run may end right after it. */
__attribute__((format(printf, 2, 3))) static void say(FILE *out, const char *fmt, ...)
{
    if (!out) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(out, fmt, ap);
    va_end(ap);
    fputc('\n', out);
    fflush(out);
}

/* Megatron's checkpoint_and_decide_exit (training.py): ranks agree on the signal and the clock so
 * they save and stop together. */
bool ckpt_and_decide_exit(const struct config *cfg, const struct ckpt_state *s, double elapsed_minutes, FILE *out)
{
    struct ckpt_rank r = ckpt_rank_current(cfg);
    uint64_t flags[2] = {cfg->exit_signal_handler && exit_signal_received(),
                         cfg->exit_duration_in_mins > 0 && elapsed_minutes > (double)cfg->exit_duration_in_mins};
    if (r.sum_u64) r.sum_u64(flags, 2, r.ctx);
    if (r.rank != 0) out = NULL;
    if (flags[0]) {
        if (cfg->save) ckpt_save_for_training(cfg, s, out);
        say(out, "exiting program after receiving %s.", exit_signal_name() ? exit_signal_name() : "SIGTERM");
        return true;
    }
    bool saved = false;
    if (cfg->save && cfg->save_interval > 0 && s->iteration % cfg->save_interval == 0) {
        ckpt_save_for_training(cfg, s, out);
        saved = true;
    }
    if (flags[1]) {
        if (cfg->save && !saved) ckpt_save_for_training(cfg, s, out);
        say(out, "exiting program after %g minutes", elapsed_minutes);
        return true;
    }
    if (cfg->exit_interval > 0 && s->iteration % cfg->exit_interval == 0) {
        if (cfg->save && !saved) ckpt_save_for_training(cfg, s, out);
        say(out, "exiting program at iteration %" PRId64, s->iteration);
        return true;
    }
    return false;
}
