/* `megatron samples`: see samples.h. */
#include "data/samples.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/loader.h"
#include "data/tokenizer.h"
#include "util/error.h"

static enum data_split split_of(const char *name)
{
    if (strcmp(name, "valid") == 0) return SPLIT_VALID;
    if (strcmp(name, "test") == 0) return SPLIT_TEST;
    return SPLIT_TRAIN;
}

/* Output file written under a temporary name and renamed when complete. */
struct dump {
    char *path, *tmp;
    FILE *f;
};

static void remove_partial(void *arg)
{
    struct dump *d = arg;
    if (d->f) fclose(d->f);
    d->f = NULL;
    remove(d->tmp);
}

static void dump_open(struct dump *d, const char *path)
{
    size_t n = strlen(path) + 32;
    d->path = xstrdup(path);
    d->tmp = xmalloc(n);
    snprintf(d->tmp, n, "%s.tmp", path);
    d->f = fopen(d->tmp, "wb");
    if (!d->f) die_user("--samples-output %s: cannot create the file; check the directory exists and is writable", path);
    error_push_cleanup(remove_partial, d);
}

static void dump_close(struct dump *d)
{
    bool ok = fflush(d->f) == 0 && fclose(d->f) == 0;
    d->f = NULL;
    if (!ok || rename(d->tmp, d->path) != 0)
        die_user("--samples-output %s: writing failed; check free disk space", d->path);
    error_pop_cleanup(remove_partial, d);
    free(d->path);
    free(d->tmp);
}

static void print_sample(const struct tokenizer *tok, int64_t index, const int32_t *row, int64_t len)
{
    char err[256];
    size_t n;
    char *text = tokenizer_decode(tok, row, (size_t)len, &n, err, sizeof err);
    if (!text) die_user("sample %lld: %s", (long long)index, err);
    printf("=== sample %lld (%lld tokens) ===\n", (long long)index, (long long)len);
    fwrite(text, 1, n, stdout);
    printf("\n");
    free(text);
}

int samples_main(const struct config *cfg)
{
    struct tokenizer_options o = {cfg->tokenizer_type, cfg->vocab_file, cfg->merge_file, cfg->vocab_size};
    char err[512];
    struct tokenizer *tok = tokenizer_create(&o, err, sizeof err);
    if (!tok) die_user("%s", err);
    struct loader *l = loader_create(cfg, tokenizer_vocab_size(tok), tokenizer_eod(tok));
    enum data_split split = split_of(cfg->samples_split);
    int64_t available = loader_num_samples(l, split), seq = cfg->seq_length;
    if (cfg->samples_count > available)
        die_user("--samples-count %lld: the %s split has %lld samples for these flags; ask for at most %lld",
                 (long long)cfg->samples_count, cfg->samples_split, (long long)available, (long long)available);

    int32_t *row = xmalloc((size_t)(seq + 1) * sizeof(int32_t));
    int32_t *labels = xmalloc((size_t)seq * sizeof(int32_t));
    int32_t *positions = xmalloc((size_t)seq * sizeof(int32_t));
    float *mask = xmalloc((size_t)seq * sizeof(float));
    struct dump d = {0};
    if (cfg->samples_output) dump_open(&d, cfg->samples_output);
    for (int64_t i = 0; i < cfg->samples_count; i++) {
        loader_get(l, split, i, row, labels, positions, mask);
        row[seq] = labels[seq - 1];
        if (d.f) {
            if (fwrite(row, sizeof(int32_t), (size_t)(seq + 1), d.f) != (size_t)(seq + 1))
                die_user("--samples-output %s: writing failed; check free disk space", cfg->samples_output);
        } else {
            print_sample(tok, i, row, seq + 1);
        }
    }
    if (d.f) dump_close(&d);
    free(row);
    free(labels);
    free(positions);
    free(mask);
    loader_free(l);
    tokenizer_free(tok);
    return 0;
}
