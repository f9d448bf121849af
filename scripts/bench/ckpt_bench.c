/* Checkpoint speed on this machine's disk: builds a GPT's parameter table and Adam state in host
 * memory (bf16 weights, fp32 main params, two fp32 moments), saves it through ckpt_save and reads
 * it back through ckpt_load (the code `megatron pretrain --save/--load` runs, checksums verified),
 * dropping the page cache before the read when the kernel allows it, and checks that every
 * element came back. It prints the bytes and rates in `key value` lines for
 * scripts/bench/ckpt_bench.sh, which adds `dd` on the same disk and the ratios.
 *
 *   ckpt_bench DIR [--num-layers 18] [--hidden-size 2048] [--vocab-size 50257] [--seq-length 1024]
 *              [--repeat 1]   (save + load rounds, after one setup)
 *
 * Only what a checkpoint holds stays in memory: the gradient buffer gpt_create allocates is
 * released at once (no step runs), so a 1B model takes 16 GB (fp32 weights as the CPU backend
 * stores them, main params, two moments) and the rest of the machine is page cache. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ckpt/ckpt.h"
#include "ckpt/dirs.h"
#include "kernels/arena.h"
#include "kernels/rng.h"
#include "models/gpt.h"
#include "optim/optimizer.h"
#include "util/error.h"

struct bench_options {
    const char *dir;
    int num_layers, hidden_size, seq_length;
    int64_t vocab_size;
    int repeat; /* save + load rounds in one process */
};

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU seconds this process has used (user + system, all threads). */
static double cpu_seconds(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_utime.tv_sec + 1e-6 * (double)u.ru_utime.tv_usec + (double)u.ru_stime.tv_sec +
           1e-6 * (double)u.ru_stime.tv_usec;
}

static void usage(void)
{
    fprintf(stderr, "usage: ckpt_bench DIR [--num-layers N] [--hidden-size H] [--vocab-size V] [--seq-length T] [--repeat N]\n");
    exit(2);
}

static struct bench_options parse(int argc, char **argv)
{
    struct bench_options o = {NULL, 18, 2048, 1024, 50257, 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        if (strcmp(a, "--num-layers") == 0 && has_value) o.num_layers = atoi(argv[++i]);
        else if (strcmp(a, "--hidden-size") == 0 && has_value) o.hidden_size = atoi(argv[++i]);
        else if (strcmp(a, "--seq-length") == 0 && has_value) o.seq_length = atoi(argv[++i]);
        else if (strcmp(a, "--vocab-size") == 0 && has_value) o.vocab_size = atoll(argv[++i]);
        else if (strcmp(a, "--repeat") == 0 && has_value) o.repeat = atoi(argv[++i]);
        else if (a[0] != '-' && !o.dir) o.dir = a;
        else usage();
    }
    if (!o.dir || o.repeat < 1 || o.num_layers < 1 || o.hidden_size < 64 || o.hidden_size % 64 || o.seq_length < 1 || o.vocab_size < 1)
        usage();
    return o;
}

/* GPT-2's architecture at the requested size (what `pretrain` builds from the same flags). */
static struct model_config gpt_config(const struct bench_options *b)
{
    struct model_config c;
    memset(&c, 0, sizeof c);
    c.num_layers = b->num_layers;
    c.hidden_size = b->hidden_size;
    c.ffn_hidden_size = 4 * b->hidden_size;
    c.num_attention_heads = b->hidden_size / 64;
    c.num_query_groups = c.num_attention_heads;
    c.kv_channels = 64;
    c.seq_length = 8; /* sizes the activation arena only: no step runs */
    c.max_position_embeddings = b->seq_length;
    c.vocab_size = b->vocab_size;
    c.padded_vocab_size = model_padded_vocab_size(b->vocab_size, 128, 1);
    c.normalization = NORM_LAYERNORM;
    c.position_embedding = POS_LEARNED_ABSOLUTE;
    c.activation = ACT_GELU_TANH;
    c.add_bias_linear = true;
    c.norm_epsilon = 1e-5f;
    c.rotary_base = 10000.0f;
    c.rotary_percent = 1.0f;
    c.init_method_std = 0.02f;
    c.seed = 1234;
    return c;
}

