/* Hugging Face interop for the GPT family: config.json <-> struct model_config, the Megatron flags
 * that build the same model, and one tensor map between HF names/layouts (GPT-2's Conv1D [in, out]
 * with packed q|k|v; LLaMA's separate q/k/v and gate/up projections) and Megatron-Core's names and
 * layouts (linear weights [out, in], qkv grouped per query group, fc1 = [gate; up]). Import and
 * export walk the same map in opposite directions, so HF -> ours -> HF returns every tensor bit
 * for bit. Used by the parity test and by `megatron convert` (directories: ckpt/hf_dir.h). */
#ifndef MEGATRON_CKPT_HF_H
#define MEGATRON_CKPT_HF_H

#include <stddef.h>
#include <stdio.h>

#include "ckpt/safetensors.h"
#include "models/gpt.h"

enum hf_family { HF_GPT2, HF_LLAMA };

/* Reads <dir>/config.json. Fills the shape and family settings of *c (dropout 0, no vocabulary
 * padding: padded_vocab_size = vocab_size, seq_length = max_position_embeddings); the caller sets
 * seed and init. 0, or -1 + err. */
int hf_read_config(const char *dir, struct model_config *c, enum hf_family *family, char *err,
                   size_t errlen);

/* The same from config.json text (path names the file in messages). */
int hf_parse_config(const char *text, size_t len, const char *path, struct model_config *c,
                    enum hf_family *family, char *err, size_t errlen);

/* Which HF family expresses c: GPT-2 (LayerNorm, learned positions, GeLU, biases, tied output) or
 * LLaMA (RMSNorm, RoPE, SwiGLU, no biases). 0, or -1 with what does not fit in err. */
int hf_family_of(const struct model_config *c, enum hf_family *family, char *err, size_t errlen);

/* A config.json for c (malloc'd text); torch_dtype names dtype (F32, BF16 or F16). */
char *hf_config_json(const struct model_config *c, enum hf_family family, enum st_dtype dtype);

/* Prints the `megatron pretrain` flags that build c, one line, then a line on the vocabulary;
 * config_text (may be NULL) supplies the dropout settings. */
void hf_print_flags(FILE *f, const struct model_config *c, enum hf_family family, const char *config_text);

/* Fills dst (a buffer in the model's flat layout, m->numel floats: weights, grads, ...) from the
 * HF tensors named `prefix` + HF name, looked up in files[0..nfiles) (prefix "" for a checkpoint,
 * "grad." or "step3." for a fixture's reference tensors). Every parameter of the model must be
 * found with the right size. Rows of a padded vocabulary beyond the HF vocabulary are left as
 * they are. The model must hold whole tensors (no tensor parallelism). 0, or -1 + err. */
int hf_load_files(const struct gpt_model *m, enum hf_family family, const struct st_file *const *files,
                  size_t nfiles, const char *prefix, float *dst, char *err, size_t errlen);

/* hf_load_files with one file. */
int hf_load_into(const struct gpt_model *m, enum hf_family family, const struct st_file *f,
                 const char *prefix, float *dst, char *err, size_t errlen);

/* The HF tensors of the model's weights src (flat layout) in dtype (F32, BF16 or F16): *out gets
 * a malloc'd array of *n tensors whose names and data are malloc'd (free with hf_free_tensors),
 * sorted by name. Only the real vocabulary rows are exported. */
void hf_export(const struct gpt_model *m, enum hf_family family, const float *src, enum st_dtype dtype,
               struct st_tensor **out, size_t *n);
void hf_free_tensors(struct st_tensor *t, size_t n);

/* The dtype the HF weights are stored in when all of the model's tensors share one of F32, BF16,
 * F16; ST_F32 otherwise. */
enum st_dtype hf_weights_dtype(const struct gpt_model *m, enum hf_family family, const struct st_file *const *files,
                               size_t nfiles);

#endif
