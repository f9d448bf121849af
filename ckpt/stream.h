/* Streaming checkpoint files through a few fixed buffers while the disk stays busy: what lets a
 * save and a load run at the disk's speed with memory that the model and optimizer already fill.
 *
 * Writing: the caller appends bytes at file offsets (a tensor file's runs in file order); they
 * are staged in page-aligned buffers that I/O threads write while the caller fills the next.
 * Whole pages go to the disk directly (O_DIRECT) where the file system allows it, so a save does
 * not fill the page cache with data nobody reads back, is not throttled as dirty pages pile up,
 * and leaves the page cache to the rest of the machine; bytes of a page the region only partly
 * covers (the header's page, or one shared with another rank's pieces) go through the page cache,
 * so ranks writing neighbouring pieces of one file never write the same page directly.
 *
 * Reading: a list of byte ranges is read ahead in chunks by I/O threads into a ring of buffers
 * and handed to the caller in order. Data read once goes straight from the disk into the buffers
 * (O_DIRECT, several requests in flight), leaving the page cache alone; a range the caller will
 * read again soon is read through the page cache, which keeps it. */
#ifndef MEGATRON_CKPT_STREAM_H
#define MEGATRON_CKPT_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes per staging buffer and read chunk: large enough for the disk's large requests, small
 * enough that a few of them cost little memory. */
#define STREAM_CHUNK_BYTES ((size_t)32 << 20)

/* open(path, O_RDONLY | O_DIRECT), or -1 where the file system does not support it. */
int stream_open_direct(const char *path);

struct stream_writer;

/* Opens path, which exists (its first writer created and sized it), for streaming writes.
 * NULL with a one-line err. */
struct stream_writer *stream_writer_open(const char *path, char *err, size_t errlen);

/* Room for bytes to be written from file offset `at`: returns where to put them and sets *len to
 * at most the requested *len (never less than one element when *len and at are multiples of the
 * element size). An offset that does not continue the bytes staged before starts a new region.
 * stream_writer_commit(w, n) then says n bytes were put there. */
void *stream_writer_reserve(struct stream_writer *w, uint64_t at, size_t *len);
void stream_writer_commit(struct stream_writer *w, size_t n);

/* Whether a write has failed already (the caller may stop early; close reports it). */
bool stream_writer_failed(struct stream_writer *w);

/* Writes what is staged, waits for the I/O threads, fsyncs and closes the file, frees w.
 * 0, or -1 with the first failure in err (which may be NULL). */
int stream_writer_close(struct stream_writer *w, char *err, size_t errlen);

/* A byte range of an open file to read. */
struct stream_range {
    int fd;        /* the file, opened for reading */
    int fd_direct; /* the same file opened with O_DIRECT, or -1 */
    uint64_t offset, nbytes;
    bool cached;   /* read through the page cache (the range is there, or is to stay there) */
    bool keep;     /* leave its pages in the page cache (it will be read again) */
};

/* One chunk handed to the caller: bytes [at, at + len) of range `range`. */
struct stream_chunk {
    const unsigned char *data;
    size_t range;
    uint64_t at;
    size_t len;
};

struct stream_reader;

/* Starts reading ranges[0 .. n) (the array must outlive the reader). */
struct stream_reader *stream_reader_start(const struct stream_range *ranges, size_t n);

/* The next chunk, in range order; the previous chunk's buffer is reused from here on. false at
 * the end, or after a failed read (stream_reader_finish says which). Empty ranges give no chunk. */
bool stream_reader_next(struct stream_reader *r, struct stream_chunk *c);

/* Stops the I/O threads (at the end or early) and frees r. 0, or -1 when a read failed: *range
 * is then the range and err says why. */
int stream_reader_finish(struct stream_reader *r, size_t *range, char *err, size_t errlen);

#endif
