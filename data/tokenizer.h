/* The tokenizer interface the data pipeline uses: Megatron's GPT2BPETokenizer and NullTokenizer
 * behind one handle (vocabulary size, EOD id, encode, decode). A tokenizer is read-only after
 * creation and may be shared by threads; each encoding thread brings a struct tokenizer_scratch. */
#ifndef MEGATRON_DATA_TOKENIZER_H
#define MEGATRON_DATA_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

/* A growable array of token ids. Zero-initialise; token_ids_free releases it. */
struct token_ids {
    int32_t *ids;
    size_t len, cap;
};
void token_ids_push(struct token_ids *t, int32_t id);
void token_ids_free(struct token_ids *t);

enum tokenizer_kind { TOKENIZER_GPT2_BPE, TOKENIZER_NULL };

struct tokenizer_options {
    const char *type;       /* Megatron's --tokenizer-type: "GPT2BPETokenizer" or "NullTokenizer" */
    const char *vocab_file; /* GPT2BPETokenizer: vocab.json */
    const char *merge_file; /* GPT2BPETokenizer: merges.txt */
    int64_t vocab_size;     /* NullTokenizer: --vocab-size */
};

struct tokenizer;
struct tokenizer_scratch;

/* NULL with a one-line reason in err for an unknown type, a missing option or a bad file. */
struct tokenizer *tokenizer_create(const struct tokenizer_options *o, char *err, size_t errlen);
void tokenizer_free(struct tokenizer *t);

enum tokenizer_kind tokenizer_kind(const struct tokenizer *t);
/* GPT-2: the number of vocab.json entries (50257). Null: --vocab-size N (Megatron-Core's current
 * NullTokenizer, megatron/core/tokenizers/text/libraries/null_tokenizer.py). */
int64_t tokenizer_vocab_size(const struct tokenizer *t);
/* GPT-2: the id of "<|endoftext|>". Null: N - 1. */
int64_t tokenizer_eod(const struct tokenizer *t);

/* Per-thread encoding state (GPT-2's pre-token cache). */
struct tokenizer_scratch *tokenizer_scratch_create(const struct tokenizer *t);
void tokenizer_scratch_free(struct tokenizer_scratch *s);

/* Appends the ids of `len` bytes of text to out, as Megatron's tokenizer.tokenize(text) does.
 * GPT-2: UTF-8 text; "<|endoftext|>" in it is the EOD token, as with Hugging Face's tokenizer.
 * Null: space-separated decimal ids, each in [0, N) (an empty text gives no ids).
 * scratch may be NULL. Returns 0, or -1 with a one-line reason in err. */
int tokenizer_encode(const struct tokenizer *t, struct tokenizer_scratch *s, const char *text, size_t len,
                     struct token_ids *out, char *err, size_t errlen);

/* The text of n ids, NUL-terminated and malloc'ed, its byte length in *len (GPT-2 text need not be
 * valid UTF-8 when a multi-byte character is cut). NULL with a reason for an id out of range. */
char *tokenizer_decode(const struct tokenizer *t, const int32_t *ids, size_t n, size_t *len, char *err,
                       size_t errlen);

#endif
