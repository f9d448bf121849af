/* `megatron preprocess`: input files and globs, the chunk pipeline (the main thread cuts the
 * memory-mapped input into chunks of whole lines, worker threads tokenize them, the main thread
 * writes their results in input order), the per-line rules of preprocess_data.py's
 * Encoder.encode, progress lines and errors. */
#include "data/preprocess.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "data/indexed_writer.h"
#include "data/tokenizer.h"
#include "util/error.h"
#include "util/json.h"

struct input_file {
    char *path;
    const char *data; /* mapped read-only; NULL when empty */
    size_t len;
};

/* One key's output for the documents of a chunk: all ids, every sequence length, and the number
 * of sequences of each document (0 for a document with no tokens, which Megatron still records). */
struct key_out {
    struct token_ids ids, lens, nseq;
};

enum line_status { LINE_OK, LINE_INVALID, LINE_FATAL };

struct chunk {
    size_t file;
    const char *data;
    size_t len;
    uint64_t first_line;   /* 1-based line number within its file */
    uint64_t first_global; /* 0-based index over the lines of all files, for --partitions */
    struct key_out *keys;
    int64_t docs, skipped;
    uint64_t bytes;
    enum line_status status; /* LINE_OK unless a bad line stopped the chunk */
    uint64_t bad_line;       /* the first bad line (stopping or skipped), and why */
    char why[300];
    bool done;
};

struct job {
    const struct preprocess_options *o;
    char **keys;
    int nkeys;
    bool skip_invalid;
    uint64_t passes; /* partitions, when their order differs from the input order */
    struct tokenizer *tok;
    struct input_file *files;
    size_t nfiles;
    uint64_t total_bytes, chunk_target;

    pthread_mutex_t mu;
    pthread_cond_t work_cv, done_cv;
    struct chunk *slots; /* a ring: chunk i lives in slots[i % nslots] */
    size_t nslots;
    uint64_t pass, created, assigned, written;
    bool no_more, stop;

    struct indexed_writer **writers;
    struct preprocess_result res;
    char first_skip[400];
    struct timespec start;
    int64_t next_log;
};

struct worker {
    struct job *job;
    pthread_t thread;
    struct tokenizer_scratch *scratch;
};

static double seconds_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + 1e-9 * (double)(t.tv_nsec - t0->tv_nsec);
}

/* ---- input ---- */

static int map_file(struct input_file *f, char *err, size_t errlen)
{
    int fd = open(f->path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        error_set(err, errlen, "--input %s: %s; check the path", f->path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        error_set(err, errlen, "--input %s: not a regular file; pass a JSONL file or a glob of them", f->path);
        close(fd);
        return -1;
    }
    f->len = (size_t)st.st_size;
    if (f->len > 0) {
        void *p = mmap(NULL, f->len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            error_set(err, errlen, "--input %s: cannot map: %s", f->path, strerror(errno));
            close(fd);
            return -1;
        }
        madvise(p, f->len, MADV_SEQUENTIAL);
        f->data = p;
    }
    close(fd);
    return 0;
}

static bool has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* The input path itself when it exists, else the files its glob matches (sorted; Python's
 * glob.glob leaves them in directory order). */
static int open_inputs(struct job *job, const char *input, char *err, size_t errlen)
{
    struct stat st;
    glob_t g = {0};
    const char *single[1] = {input};
    const char **paths;
    size_t n;
    if (stat(input, &st) == 0) {
        paths = single;
        n = 1;
    } else if (glob(input, 0, NULL, &g) == 0 && g.gl_pathc > 0) {
        paths = (const char **)g.gl_pathv;
        n = g.gl_pathc;
    } else {
        globfree(&g);
        error_set(err, errlen, "--input %s: no such file, and no file matches it as a glob; check the path", input);
        return -1;
    }
    job->files = xcalloc(n, sizeof(*job->files));
    job->nfiles = n;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        job->files[i].path = xstrdup(paths[i]);
        if (has_suffix(paths[i], ".gz")) {
            error_set(err, errlen, "--input %s: gzip input is not supported yet; decompress it first", paths[i]);
            rc = -1;
        } else {
            rc = map_file(&job->files[i], err, errlen);
            job->total_bytes += job->files[i].len;
        }
    }
    globfree(&g);
    return rc;
}

