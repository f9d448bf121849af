/* A fresh temporary directory per cmocka test, removed with everything in it afterwards:
 * cmocka setup/teardown functions shared by the tests that write files. Include after cmocka.h. */
#ifndef MEGATRON_TESTS_TMPDIR_H
#define MEGATRON_TESTS_TMPDIR_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

struct tmp {
    char dir[64];
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int tmp_setup(void **state)
{
    struct tmp *t = calloc(1, sizeof(*t));
    snprintf(t->dir, sizeof(t->dir), "/tmp/megatron_test_XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    *state = t;
    return 0;
}

static int tmp_teardown(void **state)
{
    struct tmp *t = *state;
    nftw(t->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(t);
    return 0;
}

#endif
