/* The tokenizer handle: dispatches to the GPT-2 BPE (data/tokenizer_gpt2.c) or implements
 * Megatron-Core's NullTokenizer (text is space-separated ids; vocab size N, EOD N - 1). */
#include "data/tokenizer.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer_gpt2.h"
#include "util/error.h"
#include "util/json.h"

struct tokenizer {
    enum tokenizer_kind kind;
    struct gpt2_bpe *bpe; /* TOKENIZER_GPT2_BPE */
    int64_t null_vocab;   /* TOKENIZER_NULL */
};

struct tokenizer_scratch {
    struct gpt2_bpe_scratch *bpe;
};

void token_ids_push(struct token_ids *t, int32_t id)
{
    if (t->len == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 256;
        t->ids = xrealloc(t->ids, t->cap * sizeof(*t->ids));
    }
    t->ids[t->len++] = id;
}

void token_ids_free(struct token_ids *t)
{
    free(t->ids);
    *t = (struct token_ids){0};
}

static struct tokenizer *create_gpt2(const struct tokenizer_options *o, char *err, size_t errlen)
{
    if (!o->vocab_file || !o->merge_file) {
        error_set(err, errlen, "GPT2BPETokenizer needs --vocab-file (vocab.json) and --merge-file (merges.txt)");
        return NULL;
    }
    char why[512];
    struct gpt2_bpe *bpe = gpt2_bpe_load(o->vocab_file, o->merge_file, why, sizeof(why));
    if (!bpe) {
        error_set(err, errlen, "GPT2BPETokenizer: %s", why);
        return NULL;
    }
    if (gpt2_bpe_eod(bpe) < 0) {
        error_set(err, errlen, "GPT2BPETokenizer: %s has no \"%s\" token, which GPT-2 uses as end of document",
                o->vocab_file, GPT2_EOD_TEXT);
        gpt2_bpe_free(bpe);
        return NULL;
    }
    struct tokenizer *t = xcalloc(1, sizeof(*t));
    t->kind = TOKENIZER_GPT2_BPE;
    t->bpe = bpe;
    return t;
}

struct tokenizer *tokenizer_create(const struct tokenizer_options *o, char *err, size_t errlen)
{
    if (!o->type) {
        error_set(err, errlen, "no tokenizer type given; pass --tokenizer-type GPT2BPETokenizer or NullTokenizer");
        return NULL;
    }
    if (strcmp(o->type, "GPT2BPETokenizer") == 0) return create_gpt2(o, err, errlen);
    if (strcmp(o->type, "NullTokenizer") == 0) {
        if (o->vocab_size < 1 || o->vocab_size > INT32_MAX) {
            error_set(err, errlen, "NullTokenizer needs --vocab-size N with 1 <= N <= %d (got %lld)", INT32_MAX,
                    (long long)o->vocab_size);
            return NULL;
        }
        struct tokenizer *t = xcalloc(1, sizeof(*t));
        t->kind = TOKENIZER_NULL;
        t->null_vocab = o->vocab_size;
        return t;
    }
    error_set(err, errlen, "tokenizer type '%s' is not supported yet; use GPT2BPETokenizer or NullTokenizer", o->type);
    return NULL;
}

void tokenizer_free(struct tokenizer *t)
{
    if (!t) return;
    gpt2_bpe_free(t->bpe);
    free(t);
}

enum tokenizer_kind tokenizer_kind(const struct tokenizer *t) { return t->kind; }

int64_t tokenizer_vocab_size(const struct tokenizer *t)
{
    return t->kind == TOKENIZER_GPT2_BPE ? gpt2_bpe_vocab_size(t->bpe) : t->null_vocab;
}

int64_t tokenizer_eod(const struct tokenizer *t)
{
    return t->kind == TOKENIZER_GPT2_BPE ? gpt2_bpe_eod(t->bpe) : t->null_vocab - 1;
}

