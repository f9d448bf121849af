/* A parameter's local elements as runs of its full tensor; see blocks.h. */
#include "ckpt/blocks.h"

#include <string.h>

#include "util/error.h"

void blocks_full_rows_cols(const struct gpt_param *p, int64_t *rows, int64_t *cols)
{
    *rows = p->ndim == 2 ? p->full_shape[0] : 1;
    *cols = p->ndim == 2 ? p->full_shape[1] : p->full_shape[0];
}

static void emit(int64_t local, int64_t full, int64_t n, int64_t lo, int64_t hi,
                 void (*fn)(void *, const struct param_run *), void *ctx)
{
    int64_t a = local > lo ? local : lo, b = local + n < hi ? local + n : hi;
    if (a >= b) return;
    struct param_run r = {a, full + (a - local), b - a};
    fn(ctx, &r);
}

void blocks_runs(const struct gpt_param *p, int64_t lo, int64_t hi,
                 void (*fn)(void *ctx, const struct param_run *run), void *ctx)
{
    int64_t rows_f, cols_f;
    blocks_full_rows_cols(p, &rows_f, &cols_f);
    int64_t rows_l = p->ndim == 2 ? p->shape[0] : 1, cols_l = p->ndim == 2 ? p->shape[1] : p->shape[0];
    if (p->shard_dim < 0) {
        emit(0, 0, p->numel, lo, hi, fn, ctx);
        return;
    }
    if (p->num_pieces < 1 || p->num_pieces > 2) BUG("%s: %d pieces", p->name, p->num_pieces);
    if (p->ndim == 2 && p->shard_dim == 0) { /* whole rows: each piece is contiguous in both */
        for (int k = 0; k < p->num_pieces; k++) {
            const struct param_piece *q = &p->pieces[k];
            emit(q->local_start * cols_l, q->full_start * cols_f, q->length * cols_l, lo, hi, fn, ctx);
        }
        return;
    }
    /* columns (or a split 1-D tensor, one row): a run per row and piece */
    int64_t first_row = lo / cols_l, last_row = hi > 0 ? (hi - 1) / cols_l : -1;
    for (int64_t r = first_row; r <= last_row && r < rows_l; r++)
        for (int k = 0; k < p->num_pieces; k++) {
            const struct param_piece *q = &p->pieces[k];
            emit(r * cols_l + q->local_start, r * cols_f + q->full_start, q->length, lo, hi, fn, ctx);
        }
}

bool blocks_is_vocab_param(const char *name)
{
    return strcmp(name, "embedding.word_embeddings.weight") == 0 || strcmp(name, "output_layer.weight") == 0;
}
