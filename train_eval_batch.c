/* `pretrain --skip-train --eval-batch FILE`: the loaded model evaluated on one fixed batch read
 * from a safetensors file (int32 `tokens` and `targets` [B, seq-length], every position counted;
 * optionally float `logits` [B, seq-length, V] computed by another implementation). Prints the
 * batch's lm loss and, with reference logits, the relative L2 error of ours (the first V columns
 * of the padded vocabulary) against them: how a converted checkpoint is checked against the model
 * it came from, through the same flags, model building and --load a training run uses. */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt/safetensors.h"
#include "kernels/arena.h"
#include "models/gpt.h"
#include "train.h"
#include "util/error.h"

/* int32 [B, T] ids in [0, vocab), or a one-line error. */
static const int32_t *ids(const struct st_file *f, const char *file, const char *name, int64_t seq, int64_t vocab,
                          int64_t *rows)
{
    const struct st_tensor *t = st_find(f, name);
    if (!t || t->dtype != ST_I32 || t->ndim != 2)
        die_user("--eval-batch %s: %s must be an int32 tensor [batch, sequence]; give a safetensors file with int32 "
                 "tokens and targets", file, name);
    if (t->shape[1] != seq)
        die_user("--eval-batch %s: %s has sequences of %" PRId64 " tokens, --seq-length is %" PRId64 "; use "
                 "--seq-length %" PRId64, file, name, t->shape[1], seq, t->shape[1]);
    const int32_t *v = t->data;
    for (int64_t i = 0; i < t->shape[0] * t->shape[1]; i++)
        if (v[i] < 0 || v[i] >= vocab)
            die_user("--eval-batch %s: %s holds id %" PRId32 ", outside the vocabulary of %" PRId64 " tokens; use the "
                     "tokenizer flags of the model that made it", file, name, v[i], vocab);
    *rows = t->shape[0];
    return v;
}

/* The model's logits of `rows` x T positions as fp32 on the host. */
static void logits_to_host(const struct gpt_model *m, int64_t n, float *out)
{
    struct tensor l = gpt_logits(m);
    int64_t cols = l.shape[1], count = n * cols;
    if (l.dtype == DT_F32) {
        device_copy_from(l.device, out, l.data, (size_t)count * sizeof(float));
        return;
    }
    uint16_t *half = xmalloc((size_t)count * sizeof(uint16_t));
    device_copy_from(l.device, half, l.data, (size_t)count * sizeof(uint16_t));
    for (int64_t i = 0; i < count; i++) out[i] = l.dtype == DT_BF16 ? bf16_to_f32(half[i]) : f16_to_f32(half[i]);
    free(half);
}

struct eval_batch {
    const char *file;
    struct st_file *f;
    const int32_t *tokens, *targets; /* [rows, seq] */
    int64_t rows, seq, vocab_columns;
    float *logits;                   /* [rows, seq, vocab_columns], or NULL */
};

struct eval_batch *train_eval_batch_open(const struct config *cfg, const struct model_config *mc)
{
    const char *file = cfg->eval_batch;
    char err[1024];
    struct eval_batch *e = xcalloc(1, sizeof *e);
    e->file = file;
    e->seq = cfg->seq_length;
    e->f = st_open(file, err, sizeof err);
    if (!e->f) die_user("--eval-batch: %s; give a safetensors file with int32 tokens and targets", err);
    int64_t rows2;
    e->tokens = ids(e->f, file, "tokens", e->seq, mc->vocab_size, &e->rows);
    e->targets = ids(e->f, file, "targets", e->seq, mc->vocab_size, &rows2);
    if (e->rows != rows2)
        die_user("--eval-batch %s: tokens has %" PRId64 " sequences, targets %" PRId64 "; give one target per token",
                 file, e->rows, rows2);
    if (e->rows % cfg->micro_batch_size != 0)
        die_user("--eval-batch %s: its %" PRId64 " sequences do not split into micro batches of %" PRId64 "; use "
                 "--micro-batch-size %" PRId64 " (or a divisor of it)", file, e->rows, (int64_t)cfg->micro_batch_size,
                 e->rows);
    const struct st_tensor *ref = st_find(e->f, "logits");
    if (!ref) return e;
    int64_t v = ref->ndim == 3 ? ref->shape[2] : 0;
    if (ref->ndim != 3 || ref->shape[0] != e->rows || ref->shape[1] != e->seq || v < 1 || v > mc->padded_vocab_size)
        die_user("--eval-batch %s: logits must be [%" PRId64 ", %" PRId64 ", V] with V at most the padded vocabulary "
                 "(%" PRId64 "); remove them or give the model's own", file, e->rows, e->seq, mc->padded_vocab_size);
    e->vocab_columns = v;
    e->logits = xmalloc((size_t)st_numel(ref) * sizeof(float));
    if (st_to_f32(ref, e->logits, err, sizeof err)) die_user("--eval-batch %s: logits: %s", file, err);
    return e;
}

void train_eval_batch_run(struct eval_batch *e, struct gpt_model *m, FILE *out)
{
    int64_t seq = e->seq, padded = m->cfg.padded_vocab_size, v = e->vocab_columns;
    int64_t mb = m->batch, pos = mb * seq;
    int32_t *positions = xmalloc((size_t)pos * sizeof(int32_t));
    float *mask = xmalloc((size_t)pos * sizeof(float));
    float *got = e->logits ? xmalloc((size_t)(pos * padded) * sizeof(float)) : NULL;
    for (int64_t i = 0; i < pos; i++) {
        positions[i] = (int32_t)(i % seq);
        mask[i] = 1.0f;
    }
    double loss = 0.0, tokens_counted = 0.0, diff2 = 0.0, ref2 = 0.0;
    for (int64_t r = 0; r < e->rows; r += mb) { /* micro batches of --micro-batch-size sequences */
        struct gpt_batch b;
        memset(&b, 0, sizeof b);
        b.batch = mb;
        b.tokens = e->tokens + r * seq;
        b.labels = e->targets + r * seq;
        b.positions = positions;
        b.loss_mask = mask;
        b.sample_offset = r;
        double count;
        loss += gpt_forward(m, &b, &count);
        tokens_counted += count;
        if (!got) continue;
        logits_to_host(m, pos, got);
        for (int64_t i = 0; i < pos; i++) {
            const float *a = got + i * padded, *w = e->logits + (r * seq + i) * v;
            for (int64_t k = 0; k < v; k++) {
                double d = (double)a[k] - w[k];
                diff2 += d * d;
                ref2 += (double)w[k] * w[k];
            }
        }
    }
    double mean = loss / tokens_counted;
    fprintf(out, " eval batch %s (%" PRId64 " sequences of %" PRId64 ") | lm loss value: %E | lm loss PPL: %E |\n",
            e->file, e->rows, seq, mean, exp(mean < 20.0 ? mean : 20.0));
    if (got)
        fprintf(out, " eval batch logits: relative L2 error %.3e against the file's (%" PRId64 " of %" PRId64
                " vocabulary columns)\n", sqrt(diff2) / (sqrt(ref2) + 1e-30), v, padded);
    fflush(out);
    free(got);
    free(mask);
    free(positions);
    free(e->logits);
    st_close(e->f);
    free(e);
}
