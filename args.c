/* The command line: parsing (argparse's rules: --flag value, --flag=value, the last occurrence
 * wins, did-you-mean for unknown flags), --help and the config dump, all read from the flag table
 * (args_table.c); validation lives in args_finalize.c. */
#include "args.h"
#include "args_internal.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "parallel/pipeline.h"
#include "util/error.h"

/* Derived fields belong to the training subcommands; a NULL-name entry with cmds 0 means that. */
static unsigned spec_cmds(const struct arg_spec *s)
{
    if (!s->name && s->cmds == 0) return M_TRAIN;
    return s->cmds;
}

static bool spec_for(const struct arg_spec *s, enum subcommand cmd) { return (spec_cmds(s) >> cmd) & 1u; }

#define FIELD(cfg, s, T) ((T *)((char *)(cfg) + (s)->offset))
#define CFIELD(cfg, s, T) ((const T *)((const char *)(cfg) + (s)->offset))

const char *args_subcommand_name(enum subcommand cmd)
{
    switch (cmd) {
    case CMD_PRETRAIN: return "pretrain";
    case CMD_PREPROCESS: return "preprocess";
    case CMD_SAMPLES: return "samples";
    case CMD_CONVERT: return "convert";
    case CMD_PLAN: return "plan";
    }
    return "?";
}

/* ---------------------------------------------------------------- messages */

int args_fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (errlen) vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

const char *args_shown(const char *s, char *buf, size_t n)
{
    size_t j = 0;
    for (size_t i = 0; s[i] && j + 4 < n; i++) {
        if (i == 60) {
            memcpy(buf + j, "...", 3);
            j += 3;
            break;
        }
        unsigned char c = (unsigned char)s[i];
        buf[j++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    buf[j] = '\0';
    return buf;
}

/* --num-layers -> NUM_LAYERS, as argparse names a value. */
static void metavar(const struct arg_spec *s, char *buf, size_t n)
{
    if (s->type == T_CHOICE && s->choices) {
        snprintf(buf, n, "{%s}", s->choices);
        for (char *p = buf; *p; p++)
            if (*p == '|') *p = ',';
        return;
    }
    const char *src = s->dest ? s->dest : s->name + 2;
    size_t j = 0;
    for (size_t i = 0; src[i] && j + 1 < n; i++)
        buf[j++] = src[i] == '-' ? '_' : (char)toupper((unsigned char)src[i]);
    buf[j] = '\0';
}

/* Levenshtein distance, for "did you mean". */
static int edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 80 || lb > 80) return 1000;
    int row[81];
    for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* ---------------------------------------------------------------- values */

/* Python's int(): optional sign, decimal digits. 0, -1 (not an integer) or -2 (overflow). */
static int parse_int(const char *s, int64_t *out)
{
    const char *p = s + (*s == '+' || *s == '-');
    if (!isdigit((unsigned char)*p)) return -1;
    for (const char *q = p; *q; q++)
        if (!isdigit((unsigned char)*q)) return -1;
    errno = 0;
    long long v = strtoll(s, NULL, 10);
    if (errno == ERANGE) return -2;
    *out = v;
    return 0;
}

/* A finite decimal number (no hex, no leading space). 0, -1 (not a number) or -2 (not finite). */
int args_parse_float(const char *s, double *out)
{
    if (!*s || isspace((unsigned char)*s) || strpbrk(s, "xX")) return -1;
    char *end;
    double v = strtod(s, &end);
    if (*end) return -1;
    if (!isfinite(v)) return -2;
    *out = v;
    return 0;
}

static bool choice_ok(const char *choices, const char *v)
{
    size_t n = strlen(v);
    for (const char *p = choices; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0) return true;
        p += len + (bar != NULL);
    }
    return false;
}

