/* libFuzzer target for util/json: any input must parse or fail with a message, never crash or
 * read out of bounds; a parsed tree must be consistent, and every string in it (and the input
 * itself) must survive json_escape + json_parse. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/json.h"
#include "fuzz/fuzz.h"

/* json_escape(s) parsed back is a string; equal to s when s is valid UTF-8 (valid_utf8 = 1). */
static void check_escape_round_trip(const char *s, size_t len, int valid_utf8)
{
    size_t need = json_escape(NULL, 0, s, len);
    char *lit = malloc(need + 1);
    REQUIRE(json_escape(lit, need + 1, s, len) == need && lit[need] == '\0');
    char err[256];
    struct json_doc *d = json_parse(lit, need, err, sizeof err);
    REQUIRE(d != NULL);
    size_t back_len;
    const char *back = json_string(json_root(d), &back_len);
    REQUIRE(back != NULL);
    if (valid_utf8) REQUIRE(back_len == len && memcmp(back, s, len) == 0);
    json_free(d);
    free(lit);
}

static void walk(const struct json_value *v)
{
    int64_t i;
    size_t len;
    switch (json_type(v)) {
    case JSON_NUMBER:
        if (json_int64(v, &i)) REQUIRE(json_number(v) == (double)i);
        break;
    case JSON_STRING: {
        const char *s = json_string(v, &len);
        REQUIRE(s != NULL && s[len] == '\0');
        check_escape_round_trip(s, len, 1); /* decoded strings are always valid UTF-8 */
        break;
    }
    case JSON_ARRAY:
        for (size_t k = 0; k < json_count(v); k++) walk(json_at(v, k));
        REQUIRE(json_at(v, json_count(v)) == NULL);
        break;
    case JSON_OBJECT:
        for (size_t k = 0; k < json_count(v); k++) {
            const char *key = json_key(v, k, &len);
            REQUIRE(key != NULL && key[len] == '\0');
            /* json_get finds the first member with this key (only for keys without NUL). */
            if (strlen(key) == len) REQUIRE(json_get(v, key) != NULL);
            walk(json_member(v, k));
        }
        REQUIRE(json_key(v, json_count(v), NULL) == NULL);
        break;
    default:
        REQUIRE(json_count(v) == 0);
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    struct json_doc *d = json_parse((const char *)data, size, err, sizeof err);
    if (d) {
        REQUIRE(err[0] == '\0');
        walk(json_root(d));
        json_free(d);
    } else {
        REQUIRE(err[0] != '\0' && strstr(err, " at byte ") != NULL);
    }
    check_escape_round_trip((const char *)data, size, 0);
    return 0;
}
