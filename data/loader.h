/* The trainer's view of data: the train, valid and test splits as numbered samples of
 * seq-length tokens with labels, loss mask and position ids, built from --mock-data or
 * --data-path exactly as Megatron's GPTDataset / MockGPTDataset build them. */
#ifndef MEGATRON_DATA_LOADER_H
#define MEGATRON_DATA_LOADER_H

#include <stdint.h>

#include "args.h"

enum data_split { SPLIT_TRAIN, SPLIT_VALID, SPLIT_TEST, NUM_SPLITS };

struct loader;

/* Builds the three splits with the sample counts Megatron requests for this run
 * (train: train-iters x gbs; valid: (train-iters // eval-interval + 1) x eval-iters x gbs;
 * test: eval-iters x gbs). Dies with a one-line error on bad data. */
struct loader *loader_create(const struct config *cfg, int64_t vocab_size, int64_t eod_id);
void loader_free(struct loader *l);

/* Samples a split holds (0 when the split is empty, e.g. a --split weight of 0). */
int64_t loader_num_samples(const struct loader *l, enum data_split split);

/* Sample `index` of a split, each array seq-length long. */
void loader_get(struct loader *l, enum data_split split, int64_t index, int32_t *tokens,
                int32_t *labels, int32_t *positions, float *loss_mask);

const char *loader_split_name(enum data_split split);

/* Batches: `count` samples of a split by index (indices[i] wraps around the split's size, as
 * Megatron's cyclic validation iterator does), each array count x seq-length long. A background
 * thread reads the batch announced by loader_prefetch while the trainer computes; loader_batch
 * takes it when the indices match and reads synchronously otherwise. */
void loader_prefetch(struct loader *l, enum data_split split, const int64_t *indices, int64_t count);
void loader_batch(struct loader *l, enum data_split split, const int64_t *indices, int64_t count,
                  int32_t *tokens, int32_t *labels, int32_t *positions, float *loss_mask);

#endif