static void close_inputs(struct job *job)
{
    for (size_t i = 0; i < job->nfiles; i++) {
        if (job->files[i].data) munmap((void *)job->files[i].data, job->files[i].len);
        free(job->files[i].path);
    }
    free(job->files);
}

/* ---- one line: preprocess_data.py's Encoder.encode ---- */

/* Python's json.loads keeps the last of repeated keys. */
static const struct json_value *member_last(const struct json_value *obj, const char *key)
{
    const struct json_value *found = NULL;
    size_t klen = strlen(key);
    for (size_t i = 0; i < json_count(obj); i++) {
        size_t n;
        const char *k = json_key(obj, i, &n);
        if (n == klen && memcmp(k, key, n) == 0) found = json_member(obj, i);
    }
    return found;
}

static bool is_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return false;
    return true;
}

/* Tokenizes one value (a string, or a list of strings = sentences) into out: each non-empty
 * sentence is a sequence; with append_eod the last sequence gets the EOD token. */
static enum line_status encode_value(const struct job *job, struct tokenizer_scratch *scratch,
                                     const struct json_value *v, const char *key, struct key_out *out, char *why,
                                     size_t whylen)
{
    bool list = json_type(v) == JSON_ARRAY;
    size_t count = list ? json_count(v) : 1, nseq = 0;
    for (size_t i = 0; i < count; i++) {
        const struct json_value *s = list ? json_at(v, i) : v;
        size_t len;
        const char *text = json_string(s, &len);
        if (!text) {
            error_set(why, whylen, "the value of \"%s\" is not a string or a list of strings", key);
            return LINE_FATAL;
        }
        size_t before = out->ids.len;
        char terr[256];
        if (tokenizer_encode(job->tok, scratch, text, len, &out->ids, terr, sizeof(terr)) != 0) {
            error_set(why, whylen, "\"%s\": %s", key, terr);
            return LINE_INVALID;
        }
        if (out->ids.len > before) {
            token_ids_push(&out->lens, (int32_t)(out->ids.len - before));
            nseq++;
        }
    }
    if (nseq > 0 && job->o->append_eod) {
        token_ids_push(&out->ids, (int32_t)tokenizer_eod(job->tok));
        out->lens.ids[out->lens.len - 1]++;
    }
    token_ids_push(&out->nseq, (int32_t)nseq);
    return LINE_OK;
}

static enum line_status encode_line(const struct job *job, struct tokenizer_scratch *scratch, const char *line,
                                    size_t len, struct chunk *c, char *why, size_t whylen)
{
    if (is_blank(line, len)) {
        error_set(why, whylen, "empty line");
        return LINE_INVALID;
    }
    char jerr[200];
    struct json_doc *doc = json_parse(line, len, jerr, sizeof(jerr));
    if (!doc) {
        error_set(why, whylen, "invalid JSON: %s", jerr);
        return LINE_INVALID;
    }
    enum line_status st = LINE_OK;
    const struct json_value *root = json_root(doc);
    if (json_type(root) != JSON_OBJECT) {
        error_set(why, whylen, "not a JSON object; each line must be one {\"key\": \"text\", ...} document");
        st = LINE_FATAL;
    }
    for (int k = 0; k < job->nkeys && st == LINE_OK; k++) {
        const struct json_value *v = member_last(root, job->keys[k]);
        if (!v) {
            error_set(why, whylen, "no key \"%s\"; pass --json-keys with the keys that hold the text", job->keys[k]);
            st = LINE_FATAL;
        } else {
            st = encode_value(job, scratch, v, job->keys[k], &c->keys[k], why, whylen);
        }
    }
    json_free(doc);
    return st;
}