struct tokenizer_scratch *tokenizer_scratch_create(const struct tokenizer *t)
{
    struct tokenizer_scratch *s = xcalloc(1, sizeof(*s));
    if (t->kind == TOKENIZER_GPT2_BPE) s->bpe = gpt2_bpe_scratch_create();
    return s;
}

void tokenizer_scratch_free(struct tokenizer_scratch *s)
{
    if (!s) return;
    gpt2_bpe_scratch_free(s->bpe);
    free(s);
}

static bool is_ascii_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* One field of a NullTokenizer text: a decimal integer, optionally signed and surrounded by
 * whitespace (what Python's int() accepts of ASCII), in [0, vocab). */
static bool null_parse_id(const char *f, size_t n, int64_t vocab, int32_t *id)
{
    size_t i = 0;
    while (n > 0 && is_ascii_space(f[n - 1])) n--;
    while (i < n && is_ascii_space(f[i])) i++;
    bool neg = i < n && f[i] == '-';
    if (i < n && (f[i] == '-' || f[i] == '+')) i++;
    if (i == n) return false;
    int64_t v = 0;
    for (; i < n; i++) {
        if (f[i] < '0' || f[i] > '9') return false;
        v = v * 10 + (f[i] - '0');
        if (v > vocab) return false;
    }
    if (neg && v != 0) return false;
    if (v >= vocab) return false;
    *id = (int32_t)v;
    return true;
}

static int null_encode(const struct tokenizer *t, const char *text, size_t len, struct token_ids *out, char *err,
                       size_t errlen)
{
    if (len == 0) return 0;
    for (size_t pos = 0;;) {
        const char *sp = memchr(text + pos, ' ', len - pos);
        size_t end = sp ? (size_t)(sp - text) : len;
        int32_t id;
        if (!null_parse_id(text + pos, end - pos, t->null_vocab, &id)) {
            char q[JSON_QUOTED_CAP];
            error_set(err, errlen, "NullTokenizer: %s at byte %zu is not a token id in [0, %lld)",
                      json_quoted(q, text + pos, end - pos), pos, (long long)t->null_vocab);
            return -1;
        }
        token_ids_push(out, id);
        if (!sp) return 0;
        pos = end + 1;
    }
}

int tokenizer_encode(const struct tokenizer *t, struct tokenizer_scratch *s, const char *text, size_t len,
                     struct token_ids *out, char *err, size_t errlen)
{
    if (t->kind == TOKENIZER_NULL) return null_encode(t, text, len, out, err, errlen);
    return gpt2_bpe_encode(t->bpe, s ? s->bpe : NULL, text, len, true, out, err, errlen);
}

/* Appends n bytes to a growing malloc'ed buffer. */
static void append(char **buf, size_t *len, size_t *cap, const char *p, size_t n)
{
    if (*len + n + 1 > *cap) {
        while (*len + n + 1 > *cap) *cap = *cap ? 2 * *cap : 256;
        *buf = xrealloc(*buf, *cap);
    }
    memcpy(*buf + *len, p, n);
    *len += n;
    (*buf)[*len] = '\0';
}

char *tokenizer_decode(const struct tokenizer *t, const int32_t *ids, size_t n, size_t *len, char *err, size_t errlen)
{
    char *buf = NULL;
    size_t cap = 0;
    *len = 0;
    append(&buf, len, &cap, "", 0);
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= tokenizer_vocab_size(t)) {
            error_set(err, errlen, "token id %d (position %zu) is outside the vocabulary [0, %lld)", ids[i], i,
                    (long long)tokenizer_vocab_size(t));
            free(buf);
            return NULL;
        }
        if (t->kind == TOKENIZER_GPT2_BPE) {
            size_t tl;
            const char *tb = gpt2_bpe_token_bytes(t->bpe, ids[i], &tl);
            append(&buf, len, &cap, tb, tl);
        } else {
            char num[16];
            int k = snprintf(num, sizeof(num), i ? " %d" : "%d", ids[i]);
            append(&buf, len, &cap, num, (size_t)k);
        }
    }
    return buf;
}
