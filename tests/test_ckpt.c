/* Checkpoints: sum64 as documented, save/load of every buffer and counter, refusals (checksum,
 * shape, missing tensor, bad tracker) that leave the model untouched, atomicity under SIGKILL at
 * random moments of a save, slices written by two ranks forming the full tensors, another
 * layout (tensor parallel, distributed optimizer, vocabulary padding) loading exactly its pieces. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "ckpt/checksum.h"
#include "ckpt/ckpt.h"
#include "ckpt/dirs.h"
#include "kernels/rng.h"
#include "models/gpt.h"
#include "optim/optimizer.h"
#include "tests/tiny_model.h"

/* ---- fixtures ---- */

struct run {
    struct gpt_model *m;
    struct optimizer *o;
};

static struct run make_run(const struct model_config *c, enum dtype dt, bool dynamic, const struct tp_group *tp,
                           const struct buffer_range *ranges, int nranges)
{
    struct run r;
    struct optimizer_options o;
    char err[256];
    memset(&o, 0, sizeof o);
    r.m = gpt_create(c, 1, DEV_CPU, tp, 1);
    gpt_init_weights(r.m);
    o.type = OPTIMIZER_ADAM;
    o.adam = adam_params_default();
    o.clip_grad = 1.0;
    o.params_dtype = dt;
    if (dynamic) scaler_init_dynamic(&o.scaler, 65536.0, 1.0, 2, 2);
    else scaler_init_constant(&o.scaler, 1.0);
    if (!lr_schedule_init(&o.schedule, 0.0, 1e-2, 1e-3, 4.0, 40, LR_DECAY_COSINE, -1, LR_WSD_EXPONENTIAL, 0.1, 0.1, 40,
                          WD_INCR_CONSTANT, err, sizeof err))
        fail_msg("%s", err);
    struct buffer_range whole = {0, r.m->numel};
    r.o = optimizer_create(r.m, &o, ranges ? ranges : &whole, ranges ? nranges : 1);
    return r;
}

static void free_run(struct run *r)
{
    optimizer_free(r->o);
    gpt_free(r->m);
}

/* Steps on made-up gradients, so moments, main params, step, schedule and scaler all move. */
static void train_steps(struct run *r, int steps, uint64_t salt)
{
    for (int s = 0; s < steps; s++) {
        for (int64_t i = 0; i < r->m->numel; i++)
            r->m->grads[i] = (float)(optimizer_loss_scale(r->o) * 0.01 * rng_normal(salt, (uint64_t)s, (uint64_t)i));
        optimizer_step(r->o, 4);
        memset(r->m->grads, 0, (size_t)r->m->numel * sizeof(float));
    }
}

static struct ckpt_state state_of(struct run *r, enum dtype dt, int64_t iteration)
{
    struct ckpt_state s = {r->m, r->o, dt, iteration, iteration * 4, iteration, NULL, NULL};
    return s;
}

static char *temp_dir(void)
{
    char *d = strdup("/tmp/test_ckpt_XXXXXX");
    if (!mkdtemp(d)) fail_msg("mkdtemp: %s", strerror(errno));
    return d;
}

static void save_or_fail(const char *dir, struct ckpt_state *s, bool optim)
{
    struct ckpt_save_options o = {optim, true, false, 0};
    struct ckpt_rank r = ckpt_rank_single();
    char err[1024];
    if (ckpt_save(dir, s, &o, &r, err, sizeof err)) fail_msg("save: %s", err);
}

static int load_staged(const char *dir, struct ckpt_state *s, bool optim, bool finetune, int64_t stage, char *err,
                       size_t errlen)
{
    struct ckpt_load_options o = {optim, true, finetune, stage, false};
    struct ckpt_rank r = ckpt_rank_single();
    struct ckpt_loaded loaded;
    return ckpt_load(dir, s, &o, &r, &loaded, err, errlen);
}

static int load(const char *dir, struct ckpt_state *s, bool optim, bool finetune, char *err, size_t errlen)
{
    struct ckpt_load_options o = {optim, true, finetune, 0, false};
    struct ckpt_rank r = ckpt_rank_single();
    struct ckpt_loaded loaded;
    return ckpt_load(dir, s, &o, &r, &loaded, err, errlen);
}

static void expect_same(const float *a, const float *b, int64_t n, const char *what)
{
    if (memcmp(a, b, (size_t)n * sizeof(float)) != 0) fail_msg("%s differs", what);
}

/* ---- sum64 ---- */

