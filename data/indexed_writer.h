/* Writes Megatron's indexed dataset (<prefix>.bin + <prefix>.idx, format in megatron.md section 2)
 * byte for byte as Megatron-Core's IndexedDatasetBuilder does. Both files are written under
 * temporary names next to their final ones and appear only at indexed_writer_commit, so a failed
 * run leaves nothing behind. */
#ifndef MEGATRON_DATA_INDEXED_WRITER_H
#define MEGATRON_DATA_INDEXED_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "data/indexed.h"

struct indexed_writer;

/* DType.optimal_dtype(vocab_size) of indexed_dataset.py: uint16 under 65500 tokens, else int32. */
enum idx_dtype indexed_writer_optimal_dtype(int64_t vocab_size);

/* Creates the temporary files for <prefix>.bin/.idx. dtype: IDX_UINT16 or IDX_INT32.
 * NULL with "<path>: <why>" in err when they cannot be created. */
struct indexed_writer *indexed_writer_open(const char *prefix, enum idx_dtype dtype, char *err, size_t errlen);

/* add_document(ids, lengths): n ids making n_seqs sequences of the given lengths (they sum to n);
 * one document entry even when n_seqs is 0. Fails (-1, err) on a write error or an id the dtype
 * cannot hold. */
int indexed_writer_add_document(struct indexed_writer *w, const int32_t *ids, size_t n, const int32_t *seq_lens,
                                size_t n_seqs, char *err, size_t errlen);

int64_t indexed_writer_sequence_count(const struct indexed_writer *w);
int64_t indexed_writer_document_count(const struct indexed_writer *w); /* documents added */

/* Flushes the .bin and writes the .idx, still under temporary names. 0 or -1 with err. */
int indexed_writer_finish(struct indexed_writer *w, char *err, size_t errlen);
/* Renames both files into place (after finish) and frees w. 0 or -1 with err (w freed either way,
 * its temporary files removed on failure). */
int indexed_writer_commit(struct indexed_writer *w, char *err, size_t errlen);
/* Removes the temporary files and frees w. NULL is a no-op. */
void indexed_writer_abort(struct indexed_writer *w);

#endif
