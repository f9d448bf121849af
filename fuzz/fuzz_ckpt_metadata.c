/* libFuzzer target for ckpt/metadata: any metadata.json must parse or be refused with a one-line
 * message, never crash or read out of bounds; what parses must satisfy what the loader relies on
 * (shapes in range, plain file names, known roles and dtypes), and writing it out and parsing that
 * again must give the same metadata. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt/metadata.h"
#include "fuzz/fuzz.h"

static void check_invariants(const struct ckpt_meta *m)
{
    REQUIRE(m->model.num_layers >= 1 && m->model.hidden_size >= 1 && m->model.num_query_groups >= 1);
    REQUIRE(m->model.num_attention_heads % m->model.num_query_groups == 0);
    REQUIRE(m->model.padded_vocab_size >= m->model.vocab_size && m->model.vocab_size >= 1);
    for (size_t i = 0; i < m->num_tensors; i++) {
        const struct meta_tensor *t = &m->tensors[i];
        REQUIRE(t->ndim == 1 || t->ndim == 2);
        REQUIRE(t->shape[0] >= 0 && (t->ndim == 1 || t->shape[1] >= 0));
        REQUIRE((unsigned)t->role < NUM_ROLES);
        REQUIRE(t->dtype == ST_F32 || t->dtype == ST_BF16 || t->dtype == ST_F16);
        REQUIRE(strchr(t->file, '/') == NULL && t->file[0] != '.' && t->file[0] != 0);
        REQUIRE(strlen(t->param) <= META_MAX_PARAM_NAME);
    }
}

static void check_round_trip(const struct ckpt_meta *m)
{
    size_t len;
    char *json = meta_to_json(m, &len), err[512];
    struct ckpt_meta back;
    REQUIRE(meta_parse(json, len, &back, err, sizeof err) == 0);
    REQUIRE(back.iteration == m->iteration && back.num_tensors == m->num_tensors);
    REQUIRE(back.has_optimizer == m->has_optimizer && back.has_rng == m->has_rng);
    REQUIRE(memcmp(&back.model, &m->model, sizeof back.model) == 0);
    for (size_t i = 0; i < m->num_tensors; i++) {
        REQUIRE(strcmp(back.tensors[i].name, m->tensors[i].name) == 0);
        REQUIRE(back.tensors[i].checksum == m->tensors[i].checksum);
    }
    REQUIRE((back.hf_config == NULL) == (m->hf_config == NULL));
    if (m->hf_config) REQUIRE(strcmp(back.hf_config, m->hf_config) == 0);
    meta_free(&back);
    free(json);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ckpt_meta m;
    char err[512];
    err[0] = 0;
    if (meta_parse((const char *)data, size, &m, err, sizeof err) != 0) {
        REQUIRE(err[0] != 0 && strchr(err, '\n') == NULL);
        REQUIRE(m.tensors == NULL && m.num_tensors == 0);
        return 0;
    }
    check_invariants(&m);
    check_round_trip(&m);
    meta_free(&m);
    return 0;
}
