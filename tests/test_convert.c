/* `megatron convert`: HF -> checkpoint -> HF returns every tensor bit for bit (single file and
 * sharded with an index), a converted checkpoint loaded through the checkpoint API reproduces the
 * fixture's reference logits, the printed flags build the same model, and models or directories
 * HF cannot hold are refused with one line. Usage: test_convert <fixtures dir> (gpt2_tiny and
 * llama_tiny inside, as fixtures/README.md describes). */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "args.h"
#include "ckpt/ckpt.h"
#include "ckpt/convert.h"
#include "ckpt/dirs.h"
#include "ckpt/hf.h"
#include "ckpt/hf_dir.h"
#include "ckpt/safetensors.h"
#include "train.h"

#define LOGITS_TOL 1e-4 /* the parity tolerance of the foundation issue (relative L2) */

static const char *fixtures = "../shared/fixtures";
static const char *const families[] = {"gpt2_tiny", "llama_tiny"};

static void fixture(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", fixtures, name); }

static char *temp_dir(void)
{
    char *d = strdup("/tmp/test_convert_XXXXXX");
    if (!mkdtemp(d)) fail_msg("mkdtemp: %s", strerror(errno));
    return d;
}

static FILE *quiet(void) { return fopen("/dev/null", "w"); }

static void convert_in(const char *hf, const char *ckpt)
{
    char err[1024];
    FILE *out = quiet();
    if (convert_hf_to_checkpoint(hf, ckpt, out, err, sizeof err)) fail_msg("%s", err);
    fclose(out);
}

static void convert_out(const char *ckpt, const char *hf, uint64_t shard_bytes)
{
    char err[1024];
    FILE *out = quiet();
    if (convert_checkpoint_to_hf(ckpt, hf, shard_bytes, out, err, sizeof err)) fail_msg("%s", err);
    fclose(out);
}

/* Every tensor of a, by name, has the same dtype, shape and bytes in b, and b has no others. */
static void expect_same_tensors(const char *dir_a, const char *dir_b)
{
    struct hf_dir a, b;
    char err[1024];
    if (hf_dir_open(dir_a, &a, err, sizeof err) || hf_dir_open(dir_b, &b, err, sizeof err)) fail_msg("%s", err);
    size_t na = 0, nb = 0;
    for (size_t f = 0; f < a.nfiles; f++) {
        for (size_t i = 0; i < st_count(a.files[f]); i++) {
            const struct st_tensor *x = st_at(a.files[f], i), *y = NULL;
            for (size_t g = 0; g < b.nfiles && !y; g++) y = st_find(b.files[g], x->name);
            if (!y) fail_msg("%s: missing after the round trip", x->name);
            if (x->dtype != y->dtype || x->ndim != y->ndim || x->nbytes != y->nbytes ||
                memcmp(x->shape, y->shape, sizeof x->shape) != 0 || memcmp(x->data, y->data, x->nbytes) != 0)
                fail_msg("%s: differs after the round trip", x->name);
            na++;
        }
    }
    for (size_t g = 0; g < b.nfiles; g++) nb += st_count(b.files[g]);
    assert_int_equal(na, nb);
    assert_string_equal(a.config_text, b.config_text);
    hf_dir_close(&a);
    hf_dir_close(&b);
}

static void test_hf_to_checkpoint_to_hf_is_bitwise(void **state)
{
    (void)state;
    for (size_t k = 0; k < 2; k++) {
        char src[4200], ckpt[4300], out[4300];
        fixture(src, sizeof src, families[k]);
        char *tmp = temp_dir();
        snprintf(ckpt, sizeof ckpt, "%s/ckpt", tmp);
        snprintf(out, sizeof out, "%s/hf", tmp);
        convert_in(src, ckpt);
        convert_out(ckpt, out, HF_DIR_MAX_SHARD_BYTES);
        expect_same_tensors(src, out);
        dirs_remove_tree(tmp);
        free(tmp);
    }
}

/* A bf16 model (as most published LLaMA checkpoints are) comes back as the same bf16 bits. */
static void test_bf16_model_round_trips_bitwise(void **state)
{
    (void)state;
    for (size_t k = 0; k < 2; k++) {
        char src[4200], bf16[4300], ckpt[4300], out[4300], err[1024];
        fixture(src, sizeof src, families[k]);
        char *tmp = temp_dir();
        snprintf(bf16, sizeof bf16, "%s/bf16", tmp);
        snprintf(ckpt, sizeof ckpt, "%s/ckpt", tmp);
        snprintf(out, sizeof out, "%s/out", tmp);
        struct hf_dir d;
        struct model_config c;
        enum hf_family family;
        if (hf_dir_open(src, &d, err, sizeof err) || hf_read_config(src, &c, &family, err, sizeof err)) fail_msg("%s", err);
        struct gpt_model *m = gpt_create(&c, 1, DEV_CPU, NULL, 1);
        if (hf_load_files(m, family, (const struct st_file *const *)d.files, d.nfiles, "", m->weights, err, sizeof err))
            fail_msg("%s", err);
        struct st_tensor *t;
        size_t n;
        hf_export(m, family, m->weights, ST_BF16, &t, &n);
        if (hf_dir_write(bf16, t, n, d.config_text, HF_DIR_MAX_SHARD_BYTES, err, sizeof err)) fail_msg("%s", err);
        hf_free_tensors(t, n);
        gpt_free(m);
        hf_dir_close(&d);
        convert_in(bf16, ckpt);
        struct ckpt_location loc;
        struct ckpt_meta meta;
        if (ckpt_locate(ckpt, &loc, err, sizeof err) || ckpt_read_meta(loc.path, &meta, err, sizeof err)) fail_msg("%s", err);
        assert_int_equal(meta.params_dtype, ST_BF16); /* stored as the model stores it */
        meta_free(&meta);
        convert_out(ckpt, out, HF_DIR_MAX_SHARD_BYTES);
        expect_same_tensors(bf16, out);
        dirs_remove_tree(tmp);
        free(tmp);
    }
}

static void test_sharded_export_and_import_round_trip(void **state)
{
    (void)state;
    for (size_t k = 0; k < 2; k++) {
        char src[4200], ckpt[4300], shards[4300], ckpt2[4300], back[4300], index[4400];
        fixture(src, sizeof src, families[k]);
        char *tmp = temp_dir();
        snprintf(ckpt, sizeof ckpt, "%s/ckpt", tmp);
        snprintf(shards, sizeof shards, "%s/sharded", tmp);
        snprintf(ckpt2, sizeof ckpt2, "%s/ckpt2", tmp);
        snprintf(back, sizeof back, "%s/back", tmp);
        convert_in(src, ckpt);
        convert_out(ckpt, shards, 100000); /* ~0.6 MB of weights: several shards */
        snprintf(index, sizeof index, "%s/model.safetensors.index.json", shards);
        assert_int_equal(access(index, R_OK), 0);
        struct hf_dir d;
        char err[1024];
        if (hf_dir_open(shards, &d, err, sizeof err)) fail_msg("%s", err);
        assert_true(d.nfiles > 2);
        hf_dir_close(&d);
        expect_same_tensors(src, shards);
        convert_in(shards, ckpt2); /* the index is read back */
        convert_out(ckpt2, back, HF_DIR_MAX_SHARD_BYTES);
        expect_same_tensors(src, back);
        dirs_remove_tree(tmp);
        free(tmp);
    }
}

static int32_t *ids(const struct st_file *f, const char *name, int64_t *b, int64_t *t)
{
    const struct st_tensor *x = st_find(f, name);
    if (!x || x->dtype != ST_I32 || x->ndim != 2) fail_msg("reference.safetensors: %s must be int32 [B, T]", name);
    *b = x->shape[0];
    *t = x->shape[1];
    int32_t *v = malloc(x->nbytes);
    memcpy(v, x->data, x->nbytes);
    return v;
}

static double rel_l2(const float *got, const float *want, int64_t n)
{
    double diff = 0.0, ref = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)got[i] - want[i];
        diff += d * d;
        ref += (double)want[i] * want[i];
    }
    return sqrt(diff) / (sqrt(ref) + 1e-30);
}

