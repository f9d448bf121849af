/* RFC 8259 JSON parser and string escaper (contract in util/json.h). Every node, string and
 * member array of a document lives in one arena of growing blocks; a container's children are
 * gathered on a scratch stack and copied into the arena as one run when it closes, so the i-th
 * element or member is one index away. */
#include "util/json.h"

#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

#define JSON_MAX_DEPTH 512
#define ARENA_MIN_BLOCK 1024
#define ARENA_ALIGN 8

struct json_member;

struct json_value {
    uint8_t type;    /* enum json_type */
    uint8_t boolean; /* JSON_BOOL: the value */
    uint8_t is_int;  /* JSON_NUMBER: u.num.i holds the literal's exact integer value */
    union {
        struct {
            double d;
            int64_t i;
        } num;
        struct {
            const char *s;
            size_t len;
        } str;
        struct {
            struct json_value *items;
            size_t n;
        } arr;
        struct {
            struct json_member *members;
            size_t n;
        } obj;
    } u;
};

struct json_member {
    const char *key;
    size_t key_len;
    struct json_value value;
};

struct arena_block {
    struct arena_block *next;
    size_t cap, used;
    max_align_t data[];
};

struct json_doc {
    struct arena_block *blocks; /* newest first; the doc itself sits in the oldest block */
    size_t next_block;          /* size of the next block: blocks double so there are O(log n) */
    struct json_value root;
};

/* ---- arena ---------------------------------------------------------------------------------- */

static struct arena_block *block_new(size_t cap)
{
    struct arena_block *b = xmalloc(sizeof(*b) + cap);
    b->next = NULL;
    b->cap = cap;
    b->used = 0;
    return b;
}

/* n bytes aligned to `align` (1 or ARENA_ALIGN) from the newest block, adding a block if needed. */
static void *arena_alloc(struct json_doc *doc, size_t n, size_t align)
{
    struct arena_block *b = doc->blocks;
    size_t at = (b->used + align - 1) & ~(align - 1);
    if (at > b->cap || b->cap - at < n) {
        size_t cap = doc->next_block > n ? doc->next_block : n;
        struct arena_block *nb = block_new(cap);
        nb->next = b;
        doc->blocks = b = nb;
        doc->next_block = cap * 2;
        at = 0;
    }
    b->used = at + n;
    return (unsigned char *)b->data + at;
}

/* Gives back the tail of the newest allocation p, keeping its first `keep` bytes. */
static void arena_shrink_last(struct json_doc *doc, void *p, size_t keep)
{
    struct arena_block *b = doc->blocks;
    b->used = (size_t)((unsigned char *)p - (unsigned char *)b->data) + keep;
}

/* The first block is sized for the input so that a string-heavy document (a JSONL line) costs
 * one malloc; the document header lives at its start. */
static struct json_doc *doc_new(size_t text_len)
{
    size_t cap = sizeof(struct json_doc) + text_len + 512;
    if (cap < ARENA_MIN_BLOCK) cap = ARENA_MIN_BLOCK;
    struct arena_block *b = block_new(cap);
    struct json_doc *doc = (struct json_doc *)b->data;
    b->used = sizeof(*doc);
    doc->blocks = b;
    doc->next_block = cap * 2;
    memset(&doc->root, 0, sizeof(doc->root));
    return doc;
}

void json_free(struct json_doc *doc)
{
    if (!doc) return;
    struct arena_block *b = doc->blocks; /* read before the block holding doc goes */
    while (b) {
        struct arena_block *next = b->next;
        free(b);
        b = next;
    }
}

/* ---- parser state and errors ---------------------------------------------------------------- */

struct parser {
    const unsigned char *text;
    size_t len, pos;
    struct json_doc *doc;
    struct json_member *stack; /* children of the open containers, innermost last */
    size_t top, cap;
    locale_t c_locale; /* created on the first fractional number */
    char *err;
    size_t errlen;
};

__attribute__((format(printf, 3, 4))) static bool fail(struct parser *p, size_t at, const char *fmt,
                                                       ...)
{
    if (!p->err || !p->errlen) return false;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(p->err, p->errlen, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < p->errlen) snprintf(p->err + n, p->errlen - (size_t)n, " at byte %zu", at);
    return false;
}

