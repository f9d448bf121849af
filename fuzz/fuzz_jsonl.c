/* libFuzzer target for `megatron preprocess` on JSONL input (data/preprocess.c with
 * NullTokenizer, so the texts are space-separated ids). Input: one byte of options (bit 0
 * --append-eod, bit 1 --on-invalid skip, bit 2 --partitions 2, bit 3 --keep-sequential-samples,
 * bit 4 the keys "text" and "title" instead of "text"), then the JSONL file's bytes. Any file must
 * be preprocessed or refused with one line and no output left behind, never crash; what is
 * written must be an .idx/.bin pair the reader accepts, with one document per line written. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/indexed.h"
#include "data/preprocess.h"
#include "fuzz/fuzz.h"

static char dir[64];

static void paths(char *out, size_t n, const char *key, const char *ext)
{
    snprintf(out, n, "%s/out_%s_document.%s", dir, key, ext);
}

/* The output pair of key: accepted by the .idx reader, with `documents` documents. */
static void check_output(const char *key, int64_t documents)
{
    char idx_path[128], bin_path[128];
    paths(idx_path, sizeof idx_path, key, "idx");
    paths(bin_path, sizeof bin_path, key, "bin");
    struct stat st;
    REQUIRE(stat(bin_path, &st) == 0);
    FILE *f = fopen(idx_path, "rb");
    REQUIRE(f != NULL);
    static unsigned char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    REQUIRE(feof(f));
    fclose(f);
    struct idx_index ix;
    char err[512];
    REQUIRE(idx_parse(buf, n, (uint64_t)st.st_size, idx_path, &ix, err, sizeof err) == 0);
    REQUIRE(ix.document_count == documents + 1);
}

static void remove_dir(void) { rmdir(dir); } /* each input's files are removed as it ends */

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > (1 << 16)) return 0;
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/fuzz_jsonl.XXXXXX");
        REQUIRE(mkdtemp(dir) != NULL);
        atexit(remove_dir);
    }
    char input[128], prefix[128];
    snprintf(input, sizeof input, "%s/in.jsonl", dir);
    snprintf(prefix, sizeof prefix, "%s/out", dir);
    FILE *f = fopen(input, "wb");
    REQUIRE(f != NULL);
    REQUIRE(fwrite(data + 1, 1, size - 1, f) == size - 1);
    fclose(f);
    char *keys[] = {"text", "title"};
    const uint8_t opt = data[0];
    struct preprocess_options o = {
        .input = input,
        .output_prefix = prefix,
        .json_keys = keys,
        .json_keys_count = opt & 16 ? 2 : 1,
        .tokenizer_type = "NullTokenizer",
        .vocab_size = 1000,
        .append_eod = opt & 1,
        .workers = 1,
        .log_interval = 0,
        .partitions = opt & 4 ? 2 : 1,
        .keep_sequential_samples = opt & 8,
        .on_invalid = opt & 2 ? "skip" : "stop",
    };
    struct preprocess_result r;
    char err[1024] = "";
    int rc = preprocess_run(&o, &r, err, sizeof err);
    for (int k = 0; k < o.json_keys_count; k++) {
        char idx_path[128], bin_path[128];
        paths(idx_path, sizeof idx_path, keys[k], "idx");
        paths(bin_path, sizeof bin_path, keys[k], "bin");
        if (rc == 0) {
            check_output(keys[k], r.documents);
        } else {
            REQUIRE(!exists(idx_path) && !exists(bin_path)); /* nothing half-written */
        }
        unlink(idx_path);
        unlink(bin_path);
    }
    if (rc != 0) REQUIRE(err[0] != '\0' && strchr(err, '\n') == NULL && strchr(err, '\r') == NULL);
    unlink(input);
    return 0;
}
