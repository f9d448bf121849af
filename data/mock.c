/* Mock GPT data: lengths from numpy's default_rng(0), tokens computed on the fly. */
#include "data/mock.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "data/numpy_random.h"
#include "util/error.h"

struct mock_dataset *mock_dataset_create(int32_t vocab_size, int32_t eod_id, char *err, size_t errlen)
{
    if (vocab_size < 1) {
        if (err && errlen)
            snprintf(err, errlen,
                    "--mock-data: vocabulary size %" PRId32 " must be positive; set --vocab-size or a tokenizer",
                    vocab_size);
        return NULL;
    }
    struct mock_dataset *m = xcalloc(1, sizeof(*m));
    m->vocab_size = vocab_size;
    m->eod_id = eod_id;
    m->sequence_lengths = xmalloc(MOCK_NUM_SEQUENCES * sizeof(int32_t));
    struct np_pcg64 g;
    np_pcg64_seed(&g, MOCK_SEED);
    np_generator_integers_int32(&g, 1, MOCK_MAX_SEQUENCE_LENGTH, m->sequence_lengths, MOCK_NUM_SEQUENCES);
    return m;
}

void mock_dataset_free(struct mock_dataset *m)
{
    if (!m) return;
    free(m->sequence_lengths);
    free(m);
}

static int mock_read(const void *ctx, int64_t seq, int64_t offset, int64_t len, int32_t *out, char *err,
                     size_t errlen)
{
    const struct mock_dataset *m = ctx;
    int64_t n = seq >= 0 && seq < MOCK_NUM_SEQUENCES ? m->sequence_lengths[seq] : -1;
    if (n < 0 || offset < 0 || len < 0 || offset > n || len > n - offset) {
        if (err && errlen)
            snprintf(err, errlen,
                    "mock data: tokens [%" PRId64 ", %" PRId64 ") of sequence %" PRId64 " do not exist; report this",
                    offset, offset + len, seq);
        return -1;
    }
    for (int64_t k = 0; k < len; k++) {
        int64_t p = offset + k;
        out[k] = p == n - 1 ? m->eod_id : (int32_t)((p + 1) % m->vocab_size);
    }
    return 0;
}

void mock_low_level(const struct mock_dataset *m, struct gpt_low_level *out)
{
    out->path = NULL;
    out->num_sequences = MOCK_NUM_SEQUENCES;
    out->sequence_lengths = m->sequence_lengths;
    out->read = mock_read;
    out->ctx = m;
}
