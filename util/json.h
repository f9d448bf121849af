/* A small JSON parser (RFC 8259) for config.json, safetensors headers, vocab.json, checkpoint
 * metadata and JSONL documents. Parses a whole text into a tree owned by one arena;
 * strings come back decoded to UTF-8 with their byte length (they may hold NUL bytes).
 *
 * Strict RFC 8259: only space, tab, LF and CR are whitespace; no comments, trailing commas, NaN,
 * leading zeros, '+' signs or byte-order mark; strings must be valid UTF-8 (no overlongs, no
 * encoded surrogates, nothing above U+10FFFF). \uXXXX escapes decode to UTF-8 and a surrogate
 * pair to its one code point; an unpaired surrogate escape (which has no UTF-8 form) decodes to
 * U+FFFD, so every string handed out is valid UTF-8. Duplicate keys are kept; json_get finds the
 * first. A number whose magnitude overflows a double ("1e400") is an error.
 *
 * Cost: linear time; nodes and strings are bump-allocated in a few doubling blocks (no per-node
 * malloc); GPT-2's 1 MB vocab.json parses in a few milliseconds.
 * A document is immutable once parsed and may be read from several threads; separate documents
 * may be parsed concurrently (no global state; numbers are read in the "C" locale whatever
 * setlocale says). */
#ifndef MEGATRON_UTIL_JSON_H
#define MEGATRON_UTIL_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum json_type { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT };

struct json_value;

/* Parses `len` bytes of `text` (need not be NUL-terminated). On success returns the document
 * (json_root gives its root value) and sets err to ""; on failure returns NULL with a one-line
 * reason ending in the 0-based byte offset written into err (e.g. "unterminated string at byte
 * 17", "invalid UTF-8 in string at byte 40"). Rejects invalid UTF-8 in strings, unescaped control
 * characters, trailing garbage, and nesting deeper than 512 arrays/objects. err may be NULL. */
struct json_doc *json_parse(const char *text, size_t len, char *err, size_t errlen);
const struct json_value *json_root(const struct json_doc *doc);
void json_free(struct json_doc *doc); /* frees every value and string of the document; NULL is ok */

enum json_type json_type(const struct json_value *v);
bool json_bool(const struct json_value *v);          /* false unless JSON_BOOL true */
double json_number(const struct json_value *v);      /* NAN unless JSON_NUMBER */
/* True when v is a number that is an integer exactly representable in int64; stores it in *out.
 * An integer literal is read exactly (9007199254740993 stays odd); "2.0" and "1e3" count too. */
bool json_int64(const struct json_value *v, int64_t *out);
const char *json_string(const struct json_value *v, size_t *len); /* NULL unless JSON_STRING */

/* Arrays and objects: number of elements or members (0 for other types). */
size_t json_count(const struct json_value *v);
const struct json_value *json_at(const struct json_value *arr, size_t i); /* NULL if out of range */
/* Object members keep file order. json_key returns the i-th key (NUL-terminated, len optional). */
const char *json_key(const struct json_value *obj, size_t i, size_t *len);
const struct json_value *json_member(const struct json_value *obj, size_t i);
/* Looks a key up (first match); NULL when absent or obj is not an object. A linear scan: to visit
 * a big object (a 50k-entry vocab) iterate with json_key/json_member, which are O(1). */
const struct json_value *json_get(const struct json_value *obj, const char *key);

/* Writes s (len bytes) to out as a JSON string literal with quotes: '"', '\\' and control
 * characters are escaped (\n, \t, ... or \u00XX), valid UTF-8 passes through unchanged, and each
 * byte that is not part of valid UTF-8 becomes U+FFFD so the output is always valid JSON.
 * Returns the literal's length n (without a NUL). When n <= cap the literal is written, followed
 * by a NUL if n < cap; when n > cap nothing is written (out may be NULL with cap 0 to measure). */
size_t json_escape(char *out, size_t cap, const char *s, size_t len);

/* A string from a file, for a one-line message: s (len bytes; NULL reads as "(missing)") as a
 * JSON literal, its first 40 bytes and "..." when longer, so a newline or control character in it
 * is escaped. Writes into buf (at least JSON_QUOTED_CAP bytes) and returns it. */
#define JSON_QUOTED_CAP 256
const char *json_quoted(char *buf, const char *s, size_t len);

#endif