/* Tokenizes the lines of a chunk that belong to the current pass. A bad line is skipped and
 * counted (skip mode, LINE_INVALID) or ends the chunk with its status. */
static void process_chunk(struct job *job, struct tokenizer_scratch *scratch, struct chunk *c)
{
    uint64_t line = c->first_line, global = c->first_global;
    for (size_t pos = 0; pos < c->len; line++, global++) {
        const char *nl = memchr(c->data + pos, '\n', c->len - pos);
        size_t end = nl ? (size_t)(nl - c->data) : c->len;
        const char *text = c->data + pos;
        size_t len = end - pos;
        pos = end + 1;
        if (global % job->passes != job->pass) continue;
        c->bytes += len + (nl != NULL);
        size_t mark[16][3];
        for (int k = 0; k < job->nkeys; k++) {
            mark[k][0] = c->keys[k].ids.len;
            mark[k][1] = c->keys[k].lens.len;
            mark[k][2] = c->keys[k].nseq.len;
        }
        char why[sizeof(c->why)];
        enum line_status st = encode_line(job, scratch, text, len, c, why, sizeof(why));
        if (st == LINE_OK) {
            c->docs++;
            continue;
        }
        for (int k = 0; k < job->nkeys; k++) { /* drop what the bad line had added */
            c->keys[k].ids.len = mark[k][0];
            c->keys[k].lens.len = mark[k][1];
            c->keys[k].nseq.len = mark[k][2];
        }
        if (c->bad_line == 0) {
            c->bad_line = line;
            memcpy(c->why, why, sizeof(why));
        }
        if (st == LINE_INVALID && job->skip_invalid) {
            c->skipped++;
            continue;
        }
        c->bad_line = line;
        memcpy(c->why, why, sizeof(why));
        c->status = st;
        return;
    }
}

/* ---- the pipeline ---- */

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct job *job = w->job;
    pthread_mutex_lock(&job->mu);
    for (;;) {
        while (job->assigned == job->created && !job->no_more && !job->stop)
            pthread_cond_wait(&job->work_cv, &job->mu);
        if (job->stop || job->assigned == job->created) break;
        struct chunk *c = &job->slots[job->assigned++ % job->nslots];
        pthread_mutex_unlock(&job->mu);
        process_chunk(job, w->scratch, c);
        pthread_mutex_lock(&job->mu);
        c->done = true;
        pthread_cond_signal(&job->done_cv);
    }
    pthread_mutex_unlock(&job->mu);
    return NULL;
}

static void print_progress(struct job *job)
{
    double t = seconds_since(&job->start);
    double mbs = (double)job->res.bytes / t / 1024 / 1024;
    double left = job->res.bytes ? t * (double)(job->total_bytes - job->res.bytes) / (double)job->res.bytes : 0;
    long eta = (long)(left + 0.5);
    fprintf(stderr, "Processed %lld documents (%.1f docs/s, %.2f MB/s), ETA %ld:%02ld:%02ld.\n",
            (long long)job->res.documents, (double)job->res.documents / t, mbs, eta / 3600, eta / 60 % 60, eta % 60);
}

