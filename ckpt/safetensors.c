/* safetensors reader (mmap + full header validation) and atomic writer; contract in
 * ckpt/safetensors.h. Validation follows the reference crate (huggingface/safetensors,
 * safetensors/src/tensor.rs: read_metadata and Metadata::validate). */
#include "ckpt/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/tensor.h"
#include "util/error.h"
#include "util/json.h"

/* The reference crate's MAX_HEADER_SIZE: a larger header is refused as corrupt. */
#define ST_MAX_HEADER 100000000ull
#define ST_DATA_ALIGN 64

struct st_file {
    char *name;          /* path, or "<memory>", for messages */
    void *map;           /* the file's mapping, or NULL */
    size_t map_len;
    void *data_copy;     /* aligned copies of the tensors when the file's bytes are misaligned */
    struct json_doc *header;
    const struct json_value *metadata; /* "__metadata__" object, or NULL */
    struct st_tensor *tensors;         /* in data order */
    size_t n;
    size_t *by_name; /* indices into tensors, sorted by name, for st_find */
};

static const struct {
    const char *name;
    size_t size;
} dtype_info[ST_NUM_DTYPES] = {
    [ST_F64] = {"F64", 8},     [ST_F32] = {"F32", 4},         [ST_F16] = {"F16", 2},
    [ST_BF16] = {"BF16", 2},   [ST_I64] = {"I64", 8},         [ST_I32] = {"I32", 4},
    [ST_I16] = {"I16", 2},     [ST_I8] = {"I8", 1},           [ST_U8] = {"U8", 1},
    [ST_BOOL] = {"BOOL", 1},   [ST_U64] = {"U64", 8},         [ST_U32] = {"U32", 4},
    [ST_U16] = {"U16", 2},     [ST_F8_E4M3] = {"F8_E4M3", 1}, [ST_F8_E5M2] = {"F8_E5M2", 1},
    [ST_F8_E8M0] = {"F8_E8M0", 1}, [ST_C64] = {"C64", 8},
};

const char *st_dtype_name(enum st_dtype dt) { return (unsigned)dt < ST_NUM_DTYPES ? dtype_info[dt].name : "?"; }

size_t st_dtype_size(enum st_dtype dt) { return (unsigned)dt < ST_NUM_DTYPES ? dtype_info[dt].size : 0; }

int st_dtype_from_name(const char *name, size_t len)
{
    for (int i = 0; i < ST_NUM_DTYPES; i++)
        if (strlen(dtype_info[i].name) == len && !memcmp(dtype_info[i].name, name, len)) return i;
    return -1;
}

int64_t st_numel(const struct st_tensor *t)
{
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

__attribute__((format(printf, 3, 4))) static bool fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return false;
}

/* A name as a JSON literal for messages: control characters escaped, long names cut to fit cap
 * (at least 16) with "..." before the closing quote. */
static const char *quoted(const char *s, char *buf, size_t cap)
{
    size_t len = strlen(s);
    if (json_escape(buf, cap, s, len) < cap) return buf;
    size_t keep = len < cap ? len : cap;
    do {
        keep--;
        while (keep > 0 && ((unsigned char)s[keep] & 0xc0) == 0x80) keep--; /* whole characters */
    } while (json_escape(NULL, 0, s, keep) + 4 > cap);
    size_t n = json_escape(buf, cap, s, keep);
    memcpy(buf + n - 1, "...\"", 5);
    return buf;
}

/* ---- opening -------------------------------------------------------------------------------- */

/* A tensor's place in the data section while the header is checked. */
struct span {
    uint64_t begin, end;
    size_t entry; /* index into the header-order tensor array */
};

/* x * y with overflow detection. */
static bool mul_u64(uint64_t x, uint64_t y, uint64_t *out)
{
    if (x != 0 && y > UINT64_MAX / x) return false;
    *out = x * y;
    return true;
}

static bool parse_dtype(const struct json_value *e, enum st_dtype *dt, const char *what, char *err, size_t errlen)
{
    size_t len;
    const char *s = json_string(json_get(e, "dtype"), &len);
    if (!s) return fail(err, errlen, "%s: \"dtype\" is missing or not a string", what);
    int d = st_dtype_from_name(s, len);
    char q[96];
    if (d < 0) return fail(err, errlen, "%s: unknown dtype %s", what, quoted(s, q, sizeof q));
    *dt = (enum st_dtype)d;
    return true;
}