/* The choice nearest to v (edit distance <= 3, case-insensitive match preferred), or NULL. */
static const char *nearest_choice(const char *choices, const char *v, char *buf, size_t n)
{
    int best = 4;
    const char *found = NULL;
    for (const char *p = choices; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        char c[64];
        snprintf(c, sizeof c, "%.*s", (int)len, p);
        int d = strcasecmp(c, v) == 0 ? 0 : edit_distance(c, v);
        if (d < best) {
            best = d;
            snprintf(buf, n, "%s", c);
            found = buf;
        }
        p += len + (bar != NULL);
    }
    return found;
}

static void range_text(const struct arg_spec *s, char *buf, size_t n)
{
    bool has_lo = !isnan(s->lo), has_hi = !isnan(s->hi);
    if (has_lo && has_hi)
        snprintf(buf, n, "in %c%g, %.10g%c", (s->flags & F_LO_OPEN) ? '(' : '[', s->lo, s->hi,
                 (s->flags & F_HI_OPEN) ? ')' : ']');
    else if (has_lo)
        snprintf(buf, n, "%s %g", (s->flags & F_LO_OPEN) ? ">" : ">=", s->lo);
    else
        snprintf(buf, n, "%s %.10g", (s->flags & F_HI_OPEN) ? "<" : "<=", s->hi);
}

static bool in_range(const struct arg_spec *s, double v)
{
    if (!isnan(s->lo) && ((s->flags & F_LO_OPEN) ? !(v > s->lo) : !(v >= s->lo))) return false;
    if (!isnan(s->hi) && ((s->flags & F_HI_OPEN) ? !(v < s->hi) : !(v <= s->hi))) return false;
    return true;
}

static int out_of_range(const struct arg_spec *s, const char *v, char *err, size_t errlen)
{
    char b1[80], range[96];
    range_text(s, range, sizeof range);
    if (s->def)
        return args_fail(err, errlen, "%s %s: must be %s; use a value in that range (default %s)", s->name,
                    args_shown(v, b1, sizeof b1), range, s->def);
    return args_fail(err, errlen, "%s %s: must be %s; use a value in that range", s->name, args_shown(v, b1, sizeof b1), range);
}

/* Stores text v into s's field of cfg after checking it; text comes from argv or the table. */
static int store_value(struct config *cfg, const struct arg_spec *s, const char *v, char *err, size_t errlen)
{
    char b1[80];
    if (*v == '\0') return args_fail(err, errlen, "%s: empty value; give a value after the flag", s->name);
    if (s->type == T_INT) {
        int64_t x;
        int rc = parse_int(v, &x);
        if (rc == -1) return args_fail(err, errlen, "%s %s: not an integer; give a whole number", s->name, args_shown(v, b1, sizeof b1));
        if (rc == -2)
            return args_fail(err, errlen, "%s %s: out of range of a 64-bit integer; give a smaller number", s->name,
                        args_shown(v, b1, sizeof b1));
        if (!in_range(s, (double)x)) return out_of_range(s, v, err, errlen);
        *FIELD(cfg, s, int64_t) = x;
    } else if (s->type == T_FLOAT) {
        double x;
        int rc = args_parse_float(v, &x);
        if (rc == -1) return args_fail(err, errlen, "%s %s: not a number; give a decimal number such as 0.1", s->name, args_shown(v, b1, sizeof b1));
        if (rc == -2) return args_fail(err, errlen, "%s %s: not a finite number; give a finite decimal number", s->name, args_shown(v, b1, sizeof b1));
        if (!in_range(s, x)) return out_of_range(s, v, err, errlen);
        *FIELD(cfg, s, double) = x;
    } else if (s->type == T_CHOICE) {
        if (!choice_ok(s->choices, v)) {
            char all[512], near[64];
            size_t j = 0;
            for (const char *p = s->choices; *p && j + 3 < sizeof all; p++) {
                if (*p == '|') all[j++] = ',', all[j++] = ' ';
                else all[j++] = *p;
            }
            all[j] = '\0';
            const char *guess = nearest_choice(s->choices, v, near, sizeof near);
            if (guess)
                return args_fail(err, errlen, "%s %s: invalid choice (choose from %s); did you mean %s?", s->name,
                            args_shown(v, b1, sizeof b1), all, guess);
            return args_fail(err, errlen, "%s %s: invalid choice (choose from %s); use one of those", s->name,
                        args_shown(v, b1, sizeof b1), all);
        }
        *FIELD(cfg, s, const char *) = v;
    } else {
        *FIELD(cfg, s, const char *) = v;
    }
    return 0;
}

