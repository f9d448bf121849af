/* GPT-2 byte-level BPE: loading vocab.json and merges.txt, encoding (pre-tokens from
 * gpt2_pretokenize_next, then merges by rank with a heap, through a per-thread cache) and
 * decoding. Facts from OpenAI's gpt-2 src/encoder.py and Megatron's legacy gpt2_tokenization.py. */
#include "data/tokenizer_gpt2.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/unicode_tables.h"
#include "util/error.h"
#include "util/json.h"

/* Merge table entry: the pair (left id, right id) packed in key, its rank in merges.txt and the
 * id of the merged token. Open addressing; key MERGE_EMPTY marks a free slot. */
struct merge_slot {
    uint64_t key;
    int32_t rank;
    int32_t id;
};
#define MERGE_EMPTY UINT64_MAX

struct gpt2_bpe {
    int32_t vocab_size;
    int32_t eod;
    int32_t byte_id[256]; /* id of the one-byte token for each byte */
    char *bytes;          /* every token's bytes, back to back */
    size_t *offset;       /* token i is bytes[offset[i] .. offset[i+1]) */
    struct merge_slot *merges;
    size_t merge_mask, n_merges;
};

/* The pre-token cache: direct-mapped, one pre-token per slot, overwritten on collision, so its
 * size is fixed (CACHE_SLOTS * 64 bytes per thread). Long pre-tokens are simply not cached. */
#define CACHE_SLOTS (1u << 14)
#define CACHE_KEY_MAX 22
#define CACHE_IDS_MAX 10
struct cache_slot {
    uint8_t key_len; /* 0: empty */
    uint8_t n_ids;
    char key[CACHE_KEY_MAX];
    int32_t ids[CACHE_IDS_MAX];
};

struct heap_item {
    int32_t rank, pos, left, right, merged;
};

struct gpt2_bpe_scratch {
    struct cache_slot *cache; /* NULL: no caching */
    /* Work arrays of one pre-token's merge: symbol ids, neighbour links, the pair heap. */
    int32_t *id, *prev, *next;
    struct heap_item *heap;
    size_t cap;
};

/* ---- bytes_to_unicode (OpenAI encoder.py) ---- */

/* Bytes that stand for themselves: '!'..'~', U+00A1..U+00AC, U+00AE..U+00FF. */
static bool byte_is_printable(unsigned b)
{
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
}

uint32_t gpt2_byte_to_unicode(uint8_t b)
{
    if (byte_is_printable(b)) return b;
    uint32_t n = 0; /* the others get 256, 257, ... in byte order */
    for (unsigned x = 0; x < b; x++) n += !byte_is_printable(x);
    return 256 + n;
}

/* ---- UTF-8 ---- */

/* Length of the valid UTF-8 prefix of s (RFC 3629: no overlongs, no surrogates, <= U+10FFFF). */
static size_t utf8_valid_prefix(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        unsigned lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) n = 2;
        else if (c >= 0xE0 && c <= 0xEF) {
            n = 3;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 4;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else return i;
        if (i + n > len || s[i + 1] < lo || s[i + 1] > hi) return i;
        for (size_t k = 2; k < n; k++)
            if ((s[i + k] & 0xC0) != 0x80) return i;
        i += n;
    }
    return len;
}

/* Decodes the code point at s[i] of valid UTF-8; returns its byte length. */
static size_t utf8_decode(const unsigned char *s, size_t i, uint32_t *cp)
{
    unsigned c = s[i];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c < 0xE0) {
        *cp = ((c & 0x1Fu) << 6) | (s[i + 1] & 0x3Fu);
        return 2;
    }
    if (c < 0xF0) {
        *cp = ((c & 0x0Fu) << 12) | ((s[i + 1] & 0x3Fu) << 6) | (s[i + 2] & 0x3Fu);
        return 3;
    }
    *cp = ((c & 0x07u) << 18) | ((s[i + 1] & 0x3Fu) << 12) | ((s[i + 2] & 0x3Fu) << 6) | (s[i + 3] & 0x3Fu);
    return 4;
}

/* ---- pre-tokenization ---- */

static enum unicode_class char_class(uint32_t cp)
{
    if (cp < 0x80) {
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return UNICODE_LETTER;
        if (cp >= '0' && cp <= '9') return UNICODE_NUMBER;
        if (cp == ' ' || (cp >= '\t' && cp <= '\r')) return UNICODE_SPACE;
        return UNICODE_OTHER;
    }
    return unicode_class_of(cp);
}

