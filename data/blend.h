/* Blends and the train/valid/test datasets built from --data-path, --train/valid/test-data-path
 * or --mock-data, as Megatron's BlendedMegatronDatasetBuilder and BlendedDataset do it
 * (blended_megatron_dataset_builder.py, blended_dataset.py, helpers.cpp build_blending_indices):
 * weights normalised, each dataset asked for ceil(ceil(size * w) * (1 + surplus)) samples, and a
 * greedy interleaving that always takes the dataset furthest behind its share. */
#ifndef MEGATRON_DATA_BLEND_H
#define MEGATRON_DATA_BLEND_H

#include <stdint.h>

#include "data/gpt_dataset.h"

/* A parsed --data-path list: prefixes and, for "w1 p1 w2 p2 ...", their weights. */
struct blend_spec {
    int count;
    char **prefixes;
    double *weights; /* NULL: no weights given (Megatron weighs by dataset size) */
};

/* get_blend_from_list: an even list whose every other token is a number is weight/prefix pairs;
 * anything else is a list of prefixes. Weights must be finite, >= 0, with a positive sum.
 * Returns 0, or -1 with a one-line reason in err. */
int blend_parse(const char *flag, int argc, const char *const *argv, struct blend_spec *out, char *err,
                size_t errlen);
void blend_spec_free(struct blend_spec *spec);

/* numpy's normalize(): w / sum(w), with numpy's pairwise summation so the bits match. */
void blend_normalize(const double *w, int n, double *out);
/* _get_size_per_split_per_dataset for one dataset and split: ceil(ceil(target * w) * (1 + surplus)). */
int64_t blend_dataset_request(int64_t target, double weight, double surplus);
/* build_blending_indices: for each of `size` samples pick the dataset with the largest
 * weight * max(sample, 1) - taken so far (first one on ties). */
void blend_build_indices(const double *weights, int n, int64_t size, int16_t *dataset_index,
                         int64_t *dataset_sample_index);
/* build_exhaustive_blending_indices: every sample of every dataset once, in proportion to sizes. */
void blend_build_exhaustive_indices(const int64_t *sizes, int n, int16_t *dataset_index,
                                    int64_t *dataset_sample_index);

/* One split's top-level dataset: a GPT dataset passed through, or a blend of several. */
struct blend_dataset {
    int count;
    struct gpt_dataset **datasets; /* [count], owned by the struct blend_data */
    double *weights;               /* [count] as blended; NULL for a pass-through */
    int64_t size;
    int16_t *dataset_index;        /* [size]; NULL for a pass-through */
    int64_t *dataset_sample_index; /* [size] */
};

int64_t blend_dataset_len(const struct blend_dataset *b);
/* Sample idx of the split; *dataset_id (may be NULL) says which dataset of the blend gave it. */
int blend_dataset_get(const struct blend_dataset *b, int64_t idx, struct gpt_sample *out, int *dataset_id,
                      char *err, size_t errlen);

/* Everything behind the three splits: opened files, mock data, GPT datasets, blends. */
struct blend_data {
    struct blend_dataset *split[GPT_NUM_SPLITS]; /* NULL where the split is empty */
    void *owned; /* internal */
};

/* Builds the splits from cfg (mock, data_path, or split_data_path), requesting num_samples[i]
 * samples for split i (< 0: one epoch, Megatron's None). Returns 0, or -1 with a one-line reason. */
int blend_data_build(const struct gpt_dataset_config *cfg, const int64_t num_samples[GPT_NUM_SPLITS],
                     struct blend_data **out, char *err, size_t errlen);
struct blend_data *blend_data_build_or_die(const struct gpt_dataset_config *cfg,
                                           const int64_t num_samples[GPT_NUM_SPLITS]);
void blend_data_free(struct blend_data *d);

#endif
