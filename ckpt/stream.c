/* Streaming writes and reads of checkpoint files through a few fixed buffers; see stream.h.
 *
 * Why threads and O_DIRECT, from the 2-core development machine (a virtual machine on a shared
 * disk): `dd` wrote there at 0.2-0.7 GB/s through the page cache and 1.2-2.5 GB/s directly with
 * two 32 MiB requests in flight, and buffered writes of a 14 GB checkpoint next to 16 GB of model
 * state were throttled to 0.2-0.3 GB/s. Reading, the disk needs many requests in flight (direct
 * reads of 32 MiB: 0.9 GB/s with 2 threads, 1.7 GB/s with 8), and reading through the page cache
 * spent half of a load's CPU time copying pages (on two cores the checksums need that time). */
#include "ckpt/stream.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/error.h"

#define PAGE ((uint64_t)4096) /* O_DIRECT alignment of offsets, lengths and memory */
#define WRITE_BUFFERS 4       /* staging buffers per writer */
#define WRITE_THREADS 2       /* writes in flight */
#define READ_THREADS 8        /* reads in flight */
#define READ_SLOTS (READ_THREADS + 2) /* chunk buffers per reader: the threads', the caller's, one ready */

static void *alloc_buffer(size_t bytes)
{
    void *p = NULL;
    if (posix_memalign(&p, PAGE, bytes) != 0)
        die_user("out of memory: %zu bytes for checkpoint I/O; free memory or use a smaller model", bytes);
    return p;
}

int stream_open_direct(const char *path) { return open(path, O_RDONLY | O_CLOEXEC | O_DIRECT); }

static int pwrite_all(int fd, const unsigned char *buf, size_t len, uint64_t at)
{
    while (len > 0) {
        ssize_t w = pwrite(fd, buf, len < (1u << 30) ? len : (1u << 30), (off_t)at);
        if (w < 0 && errno == EINTR) continue;
        if (w == 0) errno = ENOSPC;
        if (w <= 0) return -1;
        buf += w;
        len -= (size_t)w;
        at += (uint64_t)w;
    }
    return 0;
}

/* ---- writer ---- */

struct wbuf {
    unsigned char *data; /* page-aligned, allocated on first use */
    uint64_t base;       /* file offset of data[0], page-aligned */
    size_t lo, hi;       /* the staged bytes are data[lo .. hi) */
};

struct stream_writer {
    char *path;
    int fd, fd_direct;   /* fd_direct: -1 where the file system refuses O_DIRECT */
    struct wbuf bufs[WRITE_BUFFERS];
    int filling;         /* the buffer being filled, or -1 */
    bool idle[WRITE_BUFFERS];  /* neither being filled nor queued nor being written */
    int queue[WRITE_BUFFERS], head, queued; /* full buffers, oldest first */
    pthread_t threads[WRITE_THREADS];
    int nthreads;
    pthread_mutex_t mu;
    pthread_cond_t work, freed;
    bool closing;
    int error;           /* the first errno of a failed write */
};

/* Whole pages directly; the partial pages at either end (and everything, without O_DIRECT or
 * when the file system turns a direct write down) through the page cache, whose writeback
 * starts at once. Returns 0 or an errno. */
static int write_buffer(const struct stream_writer *w, const struct wbuf *b)
{
    size_t lo = b->lo, hi = b->hi;
    size_t alo = (lo + PAGE - 1) / PAGE * PAGE, ahi = hi / PAGE * PAGE;
    if (w->fd_direct >= 0 && alo < ahi) {
        if (pwrite_all(w->fd_direct, b->data + alo, ahi - alo, b->base + alo) == 0) {
            if (pwrite_all(w->fd, b->data + lo, alo - lo, b->base + lo) ||
                pwrite_all(w->fd, b->data + ahi, hi - ahi, b->base + ahi))
                return errno;
            return 0;
        }
        if (errno != EINVAL) return errno;
    }
    if (pwrite_all(w->fd, b->data + lo, hi - lo, b->base + lo)) return errno;
    (void)sync_file_range(w->fd, (off_t)(b->base + lo), (off_t)(hi - lo), SYNC_FILE_RANGE_WRITE);
    return 0;
}