/* 's 't 're 've 'm 'll 'd at s[0] == '\'': the match length, or 0. Case-sensitive, as in GPT-2. */
static size_t contraction_len(const unsigned char *s, size_t avail)
{
    if (avail >= 2 && (s[1] == 's' || s[1] == 't' || s[1] == 'm' || s[1] == 'd')) return 2;
    if (avail >= 3 && ((s[1] == 'r' && s[2] == 'e') || (s[1] == 'v' && s[2] == 'e') || (s[1] == 'l' && s[2] == 'l')))
        return 3;
    return 0;
}

/* End of the run of characters of class cls starting at byte i. */
static size_t class_run_end(const unsigned char *s, size_t len, size_t i, enum unicode_class cls)
{
    while (i < len) {
        uint32_t cp;
        size_t n = utf8_decode(s, i, &cp);
        if (char_class(cp) != cls) break;
        i += n;
    }
    return i;
}

/* \s+(?!\S)|\s+ at byte pos: the whole whitespace run when it ends the text; otherwise the run
 * less its last character (which then leads the next pre-token, e.g. " word"), or the single
 * character when the run has only one. */
static size_t whitespace_end(const unsigned char *s, size_t len, size_t pos)
{
    size_t i = pos, last = pos;
    while (i < len) {
        uint32_t cp;
        size_t n = utf8_decode(s, i, &cp);
        if (char_class(cp) != UNICODE_SPACE) break;
        last = i;
        i += n;
    }
    if (i == len || last == pos) return i;
    return last;
}

size_t gpt2_pretokenize_next(const char *text, size_t len, size_t pos)
{
    const unsigned char *s = (const unsigned char *)text;
    uint32_t cp;
    size_t n = utf8_decode(s, pos, &cp);
    if (cp == '\'') {
        size_t m = contraction_len(s + pos, len - pos);
        if (m) return pos + m;
    }
    /* ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: an optional space, then a run of one class. */
    size_t start = pos;
    if (cp == ' ' && pos + n < len) {
        start = pos + n;
        utf8_decode(s, start, &cp);
    }
    enum unicode_class cls = char_class(cp);
    if (cls != UNICODE_SPACE) return class_run_end(s, len, start, cls);
    return whitespace_end(s, len, pos);
}

/* ---- the merge table ---- */

static uint64_t pair_key(int32_t left, int32_t right) { return ((uint64_t)(uint32_t)left << 32) | (uint32_t)right; }

static size_t merge_hash(uint64_t key, size_t mask)
{
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & mask; /* Fibonacci hashing */
}

static const struct merge_slot *merge_find(const struct gpt2_bpe *bpe, int32_t left, int32_t right)
{
    uint64_t key = pair_key(left, right);
    for (size_t h = merge_hash(key, bpe->merge_mask);; h = (h + 1) & bpe->merge_mask) {
        const struct merge_slot *m = &bpe->merges[h];
        if (m->key == key) return m;
        if (m->key == MERGE_EMPTY) return NULL;
    }
}

/* A pair listed twice keeps its later rank, as Python's dict(zip(merges, range(...))) does. */
static void merge_insert(struct gpt2_bpe *bpe, int32_t left, int32_t right, int32_t rank, int32_t id)
{
    uint64_t key = pair_key(left, right);
    size_t h = merge_hash(key, bpe->merge_mask);
    while (bpe->merges[h].key != MERGE_EMPTY && bpe->merges[h].key != key) h = (h + 1) & bpe->merge_mask;
    if (bpe->merges[h].key == MERGE_EMPTY) bpe->n_merges++;
    bpe->merges[h] = (struct merge_slot){key, rank, id};
}

/* ---- loading ---- */

/* Token string (bytes_to_unicode form) -> id, used while reading merges.txt. */
struct vocab_map {
    const char **str;
    size_t *len;
    int32_t *id;
    size_t mask;
};

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static size_t pow2_at_least(size_t n)
{
    size_t p = 16;
    while (p < n) p <<= 1;
    return p;
}