/* Appends a finished chunk's documents to the outputs, in order. */
static int write_chunk(struct job *job, const struct chunk *c, char *err, size_t errlen)
{
    for (int k = 0; k < job->nkeys; k++) {
        const struct key_out *out = &c->keys[k];
        size_t id_off = 0, len_off = 0;
        for (size_t d = 0; d < out->nseq.len; d++) {
            size_t nseq = (size_t)out->nseq.ids[d], n = 0;
            for (size_t s = 0; s < nseq; s++) n += (size_t)out->lens.ids[len_off + s];
            if (indexed_writer_add_document(job->writers[k], out->ids.ids + id_off, n, out->lens.ids + len_off, nseq,
                                            err, errlen) != 0)
                return -1;
            id_off += n;
            len_off += nseq;
        }
        if (k == 0) job->res.tokens += (int64_t)out->ids.len;
    }
    job->res.documents += c->docs;
    job->res.skipped_lines += c->skipped;
    job->res.bytes += c->bytes;
    if (c->skipped && !job->first_skip[0])
        snprintf(job->first_skip, sizeof(job->first_skip), "%s line %llu: %s", job->files[c->file].path,
                 (unsigned long long)c->bad_line, c->why);
    if (job->o->log_interval > 0 && job->res.documents >= job->next_log) {
        print_progress(job);
        job->next_log = (job->res.documents / job->o->log_interval + 1) * job->o->log_interval;
    }
    return 0;
}

/* Waits for the oldest chunk, writes it, frees its slot. */
static int write_next(struct job *job, char *err, size_t errlen)
{
    struct chunk *c = &job->slots[job->written % job->nslots];
    pthread_mutex_lock(&job->mu);
    while (!c->done) pthread_cond_wait(&job->done_cv, &job->mu);
    pthread_mutex_unlock(&job->mu);
    if (c->status != LINE_OK) {
        const char *fix = c->status == LINE_INVALID ? "; fix or remove the line, or pass --on-invalid skip to skip "
                                                      "such lines"
                                                    : "";
        error_set(err, errlen, "%s line %llu: %s%s", job->files[c->file].path, (unsigned long long)c->bad_line, c->why,
                fix);
        return -1;
    }
    int rc = write_chunk(job, c, err, errlen);
    job->written++;
    return rc;
}

static uint64_t count_lines(const char *p, size_t n)
{
    uint64_t lines = 0;
    for (const char *end = p + n; (p = memchr(p, '\n', (size_t)(end - p))) != NULL; p++) lines++;
    return lines;
}

/* Hands the workers chunks of whole lines covering every file once, writing results as slots are
 * needed. */
static int run_pass(struct job *job, char *err, size_t errlen)
{
    uint64_t global = 0;
    for (size_t f = 0; f < job->nfiles; f++) {
        const struct input_file *in = &job->files[f];
        uint64_t line = 1;
        for (size_t pos = 0; pos < in->len;) {
            if (job->created - job->written == job->nslots && write_next(job, err, errlen) != 0) return -1;
            size_t end = pos + job->chunk_target < in->len ? pos + job->chunk_target : in->len;
            const char *nl = end < in->len ? memchr(in->data + end, '\n', in->len - end) : NULL;
            end = nl ? (size_t)(nl - in->data) + 1 : in->len;
            struct chunk *c = &job->slots[job->created % job->nslots];
            for (int k = 0; k < job->nkeys; k++)
                c->keys[k].ids.len = c->keys[k].lens.len = c->keys[k].nseq.len = 0;
            c->file = f;
            c->data = in->data + pos;
            c->len = end - pos;
            c->first_line = line;
            c->first_global = global;
            c->docs = c->skipped = 0;
            c->bytes = c->bad_line = 0;
            c->status = LINE_OK;
            c->done = false;
            uint64_t lines = count_lines(c->data, c->len) + (in->data[end - 1] != '\n');
            line += lines;
            global += lines;
            pos = end;
            pthread_mutex_lock(&job->mu);
            job->created++;
            pthread_cond_signal(&job->work_cv);
            pthread_mutex_unlock(&job->mu);
        }
    }
    while (job->written < job->created)
        if (write_next(job, err, errlen) != 0) return -1;
    return 0;
}

/* ---- the job ---- */

static void abort_outputs(void *arg)
{
    struct job *job = arg;
    for (int k = 0; k < job->nkeys; k++) {
        indexed_writer_abort(job->writers[k]);
        job->writers[k] = NULL;
    }
}