static void set_list(struct config *cfg, const struct arg_spec *s, char **values, int n)
{
    char ***list = FIELD(cfg, s, char **);
    free(*list);
    *list = NULL;
    if (n > 0 || s->type == T_LIST) {
        *list = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(char *));
        for (int i = 0; i < n; i++) (*list)[i] = values[i];
    }
    *(int *)((char *)cfg + s->count_offset) = n;
}

/* ---------------------------------------------------------------- defaults */

static void apply_default(struct config *cfg, const struct arg_spec *s)
{
    switch (s->type) {
    case T_INT:
        if (s->def) parse_int(s->def, FIELD(cfg, s, int64_t));
        else *FIELD(cfg, s, int64_t) = -1;
        break;
    case T_FLOAT: *FIELD(cfg, s, double) = s->def ? strtod(s->def, NULL) : NAN; break;
    case T_BOOL: *FIELD(cfg, s, bool) = false; break;
    case T_BOOL_FALSE: *FIELD(cfg, s, bool) = true; break;
    case T_STR:
    case T_CHOICE: *FIELD(cfg, s, const char *) = s->def; break;
    case T_LIST: {
        char *one = (char *)s->def;
        if (s->def) set_list(cfg, s, &one, 1);
        else {
            free(*FIELD(cfg, s, char **));
            *FIELD(cfg, s, char **) = NULL;
            *(int *)((char *)cfg + s->count_offset) = 0;
        }
        break;
    }
    case T_DTYPE: *FIELD(cfg, s, enum dtype) = DT_F32; break;
    }
}

void args_defaults(struct config *cfg, enum subcommand cmd)
{
    memset(cfg, 0, sizeof *cfg);
    /* Every field gets a default; then the entries of cmd win where two share a field. */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < ARGS_TABLE_SIZE; i++) {
            const struct arg_spec *s = &ARGS_TABLE[i];
            if ((s->flags & F_UNSUPPORTED) && !s->dest) continue;
            if (spec_for(s, cmd) == (pass == 1)) apply_default(cfg, s);
        }
    for (int i = 0; i < 3; i++) cfg->split_weights[i] = NAN;
    cfg->cmd = cmd;
}

void args_free(struct config *cfg)
{
    free(cfg->data_path);
    free(cfg->json_keys);
    free(cfg->train_data_path);
    free(cfg->valid_data_path);
    free(cfg->test_data_path);
    cfg->data_path = cfg->json_keys = cfg->train_data_path = cfg->valid_data_path = cfg->test_data_path = NULL;
    cfg->data_path_count = cfg->json_keys_count = 0;
    cfg->train_data_path_count = cfg->valid_data_path_count = cfg->test_data_path_count = 0;
}

/* ---------------------------------------------------------------- parsing */

static const struct arg_spec *find_flag(const char *name, size_t len, unsigned mask)
{
    for (int i = 0; i < ARGS_TABLE_SIZE; i++) {
        const struct arg_spec *s = &ARGS_TABLE[i];
        if (!s->name || !(spec_cmds(s) & mask)) continue;
        if ((strlen(s->name) == len && strncmp(s->name, name, len) == 0) ||
            (s->alias && strlen(s->alias) == len && strncmp(s->alias, name, len) == 0))
            return s;
    }
    return NULL;
}

/* argparse treats "-5" and "-.5" as values, other "-x" tokens as options. */
static bool looks_like_flag(const char *t)
{
    if (t[0] != '-' || t[1] == '\0') return false;
    if (isdigit((unsigned char)t[1])) return false;
    if (t[1] == '.' && isdigit((unsigned char)t[2])) return false;
    return true;
}

