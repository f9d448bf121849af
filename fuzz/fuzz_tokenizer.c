/* libFuzzer target for the GPT-2 BPE tokenizer that `megatron preprocess` runs on every JSONL
 * text: any bytes must encode or fail with a message (invalid UTF-8), never crash; every id must
 * lie in the vocabulary; and text that encodes decodes back to itself byte for byte.
 * The vocabulary comes from $MEGATRON_GPT2_DIR (encoder.json, vocab.bpe), default
 * ../shared/data/gpt2, as in the tokenizer tests. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer.h"
#include "fuzz/fuzz.h"

static struct tokenizer *tok;
static struct tokenizer_scratch *scratch;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    const char *dir = getenv("MEGATRON_GPT2_DIR");
    char vocab[4096], merges[4096], err[512];
    if (!dir) dir = "../shared/data/gpt2";
    snprintf(vocab, sizeof vocab, "%s/encoder.json", dir);
    snprintf(merges, sizeof merges, "%s/vocab.bpe", dir);
    struct tokenizer_options o = {"GPT2BPETokenizer", vocab, merges, 0};
    tok = tokenizer_create(&o, err, sizeof err);
    if (!tok) {
        fprintf(stderr, "fuzz_tokenizer: %s (set MEGATRON_GPT2_DIR)\n", err);
        exit(1);
    }
    scratch = tokenizer_scratch_create(tok);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct token_ids ids = {0};
    char err[256];
    if (tokenizer_encode(tok, scratch, (const char *)data, size, &ids, err, sizeof err) == 0) {
        int64_t v = tokenizer_vocab_size(tok);
        for (size_t i = 0; i < ids.len; i++) REQUIRE(ids.ids[i] >= 0 && ids.ids[i] < v);
        size_t len;
        char *text = tokenizer_decode(tok, ids.ids, ids.len, &len, err, sizeof err);
        REQUIRE(text != NULL);
        REQUIRE(len == size && memcmp(text, data, size) == 0);
        free(text);
    } else {
        REQUIRE(err[0] != '\0');
    }
    token_ids_free(&ids);
    return 0;
}
