/* Shared by the MPI test binaries (tests/mpi_test_*.c): each rank counts its mismatches, writes
 * the first few as single lines to its own stderr (kept when cmocka's output is silenced on ranks
 * other than 0), and all ranks agree on the total before asserting, so every rank passes or fails
 * the same test. Include after cmocka.h and mpi.h; main sets me and diag. */
#ifndef MEGATRON_TESTS_MPI_CHECK_H
#define MEGATRON_TESTS_MPI_CHECK_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int world, me;
static FILE *diag; /* this rank's stderr, kept when cmocka's output is silenced */
static long bad;   /* mismatches of the current test on this rank */

#define EXPECT(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) report(__FILE__, __LINE__, __VA_ARGS__);                                      \
    } while (0)

/* One line per mismatch (the first few of a test), written at once so ranks do not interleave. */
static void report(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void report(const char *file, int line, const char *fmt, ...)
{
    char text[768];
    va_list ap;
    if (bad++ >= 8) return;
    int n = snprintf(text, sizeof text, "rank %d: %s:%d: ", me, file, line);
    va_start(ap, fmt);
    vsnprintf(text + n, sizeof text - (size_t)n - 1, fmt, ap);
    va_end(ap);
    strcat(text, "\n");
    fputs(text, diag);
}

/* Every rank learns the total of mismatches (plain MPI, not the code under test). */
static void agree(void)
{
    long total = 0;
    MPI_Allreduce(&bad, &total, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    bad = 0;
    assert_int_equal(total, 0);
}

#endif
