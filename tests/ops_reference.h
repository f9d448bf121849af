/* The double-precision references and checks the CPU op tests share (tests/test_ops.c,
 * tests/test_ops_attention.c): random inputs, finite differences of L = sum(y * r) through a
 * reference, norm-wise relative errors, dropout masks. Included by one test file at a time. */
#ifndef MEGATRON_TESTS_OPS_REFERENCE_H
#define MEGATRON_TESTS_OPS_REFERENCE_H

/* Each test file uses some of the helpers below. */
#define REF_HELPER static __attribute__((unused))

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernels/ops.h"
#include "kernels/rng.h"

/* Finite differences run on the double reference with step 1e-3: the truncation error
 * eps^2 f'''/6 is ~1e-7 relative for these smooth ops (dropout masks and the softmax max shift do
 * not depend on the inputs), and double rounding adds ~1e-13. What remains is the fp32 rounding
 * of the op under test, ~1e-6 relative, so 1e-4 (norm-wise, see max_rel_err) has a wide margin
 * while a wrong or missing term of a gradient shows up as an O(1) error. */
#define FD_EPS 1e-3
#define FD_TOL 1e-4
/* Forward ops against the double reference: fp32 sums of up to ~300 terms of size O(1) carry
 * errors of ~sqrt(K) 2^-24 ~ 1e-6 relative to the largest output; 1e-5 leaves a 10x margin. */
#define FWD_TOL 1e-5

/* ---- helpers ---- */

REF_HELPER float *frand(int64_t n, uint64_t stream)
{
    float *x = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++) x[i] = 2.0f * rng_uniform(1234, stream, (uint64_t)i) - 1.0f;
    return x;
}

REF_HELPER float *ffill(int64_t n, float v)
{
    float *x = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++) x[i] = v;
    return x;
}

REF_HELPER double *to_double(const float *x, int64_t n)
{
    double *d = malloc((size_t)(n > 0 ? n : 1) * sizeof(double));
    for (int64_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

REF_HELPER struct tensor f1(float *p, int64_t n) { return tensor_1d(p, DT_F32, DEV_CPU, n); }
REF_HELPER struct tensor f2(float *p, int64_t r, int64_t c) { return tensor_2d(p, DT_F32, DEV_CPU, r, c); }
REF_HELPER struct tensor i1(int32_t *p, int64_t n) { return tensor_1d(p, DT_I32, DEV_CPU, n); }

/* max |got - want| / max |want|: relative to the tensor's scale, so entries near zero do not
 * dominate as they would in an elementwise relative error. */
REF_HELPER double max_rel_err(const float *got, const double *want, int64_t n, double offset)
{
    double err = 0.0, scale = 1e-30;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - offset - want[i]);
        err = e > err ? e : err;
        scale = fabs(want[i]) > scale ? fabs(want[i]) : scale;
    }
    return err / scale;
}

/* A reference problem: double copies of the inputs, a forward in double writing y, and the fixed
 * weights r of the scalar loss L = sum(y * r). */
struct ref {
    double *in[4];
    const int32_t *ids[2];
    int64_t dim[6];
    double p[2]; /* op parameters: eps, base, rotary dim, ... */
    struct dropout_key drop;
    double *y, *r;
    int64_t ny;
    void (*forward)(struct ref *c);
};

REF_HELPER double ref_loss(struct ref *c)
{
    c->forward(c);
    double l = 0.0;
    for (int64_t i = 0; i < c->ny; i++) l += c->y[i] * c->r[i];
    return l;
}

/* Central differences of L with respect to c->in[k] (n entries), compared with the op's gradient
 * got (minus offset: parameter gradients were pre-filled with it to check accumulation). */
REF_HELPER void check_grad(struct ref *c, int k, int64_t n, const float *got, double offset, const char *what)
{
    double *g = malloc((size_t)n * sizeof(double));
    double *x = c->in[k];
    for (int64_t i = 0; i < n; i++) {
        double save = x[i];
        x[i] = save + FD_EPS;
        double lp = ref_loss(c);
        x[i] = save - FD_EPS;
        double lm = ref_loss(c);
        x[i] = save;
        g[i] = (lp - lm) / (2 * FD_EPS);
    }
    double err = max_rel_err(got, g, n, offset);
    if (err > FD_TOL) fail_msg("%s: relative error %.3g against finite differences", what, err);
    free(g);
}

REF_HELPER void check_forward(struct ref *c, const float *got, const char *what)
{
    c->forward(c);
    double err = max_rel_err(got, c->y, c->ny, 0.0);
    if (err > FWD_TOL) fail_msg("%s: relative error %.3g against the double reference", what, err);
}

REF_HELPER struct dropout_key dropout(float p, uint64_t stream, uint64_t offset)
{
    return (struct dropout_key){.p = p, .seed = 42, .stream = stream, .offset = offset};
}

/* The mask of ops.h: element e kept iff rng_uniform(seed, stream, offset + e) >= p. */
REF_HELPER double ref_mask(struct dropout_key d, uint64_t e)
{
    if (d.p == 0.0f) return 1.0;
    return rng_uniform(d.seed, d.stream, d.offset + e) >= d.p ? 1.0 / (1.0 - d.p) : 0.0;
}

REF_HELPER struct ref new_ref(void (*forward)(struct ref *), int64_t ny)
{
    struct ref c;
    memset(&c, 0, sizeof c);
    c.forward = forward;
    c.ny = ny;
    c.y = malloc((size_t)(ny > 0 ? ny : 1) * sizeof(double));
    return c;
}

REF_HELPER void free_ref(struct ref *c)
{
    for (int i = 0; i < 4; i++) free(c->in[i]);
    free(c->y);
    free(c->r);
}

/* ---- linear ---- */


#endif
