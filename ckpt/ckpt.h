/* Checkpoints (ARCHITECTURE.md principle 6, docs/CHECKPOINT_FORMAT.md): Megatron's layout
 * <dir>/iter_0000100/ + <dir>/latest_checkpointed_iteration.txt, holding our own
 * layout-independent format: metadata.json, model.safetensors (weights as the model stores them)
 * and optimizer.safetensors (fp32 main params and moments), every tensor in its full logical shape
 * under its parameter name, so a run with any tensor/pipeline/data-parallel layout reads exactly
 * its pieces.
 *
 * A save is atomic: everything goes to <dir>/.iter_0000100.tmp, is fsync'd, renamed into place,
 * and only then does latest_checkpointed_iteration.txt (itself replaced atomically) name it; a
 * process killed at any moment leaves the previous checkpoint loadable. A load checks every
 * tensor's presence, shape and checksum BEFORE it changes anything, so a refused checkpoint leaves
 * the model and optimizer as they were. */
#ifndef MEGATRON_CKPT_CKPT_H
#define MEGATRON_CKPT_CKPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "args.h"
#include "ckpt/metadata.h"
#include "models/gpt.h"
#include "optim/optimizer.h"

#define CKPT_TRACKER "latest_checkpointed_iteration.txt"
#define CKPT_META_FILE "metadata.json"
#define CKPT_MODEL_FILE "model.safetensors"
#define CKPT_OPTIM_FILE "optimizer.safetensors"
#define CKPT_PATH_MAX 4200

/* How this rank takes part in a save or load. Each byte of a checkpoint is written exactly once:
 * weights by the first data-parallel replica (dp_rank 0), optimizer state by every rank that owns
 * it (all of dp-cp with the distributed optimizer, else dp_rank 0), and a tensor every
 * tensor-parallel rank holds whole only by tp_rank 0. Pipeline stages hold disjoint parameters.
 * Rank 0 writes file headers, metadata.json and the tracker. The collectives run over all ranks;
 * with world_size 1 they may be NULL. */
struct ckpt_rank {
    int rank, world_size;
    int tp_rank;              /* rank in the tensor-parallel group */
    int dp_rank;              /* rank in the data-parallel (x context-parallel) group: the replica */
    bool optimizer_sharded;   /* --use-distributed-optimizer: each dp rank owns part of the state */
    void (*barrier)(void *ctx);
    void (*sum_u64)(uint64_t *values, size_t n, void *ctx); /* all-reduce, sum mod 2^64 */
    void *ctx;
};

/* One process that holds everything. */
struct ckpt_rank ckpt_rank_single(void);

/* This rank in the process grid (grid_current() and its communicators), or the single process
 * when there is no grid or one rank. */
struct ckpt_rank ckpt_rank_current(const struct config *cfg);

/* What a checkpoint saves, and what a load fills in. */
struct ckpt_state {
    struct gpt_model *model;      /* the parameter table and weights (model->cfg is recorded) */
    struct optimizer *optimizer;  /* NULL: weights only */
    enum dtype params_dtype;      /* how the model stores its weights: the dtype they are saved in */
    int64_t iteration;
    int64_t consumed_train_samples, consumed_valid_samples;
    const struct config *cfg;     /* recorded as "args" when not NULL */
    const char *hf_config;        /* the config.json a converted model came from, or NULL */
};

struct ckpt_save_options {
    bool save_optim;  /* not --no-save-optim */
    bool save_rng;    /* not --no-save-rng */
    bool release;     /* <dir>/release and "release" in the tracker (weights for others to start from) */
    int64_t stage_elements; /* > 0: copy the buffers through a host buffer of this many elements, as
                               device memory always is (16M elements); tests use it on the CPU */
};

/* Saves s into dir (created when missing); the model and optimizer may live in device memory (the
 * CUDA backend). 0, or -1 with a one-line reason in err; on failure the previous checkpoint and
 * tracker are untouched and no temporary directory is left. */
