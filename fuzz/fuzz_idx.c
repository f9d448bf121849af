/* libFuzzer target for the .idx parser (data/indexed.c:idx_parse). Input: 8 bytes of .bin size
 * (little-endian; all ones means unknown) followed by the .idx bytes. A parsed index must keep
 * every sequence inside the .bin it describes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/indexed.h"
#include "fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 8) return 0;
    uint64_t bin_size;
    memcpy(&bin_size, data, 8);
    /* a private copy, so reads past the end are caught by the sanitizer */
    size_t n = size - 8;
    uint8_t *idx = malloc(n ? n : 1);
    if (n) memcpy(idx, data + 8, n);
    struct idx_index ix;
    char err[512];
    if (idx_parse(idx, n, bin_size, "fuzz.idx", &ix, err, sizeof(err)) == 0) {
        for (int64_t i = 0; i < ix.sequence_count; i++) {
            int64_t end = idx_index_pointer(&ix, i) + (int64_t)idx_index_length(&ix, i) * (int64_t)ix.itemsize;
            if (idx_index_length(&ix, i) < 0 || end > (int64_t)ix.bin_bytes) abort();
        }
        for (int64_t i = 0; i < ix.document_count; i++)
            if (idx_index_document(&ix, i) > ix.sequence_count) abort();
        if (bin_size != IDX_BIN_SIZE_UNKNOWN && bin_size != ix.bin_bytes) abort();
    } else if (strncmp(err, "fuzz.idx: ", 10) != 0 || strchr(err, '\n')) {
        abort(); /* every refusal is one line naming the file */
    }
    free(idx);
    return 0;
}