/* A value per (buffer, element) that is cheap to recompute, so the read-back can be checked. */
static inline float pattern(uint64_t which, int64_t i)
{
    uint64_t z = rng_mix64((uint64_t)i * 4 + which);
    float v = (float)(int32_t)(z >> 32) * (1.0f / 2147483648.0f) * 0.05f;
    return which == 3 ? v * v : v; /* the second moment is non-negative */
}

static void fill(float *x, int64_t n, uint64_t which)
{
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) x[i] = pattern(which, i);
}

static int64_t mismatches(const float *x, int64_t n, uint64_t which, bool bf16)
{
    int64_t bad = 0;
#pragma omp parallel for schedule(static) reduction(+ : bad)
    for (int64_t i = 0; i < n; i++) {
        float want = pattern(which, i);
        if (bf16) want = bf16_to_f32(f32_to_bf16(want));
        bad += memcmp(&x[i], &want, sizeof want) != 0;
    }
    return bad;
}

static struct optimizer *adam_bf16(struct gpt_model *m)
{
    struct optimizer_options o;
    char err[256];
    memset(&o, 0, sizeof o);
    o.type = OPTIMIZER_ADAM;
    o.adam = adam_params_default();
    o.clip_grad = 1.0;
    o.params_dtype = DT_BF16;
    scaler_init_constant(&o.scaler, 1.0);
    if (!lr_schedule_init(&o.schedule, 0.0, 1e-4, 1e-5, 0.0, 1000, LR_DECAY_COSINE, -1, LR_WSD_EXPONENTIAL, 0.1, 0.1,
                          1000, WD_INCR_CONSTANT, err, sizeof err))
        die_user("%s", err);
    struct buffer_range whole = {0, m->numel};
    return optimizer_create(m, &o, &whole, 1);
}

static double dir_bytes(const char *path)
{
    const char *files[2] = {CKPT_MODEL_FILE, CKPT_OPTIM_FILE};
    char file[CKPT_PATH_MAX + 64];
    double total = 0.0;
    for (int i = 0; i < 2; i++) {
        struct stat st;
        snprintf(file, sizeof file, "%.4096s/%s", path, files[i]);
        if (stat(file, &st) == 0) total += (double)st.st_size;
    }
    return total;
}

/* Writes 3 to /proc/sys/vm/drop_caches after a sync: the load then reads the disk, not memory. */
static bool drop_page_cache(void)
{
    sync();
    FILE *f = fopen("/proc/sys/vm/drop_caches", "w");
    if (!f) return false;
    bool ok = fputs("3\n", f) >= 0;
    ok = fclose(f) == 0 && ok;
    return ok;
}

static double mem_available_gb(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    double kb = 0.0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lf kB", &kb) == 1) break;
    if (f) fclose(f);
    return kb * 1024.0 / 1e9;
}

