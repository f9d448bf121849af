/* libFuzzer target for args.c: byte 0 picks the subcommand, byte 1 the world size, the rest is
 * split on NUL and newline into argv. Parsing, finalizing, --help and the config dump must never
 * crash, and every failure must come with a non-empty one-line message. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "fuzz/fuzz.h"

#define MAX_ARGS 256

static void require_one_line(const char *err)
{
    REQUIRE(err[0] != '\0');
    REQUIRE(strchr(err, '\n') == NULL);
}

/* Prints through a memory stream so the output is produced (and bounds-checked) but not shown. */
static void exercise_output(const struct config *cfg, enum subcommand cmd, int help)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    REQUIRE(f != NULL);
    if (help) args_print_help(f, cmd);
    else args_print_config(f, cfg);
    fclose(f);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > 65536) return 0;
    enum subcommand cmd = (enum subcommand)(data[0] % 5);
    int world_size = 1 + data[1] % 16;
    size_t n = size - 2;
    char *buf = malloc(n + 1);
    memcpy(buf, data + 2, n);
    buf[n] = '\0';
    char *argv[MAX_ARGS];
    int argc = 0;
    char *start = buf;
    for (size_t i = 0; i < n && argc < MAX_ARGS; i++) {
        if (buf[i] == '\n' || buf[i] == '\0') {
            buf[i] = '\0';
            argv[argc++] = start;
            start = buf + i + 1;
        }
    }
    if (argc < MAX_ARGS && start < buf + n) argv[argc++] = start;

    struct config cfg;
    char err[512] = "";
    args_defaults(&cfg, cmd);
    if (args_parse(&cfg, cmd, argc, argv, err, sizeof err) != 0) {
        require_one_line(err);
    } else if (cfg.help_requested) {
        exercise_output(&cfg, cmd, 1);
    } else if (args_finalize(&cfg, cmd, world_size, err, sizeof err) != 0) {
        require_one_line(err);
    } else {
        exercise_output(&cfg, cmd, 0);
    }
    args_free(&cfg);
    free(buf);
    return 0;
}