static void *writer_main(void *arg)
{
    struct stream_writer *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (w->queued == 0 && !w->closing) pthread_cond_wait(&w->work, &w->mu);
        if (w->queued == 0) break;
        int b = w->queue[w->head];
        w->head = (w->head + 1) % WRITE_BUFFERS;
        w->queued--;
        pthread_mutex_unlock(&w->mu);
        int e = write_buffer(w, &w->bufs[b]);
        pthread_mutex_lock(&w->mu);
        if (e && !w->error) w->error = e;
        w->idle[b] = true;
        pthread_cond_broadcast(&w->freed);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

struct stream_writer *stream_writer_open(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot open for writing: %s", path, strerror(errno));
        return NULL;
    }
    struct stream_writer *w = xcalloc(1, sizeof *w);
    w->path = xstrdup(path);
    w->fd = fd;
    w->fd_direct = open(path, O_WRONLY | O_CLOEXEC | O_DIRECT);
    w->filling = -1;
    for (int b = 0; b < WRITE_BUFFERS; b++) w->idle[b] = true;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->work, NULL);
    pthread_cond_init(&w->freed, NULL);
    for (int t = 0; t < WRITE_THREADS; t++)
        if (pthread_create(&w->threads[w->nthreads], NULL, writer_main, w) == 0) w->nthreads++;
    if (w->nthreads == 0) die_user("cannot start a thread for checkpoint I/O: %s", strerror(errno));
    return w;
}

/* Hands the buffer being filled to the I/O threads. */
static void submit(struct stream_writer *w)
{
    if (w->filling < 0) return;
    pthread_mutex_lock(&w->mu);
    if (w->bufs[w->filling].lo == w->bufs[w->filling].hi) { /* nothing was put there */
        w->idle[w->filling] = true;
        w->filling = -1;
        pthread_mutex_unlock(&w->mu);
        return;
    }
    w->queue[(w->head + w->queued) % WRITE_BUFFERS] = w->filling;
    w->queued++;
    pthread_cond_signal(&w->work);
    pthread_mutex_unlock(&w->mu);
    w->filling = -1;
}

static struct wbuf *take_idle(struct stream_writer *w)
{
    pthread_mutex_lock(&w->mu);
    int b = -1;
    for (;;) {
        for (int k = 0; k < WRITE_BUFFERS && b < 0; k++)
            if (w->idle[k]) b = k;
        if (b >= 0) break;
        pthread_cond_wait(&w->freed, &w->mu);
    }
    w->idle[b] = false;
    pthread_mutex_unlock(&w->mu);
    if (!w->bufs[b].data) w->bufs[b].data = alloc_buffer(STREAM_CHUNK_BYTES);
    w->filling = b;
    return &w->bufs[b];
}

void *stream_writer_reserve(struct stream_writer *w, uint64_t at, size_t *len)
{
    struct wbuf *b = w->filling >= 0 ? &w->bufs[w->filling] : NULL;
    if (b && at != b->base + b->hi) {
        submit(w);
        b = NULL;
    }
    if (!b) {
        b = take_idle(w);
        b->base = at / PAGE * PAGE;
        b->lo = b->hi = (size_t)(at - b->base);
    }
    size_t room = STREAM_CHUNK_BYTES - b->hi;
    if (*len > room) *len = room;
    return b->data + b->hi;
}

void stream_writer_commit(struct stream_writer *w, size_t n)
{
    struct wbuf *b = &w->bufs[w->filling];
    b->hi += n;
    if (b->hi == STREAM_CHUNK_BYTES) submit(w);
}

bool stream_writer_failed(struct stream_writer *w)
{
    pthread_mutex_lock(&w->mu);
    bool failed = w->error != 0;
    pthread_mutex_unlock(&w->mu);
    return failed;
}