static int32_t vocab_map_get(const struct vocab_map *m, const char *s, size_t n)
{
    for (size_t h = fnv1a(s, n) & m->mask;; h = (h + 1) & m->mask) {
        if (!m->str[h]) return -1;
        if (m->len[h] == n && memcmp(m->str[h], s, n) == 0) return m->id[h];
    }
}

/* Decodes a token string of vocab.json to the bytes it stands for; false if a character is not
 * one of bytes_to_unicode's 256. */
static bool token_to_bytes(const char *s, size_t n, const int16_t *unicode_to_byte, char *out, size_t *out_len)
{
    const unsigned char *u = (const unsigned char *)s;
    if (utf8_valid_prefix(u, n) != n) return false;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += utf8_decode(u, i, &cp);
        if (cp >= 324 || unicode_to_byte[cp] < 0) return false;
        out[o++] = (char)unicode_to_byte[cp];
    }
    *out_len = o;
    return true;
}

/* Fills the id -> bytes table and the string -> id map from the vocab.json object. */
static bool load_vocab(struct gpt2_bpe *bpe, const struct json_value *root, struct vocab_map *map, char *err,
                       size_t errlen)
{
    size_t count = json_count(root);
    if (json_type(root) != JSON_OBJECT || count == 0 || count > INT32_MAX / 2) {
        error_set(err, errlen, "not a JSON object of token -> id");
        return false;
    }
    int16_t unicode_to_byte[324];
    memset(unicode_to_byte, 0xff, sizeof(unicode_to_byte));
    for (unsigned b = 0; b < 256; b++) unicode_to_byte[gpt2_byte_to_unicode((uint8_t)b)] = (int16_t)b;

    bpe->vocab_size = (int32_t)count;
    size_t *len = xcalloc(count, sizeof(*len));
    const char **key = xcalloc(count, sizeof(*key));
    size_t total = 0;
    bool ok = true;
    for (size_t i = 0; i < count && ok; i++) {
        int64_t id;
        size_t klen;
        const char *k = json_key(root, i, &klen);
        if (!json_int64(json_member(root, i), &id) || id < 0 || id >= (int64_t)count) {
            char q[JSON_QUOTED_CAP];
            error_set(err, errlen, "token %zu (%s): id is not an integer in [0, %zu)", i,
                      json_quoted(q, k, klen), count);
            ok = false;
        } else if (key[id]) {
            error_set(err, errlen, "id %lld is given to two tokens; ids must be distinct", (long long)id);
            ok = false;
        } else {
            key[id] = k;
            len[id] = klen;
            total += klen;
        }
    }
    if (ok) {
        bpe->bytes = xmalloc(total + 1);
        bpe->offset = xmalloc((count + 1) * sizeof(*bpe->offset));
        map->mask = pow2_at_least(2 * count) - 1;
        map->str = xcalloc(map->mask + 1, sizeof(*map->str));
        map->len = xcalloc(map->mask + 1, sizeof(*map->len));
        map->id = xcalloc(map->mask + 1, sizeof(*map->id));
        size_t off = 0;
        for (size_t id = 0; id < count && ok; id++) {
            size_t n = 0;
            bpe->offset[id] = off;
            if (!token_to_bytes(key[id], len[id], unicode_to_byte, bpe->bytes + off, &n)) {
                char q[JSON_QUOTED_CAP];
                error_set(err, errlen, "token %zu (%s) has a character outside GPT-2's byte alphabet",
                          id, json_quoted(q, key[id], len[id]));
                ok = false;
            }
            off += n;
            size_t h = fnv1a(key[id], len[id]) & map->mask;
            while (map->str[h]) h = (h + 1) & map->mask;
            map->str[h] = key[id];
            map->len[h] = len[id];
            map->id[h] = (int32_t)id;
        }
        bpe->offset[count] = off;
    }
    free(key);
    free(len);
    return ok;
}

/* Each byte's one-character token must exist: it is where every pre-token starts. */
static bool find_byte_tokens(struct gpt2_bpe *bpe, const struct vocab_map *map, char *err, size_t errlen)
{
    for (unsigned b = 0; b < 256; b++) {
        char u[4];
        uint32_t cp = gpt2_byte_to_unicode((uint8_t)b);
        size_t n = 1;
        if (cp < 0x80) u[0] = (char)cp;
        else {
            u[0] = (char)(0xC0 | (cp >> 6));
            u[1] = (char)(0x80 | (cp & 0x3F));
            n = 2;
        }
        bpe->byte_id[b] = vocab_map_get(map, u, n);
        if (bpe->byte_id[b] < 0) {
            error_set(err, errlen, "no token for byte 0x%02x (\"%.*s\"); a byte-level BPE vocabulary has all 256", b,
                    (int)n, u);
            return false;
        }
    }
    bpe->eod = vocab_map_get(map, GPT2_EOD_TEXT, strlen(GPT2_EOD_TEXT));
    return true;
}

