/* Shared between gpt.c (activations, forward, backward) and gpt_params.c (the parameter table);
 * not part of the model's interface. */
#ifndef MEGATRON_MODELS_GPT_INTERNAL_H
#define MEGATRON_MODELS_GPT_INTERNAL_H

#include "models/gpt.h"

int64_t gpt_qkv_width(const struct model_config *c);
int64_t gpt_fc1_width(const struct model_config *c);
/* Fills m->params, m->num_params and m->numel for m->cfg and m->tp. */
void gpt_build_params(struct gpt_model *m);
/* The parts of m's grads buffer a step zeroes (all but the grad_written parameters): count rows
 * (offset, length) in a new array. */
int64_t *gpt_grad_zero_ranges(const struct gpt_model *m, int64_t *count);
/* Binds the layers' views of buffer buf (weights or grads) whose elements are of dtype dt. */
void gpt_bind_views(struct gpt_model *m, void *buf, enum dtype dt, struct embedding_params *emb,
                    struct layer_params *layers, struct norm_params *final, struct tensor *out);

#endif