static int unknown_flag(const char *tok, size_t len, enum subcommand cmd, char *err, size_t errlen)
{
    const char *cname = args_subcommand_name(cmd);
    char name[96], b[80];
    snprintf(name, sizeof name, "%.*s", (int)(len < 90 ? len : 90), tok);
    args_shown(name, b, sizeof b);
    for (int c = 0; c <= CMD_PLAN; c++) {
        if (find_flag(tok, len, 1u << c))
            return args_fail(err, errlen, "%s: not a flag of megatron %s (it belongs to megatron %s); see megatron %s --help",
                        b, cname, args_subcommand_name((enum subcommand)c), cname);
    }
    const char *best = NULL;
    int best_d = 1000;
    for (int i = 0; i < ARGS_TABLE_SIZE; i++) {
        const struct arg_spec *s = &ARGS_TABLE[i];
        if (!s->name || !spec_for(s, cmd)) continue;
        int d = edit_distance(name, s->name);
        if (d < best_d) {
            best_d = d;
            best = s->name;
        }
    }
    if (best && best_d <= (int)(strlen(best) > 10 ? strlen(best) / 5 : 2))
        return args_fail(err, errlen, "unknown flag %s: did you mean %s?; see megatron %s --help", b, best, cname);
    return args_fail(err, errlen, "unknown flag %s: not a flag of megatron %s; see megatron %s --help", b, cname, cname);
}

static int unexpected_argument(const char *tok, enum subcommand cmd, char *err, size_t errlen)
{
    char b[80], dashed[96];
    snprintf(dashed, sizeof dashed, "--%.80s", tok);
    const struct arg_spec *s = find_flag(dashed, strlen(dashed), 1u << cmd);
    if (s)
        return args_fail(err, errlen, "unexpected argument '%s': flags start with two dashes; did you mean %s?",
                    args_shown(tok, b, sizeof b), s->name);
    return args_fail(err, errlen, "unexpected argument '%s': megatron %s takes only --flags with their values; "
                "put each value right after its flag", args_shown(tok, b, sizeof b), args_subcommand_name(cmd));
}

/* Consumes a list flag's values (argparse nargs='*' or '+') starting at argv[*i + 1]. */
static int parse_list(struct config *cfg, const struct arg_spec *s, int argc, char **argv, int *i,
                      const char *eq_value, char *err, size_t errlen)
{
    char *one = (char *)eq_value;
    int first = *i + 1, n = 0;
    if (eq_value) {
        if (!*eq_value) return args_fail(err, errlen, "%s: empty value; give a value after the flag", s->name);
        set_list(cfg, s, &one, 1);
        return 0;
    }
    while (first + n < argc && !looks_like_flag(argv[first + n])) {
        if (!*argv[first + n]) return args_fail(err, errlen, "%s: empty value; give non-empty values", s->name);
        n++;
    }
    if (n == 0 && (s->flags & F_NONEMPTY))
        return args_fail(err, errlen, "%s: needs at least one value; e.g. %s %s", s->name, s->name, s->def ? s->def : "VALUE");
    set_list(cfg, s, argv + first, n);
    *i += n;
    return 0;
}

static int parse_one(struct config *cfg, enum subcommand cmd, int argc, char **argv, int *i, char *err,
                     size_t errlen)
{
    const char *tok = argv[*i];
    const char *eq = strncmp(tok, "--", 2) == 0 ? strchr(tok, '=') : NULL;
    size_t len = eq ? (size_t)(eq - tok) : strlen(tok);
    const struct arg_spec *s = find_flag(tok, len, 1u << cmd);
    char b[80], mv[512];
    if (!s) return unknown_flag(tok, len, cmd, err, errlen);
    if (s->flags & F_UNSUPPORTED)
        return args_fail(err, errlen, "%s: a Megatron-LM flag that is not supported yet; remove it (see megatron %s --help)",
                    s->name, args_subcommand_name(cmd));
    if (s->type == T_BOOL || s->type == T_BOOL_FALSE) {
        if (eq) return args_fail(err, errlen, "%s: takes no value (got '%s'); write just %s", s->name, args_shown(eq + 1, b, sizeof b), s->name);
        *FIELD(cfg, s, bool) = s->type == T_BOOL;
        return 0;
    }
    if (s->type == T_LIST) return parse_list(cfg, s, argc, argv, i, eq ? eq + 1 : NULL, err, errlen);
    const char *v = eq ? eq + 1 : NULL;
    if (!v) {
        if (*i + 1 >= argc || looks_like_flag(argv[*i + 1])) {
            metavar(s, mv, sizeof mv);
            return args_fail(err, errlen, "%s: missing value; write %s %s", s->name, s->name, mv);
        }
        v = argv[++*i];
    }
    return store_value(cfg, s, v, err, errlen);
}