static bool fail_unexpected(struct parser *p, size_t at)
{
    unsigned char c = p->text[at];
    if (c >= 0x20 && c < 0x7f) return fail(p, at, "unexpected character '%c'", c);
    return fail(p, at, "unexpected byte 0x%02x", c);
}

static void skip_ws(struct parser *p)
{
    while (p->pos < p->len) {
        unsigned char c = p->text[p->pos];
        if (c != ' ' && c != '\n' && c != '\r' && c != '\t') return;
        p->pos++;
    }
}

static struct json_member *stack_push(struct parser *p)
{
    if (p->top == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 64;
        p->stack = xrealloc(p->stack, p->cap * sizeof(*p->stack));
    }
    return &p->stack[p->top++];
}

/* ---- strings -------------------------------------------------------------------------------- */

/* Length of the well-formed UTF-8 sequence at s (RFC 3629 section 4: no overlongs, no
 * surrogates, nothing above U+10FFFF), or 0 when it is not one. s[0] must be >= 0x80. */
static size_t utf8_seq_len(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xbf;
    size_t n;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0) lo = 0xa0; /* overlong below U+0800 */
        if (c == 0xed) hi = 0x9f; /* U+D800..U+DFFF */
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0) lo = 0x90; /* overlong below U+10000 */
        if (c == 0xf4) hi = 0x8f; /* above U+10FFFF */
    } else {
        return 0;
    }
    if (avail < n || s[1] < lo || s[1] > hi) return 0;
    for (size_t k = 2; k < n; k++)
        if ((s[k] & 0xc0) != 0x80) return 0;
    return n;
}

static size_t utf8_encode(uint32_t cp, unsigned char *out)
{
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xc0 | (cp >> 6));
        out[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xe0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (unsigned char)(0xf0 | (cp >> 18));
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

static bool hex4(const unsigned char *s, size_t avail, uint32_t *out)
{
    if (avail < 4) return false;
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        unsigned char c = s[k];
        uint32_t d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return false;
        v = v * 16 + d;
    }
    *out = v;
    return true;
}

/* Decodes the \uXXXX escape at raw[*k] (raw[*k] == '\\', raw[*k+1] == 'u') and a low-surrogate
 * escape right after a high one. An unpaired surrogate becomes U+FFFD: it has no UTF-8 form, and
 * replacing it keeps every decoded string valid UTF-8 (json.h documents the choice). */
static bool decode_u_escape(const unsigned char *raw, size_t raw_len, size_t *k, uint32_t *cp)
{
    if (!hex4(raw + *k + 2, raw_len - *k - 2, cp)) return false;
    *k += 6;
    if (*cp >= 0xdc00 && *cp <= 0xdfff) {
        *cp = 0xfffd;
    } else if (*cp >= 0xd800 && *cp <= 0xdbff) {
        uint32_t lo;
        if (*k + 6 <= raw_len && raw[*k] == '\\' && raw[*k + 1] == 'u' &&
            hex4(raw + *k + 2, 4, &lo) && lo >= 0xdc00 && lo <= 0xdfff) {
            *cp = 0x10000 + ((*cp - 0xd800) << 10) + (lo - 0xdc00);
            *k += 6;
        } else {
            *cp = 0xfffd;
        }
    }
    return true;
}

/* Decodes raw[0..raw_len) (a string body already checked for UTF-8 and control characters) into
 * dst; every escape decodes to no more bytes than it takes, so raw_len bytes always suffice. */
