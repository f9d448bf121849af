/* What the flag-table tests share (tests/test_args.c, tests/test_args_output.c): a command line
 * parsed and finalized as `megatron` would, a one-line error expected, what a printer writes
 * captured as text, and a small valid pretrain command line to add flags to. */
#ifndef MEGATRON_TESTS_ARGS_RUN_H
#define MEGATRON_TESTS_ARGS_RUN_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"

/* A command line split on spaces; argv points into buf, so both live as long as the run. */
struct run {
    struct config cfg;
    char *buf;
    char *argv[256];
    int argc;
    char err[1024];
    int rc;
};

static inline void split_line(struct run *r, const char *line)
{
    r->buf = strdup(line);
    r->argc = 0;
    for (char *tok = strtok(r->buf, " "); tok && r->argc < 256; tok = strtok(NULL, " ")) r->argv[r->argc++] = tok;
}

/* Parses only. */
static inline int parse(struct run *r, enum subcommand cmd, const char *line)
{
    memset(r, 0, sizeof *r);
    split_line(r, line);
    args_defaults(&r->cfg, cmd);
    r->rc = args_parse(&r->cfg, cmd, r->argc, r->argv, r->err, sizeof r->err);
    return r->rc;
}

/* Parses and finalizes with world_size ranks. */
static inline int run(struct run *r, enum subcommand cmd, int world_size, const char *line)
{
    if (parse(r, cmd, line) == 0) r->rc = args_finalize(&r->cfg, cmd, world_size, r->err, sizeof r->err);
    return r->rc;
}

static inline void done(struct run *r)
{
    args_free(&r->cfg);
    free(r->buf);
}

/* A failing run whose message must be one line and contain `expect`. */
static inline void expect_error(enum subcommand cmd, int world_size, const char *line, const char *expect)
{
    struct run r;
    run(&r, cmd, world_size, line);
    if (r.rc == 0 || !strstr(r.err, expect)) fail_msg("'%s': got rc=%d err='%s', want '%s'", line, r.rc, r.err, expect);
    assert_null(strchr(r.err, '\n'));
    done(&r);
}

#define MODEL "--num-layers 2 --hidden-size 64 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 64 "
#define DATA "--mock-data --tokenizer-type NullTokenizer --vocab-size 128 --split 98,1,1 "
#define BASE MODEL DATA "--micro-batch-size 2 --train-iters 10 --lr 3e-4 "

/* What print(f, arg) writes, as a malloc'd string. */
#define CAPTURE(text, print, arg)                                                                  \
    do {                                                                                           \
        size_t capture_len_ = 0;                                                                   \
        FILE *capture_f_ = open_memstream(&(text), &capture_len_);                                 \
        assert_non_null(capture_f_);                                                               \
        print(capture_f_, arg);                                                                    \
        fclose(capture_f_);                                                                        \
    } while (0)

#endif
