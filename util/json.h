/* A small JSON parser (RFC 8259) for config.json, safetensors headers, vocab.json, checkpoint
 * metadata and JSONL documents. Parses a whole text into a tree owned by one arena;
 * strings come back decoded to UTF-8 with their byte length (they may hold NUL bytes). */
#ifndef MEGATRON_UTIL_JSON_H
#define MEGATRON_UTIL_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum json_type { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT };

struct json_value;

/* Parses `len` bytes of `text` (need not be NUL-terminated). On success returns the root, owned by
 * the returned document, and NULL on failure, with a one-line reason naming the byte offset
 * written into err (e.g. "unterminated string at byte 17"). Rejects invalid UTF-8 in strings,
 * unescaped control characters, trailing garbage, and nesting deeper than 512. */
struct json_doc *json_parse(const char *text, size_t len, char *err, size_t errlen);
const struct json_value *json_root(const struct json_doc *doc);
void json_free(struct json_doc *doc);

enum json_type json_type(const struct json_value *v);
bool json_bool(const struct json_value *v);          /* false unless JSON_BOOL true */
double json_number(const struct json_value *v);      /* NAN unless JSON_NUMBER */
/* True when v is a number that is an integer exactly representable in int64; stores it in *out. */
bool json_int64(const struct json_value *v, int64_t *out);
const char *json_string(const struct json_value *v, size_t *len); /* NULL unless JSON_STRING */

/* Arrays and objects: number of elements or members (0 for other types). */
size_t json_count(const struct json_value *v);
const struct json_value *json_at(const struct json_value *arr, size_t i); /* NULL if out of range */
/* Object members keep file order. json_key returns the i-th key (NUL-terminated, len optional). */
const char *json_key(const struct json_value *obj, size_t i, size_t *len);
const struct json_value *json_member(const struct json_value *obj, size_t i);
/* Looks a key up (first match); NULL when absent or obj is not an object. */
const struct json_value *json_get(const struct json_value *obj, const char *key);

/* Appends s (len bytes) to out as a JSON string literal with quotes, escaping as needed.
 * Returns the number of bytes written, or the number needed if cap is too small. */
size_t json_escape(char *out, size_t cap, const char *s, size_t len);

#endif
