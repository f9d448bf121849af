/* Inside the command line module, shared by args.c (parsing, --help, the config dump),
 * args_table.c (the one flag table) and args_finalize.c (validation); not part of args.h. */
#ifndef MEGATRON_ARGS_INTERNAL_H
#define MEGATRON_ARGS_INTERNAL_H

#include <math.h>
#include <stddef.h>

#include "args.h"

enum arg_type {
    T_INT,
    T_FLOAT,
    T_BOOL,       /* store_true: default False */
    T_BOOL_FALSE, /* store_false: default True, the flag clears it */
    T_STR,
    T_CHOICE,
    T_LIST,  /* nargs='*' (or '+' with F_NONEMPTY): char ** + int count */
    T_DTYPE, /* derived params_dtype */
};

enum {
    F_UNSUPPORTED = 1, /* a Megatron flag we do not implement: rejected by name, no field */
    F_LO_OPEN = 2,     /* value must be > lo instead of >= lo */
    F_HI_OPEN = 4,     /* value must be < hi instead of <= hi */
    F_NONEMPTY = 8,    /* list: nargs='+' */
};

#define M_PRETRAIN (1u << CMD_PRETRAIN)
#define M_PREPROCESS (1u << CMD_PREPROCESS)
#define M_SAMPLES (1u << CMD_SAMPLES)
#define M_CONVERT (1u << CMD_CONVERT)
#define M_PLAN (1u << CMD_PLAN)
#define M_TRAIN (M_PRETRAIN | M_SAMPLES | M_PLAN) /* samples and plan take every pretrain flag */
#define M_TOK (M_TRAIN | M_PREPROCESS)
#define M_ALL (M_TRAIN | M_PREPROCESS | M_CONVERT)

struct arg_spec {
    const char *name;  /* "--hidden-size"; NULL for a derived field (dumped, not parsed) */
    const char *alias; /* a second spelling Megatron accepts, or NULL */
    const char *dest;  /* Megatron's argparse dest = our field name */
    enum arg_type type;
    const char *def;   /* default as text; NULL means None (-1, NAN, NULL) */
    unsigned cmds;     /* M_* mask of the subcommands that take it */
    const char *group; /* Megatron's argument-group title */
    double lo, hi;     /* allowed range of a number; NAN = unbounded */
    unsigned flags;
    const char *choices; /* "a|b|c" */
    size_t offset, count_offset;
    const char *help;
};

#define OFF(f) offsetof(struct config, f)
#define NO NAN

extern const struct arg_spec ARGS_TABLE[];
extern const int ARGS_TABLE_SIZE;

/* Writes the formatted one-line reason into err and returns -1 (how every check fails). */
int args_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A finite decimal number (no hex, no leading space): 0, -1 (not a number) or -2 (not finite). */
int args_parse_float(const char *s, double *out);
/* User text inside a message: printable ASCII only, at most 60 characters. */
const char *args_shown(const char *s, char *buf, size_t n);

#endif
