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

/* The model a config describes (shape, family flags, padded vocabulary for this tokenizer). */
void train_model_config(const struct config *cfg, int64_t vocab_size, struct model_config *mc);

#endif