static bool parse_shape(const struct json_value *e, struct st_tensor *t, const char *what, char *err, size_t errlen)
{
    const struct json_value *shape = json_get(e, "shape");
    if (json_type(shape) != JSON_ARRAY) return fail(err, errlen, "%s: \"shape\" is missing or not a list", what);
    size_t ndim = json_count(shape);
    if (ndim > ST_MAX_DIMS)
        return fail(err, errlen, "%s: shape has %zu dimensions, at most %d are supported", what, ndim, ST_MAX_DIMS);
    t->ndim = (int)ndim;
    for (size_t d = 0; d < ndim; d++) {
        if (!json_int64(json_at(shape, d), &t->shape[d]) || t->shape[d] < 0)
            return fail(err, errlen, "%s: shape is not a list of non-negative integers", what);
    }
    return true;
}

static bool parse_offsets(const struct json_value *e, struct span *s, const char *what, char *err, size_t errlen)
{
    const struct json_value *off = json_get(e, "data_offsets");
    int64_t b, x;
    if (json_type(off) != JSON_ARRAY || json_count(off) != 2 || !json_int64(json_at(off, 0), &b) ||
        !json_int64(json_at(off, 1), &x) || b < 0 || x < b)
        return fail(err, errlen, "%s: \"data_offsets\" is not [begin, end] with 0 <= begin <= end", what);
    s->begin = (uint64_t)b;
    s->end = (uint64_t)x;
    return true;
}

/* One header entry: dtype, shape and offsets that agree with each other and fit the data. */
static bool parse_entry(const char *fname, const char *name, const struct json_value *e, uint64_t data_len,
                        struct st_tensor *t, struct span *s, char *err, size_t errlen)
{
    char q[128], what[256];
    snprintf(what, sizeof what, "%s: tensor %s", fname, quoted(name, q, sizeof q));
    if (json_type(e) != JSON_OBJECT) return fail(err, errlen, "%s: entry is not an object", what);
    t->name = name;
    if (!parse_dtype(e, &t->dtype, what, err, errlen) || !parse_shape(e, t, what, err, errlen) ||
        !parse_offsets(e, s, what, err, errlen))
        return false;
    uint64_t numel = 1, nbytes;
    for (int d = 0; d < t->ndim; d++)
        if (!mul_u64(numel, (uint64_t)t->shape[d], &numel))
            return fail(err, errlen, "%s: shape overflows a 64-bit element count", what);
    if (!mul_u64(numel, st_dtype_size(t->dtype), &nbytes))
        return fail(err, errlen, "%s: shape overflows a 64-bit byte count", what);
    if (nbytes != s->end - s->begin)
        return fail(err, errlen,
                    "%s: %s with %" PRIu64 " elements needs %" PRIu64 " bytes but data_offsets [%" PRIu64
                    ", %" PRIu64 "] hold %" PRIu64,
                    what, st_dtype_name(t->dtype), numel, nbytes, s->begin, s->end, s->end - s->begin);
    if (s->end > data_len)
        return fail(err, errlen, "%s: data_offsets end %" PRIu64 " is beyond the %" PRIu64 " bytes of data", what,
                    s->end, data_len);
    t->nbytes = (size_t)nbytes;
    return true;
}

static bool check_metadata(const char *fname, const struct json_value *m, char *err, size_t errlen)
{
    if (json_type(m) == JSON_NULL) return true; /* the reference reads null as "no metadata" */
    bool ok = json_type(m) == JSON_OBJECT;
    for (size_t i = 0; ok && i < json_count(m); i++) ok = json_type(json_member(m, i)) == JSON_STRING;
    return ok || fail(err, errlen, "%s: \"__metadata__\" is not an object of strings", fname);
}

