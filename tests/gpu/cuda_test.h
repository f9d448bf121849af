/* Shared by the GPU op tests (tests/gpu/test_cuda_ops*.c, one binary): per-test allocations,
 * the 16-bit type under test (A.dt: bf16 or fp16), random inputs rounded to it, host/device tensors, the relative-L2 and bitwise comparisons, the
 * tolerances (their reasoning in test_cuda_ops.c), and the tests the runner calls. */
#ifndef MEGATRON_TESTS_GPU_CUDA_TEST_H
#define MEGATRON_TESTS_GPU_CUDA_TEST_H

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/rng.h"
#include "util/error.h"

#define TOL_LP 1e-2
#define TOL_F32 1e-4

/* ---- per-test allocations, freed together when the test ends ---- */

enum { MAX_ALLOCS = 1024 };
struct allocs {
    void *host[MAX_ALLOCS], *dev[MAX_ALLOCS];
    int nhost, ndev;
    uint64_t seed, counter; /* random stream of this test */
    enum dtype dt;          /* the 16-bit type of weights and activations: DT_BF16 or DT_F16 */
};
extern struct allocs A; /* defined in test_cuda_ops.c */

static inline void *halloc(size_t bytes)
{
    CHECK(A.nhost < MAX_ALLOCS);
    return A.host[A.nhost++] = xcalloc(1, bytes ? bytes : 1);
}

static inline void *dalloc(size_t bytes)
{
    CHECK(A.ndev < MAX_ALLOCS);
    return A.dev[A.ndev++] = cuda_alloc(bytes);
}

static inline void free_all(void)
{
    for (int i = 0; i < A.nhost; i++) free(A.host[i]);
    for (int i = 0; i < A.ndev; i++) cuda_free(A.dev[i]);
    A.nhost = A.ndev = 0;
}

/* ---- data ---- */

/* n normal values times scale, rounded to A.dt (what the GPU will hold). */
static inline float *randn(int64_t n, float scale)
{
    float *x = halloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) x[i] = (float)rng_normal(A.seed, 1, A.counter++) * scale;
    round_to_dtype(x, n, A.dt);
    return x;
}

/* The spacing of A.dt's values next to v (v itself representable): 8 significant bits for bf16,
 * 11 for fp16, whose subnormals below 2^-14 are 2^-24 apart. */
static inline float lp_step(float v)
{
    if (A.dt == DT_BF16) return fabsf(v) * 0x1p-7f;
    return fmaxf(fabsf(v) * 0x1p-10f, 0x1p-24f);
}

static inline int32_t *rand_ids(int64_t n, int64_t bound)
{
    int32_t *x = halloc((size_t)n * sizeof(int32_t));
    for (int64_t i = 0; i < n; i++) x[i] = (int32_t)(rng_bits(A.seed, 2, A.counter++) % bound);
    return x;
}

static inline float *copy_f(const float *x, int64_t n)
{
    float *y = halloc((size_t)n * sizeof(float));
    memcpy(y, x, (size_t)n * sizeof(float));
    return y;
}

/* x rounded to A.dt, on the device. */
static inline void *to_dev_lp(const float *x, int64_t n)
{
    uint16_t *h = halloc((size_t)n * 2);
    for (int64_t i = 0; i < n; i++) h[i] = A.dt == DT_F16 ? f32_to_f16(x[i]) : f32_to_bf16(x[i]);
    void *d = dalloc((size_t)n * 2);
    cuda_memcpy_h2d(d, h, (size_t)n * 2);
    return d;
}

static inline void *to_dev(const void *x, size_t bytes)
{
    void *d = dalloc(bytes);
    cuda_memcpy_h2d(d, x, bytes);
    return d;
}

/* Fills device memory with NaN so an unwritten output cannot pass. */
static inline void poison(void *d, int64_t n, enum dtype dt)
{
    size_t es = dtype_size(dt);
    unsigned char *h = halloc((size_t)n * es);
    for (int64_t i = 0; i < n; i++) {
        if (dt == DT_BF16 || dt == DT_F16) {
            uint16_t v = dt == DT_BF16 ? 0x7fc0 : 0x7e00;
            memcpy(h + i * es, &v, 2);
        } else {
            float v = NAN;
            memcpy(h + i * es, &v, 4);
        }
    }
    cuda_memcpy_h2d(d, h, (size_t)n * es);
}