static bool decode_escapes(struct parser *p, size_t body_at, const unsigned char *raw, size_t raw_len,
                           unsigned char *dst, size_t *out_len)
{
    size_t o = 0;
    for (size_t k = 0; k < raw_len;) {
        if (raw[k] != '\\') {
            dst[o++] = raw[k++];
            continue;
        }
        /* The scan stopped at an unescaped quote, so a backslash is never the last body byte. */
        unsigned char e = raw[k + 1], c;
        uint32_t cp;
        switch (e) {
        case '"': case '\\': case '/': c = e; break;
        case 'b': c = '\b'; break;
        case 'f': c = '\f'; break;
        case 'n': c = '\n'; break;
        case 'r': c = '\r'; break;
        case 't': c = '\t'; break;
        case 'u':
            if (!decode_u_escape(raw, raw_len, &k, &cp))
                return fail(p, body_at + k, "invalid \\u escape (needs 4 hex digits)");
            o += utf8_encode(cp, dst + o);
            continue;
        default:
            if (e >= 0x20 && e < 0x7f) return fail(p, body_at + k, "invalid escape '\\%c'", e);
            return fail(p, body_at + k, "invalid escape: backslash before byte 0x%02x", e);
        }
        dst[o++] = c;
        k += 2;
    }
    *out_len = o;
    return true;
}

/* Finds the closing quote of the string opened at p->pos, validating UTF-8 and rejecting raw
 * control characters on the way (the byte after a backslash is checked when decoding). */
static bool scan_string(struct parser *p, size_t *close, bool *has_escape)
{
    const unsigned char *t = p->text;
    size_t i = p->pos + 1;
    *has_escape = false;
    while (i < p->len) {
        unsigned char c = t[i];
        if (c == '"') {
            *close = i;
            return true;
        }
        if (c == '\\') {
            *has_escape = true;
            i += 2;
        } else if (c < 0x20) {
            return fail(p, i, "unescaped control character 0x%02x in string", c);
        } else if (c < 0x80) {
            i++;
        } else {
            size_t n = utf8_seq_len(t + i, p->len - i);
            if (!n) return fail(p, i, "invalid UTF-8 in string");
            i += n;
        }
    }
    return fail(p, p->pos, "unterminated string");
}

/* Parses the string at p->pos into a NUL-terminated arena copy. */
static bool parse_string(struct parser *p, const char **out, size_t *out_len)
{
    size_t close = 0;
    bool has_escape;
    if (!scan_string(p, &close, &has_escape)) return false;
    size_t body_at = p->pos + 1, raw_len = close - body_at;
    const unsigned char *raw = p->text + body_at;
    unsigned char *dst = arena_alloc(p->doc, raw_len + 1, 1);
    size_t n = raw_len;
    if (!has_escape) memcpy(dst, raw, raw_len);
    else if (!decode_escapes(p, body_at, raw, raw_len, dst, &n)) return false;
    dst[n] = '\0';
    arena_shrink_last(p->doc, dst, n + 1);
    *out = (const char *)dst;
    *out_len = n;
    p->pos = close + 1;
    return true;
}

/* ---- numbers and literals ------------------------------------------------------------------- */

static bool is_digit(struct parser *p, size_t i) { return i < p->len && p->text[i] >= '0' && p->text[i] <= '9'; }

static size_t skip_digits(struct parser *p, size_t i)
{
    while (is_digit(p, i)) i++;
    return i;
}