/* Walks the header's members: "__metadata__" once, every other key a tensor entry. */
static bool parse_entries(struct st_file *f, uint64_t data_len, struct span **spans, char *err, size_t errlen)
{
    const struct json_value *root = json_root(f->header);
    size_t members = json_count(root), n = 0;
    bool seen_metadata = false;
    f->tensors = xcalloc(members ? members : 1, sizeof(*f->tensors));
    *spans = xcalloc(members ? members : 1, sizeof(**spans));
    for (size_t i = 0; i < members; i++) {
        size_t klen;
        const char *key = json_key(root, i, &klen);
        const struct json_value *v = json_member(root, i);
        if (klen != strlen(key)) return fail(err, errlen, "%s: a tensor name contains a NUL byte", f->name);
        if (!strcmp(key, "__metadata__")) {
            if (seen_metadata) return fail(err, errlen, "%s: \"__metadata__\" appears twice", f->name);
            seen_metadata = true;
            if (!check_metadata(f->name, v, err, errlen)) return false;
            f->metadata = json_type(v) == JSON_OBJECT ? v : NULL;
            continue;
        }
        (*spans)[n].entry = n;
        if (!parse_entry(f->name, key, v, data_len, &f->tensors[n], &(*spans)[n], err, errlen)) return false;
        n++;
    }
    f->n = n;
    return true;
}

static int cmp_span(const void *a, const void *b)
{
    const struct span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->entry < y->entry ? -1 : x->entry > y->entry;
}

/* The data section must be tiled exactly: sorted by offsets, each tensor starts where the
 * previous ended, the first at 0 and the last ends at the end of the file. */
static bool check_tiling(const struct st_file *f, struct span *spans, uint64_t data_len, char *err, size_t errlen)
{
    qsort(spans, f->n, sizeof(*spans), cmp_span);
    uint64_t cursor = 0;
    char q1[128], q2[128];
    for (size_t k = 0; k < f->n; k++) {
        const char *name = f->tensors[spans[k].entry].name;
        if (spans[k].begin < cursor)
            return fail(err, errlen, "%s: tensors %s and %s overlap in the data section", f->name,
                        quoted(f->tensors[spans[k - 1].entry].name, q1, sizeof q1), quoted(name, q2, sizeof q2));
        if (spans[k].begin > cursor)
            return fail(err, errlen,
                        "%s: bytes %" PRIu64 "..%" PRIu64 " before tensor %s belong to no tensor (the data must "
                        "be contiguous)",
                        f->name, cursor, spans[k].begin, quoted(name, q1, sizeof q1));
        cursor = spans[k].end;
    }
    if (cursor != data_len)
        return fail(err, errlen, "%s: the data section has %" PRIu64 " bytes but the tensors cover %" PRIu64,
                    f->name, data_len, cursor);
    return true;
}

static size_t align_of(enum st_dtype dt) { return dt == ST_C64 ? 4 : st_dtype_size(dt); }

/* Puts the tensors in data order and points them at their bytes. Element data must be aligned
 * for the callers that cast it; when the file's is not (a header length that is not a multiple
 * of 8, or a writer that did not order tensors by decreasing element size), the tensors are
 * copied one by one into an aligned buffer. */
static void place_tensors(struct st_file *f, const struct span *spans, const unsigned char *data, uint64_t data_start)
{
    struct st_tensor *sorted = xcalloc(f->n ? f->n : 1, sizeof(*sorted));
    bool aligned = true;
    size_t copy_bytes = 0;
    for (size_t k = 0; k < f->n; k++) {
        sorted[k] = f->tensors[spans[k].entry];
        sorted[k].data = data + spans[k].begin;
        sorted[k].file_offset = data_start + spans[k].begin;
        aligned = aligned && (uintptr_t)sorted[k].data % align_of(sorted[k].dtype) == 0;
        copy_bytes += (sorted[k].nbytes + ST_DATA_ALIGN - 1) / ST_DATA_ALIGN * ST_DATA_ALIGN;
    }
    free(f->tensors);
    f->tensors = sorted;
    if (aligned || copy_bytes == 0) return;
    unsigned char *copy = aligned_alloc(ST_DATA_ALIGN, copy_bytes);
    if (!copy) die_user("out of memory copying %zu bytes of %s to aligned memory", copy_bytes, f->name);
    f->data_copy = copy;
    for (size_t k = 0; k < f->n; k++) {
        memcpy(copy, sorted[k].data, sorted[k].nbytes);
        sorted[k].data = copy;
        copy += (sorted[k].nbytes + ST_DATA_ALIGN - 1) / ST_DATA_ALIGN * ST_DATA_ALIGN;
    }
}

