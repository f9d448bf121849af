/* libFuzzer target for the GPT-2 tokenizer's files (data/tokenizer_gpt2.c:gpt2_bpe_create, what
 * --vocab-file and --merge-file are read with). Input: two bytes of the vocabulary's length n
 * (little-endian, cut to what is there), n bytes of vocab.json, then merges.txt. Any pair must
 * load or be refused with one line, never crash; a loaded tokenizer must encode text into ids of
 * its vocabulary whose bytes are the text again. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer.h"
#include "data/tokenizer_gpt2.h"
#include "fuzz/fuzz.h"

/* text's ids decode to text, each id in the vocabulary */
static void check_round_trip(const struct gpt2_bpe *bpe, const char *text)
{
    struct token_ids ids = {0};
    char err[512];
    REQUIRE(gpt2_bpe_encode(bpe, NULL, text, strlen(text), true, &ids, err, sizeof err) == 0);
    size_t at = 0;
    for (size_t i = 0; i < ids.len; i++) {
        REQUIRE(ids.ids[i] >= 0 && ids.ids[i] < gpt2_bpe_vocab_size(bpe));
        size_t n;
        const char *bytes = gpt2_bpe_token_bytes(bpe, ids.ids[i], &n);
        REQUIRE(bytes != NULL && at + n <= strlen(text) && memcmp(text + at, bytes, n) == 0);
        at += n;
    }
    REQUIRE(at == strlen(text));
    token_ids_free(&ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    size_t n = (size_t)data[0] | (size_t)data[1] << 8;
    if (n > size - 2) n = size - 2;
    /* private copies, so reads past either end are caught by the sanitizer */
    char *vocab = malloc(n ? n : 1), *merges = malloc(size - 2 - n ? size - 2 - n : 1);
    memcpy(vocab, data + 2, n);
    memcpy(merges, data + 2 + n, size - 2 - n);
    char err[512] = "";
    struct gpt2_bpe *bpe = gpt2_bpe_create(vocab, n, merges, size - 2 - n, err, sizeof err);
    if (bpe) {
        check_round_trip(bpe, "Hello, world! It's 2026.\n\tx");
        check_round_trip(bpe, "caf\xc3\xa9 <|endoftext|> \xe2\x82\xac");
        gpt2_bpe_free(bpe);
    } else {
        REQUIRE(err[0] != '\0' && strchr(err, '\n') == NULL);
    }
    free(vocab);
    free(merges);
    return 0;
}
