/* Full-shape tensors in a safetensors file that several ranks write together. Every rank builds
 * the same plan from the same tensor list (names, dtypes, full shapes -> header and byte offsets);
 * the first writer creates the file, writes the header and sizes it; then every rank streams the
 * runs of elements it owns into the file (ckpt/stream.h), converting from fp32 to the stored
 * dtype and adding each run's sum64 (ckpt/checksum.h). Runs of different ranks never overlap, so
 * no locking is needed. The result is an ordinary safetensors file: any safetensors reader loads
 * it. Reading goes through st_open (mmap + validation), ckpt/stream.h and tfile_from_dtype. */
#ifndef MEGATRON_CKPT_TENSOR_FILE_H
#define MEGATRON_CKPT_TENSOR_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ckpt/safetensors.h"

struct tfile_entry {
    const char *name;        /* owned by the caller */
    enum st_dtype dtype;     /* F32, BF16 or F16 */
    int ndim;                /* 1 or 2 */
    int64_t shape[2];        /* full logical shape */
    uint64_t offset;         /* first byte from the start of the file (filled by tfile_plan_init) */
    uint64_t nbytes;
};

struct tfile_plan {
    struct tfile_entry *entries; /* the caller's array; offsets are filled in */
    size_t n;
    char *header;                /* 8-byte length + JSON header padded to a multiple of 8 */
    size_t header_len;
    uint64_t file_size;
};

/* Lays the tensors out in the given order (the caller orders them by decreasing element size so
 * every tensor is aligned). Names must be unique valid UTF-8. */
void tfile_plan_init(struct tfile_plan *p, struct tfile_entry *entries, size_t n);
void tfile_plan_free(struct tfile_plan *p);

/* The (rows, cols) view of an entry: [r, c] as is, a 1-D [n] as one row of n columns. */
void tfile_rows_cols(int ndim, const int64_t *shape, int64_t *rows, int64_t *cols);

struct stream_writer;

/* Opens path for writing. first_writer creates (truncating) it, writes the header and sizes the
 * file; the other ranks open it after the first writer is done (a barrier between). Returns a
 * writer, or NULL with err. */
struct stream_writer *tfile_open_write(const char *path, const struct tfile_plan *p, bool first_writer, char *err,
                                       size_t errlen);

/* Writes n elements of entry e starting at element `first` of the full tensor (row-major) from
 * fp32 src, converted to e->dtype; adds their sum64 to *sum. The write completes in the
 * background: -1 only when an earlier write has failed already (tfile_close_write says why). */
int tfile_write_run(struct stream_writer *w, const struct tfile_entry *e, int64_t first, int64_t n, const float *src,
                    uint64_t *sum);

/* Finishes the writes, fsyncs and closes; 0, or -1 with err (which may be NULL). */
int tfile_close_write(struct stream_writer *w, char *err, size_t errlen);

/* Reads n elements from element `first` (row-major) of a stored F32/BF16/F16 tensor into fp32 dst. */
void tfile_read_run(const struct st_tensor *t, int64_t first, int64_t n, float *dst);

/* n stored F32/BF16/F16 elements at in (any alignment) to fp32 out. */
void tfile_from_dtype(float *out, const void *in, int64_t n, enum st_dtype dt);

#endif
