/* numpy's random number streams, bit for bit, so the data pipeline shuffles exactly as Megatron.
 * Two generators: the legacy numpy.random.RandomState (MT19937; Megatron's GPTDataset shuffles)
 * and numpy.random.default_rng (SeedSequence + PCG64; Megatron's mock dataset lengths). */
#ifndef MEGATRON_DATA_NUMPY_RANDOM_H
#define MEGATRON_DATA_NUMPY_RANDOM_H

#include <stddef.h>
#include <stdint.h>

#define NPRS_STATE_LEN 624

/* numpy.random.RandomState: MT19937 plus numpy's legacy draw rules. */
struct nprs {
    uint32_t key[NPRS_STATE_LEN];
    int pos;
};

/* RandomState(seed) for an int seed: MT19937 init_genrand (numpy's mt19937_seed). */
void nprs_seed(struct nprs *rs, uint32_t seed);
/* RandomState(array of uint32): MT19937 init_by_array (numpy's mt19937_init_by_array). */
void nprs_seed_by_array(struct nprs *rs, const uint32_t *key, size_t n);

/* One 32-bit MT19937 output (genrand_int32). */
uint32_t nprs_next_uint32(struct nprs *rs);
/* numpy's legacy 64-bit draw: first output in the high half, second in the low half. */
uint64_t nprs_next_uint64(struct nprs *rs);
/* RandomState.random_sample(): 53-bit double in [0, 1) from two 32-bit draws. */
double nprs_random_sample(struct nprs *rs);
/* numpy's random_interval: uniform in [0, max] by masked rejection (32-bit draws if max fits). */
uint64_t nprs_interval(struct nprs *rs, uint64_t max);
/* RandomState.randint(low, high) with dtype int32 or int64 (the default): uniform in [low, high),
 * masked rejection sampling. Requires low < high. */
int64_t nprs_randint(struct nprs *rs, int64_t low, int64_t high);
/* RandomState.shuffle(x) for a 1-d contiguous array of n items of itemsize bytes:
 * for i = n-1 .. 1 swap x[i] with x[random_interval(i)]. */
void nprs_shuffle(struct nprs *rs, void *data, int64_t n, size_t itemsize);

/* numpy.random.default_rng(seed): PCG64 (XSL-RR 128/64) seeded through SeedSequence. */
struct np_pcg64 {
    unsigned __int128 state;
    unsigned __int128 inc;
    int has_uint32;
    uint32_t uinteger;
};

/* default_rng(seed) for a non-negative int seed. */
void np_pcg64_seed(struct np_pcg64 *g, uint64_t seed);
uint64_t np_pcg64_next_uint64(struct np_pcg64 *g);
/* Lower half of a fresh 64-bit draw, the upper half kept for the next call (numpy's pcg64_next32). */
uint32_t np_pcg64_next_uint32(struct np_pcg64 *g);
/* Generator.integers(low, high, size=n, dtype=int32): Lemire's rejection on 32-bit draws.
 * Requires low < high. */
void np_generator_integers_int32(struct np_pcg64 *g, int32_t low, int32_t high, int32_t *out, int64_t n);

/* SeedSequence(entropy).generate_state(n_words, uint32): exposed for tests. */
void np_seed_sequence_state(uint64_t entropy, uint32_t *out, size_t n_words);

#endif
