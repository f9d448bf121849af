/* `megatron convert` in both directions; see convert.h. */
#include "ckpt/convert.h"

#include <stdlib.h>
#include <string.h>

#include "ckpt/ckpt.h"
#include "ckpt/hf.h"
#include "ckpt/hf_dir.h"
#include "util/error.h"

/* A model that holds weights only: no activations worth the name (one token). */
static struct gpt_model *weights_model(const struct model_config *c)
{
    struct model_config small = *c;
    small.seq_length = 1;
    struct gpt_model *m = gpt_create(&small, 1, DEV_CPU, NULL, 1);
    m->cfg.seq_length = c->seq_length; /* what the checkpoint records */
    return m;
}

int convert_hf_to_checkpoint(const char *hf_dir, const char *ckpt_dir, FILE *out, char *err, size_t errlen)
{
    struct hf_dir d;
    struct model_config mc;
    enum hf_family family;
    char path[4200], why[768];
    struct ckpt_location existing;
    if (ckpt_locate(ckpt_dir, &existing, why, sizeof why) || existing.found) {
        /* the tracker would then name the converted weights instead of a run's latest checkpoint */
        snprintf(err, errlen, "--save %s: already holds checkpoints (%s); convert into a new directory", ckpt_dir,
                 CKPT_TRACKER);
        return -1;
    }
    if (hf_dir_open(hf_dir, &d, err, errlen)) return -1;
    snprintf(path, sizeof path, "%.4096s/config.json", hf_dir);
    if (hf_parse_config(d.config_text, d.config_len, path, &mc, &family, err, errlen)) {
        hf_dir_close(&d);
        return -1;
    }
    mc.seed = 1234; /* Megatron's default --seed; a release checkpoint records no RNG state */
    struct gpt_model *m = weights_model(&mc);
    const struct st_file *const *files = (const struct st_file *const *)d.files;
    int rc = hf_load_files(m, family, files, d.nfiles, "", m->weights, why, sizeof why);
    if (rc) snprintf(err, errlen, "%s: %s", hf_dir, why);
    if (rc == 0) {
        enum st_dtype dt = hf_weights_dtype(m, family, files, d.nfiles);
        struct ckpt_state s = {m, NULL, ckpt_dtype(dt), 0, 0, 0, NULL, d.config_text};
        struct ckpt_save_options o = {false, false, true, 0};
        struct ckpt_rank r = ckpt_rank_single();
        rc = ckpt_save(ckpt_dir, &s, &o, &r, err, errlen);
        if (rc == 0) {
            fprintf(out, "converted %s (%s, %lld parameters, %s) to the checkpoint %s/release\n", hf_dir,
                    family == HF_GPT2 ? "GPT-2" : "LLaMA", (long long)m->numel, st_dtype_name(dt), ckpt_dir);
            fprintf(out, "megatron pretrain flags for this model (add --load %s%s):\n", ckpt_dir,
                    dt == ST_BF16 ? " --bf16" : dt == ST_F16 ? " --fp16" : "");
            hf_print_flags(out, &mc, family, d.config_text);
        }
    }
    gpt_free(m);
    hf_dir_close(&d);
    return rc;
}

int convert_checkpoint_to_hf(const char *ckpt_dir, const char *hf_dir, uint64_t max_shard_bytes, FILE *out, char *err,
                             size_t errlen)
{
    struct ckpt_location loc;
    struct ckpt_meta meta;
    enum hf_family family;
    char why[768];
    if (ckpt_locate(ckpt_dir, &loc, err, errlen)) return -1;
    if (!loc.found) {
        snprintf(err, errlen, "%s: no checkpoint there (no %s); give the --save directory of a run", ckpt_dir, CKPT_TRACKER);
        return -1;
    }
    if (ckpt_read_meta(loc.path, &meta, err, errlen)) return -1;
    if (hf_family_of(&meta.model, &family, why, sizeof why)) {
        snprintf(err, errlen, "%s: %s; it cannot be written as a Hugging Face model", loc.path, why);
        meta_free(&meta);
        return -1;
    }
    struct gpt_model *m = weights_model(&meta.model);
    struct ckpt_state s = {m, NULL, ckpt_dtype(meta.params_dtype), 0, 0, 0, NULL, NULL};
    struct ckpt_load_options o = {false, false, true, 0, false};
    struct ckpt_rank r = ckpt_rank_single();
    struct ckpt_loaded loaded;
    int rc = ckpt_load(ckpt_dir, &s, &o, &r, &loaded, err, errlen);
    if (rc == 0) {
        struct st_tensor *t;
        size_t n;
        hf_export(m, family, m->weights, meta.params_dtype, &t, &n);
        char *config = meta.hf_config ? xstrdup(meta.hf_config) : hf_config_json(&meta.model, family, meta.params_dtype);
        rc = hf_dir_write(hf_dir, t, n, config, max_shard_bytes, err, errlen);
        if (rc == 0)
            fprintf(out, "converted %s (iteration %lld) to the Hugging Face %s model %s\n", loc.path,
                    (long long)meta.iteration, family == HF_GPT2 ? "GPT-2" : "LLaMA", hf_dir);
        free(config);
        hf_free_tensors(t, n);
    }
    gpt_free(m);
    meta_free(&meta);
    return rc;
}

int convert_main(const struct config *cfg)
{
    char err[1024];
    int rc = cfg->load_hf ? convert_hf_to_checkpoint(cfg->load_hf, cfg->save, stdout, err, sizeof err)
                          : convert_checkpoint_to_hf(cfg->load, cfg->save_hf, HF_DIR_MAX_SHARD_BYTES, stdout, err,
                                                     sizeof err);
    if (rc) die_user("megatron convert: %s", err);
    return 0;
}