static int cmp_name(const void *a, const void *b, void *ctx)
{
    const struct st_tensor *t = ctx;
    return strcmp(t[*(const size_t *)a].name, t[*(const size_t *)b].name);
}

static bool index_names(struct st_file *f, char *err, size_t errlen)
{
    f->by_name = xmalloc((f->n ? f->n : 1) * sizeof(*f->by_name));
    for (size_t i = 0; i < f->n; i++) f->by_name[i] = i;
    qsort_r(f->by_name, f->n, sizeof(*f->by_name), cmp_name, f->tensors);
    char q[128];
    for (size_t i = 1; i < f->n; i++) {
        const char *name = f->tensors[f->by_name[i]].name;
        if (!strcmp(f->tensors[f->by_name[i - 1]].name, name))
            return fail(err, errlen, "%s: tensor name %s appears twice", f->name, quoted(name, q, sizeof q));
    }
    return true;
}

/* Validates buf[0..len) (the whole file) and fills f; f->name is set. */
static bool st_parse(struct st_file *f, const unsigned char *buf, size_t len, char *err, size_t errlen)
{
    if (len < 8)
        return fail(err, errlen, "%s: file is %zu bytes, shorter than the 8-byte header length", f->name, len);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | buf[i];
    if (n > ST_MAX_HEADER)
        return fail(err, errlen, "%s: header length %" PRIu64 " is absurd (more than %llu bytes); not a safetensors file?",
                    f->name, n, ST_MAX_HEADER);
    if (n > len - 8)
        return fail(err, errlen, "%s: header length %" PRIu64 " runs past the end of the %zu-byte file", f->name, n, len);
    char jerr[160];
    f->header = json_parse((const char *)buf + 8, (size_t)n, jerr, sizeof jerr);
    if (!f->header) return fail(err, errlen, "%s: header is not valid JSON: %s of the header", f->name, jerr);
    if (json_type(json_root(f->header)) != JSON_OBJECT)
        return fail(err, errlen, "%s: header is not a JSON object", f->name);
    uint64_t data_len = len - 8 - n;
    struct span *spans = NULL;
    bool ok = parse_entries(f, data_len, &spans, err, errlen) && check_tiling(f, spans, data_len, err, errlen);
    if (ok) place_tensors(f, spans, buf + 8 + n, 8 + n);
    free(spans);
    return ok && index_names(f, err, errlen);
}

static struct st_file *file_new(const char *name)
{
    struct st_file *f = xcalloc(1, sizeof(*f));
    f->name = xstrdup(name);
    return f;
}

struct st_file *st_open_memory(const void *buf, size_t len, char *err, size_t errlen)
{
    struct st_file *f = file_new("<memory>");
    if (!st_parse(f, buf, len, err, errlen)) {
        st_close(f);
        return NULL;
    }
    return f;
}

