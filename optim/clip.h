/* Gradient clipping by global L2 norm, as Megatron does it (megatron/core/optimizer/clip_grads.py):
 * the norm is taken over every gradient range at once, and when
 *     coeff = max_norm / (norm + 1e-6)
 * is below 1 every gradient is multiplied by coeff (in fp32, by (float)coeff).
 *
 * The sum of squares is exact per element (a float squared fits a double) and accumulated in
 * double in a fixed order: the ranges are read as one concatenated vector cut into
 * CLIP_NORM_CHUNKS equal pieces, each summed in index order, the pieces then added in order. So the
 * result depends neither on the thread count nor on how the vector is split into ranges.
 *
 * Across ranks: each rank calls clip_global_norm_sq on the ranges it owns (no duplicates), the
 * caller all-reduces the sums, takes sqrt, and calls clip_coeff and clip_scale.
 * A NaN or Inf norm leaves the gradients untouched; the caller skips the step. */
#ifndef MEGATRON_OPTIM_CLIP_H
#define MEGATRON_OPTIM_CLIP_H

#include <stdbool.h>
#include <stdint.h>

#define CLIP_NORM_CHUNKS 256

/* Sum of squares of all elements of bufs[0..count) (bufs[k] holds lens[k] floats). */
double clip_global_norm_sq(const float *const *bufs, const int64_t *lens, int count);

/* Multiplies every element by (float)coeff. */
void clip_scale(float *const *bufs, const int64_t *lens, int count, double coeff);

/* True when gradients with this total norm must be scaled, with the factor in *coeff:
 * max_norm > 0, the norm finite and max_norm / (norm + 1e-6) < 1. */
bool clip_coeff(double total_norm, double max_norm, double *coeff);

/* The single-process whole: computes the norm, scales when clip_coeff says so, returns the norm
 * before clipping (NaN/Inf returned as is). max_norm <= 0 (--clip-grad 0) only measures. */
double clip_grad_by_total_norm(float *const *bufs, const int64_t *lens, int count, double max_norm);

#endif
