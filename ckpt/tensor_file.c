/* Block-wise writing and reading of full-shape tensors in a safetensors file; see tensor_file.h. */
#include "ckpt/tensor_file.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckpt/checksum.h"
#include "kernels/tensor.h"
#include "util/error.h"
#include "util/json.h"

#define STAGING_BYTES (8u << 20) /* conversion buffer: large writes, bounded memory */

void tfile_rows_cols(int ndim, const int64_t *shape, int64_t *rows, int64_t *cols)
{
    *rows = ndim == 2 ? shape[0] : 1;
    *cols = ndim == 2 ? shape[1] : shape[0];
}

static void append(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n + 1 > *cap) {
        while (*len + n + 1 > *cap) *cap = *cap ? 2 * *cap : 4096;
        *buf = xrealloc(*buf, *cap);
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = 0;
}

void tfile_plan_init(struct tfile_plan *p, struct tfile_entry *entries, size_t n)
{
    char *json = NULL, tmp[160];
    size_t len = 0, cap = 0;
    uint64_t offset = 0;
    append(&json, &len, &cap, "{", 1);
    for (size_t i = 0; i < n; i++) {
        struct tfile_entry *e = &entries[i];
        int64_t numel = e->ndim == 2 ? e->shape[0] * e->shape[1] : e->shape[0];
        e->nbytes = (uint64_t)numel * st_dtype_size(e->dtype);
        size_t q = json_escape(NULL, 0, e->name, strlen(e->name));
        char *quoted = xmalloc(q + 1);
        json_escape(quoted, q + 1, e->name, strlen(e->name));
        if (i) append(&json, &len, &cap, ",", 1);
        append(&json, &len, &cap, quoted, q);
        free(quoted);
        int k = e->ndim == 2 ? snprintf(tmp, sizeof tmp, ":{\"dtype\":\"%s\",\"shape\":[%" PRId64 ",%" PRId64 "]",
                                        st_dtype_name(e->dtype), e->shape[0], e->shape[1])
                             : snprintf(tmp, sizeof tmp, ":{\"dtype\":\"%s\",\"shape\":[%" PRId64 "]",
                                        st_dtype_name(e->dtype), e->shape[0]);
        append(&json, &len, &cap, tmp, (size_t)k);
        k = snprintf(tmp, sizeof tmp, ",\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", offset, offset + e->nbytes);
        append(&json, &len, &cap, tmp, (size_t)k);
        e->offset = offset; /* relative for now */
        offset += e->nbytes;
    }
    append(&json, &len, &cap, "}", 1);
    while ((len + 8) % 8) append(&json, &len, &cap, " ", 1); /* keeps the data 8-byte aligned */
    p->entries = entries;
    p->n = n;
    p->header_len = 8 + len;
    p->header = xmalloc(p->header_len);
    for (int b = 0; b < 8; b++) p->header[b] = (char)(unsigned char)((uint64_t)len >> (8 * b));
    memcpy(p->header + 8, json, len);
    free(json);
    for (size_t i = 0; i < n; i++) entries[i].offset += p->header_len;
    p->file_size = p->header_len + offset;
}

void tfile_plan_free(struct tfile_plan *p)
{
    free(p->header);
    p->header = NULL;
}

static int pwrite_all(int fd, const void *buf, size_t len, uint64_t at)
{
    const char *c = buf;
    while (len > 0) {
        ssize_t w = pwrite(fd, c, len < (1u << 30) ? len : (1u << 30), (off_t)at);
        if (w < 0 && errno == EINTR) continue;
        if (w == 0) errno = ENOSPC;
        if (w <= 0) return -1;
        c += w;
        len -= (size_t)w;
        at += (uint64_t)w;
    }
    return 0;
}

