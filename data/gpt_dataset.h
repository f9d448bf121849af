/* Megatron's GPTDataset (megatron/core/datasets/gpt_dataset.py + helpers.cpp build_sample_idx):
 * the same document, sample and shuffle indices from the same numpy RandomState stream, so sample i
 * holds exactly the tokens Megatron gives for it; plus --split parsing, requested sample counts
 * and the index cache (--data-cache-path). Independent of the argument parser: callers fill
 * struct gpt_dataset_config. */
#ifndef MEGATRON_DATA_GPT_DATASET_H
#define MEGATRON_DATA_GPT_DATASET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct idx_dataset;

enum gpt_split { GPT_SPLIT_TRAIN = 0, GPT_SPLIT_VALID = 1, GPT_SPLIT_TEST = 2, GPT_NUM_SPLITS = 3 };

/* "train", "valid", "test" (Megatron's Split enum names, used in cache file names). */
const char *gpt_split_name(int split);

struct gpt_dataset_config {
    uint32_t seed;      /* --seed: numpy.random.RandomState(seed) */
    int32_t seq_length; /* --seq-length */
    const char *split;  /* --split, e.g. "949,50,1" (ignored with per-split data paths) */

    /* --data-path tokens: "p", "w1 p1 w2 p2 ...", or "p1 p2 ..." (weights from dataset sizes). */
    int data_path_count;
    const char *const *data_path;
    /* --train-data-path / --valid-data-path / --test-data-path, used when data_path_count is 0. */
    int split_data_path_count[GPT_NUM_SPLITS];
    const char *const *split_data_path[GPT_NUM_SPLITS];
    bool mock;          /* --mock-data: Megatron's MockGPTDataset (split forced to 1,1,1) */
    int32_t vocab_size; /* mock tokens are (position + 1) % vocab_size */

    int32_t eod_id; /* the tokenizer's end-of-document id */
    int32_t pad_id; /* the tokenizer's pad id; -1 (Megatron's _PAD_TOKEN_ID) when it has none */
    bool eod_mask_loss;        /* --eod-mask-loss: loss_mask 0 where the input token is EOD */
    bool reset_position_ids;   /* --reset-position-ids: positions restart after each EOD */
    bool reset_attention_mask; /* --reset-attention-mask: segment_ids change after each EOD */
    bool add_extra_token;      /* add_extra_token_to_sequence (default true): samples of seq+1 */
    bool drop_last_partial_validation; /* drop_last_partial_validation_sequence (default true) */
    double mid_level_dataset_surplus;  /* --mid-level-dataset-surplus (default 0.005) */

    /* --data-cache-path; NULL: <directory of the prefix>/cache/GPTDataset_indices (Megatron uses
     * <prefix>/cache/GPTDataset_indices, a directory named after the prefix). An unwritable cache
     * directory only costs a warning: the indices are then kept in memory. */
    const char *cache_dir;
    bool no_cache;         /* build the indices in memory only */
};

/* Megatron's defaults: seed 1234, seq_length 0 (must be set), pad -1, add_extra_token and
 * drop_last_partial_validation true, surplus 0.005, everything else off/empty. */
void gpt_dataset_config_init(struct gpt_dataset_config *cfg);

/* parse_and_normalize_split + convert_split_vector_to_split_matrix: numbers are the runs of
 * [.0-9] in the string, at most 3, padded with 0, normalised by their sum; split i covers the
 * fraction [bookend[i][0], bookend[i][1]) or is absent (present[i] false) when empty.
 * Returns 0, or -1 with a one-line reason in err. */
int gpt_split_parse(const char *split, double bookend[GPT_NUM_SPLITS][2], bool present[GPT_NUM_SPLITS], char *err,
                    size_t errlen);
/* Sequence ids [beg, end) of a split: round-half-even(bookend * n), as Megatron's int(round()). */
void gpt_split_range(const double bookend[2], int64_t n, int64_t *beg, int64_t *end);

/* training.py:get_train_valid_test_num_samples: train = train_samples if > 0 else
 * train_iters * gbs; valid = (train_iters // eval_interval + 1) * eval_iters * gbs;
 * test = eval_iters * gbs. */
