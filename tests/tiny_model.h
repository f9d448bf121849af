/* A tiny GPT-2-style model configuration (2 layers, 4 heads, sequence 8, vocabulary 50 padded to
 * 64) shared by the tests that need a real parameter table but not a particular model. */
#ifndef MEGATRON_TESTS_TINY_MODEL_H
#define MEGATRON_TESTS_TINY_MODEL_H

#include <stdbool.h>
#include <string.h>

#include "models/model_config.h"

static inline struct model_config tiny_config(int hidden, bool bias)
{
    struct model_config c;
    memset(&c, 0, sizeof c);
    c.num_layers = 2;
    c.hidden_size = hidden;
    c.ffn_hidden_size = 4 * hidden;
    c.num_attention_heads = 4;
    c.num_query_groups = 4;
    c.kv_channels = hidden / 4;
    c.seq_length = 8;
    c.max_position_embeddings = 8;
    c.vocab_size = 50;
    c.padded_vocab_size = 64;
    c.normalization = NORM_LAYERNORM;
    c.position_embedding = POS_LEARNED_ABSOLUTE;
    c.activation = ACT_GELU_TANH;
    c.add_bias_linear = bias;
    c.norm_epsilon = 1e-5f;
    c.rotary_base = 10000.0f;
    c.rotary_percent = 1.0f;
    c.init_method_std = 0.02f;
    c.seed = 7;
    return c;
}

#endif
