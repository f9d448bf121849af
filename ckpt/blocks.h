/* Where a rank's local copy of a parameter sits in the full logical tensor. A whole parameter is
 * the full tensor; a tensor-parallel slice is a block of rows or of columns; SwiGLU's fc1 slice is
 * two blocks (its gate and up halves); the distributed optimizer owns a range of the local
 * elements. All of it reduces to "runs": local elements [local, local + n) that are the full
 * tensor's elements [full, full + n), row-major both. Saving writes runs, loading reads them. */
#ifndef MEGATRON_CKPT_BLOCKS_H
#define MEGATRON_CKPT_BLOCKS_H

#include <stdbool.h>
#include <stdint.h>

#include "models/gpt.h"

struct param_run {
    int64_t local, full, n;
};

/* Calls fn for every run of p's local elements in [lo, hi) (0 <= lo <= hi <= p->numel), in local
 * order. A whole or row-split parameter gives one run; a column split gives one per row. */
void blocks_runs(const struct gpt_param *p, int64_t lo, int64_t hi,
                 void (*fn)(void *ctx, const struct param_run *run), void *ctx);

/* The full tensor's (rows, cols) view: [r, c] as is, a 1-D [n] as one row of n columns. */
void blocks_full_rows_cols(const struct gpt_param *p, int64_t *rows, int64_t *cols);

/* True for the tensors whose rows are the (padded) vocabulary: the word embeddings and the
 * output layer. Their padding rows depend on the layout (--make-vocab-size-divisible-by x TP). */
bool blocks_is_vocab_param(const char *name);

#endif
