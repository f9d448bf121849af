/* Parity of the GPT family with a Hugging Face reference, in fp32 on the CPU backend.
 * Usage: test_parity <fixture dir> (config.json, model.safetensors, reference.safetensors,
 * reference.json as described in fixtures/README.md). Checks logits, every parameter gradient and
 * the parameters after three AdamW steps within a relative L2 error of 1e-4, and the losses within
 * 1e-5, for any fixture directory of that shape. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ckpt/hf.h"
#include "ckpt/safetensors.h"
#include "models/gpt.h"
#include "optim/optimizer.h"
#include "util/error.h"
#include "util/json.h"

#define TENSOR_TOL 1e-4
#define LOSS_TOL 1e-5

static const char *fixture_dir = "../shared/fixtures/gpt2_tiny";

struct fixture {
    struct model_config cfg;
    enum hf_family family;
    struct st_file *model_file, *ref;
    int64_t batch, seq;
    int32_t *tokens, *targets, *positions;
    float *loss_mask;
    double losses[3], grad_norms[3];
};

static void read_reference_json(struct fixture *fx)
{
    char path[4096], jerr[256];
    snprintf(path, sizeof path, "%s/reference.json", fixture_dir);
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof text, f);
    fclose(f);
    struct json_doc *doc = json_parse(text, n, jerr, sizeof jerr);
    if (!doc) fail_msg("%s: %s", path, jerr);
    const struct json_value *losses = json_get(json_root(doc), "losses");
    const struct json_value *norms = json_get(json_root(doc), "grad_norms_before_clip");
    assert_non_null(losses);
    assert_non_null(norms);
    assert_int_equal(json_count(losses), 3);
    for (int i = 0; i < 3; i++) {
        fx->losses[i] = json_number(json_at(losses, (size_t)i));
        fx->grad_norms[i] = json_number(json_at(norms, (size_t)i));
    }
    json_free(doc);
}

static int32_t *read_ids(const struct st_file *f, const char *name, int64_t *b, int64_t *t)
{
    const struct st_tensor *x = st_find(f, name);
    if (!x || x->dtype != ST_I32 || x->ndim != 2) fail_msg("reference.safetensors: %s must be int32 [B, T]", name);
    *b = x->shape[0];
    *t = x->shape[1];
    int32_t *ids = malloc(x->nbytes);
    memcpy(ids, x->data, x->nbytes);
    return ids;
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);
    char err[512], path[4096];
    if (hf_read_config(fixture_dir, &fx->cfg, &fx->family, err, sizeof err)) fail_msg("%s", err);
    snprintf(path, sizeof path, "%s/model.safetensors", fixture_dir);
    if (!(fx->model_file = st_open(path, err, sizeof err))) fail_msg("%s", err);
    snprintf(path, sizeof path, "%s/reference.safetensors", fixture_dir);
    if (!(fx->ref = st_open(path, err, sizeof err))) fail_msg("%s", err);
    int64_t b2, t2;
    fx->tokens = read_ids(fx->ref, "tokens", &fx->batch, &fx->seq);
    fx->targets = read_ids(fx->ref, "targets", &b2, &t2);
    assert_true(b2 == fx->batch && t2 == fx->seq);
    int64_t n = fx->batch * fx->seq;
    fx->positions = malloc((size_t)n * sizeof(int32_t));
    fx->loss_mask = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) {
        fx->positions[i] = (int32_t)(i % fx->seq);
        fx->loss_mask[i] = 1.0f;
    }
    fx->cfg.seq_length = (int)fx->seq;
    fx->cfg.seed = 1234;
    read_reference_json(fx);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    st_close(fx->model_file);
    st_close(fx->ref);
    free(fx->tokens);
    free(fx->targets);
    free(fx->positions);
    free(fx->loss_mask);
    free(fx);
    return 0;
}

static struct gpt_model *load_model(struct fixture *fx)
{
    char err[512];
    struct gpt_model *m = gpt_create(&fx->cfg, fx->batch, DEV_CPU, NULL, 1);
    if (hf_load_into(m, fx->family, fx->model_file, "", m->weights, err, sizeof err)) fail_msg("%s", err);
    return m;
}

static struct gpt_batch batch_of(const struct fixture *fx)
{
    struct gpt_batch b = {0};
    b.batch = fx->batch;
    b.tokens = fx->tokens;
    b.labels = fx->targets;
    b.positions = fx->positions;
    b.loss_mask = fx->loss_mask;
    b.training = true; /* dropout is 0 in the fixture config, so training mode is deterministic */
    return b;
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

static void expect_close(const char *what, const float *got, const float *want, int64_t n, double tol)
{
    double e = rel_l2(got, want, n);
    if (!(e <= tol)) fail_msg("%s: relative L2 error %.3e > %.1e", what, e, tol);
}

/* Compares every parameter of buffer `got` (model layout) with the reference tensors `prefix`. */
static void expect_params_close(struct fixture *fx, const struct gpt_model *m, const float *got,
                                const char *prefix)
{
    char err[512];
    float *want = calloc((size_t)m->numel, sizeof(float));
    if (hf_load_into(m, fx->family, fx->ref, prefix, want, err, sizeof err)) fail_msg("%s", err);
    for (int i = 0; i < m->num_params; i++) {
        const struct gpt_param *p = &m->params[i];
        char what[160];
        snprintf(what, sizeof what, "%s%s", prefix, p->name);
        expect_close(what, got + p->offset, want + p->offset, p->numel, TENSOR_TOL);
    }
    free(want);
}

