/* libFuzzer target for the GPT dataset's index cache files (data/index_cache.c:index_cache_parse).
 * Input: one byte L, then L % 64 bytes of the dataset description the cache must be for, then the
 * file's bytes. Any file must parse or be refused with a message, never crash or read out of
 * bounds; what parses must account for every byte of the file and hold its arrays as written. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/index_cache.h"
#include "fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    size_t dlen = data[0] % 64;
    if (size < 1 + dlen) return 0;
    char description[64];
    memcpy(description, data + 1, dlen);
    description[dlen] = '\0';
    dlen = strlen(description); /* a NUL inside ends it */
    /* a private copy, so reads past the end are caught by the sanitizer */
    size_t n = size - 1 - (data[0] % 64);
    unsigned char *file = malloc(n ? n : 1);
    if (n) memcpy(file, data + 1 + (data[0] % 64), n);
    struct index_cache_arrays a;
    char err[512] = "";
    if (index_cache_parse(file, n, description, "fuzz.bin", &a, err, sizeof err) == 0) {
        REQUIRE(a.document_len >= 0 && a.sample_rows >= 0 && a.shuffle_len >= 0);
        size_t body = (size_t)a.document_len * 4 + (size_t)a.sample_rows * 16 + (size_t)a.shuffle_len * 8;
        REQUIRE(40 + dlen + body + 8 == n);
        const unsigned char *p = file + 40 + dlen;
        REQUIRE(memcmp(a.document_index, p, (size_t)a.document_len * 4) == 0);
        p += (size_t)a.document_len * 4;
        REQUIRE(memcmp(a.sample_index, p, (size_t)a.sample_rows * 16) == 0);
        p += (size_t)a.sample_rows * 16;
        REQUIRE(memcmp(a.shuffle_index, p, (size_t)a.shuffle_len * 8) == 0);
        index_cache_arrays_free(&a);
    } else {
        REQUIRE(err[0] != '\0' && strchr(err, '\n') == NULL);
    }
    free(file);
    return 0;
}
