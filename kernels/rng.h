/* Counter-based random numbers keyed by (seed, stream, counter), the same on every backend and
 * every parallel layout (ARCHITECTURE.md principle 5): parameter i of tensor "x" gets the same
 * value whether the tensor is whole or split over ranks, and a dropout mask depends only on
 * where an element sits in the global batch. The mixer is splitmix64 applied twice, which passes
 * BigCrush as a counter-based generator; speed matters less here than reproducibility. */
#ifndef MEGATRON_KERNELS_RNG_H
#define MEGATRON_KERNELS_RNG_H

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define RNG_FN static __host__ __device__ inline
#else
#define RNG_FN static inline
#endif

RNG_FN uint64_t rng_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* 64 random bits for (seed, stream, counter). */
RNG_FN uint64_t rng_bits(uint64_t seed, uint64_t stream, uint64_t counter)
{
    uint64_t k = rng_mix64(seed * 0x9e3779b97f4a7c15ull + stream);
    return rng_mix64(k ^ rng_mix64(counter + 0x632be59bd9b4e019ull));
}

/* Uniform in [0, 1) with 24 bits, exactly representable in fp32. */
RNG_FN float rng_uniform(uint64_t seed, uint64_t stream, uint64_t counter)
{
    return (float)(rng_bits(seed, stream, counter) >> 40) * (1.0f / 16777216.0f);
}

/* Standard normal via Box-Muller on two 32-bit halves of one draw, in double for accuracy. */
RNG_FN double rng_normal(uint64_t seed, uint64_t stream, uint64_t counter)
{
    uint64_t b = rng_bits(seed, stream, counter);
    double u1 = ((double)(b >> 32) + 1.0) * (1.0 / 4294967296.0); /* (0, 1] */
    double u2 = (double)(b & 0xffffffffull) * (1.0 / 4294967296.0);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* FNV-1a of a NUL-terminated name: the stream id of a named tensor or dropout site. */
RNG_FN uint64_t rng_stream_of(const char *name)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *name; name++) h = (h ^ (uint8_t)*name) * 0x100000001b3ull;
    return h;
}

#endif
