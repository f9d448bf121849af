/* `megatron pretrain`: builds the tokenizer, model, optimizer and data from the parsed config and
 * runs Megatron's training loop (gradient accumulation over micro batches, the optimizer step,
 * the log line every --log-interval, validation every --eval-interval, final valid/test loss). */
#ifndef MEGATRON_TRAIN_H
#define MEGATRON_TRAIN_H

#include <stdio.h>

#include "args.h"
#include "models/model_config.h"

/* Runs pretraining; returns the process exit code. Log lines go to out. */
int pretrain_main(const struct config *cfg, FILE *out);

struct gpt_model;
struct eval_batch;
/* --eval-batch (with --skip-train, one process): the file's batch, checked against the flags before
 * the model is built (one-line errors); then the loaded model's lm loss on it and, when the file
 * holds reference logits, the relative L2 error of ours against them, printed to out. Run frees e.
 * (train_eval_batch.c) */
struct eval_batch *train_eval_batch_open(const struct config *cfg, const struct model_config *mc);
void train_eval_batch_run(struct eval_batch *e, struct gpt_model *m, FILE *out);

/* The model a config describes (shape, family flags, padded vocabulary for this tokenizer). */
void train_model_config(const struct config *cfg, int64_t vocab_size, struct model_config *mc);

#endif
