/* Megatron's MockGPTLowLevelDataset (gpt_dataset.py, used by --mock-data): 100,000 sequences whose
 * lengths come from numpy.random.default_rng(0).integers(1, 4096, 100000, dtype=int32), each
 * holding tokens (1, 2, ..., len-1) % vocab_size followed by EOD. It feeds the same GPTDataset
 * machinery as real data (see blend.h for the split, which Megatron forces to 1,1,1). */
#ifndef MEGATRON_DATA_MOCK_H
#define MEGATRON_DATA_MOCK_H

#include <stdint.h>

#include "data/gpt_dataset.h"

#define MOCK_NUM_SEQUENCES 100000
#define MOCK_MAX_SEQUENCE_LENGTH 4096 /* exclusive bound of the drawn lengths */
#define MOCK_SEED 0

struct mock_dataset {
    int32_t *sequence_lengths; /* [MOCK_NUM_SEQUENCES] */
    int32_t vocab_size;
    int32_t eod_id;
};

/* Returns NULL with a one-line reason in err when vocab_size < 1. */
struct mock_dataset *mock_dataset_create(int32_t vocab_size, int32_t eod_id, char *err, size_t errlen);
void mock_dataset_free(struct mock_dataset *m);
/* The low-level view GPTDataset reads (path NULL: mock indices are never cached, as upstream). */
void mock_low_level(const struct mock_dataset *m, struct gpt_low_level *out);

#endif