static void expect_loss(const char *what, double got, double want)
{
    double e = fabs(got - want) / fabs(want);
    if (!(e <= LOSS_TOL)) fail_msg("%s: %.9f vs reference %.9f (relative %.3e > %.0e)", what, got, want, e, LOSS_TOL);
}

static void test_logits_and_loss_match_reference(void **state)
{
    struct fixture *fx = *state;
    struct gpt_model *m = load_model(fx);
    struct gpt_batch b = batch_of(fx);
    double tokens, sum = gpt_forward(m, &b, &tokens);
    expect_loss("loss", sum / tokens, fx->losses[0]);

    const struct st_tensor *ref = st_find(fx->ref, "logits");
    assert_non_null(ref);
    int64_t n = fx->batch * fx->seq, v = fx->cfg.vocab_size;
    assert_int_equal(st_numel(ref), n * v);
    float *want = malloc((size_t)(n * v) * sizeof(float));
    char err[256];
    assert_int_equal(st_to_f32(ref, want, err, sizeof err), 0);
    struct tensor logits = gpt_logits(m);
    assert_int_equal(logits.shape[1], v);
    expect_close("logits", logits.data, want, n * v, TENSOR_TOL);
    free(want);
    gpt_free(m);
}

static void test_every_gradient_matches_reference(void **state)
{
    struct fixture *fx = *state;
    struct gpt_model *m = load_model(fx);
    struct gpt_batch b = batch_of(fx);
    double tokens;
    gpt_forward(m, &b, &tokens);
    gpt_backward(m, &b, (float)(1.0 / tokens));
    expect_params_close(fx, m, m->grads, "grad.");
    gpt_free(m);
}

/* A training step's way: only the gradients added into are zeroed (gpt_zero_grads), the backward
 * writes the rest whole (its linear layers' weights, and the output layer's); what was in the
 * buffer before (NaN here) reaches none of them. */
static void test_written_weight_gradients_match_reference(void **state)
{
    struct fixture *fx = *state;
    struct gpt_model *m = load_model(fx);
    struct gpt_batch b = batch_of(fx);
    b.write_weight_grads = true;
    int written = 0;
    for (int i = 0; i < m->num_params; i++) written += m->params[i].grad_written;
    assert_true(written >= 4 * m->cfg.num_layers);
    for (int64_t i = 0; i < m->buffer_numel; i++) m->grads[i] = NAN;
    gpt_zero_grads(m);
    double tokens;
    gpt_forward(m, &b, &tokens);
    gpt_backward(m, &b, (float)(1.0 / tokens));
    for (int64_t i = 0; i < m->buffer_numel; i++)
        if (isnan(m->grads[i])) fail_msg("gradient element %lld never written", (long long)i);
    expect_params_close(fx, m, m->grads, "grad.");
    gpt_free(m);
}

static void test_three_adamw_steps_match_reference(void **state)
{
    struct fixture *fx = *state;
    struct gpt_model *m = load_model(fx);
    struct gpt_batch b = batch_of(fx);
    struct optimizer_options o = {0};
    char err[256];
    o.type = OPTIMIZER_ADAM;
    o.adam = adam_params_default();
    o.adam.beta2 = 0.95;
    o.clip_grad = 1.0;
    o.params_dtype = DT_F32;
    scaler_init_constant(&o.scaler, 1.0);
    /* lr 1e-3 constant, weight decay 0.1 constant (fixtures/README.md) */
    if (!lr_schedule_init(&o.schedule, 1e-3, 1e-3, 0.0, 0.0, 1, LR_DECAY_CONSTANT, -1, LR_WSD_EXPONENTIAL,
                          0.1, 0.1, 1, WD_INCR_CONSTANT, err, sizeof err))
        fail_msg("%s", err);
    struct buffer_range all = {0, m->buffer_numel};
    struct optimizer *opt = optimizer_create(m, &o, &all, 1);
    for (int step = 0; step < 3; step++) {
        double tokens, sum = gpt_forward(m, &b, &tokens);
        char what[64];
        snprintf(what, sizeof what, "loss at step %d", step + 1);
        expect_loss(what, sum / tokens, fx->losses[step]);
        gpt_backward(m, &b, (float)(1.0 / tokens));
        struct step_result r = optimizer_step(opt, fx->batch);
        assert_false(r.skipped);
        memset(m->grads, 0, (size_t)m->buffer_numel * sizeof(float));
        double e = fabs(r.grad_norm - fx->grad_norms[step]) / fx->grad_norms[step];
        if (!(e <= TENSOR_TOL)) fail_msg("grad norm at step %d: %.9f vs %.9f", step + 1, r.grad_norm, fx->grad_norms[step]);
    }
    expect_params_close(fx, m, m->weights, "step3.");
    optimizer_free(opt);
    gpt_free(m);
}

int main(int argc, char **argv)
{
    if (argc > 1) fixture_dir = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logits_and_loss_match_reference),
        cmocka_unit_test(test_every_gradient_matches_reference),
        cmocka_unit_test(test_written_weight_gradients_match_reference),
        cmocka_unit_test(test_three_adamw_steps_match_reference),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