/* One merges.txt line "left right": both halves and their concatenation must be tokens. */
static bool load_merge_line(struct gpt2_bpe *bpe, const struct vocab_map *map, const char *line, size_t n,
                            int32_t rank, size_t lineno, char **buf, size_t *bufcap, char *err, size_t errlen)
{
    const char *sp = memchr(line, ' ', n);
    if (!sp || sp == line || sp + 1 == line + n || memchr(sp + 1, ' ', (size_t)(line + n - sp - 1))) {
        error_set(err, errlen, "line %zu: \"%.*s\" is not two tokens separated by one space", lineno,
                (int)(n < 60 ? n : 60), line);
        return false;
    }
    size_t ln = (size_t)(sp - line), rn = n - ln - 1;
    if (ln + rn > *bufcap) {
        *bufcap = 2 * (ln + rn);
        *buf = xrealloc(*buf, *bufcap);
    }
    memcpy(*buf, line, ln);
    memcpy(*buf + ln, sp + 1, rn);
    int32_t left = vocab_map_get(map, line, ln), right = vocab_map_get(map, sp + 1, rn);
    int32_t merged = vocab_map_get(map, *buf, ln + rn);
    if (left < 0 || right < 0 || merged < 0) {
        error_set(err, errlen, "line %zu: \"%.*s\": %s is not in the vocabulary", lineno, (int)(n < 60 ? n : 60), line,
                left < 0 ? "the left token" : right < 0 ? "the right token" : "the merged token");
        return false;
    }
    merge_insert(bpe, left, right, rank, merged);
    return true;
}

static bool load_merges(struct gpt2_bpe *bpe, const struct vocab_map *map, const char *text, size_t len, char *err,
                        size_t errlen)
{
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    bpe->merge_mask = pow2_at_least(2 * lines) - 1;
    bpe->merges = xmalloc((bpe->merge_mask + 1) * sizeof(*bpe->merges));
    for (size_t i = 0; i <= bpe->merge_mask; i++) bpe->merges[i].key = MERGE_EMPTY;

    char *buf = NULL;
    size_t bufcap = 0, lineno = 0;
    int32_t rank = 0;
    bool ok = true;
    for (size_t pos = 0; pos < len && ok;) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len, n = end - pos;
        lineno++;
        if (n > 0 && text[pos + n - 1] == '\r') n--;
        bool header = lineno == 1 && n >= 8 && memcmp(text + pos, "#version", 8) == 0;
        if (n > 0 && !header) ok = load_merge_line(bpe, map, text + pos, n, rank++, lineno, &buf, &bufcap, err, errlen);
        pos = end + 1;
    }
    free(buf);
    return ok;
}

struct gpt2_bpe *gpt2_bpe_create(const char *vocab_json, size_t vocab_len, const char *merges, size_t merges_len,
                                 char *err, size_t errlen)
{
    char why[256];
    struct json_doc *doc = json_parse(vocab_json, vocab_len, why, sizeof(why));
    if (!doc) {
        error_set(err, errlen, "vocabulary: %s", why);
        return NULL;
    }
    struct gpt2_bpe *bpe = xcalloc(1, sizeof(*bpe));
    struct vocab_map map = {0};
    bool ok = load_vocab(bpe, json_root(doc), &map, why, sizeof(why));
    if (!ok) error_set(err, errlen, "vocabulary: %s", why);
    if (ok && !(ok = find_byte_tokens(bpe, &map, why, sizeof(why)))) error_set(err, errlen, "vocabulary: %s", why);
    if (ok && !(ok = load_merges(bpe, &map, merges, merges_len, why, sizeof(why))))
        error_set(err, errlen, "merges: %s", why);
    free(map.str);
    free(map.len);
    free(map.id);
    json_free(doc);
    if (!ok) {
        gpt2_bpe_free(bpe);
        return NULL;
    }
    return bpe;
}