int args_parse(struct config *cfg, enum subcommand cmd, int argc, char **argv, char *err, size_t errlen)
{
    /* As with argparse, -h anywhere wins over mistakes elsewhere on the line. */
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            cfg->help_requested = true;
            return 0;
        }
    for (int i = 0; i < argc; i++) {
        const char *tok = argv[i];
        if (!looks_like_flag(tok)) return unexpected_argument(tok, cmd, err, errlen);
        if (parse_one(cfg, cmd, argc, argv, &i, err, errlen)) return -1;
    }
    return 0;
}

int args_flag_names(enum subcommand cmd, const char **names, int max)
{
    int n = 0;
    for (int i = 0; i < ARGS_TABLE_SIZE; i++) {
        if (!ARGS_TABLE[i].name || !spec_for(&ARGS_TABLE[i], cmd)) continue;
        if (n < max) names[n] = ARGS_TABLE[i].name;
        n++;
    }
    return n;
}

/* ---------------------------------------------------------------- help and config dump */

/* Python's repr(float): shortest round-trip digits, fixed notation for 1e-4 <= |v| < 1e16. */
static void py_float(double v, char *buf, size_t n)
{
    if (isnan(v)) {
        snprintf(buf, n, "nan");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, n, v < 0 ? "-inf" : "inf");
        return;
    }
    char e[40], digits[24];
    int p;
    for (p = 1; p < 17; p++) {
        snprintf(e, sizeof e, "%.*e", p - 1, v);
        if (strtod(e, NULL) == v) break;
    }
    snprintf(e, sizeof e, "%.*e", p - 1, v);
    const char *m = e + (e[0] == '-');
    int nd = 0;
    for (const char *q = m; *q && *q != 'e'; q++)
        if (isdigit((unsigned char)*q)) digits[nd++] = *q;
    digits[nd] = '\0';
    int exp10 = atoi(strchr(e, 'e') + 1);
    const char *sign = e[0] == '-' ? "-" : "";
    if (exp10 < -4 || exp10 >= 16) {
        snprintf(buf, n, "%s%c%s%.*se%c%02d", sign, digits[0], nd > 1 ? "." : "", nd - 1, digits + 1,
                 exp10 < 0 ? '-' : '+', abs(exp10));
    } else if (exp10 < 0) {
        snprintf(buf, n, "%s0.%0*d%s", sign, -exp10 - 1, 0, digits);
        if (-exp10 - 1 == 0) snprintf(buf, n, "%s0.%s", sign, digits);
    } else if (nd <= exp10 + 1) {
        snprintf(buf, n, "%s%s%0*d.0", sign, digits, exp10 + 1 - nd, 0);
        if (exp10 + 1 - nd == 0) snprintf(buf, n, "%s%s.0", sign, digits);
    } else {
        snprintf(buf, n, "%s%.*s.%s", sign, exp10 + 1, digits, digits + exp10 + 1);
    }
}