/* One save, a cold load into zeroed buffers, and the check that every element came back. */
static bool save_and_load(const char *ckpt_dir, struct gpt_model *m, struct optimizer *o)
{
    char err[1024];
    double t0;
    struct ckpt_state s = {m, o, DT_BF16, 100, 800, 0, NULL, NULL};
    struct ckpt_save_options so = {true, true, false, 0};
    struct ckpt_rank r = ckpt_rank_single();
    if (!drop_page_cache()) printf("note: cannot drop the page cache before saving (%s)\n", strerror(errno));
    t0 = now_seconds();
    double cpu0 = cpu_seconds();
    if (ckpt_save(ckpt_dir, &s, &so, &r, err, sizeof err)) die_user("save: %s", err);
    double save_s = now_seconds() - t0, save_cpu = cpu_seconds() - cpu0;
    char final[CKPT_PATH_MAX], tmp[CKPT_PATH_MAX], old[CKPT_PATH_MAX];
    ckpt_paths(ckpt_dir, false, 100, final, tmp, old);
    double bytes = dir_bytes(final);
    printf("checkpoint_bytes %.0f\n", bytes);
    printf("save_s %.2f\nsave_gbps %.3f\nsave_cpu_s %.2f\n", save_s, bytes / 1e9 / save_s, save_cpu);
    fflush(stdout);

    /* what the load must bring back */
    memset(m->weights, 0, (size_t)m->numel * sizeof(float));
    memset(o->main_params, 0, (size_t)o->owned * sizeof(float));
    memset(o->exp_avg, 0, (size_t)o->owned * sizeof(float));
    memset(o->exp_avg_sq, 0, (size_t)o->owned * sizeof(float));
    s.iteration = 0;
    bool dropped = drop_page_cache();
    printf("page_cache_dropped %s\n", dropped ? "yes" : "no");
    if (!dropped)
        printf("note: cannot write /proc/sys/vm/drop_caches (%s): the load may read part of the checkpoint from memory "
               "instead of the disk, so its rate is an upper bound\n", strerror(errno));
    fflush(stdout);
    struct ckpt_load_options lo = {true, true, false, 0, false};
    struct ckpt_loaded loaded;
    t0 = now_seconds();
    cpu0 = cpu_seconds();
    if (ckpt_load(ckpt_dir, &s, &lo, &r, &loaded, err, sizeof err)) die_user("load: %s", err);
    double load_s = now_seconds() - t0, load_cpu = cpu_seconds() - cpu0;
    printf("load_s %.2f\nload_gbps %.3f\nload_cpu_s %.2f\n", load_s, bytes / 1e9 / load_s, load_cpu);

    int64_t bad = mismatches(m->weights, m->numel, 1, true) + mismatches(o->main_params, o->owned, 1, false) +
                  mismatches(o->exp_avg, o->owned, 2, false) + mismatches(o->exp_avg_sq, o->owned, 3, false);
    bool ok = bad == 0 && s.iteration == 100 && loaded.optimizer_loaded;
    printf("read_back %s (%" PRId64 " elements differ)\n", ok ? "identical" : "DIFFERENT", bad);
    fflush(stdout);
    dirs_remove_tree(ckpt_dir);
    return ok;
}

int main(int argc, char **argv)
{
    struct bench_options b = parse(argc, argv);
    struct model_config c = gpt_config(&b);
    char ckpt_dir[CKPT_PATH_MAX];
    snprintf(ckpt_dir, sizeof ckpt_dir, "%.4000s/ckpt", b.dir);

    /* fp32 weights, main params and two moments, and room for the page cache to work in */
    double need_gb = 16.0 * (double)model_num_parameters(&c) / 1e9 + 2.0;
    if (mem_available_gb() < need_gb)
        die_user("ckpt_bench: %.1f GB of memory available, the benchmark needs %.1f GB (model state and 2 GB of page "
                 "cache); wait for other jobs to finish or use a smaller --num-layers", mem_available_gb(), need_gb);
    double t0 = now_seconds();
    struct gpt_model *m = gpt_create(&c, 1, DEV_CPU, NULL, 1);
    device_free(DEV_CPU, m->grads); /* no step runs: keep the memory for the page cache */
    m->grads = device_alloc(DEV_CPU, sizeof(float));
    fill(m->weights, m->numel, 1);
    struct optimizer *o = adam_bf16(m); /* main params = the pattern, weights rounded to bf16 */
    fill(o->exp_avg, o->owned, 2);
    fill(o->exp_avg_sq, o->owned, 3);
    printf("parameters %" PRId64 "\n", m->numel);
    printf("setup_s %.1f\n", now_seconds() - t0);
    printf("mem_available_gb %.1f\n", mem_available_gb());
    fflush(stdout);

    bool ok = true;
    for (int round = 0; round < b.repeat && ok; round++) ok = save_and_load(ckpt_dir, m, o);
    dirs_remove_tree(ckpt_dir);
    optimizer_free(o);
    gpt_free(m);
    return ok ? 0 : 1;
}
