/* struct model_config: what a GPT-family model is, independent of flags and files
 * (Megatron-Core's TransformerConfig plus the GPT model's own settings). Filled from the parsed
 * flags by train.c and from a Hugging Face config.json by ckpt/hf.c. */
#ifndef MEGATRON_MODELS_MODEL_CONFIG_H
#define MEGATRON_MODELS_MODEL_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

enum norm_type { NORM_LAYERNORM, NORM_RMSNORM };
enum position_type { POS_LEARNED_ABSOLUTE, POS_ROPE, POS_NONE };
enum activation_type { ACT_GELU, ACT_GELU_TANH, ACT_SWIGLU };

struct model_config {
    int num_layers;
    int hidden_size;
    int ffn_hidden_size;    /* F: width of fc1's output per branch (SwiGLU's fc1 is 2F wide) */
    int num_attention_heads;
    int num_query_groups;   /* = num_attention_heads without grouped-query attention */
    int kv_channels;        /* head dim d */
    int seq_length;
    int max_position_embeddings;
    int64_t vocab_size;     /* the tokenizer's vocabulary */
    int64_t padded_vocab_size; /* rows of the embedding and output layer */
    enum norm_type normalization;
    enum position_type position_embedding;
    enum activation_type activation;
    bool add_bias_linear;
    bool untie_embeddings_and_output_weights;
    float norm_epsilon;
    float rotary_base;
    float rotary_percent;
    float hidden_dropout;
    float attention_dropout;
    float init_method_std;
    uint64_t seed;
    bool fp16;              /* --fp16: the CUDA backend keeps weights and activations in fp16 (else bf16) */
    bool positions_arange;  /* every sequence's positions are 0 .. seq_length - 1 (no
                               --reset-position-ids): the position embedding's gradient is summed
                               sequence by sequence */
};

/* Megatron's padding: the vocabulary grows to a multiple of divisible_by x TP. */
int64_t model_padded_vocab_size(int64_t vocab_size, int64_t divisible_by, int64_t tp);

/* Parameters of the whole model (all layers, embeddings, output layer). */
int64_t model_num_parameters(const struct model_config *c);

/* Megatron's num_floating_point_operations for one global batch of `samples` sequences
 * (megatron/training/training.py, transformer_flops; see reference section 7). */
double model_flops_per_batch(const struct model_config *c, int64_t samples);

#endif