/* n A.dt values from the device, widened. */
static inline float *from_dev_lp(const void *d, int64_t n)
{
    uint16_t *h = halloc((size_t)n * 2);
    cuda_memcpy_d2h(h, d, (size_t)n * 2);
    float *x = halloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) x[i] = A.dt == DT_F16 ? f16_to_f32(h[i]) : bf16_to_f32(h[i]);
    return x;
}

static inline float *from_dev_f32(const void *d, int64_t n)
{
    float *x = halloc((size_t)n * sizeof(float));
    cuda_memcpy_d2h(x, d, (size_t)n * sizeof(float));
    return x;
}

static inline struct tensor H2(float *p, int64_t a, int64_t b)
{
    return tensor_2d(p, DT_F32, DEV_CPU, a, b);
}
static inline struct tensor H1(void *p, enum dtype dt, int64_t a) { return tensor_1d(p, dt, DEV_CPU, a); }
static inline struct tensor D2(void *p, enum dtype dt, int64_t a, int64_t b)
{
    return tensor_2d(p, dt, DEV_CUDA, a, b);
}
static inline struct tensor D1(void *p, enum dtype dt, int64_t a) { return tensor_1d(p, dt, DEV_CUDA, a); }

/* ---- comparison ---- */

static inline double rel_l2(const float *got, const float *want, int64_t n)
{
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(got[i]) || isnan(want[i])) return INFINITY;
        double d = (double)got[i] - want[i];
        num += d * d;
        den += (double)want[i] * want[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static inline bool close_to(const char *what, const float *got, const float *want, int64_t n, double tol)
{
    double e = rel_l2(got, want, n);
    bool ok = e <= tol;
    printf("    %-34s rel L2 %.2e (tol %.0e) %s\n", what, e, tol, ok ? "ok" : "FAIL");
    return ok;
}

static inline bool bitwise(const char *what, const float *got, const float *want, int64_t n)
{
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad += memcmp(&got[i], &want[i], sizeof(float)) != 0;
    printf("    %-34s %lld of %lld differ bitwise %s\n", what, (long long)bad, (long long)n,
           bad ? "FAIL" : "ok");
    return bad == 0;
}

/* B, T, heads, groups, head dim; all heads on this rank. */
static inline struct attention_shape shape(int64_t B, int64_t T, int n, int g, int d)
{
    struct attention_shape s = {.batch = B, .seq = T, .heads = n, .groups = g, .head_dim = d};
    return s;
}

/* ---- the tests (each file's), in the runner's table ---- */

bool test_linear_matches_cpu(void);
bool test_linear_residual_matches_cpu(void);
bool test_linear_weight_grad_matches_cpu(void);
bool test_linear_gelu_matches_cpu(void);
bool test_linear_gelu_saving_grad_matches_cpu(void);
bool test_embedding_matches_cpu_and_backward_is_bitwise(void);
bool test_norms_match_cpu(void);
bool test_norm_weight_gradients_alone_match_cpu(void);
bool test_bias_dropout_add_norm_matches_cpu(void);
bool test_norm_backward_add_matches_cpu(void);
bool test_activations_match_cpu(void);
bool test_rope_matches_cpu(void);
bool test_attention_mha_matches_cpu(void);
bool test_attention_gqa_matches_cpu(void);
bool test_attention_seq_not_multiple_of_128_matches_cpu(void);
bool test_attention_flash_backward_matches_cpu(void);
bool test_attention_dropout_repeats_per_key_and_changes_with_it(void);
bool test_attention_dropout_is_unbiased_and_drops_p_of_the_mass(void);
bool test_attention_dropout_backward_is_the_gradient(void);
bool test_bias_dropout_add_matches_cpu_and_cpu_mask(void);
bool test_dropout_stream_in_device_memory_is_the_same_mask(void);
bool test_add_zero_and_copy(void);
bool test_cross_entropy_matches_cpu(void);
bool test_vocab_parallel_cross_entropy_matches_cpu(void);
bool test_output_layer_cross_entropy_matches_cpu(void);
bool test_adam_is_bitwise_the_cpu(void);
bool test_adam_chunks_is_bitwise_the_cpu(void);
bool test_sgd_chunks_is_bitwise_the_cpu(void);
bool test_sum_squares_matches_clip_norm(void);
bool test_gradient_reductions_repeat_bitwise(void);

#endif