/* A scalar field as Python prints it in Megatron's dump; lists are printed by print_value. */
static void format_scalar(const struct arg_spec *s, const struct config *c, char *buf, size_t n)
{
    switch (s->type) {
    case T_INT: {
        int64_t v = *CFIELD(c, s, int64_t);
        if (!s->def && v == -1) snprintf(buf, n, "None");
        else snprintf(buf, n, "%" PRId64, v);
        break;
    }
    case T_FLOAT: {
        double v = *CFIELD(c, s, double);
        if (isnan(v)) snprintf(buf, n, "None");
        else py_float(v, buf, n);
        break;
    }
    case T_BOOL:
    case T_BOOL_FALSE: snprintf(buf, n, "%s", *CFIELD(c, s, bool) ? "True" : "False"); break;
    case T_STR:
    case T_CHOICE: {
        const char *v = *(const char *const *)((const char *)c + s->offset);
        if (v && strcmp(s->dest, "attention_backend") == 0) /* Megatron's dump prints the enum */
            snprintf(buf, n, "AttnBackend.%s", v);
        else
            snprintf(buf, n, "%s", v ? v : "None");
        break;
    }
    case T_DTYPE: {
        enum dtype d = *CFIELD(c, s, enum dtype);
        snprintf(buf, n, "torch.%s", d == DT_BF16 ? "bfloat16" : d == DT_F16 ? "float16" : "float32");
        break;
    }
    case T_LIST: snprintf(buf, n, "[...]"); break;
    }
}

static void print_value(FILE *f, const struct arg_spec *s, const struct config *c)
{
    if (s->type != T_LIST) {
        char buf[128];
        format_scalar(s, c, buf, sizeof buf);
        fputs(buf, f);
        return;
    }
    char *const *list = *(char **const *)((const char *)c + s->offset);
    int count = *(const int *)((const char *)c + s->count_offset);
    if (!list) {
        fputs("None", f);
        return;
    }
    fputc('[', f);
    for (int i = 0; i < count; i++) {
        fputs(i ? ", '" : "'", f);
        for (const char *p = list[i]; *p; p++) {
            if (*p == '\'' || *p == '\\') fputc('\\', f);
            fputc(*p, f);
        }
        fputc('\'', f);
    }
    fputc(']', f);
}

static int compare_dest(const void *a, const void *b)
{
    return strcasecmp((*(const struct arg_spec *const *)a)->dest, (*(const struct arg_spec *const *)b)->dest);
}

void args_print_config(FILE *f, const struct config *cfg)
{
    const struct arg_spec *rows[ARGS_TABLE_SIZE];
    int n = 0;
    for (int i = 0; i < ARGS_TABLE_SIZE; i++)
        if (ARGS_TABLE[i].dest && spec_for(&ARGS_TABLE[i], cfg->cmd)) rows[n++] = &ARGS_TABLE[i];
    qsort(rows, (size_t)n, sizeof rows[0], compare_dest);
    fprintf(f, "------------------------ arguments ------------------------\n");
    for (int i = 0; i < n; i++) {
        int dots = 48 - (int)strlen(rows[i]->dest);
        fprintf(f, "  %s ", rows[i]->dest);
        for (int d = 0; d < dots; d++) fputc('.', f);
        fputc(' ', f);
        print_value(f, rows[i], cfg);
        fputc('\n', f);
    }
    fprintf(f, "-------------------- end of arguments ---------------------\n");
}

/* Writes text from column `indent`, wrapped before column 100. */
static void print_wrapped(FILE *f, const char *text, int col, int indent)
{
    const char *p = text;
    while (*p) {
        while (*p == ' ') p++;
        size_t w = strcspn(p, " ");
        if (w == 0) break;
        if (col > indent && col + 1 + (int)w > 100) {
            fprintf(f, "\n%*s", indent, "");
            col = indent;
        } else if (col > indent) {
            fputc(' ', f);
            col++;
        }
        fwrite(p, 1, w, f);
        col += (int)w;
        p += w;
    }
    fputc('\n', f);
}