void gpt_num_samples(int64_t train_iters, int64_t train_samples, int64_t global_batch_size,
                     int64_t eval_interval, int64_t eval_iters, int64_t out[GPT_NUM_SPLITS]);

/* What a GPT dataset reads: sequence lengths and a reader of token ranges. */
struct gpt_low_level {
    const char *path; /* prefix (cache description, default cache dir); NULL for mock data */
    int64_t num_sequences;
    const int32_t *sequence_lengths;
    int (*read)(const void *ctx, int64_t seq, int64_t offset, int64_t len, int32_t *out, char *err,
                size_t errlen);
    const void *ctx;
};
void gpt_low_level_from_idx(const struct idx_dataset *ds, struct gpt_low_level *out);

struct gpt_dataset {
    struct gpt_low_level low;
    int split;
    int64_t beg, end;    /* sequence ids of this split */
    int64_t num_samples; /* requested, -1 for "one epoch" (Megatron's None) */
    int32_t seq_length, eod_id, pad_id;
    bool eod_mask_loss, reset_position_ids, reset_attention_mask;
    int add_extra_token;
    int num_epochs;
    bool separate_final_epoch;
    int32_t *document_index; /* [document_len] sequence ids, epochs tiled and shuffled */
    int64_t document_len;
    int64_t *sample_index; /* [(length + 1) * 2]: (position in document_index, token offset) */
    int64_t *shuffle_index; /* [length] */
    int64_t length;
    bool from_cache; /* the indices were loaded from the cache */
    char *cache_path; /* the cache file used or written, NULL when none */
};

/* Builds (or loads from the cache) the dataset of sequences [beg, end) of `low` for a split.
 * num_samples < 0 means one epoch. `low` must outlive the dataset.
 * Returns 0, or -1 with a one-line reason in err. */
int gpt_dataset_build(const struct gpt_dataset_config *cfg, const struct gpt_low_level *low, int split, int64_t beg,
                      int64_t end, int64_t num_samples, struct gpt_dataset **out, char *err, size_t errlen);
void gpt_dataset_free(struct gpt_dataset *ds);
int64_t gpt_dataset_len(const struct gpt_dataset *ds);

/* One sample, seq_length entries each; any pointer may be NULL to skip it.
 * tokens/labels: the sample's text[:-1] and text[1:]; padding (pad_id) becomes 0 with loss 0.
 * loss_mask: 1, or 0 where --eod-mask-loss masks an EOD input token or the label is padding.
 * position_ids: 0.. , restarting after each EOD with --reset-position-ids.
 * segment_ids: with --reset-attention-mask the number of EOD tokens before each position (token j
 * may attend to k <= j only when their segment ids are equal, which is Megatron's block-diagonal
 * mask); all 0 otherwise. */
struct gpt_sample {
    int32_t *tokens;
    int32_t *labels;
    float *loss_mask;
    int32_t *position_ids;
    int32_t *segment_ids;
};

/* Sample idx (0 <= idx < length) through the shuffle index, as GPTDataset.__getitem__.
 * Returns 0, or -1 with a one-line reason in err (a .bin that does not match its index). */
int gpt_dataset_get(const struct gpt_dataset *ds, int64_t idx, struct gpt_sample *out, char *err, size_t errlen);

/* The index builders, exposed for tests. */
/* Epochs until epochs * tokens_per_epoch >= num_samples * seq_length + add_extra (1 when
 * num_samples < 0). Requires tokens_per_epoch > 0. */
int gpt_num_epochs(int64_t tokens_per_epoch, int64_t num_samples, int32_t seq_length, int add_extra);
/* helpers.cpp build_sample_idx: returns [(num_samples + 1) * 2], sets *num_samples. */
int64_t *gpt_build_sample_index(const int32_t *lengths, const int32_t *document_index, int64_t document_len,
                                int32_t seq_length, int num_epochs, int64_t tokens_per_epoch,
                                bool drop_last_partial, int add_extra, int64_t *num_samples);

#endif
