/* File-system helpers for atomic checkpoint saves; see dirs.h. */
#include "ckpt/dirs.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util/error.h"

int dirs_mkdir_p(const char *path, char *err, size_t errlen)
{
    if (!*path) {
        snprintf(err, errlen, "an empty directory name; give a path");
        return -1;
    }
    char *p = xstrdup(path);
    int rc = 0;
    for (char *c = p + 1; rc == 0; c++) {
        bool end = *c == 0;
        if (*c != '/' && !end) continue;
        *c = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) rc = -1;
        else if (!dirs_is_dir(p)) {
            errno = ENOTDIR;
            rc = -1;
        }
        if (rc) snprintf(err, errlen, "%s: cannot create the directory: %s", p, strerror(errno));
        if (end) break;
        *c = '/';
    }
    free(p);
    return rc;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return (flag == FTW_DP ? rmdir(path) : unlink(path)) == 0 || errno == ENOENT ? 0 : -1;
}

int dirs_remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(st.st_mode)) return unlink(path);
    return nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

void dirs_sync(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    (void)fsync(fd);
    close(fd);
}

char *dirs_parent(const char *path)
{
    char *d = xstrdup(path);
    size_t n = strlen(d);
    while (n > 1 && d[n - 1] == '/') d[--n] = 0; /* "a/b/" is in "a" */
    char *slash = strrchr(d, '/');
    if (!slash) {
        free(d);
        return xstrdup(".");
    }
    if (slash == d) slash[1] = 0;
    else *slash = 0;
    return d;
}

static int write_fd_all(int fd, const char *c, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, c, len);
        if (w < 0 && errno == EINTR) continue;
        if (w == 0) errno = ENOSPC;
        if (w <= 0) return -1;
        c += w;
        len -= (size_t)w;
    }
    return 0;
}

int dirs_write_atomic(const char *path, const void *data, size_t len, char *err, size_t errlen)
{
    size_t n = strlen(path);
    char *tmp = xmalloc(n + 5);
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".tmp", 5);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int rc = fd < 0 ? -1 : 0;
    if (rc == 0) rc = write_fd_all(fd, data, len) || fsync(fd) ? -1 : 0;
    int saved = errno;
    if (fd >= 0 && close(fd) != 0 && rc == 0) {
        rc = -1;
        saved = errno;
    }
    if (rc == 0 && rename(tmp, path) != 0) {
        rc = -1;
        saved = errno;
    }
    if (rc == 0) {
        char *parent = dirs_parent(path);
        dirs_sync(parent);
        free(parent);
    } else {
        snprintf(err, errlen, "%s: cannot write: %s", path, strerror(saved));
        unlink(tmp);
    }
    free(tmp);
    return rc;
}

int dirs_exchange(const char *a, const char *b)
{
#ifdef SYS_renameat2
    return (int)syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, 2 /* RENAME_EXCHANGE */);
#else
    (void)a;
    (void)b;
    errno = ENOSYS;
    return -1;
#endif
}

char *dirs_read_file(const char *path, size_t max, size_t *len, bool *missing, char *err, size_t errlen)
{
    *missing = false;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *missing = errno == ENOENT;
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > max) {
        snprintf(err, errlen, "%s: not a regular file of at most %zu bytes", path, max);
        close(fd);
        return NULL;
    }
    size_t n = (size_t)st.st_size, got = 0;
    char *buf = xmalloc(n + 1);
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (got != n) {
        snprintf(err, errlen, "%s: cannot read: %s", path, got < n ? "file shrank while reading" : "?");
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

bool dirs_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}
