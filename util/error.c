/* Error reporting and checked allocation: the one place that decides how a failure looks. */
#include "util/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_CLEANUPS 16

struct cleanup {
    void (*fn)(void *);
    void *arg;
};

/* Cleanup hooks of the current process; touched only on the error path and by their owners. */
static struct cleanup cleanups[MAX_CLEANUPS];
static int num_cleanups;

void error_push_cleanup(void (*fn)(void *), void *arg)
{
    if (num_cleanups == MAX_CLEANUPS) BUG("too many cleanup hooks");
    cleanups[num_cleanups].fn = fn;
    cleanups[num_cleanups].arg = arg;
    num_cleanups++;
}

void error_pop_cleanup(void (*fn)(void *), void *arg)
{
    for (int i = num_cleanups - 1; i >= 0; i--) {
        if (cleanups[i].fn == fn && cleanups[i].arg == arg) {
            memmove(&cleanups[i], &cleanups[i + 1], (size_t)(num_cleanups - i - 1) * sizeof(cleanups[0]));
            num_cleanups--;
            return;
        }
    }
}

static void run_cleanups(void)
{
    while (num_cleanups > 0) {
        struct cleanup c = cleanups[--num_cleanups];
        c.fn(c.arg);
    }
}

/* prefix + the message + newline to stderr in one write, so the lines of ranks that fail at once
 * (their stderr shares mpirun's pipe) do not mix; stdout's pending lines go out first, so the line
 * does not land inside one of them. */
static void emit_line(const char *prefix, const char *fmt, va_list ap)
{
    char line[4096];
    size_t n = (size_t)snprintf(line, sizeof line - 1, "%s", prefix);
    if (n > sizeof line - 2) n = sizeof line - 2;
    int m = vsnprintf(line + n, sizeof line - 1 - n, fmt, ap);
    n = m < 0 ? n : n + (size_t)m > sizeof line - 2 ? sizeof line - 2 : n + (size_t)m;
    line[n++] = '\n';
    fflush(stdout);
    fflush(stderr);
    for (size_t at = 0; at < n;) {
        ssize_t w = write(STDERR_FILENO, line + at, n - at);
        if (w <= 0) break;
        at += (size_t)w;
    }
}

void die_user(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    va_start(ap, fmt);
    emit_line("megatron: error: ", fmt, ap);
    va_end(ap);
    run_cleanups();
    exit(EXIT_USER_ERROR);
}

void die_internal(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    char prefix[512];
    fflush(stdout);
    snprintf(prefix, sizeof prefix, "megatron: internal error at %s:%d: ", file, line);
    va_start(ap, fmt);
    emit_line(prefix, fmt, ap);
    va_end(ap);
    run_cleanups();
    exit(1);
}

void error_set(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err && errlen) vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

void warn_user(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit_line("megatron: warning: ", fmt, ap);
    va_end(ap);
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) die_user("out of memory: allocating %zu bytes failed; use a smaller model or batch", n);
    return p;
}

void *xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) die_user("out of memory: allocating %zu x %zu bytes failed; use a smaller model or batch", count, size);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) die_user("out of memory: allocating %zu bytes failed; use a smaller model or batch", n);
    return q;
}

char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = xmalloc(n);
    memcpy(p, s, n);
    return p;
}
