/* Sizes derived from a model_config: padded vocabulary, parameter count, Megatron's FLOPs. */
#include "models/model_config.h"

int64_t model_padded_vocab_size(int64_t vocab_size, int64_t divisible_by, int64_t tp)
{
    int64_t multiple = divisible_by * tp;
    if (multiple <= 0) return vocab_size;
    return (vocab_size + multiple - 1) / multiple * multiple;
}

int64_t model_num_parameters(const struct model_config *c)
{
    int64_t h = c->hidden_size, nd = (int64_t)c->num_attention_heads * c->kv_channels;
    int64_t qkv = (int64_t)(c->num_attention_heads + 2 * c->num_query_groups) * c->kv_channels;
    int64_t f = c->ffn_hidden_size, f1 = c->activation == ACT_SWIGLU ? 2 * f : f;
    int64_t norm = c->normalization == NORM_LAYERNORM ? 2 * h : h;
    int64_t bias = c->add_bias_linear ? 1 : 0;
    int64_t layer = 2 * norm + qkv * h + bias * qkv + h * nd + bias * h + f1 * h + bias * f1 + h * f + bias * h;
    int64_t total = c->padded_vocab_size * h + (int64_t)c->num_layers * layer + norm;
    if (c->position_embedding == POS_LEARNED_ABSOLUTE) total += (int64_t)c->max_position_embeddings * h;
    if (c->untie_embeddings_and_output_weights) total += c->padded_vocab_size * h;
    return total;
}

/* megatron/training/training.py:num_floating_point_operations, dense transformer branch:
 * 6 x tokens x (MLP + attention projections + logits) + 6 x B s^2 n d L (causal core attention). */
double model_flops_per_batch(const struct model_config *c, int64_t samples)
{
    double s = c->seq_length, h = c->hidden_size, L = c->num_layers;
    double n = c->num_attention_heads, d = c->kv_channels, g = c->num_query_groups;
    double gated = c->activation == ACT_SWIGLU ? 3.0 : 2.0;
    double tokens = (double)samples * s;
    double per_token = h * c->ffn_hidden_size * gated * L + L * (h * (n * d + 2.0 * g * d) + n * d * h) +
                       h * (double)c->padded_vocab_size;
    return tokens * 6.0 * per_token + (double)samples * s * s * 6.0 * n * d * L;
}
