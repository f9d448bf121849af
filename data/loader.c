/* The trainer's data: Megatron's train/valid/test datasets (blend.h, gpt_dataset.h) built from
 * the run's flags, read one sample at a time or one batch at a time with a background prefetch. */
#include "data/loader.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "data/blend.h"
#include "data/gpt_dataset.h"
#include "util/error.h"

/* One batch being read (or read) by the prefetch thread. */
struct prefetch {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    bool running, quit;
    bool pending;      /* a request waits for the thread */
    bool ready;        /* the buffers hold the request's samples */
    enum data_split split;
    int64_t *indices, count, capacity;
    int32_t *tokens, *labels, *positions;
    float *loss_mask;
    char error[512];   /* a read failure, reported when the batch is taken */
};

struct loader {
    struct blend_data *data;
    int32_t seq_length;
    struct prefetch pf;
};

struct loader *loader_create(const struct config *cfg, int64_t vocab_size, int64_t eod_id)
{
    struct gpt_dataset_config dc;
    int64_t num_samples[GPT_NUM_SPLITS];
    struct loader *l = xcalloc(1, sizeof *l);
    gpt_dataset_config_init(&dc);
    dc.seed = (uint32_t)cfg->seed;
    dc.seq_length = (int32_t)cfg->seq_length;
    dc.split = cfg->split;
    dc.data_path_count = cfg->data_path_count;
    dc.data_path = (const char *const *)cfg->data_path;
    dc.split_data_path_count[GPT_SPLIT_TRAIN] = cfg->train_data_path_count;
    dc.split_data_path[GPT_SPLIT_TRAIN] = (const char *const *)cfg->train_data_path;
    dc.split_data_path_count[GPT_SPLIT_VALID] = cfg->valid_data_path_count;
    dc.split_data_path[GPT_SPLIT_VALID] = (const char *const *)cfg->valid_data_path;
    dc.split_data_path_count[GPT_SPLIT_TEST] = cfg->test_data_path_count;
    dc.split_data_path[GPT_SPLIT_TEST] = (const char *const *)cfg->test_data_path;
    dc.mock = cfg->mock_data;
    dc.vocab_size = (int32_t)vocab_size;
    dc.eod_id = (int32_t)eod_id;
    dc.eod_mask_loss = cfg->eod_mask_loss;
    dc.reset_position_ids = cfg->reset_position_ids;
    dc.reset_attention_mask = cfg->reset_attention_mask;
    dc.mid_level_dataset_surplus = cfg->mid_level_dataset_surplus;
    dc.cache_dir = cfg->data_cache_path;
    gpt_num_samples(cfg->train_iters, cfg->train_samples, cfg->global_batch_size,
                    cfg->eval_interval > 0 ? cfg->eval_interval : cfg->train_iters, cfg->eval_iters,
                    num_samples);
    l->data = blend_data_build_or_die(&dc, num_samples);
    l->seq_length = dc.seq_length;
    pthread_mutex_init(&l->pf.lock, NULL);
    pthread_cond_init(&l->pf.changed, NULL);
    return l;
}

static void stop_prefetch(struct prefetch *pf)
{
    if (!pf->running) return;
    pthread_mutex_lock(&pf->lock);
    pf->quit = true;
    pthread_cond_broadcast(&pf->changed);
    pthread_mutex_unlock(&pf->lock);
    pthread_join(pf->thread, NULL);
    pf->running = false;
}

void loader_free(struct loader *l)
{
    if (!l) return;
    stop_prefetch(&l->pf);
    pthread_mutex_destroy(&l->pf.lock);
    pthread_cond_destroy(&l->pf.changed);
    free(l->pf.indices);
    free(l->pf.tokens);
    free(l->pf.labels);
    free(l->pf.positions);
    free(l->pf.loss_mask);
    blend_data_free(l->data);
    free(l);
}

int64_t loader_num_samples(const struct loader *l, enum data_split split)
{
    const struct blend_dataset *b = l->data->split[split];
    return b ? blend_dataset_len(b) : 0;
}

/* Reads one sample; 0, or -1 with the reason in err. */
static int read_sample(const struct loader *l, enum data_split split, int64_t index, int32_t *tokens,
                       int32_t *labels, int32_t *positions, float *loss_mask, char *err, size_t errlen)
{
    struct gpt_sample s = {tokens, labels, loss_mask, positions, NULL};
    const struct blend_dataset *b = l->data->split[split];
    if (!b) BUG("loader: split %s is empty", loader_split_name(split));
    return blend_dataset_get(b, index % blend_dataset_len(b), &s, NULL, err, errlen);
}