static int open_outputs(struct job *job, char *err, size_t errlen)
{
    job->writers = xcalloc((size_t)job->nkeys, sizeof(*job->writers));
    enum idx_dtype dtype = indexed_writer_optimal_dtype(tokenizer_vocab_size(job->tok));
    for (int k = 0; k < job->nkeys; k++) {
        size_t n = strlen(job->o->output_prefix) + strlen(job->keys[k]) + 16;
        char *prefix = xmalloc(n);
        snprintf(prefix, n, "%s_%s_document", job->o->output_prefix, job->keys[k]);
        char why[600];
        job->writers[k] = indexed_writer_open(prefix, dtype, why, sizeof(why));
        free(prefix);
        if (!job->writers[k]) {
            error_set(err, errlen, "--output-prefix %s: %s; check that its directory exists and is writable",
                    job->o->output_prefix, why);
            return -1;
        }
    }
    error_push_cleanup(abort_outputs, job);
    return 0;
}

static int finish_outputs(struct job *job, char *err, size_t errlen)
{
    for (int k = 0; k < job->nkeys; k++)
        if (indexed_writer_finish(job->writers[k], err, errlen) != 0) return -1;
    error_pop_cleanup(abort_outputs, job);
    int rc = 0;
    for (int k = 0; k < job->nkeys; k++) {
        if (rc == 0) rc = indexed_writer_commit(job->writers[k], err, errlen);
        else indexed_writer_abort(job->writers[k]);
        job->writers[k] = NULL;
    }
    return rc;
}

static int check_options(const struct preprocess_options *o, char *err, size_t errlen)
{
    if (!o->input || !o->output_prefix) {
        error_set(err, errlen, "preprocess needs --input and --output-prefix");
        return -1;
    }
    if (o->workers < 1 || o->workers > 1024) {
        error_set(err, errlen, "--workers %lld: must be between 1 and 1024", (long long)o->workers);
        return -1;
    }
    if (o->partitions < 1) {
        error_set(err, errlen, "--partitions %lld: must be at least 1", (long long)o->partitions);
        return -1;
    }
    if (o->on_invalid && strcmp(o->on_invalid, "stop") != 0 && strcmp(o->on_invalid, "skip") != 0) {
        error_set(err, errlen, "--on-invalid %s: unknown choice; use stop or skip", o->on_invalid);
        return -1;
    }
    if (o->json_keys_count > 16) {
        error_set(err, errlen, "--json-keys: %d keys given; at most 16 are supported", o->json_keys_count);
        return -1;
    }
    return 0;
}

static int setup_job(struct job *job, const struct preprocess_options *o, char *err, size_t errlen)
{
    static char *default_keys[] = {"text"};
    job->o = o;
    job->keys = o->json_keys_count > 0 ? o->json_keys : default_keys;
    job->nkeys = o->json_keys_count > 0 ? o->json_keys_count : 1;
    job->skip_invalid = o->on_invalid && strcmp(o->on_invalid, "skip") == 0;
    job->passes = o->partitions > 1 && !o->keep_sequential_samples ? (uint64_t)o->partitions : 1;
    struct tokenizer_options to = {o->tokenizer_type, o->vocab_file, o->merge_file, o->vocab_size};
    char why[600];
    job->tok = tokenizer_create(&to, why, sizeof(why));
    if (!job->tok) {
        error_set(err, errlen, "%s", why);
        return -1;
    }
    if (open_inputs(job, o->input, err, errlen) != 0) return -1;
    /* about 16 chunks per worker, so that threads stay busy to the end, within [64 KiB, 4 MiB] */
    uint64_t target = job->total_bytes / ((uint64_t)o->workers * 16);
    job->chunk_target = target < (64u << 10) ? (64u << 10) : target > (4u << 20) ? (4u << 20) : target;
    job->nslots = 4 * (size_t)o->workers;
    job->slots = xcalloc(job->nslots, sizeof(*job->slots));
    for (size_t i = 0; i < job->nslots; i++) job->slots[i].keys = xcalloc((size_t)job->nkeys, sizeof(struct key_out));
    return open_outputs(job, err, errlen);
}