/* The converted checkpoint, loaded as `pretrain --load` loads it, evaluated on the fixture batch. */
static void test_converted_checkpoint_reproduces_the_fixture_logits(void **state)
{
    (void)state;
    for (size_t k = 0; k < 2; k++) {
        char src[4200], ckpt[4300], path[4300], err[1024];
        fixture(src, sizeof src, families[k]);
        char *tmp = temp_dir();
        snprintf(ckpt, sizeof ckpt, "%s/ckpt", tmp);
        convert_in(src, ckpt);
        snprintf(path, sizeof path, "%s/reference.safetensors", src);
        struct st_file *ref = st_open(path, err, sizeof err);
        if (!ref) fail_msg("%s", err);
        int64_t b, t, b2, t2;
        int32_t *tokens = ids(ref, "tokens", &b, &t), *targets = ids(ref, "targets", &b2, &t2);
        struct ckpt_location loc;
        struct ckpt_meta meta;
        if (ckpt_locate(ckpt, &loc, err, sizeof err) || ckpt_read_meta(loc.path, &meta, err, sizeof err)) fail_msg("%s", err);
        assert_true(loc.release);
        struct model_config mc = meta.model;
        mc.seq_length = (int)t;
        struct gpt_model *m = gpt_create(&mc, b, DEV_CPU, NULL, 1);
        struct ckpt_state s = {m, NULL, ckpt_dtype(meta.params_dtype), 0, 0, 0, NULL, NULL};
        struct ckpt_load_options o = {true, true, false, 0, false};
        struct ckpt_rank r = ckpt_rank_single();
        struct ckpt_loaded loaded;
        if (ckpt_load(ckpt, &s, &o, &r, &loaded, err, sizeof err)) fail_msg("%s", err);
        int64_t n = b * t;
        int32_t *positions = malloc((size_t)n * sizeof(int32_t));
        float *mask = malloc((size_t)n * sizeof(float));
        for (int64_t i = 0; i < n; i++) {
            positions[i] = (int32_t)(i % t);
            mask[i] = 1.0f;
        }
        struct gpt_batch g;
        memset(&g, 0, sizeof g);
        g.batch = b;
        g.tokens = tokens;
        g.labels = targets;
        g.positions = positions;
        g.loss_mask = mask;
        double count;
        gpt_forward(m, &g, &count);
        const struct st_tensor *want = st_find(ref, "logits");
        assert_non_null(want);
        int64_t v = mc.vocab_size;
        assert_int_equal(st_numel(want), n * v);
        float *w = malloc((size_t)(n * v) * sizeof(float));
        assert_int_equal(st_to_f32(want, w, err, sizeof err), 0);
        struct tensor logits = gpt_logits(m);
        assert_int_equal(logits.shape[1], v);
        double e = rel_l2(logits.data, w, n * v);
        if (!(e <= LOGITS_TOL)) fail_msg("%s: logits relative L2 error %.3e > %.0e", families[k], e, LOGITS_TOL);
        free(w);
        free(positions);
        free(mask);
        free(tokens);
        free(targets);
        gpt_free(m);
        meta_free(&meta);
        st_close(ref);
        dirs_remove_tree(tmp);
        free(tmp);
    }
}

