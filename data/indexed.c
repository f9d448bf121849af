/* Megatron .bin/.idx reader: a parser that checks every field of an .idx held in memory (also the
 * fuzz target's entry), and the mmap-backed dataset built on it. */
#include "data/indexed.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/error.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the .idx format is little-endian; this reader assumes a little-endian host"
#endif

#define REDO "re-create the dataset with `megatron preprocess`"

size_t idx_dtype_size(int code)
{
    switch (code) {
    case IDX_UINT8:
    case IDX_INT8: return 1;
    case IDX_INT16:
    case IDX_UINT16: return 2;
    case IDX_INT32:
    case IDX_FLOAT32: return 4;
    case IDX_INT64:
    case IDX_FLOAT64: return 8;
    default: return 0;
    }
}

const char *idx_dtype_name(int code)
{
    static const char *const names[] = {"unknown", "uint8",   "int8",    "int16", "int32",
                                        "int64",   "float64", "float32", "uint16"};
    return code >= 1 && code <= 8 ? names[code] : names[0];
}

static uint64_t load_u64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

int32_t idx_index_length(const struct idx_index *ix, int64_t i)
{
    int32_t v;
    memcpy(&v, ix->lengths + 4 * (size_t)i, sizeof(v));
    return v;
}

int64_t idx_index_pointer(const struct idx_index *ix, int64_t i)
{
    return (int64_t)load_u64(ix->pointers + 8 * (size_t)i);
}

int64_t idx_index_document(const struct idx_index *ix, int64_t i)
{
    return (int64_t)load_u64(ix->documents + 8 * (size_t)i);
}

/* Header fields and the exact file size they imply (with or without multimodal sequence modes). */
static int parse_header(const unsigned char *p, size_t len, const char *name, struct idx_index *ix, char *err,
                        size_t errlen)
{
    if (len < IDX_HEADER_LEN) {
        error_set(err, errlen,
                "%s: header: file has %zu bytes, fewer than the %d-byte header; the file is truncated, " REDO,
                name, len, IDX_HEADER_LEN);
        return -1;
    }
    if (memcmp(p, IDX_MAGIC, IDX_MAGIC_LEN) != 0) {
        error_set(err, errlen,
                "%s: magic: not a Megatron .idx file (expected \"MMIDIDX\\0\\0\"); pass the prefix of a preprocessed "
                "dataset",
                name);
        return -1;
    }
    uint64_t version = load_u64(p + 9);
    if (version != 1) {
        error_set(err, errlen, "%s: version: %" PRIu64 " is not supported (only version 1); " REDO, name, version);
        return -1;
    }
    int code = p[17];
    if (idx_dtype_size(code) == 0) {
        error_set(err, errlen, "%s: dtype: unknown dtype code %d (valid codes are 1..8); " REDO, name, code);
        return -1;
    }
    uint64_t s = load_u64(p + 18), d = load_u64(p + 26);
    /* every sequence costs 12 bytes (length + pointer), every document entry 8: bound before multiplying */
    uint64_t room = len - IDX_HEADER_LEN;
    if (s > room / 12) {
        error_set(err, errlen,
                "%s: sequence_count: %" PRIu64 " sequences do not fit in a %zu-byte file; the file is truncated or "
                "corrupt, " REDO,
                name, s, len);
        return -1;
    }
    if (s > INT32_MAX) {
        error_set(err, errlen,
                "%s: sequence_count: %" PRIu64 " exceeds 2147483647 (Megatron indexes sequences with int32); split "
                "the data into several prefixes",
                name, s);
        return -1;
    }
    if (d > (room - 12 * s) / 8) {
        error_set(err, errlen,
                "%s: document_count: %" PRIu64 " documents do not fit in a %zu-byte file; the file is truncated or "
                "corrupt, " REDO,
                name, d, len);
        return -1;
    }
    if (d < 1) {
        error_set(err, errlen,
                "%s: document_count: 0, but the document indices hold at least the leading 0; " REDO, name);
        return -1;
    }
    uint64_t need = IDX_HEADER_LEN + 12 * s + 8 * d;
    if (len != need && len != need + s) {
        error_set(err, errlen,
                "%s: size: file has %zu bytes but its header describes %" PRIu64 " (or %" PRIu64 " with sequence "
                "modes); the file is truncated or corrupt, " REDO,
                name, len, need, need + s);
        return -1;
    }
    ix->dtype = code;
    ix->itemsize = idx_dtype_size(code);
    ix->sequence_count = (int64_t)s;
    ix->document_count = (int64_t)d;
    ix->lengths = p + IDX_HEADER_LEN;
    ix->pointers = ix->lengths + 4 * s;
    ix->documents = ix->pointers + 8 * s;
    return 0;
}

