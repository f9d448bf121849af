/* The trainer's data: Megatron's train/valid/test datasets (blend.h, gpt_dataset.h) built from
 * the run's flags, read one sample at a time. */
#include "data/loader.h"

#include <stdlib.h>

#include "data/blend.h"
#include "data/gpt_dataset.h"
#include "util/error.h"

struct loader {
    struct blend_data *data;
    int32_t seq_length;
};

struct loader *loader_create(const struct config *cfg, int64_t vocab_size, int64_t eod_id)
{
    struct gpt_dataset_config dc;
    int64_t num_samples[GPT_NUM_SPLITS];
    struct loader *l = xcalloc(1, sizeof *l);
    gpt_dataset_config_init(&dc);
    dc.seed = (uint32_t)cfg->seed;
    dc.seq_length = (int32_t)cfg->seq_length;
    dc.split = cfg->split;
    dc.data_path_count = cfg->data_path_count;
    dc.data_path = (const char *const *)cfg->data_path;
    dc.mock = cfg->mock_data;
    dc.vocab_size = (int32_t)vocab_size;
    dc.eod_id = (int32_t)eod_id;
    dc.eod_mask_loss = cfg->eod_mask_loss;
    dc.reset_position_ids = cfg->reset_position_ids;
    dc.reset_attention_mask = cfg->reset_attention_mask;
    dc.mid_level_dataset_surplus = cfg->mid_level_dataset_surplus;
    dc.cache_dir = cfg->data_cache_path;
    gpt_num_samples(cfg->train_iters, cfg->train_samples, cfg->global_batch_size,
                    cfg->eval_interval > 0 ? cfg->eval_interval : cfg->train_iters, cfg->eval_iters,
                    num_samples);
    l->data = blend_data_build_or_die(&dc, num_samples);
    l->seq_length = dc.seq_length;
    return l;
}

void loader_free(struct loader *l)
{
    if (!l) return;
    blend_data_free(l->data);
    free(l);
}

int64_t loader_num_samples(const struct loader *l, enum data_split split)
{
    const struct blend_dataset *b = l->data->split[split];
    return b ? blend_dataset_len(b) : 0;
}

void loader_get(struct loader *l, enum data_split split, int64_t index, int32_t *tokens,
                int32_t *labels, int32_t *positions, float *loss_mask)
{
    char err[512];
    struct gpt_sample s = {tokens, labels, loss_mask, positions, NULL};
    const struct blend_dataset *b = l->data->split[split];
    if (!b) BUG("loader_get: split %s is empty", loader_split_name(split));
    if (blend_dataset_get(b, index, &s, NULL, err, sizeof err)) die_user("%s", err);
}

const char *loader_split_name(enum data_split split)
{
    static const char *names[] = {"train", "valid", "test"};
    return split < NUM_SPLITS ? names[split] : "?";
}
