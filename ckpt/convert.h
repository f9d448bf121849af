/* `megatron convert`: Hugging Face <-> our checkpoints for GPT-2 and LLaMA-style models.
 *   --load-hf DIR --save CKPT   config.json + model.safetensors (or sharded with an index) ->
 *                               a release checkpoint (weights only, in the HF dtype), printing
 *                               the `megatron pretrain` flags that build the same model
 *   --load CKPT --save-hf DIR   the latest checkpoint of CKPT (or its release) -> config.json
 *                               (the original one when the checkpoint came from HF) +
 *                               model.safetensors (shards + index above 5 GB)
 * HF -> ours -> HF returns every tensor bit for bit. */
#ifndef MEGATRON_CKPT_CONVERT_H
#define MEGATRON_CKPT_CONVERT_H

#include <stdint.h>
#include <stdio.h>

#include "args.h"

/* Runs the conversion the parsed flags ask for; returns the exit code (dies on a user error). */
int convert_main(const struct config *cfg);

/* The two directions as functions (what convert_main calls; tests call them with a small shard
 * size). Messages and flags go to out. 0, or -1 with a one-line err. */
int convert_hf_to_checkpoint(const char *hf_dir, const char *ckpt_dir, FILE *out, char *err, size_t errlen);
int convert_checkpoint_to_hf(const char *ckpt_dir, const char *hf_dir, uint64_t max_shard_bytes, FILE *out, char *err,
                             size_t errlen);

#endif
