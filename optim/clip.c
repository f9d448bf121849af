/* Global L2 norm over several flat fp32 ranges (deterministic chunked double sum) and scaling by
 * Megatron's clip coefficient. */
#include "optim/clip.h"

#include <math.h>
#include <stddef.h>

#include "util/error.h"

/* Below this many elements in total a thread team costs more than it saves. */
#define CLIP_OMP_MIN_N 65536

static int64_t clip_total_len(const int64_t *lens, int count)
{
    int64_t total = 0;
    for (int k = 0; k < count; k++) {
        CHECK(lens[k] >= 0);
        total += lens[k];
    }
    return total;
}

/* First index of chunk c: floor(total * c / CLIP_NORM_CHUNKS), without overflowing int64. */
static int64_t clip_chunk_begin(int64_t total, int c)
{
    const int64_t q = total / CLIP_NORM_CHUNKS, r = total % CLIP_NORM_CHUNKS;
    return q * c + r * c / CLIP_NORM_CHUNKS;
}

/* Sum of squares of elements [begin, end) of the concatenation of the ranges, in index order. */
static double clip_sum_sq_span(const float *const *bufs, const int64_t *lens, int count,
                               int64_t begin, int64_t end)
{
    double sum = 0.0;
    int64_t base = 0; /* index of bufs[k][0] in the concatenation */
    for (int k = 0; k < count && base < end; base += lens[k], k++) {
        int64_t lo = begin > base ? begin - base : 0;
        int64_t hi = end - base < lens[k] ? end - base : lens[k];
        const float *b = bufs[k];
        for (int64_t i = lo; i < hi; i++) {
            const double x = b[i];
            sum += x * x;
        }
    }
    return sum;
}

double clip_global_norm_sq(const float *const *bufs, const int64_t *lens, int count)
{
    CHECK(count >= 0);
    const int64_t total = clip_total_len(lens, count);
    double partial[CLIP_NORM_CHUNKS];

#pragma omp parallel for schedule(static) if (total >= CLIP_OMP_MIN_N)
    for (int c = 0; c < CLIP_NORM_CHUNKS; c++) {
        /* Chunk bounds depend on the total length only, never on the split into ranges. */
        partial[c] = clip_sum_sq_span(bufs, lens, count, clip_chunk_begin(total, c),
                                      clip_chunk_begin(total, c + 1));
    }

    double sum = 0.0;
    for (int c = 0; c < CLIP_NORM_CHUNKS; c++) sum += partial[c];
    return sum;
}

void clip_scale(float *const *bufs, const int64_t *lens, int count, double coeff)
{
    const float s = (float)coeff;
    for (int k = 0; k < count; k++) {
        float *b = bufs[k];
        const int64_t n = lens[k];
        CHECK(n >= 0);
#pragma omp parallel for schedule(static) if (n >= CLIP_OMP_MIN_N)
        for (int64_t i = 0; i < n; i++) b[i] = b[i] * s;
    }
}

bool clip_coeff(double total_norm, double max_norm, double *coeff)
{
    /* clip_grads.py:clip_grad_by_total_norm_fp32: max_norm / (total_norm + 1.0e-6), if < 1. */
    if (!(max_norm > 0.0) || !isfinite(total_norm)) return false;
    const double c = max_norm / (total_norm + 1.0e-6);
    if (!(c < 1.0)) return false;
    *coeff = c;
    return true;
}

double clip_grad_by_total_norm(float *const *bufs, const int64_t *lens, int count, double max_norm)
{
    const double norm = sqrt(clip_global_norm_sq((const float *const *)bufs, lens, count));
    double coeff;
    if (clip_coeff(norm, max_norm, &coeff)) clip_scale(bufs, lens, count, coeff);
    return norm;
}