void loader_get(struct loader *l, enum data_split split, int64_t index, int32_t *tokens,
                int32_t *labels, int32_t *positions, float *loss_mask)
{
    char err[512];
    if (read_sample(l, split, index, tokens, labels, positions, loss_mask, err, sizeof err)) die_user("%s", err);
}

static int read_batch(const struct loader *l, enum data_split split, const int64_t *indices, int64_t count,
                      int32_t *tokens, int32_t *labels, int32_t *positions, float *loss_mask, char *err,
                      size_t errlen)
{
    int64_t seq = l->seq_length;
    for (int64_t i = 0; i < count; i++) {
        int64_t at = i * seq;
        if (read_sample(l, split, indices[i], tokens + at, labels + at, positions + at, loss_mask + at, err, errlen))
            return -1;
    }
    return 0;
}

static void *prefetch_thread(void *arg)
{
    struct loader *l = arg;
    struct prefetch *pf = &l->pf;
    pthread_mutex_lock(&pf->lock);
    for (;;) {
        while (!pf->pending && !pf->quit) pthread_cond_wait(&pf->changed, &pf->lock);
        if (pf->quit) break;
        pf->pending = false;
        pthread_mutex_unlock(&pf->lock);
        /* only this thread touches the buffers until `ready` is set */
        char err[512] = "";
        read_batch(l, pf->split, pf->indices, pf->count, pf->tokens, pf->labels, pf->positions, pf->loss_mask,
                   err, sizeof err);
        pthread_mutex_lock(&pf->lock);
        memcpy(pf->error, err, sizeof err);
        pf->ready = true;
        pthread_cond_broadcast(&pf->changed);
    }
    pthread_mutex_unlock(&pf->lock);
    return NULL;
}

static void reserve(struct prefetch *pf, int64_t count, int64_t seq)
{
    if (count <= pf->capacity) return;
    size_t n = (size_t)(count * seq);
    pf->indices = xrealloc(pf->indices, (size_t)count * sizeof(int64_t));
    pf->tokens = xrealloc(pf->tokens, n * sizeof(int32_t));
    pf->labels = xrealloc(pf->labels, n * sizeof(int32_t));
    pf->positions = xrealloc(pf->positions, n * sizeof(int32_t));
    pf->loss_mask = xrealloc(pf->loss_mask, n * sizeof(float));
    pf->capacity = count;
}

/* Waits until the thread is idle; afterwards the caller owns the buffers. */
static void wait_idle(struct prefetch *pf)
{
    while (pf->pending || (pf->running && !pf->ready && pf->count > 0))
        pthread_cond_wait(&pf->changed, &pf->lock);
}

void loader_prefetch(struct loader *l, enum data_split split, const int64_t *indices, int64_t count)
{
    struct prefetch *pf = &l->pf;
    if (!pf->running) {
        if (pthread_create(&pf->thread, NULL, prefetch_thread, l) != 0)
            die_user("data loader: cannot start the prefetch thread; raise the process limits (ulimit -u)");
        pf->running = true;
    }
    pthread_mutex_lock(&pf->lock);
    wait_idle(pf);
    reserve(pf, count, l->seq_length);
    memcpy(pf->indices, indices, (size_t)count * sizeof(int64_t));
    pf->split = split;
    pf->count = count;
    pf->ready = false;
    pf->pending = true;
    pthread_cond_broadcast(&pf->changed);
    pthread_mutex_unlock(&pf->lock);
}

void loader_batch(struct loader *l, enum data_split split, const int64_t *indices, int64_t count,
                  int32_t *tokens, int32_t *labels, int32_t *positions, float *loss_mask)
{
    struct prefetch *pf = &l->pf;
    char err[512];
    size_t n = (size_t)(count * l->seq_length);
    pthread_mutex_lock(&pf->lock);
    wait_idle(pf);
    bool hit = pf->ready && pf->split == split && pf->count == count &&
               memcmp(pf->indices, indices, (size_t)count * sizeof(int64_t)) == 0;
    if (hit) {
        if (pf->error[0]) die_user("%s", pf->error);
        memcpy(tokens, pf->tokens, n * sizeof(int32_t));
        memcpy(labels, pf->labels, n * sizeof(int32_t));
        memcpy(positions, pf->positions, n * sizeof(int32_t));
        memcpy(loss_mask, pf->loss_mask, n * sizeof(float));
        pf->ready = false;
        pf->count = 0;
    }
    pthread_mutex_unlock(&pf->lock);
    if (!hit && read_batch(l, split, indices, count, tokens, labels, positions, loss_mask, err, sizeof err))
        die_user("%s", err);
}

const char *loader_split_name(enum data_split split)
{
    static const char *names[] = {"train", "valid", "test"};
    return split < NUM_SPLITS ? names[split] : "?";
}
