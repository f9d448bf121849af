/* Hugging Face model directories: see hf_dir.h. */
#include "ckpt/hf_dir.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckpt/dirs.h"
#include "util/error.h"
#include "util/json.h"

#define INDEX_FILE "model.safetensors.index.json"
#define SINGLE_FILE "model.safetensors"
#define PATH_CAP 4400

/* A shard named in an index must be a plain file next to it. */
static bool plain_name(const char *s, size_t len)
{
    if (len == 0 || len > 255 || s[0] == '.' || strlen(s) != len) return false;
    return strchr(s, '/') == NULL && strchr(s, '\\') == NULL;
}

static int open_file(const char *dir, const char *name, struct st_file **out, char *err, size_t errlen)
{
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%.4096s/%s", dir, name);
    *out = st_open(path, err, errlen);
    return *out ? 0 : -1;
}

/* Opens every distinct file of the weight map once and checks each tensor is where it says. */
static int open_index(const char *dir, const char *path, const char *text, size_t len, struct hf_dir *d, char *err,
                      size_t errlen)
{
    char jerr[200];
    struct json_doc *doc = json_parse(text, len, jerr, sizeof jerr);
    const struct json_value *map = doc ? json_get(json_root(doc), "weight_map") : NULL;
    if (!map || json_type(map) != JSON_OBJECT) {
        snprintf(err, errlen, "%s: %s; fix or re-download the file", path, doc ? "no \"weight_map\" object" : jerr);
        json_free(doc);
        return -1;
    }
    size_t n = json_count(map);
    char **names = xcalloc(n ? n : 1, sizeof *names);
    d->files = xcalloc(n ? n : 1, sizeof *d->files);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        size_t flen;
        const char *file = json_string(json_member(map, i), &flen);
        if (!file || !plain_name(file, flen)) {
            char q[JSON_QUOTED_CAP];
            size_t klen;
            const char *key = json_key(map, i, &klen);
            snprintf(err, errlen, "%s: the file of %s is not a plain file name; fix the index",
                     path, json_quoted(q, key, klen));
            rc = -1;
            break;
        }
        size_t k = 0;
        while (k < d->nfiles && strcmp(names[k], file) != 0) k++;
        if (k == d->nfiles) {
            names[k] = xstrdup(file);
            if (open_file(dir, file, &d->files[k], err, errlen)) rc = -1;
            d->nfiles += rc == 0;
        }
        if (rc == 0 && !st_find(d->files[k], json_key(map, i, NULL))) {
            snprintf(err, errlen, "%s: lists tensor %s in %s, which does not hold it; the download is incomplete or mixed",
                     path, json_key(map, i, NULL), file);
            rc = -1;
        }
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    json_free(doc);
    if (rc == 0 && d->nfiles == 0) {
        snprintf(err, errlen, "%s: the weight map is empty; fix or re-download the file", path);
        rc = -1;
    }
    return rc;
}

int hf_dir_open(const char *dir, struct hf_dir *d, char *err, size_t errlen)
{
    char path[PATH_CAP];
    bool missing;
    size_t len;
    memset(d, 0, sizeof *d);
    snprintf(path, sizeof path, "%.4096s/config.json", dir);
    d->config_text = dirs_read_file(path, 16u << 20, &d->config_len, &missing, err, errlen);
    if (!d->config_text) {
        if (missing) snprintf(err, errlen, "%s: missing; %s is not a Hugging Face model directory", path, dir);
        return -1;
    }
    snprintf(path, sizeof path, "%.4096s/%s", dir, INDEX_FILE);
    char *index = dirs_read_file(path, 256u << 20, &len, &missing, err, errlen);
    int rc;
    if (index) {
        rc = open_index(dir, path, index, len, d, err, errlen);
        free(index);
    } else if (!missing) {
        rc = -1;
    } else {
        d->files = xcalloc(1, sizeof *d->files);
        rc = open_file(dir, SINGLE_FILE, &d->files[0], err, errlen);
        d->nfiles = rc == 0;
    }
    if (rc) hf_dir_close(d);
    return rc;
}

void hf_dir_close(struct hf_dir *d)
{
    for (size_t i = 0; i < d->nfiles; i++) st_close(d->files[i]);
    free(d->files);
    free(d->config_text);
    memset(d, 0, sizeof *d);
}