struct st_file *st_open(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fail(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        fail(err, errlen, "%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    struct st_file *f = file_new(path);
    size_t len = (size_t)st.st_size;
    void *map = len >= 8 ? mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    int map_errno = errno;
    close(fd);
    if (map == MAP_FAILED) {
        fail(err, errlen, "%s: cannot map %zu bytes: %s", path, len, strerror(map_errno));
        st_close(f);
        return NULL;
    }
    f->map = map;
    f->map_len = map ? len : 0;
    static const unsigned char empty[8];
    if (!st_parse(f, map ? map : empty, len, err, errlen)) {
        st_close(f);
        return NULL;
    }
    return f;
}

void st_close(struct st_file *f)
{
    if (!f) return;
    if (f->map) munmap(f->map, f->map_len);
    free(f->data_copy);
    json_free(f->header);
    free(f->tensors);
    free(f->by_name);
    free(f->name);
    free(f);
}

size_t st_count(const struct st_file *f) { return f->n; }

const struct st_tensor *st_at(const struct st_file *f, size_t i) { return i < f->n ? &f->tensors[i] : NULL; }

const struct st_tensor *st_find(const struct st_file *f, const char *name)
{
    size_t lo = 0, hi = f->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct st_tensor *t = &f->tensors[f->by_name[mid]];
        int c = strcmp(name, t->name);
        if (c == 0) return t;
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return NULL;
}

const char *st_metadata(const struct st_file *f, const char *key)
{
    return json_string(json_get(f->metadata, key), NULL);
}

/* ---- conversion ----------------------------------------------------------------------------- */

int st_to_f32(const struct st_tensor *t, float *out, char *err, size_t errlen)
{
    int64_t n = st_numel(t);
    enum st_dtype dt = t->dtype;
    if (dt != ST_F32 && dt != ST_F64 && dt != ST_F16 && dt != ST_BF16) {
        fail(err, errlen, "tensor \"%s\" has dtype %s, not a floating-point type", t->name, st_dtype_name(dt));
        return -1;
    }
    if ((uint64_t)n * st_dtype_size(dt) > t->nbytes) {
        fail(err, errlen, "tensor \"%s\": %zu bytes of data are too few for its shape", t->name, t->nbytes);
        return -1;
    }
    const unsigned char *src = t->data;
    if (dt == ST_F32) {
        if (n) memcpy(out, src, (size_t)n * 4);
        return 0;
    }
    /* memcpy per element: a hand-built st_tensor need not be aligned. */
#pragma omp parallel for if (n > (1 << 20))
    for (int64_t i = 0; i < n; i++) {
        if (dt == ST_F64) {
            double d;
            memcpy(&d, src + 8 * i, 8);
            out[i] = (float)d;
        } else {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            out[i] = dt == ST_F16 ? f16_to_f32(h) : bf16_to_f32(h);
        }
    }
    return 0;
}

/* ---- writing -------------------------------------------------------------------------------- */

struct sbuf {
    char *p;
    size_t len, cap;
};

static void sb_reserve(struct sbuf *b, size_t extra)
{
    if (b->cap - b->len > extra) return;
    while (b->cap - b->len <= extra) b->cap = b->cap ? b->cap * 2 : 4096;
    b->p = xrealloc(b->p, b->cap);
}

__attribute__((format(printf, 2, 3))) static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    sb_reserve(b, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static void sb_string(struct sbuf *b, const char *s)
{
    size_t n = json_escape(NULL, 0, s, strlen(s));
    sb_reserve(b, n + 1);
    b->len += json_escape(b->p + b->len, b->cap - b->len, s, strlen(s));
}

/* True when s survives a JSON round trip unchanged, i.e. it is valid UTF-8 (json_escape would
 * otherwise replace bytes and the name read back would differ). */
static bool json_safe(const char *s)
{
    struct sbuf b = {0};
    sb_string(&b, s);
    struct json_doc *d = json_parse(b.p, b.len, NULL, 0);
    const char *back = d ? json_string(json_root(d), NULL) : NULL;
    bool ok = back && !strcmp(back, s);
    json_free(d);
    free(b.p);
    return ok;
}

static bool check_write_tensor(const struct st_tensor *t, char *err, size_t errlen)
{
    char q[128];
    if (!t->name) return fail(err, errlen, "a tensor has no name");
    if (!json_safe(t->name) || !strcmp(t->name, "__metadata__"))
        return fail(err, errlen, "tensor name %s is reserved or not valid UTF-8", quoted(t->name, q, sizeof q));
    if ((unsigned)t->dtype >= ST_NUM_DTYPES || t->ndim < 0 || t->ndim > ST_MAX_DIMS)
        return fail(err, errlen, "tensor \"%s\": bad dtype or number of dimensions", t->name);
    uint64_t numel = 1, nbytes;
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] < 0 || !mul_u64(numel, (uint64_t)t->shape[d], &numel))
            return fail(err, errlen, "tensor \"%s\": bad shape", t->name);
    if (!mul_u64(numel, st_dtype_size(t->dtype), &nbytes) || nbytes != t->nbytes || (nbytes && !t->data))
        return fail(err, errlen, "tensor \"%s\": %zu bytes of data do not match %s with %" PRIu64 " elements",
                    t->name, t->nbytes, st_dtype_name(t->dtype), numel);
    return true;
}

static int cmp_str_ptr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static bool check_write_args(const struct st_tensor *tensors, size_t n, const char *const *kv, char *err,
                             size_t errlen)
{
    for (size_t i = 0; i < n; i++)
        if (!check_write_tensor(&tensors[i], err, errlen)) return false;
    for (size_t i = 0; kv && kv[i]; i += 2)
        if (!kv[i + 1] || !json_safe(kv[i]) || !json_safe(kv[i + 1]))
            return fail(err, errlen, "metadata key %s has no value or is not valid UTF-8", kv[i]);
    const char **names = xmalloc((n ? n : 1) * sizeof(*names));
    for (size_t i = 0; i < n; i++) names[i] = tensors[i].name;
    qsort(names, n, sizeof(*names), cmp_str_ptr);
    bool ok = true;
    for (size_t i = 1; i < n && ok; i++)
        if (!strcmp(names[i - 1], names[i])) ok = fail(err, errlen, "tensor name \"%s\" given twice", names[i]);
    free(names);
    return ok;
}

/* The JSON header exactly as the reference writer lays it out (compact, "__metadata__" first),
 * padded with spaces to a multiple of 8 so the data that follows stays 8-byte aligned. */
static void build_header(struct sbuf *b, const struct st_tensor *tensors, size_t n, const char *const *kv)
{
    sb_printf(b, "{");
    if (kv) {
        sb_printf(b, "\"__metadata__\":{");
        for (size_t i = 0; kv[i]; i += 2) {
            if (i) sb_printf(b, ",");
            sb_string(b, kv[i]);
            sb_printf(b, ":");
            sb_string(b, kv[i + 1]);
        }
        sb_printf(b, "}");
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < n; i++) {
        const struct st_tensor *t = &tensors[i];
        if (i || kv) sb_printf(b, ",");
        sb_string(b, t->name);
        sb_printf(b, ":{\"dtype\":\"%s\",\"shape\":[", st_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++) sb_printf(b, "%s%" PRId64, d ? "," : "", t->shape[d]);
        sb_printf(b, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", offset, offset + t->nbytes);
        offset += t->nbytes;
    }
    sb_printf(b, "}");
    while (b->len % 8) sb_printf(b, " ");
}

static bool write_all(int fd, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len < (1u << 30) ? len : (1u << 30));
        if (w < 0 && errno == EINTR) continue;
        if (w == 0) errno = EIO;
        if (w <= 0) return false;
        p += w;
        len -= (size_t)w;
    }
    return true;
}