int stream_writer_close(struct stream_writer *w, char *err, size_t errlen)
{
    submit(w);
    pthread_mutex_lock(&w->mu);
    w->closing = true;
    pthread_cond_broadcast(&w->work);
    pthread_mutex_unlock(&w->mu);
    for (int t = 0; t < w->nthreads; t++) pthread_join(w->threads[t], NULL);
    int e = w->error;
    if (fsync(w->fd) != 0 && !e) e = errno;
    if (w->fd_direct >= 0) close(w->fd_direct);
    if (close(w->fd) != 0 && !e) e = errno;
    if (e && err) snprintf(err, errlen, "%s: cannot write: %s", w->path, strerror(e));
    for (int b = 0; b < WRITE_BUFFERS; b++) free(w->bufs[b].data);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->work);
    pthread_cond_destroy(&w->freed);
    free(w->path);
    free(w);
    return e ? -1 : 0;
}

/* ---- reader ---- */

/* A chunk's place: which range, where in it, and its state in the ring. */
struct slot {
    unsigned char *data; /* STREAM_CHUNK_BYTES and a page either side, for direct reads */
    size_t skip;         /* the chunk starts at data + skip */
    uint64_t seq;        /* the chunk number it holds or is reading */
    size_t range;
    uint64_t at;
    size_t len;
    bool ready;
    int error;           /* errno of a failed read (EIO for a file shorter than its header says) */
};

struct stream_reader {
    const struct stream_range *ranges;
    size_t n;
    struct slot slots[READ_SLOTS];
    /* the next chunk to claim (seq, range, at), the chunk the caller holds, how many it released */
    uint64_t total;      /* chunks in all ranges */
    uint64_t next_seq, released;
    size_t next_range;
    uint64_t next_at;
    bool holding;
    struct stream_chunk held;
    pthread_t threads[READ_THREADS];
    int nthreads;
    pthread_mutex_t mu;
    pthread_cond_t changed;
    bool stop, failed;
    size_t failed_range;
    int failed_errno;
};

/* Reads at least `need` of the len bytes at `at` (a direct read may end early at the end of the
 * file). Returns 0 or an errno; EIO for a file shorter than its header says. */
static int pread_at_least(int fd, unsigned char *buf, size_t len, size_t need, uint64_t at)
{
    size_t got = 0;
    while (got < need) {
        ssize_t r = pread(fd, buf + got, len - got, (off_t)(at + got));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return errno;
        if (r == 0) return EIO;
        got += (size_t)r;
    }
    return 0;
}

/* Bytes [at, at + len) of range g into the slot, from slot + *skip on. A direct read covers the
 * whole pages around them; where the file system turns it down, the page cache is used (and
 * emptied again unless the range is kept). */
static int read_chunk(const struct stream_range *g, uint64_t at, size_t len, unsigned char *slot, size_t *skip)
{
    uint64_t off = g->offset + at, lo = off / PAGE * PAGE, hi = (off + len + PAGE - 1) / PAGE * PAGE;
    *skip = 0;
    if (!g->cached && g->fd_direct >= 0) {
        int e = pread_at_least(g->fd_direct, slot, (size_t)(hi - lo), (size_t)(off + len - lo), lo);
        if (e != EINVAL) {
            *skip = (size_t)(off - lo);
            return e;
        }
    }
    int e = pread_at_least(g->fd, slot, len, len, off);
    if (e == 0 && !g->keep) (void)posix_fadvise(g->fd, (off_t)off, (off_t)len, POSIX_FADV_DONTNEED);
    return e;
}

