/* metadata.json of a checkpoint (docs/CHECKPOINT_FORMAT.md): what the run was (model config, the
 * flags that shape it), where it stood (iteration, consumed samples, optimizer step, schedule
 * position, loss-scaler state, RNG seed) and every stored tensor (name, role, file, dtype, full
 * shape, sum64 checksum). Writing produces the JSON text; parsing validates everything a loader
 * relies on, so a damaged or hostile file is refused with one line and never crashes. */
#ifndef MEGATRON_CKPT_METADATA_H
#define MEGATRON_CKPT_METADATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ckpt/safetensors.h"
#include "models/model_config.h"
#include "optim/schedule.h"

#define META_FORMAT "megatron-checkpoint"
#define META_VERSION 1
#define META_MAX_BYTES (256u << 20)
#define META_MAX_PARAM_NAME 95 /* struct gpt_param's name field */

/* What a stored tensor is to its parameter. Weights are stored under the parameter's name, the
 * others under "<role>.<parameter name>". */
enum meta_role { ROLE_WEIGHT, ROLE_MAIN_PARAM, ROLE_EXP_AVG, ROLE_EXP_AVG_SQ, ROLE_MOMENTUM, NUM_ROLES };

struct meta_tensor {
    char *name;  /* key in its safetensors file */
    char *param; /* the parameter's name */
    enum meta_role role;
    char *file;  /* a plain file name inside the checkpoint directory */
    enum st_dtype dtype;
    int ndim;    /* 1 or 2 */
    int64_t shape[2];
    uint64_t checksum; /* sum64 of the full tensor */
};

struct meta_optimizer {
    char type[8];               /* "adam" or "sgd" */
    int64_t step;               /* successful updates (Adam's bias-correction count) */
    int64_t schedule_samples;   /* the LR/WD scheduler's position in samples */
    bool scaler_dynamic;
    double loss_scale;
    int64_t growth_tracker, hysteresis_tracker;
    /* "scheduler": what Megatron's OptimizerParamScheduler.state_dict keeps (max and min LR, warmup
     * and decay steps and style, the weight-decay ramp), for --use-checkpoint-opt_param-scheduler;
     * absent from checkpoints saved before it was written (has_scheduler false). */
    bool has_scheduler;
    struct lr_schedule scheduler; /* the fields above; init_lr and the WSD anneal are not kept */
};

struct ckpt_meta {
    int64_t iteration;
    bool release;               /* a weights-only checkpoint (convert): loads as iteration 0 */
    int64_t consumed_train_samples, consumed_valid_samples;
    enum st_dtype params_dtype; /* how the model stored its weights */
    struct model_config model;  /* seed and dropout included */
    bool has_optimizer;
    struct meta_optimizer optimizer;
    bool has_rng;
    uint64_t seed;              /* the counter-based RNG's key: all there is to its state */
    char *hf_config;            /* the Hugging Face config.json it came from, or NULL */
    char *args_json;            /* writing: the "args" object text (NULL writes {}); not parsed */
    struct meta_tensor *tensors;
    size_t num_tensors;
};

const char *meta_role_name(enum meta_role r);

/* The JSON text of m (malloc'd, NUL-terminated; *len without the NUL). */
char *meta_to_json(const struct ckpt_meta *m, size_t *len);

/* Parses and validates; 0, or -1 with a one-line reason in err (m is left empty). */
int meta_parse(const char *text, size_t len, struct ckpt_meta *m, char *err, size_t errlen);

/* Frees what meta_parse allocated (and the strings of a written meta built with meta_add_tensor). */
void meta_free(struct ckpt_meta *m);

/* Appends a tensor entry (copies the strings). */
void meta_add_tensor(struct ckpt_meta *m, const char *param, enum meta_role role, const char *file,
                     enum st_dtype dtype, int ndim, const int64_t *shape);

/* The tensor of (param, role), or NULL. Linear in the number of tensors. */
struct meta_tensor *meta_find(const struct ckpt_meta *m, const char *param, enum meta_role role);

/* Model config enum <-> Megatron's flag vocabulary. */
const char *meta_normalization_name(enum norm_type t);
const char *meta_position_name(enum position_type t);
const char *meta_activation_name(enum activation_type t);

#endif