static bool write_contents(int fd, const struct sbuf *header, const struct st_tensor *tensors, size_t n)
{
    unsigned char len_le[8];
    for (int i = 0; i < 8; i++) len_le[i] = (unsigned char)((uint64_t)header->len >> (8 * i));
    if (!write_all(fd, len_le, 8) || !write_all(fd, header->p, header->len)) return false;
    for (size_t i = 0; i < n; i++)
        if (!write_all(fd, tensors[i].data, tensors[i].nbytes)) return false;
    return fsync(fd) == 0;
}

/* Makes the rename durable: fsync of the directory holding path. Best effort, since some file
 * systems refuse fsync on a directory, and the file itself is complete either way. */
static void sync_parent_dir(const char *path)
{
    char *dir = xstrdup(path);
    char *slash = strrchr(dir, '/');
    if (slash == dir) slash[1] = '\0';
    else if (slash) *slash = '\0';
    int fd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(dir);
}

int st_write(const char *path, const struct st_tensor *tensors, size_t n, const char *const *metadata_kv,
             char *err, size_t errlen)
{
    if (!check_write_args(tensors, n, metadata_kv, err, errlen)) return -1;
    struct sbuf header = {0};
    build_header(&header, tensors, n, metadata_kv);
    if (header.len > ST_MAX_HEADER) {
        fail(err, errlen, "%s: the header would be %zu bytes, more than readers accept", path, header.len);
        free(header.p);
        return -1;
    }
    size_t plen = strlen(path);
    char *tmp = xmalloc(plen + 5);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    bool ok = fd >= 0 && write_contents(fd, &header, tensors, n);
    int saved = errno;
    if (fd >= 0 && close(fd) != 0 && ok) {
        ok = false;
        saved = errno;
    }
    if (ok && rename(tmp, path) != 0) {
        ok = false;
        saved = errno;
    }
    if (ok) {
        sync_parent_dir(path);
    } else {
        fail(err, errlen, "%s: cannot write: %s", fd < 0 ? tmp : path, strerror(saved));
        unlink(tmp);
    }
    free(tmp);
    free(header.p);
    return ok ? 0 : -1;
}
