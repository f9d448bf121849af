/* `megatron preprocess`: Megatron-LM's tools/preprocess_data.py in C. Reads JSONL (one document
 * per line), tokenizes the text under each --json-keys key with N worker threads, and writes
 * <output-prefix>_<key>_document.{bin,idx} byte for byte as Megatron does (uint16 tokens when the
 * vocabulary is under 65500, else int32). Document order is the input order (files of a glob in
 * sorted order); with --partitions P > 1 it is Megatron's round-robin order (line i goes to
 * partition i % P, partitions are concatenated) unless --keep-sequential-samples.
 * A bad line stops the run with its file and line number, leaving no output behind
 * (on_invalid "stop"), or is skipped and counted (on_invalid "skip"). */
#ifndef MEGATRON_DATA_PREPROCESS_H
#define MEGATRON_DATA_PREPROCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct preprocess_options {
    const char *input;         /* a JSONL path, or a glob */
    const char *output_prefix; /* outputs are <prefix>_<key>_document.{bin,idx} */
    char **json_keys;          /* json_keys_count of them; none means {"text"} */
    int json_keys_count;
    const char *tokenizer_type; /* GPT2BPETokenizer | NullTokenizer */
    const char *vocab_file, *merge_file;
    int64_t vocab_size; /* NullTokenizer */
    bool append_eod;
    int64_t workers;      /* >= 1 threads */
    int64_t log_interval; /* progress line every this many documents; <= 0: none */
    int64_t partitions;   /* >= 1 */
    bool keep_sequential_samples;
    const char *on_invalid; /* "stop" (also when NULL) or "skip" */
};

struct preprocess_result {
    int64_t documents;     /* documents written (per key) */
    int64_t skipped_lines; /* invalid lines skipped (on_invalid "skip") */
    int64_t tokens;        /* tokens written for the first key */
    uint64_t bytes;        /* input bytes read */
    double seconds;
};

/* Runs the whole job. 0 on success; -1 with a one-line "<what>: <why>; <what to do>" in err, and
 * no output file left behind. result may be NULL. Progress and warnings go to stderr. */
int preprocess_run(const struct preprocess_options *o, struct preprocess_result *result, char *err, size_t errlen);

/* preprocess_run for the command line: prints "megatron: error: ..." and returns 2 on failure,
 * else returns 0. */
int preprocess_main(const struct preprocess_options *o);

#endif
