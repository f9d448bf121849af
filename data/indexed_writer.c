/* Megatron's IndexedDatasetBuilder in C: streams token arrays into the .bin, keeps sequence lengths
 * and document indices in memory, writes the .idx at the end (megatron/core/datasets/
 * indexed_dataset.py: _IndexWriter.write), then renames both temporary files into place. */
#include "data/indexed_writer.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/error.h"

struct indexed_writer {
    enum idx_dtype dtype;
    char *bin_path, *idx_path, *bin_tmp, *idx_tmp;
    FILE *bin;
    int32_t *lengths; /* sequence_lengths */
    size_t n_lengths, cap_lengths;
    int64_t *documents; /* document_indices, starting with 0 */
    size_t n_documents, cap_documents;
    unsigned char *buf; /* ids converted to dtype */
    size_t cap_buf;
    int finished;
};

enum idx_dtype indexed_writer_optimal_dtype(int64_t vocab_size)
{
    return vocab_size < 65500 ? IDX_UINT16 : IDX_INT32;
}

static char *concat(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = xmalloc(la + lb + 1);
    memcpy(s, a, la);
    memcpy(s + la, b, lb + 1);
    return s;
}

/* "<final>.tmp-<pid>": in the same directory, so the final rename is atomic. */
static char *temp_name(const char *final_path)
{
    char suffix[32];
    snprintf(suffix, sizeof(suffix), ".tmp-%ld", (long)getpid());
    return concat(final_path, suffix);
}

static void push_document(struct indexed_writer *w)
{
    if (w->n_documents == w->cap_documents) {
        w->cap_documents = w->cap_documents ? 2 * w->cap_documents : 1024;
        w->documents = xrealloc(w->documents, w->cap_documents * sizeof(*w->documents));
    }
    w->documents[w->n_documents++] = (int64_t)w->n_lengths;
}

struct indexed_writer *indexed_writer_open(const char *prefix, enum idx_dtype dtype, char *err, size_t errlen)
{
    CHECK(dtype == IDX_UINT16 || dtype == IDX_INT32);
    struct indexed_writer *w = xcalloc(1, sizeof(*w));
    w->dtype = dtype;
    w->bin_path = concat(prefix, ".bin");
    w->idx_path = concat(prefix, ".idx");
    w->bin_tmp = temp_name(w->bin_path);
    w->idx_tmp = temp_name(w->idx_path);
    w->bin = fopen(w->bin_tmp, "wb");
    if (!w->bin) {
        error_set(err, errlen, "%s: cannot create: %s", w->bin_path, strerror(errno));
        indexed_writer_abort(w);
        return NULL;
    }
    setvbuf(w->bin, NULL, _IOFBF, 1 << 20);
    push_document(w);
    return w;
}

int indexed_writer_add_document(struct indexed_writer *w, const int32_t *ids, size_t n, const int32_t *seq_lens,
                                size_t n_seqs, char *err, size_t errlen)
{
    size_t item = idx_dtype_size(w->dtype);
    if (n * item > w->cap_buf) {
        w->cap_buf = n * item * 2;
        w->buf = xrealloc(w->buf, w->cap_buf);
    }
    for (size_t i = 0; i < n; i++) {
        if (w->dtype == IDX_UINT16) {
            if (ids[i] < 0 || ids[i] > UINT16_MAX) {
                error_set(err, errlen, "%s: token id %d does not fit the file's uint16 dtype", w->bin_path, ids[i]);
                return -1;
            }
            uint16_t v = (uint16_t)ids[i];
            memcpy(w->buf + 2 * i, &v, 2); /* little-endian hosts only (x86-64, aarch64) */
        } else {
            memcpy(w->buf + 4 * i, &ids[i], 4);
        }
    }
    if (n && fwrite(w->buf, item, n, w->bin) != n) {
        error_set(err, errlen, "%s: write failed: %s", w->bin_path, strerror(errno));
        return -1;
    }
    size_t total = 0;
    for (size_t s = 0; s < n_seqs; s++) {
        if (w->n_lengths == w->cap_lengths) {
            w->cap_lengths = w->cap_lengths ? 2 * w->cap_lengths : 1024;
            w->lengths = xrealloc(w->lengths, w->cap_lengths * sizeof(*w->lengths));
        }
        w->lengths[w->n_lengths++] = seq_lens[s];
        total += (size_t)seq_lens[s];
    }
    CHECK(total == n);
    push_document(w);
    return 0;
}

int64_t indexed_writer_sequence_count(const struct indexed_writer *w) { return (int64_t)w->n_lengths; }
int64_t indexed_writer_document_count(const struct indexed_writer *w) { return (int64_t)w->n_documents - 1; }

static bool write_all(FILE *f, const void *p, size_t n) { return n == 0 || fwrite(p, 1, n, f) == n; }

/* Header, lengths, byte pointers, document indices: _IndexWriter.__enter__ and .write. */
static bool write_index(const struct indexed_writer *w, FILE *f)
{
    const uint64_t version = 1, s = w->n_lengths, d = w->n_documents;
    const uint8_t code = (uint8_t)w->dtype;
    bool ok = write_all(f, IDX_MAGIC, IDX_MAGIC_LEN) && write_all(f, &version, 8) && write_all(f, &code, 1) &&
              write_all(f, &s, 8) && write_all(f, &d, 8) && write_all(f, w->lengths, s * sizeof(int32_t));
    int64_t ptr = 0, item = (int64_t)idx_dtype_size(w->dtype);
    for (size_t i = 0; i < s && ok; i++) {
        ok = write_all(f, &ptr, 8);
        ptr += w->lengths[i] * item;
    }
    return ok && write_all(f, w->documents, d * sizeof(int64_t));
}

int indexed_writer_finish(struct indexed_writer *w, char *err, size_t errlen)
{
    int rc = fclose(w->bin);
    w->bin = NULL;
    if (rc != 0) {
        error_set(err, errlen, "%s: write failed: %s", w->bin_path, strerror(errno));
        return -1;
    }
    FILE *f = fopen(w->idx_tmp, "wb");
    if (!f) {
        error_set(err, errlen, "%s: cannot create: %s", w->idx_path, strerror(errno));
        return -1;
    }
    bool ok = write_index(w, f);
    if (fclose(f) != 0) ok = false;
    if (!ok) {
        error_set(err, errlen, "%s: write failed: %s", w->idx_path, strerror(errno));
        return -1;
    }
    w->finished = 1;
    return 0;
}

static void writer_free(struct indexed_writer *w)
{
    free(w->bin_path);
    free(w->idx_path);
    free(w->bin_tmp);
    free(w->idx_tmp);
    free(w->lengths);
    free(w->documents);
    free(w->buf);
    free(w);
}

int indexed_writer_commit(struct indexed_writer *w, char *err, size_t errlen)
{
    CHECK(w->finished);
    if (rename(w->bin_tmp, w->bin_path) != 0) {
        error_set(err, errlen, "%s: cannot move into place: %s", w->bin_path, strerror(errno));
        indexed_writer_abort(w);
        return -1;
    }
    if (rename(w->idx_tmp, w->idx_path) != 0) {
        error_set(err, errlen, "%s: cannot move into place: %s", w->idx_path, strerror(errno));
        unlink(w->bin_path); /* a .bin without its .idx is no dataset */
        indexed_writer_abort(w);
        return -1;
    }
    writer_free(w);
    return 0;
}

void indexed_writer_abort(struct indexed_writer *w)
{
    if (!w) return;
    if (w->bin) fclose(w->bin);
    unlink(w->bin_tmp);
    unlink(w->idx_tmp);
    writer_free(w);
}
