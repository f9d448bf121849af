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
#include "ckpt/stream.h"
#include "kernels/tensor.h"
#include "util/error.h"
#include "util/json.h"

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
        ssize_t w = pwrite(fd, c, len, (off_t)at);
        if (w < 0 && errno == EINTR) continue;
        if (w == 0) errno = ENOSPC;
        if (w <= 0) return -1;
        c += w;
        len -= (size_t)w;
        at += (uint64_t)w;
    }
    return 0;
}

struct stream_writer *tfile_open_write(const char *path, const struct tfile_plan *p, bool first_writer, char *err,
                                       size_t errlen)
{
    if (first_writer) {
        int fd = open(path, O_WRONLY | O_CLOEXEC | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) {
            snprintf(err, errlen, "%s: cannot create: %s", path, strerror(errno));
            return NULL;
        }
        bool ok = pwrite_all(fd, p->header, p->header_len, 0) == 0 && ftruncate(fd, (off_t)p->file_size) == 0;
        int e = errno;
        close(fd);
        if (!ok) {
            snprintf(err, errlen, "%s: cannot write: %s", path, strerror(e));
            return NULL;
        }
    }
    return stream_writer_open(path, err, errlen);
}

static void to_dtype(void *out, const float *in, int64_t n, enum st_dtype dt)
{
    if (dt == ST_F32) {
        memcpy(out, in, (size_t)n * 4);
        return;
    }
    uint16_t *o = out;
#pragma omp parallel for schedule(static) if (n >= (1 << 18))
    for (int64_t i = 0; i < n; i++) o[i] = dt == ST_BF16 ? f32_to_bf16(in[i]) : f32_to_f16(in[i]);
}

void tfile_from_dtype(float *out, const void *in, int64_t n, enum st_dtype dt)
{
    const unsigned char *bytes = in;
    size_t isz = st_dtype_size(dt);
    int64_t chunk = 1 << 16;
#pragma omp parallel for schedule(static) if (n >= 4 * chunk)
    for (int64_t at = 0; at < n; at += chunk) {
        int64_t k = n - at < chunk ? n - at : chunk;
        const unsigned char *src = bytes + (size_t)at * isz;
        float *dst = out + at;
        if (dt == ST_F32) {
            memcpy(dst, src, (size_t)k * 4);
        } else {
            for (int64_t i = 0; i < k; i++) {
                uint16_t h;
                memcpy(&h, src + 2 * i, 2);
                dst[i] = dt == ST_BF16 ? bf16_to_f32(h) : f16_to_f32(h);
            }
        }
    }
}

int tfile_write_run(struct stream_writer *w, const struct tfile_entry *e, int64_t first, int64_t n, const float *src,
                    uint64_t *sum)
{
    int64_t rows, cols;
    tfile_rows_cols(e->ndim, e->shape, &rows, &cols);
    if (first < 0 || n < 0 || first + n > rows * cols) BUG("run outside %s", e->name);
    size_t isz = st_dtype_size(e->dtype);
    uint64_t at = e->offset + (uint64_t)first * isz;
    while (n > 0) { /* converted into the writer's buffer and summed there, while it is in cache */
        size_t room = (size_t)n * isz;
        void *dst = stream_writer_reserve(w, at, &room);
        int64_t k = (int64_t)(room / isz);
        to_dtype(dst, src, k, e->dtype);
        *sum += checksum_sum64(dst, isz, first, k);
        stream_writer_commit(w, (size_t)k * isz);
        src += k;
        first += k;
        n -= k;
        at += (uint64_t)k * isz;
    }
    return stream_writer_failed(w) ? -1 : 0;
}

int tfile_close_write(struct stream_writer *w, char *err, size_t errlen) { return stream_writer_close(w, err, errlen); }

void tfile_read_run(const struct st_tensor *t, int64_t first, int64_t n, float *dst)
{
    tfile_from_dtype(dst, (const unsigned char *)t->data + (size_t)first * st_dtype_size(t->dtype), n, t->dtype);
}