/* Lengths non-negative and pointers contiguous from 0, so every sequence lies inside the .bin. */
static int check_sequences(struct idx_index *ix, const char *name, char *err, size_t errlen)
{
    int64_t expect = 0;
    for (int64_t i = 0; i < ix->sequence_count; i++) {
        int32_t n = idx_index_length(ix, i);
        int64_t ptr = idx_index_pointer(ix, i);
        if (n < 0) {
            error_set(err, errlen, "%s: sequence_lengths[%" PRId64 "]: %" PRId32 " is negative; " REDO, name, i, n);
            return -1;
        }
        if (ptr != expect) {
            error_set(err, errlen,
                    "%s: sequence_pointers[%" PRId64 "]: %" PRId64 " but the lengths before it place it at byte %"
                    PRId64 "; " REDO,
                    name, i, ptr, expect);
            return -1;
        }
        int64_t bytes = (int64_t)n * (int64_t)ix->itemsize; /* < 2^34, no overflow */
        if (expect > INT64_MAX - bytes) {
            error_set(err, errlen, "%s: sequence_lengths[%" PRId64 "]: the total size overflows 64 bits; " REDO, name, i);
            return -1;
        }
        expect += bytes;
    }
    ix->bin_bytes = (uint64_t)expect;
    return 0;
}

static int check_documents(const struct idx_index *ix, const char *name, char *err, size_t errlen)
{
    int64_t d = ix->document_count;
    int64_t first = idx_index_document(ix, 0);
    if (first != 0) {
        error_set(err, errlen, "%s: document_indices[0]: %" PRId64 ", expected 0; " REDO, name, first);
        return -1;
    }
    int64_t prev = 0;
    for (int64_t i = 1; i < d; i++) {
        int64_t v = idx_index_document(ix, i);
        if (v < prev) {
            error_set(err, errlen,
                    "%s: document_indices[%" PRId64 "]: %" PRId64 " is below the previous entry %" PRId64 " (must "
                    "not decrease); " REDO,
                    name, i, v, prev);
            return -1;
        }
        prev = v;
    }
    if (prev != ix->sequence_count) {
        error_set(err, errlen,
                "%s: document_indices[%" PRId64 "]: last entry %" PRId64 " must equal the sequence count %" PRId64
                "; " REDO,
                name, d - 1, prev, ix->sequence_count);
        return -1;
    }
    return 0;
}

int idx_parse(const void *buf, size_t len, uint64_t bin_size, const char *name, struct idx_index *out,
              char *err, size_t errlen)
{
    struct idx_index ix;
    memset(&ix, 0, sizeof(ix));
    if (parse_header(buf, len, name, &ix, err, errlen) || check_sequences(&ix, name, err, errlen) ||
        check_documents(&ix, name, err, errlen))
        return -1;
    if (bin_size != IDX_BIN_SIZE_UNKNOWN && bin_size != ix.bin_bytes) {
        error_set(err, errlen,
                "%s: sequence_pointers: the index describes %" PRIu64 " bytes of .bin data but the .bin has "
                "%" PRIu64 "; the .bin and .idx do not belong together, " REDO,
                name, ix.bin_bytes, bin_size);
        return -1;
    }
    *out = ix;
    return 0;
}

/* Maps a whole file read-only; an empty file gives (NULL, 0). */
static int map_file(const char *path, void **map, size_t *len, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        error_set(err, errlen, "%s: cannot open: %s; check the --data-path prefix (files <prefix>.bin and <prefix>.idx)",
                path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        error_set(err, errlen, "%s: not a regular file; check the --data-path prefix", path);
        close(fd);
        return -1;
    }
    *len = (size_t)st.st_size;
    *map = NULL;
    if (*len > 0) {
        void *m = mmap(NULL, *len, PROT_READ, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED) {
            error_set(err, errlen, "%s: cannot map: %s; check that the file is readable", path, strerror(errno));
            close(fd);
            return -1;
        }
        *map = m;
    }
    close(fd);
    return 0;
}

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 1;
    char *s = xmalloc(n);
    snprintf(s, n, "%s%s", a, b);
    return s;
}

struct idx_dataset *idx_open(const char *prefix, char *err, size_t errlen)
{
    struct idx_dataset *ds = xcalloc(1, sizeof(*ds));
    ds->prefix = xstrdup(prefix);
    ds->idx_path = join(prefix, ".idx");
    ds->bin_path = join(prefix, ".bin");
    if (map_file(ds->idx_path, &ds->idx_map, &ds->idx_len, err, errlen) ||
        map_file(ds->bin_path, &ds->bin_map, &ds->bin_len, err, errlen) ||
        idx_parse(ds->idx_map, ds->idx_len, ds->bin_len, ds->idx_path, &ds->index, err, errlen)) {
        idx_close(ds);
        return NULL;
    }
    int64_t s = ds->index.sequence_count;
    ds->sequence_lengths = xmalloc((size_t)(s > 0 ? s : 1) * sizeof(int32_t));
    if (s > 0) memcpy(ds->sequence_lengths, ds->index.lengths, (size_t)s * sizeof(int32_t));
    for (int64_t i = 0; i < s; i++) ds->num_tokens += ds->sequence_lengths[i];
    return ds;
}

