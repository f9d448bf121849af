/* File-system steps of an atomic checkpoint save: create a directory tree, remove one, make a
 * rename durable (fsync of the parent), write a small file atomically (temp, fsync, rename), swap
 * two directories in one step, read a small file whole. Every function reports failures as one
 * line "<path>: <what>: <strerror>" in err. */
#ifndef MEGATRON_CKPT_DIRS_H
#define MEGATRON_CKPT_DIRS_H

#include <stdbool.h>
#include <stddef.h>

/* mkdir -p. 0, or -1 with err. */
int dirs_mkdir_p(const char *path, char *err, size_t errlen);

/* rm -rf of a directory tree (symbolic links are removed, never followed); 0 or -1. */
int dirs_remove_tree(const char *path);

/* fsync of a directory, so renames and creations inside it survive a power loss. Best effort:
 * some file systems refuse fsync on a directory. */
void dirs_sync(const char *dir);

/* The directory part of path ("." when there is none), malloc'd. */
char *dirs_parent(const char *path);

/* Writes data to path through path.tmp: write, fsync, rename, fsync of the parent. 0 or -1. */
int dirs_write_atomic(const char *path, const void *data, size_t len, char *err, size_t errlen);

/* Atomically exchanges two existing paths (renameat2 RENAME_EXCHANGE). 0, or -1 with errno
 * (EINVAL/ENOSYS where the file system cannot). */
int dirs_exchange(const char *a, const char *b);

/* Reads a whole regular file of at most max bytes into a NUL-terminated malloc'd buffer.
 * Returns it, or NULL with err; *missing is set when the file does not exist. */
char *dirs_read_file(const char *path, size_t max, size_t *len, bool *missing, char *err, size_t errlen);

bool dirs_is_dir(const char *path);

#endif