/* ---- writing ---- */

static void remove_written(const char *dir, char **names, int n)
{
    char path[PATH_CAP];
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%.4096s/%s", dir, names[i]);
        unlink(path);
    }
}

static char *index_json(const struct st_tensor *t, size_t n, const int *shard_of, char **names)
{
    char *text = NULL;
    size_t len = 0;
    uint64_t total = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) die_user("out of memory writing %s", INDEX_FILE);
    for (size_t i = 0; i < n; i++) total += t[i].nbytes;
    fprintf(f, "{\n  \"metadata\": {\n    \"total_size\": %" PRIu64 "\n  },\n  \"weight_map\": {", total);
    for (size_t i = 0; i < n; i++) {
        size_t q = json_escape(NULL, 0, t[i].name, strlen(t[i].name));
        char *quoted = xmalloc(q + 1);
        json_escape(quoted, q + 1, t[i].name, strlen(t[i].name));
        fprintf(f, "%s\n    %s: \"%s\"", i ? "," : "", quoted, names[shard_of[i]]);
        free(quoted);
    }
    fprintf(f, "\n  }\n}\n");
    fclose(f);
    return text;
}

/* save_pretrained's split: a new shard when the next tensor would overflow a non-empty one. */
static int plan_shards(const struct st_tensor *t, size_t n, uint64_t max_bytes, int *shard_of)
{
    int shard = 0;
    uint64_t size = 0;
    for (size_t i = 0; i < n; i++) {
        if (size > 0 && size + t[i].nbytes > max_bytes) {
            shard++;
            size = 0;
        }
        shard_of[i] = shard;
        size += t[i].nbytes;
    }
    return shard + 1;
}

static int write_shards(const char *dir, const struct st_tensor *t, size_t n, const int *shard_of, int shards,
                        char **names, int *written, char *err, size_t errlen)
{
    static const char *const format_pt[] = {"format", "pt", NULL}; /* what transformers expects */
    char path[PATH_CAP];
    size_t first = 0;
    for (int s = 0; s < shards; s++) {
        size_t end = first;
        while (end < n && shard_of[end] == s) end++;
        snprintf(path, sizeof path, "%.4096s/%s", dir, names[s]);
        if (st_write(path, t + first, end - first, format_pt, err, errlen)) return -1;
        (*written)++;
        first = end;
    }
    return 0;
}

int hf_dir_write(const char *dir, const struct st_tensor *t, size_t n, const char *config_text,
                 uint64_t max_shard_bytes, char *err, size_t errlen)
{
    char path[PATH_CAP];
    if (dirs_mkdir_p(dir, err, errlen)) return -1;
    int *shard_of = xcalloc(n ? n : 1, sizeof *shard_of);
    int shards = plan_shards(t, n, max_shard_bytes ? max_shard_bytes : HF_DIR_MAX_SHARD_BYTES, shard_of);
    char **names = xcalloc((size_t)shards + 2, sizeof *names);
    for (int s = 0; s < shards; s++) {
        names[s] = xmalloc(64);
        if (shards == 1) snprintf(names[s], 64, SINGLE_FILE);
        else snprintf(names[s], 64, "model-%05d-of-%05d.safetensors", s + 1, shards);
    }
    int written = 0, rc = write_shards(dir, t, n, shard_of, shards, names, &written, err, errlen);
    if (rc == 0 && shards > 1) {
        char *index = index_json(t, n, shard_of, names);
        snprintf(path, sizeof path, "%.4096s/%s", dir, INDEX_FILE);
        rc = dirs_write_atomic(path, index, strlen(index), err, errlen);
        free(index);
        names[shards] = xstrdup(INDEX_FILE);
        written += rc == 0;
    }
    if (rc == 0) {
        snprintf(path, sizeof path, "%.4096s/config.json", dir);
        rc = dirs_write_atomic(path, config_text, strlen(config_text), err, errlen);
    }
    if (rc == 0) { /* the other layout's files would mislead a loader */
        snprintf(path, sizeof path, "%.4096s/%s", dir, shards > 1 ? SINGLE_FILE : INDEX_FILE);
        unlink(path);
    } else {
        remove_written(dir, names, written);
    }
    for (int s = 0; s <= shards; s++) free(names[s]);
    free(names);
    free(shard_of);
    return rc;
}