struct idx_dataset *idx_open_or_die(const char *prefix)
{
    char err[512];
    struct idx_dataset *ds = idx_open(prefix, err, sizeof(err));
    if (!ds) die_user("%s", err);
    return ds;
}

void idx_close(struct idx_dataset *ds)
{
    if (!ds) return;
    if (ds->idx_map) munmap(ds->idx_map, ds->idx_len);
    if (ds->bin_map) munmap(ds->bin_map, ds->bin_len);
    free(ds->sequence_lengths);
    free(ds->prefix);
    free(ds->idx_path);
    free(ds->bin_path);
    free(ds);
}

int64_t idx_sequence_count(const struct idx_dataset *ds)
{
    return ds->index.sequence_count;
}

int64_t idx_document_count(const struct idx_dataset *ds)
{
    return ds->index.document_count - 1;
}

struct idx_sequence idx_get(const struct idx_dataset *ds, int64_t i)
{
    CHECK(i >= 0 && i < ds->index.sequence_count);
    struct idx_sequence s;
    s.length = ds->sequence_lengths[i];
    s.dtype = ds->index.dtype;
    s.data = s.length > 0 ? (const unsigned char *)ds->bin_map + idx_index_pointer(&ds->index, i) : NULL;
    return s;
}

/* Items of an integer dtype up to 32 bits always fit; wider and float items are checked. */
static int convert_item(const unsigned char *p, int dtype, int32_t *out)
{
    switch (dtype) {
    case IDX_UINT8: *out = *p; return 0;
    case IDX_INT8: *out = (int8_t)*p; return 0;
    case IDX_INT16: { int16_t v; memcpy(&v, p, 2); *out = v; return 0; }
    case IDX_UINT16: { uint16_t v; memcpy(&v, p, 2); *out = v; return 0; }
    case IDX_INT32: memcpy(out, p, 4); return 0;
    case IDX_INT64: {
        int64_t v;
        memcpy(&v, p, 8);
        if (v < INT32_MIN || v > INT32_MAX) return -1;
        *out = (int32_t)v;
        return 0;
    }
    case IDX_FLOAT32: {
        float v;
        memcpy(&v, p, 4);
        if (!(v >= (float)INT32_MIN && v < 2147483648.0f) || v != truncf(v)) return -1;
        *out = (int32_t)v;
        return 0;
    }
    case IDX_FLOAT64: {
        double v;
        memcpy(&v, p, 8);
        if (!(v >= (double)INT32_MIN && v <= (double)INT32_MAX) || v != trunc(v)) return -1;
        *out = (int32_t)v;
        return 0;
    }
    default: return -1;
    }
}

int idx_read_tokens(const struct idx_dataset *ds, int64_t i, int64_t offset, int64_t len, int32_t *out,
                    char *err, size_t errlen)
{
    if (i < 0 || i >= ds->index.sequence_count) {
        error_set(err, errlen,
                "%s: sequence %" PRId64 " does not exist (%" PRId64 " sequences); the dataset indices do not match "
                "this dataset, delete the index cache",
                ds->bin_path, i, ds->index.sequence_count);
        return -1;
    }
    struct idx_sequence s = idx_get(ds, i);
    if (offset < 0 || len < 0 || offset > s.length || len > s.length - offset) {
        error_set(err, errlen,
                "%s: tokens [%" PRId64 ", %" PRId64 ") of sequence %" PRId64 " lie outside its %" PRId64 " tokens; "
                "the dataset indices do not match this dataset, delete the index cache",
                ds->bin_path, offset, offset + len, i, s.length);
        return -1;
    }
    if (len == 0) return 0;
    const unsigned char *p = (const unsigned char *)s.data + (size_t)offset * ds->index.itemsize;
    if (ds->index.dtype == IDX_UINT16) { /* the common case (GPT-2 vocabularies), kept tight */
        for (int64_t k = 0; k < len; k++) {
            uint16_t v;
            memcpy(&v, p + 2 * k, 2);
            out[k] = v;
        }
        return 0;
    }
    for (int64_t k = 0; k < len; k++) {
        if (convert_item(p + (size_t)k * ds->index.itemsize, ds->index.dtype, &out[k])) {
            error_set(err, errlen,
                    "%s: token %" PRId64 " of sequence %" PRId64 " (%s) is not an integer in int32 range; " REDO,
                    ds->bin_path, offset + k, i, idx_dtype_name(ds->index.dtype));
            return -1;
        }
    }
    return 0;
}