static void test_sum64_matches_the_documented_definition(void **state)
{
    (void)state;
    /* values from an independent Python implementation of the formula in checksum.h */
    const float f[7] = {0.0f, 1.0f, -2.5f, 3.25f, 1e-3f, -0.0f, 65504.0f};
    assert_true(checksum_sum64(f, 4, 0, 7) == 0xc7c8f6d9b9941cbaull);
    const unsigned char bf[6] = {0x80, 0x3f, 0x00, 0x40, 0xc0, 0x7f};
    assert_true(checksum_sum64(bf, 2, 0, 3) == 0xd5bac5e1d02d1348ull);
    assert_true(checksum_sum64(f + 2, 4, 2, 5) == 0x97bc20d8aaf3a1c2ull);
    char text[23];
    uint64_t back;
    checksum_format(0x0123456789abcdefull, text);
    assert_string_equal(text, "sum64:0123456789abcdef");
    assert_int_equal(checksum_parse(text, &back), 0);
    assert_true(back == 0x0123456789abcdefull);
    assert_int_equal(checksum_parse("sum64:0123", &back), -1);
}

static void test_sum64_of_slices_adds_up_to_the_whole_and_sees_one_flip(void **state)
{
    (void)state;
    enum { N = 200000 };
    float *x = malloc(N * sizeof(float));
    for (int i = 0; i < N; i++) x[i] = (float)rng_normal(3, 4, (uint64_t)i);
    uint64_t whole = checksum_sum64(x, 4, 0, N);
    uint64_t parts = checksum_sum64(x, 4, 0, 70001) + checksum_sum64(x + 70001, 4, 70001, N - 70001);
    assert_true(whole == parts);
    x[12345] = nextafterf(x[12345], 1e9f);
    assert_true(checksum_sum64(x, 4, 0, N) != whole);
    free(x);
}

/* The definition, one element at a time (what the vectorised path must agree with). */
static uint64_t sum64_by_definition(const void *data, size_t itemsize, uint64_t first, int64_t n)
{
    const unsigned char *p = data;
    uint64_t s = 0;
    for (int64_t i = 0; i < n; i++) {
        uint64_t bits = 0;
        for (size_t k = 0; k < itemsize; k++) bits |= (uint64_t)p[(size_t)i * itemsize + k] << (8 * k);
        s += rng_mix64(rng_mix64(first + (uint64_t)i + 0x9e3779b97f4a7c15ull) ^ bits);
    }
    return s;
}

static void test_sum64_fast_paths_match_the_definition(void **state)
{
    (void)state;
    enum { N = 300007 };
    uint32_t *x = malloc(N * sizeof *x);
    for (int i = 0; i < N; i++) x[i] = (uint32_t)rng_bits(5, 6, (uint64_t)i);
    const int64_t starts[] = {0, 1, 7, 8, 4093, 70001}, lengths[] = {0, 1, 7, 8, 9, 65536, 65537, 200003};
    for (size_t a = 0; a < sizeof starts / sizeof starts[0]; a++)
        for (size_t b = 0; b < sizeof lengths / sizeof lengths[0]; b++) {
            int64_t at = starts[a], n = lengths[b];
            uint64_t first = (uint64_t)at * 3 + 11; /* any full-tensor index */
            assert_true(checksum_sum64(x + at, 4, (int64_t)first, n) == sum64_by_definition(x + at, 4, first, n));
            const unsigned char *h = (const unsigned char *)x + 2 * at + 1; /* bf16 at an odd address */
            assert_true(checksum_sum64(h, 2, (int64_t)first, n) == sum64_by_definition(h, 2, first, n));
        }
    free(x);
}

/* ---- save and load ---- */

