/* libFuzzer target for Hugging Face config.json files (ckpt/hf.c:hf_parse_config), which
 * `megatron convert` and a run loading a Hugging Face directory read: any bytes must give a model
 * configuration or be refused with one line, never crash; what is accepted must have the sizes
 * the model builder relies on. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt/hf.h"
#include "fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a private copy, so reads past the end are caught by the sanitizer */
    char *text = malloc(size ? size : 1);
    if (size) memcpy(text, data, size);
    struct model_config c;
    enum hf_family family;
    char err[512] = "";
    if (hf_parse_config(text, size, "config.json", &c, &family, err, sizeof err) == 0) {
        REQUIRE(family == HF_GPT2 || family == HF_LLAMA);
        REQUIRE(c.num_layers >= 1 && c.hidden_size >= 1 && c.num_attention_heads >= 1);
        REQUIRE(c.num_query_groups >= 1 && c.num_attention_heads % c.num_query_groups == 0);
        REQUIRE(c.kv_channels >= 1 && c.ffn_hidden_size >= 1 && c.max_position_embeddings >= 1);
        REQUIRE(c.vocab_size >= 1 && c.padded_vocab_size == c.vocab_size);
    } else {
        REQUIRE(err[0] != '\0' && strchr(err, '\n') == NULL);
    }
    free(text);
    return 0;
}