/* Reads a whole file; NULL with "<path>: <why>" in err. */
static char *read_whole_file(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        error_set(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 20, n = 0;
    char *buf = xmalloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) buf = xrealloc(buf, cap *= 2);
    }
    bool failed = ferror(f);
    fclose(f);
    if (failed) {
        error_set(err, errlen, "%s: read error", path);
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

struct gpt2_bpe *gpt2_bpe_load(const char *vocab_path, const char *merges_path, char *err, size_t errlen)
{
    size_t vlen, mlen;
    char *vocab = read_whole_file(vocab_path, &vlen, err, errlen);
    if (!vocab) return NULL;
    char *merges = read_whole_file(merges_path, &mlen, err, errlen);
    if (!merges) {
        free(vocab);
        return NULL;
    }
    char why[512];
    struct gpt2_bpe *bpe = gpt2_bpe_create(vocab, vlen, merges, mlen, why, sizeof(why));
    if (!bpe) error_set(err, errlen, "%s", why);
    free(vocab);
    free(merges);
    return bpe;
}

void gpt2_bpe_free(struct gpt2_bpe *bpe)
{
    if (!bpe) return;
    free(bpe->bytes);
    free(bpe->offset);
    free(bpe->merges);
    free(bpe);
}

int32_t gpt2_bpe_vocab_size(const struct gpt2_bpe *bpe) { return bpe->vocab_size; }
int32_t gpt2_bpe_eod(const struct gpt2_bpe *bpe) { return bpe->eod; }
size_t gpt2_bpe_merge_count(const struct gpt2_bpe *bpe) { return bpe->n_merges; }

const char *gpt2_bpe_token_bytes(const struct gpt2_bpe *bpe, int32_t id, size_t *len)
{
    if (id < 0 || id >= bpe->vocab_size) return NULL;
    *len = bpe->offset[id + 1] - bpe->offset[id];
    return bpe->bytes + bpe->offset[id];
}

/* ---- encoding ---- */

struct gpt2_bpe_scratch *gpt2_bpe_scratch_create(void)
{
    struct gpt2_bpe_scratch *s = xcalloc(1, sizeof(*s));
    s->cache = xcalloc(CACHE_SLOTS, sizeof(*s->cache));
    return s;
}

static void scratch_release_work(struct gpt2_bpe_scratch *s)
{
    free(s->id);
    free(s->prev);
    free(s->next);
    free(s->heap);
}

void gpt2_bpe_scratch_free(struct gpt2_bpe_scratch *s)
{
    if (!s) return;
    scratch_release_work(s);
    free(s->cache);
    free(s);
}

static void scratch_reserve(struct gpt2_bpe_scratch *s, size_t n)
{
    if (n <= s->cap) return;
    size_t cap = s->cap ? s->cap : 64;
    while (cap < n) cap *= 2;
    s->id = xrealloc(s->id, cap * sizeof(*s->id));
    s->prev = xrealloc(s->prev, cap * sizeof(*s->prev));
    s->next = xrealloc(s->next, cap * sizeof(*s->next));
    /* n - 1 initial pairs, and each of at most n - 1 merges adds two */
    s->heap = xrealloc(s->heap, 3 * cap * sizeof(*s->heap));
    s->cap = cap;
}

/* The heap orders candidate merges by rank, then position: the lowest-ranked pair first and, for
 * one pair occurring several times, left to right, as GPT-2's bpe() merges them. */
static bool heap_less(const struct heap_item *a, const struct heap_item *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(struct heap_item *h, size_t *n, struct heap_item x)
{
    size_t i = (*n)++;
    while (i > 0 && heap_less(&x, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = x;
}

static struct heap_item heap_pop(struct heap_item *h, size_t *n)
{
    struct heap_item top = h[0], x = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && heap_less(&h[c + 1], &h[c])) c++;
        if (!heap_less(&h[c], &x)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n > 0) h[i] = x;
    return top;
}

static void push_pair(const struct gpt2_bpe *bpe, struct gpt2_bpe_scratch *s, size_t *nheap, int32_t pos)
{
    if (pos < 0 || s->next[pos] < 0) return;
    int32_t left = s->id[pos], right = s->id[s->next[pos]];
    const struct merge_slot *m = merge_find(bpe, left, right);
    if (m) heap_push(s->heap, nheap, (struct heap_item){m->rank, pos, left, right, m->id});
}

/* Merges the bytes of one pre-token. Symbols live at their first byte's position, linked both
 * ways; a heap entry is stale once either symbol has changed, which its ids reveal. Leaves the
 * result as the list starting at position 0. */
static void bpe_merge(const struct gpt2_bpe *bpe, struct gpt2_bpe_scratch *s, const unsigned char *w, size_t n)
{
    scratch_reserve(s, n);
    for (size_t k = 0; k < n; k++) {
        s->id[k] = bpe->byte_id[w[k]];
        s->prev[k] = (int32_t)k - 1;
        s->next[k] = k + 1 < n ? (int32_t)k + 1 : -1;
    }
    size_t nheap = 0;
    for (size_t k = 0; k + 1 < n; k++) push_pair(bpe, s, &nheap, (int32_t)k);
    while (nheap > 0) {
        struct heap_item it = heap_pop(s->heap, &nheap);
        int32_t l = it.pos, r = s->next[l];
        if (s->id[l] != it.left || r < 0 || s->id[r] != it.right) continue;
        s->id[l] = it.merged;
        s->id[r] = -1;
        s->next[l] = s->next[r];
        if (s->next[r] >= 0) s->prev[s->next[r]] = l;
        push_pair(bpe, s, &nheap, s->prev[l]);
        push_pair(bpe, s, &nheap, l);
    }
}

static uint32_t cache_hash(const unsigned char *w, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ w[i]) * 16777619u;
    return h;
}

static void encode_pretoken(const struct gpt2_bpe *bpe, struct gpt2_bpe_scratch *s, const unsigned char *w,
                            size_t n, struct token_ids *out)
{
    if (n == 1) {
        token_ids_push(out, bpe->byte_id[w[0]]);
        return;
    }
    struct cache_slot *slot = NULL;
    if (s->cache && n <= CACHE_KEY_MAX) {
        slot = &s->cache[cache_hash(w, n) & (CACHE_SLOTS - 1)];
        if (slot->key_len == n && memcmp(slot->key, w, n) == 0) {
            for (size_t i = 0; i < slot->n_ids; i++) token_ids_push(out, slot->ids[i]);
            return;
        }
    }
    bpe_merge(bpe, s, w, n);
    size_t first = out->len;
    for (int32_t k = 0; k >= 0; k = s->next[k]) token_ids_push(out, s->id[k]);
    size_t count = out->len - first;
    if (slot && count <= CACHE_IDS_MAX) {
        slot->key_len = (uint8_t)n;
        slot->n_ids = (uint8_t)count;
        memcpy(slot->key, w, n);
        memcpy(slot->ids, out->ids + first, count * sizeof(int32_t));
    }
}

static void encode_ordinary(const struct gpt2_bpe *bpe, struct gpt2_bpe_scratch *s, const char *text, size_t len,
                            struct token_ids *out)
{
    for (size_t pos = 0; pos < len;) {
        size_t end = gpt2_pretokenize_next(text, len, pos);
        encode_pretoken(bpe, s, (const unsigned char *)text + pos, end - pos, out);
        pos = end;
    }
}

int gpt2_bpe_encode(const struct gpt2_bpe *bpe, struct gpt2_bpe_scratch *scratch, const char *text, size_t len,
                    bool allow_special, struct token_ids *out, char *err, size_t errlen)
{
    size_t valid = utf8_valid_prefix((const unsigned char *)text, len);
    if (valid != len) {
        error_set(err, errlen, "invalid UTF-8 at byte %zu", valid);
        return -1;
    }
    struct gpt2_bpe_scratch local = {0};
    struct gpt2_bpe_scratch *s = scratch ? scratch : &local;
    size_t pos = 0;
    if (allow_special && bpe->eod >= 0) {
        const size_t special_len = strlen(GPT2_EOD_TEXT);
        const char *hit;
        while ((hit = memmem(text + pos, len - pos, GPT2_EOD_TEXT, special_len))) {
            encode_ordinary(bpe, s, text + pos, (size_t)(hit - text) - pos, out);
            token_ids_push(out, bpe->eod);
            pos = (size_t)(hit - text) + special_len;
        }
    }
    encode_ordinary(bpe, s, text + pos, len - pos, out);
    if (!scratch) scratch_release_work(&local);
    return 0;
}