int ckpt_save(const char *dir, const struct ckpt_state *s, const struct ckpt_save_options *o,
              const struct ckpt_rank *r, char *err, size_t errlen);

/* Where the tracker of dir points. found is false when dir or its tracker does not exist. */
struct ckpt_location {
    bool found;
    bool release;
    int64_t iteration;
    char path[CKPT_PATH_MAX]; /* the checkpoint directory (iter_NNNNNNN or release) */
};

/* Reads the tracker. 0 (found or not), or -1 with err for a tracker that names nothing valid. */
int ckpt_locate(const char *dir, struct ckpt_location *loc, char *err, size_t errlen);

/* Reads and validates <path>/metadata.json. 0, or -1 with err. */
int ckpt_read_meta(const char *path, struct ckpt_meta *m, char *err, size_t errlen);

struct ckpt_load_options {
    bool load_optim; /* not --no-load-optim */
    bool load_rng;   /* not --no-load-rng */
    bool finetune;   /* weights only, iteration and consumed samples 0 */
    int64_t stage_elements; /* as in ckpt_save_options */
    bool checkpoint_scheduler; /* --use-checkpoint-opt_param-scheduler: the saved LR/WD schedule (with
                                  the optimizer state) in place of the flags' */
};

/* What a load did. */
struct ckpt_loaded {
    struct ckpt_location where;
    bool optimizer_loaded, rng_loaded;
};

/* Loads the latest checkpoint of dir into s: weights always (as stored, or the fp32 main params
 * when loading the optimizer state into an fp32 model), optimizer state and scheduler position
 * when asked and stored, the RNG seed into s->model->cfg.seed, and iteration / consumed samples
 * (0 with finetune or a release checkpoint). Returns 0 with out->where.found false (s untouched)
 * when there is no checkpoint; -1 with a one-line err (s untouched) when the checkpoint does not
 * fit the model or fails a checksum, or (s partly loaded) when the disk fails after every check
 * passed. The model and optimizer may live in device memory (the CUDA backend). */
int ckpt_load(const char *dir, struct ckpt_state *s, const struct ckpt_load_options *o,
              const struct ckpt_rank *r, struct ckpt_loaded *out, char *err, size_t errlen);

/* `pretrain --load`: loads with the flags' options, prints Megatron's lines to out, warns and
 * starts from scratch when there is no checkpoint, dies with one line on a bad one. */
void ckpt_load_for_training(const struct config *cfg, struct ckpt_state *s, FILE *out);

/* `pretrain --save`: saves with the flags' options and prints Megatron's lines; dies with one
 * line when the save fails (the previous checkpoint stays). */
void ckpt_save_for_training(const struct config *cfg, const struct ckpt_state *s, FILE *out);

/* <dir>/iter_NNNNNNN (or <dir>/release), and the temporary (.iter_NNNNNNN.tmp) and replaced
 * (.iter_NNNNNNN.old) names a save uses next to it. */
void ckpt_paths(const char *dir, bool release, int64_t iteration, char final[CKPT_PATH_MAX], char tmp[CKPT_PATH_MAX],
                char old[CKPT_PATH_MAX]);

/* After each training iteration, Megatron's checkpoint_and_decide_exit: with --exit-signal-handler
 * and SIGTERM/SIGINT received, save and stop; every --save-interval, save; past
 * --exit-duration-in-mins or at a multiple of --exit-interval, save (unless just saved) and stop.
 * Returns true when training must stop (the caller exits 0 without the final evaluation, as
 * Megatron's sys.exit does). Prints on rank 0. */
bool ckpt_and_decide_exit(const struct config *cfg, const struct ckpt_state *s, double elapsed_minutes, FILE *out);

/* enum dtype <-> safetensors dtype for F32, BF16 and F16. */
enum st_dtype ckpt_st_dtype(enum dtype dt);
enum dtype ckpt_dtype(enum st_dtype dt);

#endif
