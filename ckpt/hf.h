/* Hugging Face interop for the GPT family: config.json -> struct model_config, and the map between
 * HF tensor names/layouts (GPT-2's Conv1D [in, out] with packed q|k|v; LLaMA's separate q/k/v and
 * gate/up projections) and Megatron-Core's names/layouts (linear weights [out, in], qkv grouped per
 * query group, fc1 = [gate; up]). Used by the parity test and by `megatron convert`. */
#ifndef MEGATRON_CKPT_HF_H
#define MEGATRON_CKPT_HF_H

#include <stddef.h>

#include "ckpt/safetensors.h"
#include "models/gpt.h"

enum hf_family { HF_GPT2, HF_LLAMA };

/* Reads <dir>/config.json. Fills the shape and family settings of *c (dropout 0, no vocabulary
 * padding: padded_vocab_size = vocab_size); the caller sets seed and init. 0, or -1 + err. */
int hf_read_config(const char *dir, struct model_config *c, enum hf_family *family, char *err,
                   size_t errlen);

/* Fills dst (a buffer in the model's flat layout, m->numel floats: weights, grads, ...) from the
 * HF tensors named `prefix` + HF name in f (prefix "" for a checkpoint, "grad." or "step3." for a
 * fixture's reference tensors). Every parameter of the model must be found with the right shape.
 * Rows of a padded vocabulary beyond the HF vocabulary are left as they are. 0, or -1 + err. */
int hf_load_into(const struct gpt_model *m, enum hf_family family, const struct st_file *f,
                 const char *prefix, float *dst, char *err, size_t errlen);

#endif