/* Exact value of an integer literal (optional '-', then digits) when it fits in int64. */
static bool literal_int64(const unsigned char *s, size_t n, int64_t *out)
{
    bool neg = s[0] == '-';
    uint64_t v = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (size_t k = neg; k < n; k++) {
        uint64_t d = (uint64_t)(s[k] - '0');
        if (v > (limit - d) / 10) return false;
        v = v * 10 + d;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return true;
}

/* strtod on a NUL-terminated copy, in the "C" locale whatever the process locale says. */
static bool number_strtod(struct parser *p, size_t start, size_t n, double *out)
{
    char small[64];
    char *buf = n < sizeof(small) ? small : xmalloc(n + 1);
    memcpy(buf, p->text + start, n);
    buf[n] = '\0';
    if (!p->c_locale) p->c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    *out = p->c_locale ? strtod_l(buf, NULL, p->c_locale) : strtod(buf, NULL);
    if (buf != small) free(buf);
    if (isinf(*out)) return fail(p, start, "number out of range");
    return true;
}

/* number = [ "-" ] int [ frac ] [ exp ] (RFC 8259 section 6). */
static bool parse_number(struct parser *p, struct json_value *out)
{
    size_t start = p->pos, i = start;
    if (p->text[i] == '-') i++;
    if (!is_digit(p, i)) return fail(p, start, "invalid number: expected a digit");
    if (p->text[i] == '0' && is_digit(p, i + 1)) return fail(p, start, "invalid number: leading zero");
    i = skip_digits(p, i);
    bool integral = true;
    if (i < p->len && p->text[i] == '.') {
        integral = false;
        if (!is_digit(p, ++i)) return fail(p, start, "invalid number: expected a digit after '.'");
        i = skip_digits(p, i);
    }
    if (i < p->len && (p->text[i] == 'e' || p->text[i] == 'E')) {
        integral = false;
        i++;
        if (i < p->len && (p->text[i] == '+' || p->text[i] == '-')) i++;
        if (!is_digit(p, i)) return fail(p, start, "invalid number: expected a digit in the exponent");
        i = skip_digits(p, i);
    }
    out->type = JSON_NUMBER;
    int64_t v;
    if (integral && literal_int64(p->text + start, i - start, &v)) {
        out->is_int = 1;
        out->u.num.i = v;
        /* int64 -> double rounds to nearest, as strtod would; keep the sign of "-0". */
        out->u.num.d = (v == 0 && p->text[start] == '-') ? -0.0 : (double)v;
    } else if (!number_strtod(p, start, i - start, &out->u.num.d)) {
        return false;
    }
    p->pos = i;
    return true;
}

static bool parse_literal(struct parser *p, struct json_value *out)
{
    static const struct {
        const char *word;
        size_t len;
        enum json_type type;
        bool value;
    } lits[] = {{"true", 4, JSON_BOOL, true}, {"false", 5, JSON_BOOL, false}, {"null", 4, JSON_NULL, false}};
    for (size_t k = 0; k < sizeof(lits) / sizeof(lits[0]); k++) {
        if (p->len - p->pos >= lits[k].len && !memcmp(p->text + p->pos, lits[k].word, lits[k].len)) {
            out->type = (uint8_t)lits[k].type;
            out->boolean = lits[k].value;
            p->pos += lits[k].len;
            return true;
        }
    }
    return fail(p, p->pos, "invalid literal (expected true, false or null)");
}

/* ---- containers ----------------------------------------------------------------------------- */

static bool parse_value(struct parser *p, struct json_value *out, int depth);

/* After an element: consumes ',' (true, *more set) or the closing bracket (true, *more clear). */
static bool after_element(struct parser *p, char close, size_t opened_at, bool *more)
{
    skip_ws(p);
    if (p->pos >= p->len) return fail(p, opened_at, "unterminated %s", close == ']' ? "array" : "object");
    unsigned char c = p->text[p->pos];
    if (c != ',' && c != (unsigned char)close) return fail(p, p->pos, "expected ',' or '%c'", close);
    p->pos++;
    *more = c == ',';
    return true;
}

static bool parse_array(struct parser *p, struct json_value *out, int depth)
{
    size_t opened_at = p->pos++, base = p->top;
    skip_ws(p);
    if (p->pos >= p->len) return fail(p, opened_at, "unterminated array");
    bool more = p->text[p->pos] != ']';
    if (!more) p->pos++;
    while (more) {
        struct json_value v;
        memset(&v, 0, sizeof(v));
        if (!parse_value(p, &v, depth)) return false;
        stack_push(p)->value = v;
        if (!after_element(p, ']', opened_at, &more)) return false;
    }
    size_t n = p->top - base;
    struct json_value *items = n ? arena_alloc(p->doc, n * sizeof(*items), ARENA_ALIGN) : NULL;
    for (size_t k = 0; k < n; k++) items[k] = p->stack[base + k].value;
    p->top = base;
    out->type = JSON_ARRAY;
    out->u.arr.items = items;
    out->u.arr.n = n;
    return true;
}

static bool parse_member(struct parser *p, int depth)
{
    skip_ws(p);
    if (p->pos >= p->len) return fail(p, p->pos, "unexpected end of input, expected a string key");
    if (p->text[p->pos] != '"') return fail(p, p->pos, "expected a string key");
    const char *key;
    size_t key_len;
    if (!parse_string(p, &key, &key_len)) return false;
    skip_ws(p);
    if (p->pos >= p->len || p->text[p->pos] != ':') return fail(p, p->pos, "expected ':' after object key");
    p->pos++;
    struct json_value v;
    memset(&v, 0, sizeof(v));
    if (!parse_value(p, &v, depth)) return false;
    struct json_member *m = stack_push(p);
    m->key = key;
    m->key_len = key_len;
    m->value = v;
    return true;
}

static bool parse_object(struct parser *p, struct json_value *out, int depth)
{
    size_t opened_at = p->pos++, base = p->top;
    skip_ws(p);
    if (p->pos >= p->len) return fail(p, opened_at, "unterminated object");
    bool more = p->text[p->pos] != '}';
    if (!more) p->pos++;
    while (more) {
        if (!parse_member(p, depth)) return false;
        if (!after_element(p, '}', opened_at, &more)) return false;
    }
    size_t n = p->top - base;
    struct json_member *members = n ? arena_alloc(p->doc, n * sizeof(*members), ARENA_ALIGN) : NULL;
    if (n) memcpy(members, p->stack + base, n * sizeof(*members));
    p->top = base;
    out->type = JSON_OBJECT;
    out->u.obj.members = members;
    out->u.obj.n = n;
    return true;
}

/* depth counts the containers around this value; the root is at depth 0. */
static bool parse_value(struct parser *p, struct json_value *out, int depth)
{
    skip_ws(p);
    if (p->pos >= p->len) return fail(p, p->pos, "unexpected end of input, expected a value");
    unsigned char c = p->text[p->pos];
    if ((c == '[' || c == '{') && depth >= JSON_MAX_DEPTH)
        return fail(p, p->pos, "nesting deeper than %d", JSON_MAX_DEPTH);
    switch (c) {
    case '[': return parse_array(p, out, depth + 1);
    case '{': return parse_object(p, out, depth + 1);
    case '"':
        out->type = JSON_STRING;
        return parse_string(p, &out->u.str.s, &out->u.str.len);
    case 't': case 'f': case 'n': return parse_literal(p, out);
    default:
        if (c == '-' || (c >= '0' && c <= '9')) return parse_number(p, out);
        return fail_unexpected(p, p->pos);
    }
}

struct json_doc *json_parse(const char *text, size_t len, char *err, size_t errlen)
{
    if (err && errlen) err[0] = '\0';
    struct json_doc *doc = doc_new(len);
    struct parser p = {.text = (const unsigned char *)text, .len = len, .doc = doc, .err = err, .errlen = errlen};
    bool ok = parse_value(&p, &doc->root, 0);
    if (ok) {
        skip_ws(&p);
        if (p.pos < len) ok = fail(&p, p.pos, "unexpected data after the JSON value");
    }
    free(p.stack);
    if (p.c_locale) freelocale(p.c_locale);
    if (!ok) {
        json_free(doc);
        return NULL;
    }
    return doc;
}

/* ---- accessors ------------------------------------------------------------------------------ */

const struct json_value *json_root(const struct json_doc *doc) { return doc ? &doc->root : NULL; }

enum json_type json_type(const struct json_value *v) { return v ? (enum json_type)v->type : JSON_NULL; }

bool json_bool(const struct json_value *v) { return v && v->type == JSON_BOOL && v->boolean; }

double json_number(const struct json_value *v) { return v && v->type == JSON_NUMBER ? v->u.num.d : NAN; }

bool json_int64(const struct json_value *v, int64_t *out)
{
    if (!v || v->type != JSON_NUMBER) return false;
    if (v->is_int) {
        *out = v->u.num.i;
        return true;
    }
    /* "1e3" or "2.0": integral in value though not in form; 2^63 itself does not fit. */
    double d = v->u.num.d;
    if (d != floor(d) || d < -9223372036854775808.0 || d >= 9223372036854775808.0) return false;
    *out = (int64_t)d;
    return true;
}

const char *json_string(const struct json_value *v, size_t *len)
{
    if (!v || v->type != JSON_STRING) return NULL;
    if (len) *len = v->u.str.len;
    return v->u.str.s;
}

size_t json_count(const struct json_value *v)
{
    if (!v) return 0;
    if (v->type == JSON_ARRAY) return v->u.arr.n;
    if (v->type == JSON_OBJECT) return v->u.obj.n;
    return 0;
}

const struct json_value *json_at(const struct json_value *arr, size_t i)
{
    if (!arr || arr->type != JSON_ARRAY || i >= arr->u.arr.n) return NULL;
    return &arr->u.arr.items[i];
}

const char *json_key(const struct json_value *obj, size_t i, size_t *len)
{
    if (!obj || obj->type != JSON_OBJECT || i >= obj->u.obj.n) return NULL;
    if (len) *len = obj->u.obj.members[i].key_len;
    return obj->u.obj.members[i].key;
}

const struct json_value *json_member(const struct json_value *obj, size_t i)
{
    if (!obj || obj->type != JSON_OBJECT || i >= obj->u.obj.n) return NULL;
    return &obj->u.obj.members[i].value;
}

const struct json_value *json_get(const struct json_value *obj, const char *key)
{
    if (!obj || obj->type != JSON_OBJECT) return NULL;
    size_t len = strlen(key);
    for (size_t i = 0; i < obj->u.obj.n; i++) {
        const struct json_member *m = &obj->u.obj.members[i];
        if (m->key_len == len && !memcmp(m->key, key, len)) return &m->value;
    }
    return NULL;
}

/* ---- escaping ------------------------------------------------------------------------------- */

/* The escape of one byte below 0x20, '"' or '\\' as a 2-byte short form, or 0 for \u00XX. */
static char short_escape(unsigned char c)
{
    switch (c) {
    case '"': return '"';
    case '\\': return '\\';
    case '\b': return 'b';
    case '\f': return 'f';
    case '\n': return 'n';
    case '\r': return 'r';
    case '\t': return 't';
    default: return 0;
    }
}

/* Walks s once; writes to out when out is non-NULL. Returns the literal's length. */
static size_t escape_pass(unsigned char *out, const unsigned char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    static const unsigned char replacement[3] = {0xef, 0xbf, 0xbd}; /* U+FFFD */
    size_t o = 0;
    if (out) out[o] = '"';
    o++;
    for (size_t i = 0; i < len;) {
        unsigned char c = s[i];
        if (c < 0x20 || c == '"' || c == '\\') {
            char e = short_escape(c);
            if (out) {
                unsigned char *d = out + o;
                d[0] = '\\';
                if (e) {
                    d[1] = (unsigned char)e;
                } else {
                    memcpy(d + 1, "u00", 3);
                    d[4] = (unsigned char)hex[c >> 4];
                    d[5] = (unsigned char)hex[c & 15];
                }
            }
            o += e ? 2 : 6;
            i++;
        } else if (c < 0x80) {
            if (out) out[o] = c;
            o++;
            i++;
        } else {
            size_t n = utf8_seq_len(s + i, len - i);
            if (out) memcpy(out + o, n ? s + i : replacement, n ? n : 3);
            o += n ? n : 3;
            i += n ? n : 1;
        }
    }
    if (out) out[o] = '"';
    return o + 1;
}

size_t json_escape(char *out, size_t cap, const char *s, size_t len)
{
    size_t need = escape_pass(NULL, (const unsigned char *)s, len);
    if (need > cap || !out) return need;
    escape_pass((unsigned char *)out, (const unsigned char *)s, len);
    if (need < cap) out[need] = '\0';
    return need;
}

const char *json_quoted(char *buf, const char *s, size_t len)
{
    if (!s) return strcpy(buf, "(missing)");
    size_t cut = len > 40 ? 40 : len; /* at most 6 bytes an input byte, and 2 quotes */
    size_t n = json_escape(buf, JSON_QUOTED_CAP - 4, s, cut);
    strcpy(buf + n, cut < len ? "..." : "");
    return buf;
}
