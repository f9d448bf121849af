/* On-disk cache of a GPT dataset's index arrays (document, sample and shuffle index), the role of
 * Megatron's <md5>-GPTDataset-<split>-*.npy files: one binary file per dataset split named by a
 * hash of its description, holding that description and a checksum; written atomically (temporary
 * file + rename), so concurrent builders and interrupted runs never leave a half-written cache. */
#ifndef MEGATRON_DATA_INDEX_CACHE_H
#define MEGATRON_DATA_INDEX_CACHE_H

#include <stddef.h>
#include <stdint.h>

struct index_cache_arrays {
    int32_t *document_index;
    int64_t document_len;
    int64_t *sample_index; /* [sample_rows * 2] */
    int64_t sample_rows;
    int64_t *shuffle_index;
    int64_t shuffle_len;
};

/* 64-bit FNV-1a over n bytes, continuing from h (start with INDEX_CACHE_FNV_BASIS). */
#define INDEX_CACHE_FNV_BASIS 0xcbf29ce484222325ULL
uint64_t index_cache_fnv1a(uint64_t h, const void *data, size_t n);

/* "<dir>/<16 hex digits of the description's hash>-<cls>-<split>-<what>"; caller frees. */
char *index_cache_path(const char *dir, const char *description, const char *cls, const char *split,
                       const char *what);

/* Reads a cache file written for exactly this description. Returns 0 with the arrays (caller
 * frees them), 1 when the file does not exist, -1 when it exists but is unreadable, corrupt or
 * for another description (reason in err). */
int index_cache_load(const char *path, const char *description, struct index_cache_arrays *out, char *err,
                     size_t errlen);

/* index_cache_load on a file's bytes already in memory (name for the messages): 0 with the arrays
 * (caller frees them), -1 when they are corrupt or for another description (reason in err). */
int index_cache_parse(const unsigned char *buf, size_t len, const char *description, const char *name,
                      struct index_cache_arrays *out, char *err, size_t errlen);

/* Writes the arrays and the description atomically, creating directories as needed.
 * Returns 0, or -1 with the reason in err (nothing is left behind). */
int index_cache_save(const char *path, const char *description, const struct index_cache_arrays *a, char *err,
                     size_t errlen);

/* Writes a small text file atomically (the human-readable description next to the cache). */
int index_cache_write_text(const char *path, const char *text, char *err, size_t errlen);

void index_cache_arrays_free(struct index_cache_arrays *a);

#endif