/* Splits a line of flags into argv (no quoting: the printed flags have none). */
static int split(char *line, char **argv, int max)
{
    int n = 0;
    for (char *tok = strtok(line, " \n"); tok && n < max; tok = strtok(NULL, " \n")) argv[n++] = tok;
    return n;
}

static void test_printed_flags_build_the_same_model(void **state)
{
    (void)state;
    for (size_t k = 0; k < 2; k++) {
        char src[4200], err[1024];
        struct model_config hf;
        enum hf_family family;
        fixture(src, sizeof src, families[k]);
        if (hf_read_config(src, &hf, &family, err, sizeof err)) fail_msg("%s", err);
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        struct hf_dir d;
        if (hf_dir_open(src, &d, err, sizeof err)) fail_msg("%s", err);
        hf_print_flags(f, &hf, family, d.config_text); /* dropout 0 in the fixtures' config.json */
        hf_dir_close(&d);
        fclose(f);
        char *argv[96], *nl = strchr(text, '\n');
        assert_non_null(nl);
        assert_true(strncmp(nl + 1, "# vocabulary: 512 tokens", 24) == 0);
        *nl = 0; /* the flags are the first line */
        int argc = split(text, argv, 80);
        const char *extra[] = {"--lr", "1e-4", "--micro-batch-size", "1", "--train-iters", "1", "--mock-data",
                               "--tokenizer-type", "NullTokenizer", "--vocab-size", "512"};
        for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) argv[argc++] = (char *)extra[i];
        struct config cfg;
        args_defaults(&cfg, CMD_PRETRAIN);
        if (args_parse(&cfg, CMD_PRETRAIN, argc, argv, err, sizeof err) ||
            args_finalize(&cfg, CMD_PRETRAIN, 1, err, sizeof err))
            fail_msg("%s: %s", families[k], err);
        struct model_config mine;
        train_model_config(&cfg, hf.vocab_size, &mine);
        assert_int_equal(mine.num_layers, hf.num_layers);
        assert_int_equal(mine.hidden_size, hf.hidden_size);
        assert_int_equal(mine.ffn_hidden_size, hf.ffn_hidden_size);
        assert_int_equal(mine.num_attention_heads, hf.num_attention_heads);
        assert_int_equal(mine.num_query_groups, hf.num_query_groups);
        assert_int_equal(mine.kv_channels, hf.kv_channels);
        assert_int_equal(mine.max_position_embeddings, hf.max_position_embeddings);
        assert_int_equal(mine.normalization, hf.normalization);
        assert_int_equal(mine.position_embedding, hf.position_embedding);
        assert_int_equal(mine.activation, hf.activation);
        assert_int_equal(mine.add_bias_linear, hf.add_bias_linear);
        assert_int_equal(mine.untie_embeddings_and_output_weights, hf.untie_embeddings_and_output_weights);
        assert_true(mine.norm_epsilon == hf.norm_epsilon);
        assert_true(mine.rotary_base == hf.rotary_base);
        assert_true(mine.hidden_dropout == 0.0f && mine.attention_dropout == 0.0f);
        args_free(&cfg);
        free(text);
    }
}

