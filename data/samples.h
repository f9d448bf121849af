/* `megatron samples`: the samples the trainer would see for the same flags, either dumped as raw
 * little-endian int32 rows of seq-length + 1 tokens (the sample's tokens, then its last label) or
 * printed as text through the tokenizer, so a user can look at what the model is fed. */
#ifndef MEGATRON_DATA_SAMPLES_H
#define MEGATRON_DATA_SAMPLES_H

#include "args.h"

/* Returns the process exit code; errors end the program through die_user. */
int samples_main(const struct config *cfg);

#endif
