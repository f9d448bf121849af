/* GPT-2's byte-level BPE (Megatron's GPT2BPETokenizer, OpenAI's r50k_base in tiktoken): the
 * pre-tokenizing regex implemented by hand over Unicode classes, bytes_to_unicode, merges applied
 * by rank, a bounded per-thread cache of pre-token encodings, and decoding back to bytes.
 * A loaded struct gpt2_bpe is read-only and may be shared by threads; each thread brings its own
 * struct gpt2_bpe_scratch. */
#ifndef MEGATRON_DATA_TOKENIZER_GPT2_H
#define MEGATRON_DATA_TOKENIZER_GPT2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "data/tokenizer.h"

struct gpt2_bpe;
struct gpt2_bpe_scratch;

/* The text GPT-2 reserves for its end-of-document token (id 50256 in OpenAI's vocabulary). */
#define GPT2_EOD_TEXT "<|endoftext|>"

/* Loads vocab.json (token string -> id, in bytes_to_unicode form; OpenAI's encoder.json) and
 * merges.txt (one "left right" pair per line by rank; a first line starting with "#version" and
 * empty lines are skipped; OpenAI's vocab.bpe). NULL and a one-line reason in err on failure. */
struct gpt2_bpe *gpt2_bpe_load(const char *vocab_path, const char *merges_path, char *err, size_t errlen);
/* The same from texts in memory (the vocabulary as JSON, the merges as lines). */
struct gpt2_bpe *gpt2_bpe_create(const char *vocab_json, size_t vocab_len, const char *merges,
                                 size_t merges_len, char *err, size_t errlen);
void gpt2_bpe_free(struct gpt2_bpe *bpe);

/* Number of entries in vocab.json. */
int32_t gpt2_bpe_vocab_size(const struct gpt2_bpe *bpe);
/* Id of "<|endoftext|>", or -1 when the vocabulary has none. */
int32_t gpt2_bpe_eod(const struct gpt2_bpe *bpe);
/* Number of merges loaded. */
size_t gpt2_bpe_merge_count(const struct gpt2_bpe *bpe);

/* Per-thread state: the pre-token cache (bounded, direct-mapped) and the merge work arrays. */
struct gpt2_bpe_scratch *gpt2_bpe_scratch_create(void);
void gpt2_bpe_scratch_free(struct gpt2_bpe_scratch *s);

/* Appends the ids of `len` bytes of UTF-8 text to out. With allow_special, each occurrence of
 * "<|endoftext|>" becomes the EOD id and the text around it is encoded piece by piece (what
 * Hugging Face's GPT-2 tokenizer, and so Megatron's GPT2BPETokenizer, does); without it the
 * text is ordinary text (tiktoken's encode_ordinary). scratch may be NULL (no cache).
 * Returns 0, or -1 with a reason naming the byte offset when text is not valid UTF-8. */
int gpt2_bpe_encode(const struct gpt2_bpe *bpe, struct gpt2_bpe_scratch *scratch, const char *text,
                    size_t len, bool allow_special, struct token_ids *out, char *err, size_t errlen);

/* The bytes of one token (not NUL-terminated), or NULL when id is out of range. */
const char *gpt2_bpe_token_bytes(const struct gpt2_bpe *bpe, int32_t id, size_t *len);

/* Pre-tokenization alone, for tests: the end offset of the pre-token starting at byte `pos` of
 * valid UTF-8 text (pos < len), as GPT-2's regex
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * would match it. */
size_t gpt2_pretokenize_next(const char *text, size_t len, size_t pos);

/* GPT-2's bytes_to_unicode: the printable code point that stands for byte b in vocab files. */
uint32_t gpt2_byte_to_unicode(uint8_t b);

#endif
