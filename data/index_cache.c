/* Index cache files. Layout (little-endian):
 *   "MGTIDXC1" | u64 description bytes | u64 document_len | u64 sample_rows | u64 shuffle_len |
 *   description | int32 document_index | int64 sample_index[rows][2] | int64 shuffle_index |
 *   u64 FNV-1a of everything before it. */
#include "data/index_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/error.h"

#define CACHE_MAGIC "MGTIDXC1"
#define CACHE_HEADER 40

uint64_t index_cache_fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

char *index_cache_path(const char *dir, const char *description, const char *cls, const char *split,
                       const char *what)
{
    uint64_t h = index_cache_fnv1a(INDEX_CACHE_FNV_BASIS, description, strlen(description));
    size_t n = strlen(dir) + strlen(cls) + strlen(split) + strlen(what) + 32;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%016llx-%s-%s-%s", dir, (unsigned long long)h, cls, split, what);
    return p;
}

void index_cache_arrays_free(struct index_cache_arrays *a)
{
    free(a->document_index);
    free(a->sample_index);
    free(a->shuffle_index);
    memset(a, 0, sizeof(*a));
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static unsigned char *read_whole(const char *path, size_t *len, int *missing, char *err, size_t errlen)
{
    *missing = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT || errno == ENOTDIR) *missing = 1;
        error_set(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        error_set(err, errlen, "%s: not a regular file", path);
        fclose(f);
        return NULL;
    }
    *len = (size_t)st.st_size;
    unsigned char *buf = xmalloc(*len ? *len : 1);
    if (fread(buf, 1, *len, f) != *len) {
        error_set(err, errlen, "%s: short read", path);
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    return buf;
}

/* Checks the header against the file length without overflowing; fills the counts. */
static int check_layout(const unsigned char *buf, size_t len, const char *description, uint64_t n[4],
                        const char *name, char *err, size_t errlen)
{
    if (len < CACHE_HEADER + 8 || memcmp(buf, CACHE_MAGIC, 8) != 0) {
        error_set(err, errlen, "%s: not an index cache file", name);
        return -1;
    }
    for (int i = 0; i < 4; i++) n[i] = get_u64(buf + 8 + 8 * i);
    uint64_t room = len - CACHE_HEADER - 8;
    if (n[0] != strlen(description) || n[0] > room || n[1] > (room - n[0]) / 4 ||
        n[2] > (room - n[0] - 4 * n[1]) / 16 || n[3] > (room - n[0] - 4 * n[1] - 16 * n[2]) / 8 ||
        n[0] + 4 * n[1] + 16 * n[2] + 8 * n[3] != room) {
        error_set(err, errlen, "%s: sizes in the header do not match the file (truncated or for another dataset)",
                name);
        return -1;
    }
    if (memcmp(buf + CACHE_HEADER, description, n[0]) != 0) {
        error_set(err, errlen, "%s: written for a different dataset description", name);
        return -1;
    }
    if (index_cache_fnv1a(INDEX_CACHE_FNV_BASIS, buf, len - 8) != get_u64(buf + len - 8)) {
        error_set(err, errlen, "%s: checksum mismatch (corrupt file)", name);
        return -1;
    }
    return 0;
}

int index_cache_parse(const unsigned char *buf, size_t len, const char *description, const char *name,
                      struct index_cache_arrays *out, char *err, size_t errlen)
{
    uint64_t n[4];
    if (check_layout(buf, len, description, n, name, err, errlen)) return -1;
    memset(out, 0, sizeof(*out));
    const unsigned char *p = buf + CACHE_HEADER + n[0];
    out->document_len = (int64_t)n[1];
    out->sample_rows = (int64_t)n[2];
    out->shuffle_len = (int64_t)n[3];
    out->document_index = xmalloc(n[1] * 4 + 4);
    out->sample_index = xmalloc(n[2] * 16 + 16);
    out->shuffle_index = xmalloc(n[3] * 8 + 8);
    memcpy(out->document_index, p, n[1] * 4);
    p += n[1] * 4;
    memcpy(out->sample_index, p, n[2] * 16);
    p += n[2] * 16;
    memcpy(out->shuffle_index, p, n[3] * 8);
    return 0;
}

int index_cache_load(const char *path, const char *description, struct index_cache_arrays *out, char *err,
                     size_t errlen)
{
    size_t len = 0;
    int missing;
    unsigned char *buf = read_whole(path, &len, &missing, err, errlen);
    if (!buf) return missing ? 1 : -1;
    int rc = index_cache_parse(buf, len, description, path, out, err, errlen);
    free(buf);
    return rc;
}

/* Creates every missing directory of `dir` (like mkdir -p). */
static int make_dirs(const char *dir, char *err, size_t errlen)
{
    char *p = xstrdup(dir);
    for (char *s = p + 1;; s++) {
        char c = *s;
        if (c == '/' || c == '\0') {
            *s = '\0';
            if (mkdir(p, 0777) != 0 && errno != EEXIST) {
                error_set(err, errlen, "cannot create directory %s: %s", p, strerror(errno));
                free(p);
                return -1;
            }
            *s = c;
            if (c == '\0') break;
        }
    }
    free(p);
    return 0;
}

static int parent_dirs(const char *path, char *err, size_t errlen)
{
    char *dir = xstrdup(path);
    char *slash = strrchr(dir, '/');
    int rc = 0;
    if (slash && slash != dir) {
        *slash = '\0';
        rc = make_dirs(dir, err, errlen);
    }
    free(dir);
    return rc;
}

struct chunk {
    const void *data;
    size_t len;
};

/* Writes the chunks to path.tmp.<pid>, fsyncs and renames over path. */
static int write_atomic(const char *path, const struct chunk *chunks, int n, char *err, size_t errlen)
{
    if (parent_dirs(path, err, errlen)) return -1;
    size_t tn = strlen(path) + 32;
    char *tmp = xmalloc(tn);
    snprintf(tmp, tn, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) {
        error_set(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    int ok = 1;
    for (int i = 0; i < n && ok; i++) {
        const char *p = chunks[i].data;
        size_t left = chunks[i].len;
        while (left > 0) {
            ssize_t w = write(fd, p, left);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                ok = 0;
                break;
            }
            p += w;
            left -= (size_t)w;
        }
    }
    if (ok && fsync(fd) != 0) ok = 0;
    if (close(fd) != 0) ok = 0;
    if (ok && rename(tmp, path) != 0) ok = 0;
    if (!ok) {
        error_set(err, errlen, "cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
    }
    free(tmp);
    return ok ? 0 : -1;
}

int index_cache_save(const char *path, const char *description, const struct index_cache_arrays *a, char *err,
                     size_t errlen)
{
    unsigned char header[CACHE_HEADER];
    uint64_t n[4] = {strlen(description), (uint64_t)a->document_len, (uint64_t)a->sample_rows,
                     (uint64_t)a->shuffle_len};
    memcpy(header, CACHE_MAGIC, 8);
    memcpy(header + 8, n, sizeof(n));
    struct chunk c[6] = {
        {header, CACHE_HEADER},
        {description, n[0]},
        {a->document_index, n[1] * 4},
        {a->sample_index, n[2] * 16},
        {a->shuffle_index, n[3] * 8},
        {NULL, 8},
    };
    uint64_t h = INDEX_CACHE_FNV_BASIS;
    for (int i = 0; i < 5; i++) h = index_cache_fnv1a(h, c[i].data, c[i].len);
    c[5].data = &h;
    return write_atomic(path, c, 6, err, errlen);
}

int index_cache_write_text(const char *path, const char *text, char *err, size_t errlen)
{
    struct chunk c = {text, strlen(text)};
    return write_atomic(path, &c, 1, err, errlen);
}
