/* sum64 over tensor elements (definition in ckpt/checksum.h). */
#include "ckpt/checksum.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "kernels/rng.h"

#define INDEX_KEY 0x9e3779b97f4a7c15ull
#define PARALLEL_MIN (1 << 16) /* below this, threads cost more than they save */

static inline uint64_t element_bits(const unsigned char *p, size_t itemsize)
{
    uint64_t b = 0;
    for (size_t k = 0; k < itemsize; k++) b |= (uint64_t)p[k] << (8 * k); /* little-endian */
    return b;
}

static inline uint64_t term(uint64_t index, uint64_t bits)
{
    return rng_mix64(rng_mix64(index + INDEX_KEY) ^ bits);
}

/* Typed loops so the compiler sees fixed-size loads. */
static uint64_t sum_u16(const unsigned char *p, uint64_t first, int64_t n)
{
    uint64_t s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static) if (n >= PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) {
        uint16_t v;
        memcpy(&v, p + 2 * i, 2);
        s += term(first + (uint64_t)i, v);
    }
    return s;
}

static uint64_t sum_u32(const unsigned char *p, uint64_t first, int64_t n)
{
    uint64_t s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static) if (n >= PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) {
        uint32_t v;
        memcpy(&v, p + 4 * i, 4);
        s += term(first + (uint64_t)i, v);
    }
    return s;
}

uint64_t checksum_sum64(const void *data, size_t itemsize, int64_t first_index, int64_t n)
{
    const unsigned char *p = data;
    /* the memcpy loads above read host order; checkpoints are little-endian, as x86 and ARM are */
    if (itemsize == 2) return sum_u16(p, (uint64_t)first_index, n);
    if (itemsize == 4) return sum_u32(p, (uint64_t)first_index, n);
    uint64_t s = 0;
    for (int64_t i = 0; i < n; i++) s += term((uint64_t)(first_index + i), element_bits(p + (size_t)i * itemsize, itemsize));
    return s;
}

void checksum_format(uint64_t sum, char out[23]) { snprintf(out, 23, "sum64:%016" PRIx64, sum); }

int checksum_parse(const char *text, uint64_t *sum)
{
    if (!text || strncmp(text, "sum64:", 6) != 0 || strlen(text) != 22) return -1;
    uint64_t v = 0;
    for (const char *c = text + 6; *c; c++) {
        int d = *c >= '0' && *c <= '9' ? *c - '0' : *c >= 'a' && *c <= 'f' ? *c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v << 4 | (uint64_t)d;
    }
    *sum = v;
    return 0;
}
