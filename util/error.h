/* Errors and checked allocation shared by every module.
 * A user mistake ends the program with one line, `megatron: error: <what>: <why>; <what to do>`,
 * and exit code 2 (ARCHITECTURE.md principle 9); a broken invariant is a bug and exits 1. */
#ifndef MEGATRON_UTIL_ERROR_H
#define MEGATRON_UTIL_ERROR_H

#include <stddef.h>

#define EXIT_USER_ERROR 2

/* Prints `megatron: error: ` + the formatted message + newline to stderr, runs the registered
 * cleanup hooks (so no half-written output stays behind) and exits with code 2. */
_Noreturn void die_user(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* For broken invariants (a bug in this program, not the user's input): exit code 1. */
_Noreturn void die_internal(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define BUG(...) die_internal(__FILE__, __LINE__, __VA_ARGS__)
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) BUG("check failed: %s", #cond);                                               \
    } while (0)

/* How parsers and loaders report a failure without exiting: the formatted one-line reason
 * "<what>: <why>; <what to do>" into err (nothing when err is NULL or errlen 0). */
void error_set(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* `megatron: warning: ...` on stderr; training goes on. */
void warn_user(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Registers a function that die_user calls before exiting (e.g. removing a partly written file).
 * Hooks run in reverse order of registration; unregister with the same pair. */
void error_push_cleanup(void (*fn)(void *), void *arg);
void error_pop_cleanup(void (*fn)(void *), void *arg);

/* malloc/calloc/realloc that end the program with a clear message when memory runs out. */
void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

#endif