static void test_models_and_directories_hf_cannot_hold_are_refused(void **state)
{
    (void)state;
    char err[1024], src[4200], ckpt[4300], out[4300], path[4400];
    struct model_config c;
    enum hf_family family;
    fixture(src, sizeof src, "llama_tiny");
    if (hf_read_config(src, &c, &family, err, sizeof err)) fail_msg("%s", err);
    c.position_embedding = POS_LEARNED_ABSOLUTE; /* RMSNorm + SwiGLU with learned positions: neither */
    assert_int_equal(hf_family_of(&c, &family, err, sizeof err), -1);
    assert_non_null(strstr(err, "neither GPT-2"));
    char *tmp = temp_dir();
    snprintf(ckpt, sizeof ckpt, "%s/ckpt", tmp);
    snprintf(out, sizeof out, "%s/out", tmp);
    FILE *devnull = quiet();
    assert_int_equal(convert_checkpoint_to_hf(ckpt, out, HF_DIR_MAX_SHARD_BYTES, devnull, err, sizeof err), -1);
    assert_non_null(strstr(err, "no checkpoint there"));
    /* an index that names a tensor its shard does not hold */
    convert_in(src, ckpt);
    convert_out(ckpt, out, 100000);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", out);
    FILE *f = fopen(path, "r+");
    assert_non_null(f);
    char text[65536];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = 0;
    char *name = strstr(text, "model.norm.weight");
    assert_non_null(name);
    memcpy(name, "model.norm.weighx", 17);
    rewind(f);
    fwrite(text, 1, n, f);
    fclose(f);
    snprintf(ckpt, sizeof ckpt, "%s/ckpt2", tmp);
    assert_int_equal(convert_hf_to_checkpoint(out, ckpt, devnull, err, sizeof err), -1);
    assert_non_null(strstr(err, "model.norm.weighx"));
    assert_null(strchr(err, '\n'));
    fclose(devnull);
    dirs_remove_tree(tmp);
    free(tmp);
}

/* config.json files that would divide by zero or break the one-line message are refused. */
static void test_malformed_hf_configs_are_refused_in_one_line(void **state)
{
    (void)state;
    const char *bad[][2] = {
        {"{\"model_type\": \"gpt2\", \"n_layer\": 2, \"n_embd\": 64, \"n_head\": 0, "
         "\"n_positions\": 32, \"vocab_size\": 100}", "n_head must be positive"},
        {"{\"model_type\": \"gpt2\", \"n_layer\": 2, \"n_embd\": 64, \"n_head\": 3, "
         "\"n_positions\": 32, \"vocab_size\": 100}", "divide n_embd"},
        {"{\"model_type\": \"gpt2\", \"n_layer\": 2, \"n_embd\": 2000000000, \"n_head\": 1, "
         "\"n_positions\": 32, \"vocab_size\": 100}", "fit 32 bits"},
        {"{\"model_type\": \"llama\", \"num_hidden_layers\": 2, \"hidden_size\": 64, "
         "\"num_attention_heads\": 0, \"max_position_embeddings\": 32, \"vocab_size\": 100, "
         "\"intermediate_size\": 128}", "heads must be positive"},
        {"{\"model_type\": \"gpt\\n2\"}", "model_type \"gpt\\n2\" is not supported"},
        {"{\"model_type\": \"gpt2\", \"n_layer\": 2, \"n_embd\": 64, \"n_head\": 4, "
         "\"n_positions\": 32, \"vocab_size\": 100, \"activation_function\": \"relu\\r\"}",
         "activation_function \"relu\\r\" is not supported"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct model_config c;
        enum hf_family family;
        char err[512] = "";
        assert_int_equal(hf_parse_config(bad[i][0], strlen(bad[i][0]), "config.json", &c, &family,
                                         err, sizeof err), -1);
        if (!strstr(err, bad[i][1])) fail_msg("case %zu: %s", i, err);
        assert_null(strchr(err, '\n'));
        assert_null(strchr(err, '\r'));
    }
}

int main(int argc, char **argv)
{
    if (argc > 1) fixtures = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hf_to_checkpoint_to_hf_is_bitwise),
        cmocka_unit_test(test_bf16_model_round_trips_bitwise),
        cmocka_unit_test(test_sharded_export_and_import_round_trip),
        cmocka_unit_test(test_converted_checkpoint_reproduces_the_fixture_logits),
        cmocka_unit_test(test_printed_flags_build_the_same_model),
        cmocka_unit_test(test_models_and_directories_hf_cannot_hold_are_refused),
        cmocka_unit_test(test_malformed_hf_configs_are_refused_in_one_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