/* Claims the next chunk under the lock; false when there is none. */
static bool claim(struct stream_reader *r, uint64_t *seq, size_t *range, uint64_t *at, size_t *len)
{
    while (r->next_range < r->n && r->next_at >= r->ranges[r->next_range].nbytes) {
        r->next_range++;
        r->next_at = 0;
    }
    if (r->next_range >= r->n || r->stop) return false;
    const struct stream_range *g = &r->ranges[r->next_range];
    uint64_t left = g->nbytes - r->next_at;
    *seq = r->next_seq++;
    *range = r->next_range;
    *at = r->next_at;
    *len = left < STREAM_CHUNK_BYTES ? (size_t)left : STREAM_CHUNK_BYTES;
    r->next_at += *len;
    return true;
}

static void *reader_main(void *arg)
{
    struct stream_reader *r = arg;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        uint64_t seq, at;
        size_t range, len;
        if (!claim(r, &seq, &range, &at, &len)) break;
        while (seq >= r->released + READ_SLOTS && !r->stop) pthread_cond_wait(&r->changed, &r->mu);
        if (r->stop) break;
        struct slot *s = &r->slots[seq % READ_SLOTS];
        s->seq = seq;
        s->range = range;
        s->at = at;
        s->len = len;
        s->ready = false;
        pthread_mutex_unlock(&r->mu);
        if (!s->data) s->data = alloc_buffer(STREAM_CHUNK_BYTES + 2 * PAGE);
        int e = read_chunk(&r->ranges[range], at, len, s->data, &s->skip);
        pthread_mutex_lock(&r->mu);
        s->error = e;
        s->ready = true;
        pthread_cond_broadcast(&r->changed);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

struct stream_reader *stream_reader_start(const struct stream_range *ranges, size_t n)
{
    struct stream_reader *r = xcalloc(1, sizeof *r);
    r->ranges = ranges;
    r->n = n;
    for (size_t i = 0; i < n; i++) r->total += (ranges[i].nbytes + STREAM_CHUNK_BYTES - 1) / STREAM_CHUNK_BYTES;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->changed, NULL);
    for (int b = 0; b < READ_SLOTS; b++) r->slots[b].seq = UINT64_MAX;
    for (int t = 0; t < READ_THREADS; t++)
        if (pthread_create(&r->threads[r->nthreads], NULL, reader_main, r) == 0) r->nthreads++;
    if (r->nthreads == 0) die_user("cannot start a thread for checkpoint I/O: %s", strerror(errno));
    return r;
}

/* The caller is done with its chunk: the slot goes back to the threads. */
static void release_held(struct stream_reader *r)
{
    if (!r->holding) return;
    pthread_mutex_lock(&r->mu);
    r->released++;
    r->holding = false;
    pthread_cond_broadcast(&r->changed);
    pthread_mutex_unlock(&r->mu);
}

bool stream_reader_next(struct stream_reader *r, struct stream_chunk *c)
{
    release_held(r);
    uint64_t seq = r->released;
    if (r->failed || seq >= r->total) return false;
    struct slot *s = &r->slots[seq % READ_SLOTS];
    pthread_mutex_lock(&r->mu);
    while (s->seq != seq || !s->ready) pthread_cond_wait(&r->changed, &r->mu);
    pthread_mutex_unlock(&r->mu);
    if (s->error) {
        r->failed = true;
        r->failed_range = s->range;
        r->failed_errno = s->error;
        return false;
    }
    r->held = (struct stream_chunk){s->data + s->skip, s->range, s->at, s->len};
    r->holding = true;
    *c = r->held;
    return true;
}

int stream_reader_finish(struct stream_reader *r, size_t *range, char *err, size_t errlen)
{
    release_held(r);
    pthread_mutex_lock(&r->mu);
    r->stop = true;
    pthread_cond_broadcast(&r->changed);
    pthread_mutex_unlock(&r->mu);
    for (int t = 0; t < r->nthreads; t++) pthread_join(r->threads[t], NULL);
    int failed = r->failed;
    if (failed) {
        if (range) *range = r->failed_range;
        if (err) snprintf(err, errlen, "%s", strerror(r->failed_errno));
    }
    for (int b = 0; b < READ_SLOTS; b++) free(r->slots[b].data);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->changed);
    free(r);
    return failed ? -1 : 0;
}
