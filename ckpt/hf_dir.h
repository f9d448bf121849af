/* A Hugging Face model directory on disk: config.json plus model.safetensors, or shards
 * model-00001-of-0000N.safetensors listed in model.safetensors.index.json ({"metadata":
 * {"total_size": bytes}, "weight_map": {tensor name: file}}), as transformers' save_pretrained
 * writes them. */
#ifndef MEGATRON_CKPT_HF_DIR_H
#define MEGATRON_CKPT_HF_DIR_H

#include <stddef.h>
#include <stdint.h>

#include "ckpt/safetensors.h"

/* save_pretrained's default max_shard_size, "5GB". */
#define HF_DIR_MAX_SHARD_BYTES (5000ull * 1000 * 1000)

struct hf_dir {
    struct st_file **files; /* the safetensors files, mapped and validated */
    size_t nfiles;
    char *config_text;      /* config.json, NUL-terminated */
    size_t config_len;
};

/* Opens dir: config.json, and the index's shards (every tensor it lists must be in its file) or
 * model.safetensors. 0, or -1 with a one-line err. */
int hf_dir_open(const char *dir, struct hf_dir *d, char *err, size_t errlen);
void hf_dir_close(struct hf_dir *d);

/* Writes config_text and tensors t[0..n) into dir (created when missing): one model.safetensors
 * when they fit in max_shard_bytes, else shards in the given order plus the index. Each file is
 * written atomically and the other layout's leftovers are removed; on failure the files this call
 * wrote are removed again. 0, or -1 with err. */
int hf_dir_write(const char *dir, const struct st_tensor *t, size_t n, const char *config_text,
                 uint64_t max_shard_bytes, char *err, size_t errlen);

#endif
