/* Megatron's indexed dataset: <prefix>.bin (token arrays, one dtype, no header) and <prefix>.idx
 * (magic, version, dtype, counts, sequence lengths, byte pointers, document indices), memory-mapped
 * and checked in full on open so that no later read can leave the files. Format: megatron.md §2. */
#ifndef MEGATRON_DATA_INDEXED_H
#define MEGATRON_DATA_INDEXED_H

#include <stddef.h>
#include <stdint.h>

/* Dtype codes of megatron/core/datasets/indexed_dataset.py:DType. */
enum idx_dtype {
    IDX_UINT8 = 1,
    IDX_INT8 = 2,
    IDX_INT16 = 3,
    IDX_INT32 = 4,
    IDX_INT64 = 5,
    IDX_FLOAT64 = 6,
    IDX_FLOAT32 = 7,
    IDX_UINT16 = 8,
};

#define IDX_MAGIC "MMIDIDX\x00\x00"
#define IDX_MAGIC_LEN 9
#define IDX_HEADER_LEN 34
/* Pass as bin_size to idx_parse when the .bin is not at hand: skips only the size match. */
#define IDX_BIN_SIZE_UNKNOWN UINT64_MAX

/* Bytes per item of a dtype code, 0 for an unknown code. */
size_t idx_dtype_size(int code);
/* "uint16", ... or "unknown". */
const char *idx_dtype_name(int code);

/* A parsed .idx. The arrays point into the buffer given to idx_parse and may be unaligned: read
 * them with the accessors below. */
struct idx_index {
    int dtype;
    size_t itemsize;
    int64_t sequence_count;   /* S */
    int64_t document_count;   /* D = number of documents + 1 */
    const unsigned char *lengths;   /* int32[S] */
    const unsigned char *pointers;  /* int64[S], byte offsets into .bin */
    const unsigned char *documents; /* int64[D], 0 ... S */
    uint64_t bin_bytes;             /* bytes of .bin the index describes */
};

/* Parses and checks an .idx held in memory: header, dtype, overflow-safe sizes, every length >= 0,
 * pointers contiguous from 0 (ptr[i+1] = ptr[i] + len[i] * itemsize), document indices starting at
 * 0, non-decreasing and ending at S, and the described .bin size equal to bin_size (unless
 * IDX_BIN_SIZE_UNKNOWN). `name` (the .idx path) starts every error message.
 * Returns 0, or -1 with a one-line "<name>: <field>: <why>; <what to do>" in err. */
int idx_parse(const void *buf, size_t len, uint64_t bin_size, const char *name, struct idx_index *out,
              char *err, size_t errlen);

int32_t idx_index_length(const struct idx_index *ix, int64_t i);
int64_t idx_index_pointer(const struct idx_index *ix, int64_t i);
int64_t idx_index_document(const struct idx_index *ix, int64_t i);

/* An open dataset: both files mapped read-only; lengths copied into an aligned array. */
struct idx_dataset {
    char *prefix;
    char *idx_path, *bin_path;
    void *idx_map;
    size_t idx_len;
    void *bin_map;
    size_t bin_len;
    struct idx_index index;
    int32_t *sequence_lengths; /* [S] */
    int64_t num_tokens;        /* sum of lengths */
};

/* Opens <prefix>.idx and <prefix>.bin. Returns NULL with a one-line reason in err. */
struct idx_dataset *idx_open(const char *prefix, char *err, size_t errlen);
/* idx_open, or die_user with its message. */
struct idx_dataset *idx_open_or_die(const char *prefix);
void idx_close(struct idx_dataset *ds);

int64_t idx_sequence_count(const struct idx_dataset *ds);
/* Number of documents (D - 1). */
int64_t idx_document_count(const struct idx_dataset *ds);

/* Sequence i in place: its items in the .bin mapping, `length` items of `dtype`. */
struct idx_sequence {
    const void *data;
    int64_t length;
    int dtype;
};
struct idx_sequence idx_get(const struct idx_dataset *ds, int64_t i);

/* Copies items [offset, offset + len) of sequence i into out as int32. Fails (with the file named)
 * when the range leaves the sequence or a value is not an integer in int32 range. */
int idx_read_tokens(const struct idx_dataset *ds, int64_t i, int64_t offset, int64_t len, int32_t *out,
                    char *err, size_t errlen);

#endif