static void print_flag_help(FILE *f, const struct arg_spec *s, const struct config *defaults)
{
    char mv[512], spec[640], text[1024], dflt[160] = "";
    metavar(s, mv, sizeof mv);
    bool takes_value = s->type != T_BOOL && s->type != T_BOOL_FALSE;
    if (s->type == T_LIST) snprintf(mv + strlen(mv), sizeof mv - strlen(mv), " ...");
    snprintf(spec, sizeof spec, "  %s%s%s", s->name, takes_value ? " " : "", takes_value ? mv : "");
    if (s->alias) snprintf(spec + strlen(spec), sizeof spec - strlen(spec), ", %s", s->alias);
    if (!(s->flags & F_UNSUPPORTED) && takes_value) {
        if (s->type == T_LIST && s->def) snprintf(dflt, sizeof dflt, " (default: ['%s'])", s->def);
        else if (s->type != T_LIST && s->def) {
            char v[128];
            format_scalar(s, defaults, v, sizeof v);
            snprintf(dflt, sizeof dflt, " (default: %s)", v);
        }
    }
    snprintf(text, sizeof text, "%s%s%s", (s->flags & F_UNSUPPORTED) ? "[not supported yet] " : "", s->help, dflt);
    fputs(spec, f);
    int col = (int)strlen(spec);
    if (col > 28) {
        fprintf(f, "\n%*s", 30, "");
        col = 30;
    } else {
        fprintf(f, "%*s", 30 - col, "");
        col = 30;
    }
    print_wrapped(f, text, col, 30);
}

void args_print_help(FILE *f, enum subcommand cmd)
{
    static const char *const what[] = {
        [CMD_PRETRAIN] = "Pretrains a GPT model (pretrain_gpt.py).",
        [CMD_PREPROCESS] = "Turns JSONL documents into Megatron .bin/.idx files (tools/preprocess_data.py).",
        [CMD_SAMPLES] = "Shows the samples the trainer would see; takes every flag of megatron pretrain.",
        [CMD_CONVERT] = "Converts between Hugging Face models and checkpoints.",
        [CMD_PLAN] = "Plans the layout, memory and FLOPs per rank without allocating; takes every flag of "
                     "megatron pretrain.",
    };
    const char *groups[64];
    int ng = 0;
    struct config defaults;
    args_defaults(&defaults, cmd);
    fprintf(f, "usage: megatron %s [--flag VALUE ...]\n\n%s\nFlag names and defaults are Megatron-LM's; "
            "[not supported yet] marks a Megatron-LM flag this program rejects.\n",
            args_subcommand_name(cmd), what[cmd]);
    for (int i = 0; i < ARGS_TABLE_SIZE; i++) {
        const struct arg_spec *s = &ARGS_TABLE[i];
        if (!s->name || !spec_for(s, cmd)) continue;
        int g = 0;
        while (g < ng && strcmp(groups[g], s->group) != 0) g++;
        if (g == ng && ng < 64) groups[ng++] = s->group;
    }
    for (int g = 0; g < ng; g++) {
        fprintf(f, "\n%s:\n", groups[g]);
        for (int i = 0; i < ARGS_TABLE_SIZE; i++)
            if (ARGS_TABLE[i].name && spec_for(&ARGS_TABLE[i], cmd) && strcmp(ARGS_TABLE[i].group, groups[g]) == 0)
                print_flag_help(f, &ARGS_TABLE[i], &defaults);
    }
    fprintf(f, "\n  -h, --help                  show this help message and exit\n");
    args_free(&defaults);
}

void args_parse_or_die(struct config *cfg, enum subcommand cmd, int argc, char **argv, int world_size)
{
    char err[1024];
    args_defaults(cfg, cmd);
    if (args_parse(cfg, cmd, argc, argv, err, sizeof err)) {
        args_free(cfg);
        die_user("%s", err);
    }
    if (cfg->help_requested) {
        args_print_help(stdout, cmd);
        args_free(cfg);
        exit(0);
    }
    if (args_finalize(cfg, cmd, world_size, err, sizeof err)) {
        args_free(cfg);
        die_user("%s", err);
    }
    if (cfg->split_defaulted)
        warn_user("--split: not given; using Megatron's legacy default \"969, 30, 1\"; give --split (e.g. 949,50,1)");
    if (cfg->print_config) {
        args_print_config(stdout, cfg);
        args_free(cfg);
        exit(0);
    }
}