int tfile_open_write(const char *path, const struct tfile_plan *p, bool first_writer, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC | (first_writer ? O_CREAT | O_TRUNC : 0), 0644);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot create: %s", path, strerror(errno));
        return -1;
    }
    if (first_writer && (pwrite_all(fd, p->header, p->header_len, 0) || ftruncate(fd, (off_t)p->file_size))) {
        snprintf(err, errlen, "%s: cannot write: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static void to_dtype(void *out, const float *in, int64_t n, enum st_dtype dt)
{
    if (dt == ST_F32) {
        memcpy(out, in, (size_t)n * 4);
    } else if (dt == ST_BF16) {
        uint16_t *o = out;
        for (int64_t i = 0; i < n; i++) o[i] = f32_to_bf16(in[i]);
    } else {
        uint16_t *o = out;
        for (int64_t i = 0; i < n; i++) o[i] = f32_to_f16(in[i]);
    }
}

static void from_dtype(float *out, const void *in, int64_t n, enum st_dtype dt)
{
    if (dt == ST_F32) {
        memcpy(out, in, (size_t)n * 4);
    } else if (dt == ST_BF16) {
        const uint16_t *h = in;
        for (int64_t i = 0; i < n; i++) out[i] = bf16_to_f32(h[i]);
    } else {
        const uint16_t *h = in;
        for (int64_t i = 0; i < n; i++) out[i] = f16_to_f32(h[i]);
    }
}

/* A whole contiguous fp32 block goes to the file without staging. */
static int write_direct(int fd, const struct tfile_entry *e, int64_t first, int64_t n, const float *src,
                        uint64_t *sum)
{
    *sum += checksum_sum64(src, 4, first, n);
    return pwrite_all(fd, src, (size_t)n * 4, e->offset + (uint64_t)first * 4);
}

int tfile_write_block(int fd, const struct tfile_entry *e, int64_t row0, int64_t nrows, int64_t col0,
                      int64_t ncols, const float *src, int64_t src_stride, uint64_t *sum, char *err,
                      size_t errlen)
{
    int64_t rows, cols;
    tfile_rows_cols(e->ndim, e->shape, &rows, &cols);
    if (row0 < 0 || col0 < 0 || row0 + nrows > rows || col0 + ncols > cols) BUG("block outside %s", e->name);
    if (nrows <= 0 || ncols <= 0) return 0;
    size_t isz = st_dtype_size(e->dtype);
    bool whole_rows = ncols == cols;
    int rc = 0;
    if (whole_rows && src_stride == ncols && e->dtype == ST_F32) {
        rc = write_direct(fd, e, row0 * cols, nrows * cols, src, sum);
    } else {
        size_t row_bytes = (size_t)ncols * isz;
        int64_t per_chunk = row_bytes >= STAGING_BYTES ? 1 : (int64_t)(STAGING_BYTES / row_bytes);
        unsigned char *stage = xmalloc(row_bytes * (size_t)(per_chunk < nrows ? per_chunk : nrows));
        for (int64_t r = 0; r < nrows && rc == 0; r += per_chunk) {
            int64_t k = nrows - r < per_chunk ? nrows - r : per_chunk;
#pragma omp parallel for schedule(static) if (k * ncols >= (1 << 16))
            for (int64_t j = 0; j < k; j++)
                to_dtype(stage + (size_t)j * row_bytes, src + (r + j) * src_stride, ncols, e->dtype);
            if (whole_rows) {
                *sum += checksum_sum64(stage, isz, (row0 + r) * cols, k * cols);
                rc = pwrite_all(fd, stage, row_bytes * (size_t)k, e->offset + (uint64_t)((row0 + r) * cols) * isz);
                continue;
            }
            for (int64_t j = 0; j < k && rc == 0; j++) {
                int64_t first = (row0 + r + j) * cols + col0;
                *sum += checksum_sum64(stage + (size_t)j * row_bytes, isz, first, ncols);
                rc = pwrite_all(fd, stage + (size_t)j * row_bytes, row_bytes, e->offset + (uint64_t)first * isz);
            }
        }
        free(stage);
    }
    if (rc) snprintf(err, errlen, "tensor %s: cannot write: %s", e->name, strerror(errno));
    return rc;
}

int tfile_close_write(int fd, const char *path, char *err, size_t errlen)
{
    int rc = fsync(fd);
    int e = errno;
    if (close(fd) != 0 && rc == 0) {
        rc = -1;
        e = errno;
    }
    if (rc) snprintf(err, errlen, "%s: cannot write: %s", path, strerror(e));
    return rc;
}

void tfile_read_block(const struct st_tensor *t, int64_t cols, int64_t row0, int64_t nrows, int64_t col0,
                      int64_t ncols, float *dst, int64_t dst_stride)
{
    size_t isz = st_dtype_size(t->dtype);
    const unsigned char *base = t->data;
#pragma omp parallel for schedule(static) if (nrows * ncols >= (1 << 16))
    for (int64_t r = 0; r < nrows; r++)
        from_dtype(dst + r * dst_stride, base + ((size_t)(row0 + r) * (size_t)cols + (size_t)col0) * isz, ncols,
                   t->dtype);
}
