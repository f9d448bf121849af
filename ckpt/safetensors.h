/* Reading and writing Hugging Face safetensors files: an 8-byte little-endian header length N,
 * N bytes of JSON {"name": {"dtype", "shape", "data_offsets": [begin, end]}, ..., "__metadata__":
 * {string: string}}, then the tensor bytes (offsets count from the first byte after the header).
 *
 * Opening validates the whole header the way the reference Rust crate does, so a file that opens
 * is safe to index: known dtype, non-negative shape, offsets in [begin, end] form with
 * end - begin == numel * itemsize (overflow-checked), tensors that tile the data section from 0 to
 * its last byte with no gap or overlap (in offset order), header at most 100,000,000 bytes, and
 * unique names. Errors come back as one line naming the file and what is wrong; callers turn them
 * into die_user() messages. */
#ifndef MEGATRON_CKPT_SAFETENSORS_H
#define MEGATRON_CKPT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIMS 8

/* Element types, named in files as the enumerator without "ST_" (F8_E4M3 is "F8_E4M3"). */
enum st_dtype {
    ST_F64,
    ST_F32,
    ST_F16,
    ST_BF16,
    ST_I64,
    ST_I32,
    ST_I16,
    ST_I8,
    ST_U8,
    ST_BOOL,
    ST_U64,
    ST_U32,
    ST_U16,
    ST_F8_E4M3,
    ST_F8_E5M2,
    ST_F8_E8M0,
    ST_C64,
    ST_NUM_DTYPES
};

struct st_tensor {
    const char *name;
    enum st_dtype dtype;
    int ndim; /* 0 for a scalar (one element) */
    int64_t shape[ST_MAX_DIMS];
    /* Little-endian element data. From st_open/st_open_memory: aligned to the element size
     * (copied when the file's bytes are not), valid until st_close. For st_write: any
     * alignment, owned by the caller. */
    const void *data;
    size_t nbytes;
    uint64_t file_offset; /* where the data starts in the file (st_open, st_open_memory) */
};

struct st_file;

/* Maps `path` read-only and validates it fully. NULL and a one-line reason in err on failure. */
struct st_file *st_open(const char *path, char *err, size_t errlen);
/* The same over a caller's buffer, which must outlive the returned file (tests, fuzzing). */
struct st_file *st_open_memory(const void *buf, size_t len, char *err, size_t errlen);
void st_close(struct st_file *f); /* NULL is ok */

/* Tensors in data order (increasing data_offsets), which is the order the file stores them. */
size_t st_count(const struct st_file *f);
const struct st_tensor *st_at(const struct st_file *f, size_t i); /* NULL if out of range */
const struct st_tensor *st_find(const struct st_file *f, const char *name); /* NULL if absent */
/* The string stored under key in "__metadata__", or NULL. */
const char *st_metadata(const struct st_file *f, const char *key);

/* Converts a float tensor (F64, F32, F16, BF16) element-wise to fp32 out[numel] (F64 rounds to
 * nearest). Returns 0, or -1 with a reason in err for any other dtype. */
int st_to_f32(const struct st_tensor *t, float *out, char *err, size_t errlen);

/* Writes tensors[0..n) to path atomically (path.tmp, fsync, rename): tensors in the given order
 * with contiguous offsets, "__metadata__" first when metadata_kv (NULL-terminated key, value,
 * key, value, ..., NULL array) is given, header padded with spaces to a multiple of 8 bytes as the
 * reference writer does. Every tensor lies aligned in the file when they are given in order of
 * decreasing element size (the reference writer's order); any order reads back correctly. Names
 * must be valid UTF-8, unique and not "__metadata__"; nbytes must match dtype and shape.
 * Returns 0, or -1 with a reason in err and no file (and no .tmp) left behind. */
int st_write(const char *path, const struct st_tensor *tensors, size_t n, const char *const *metadata_kv,
             char *err, size_t errlen);

/* "F32", "BF16", ...; itemsize in bytes; name -> dtype (-1 when unknown). */
const char *st_dtype_name(enum st_dtype dt);
size_t st_dtype_size(enum st_dtype dt);
int st_dtype_from_name(const char *name, size_t len);
/* Product of the shape (1 for a scalar). */
int64_t st_numel(const struct st_tensor *t);

#endif
