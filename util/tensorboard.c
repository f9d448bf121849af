/* TensorBoard event files: see tensorboard.h. */
#include "util/tensorboard.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "ckpt/dirs.h"
#include "util/error.h"

enum { TB_FLUSH_SECONDS = 120 }; /* SummaryWriter's flush_secs */

struct tb_writer {
    FILE *f;
    char *path;
    int64_t queue_size, pending;
    double flushed_at;
    bool failed; /* a write failed: reported once, nothing more written */
};

uint32_t tb_crc32c(const void *data, size_t n)
{
    /* bit by bit (the records are a few dozen bytes): no table to keep */
    const uint8_t *p = data;
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    }
    return c ^ 0xFFFFFFFFu;
}

uint32_t tb_masked_crc32c(const void *data, size_t n)
{
    uint32_t c = tb_crc32c(data, n);
    return ((c >> 15) | (c << 17)) + 0xA282EAD8u;
}

/* ---- protocol buffer encoding: varints, tags (field number << 3 | wire type) ---- */

struct pb {
    uint8_t *p;
    size_t n, cap;
    bool overflow;
};

static void pb_byte(struct pb *b, uint8_t v)
{
    if (b->n < b->cap) b->p[b->n] = v;
    else b->overflow = true;
    b->n++;
}

static void pb_varint(struct pb *b, uint64_t v)
{
    while (v >= 0x80) {
        pb_byte(b, (uint8_t)(v | 0x80));
        v >>= 7;
    }
    pb_byte(b, (uint8_t)v);
}

static void pb_fixed(struct pb *b, const void *v, int bytes) /* little-endian host */
{
    for (int i = 0; i < bytes; i++) pb_byte(b, ((const uint8_t *)v)[i]);
}

static void pb_bytes(struct pb *b, int field, const void *data, size_t n)
{
    pb_varint(b, (uint64_t)field << 3 | 2);
    pb_varint(b, n);
    for (size_t i = 0; i < n; i++) pb_byte(b, ((const uint8_t *)data)[i]);
}

/* Event { double wall_time = 1; int64 step = 2; string file_version = 3 or Summary summary = 5 } */
static void pb_event_head(struct pb *b, double wall_time, int64_t step)
{
    pb_varint(b, 1 << 3 | 1);
    pb_fixed(b, &wall_time, 8);
    if (step != 0) { /* proto3: a zero is left out */
        pb_varint(b, 2 << 3 | 0);
        pb_varint(b, (uint64_t)step);
    }
}

size_t tb_scalar_event(uint8_t *out, size_t cap, double wall_time, int64_t step, const char *tag, float value)
{
    size_t tag_len = strlen(tag);
    if (tag_len > 1000) return 0;
    /* Value { string tag = 1; float simple_value = 2; } inside Summary { repeated Value value = 1; } */
    uint8_t value_msg[1024];
    struct pb v = {value_msg, 0, sizeof value_msg, false};
    pb_bytes(&v, 1, tag, tag_len);
    pb_varint(&v, 2 << 3 | 5);
    pb_fixed(&v, &value, 4);
    uint8_t summary[1040];
    struct pb s = {summary, 0, sizeof summary, false};
    pb_bytes(&s, 1, value_msg, v.n);
    struct pb e = {out, 0, cap, false};
    pb_event_head(&e, wall_time, step);
    pb_bytes(&e, 5, summary, s.n);
    return e.overflow || v.overflow || s.overflow ? 0 : e.n;
}

static double wall_seconds(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec * 1e-6;
}

/* One TFRecord: length, its masked CRC, the data, its masked CRC. */
static void write_record(struct tb_writer *w, const uint8_t *data, size_t n)
{
    if (w->failed) return;
    uint64_t len = n;
    uint32_t len_crc = tb_masked_crc32c(&len, 8), data_crc = tb_masked_crc32c(data, n);
    if (fwrite(&len, 8, 1, w->f) != 1 || fwrite(&len_crc, 4, 1, w->f) != 1 || fwrite(data, 1, n, w->f) != n ||
        fwrite(&data_crc, 4, 1, w->f) != 1) {
        w->failed = true;
        warn_user("--tensorboard-dir: cannot write %s: %s; TensorBoard logging stops here, training goes on",
                  w->path, strerror(errno));
    }
}

struct tb_writer *tb_open(const char *dir, int64_t queue_size, char *err, size_t errlen)
{
    char why[512];
    if (dirs_mkdir_p(dir, why, sizeof why) != 0) {
        snprintf(err, errlen, "cannot create %s (%s)", dir, why);
        return NULL;
    }
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = 0;
    size_t n = strlen(dir) + strlen(host) + 96;
    struct tb_writer *w = xcalloc(1, sizeof *w);
    w->queue_size = queue_size > 0 ? queue_size : 1;
    w->path = xmalloc(n);
    double now = wall_seconds();
    snprintf(w->path, n, "%s/events.out.tfevents.%010lld.%s.%lld.0", dir, (long long)now, host, (long long)getpid());
    w->f = fopen(w->path, "wb");
    if (!w->f) {
        snprintf(err, errlen, "cannot create %s: %s", w->path, strerror(errno));
        free(w->path);
        free(w);
        return NULL;
    }
    uint8_t buf[64];
    struct pb e = {buf, 0, sizeof buf, false};
    pb_event_head(&e, now, 0);
    pb_bytes(&e, 3, "brain.Event:2", 13);
    write_record(w, buf, e.n);
    tb_flush(w);
    return w;
}

void tb_scalar(struct tb_writer *w, const char *tag, double value, int64_t step)
{
    uint8_t buf[1200];
    size_t n = tb_scalar_event(buf, sizeof buf, wall_seconds(), step, tag, (float)value);
    if (n == 0) BUG("tb_scalar: tag %.40s too long", tag);
    write_record(w, buf, n);
    if (++w->pending >= w->queue_size || wall_seconds() - w->flushed_at >= TB_FLUSH_SECONDS) tb_flush(w);
}

void tb_flush(struct tb_writer *w)
{
    w->pending = 0;
    w->flushed_at = wall_seconds();
    if (!w->failed && fflush(w->f) != 0) {
        w->failed = true;
        warn_user("--tensorboard-dir: cannot write %s: %s; TensorBoard logging stops here, training goes on",
                  w->path, strerror(errno));
    }
}

void tb_close(struct tb_writer *w)
{
    if (!w) return;
    tb_flush(w);
    fclose(w->f);
    free(w->path);
    free(w);
}