static void free_job(struct job *job)
{
    if (job->writers) {
        for (int k = 0; k < job->nkeys; k++) indexed_writer_abort(job->writers[k]);
        error_pop_cleanup(abort_outputs, job);
        free(job->writers);
    }
    for (size_t i = 0; job->slots && i < job->nslots; i++) {
        for (int k = 0; k < job->nkeys; k++) {
            token_ids_free(&job->slots[i].keys[k].ids);
            token_ids_free(&job->slots[i].keys[k].lens);
            token_ids_free(&job->slots[i].keys[k].nseq);
        }
        free(job->slots[i].keys);
    }
    free(job->slots);
    close_inputs(job);
    tokenizer_free(job->tok);
}

/* Starts the workers, runs every pass, stops the workers. */
static int run_workers(struct job *job, char *err, size_t errlen)
{
    size_t n = (size_t)job->o->workers;
    struct worker *w = xcalloc(n, sizeof(*w));
    pthread_mutex_init(&job->mu, NULL);
    pthread_cond_init(&job->work_cv, NULL);
    pthread_cond_init(&job->done_cv, NULL);
    size_t started = 0;
    int rc = 0;
    for (; started < n; started++) {
        w[started].job = job;
        w[started].scratch = tokenizer_scratch_create(job->tok);
        if (pthread_create(&w[started].thread, NULL, worker_main, &w[started]) != 0) {
            tokenizer_scratch_free(w[started].scratch);
            error_set(err, errlen, "--workers %zu: cannot start thread %zu: out of resources; use fewer workers", n,
                    started);
            rc = -1;
            break;
        }
    }
    for (job->pass = 0; rc == 0 && job->pass < job->passes; job->pass++) rc = run_pass(job, err, errlen);
    pthread_mutex_lock(&job->mu);
    job->no_more = true;
    job->stop = rc != 0;
    pthread_cond_broadcast(&job->work_cv);
    pthread_mutex_unlock(&job->mu);
    for (size_t i = 0; i < started; i++) {
        pthread_join(w[i].thread, NULL);
        tokenizer_scratch_free(w[i].scratch);
    }
    free(w);
    pthread_cond_destroy(&job->done_cv);
    pthread_cond_destroy(&job->work_cv);
    pthread_mutex_destroy(&job->mu);
    return rc;
}

int preprocess_run(const struct preprocess_options *o, struct preprocess_result *result, char *err, size_t errlen)
{
    if (check_options(o, err, errlen) != 0) return -1;
    struct job job = {0};
    clock_gettime(CLOCK_MONOTONIC, &job.start);
    job.next_log = o->log_interval > 0 ? o->log_interval : INT64_MAX;
    int rc = setup_job(&job, o, err, errlen);
    if (rc == 0) rc = run_workers(&job, err, errlen);
    if (rc == 0) rc = finish_outputs(&job, err, errlen);
    job.res.seconds = seconds_since(&job.start);
    if (rc == 0 && job.res.skipped_lines > 0)
        warn_user("skipped %lld invalid line(s) of %s (the first: %s)", (long long)job.res.skipped_lines, o->input,
                  job.first_skip);
    if (result) *result = job.res;
    free_job(&job);
    return rc;
}

int preprocess_main(const struct preprocess_options *o)
{
    char err[1024];
    struct preprocess_result r;
    if (preprocess_run(o, &r, err, sizeof(err)) != 0) {
        fflush(stdout);
        fprintf(stderr, "megatron: error: %s\n", err);
        return EXIT_USER_ERROR;
    }
    fprintf(stderr, "Processed %lld documents, %lld tokens per key, in %.2f s (%.2f MB/s).\n",
            (long long)r.documents, (long long)r.tokens, r.seconds, (double)r.bytes / r.seconds / 1024 / 1024);
    return 0;
}