static void check_round_trip(enum dtype dt, bool dynamic)
{
    struct model_config c = tiny_config(32, true);
    struct run a = make_run(&c, dt, dynamic, NULL, NULL, 0);
    train_steps(&a, 5, 11);
    char *dir = temp_dir();
    struct ckpt_state sa = state_of(&a, dt, 5);
    save_or_fail(dir, &sa, true);

    struct model_config c2 = c;
    c2.seed = 99; /* other initial weights, and the checkpoint's seed must win */
    struct run b = make_run(&c2, dt, dynamic, NULL, NULL, 0);
    struct ckpt_state sb = state_of(&b, dt, 0);
    sb.consumed_train_samples = sb.consumed_valid_samples = 0;
    char err[1024];
    if (load(dir, &sb, true, false, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(sb.iteration, 5);
    assert_int_equal(sb.consumed_train_samples, 20);
    assert_int_equal(sb.consumed_valid_samples, 5);
    expect_same(a.m->weights, b.m->weights, a.m->numel, "weights");
    if (dt != DT_F32) expect_same(a.o->main_params, b.o->main_params, a.o->owned, "main params");
    expect_same(a.o->exp_avg, b.o->exp_avg, a.o->owned, "exp_avg");
    expect_same(a.o->exp_avg_sq, b.o->exp_avg_sq, a.o->owned, "exp_avg_sq");
    assert_int_equal(a.o->step, b.o->step);
    assert_int_equal(a.o->schedule_samples, b.o->schedule_samples);
    assert_true(a.o->opt.scaler.scale == b.o->opt.scaler.scale);
    assert_int_equal(a.o->opt.scaler.growth_tracker, b.o->opt.scaler.growth_tracker);
    assert_int_equal(a.o->opt.scaler.hysteresis_tracker, b.o->opt.scaler.hysteresis_tracker);
    assert_int_equal(b.m->cfg.seed, 7);
    /* one more identical step on both stays identical */
    train_steps(&a, 1, 12);
    train_steps(&b, 1, 12);
    expect_same(a.m->weights, b.m->weights, a.m->numel, "weights after a step");
    dirs_remove_tree(dir);
    free(dir);
    free_run(&a);
    free_run(&b);
}

static void test_save_then_load_restores_every_buffer_fp32(void **state)
{
    (void)state;
    check_round_trip(DT_F32, false);
}

static void test_save_then_load_restores_every_buffer_bf16(void **state)
{
    (void)state;
    check_round_trip(DT_BF16, false);
}

static void test_save_then_load_restores_loss_scaler_fp16(void **state)
{
    (void)state;
    check_round_trip(DT_F16, true);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("%s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc(*len + 1);
    if (fread(buf, 1, *len, f) != *len) fail_msg("%s: short read", path);
    fclose(f);
    return buf;
}

static void expect_same_file(const char *a_dir, const char *b_dir, const char *name)
{
    char a[4300], b[4300];
    size_t la, lb;
    snprintf(a, sizeof a, "%s/iter_0000005/%s", a_dir, name);
    snprintf(b, sizeof b, "%s/iter_0000005/%s", b_dir, name);
    char *x = slurp(a, &la), *y = slurp(b, &lb);
    if (la != lb || memcmp(x, y, la) != 0) fail_msg("%s differs", name);
    free(x);
    free(y);
}

/* The path device memory takes (chunks through one host buffer, here of a few elements so chunks
 * cut through rows and tensors) writes the bytes the direct path writes and reads them back. */
static void test_staging_through_a_host_buffer_writes_and_reads_the_same_bytes(void **state)
{
    (void)state;
    struct model_config c = tiny_config(32, true);
    struct run a = make_run(&c, DT_BF16, false, NULL, NULL, 0);
    train_steps(&a, 5, 11);
    char *direct = temp_dir(), *staged = temp_dir(), err[1024];
    struct ckpt_state sa = state_of(&a, DT_BF16, 5);
    struct ckpt_rank r = ckpt_rank_single();
    struct ckpt_save_options plain = {true, true, false, 0}, chunked = {true, true, false, 7};
    if (ckpt_save(direct, &sa, &plain, &r, err, sizeof err)) fail_msg("%s", err);
    if (ckpt_save(staged, &sa, &chunked, &r, err, sizeof err)) fail_msg("%s", err);
    expect_same_file(direct, staged, CKPT_MODEL_FILE);
    expect_same_file(direct, staged, CKPT_OPTIM_FILE);
    expect_same_file(direct, staged, CKPT_META_FILE);

    struct run b = make_run(&c, DT_BF16, false, NULL, NULL, 0);
    struct ckpt_state sb = state_of(&b, DT_BF16, 0);
    if (load_staged(staged, &sb, true, false, 5, err, sizeof err)) fail_msg("%s", err);
    expect_same(a.m->weights, b.m->weights, a.m->numel, "weights");
    expect_same(a.o->main_params, b.o->main_params, a.o->owned, "main params");
    expect_same(a.o->exp_avg, b.o->exp_avg, a.o->owned, "exp_avg");
    expect_same(a.o->exp_avg_sq, b.o->exp_avg_sq, a.o->owned, "exp_avg_sq");
    assert_int_equal(sb.iteration, 5);
    dirs_remove_tree(direct);
    dirs_remove_tree(staged);
    free(direct);
    free(staged);
    free_run(&a);
    free_run(&b);
}

static void test_finetune_and_no_load_optim_take_weights_only(void **state)
{
    (void)state;
    struct model_config c = tiny_config(32, true);
    struct run a = make_run(&c, DT_BF16, false, NULL, NULL, 0);
    train_steps(&a, 3, 5);
    char *dir = temp_dir(), err[1024];
    struct ckpt_state sa = state_of(&a, DT_BF16, 3);
    save_or_fail(dir, &sa, true);
    for (int finetune = 0; finetune < 2; finetune++) {
        struct run b = make_run(&c, DT_BF16, false, NULL, NULL, 0);
        struct ckpt_state sb = state_of(&b, DT_BF16, 0);
        if (load(dir, &sb, finetune ? true : false, finetune, err, sizeof err)) fail_msg("%s", err);
        assert_int_equal(sb.iteration, finetune ? 0 : 3);
        assert_int_equal(sb.consumed_train_samples, finetune ? 0 : 12);
        expect_same(a.m->weights, b.m->weights, a.m->numel, "weights");
        for (int64_t i = 0; i < b.o->owned; i++) {
            assert_true(b.o->main_params[i] == b.m->weights[i]); /* main params from the bf16 weights */
            assert_true(b.o->exp_avg[i] == 0.0f);
        }
        assert_int_equal(b.o->step, 0);
        free_run(&b);
    }
    dirs_remove_tree(dir);
    free(dir);
    free_run(&a);
}

static void test_missing_or_empty_directory_holds_no_checkpoint(void **state)
{
    (void)state;
    struct model_config c = tiny_config(32, true);
    struct run a = make_run(&c, DT_F32, false, NULL, NULL, 0);
    char *dir = temp_dir(), err[1024], missing[4200];
    snprintf(missing, sizeof missing, "%s/nothing-here", dir);
    struct ckpt_state s = state_of(&a, DT_F32, 0);
    struct ckpt_loaded loaded;
    struct ckpt_load_options o = {true, true, false, 0, false};
    struct ckpt_rank r = ckpt_rank_single();
    assert_int_equal(ckpt_load(dir, &s, &o, &r, &loaded, err, sizeof err), 0);
    assert_false(loaded.where.found);
    assert_int_equal(ckpt_load(missing, &s, &o, &r, &loaded, err, sizeof err), 0);
    assert_false(loaded.where.found);
    dirs_remove_tree(dir);
    free(dir);
    free_run(&a);
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_tracker_naming_nothing_valid_is_refused(void **state)
{
    (void)state;
    char *dir = temp_dir(), err[1024];
    struct ckpt_location loc;
    write_text(dir, CKPT_TRACKER, "twenty\n");
    assert_int_equal(ckpt_locate(dir, &loc, err, sizeof err), -1);
    assert_non_null(strstr(err, "neither an iteration number nor \"release\""));
    write_text(dir, CKPT_TRACKER, "20\n");
    assert_int_equal(ckpt_locate(dir, &loc, err, sizeof err), -1);
    assert_non_null(strstr(err, "iter_0000020"));
    dirs_remove_tree(dir);
    free(dir);
}

/* ---- refusals leave everything as it was ---- */

struct refusal {
    struct run run;
    float *before;
    char *dir;
};

static void snapshot(struct refusal *f)
{
    f->before = malloc((size_t)f->run.m->numel * sizeof(float));
    memcpy(f->before, f->run.m->weights, (size_t)f->run.m->numel * sizeof(float));
}

static void expect_refused(struct refusal *f, const char *const *needles)
{
    char err[1024];
    struct ckpt_state s = state_of(&f->run, DT_F32, 0);
    if (load(f->dir, &s, true, false, err, sizeof err) == 0) fail_msg("a bad checkpoint was loaded");
    for (int i = 0; needles[i]; i++)
        if (!strstr(err, needles[i])) fail_msg("error \"%s\" does not mention \"%s\"", err, needles[i]);
    assert_null(strchr(err, '\n'));
    assert_int_equal(s.iteration, 0);
    expect_same(f->before, f->run.m->weights, f->run.m->numel, "weights after a refused load");
    for (int64_t i = 0; i < f->run.o->owned; i++) assert_true(f->run.o->exp_avg[i] == 0.0f);
    free(f->before);
    free_run(&f->run);
    dirs_remove_tree(f->dir);
    free(f->dir);
}

/* Saves a trained model of config `saved` and sets up a fresh one of config `mine`. */
static void prepare(struct refusal *f, const struct model_config *saved, const struct model_config *mine)
{
    struct run a = make_run(saved, DT_F32, false, NULL, NULL, 0);
    train_steps(&a, 2, 3);
    f->dir = temp_dir();
    struct ckpt_state s = state_of(&a, DT_F32, 2);
    save_or_fail(f->dir, &s, true);
    free_run(&a);
    f->run = make_run(mine, DT_F32, false, NULL, NULL, 0);
    snapshot(f);
}

static void flip_byte_of(const char *dir, const char *file, long at_from_end)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/iter_0000002/%s", dir, file);
    FILE *fp = fopen(path, "r+b");
    assert_non_null(fp);
    fseek(fp, -at_from_end, SEEK_END);
    int ch = fgetc(fp);
    fseek(fp, -at_from_end, SEEK_END);
    fputc(ch ^ 0x10, fp);
    fclose(fp);
}

static void test_checksum_mismatch_is_refused_naming_the_tensor(void **state)
{
    (void)state;
    struct model_config c = tiny_config(32, true);
    struct refusal f;
    prepare(&f, &c, &c);
    flip_byte_of(f.dir, CKPT_MODEL_FILE, 3); /* inside the last tensor of the file */
    const char *needles[] = {"does not match its checksum", CKPT_MODEL_FILE, "sum64:", NULL};
    expect_refused(&f, needles);

    prepare(&f, &c, &c);
    flip_byte_of(f.dir, CKPT_OPTIM_FILE, 7);
    const char *needles2[] = {"exp_avg_sq.", "does not match its checksum", NULL};
    expect_refused(&f, needles2);
}

static void test_shape_that_does_not_fit_is_refused_with_both_shapes(void **state)
{
    (void)state;
    struct model_config saved = tiny_config(32, true), mine = tiny_config(48, true);
    mine.num_attention_heads = 4;
    mine.kv_channels = 12;
    struct refusal f;
    prepare(&f, &saved, &mine);
    const char *needles[] = {"tensor embedding.word_embeddings.weight", "[64, 32]", "[64, 48]", NULL};
    expect_refused(&f, needles);
}

static void test_missing_and_extra_tensors_are_refused(void **state)
{
    (void)state;
    struct model_config with_bias = tiny_config(32, true), without = tiny_config(32, false);
    struct refusal f;
    prepare(&f, &without, &with_bias);
    const char *missing[] = {"self_attention.linear_qkv.bias", "[96]", "is missing", NULL};
    expect_refused(&f, missing);
    prepare(&f, &with_bias, &without);
    const char *extra[] = {"linear_qkv.bias", "not in the model these flags build", NULL};
    expect_refused(&f, extra);
    struct model_config heads = tiny_config(32, true);
    heads.num_attention_heads = 8;
    heads.num_query_groups = 8;
    heads.kv_channels = 4;
    prepare(&f, &with_bias, &heads);
    const char *settings[] = {"--num-attention-heads 4", NULL};
    expect_refused(&f, settings);
}

static void test_checkpoint_without_optimizer_state_needs_no_load_optim(void **state)
{
    (void)state;
    struct model_config c = tiny_config(32, true);
    struct run a = make_run(&c, DT_F32, false, NULL, NULL, 0);
    struct refusal f;
    f.dir = temp_dir();
    struct ckpt_state s = state_of(&a, DT_F32, 1);
    save_or_fail(f.dir, &s, false);
    free_run(&a);
    f.run = make_run(&c, DT_F32, false, NULL, NULL, 0);
    snapshot(&f);
    const char *needles[] = {"--no-load-optim", NULL};
    expect_refused(&f, needles);
}

/* ---- atomicity ---- */

/* The child of the kill test: saves iteration k, k+1, ... of a model whose every weight is k, from
 * k = the latest saved (so a replacing save of the same iteration is among the moments killed). */
static int save_loop(const char *dir)
{
    struct model_config c = tiny_config(128, true);
    c.vocab_size = 1000;
    c.padded_vocab_size = 1024;
    struct run r = make_run(&c, DT_F32, false, NULL, NULL, 0);
    struct ckpt_location loc;
    char err[1024];
    if (ckpt_locate(dir, &loc, err, sizeof err)) return 3;
    for (int64_t k = loc.found ? loc.iteration : 1;; k++) {
        for (int64_t i = 0; i < r.m->numel; i++) r.m->weights[i] = (float)k;
        for (int64_t i = 0; i < r.o->owned; i++) r.o->exp_avg[i] = (float)-k;
        struct ckpt_state s = state_of(&r, DT_F32, k);
        struct ckpt_save_options o = {true, true, false, 0};
        struct ckpt_rank rank = ckpt_rank_single();
        if (ckpt_save(dir, &s, &o, &rank, err, sizeof err)) return 4;
        if (k == (loc.found ? loc.iteration : 1)) { /* tell the parent the saves are under way */
            char marker[4300];
            snprintf(marker, sizeof marker, "%s-saving", dir);
            fclose(fopen(marker, "w"));
        }
    }
}

/* Whether a kill left a save's temporary directory behind (it died inside a save). */
static bool died_inside_a_save(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    bool found = false;
    while (d && (e = readdir(d)) != NULL) found = found || (e->d_name[0] == '.' && strstr(e->d_name, ".tmp"));
    if (d) closedir(d);
    return found;
}

static const char *self_exe = "/proc/self/exe";

static void test_kill_at_random_moments_of_a_save_leaves_a_loadable_checkpoint(void **state)
{
    (void)state;
    char *dir = temp_dir(), err[1024], marker[4300];
    snprintf(marker, sizeof marker, "%s-saving", dir);
    int inside = 0;
    struct model_config c = tiny_config(128, true);
    c.vocab_size = 1000;
    c.padded_vocab_size = 1024;
    srand(20240611);
    int64_t last = 0;
    for (int trial = 0; trial < 12; trial++) {
        pid_t pid = fork();
        if (pid == 0) {
            execl(self_exe, self_exe, "--save-loop", dir, (char *)NULL);
            _exit(5);
        }
        struct stat st;
        for (int wait = 0; wait < 1000 && stat(marker, &st) != 0; wait++) usleep(5000);
        usleep((useconds_t)(rand() % 20000)); /* somewhere inside one of the next saves */
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        unlink(marker);
        assert_true(WIFSIGNALED(status)); /* it was still saving, not failing */
        inside += died_inside_a_save(dir);

        struct run r = make_run(&c, DT_F32, false, NULL, NULL, 0);
        struct ckpt_state s = state_of(&r, DT_F32, 0);
        if (load(dir, &s, true, false, err, sizeof err)) fail_msg("trial %d: %s", trial, err);
        assert_true(s.iteration >= last && s.iteration >= 1);
        for (int64_t i = 0; i < r.m->numel; i++) assert_true(r.m->weights[i] == (float)s.iteration);
        for (int64_t i = 0; i < r.o->owned; i++) assert_true(r.o->exp_avg[i] == (float)-s.iteration);
        last = s.iteration;
        free_run(&r);
    }
    print_message("%d of 12 kills landed inside a save (a temporary directory was left); each time the latest "
                  "complete checkpoint loaded\n", inside);
    dirs_remove_tree(dir);
    free(dir);
}

/* ---- several ranks, other layouts ---- */

/* Collectives for ranks that are threads of this process. */
struct threads {
    pthread_barrier_t barrier;
    pthread_mutex_t lock;
    uint64_t *acc;
    size_t n;
};

static void t_barrier(void *ctx) { pthread_barrier_wait(&((struct threads *)ctx)->barrier); }

static void t_sum(uint64_t *v, size_t n, void *ctx)
{
    struct threads *t = ctx;
    pthread_mutex_lock(&t->lock);
    if (!t->acc) {
        t->acc = calloc(n, sizeof *t->acc);
        t->n = n;
    }
    for (size_t i = 0; i < n; i++) t->acc[i] += v[i];
    pthread_mutex_unlock(&t->lock);
    pthread_barrier_wait(&t->barrier);
    memcpy(v, t->acc, n * sizeof *v);
    if (pthread_barrier_wait(&t->barrier) == PTHREAD_BARRIER_SERIAL_THREAD) {
        free(t->acc);
        t->acc = NULL;
    }
    pthread_barrier_wait(&t->barrier);
}

/* The value every layout gives element `full` of parameter p for a role (0 weights, 1 moments). */
static float value_at(const struct gpt_param *p, int64_t full, int role)
{
    return (float)rng_normal(rng_stream_of(p->name), (uint64_t)role, (uint64_t)full);
}

static void fill_by_full_index(struct run *r)
{
    for (int i = 0; i < r->m->num_params; i++) {
        const struct gpt_param *p = &r->m->params[i];
        for (int64_t e = 0; e < p->numel; e++) r->m->weights[p->offset + e] = value_at(p, gpt_param_full_index(p, e), 0);
    }
    int64_t state = 0;
    for (int k = 0; k < r->o->num_ranges; k++) {
        for (int64_t at = r->o->ranges[k].lo; at < r->o->ranges[k].hi; at++, state++) {
            for (int i = 0; i < r->m->num_params; i++) {
                const struct gpt_param *p = &r->m->params[i];
                if (at >= p->offset && at < p->offset + p->numel) {
                    float v = value_at(p, gpt_param_full_index(p, at - p->offset), 1);
                    r->o->exp_avg[state] = v;
                    r->o->exp_avg_sq[state] = v * v;
                }
            }
        }
    }
}

static void expect_filled_by_full_index(const struct run *r)
{
    for (int i = 0; i < r->m->num_params; i++) {
        const struct gpt_param *p = &r->m->params[i];
        for (int64_t e = 0; e < p->numel; e++) {
            int64_t full = gpt_param_full_index(p, e);
            bool pad = !strcmp(p->name, "embedding.word_embeddings.weight") && full / p->full_shape[1] >= 50;
            if (!pad && r->m->weights[p->offset + e] != value_at(p, full, 0)) fail_msg("%s[%lld]", p->name, (long long)full);
        }
    }
}

struct rank_job {
    struct threads *t;
    int rank, tp, dp; /* world = tp x dp, rank = tp_rank + tp x dp_rank */
    bool distributed, save;
    int64_t stage;    /* host staging of this many elements (the device path), or 0 */
    const char *dir;
    int rc;
    char err[1024];
};

static void *rank_main(void *arg)
{
    struct rank_job *j = arg;
    struct model_config c = tiny_config(32, true);
    c.activation = ACT_SWIGLU; /* fc1's gate and up halves: two pieces per tensor-parallel rank */
    c.ffn_hidden_size = 64;
    struct tp_group tp = {j->tp, j->rank % j->tp, false, NULL};
    int dp_rank = j->rank / j->tp;
    struct model_config sized = c;
    struct gpt_model *probe = gpt_create(&sized, 1, DEV_CPU, &tp, 1);
    int64_t numel = probe->numel, lo = 0, hi = numel;
    gpt_free(probe);
    if (j->distributed) { /* the distributed optimizer's shard of this data-parallel rank */
        lo = numel * dp_rank / j->dp;
        hi = numel * (dp_rank + 1) / j->dp;
    }
    struct buffer_range range = {lo, hi};
    struct run r = make_run(&c, DT_F32, false, &tp, &range, 1);
    struct ckpt_rank cr = {j->rank, j->tp * j->dp, j->rank % j->tp, dp_rank, j->distributed, t_barrier, t_sum, j->t};
    if (j->save) {
        fill_by_full_index(&r);
        struct ckpt_state s = state_of(&r, DT_F32, 9);
        struct ckpt_save_options o = {true, true, false, j->stage};
        j->rc = ckpt_save(j->dir, &s, &o, &cr, j->err, sizeof j->err);
    } else {
        struct ckpt_state s = state_of(&r, DT_F32, 0);
        struct ckpt_load_options o = {true, true, false, j->stage, false};
        struct ckpt_loaded loaded;
        j->rc = ckpt_load(j->dir, &s, &o, &cr, &loaded, j->err, sizeof j->err);
        if (j->rc == 0) {
            struct run want = make_run(&c, DT_F32, false, &tp, &range, 1);
            fill_by_full_index(&want);
            expect_filled_by_full_index(&r);
            expect_same(want.o->exp_avg, r.o->exp_avg, r.o->owned, "exp_avg");
            expect_same(want.o->exp_avg_sq, r.o->exp_avg_sq, r.o->owned, "exp_avg_sq");
            free_run(&want);
        }
    }
    free_run(&r);
    return NULL;
}

static void run_ranks(const char *dir, int tp, int dp, bool distributed, bool save, int64_t stage)
{
    struct threads t;
    int world = tp * dp;
    pthread_barrier_init(&t.barrier, NULL, (unsigned)world);
    pthread_mutex_init(&t.lock, NULL);
    t.acc = NULL;
    pthread_t th[8];
    struct rank_job jobs[8];
    for (int r = 0; r < world; r++) {
        jobs[r] = (struct rank_job){&t, r, tp, dp, distributed, save, stage, dir, 0, ""};
        pthread_create(&th[r], NULL, rank_main, &jobs[r]);
    }
    for (int r = 0; r < world; r++) pthread_join(th[r], NULL);
    for (int r = 0; r < world; r++)
        if (jobs[r].rc) fail_msg("rank %d: %s", r, jobs[r].err);
    pthread_barrier_destroy(&t.barrier);
    pthread_mutex_destroy(&t.lock);
}

static void test_ranks_writing_their_slices_make_the_full_tensors(void **state)
{
    (void)state;
    const struct { int tp, dp; bool dist; } layouts[] = {{2, 1, false}, {1, 2, true}, {2, 2, true}, {1, 1, false}};
    for (size_t a = 0; a < sizeof layouts / sizeof layouts[0]; a++)
        for (size_t b = 0; b < sizeof layouts / sizeof layouts[0]; b++) {
            char *dir = temp_dir();
            /* every layout also saves and loads through host staging (the device path) */
            run_ranks(dir, layouts[a].tp, layouts[a].dp, layouts[a].dist, true, b % 2 ? 5 : 0);
            run_ranks(dir, layouts[b].tp, layouts[b].dp, layouts[b].dist, false, a % 2 ? 3 : 0);
            dirs_remove_tree(dir);
            free(dir);
        }
}

static void test_another_vocabulary_padding_keeps_the_real_rows(void **state)
{
    (void)state;
    struct model_config c = tiny_config(32, true), wider = c;
    wider.padded_vocab_size = 128; /* another --make-vocab-size-divisible-by x TP */
    struct run a = make_run(&c, DT_F32, false, NULL, NULL, 0);
    train_steps(&a, 2, 8);
    char *dir = temp_dir(), err[1024];
    struct ckpt_state sa = state_of(&a, DT_F32, 2);
    save_or_fail(dir, &sa, true);
    struct run b = make_run(&wider, DT_F32, false, NULL, NULL, 0);
    struct ckpt_state sb = state_of(&b, DT_F32, 0);
    if (load_staged(dir, &sb, true, false, 3, err, sizeof err)) fail_msg("%s", err); /* the device path */
    const struct gpt_param *pa = gpt_find_param(a.m, "embedding.word_embeddings.weight");
    const struct gpt_param *pb = gpt_find_param(b.m, "embedding.word_embeddings.weight");
    int64_t h = c.hidden_size;
    expect_same(a.m->weights + pa->offset, b.m->weights + pb->offset, 64 * h, "stored rows");
    for (int64_t row = 64; row < 128; row++) /* new padding: the last real token's row, fresh moments */
        for (int64_t k = 0; k < h; k++) {
            assert_true(b.m->weights[pb->offset + row * h + k] == a.m->weights[pa->offset + 49 * h + k]);
            assert_true(b.o->exp_avg[pb->offset + row * h + k] == 0.0f);
        }
    const struct gpt_param *qa = gpt_find_param(a.m, "decoder.final_layernorm.weight");
    const struct gpt_param *qb = gpt_find_param(b.m, "decoder.final_layernorm.weight");
    expect_same(a.m->weights + qa->offset, b.m->weights + qb->offset, h, "final norm");
    /* and back to the narrower padding */
    struct ckpt_state sb2 = state_of(&b, DT_F32, 3);
    char *dir2 = temp_dir();
    save_or_fail(dir2, &sb2, true);
    struct run a2 = make_run(&c, DT_F32, false, NULL, NULL, 0);
    struct ckpt_state sa2 = state_of(&a2, DT_F32, 0);
    if (load(dir2, &sa2, true, false, err, sizeof err)) fail_msg("%s", err);
    expect_same(a.m->weights, a2.m->weights, a.m->numel, "weights after two paddings");
    c.vocab_size = 51; /* another tokenizer: refused */
    struct run d = make_run(&c, DT_F32, false, NULL, NULL, 0);
    struct ckpt_state sd = state_of(&d, DT_F32, 0);
    assert_int_equal(load(dir, &sd, true, false, err, sizeof err), -1);
    assert_non_null(strstr(err, "vocabulary of 50 tokens"));
    dirs_remove_tree(dir);
    dirs_remove_tree(dir2);
    free(dir);
    free(dir2);
    free_run(&a);
    free_run(&a2);
    free_run(&b);
    free_run(&d);
}

static void test_metadata_survives_a_round_trip(void **state)
{
    (void)state;
    struct ckpt_meta m, back;
    memset(&m, 0, sizeof m);
    m.iteration = 12;
    m.consumed_train_samples = 96;
    m.consumed_valid_samples = 8;
    m.params_dtype = ST_BF16;
    m.model = tiny_config(32, true);
    m.model.seed = 77;
    m.has_optimizer = true;
    snprintf(m.optimizer.type, sizeof m.optimizer.type, "adam");
    m.optimizer.step = 11;
    m.optimizer.schedule_samples = 88;
    m.optimizer.scaler_dynamic = true;
    m.optimizer.loss_scale = 32768.0;
    m.optimizer.hysteresis_tracker = 1;
    m.has_rng = true;
    m.seed = 77;
    m.hf_config = strdup("{\"model_type\": \"gpt2\",\n \"x\": \"\\\"q\\\"\"}");
    int64_t shape[2] = {3, 5};
    meta_add_tensor(&m, "decoder.layers.0.mlp.linear_fc1.weight", ROLE_EXP_AVG, CKPT_OPTIM_FILE, ST_F32, 2, shape);
    m.tensors[0].checksum = 0xfedcba9876543210ull;
    size_t len;
    char *json = meta_to_json(&m, &len), err[512];
    if (meta_parse(json, len, &back, err, sizeof err)) fail_msg("%s\n%s", err, json);
    assert_int_equal(back.iteration, 12);
    assert_int_equal(back.params_dtype, ST_BF16);
    assert_true(back.model.norm_epsilon == m.model.norm_epsilon);
    assert_int_equal(back.model.padded_vocab_size, 64);
    assert_true(back.optimizer.loss_scale == 32768.0);
    assert_int_equal(back.optimizer.hysteresis_tracker, 1);
    assert_int_equal(back.seed, 77);
    assert_string_equal(back.hf_config, m.hf_config);
    assert_string_equal(back.tensors[0].name, "exp_avg.decoder.layers.0.mlp.linear_fc1.weight");
    assert_true(back.tensors[0].checksum == 0xfedcba9876543210ull);
    /* a file name that leaves the directory is refused */
    char *evil = strstr(json, "\"file\": \"optimizer.safetensors\"");
    assert_non_null(evil);
    memcpy(evil + 9, "../", 3);
    assert_int_equal(meta_parse(json, len, &back, err, sizeof err) == 0 ? 0 : -1, -1);
    free(json);
    meta_free(&m);
    meta_free(&back);
}

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[1], "--save-loop") == 0) return save_loop(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sum64_matches_the_documented_definition),
        cmocka_unit_test(test_sum64_of_slices_adds_up_to_the_whole_and_sees_one_flip),
        cmocka_unit_test(test_sum64_fast_paths_match_the_definition),
        cmocka_unit_test(test_save_then_load_restores_every_buffer_fp32),
        cmocka_unit_test(test_save_then_load_restores_every_buffer_bf16),
        cmocka_unit_test(test_save_then_load_restores_loss_scaler_fp16),
        cmocka_unit_test(test_staging_through_a_host_buffer_writes_and_reads_the_same_bytes),
        cmocka_unit_test(test_finetune_and_no_load_optim_take_weights_only),
        cmocka_unit_test(test_missing_or_empty_directory_holds_no_checkpoint),
        cmocka_unit_test(test_tracker_naming_nothing_valid_is_refused),
        cmocka_unit_test(test_checksum_mismatch_is_refused_naming_the_tensor),
        cmocka_unit_test(test_shape_that_does_not_fit_is_refused_with_both_shapes),
        cmocka_unit_test(test_missing_and_extra_tensors_are_refused),
        cmocka_unit_test(test_checkpoint_without_optimizer_state_needs_no_load_optim),
        cmocka_unit_test(test_kill_at_random_moments_of_a_save_leaves_a_loadable_checkpoint),
        cmocka_unit_test(test_ranks_writing_their_slices_make_the_full_tensors),
        cmocka_unit_test(test_another_vocabulary_padding_keeps_the_real_rows),
        cmocka_unit_test(test_metadata_survives_a_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
