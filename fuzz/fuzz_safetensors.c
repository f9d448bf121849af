/* libFuzzer target for ckpt/safetensors: any buffer must open or be refused with a message; an
 * opened file's tensors must lie inside the data, match dtype x shape, be aligned, and convert. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt/safetensors.h"
#include "fuzz/fuzz.h"

static void check_tensor(const struct st_file *f, const struct st_tensor *t)
{
    REQUIRE(st_find(f, t->name) == t);
    REQUIRE(t->ndim >= 0 && t->ndim <= ST_MAX_DIMS);
    REQUIRE((size_t)st_numel(t) * st_dtype_size(t->dtype) == t->nbytes);
    size_t align = t->dtype == ST_C64 ? 4 : st_dtype_size(t->dtype);
    REQUIRE((uintptr_t)t->data % align == 0);
    /* Touch every byte so the sanitizer sees any out-of-bounds pointer. */
    const unsigned char *p = t->data;
    unsigned sum = 0;
    for (size_t k = 0; k < t->nbytes; k++) sum += p[k];
    (void)sum;
    int64_t n = st_numel(t);
    if (n > (1 << 20)) return;
    float *out = malloc((size_t)(n ? n : 1) * sizeof(float));
    char err[256];
    int is_float = t->dtype == ST_F32 || t->dtype == ST_F64 || t->dtype == ST_F16 || t->dtype == ST_BF16;
    REQUIRE(st_to_f32(t, out, err, sizeof err) == (is_float ? 0 : -1));
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    err[0] = '\0';
    struct st_file *f = st_open_memory(data, size, err, sizeof err);
    if (!f) {
        REQUIRE(strncmp(err, "<memory>: ", 10) == 0 && strchr(err, '\n') == NULL);
        return 0;
    }
    size_t total = 0;
    for (size_t i = 0; i < st_count(f); i++) {
        const struct st_tensor *t = st_at(f, i);
        check_tensor(f, t);
        total += t->nbytes;
    }
    REQUIRE(st_at(f, st_count(f)) == NULL);
    REQUIRE(total <= size);
    (void)st_metadata(f, "format");
    st_close(f);
    return 0;
}
