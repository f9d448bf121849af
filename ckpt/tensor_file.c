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

/* Starts writing a large range to disk now (without waiting), so the disk works while the next
 * tensors are converted and checksummed; the final fsync then has little left to wait for.
 * Small ranges are left to the page cache. */
static void start_writeback(int fd, uint64_t at, uint64_t len)
{
    if (len >= (1u << 20)) (void)sync_file_range(fd, (off_t)at, (off_t)len, SYNC_FILE_RANGE_WRITE);
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

int tfile_write_run(int fd, const struct tfile_entry *e, int64_t first, int64_t n, const float *src, uint64_t *sum,
                    char *err, size_t errlen)
{
    int64_t rows, cols;
    tfile_rows_cols(e->ndim, e->shape, &rows, &cols);
    if (first < 0 || n < 0 || first + n > rows * cols) BUG("run outside %s", e->name);
    size_t isz = st_dtype_size(e->dtype);
    int rc = 0;
    if (e->dtype == ST_F32) { /* as stored: no staging; the checksum runs while the disk writes */
        rc = pwrite_all(fd, src, (size_t)n * 4, e->offset + (uint64_t)first * 4);
        if (rc == 0) start_writeback(fd, e->offset + (uint64_t)first * 4, (uint64_t)n * 4);
        *sum += checksum_sum64(src, 4, first, n);
    } else {
        int64_t chunk = (int64_t)(STAGING_BYTES / isz);
        unsigned char *stage = xmalloc((size_t)(n < chunk ? n : chunk) * isz);
        for (int64_t at = 0; at < n && rc == 0; at += chunk) {
            int64_t k = n - at < chunk ? n - at : chunk;
            to_dtype(stage, src + at, k, e->dtype);
            *sum += checksum_sum64(stage, isz, first + at, k);
            rc = pwrite_all(fd, stage, (size_t)k * isz, e->offset + (uint64_t)(first + at) * isz);
            if (rc == 0) start_writeback(fd, e->offset + (uint64_t)(first + at) * isz, (uint64_t)k * isz);
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

void tfile_read_run(const struct st_tensor *t, int64_t first, int64_t n, float *dst)
{
    const unsigned char *base = (const unsigned char *)t->data + (size_t)first * st_dtype_size(t->dtype);
    int64_t chunk = 1 << 16;
#pragma omp parallel for schedule(static) if (n >= 4 * chunk)
    for (int64_t at = 0; at < n; at += chunk)
        from_dtype(dst + at, base + (size_t)at * st_dtype_size(t->dtype), n - at < chunk ? n - at : chunk, t->dtype);
}
