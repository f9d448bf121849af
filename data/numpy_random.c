/* numpy's RandomState (MT19937, legacy draw rules) and default_rng (SeedSequence + PCG64),
 * reproduced from the algorithms numpy documents and implements (numpy/random/src/mt19937,
 * src/pcg64, src/distributions/distributions.c, bit_generator.pyx), so streams match bit for bit. */
#include "data/numpy_random.h"

#include <string.h>

#include "util/error.h"

/* ---- MT19937 (Matsumoto & Nishimura 1998), as numpy's legacy RandomState seeds and reloads it ---- */

#define MT_M 397
#define MT_MATRIX_A 0x9908b0dfU
#define MT_UPPER 0x80000000U
#define MT_LOWER 0x7fffffffU

void nprs_seed(struct nprs *rs, uint32_t seed)
{
    /* init_genrand: key[i] = 1812433253 * (key[i-1] ^ (key[i-1] >> 30)) + i */
    rs->key[0] = seed;
    for (int i = 1; i < NPRS_STATE_LEN; i++) {
        uint32_t prev = rs->key[i - 1];
        rs->key[i] = 1812433253U * (prev ^ (prev >> 30)) + (uint32_t)i;
    }
    rs->pos = NPRS_STATE_LEN;
}

void nprs_seed_by_array(struct nprs *rs, const uint32_t *key, size_t n)
{
    uint32_t *mt = rs->key;
    nprs_seed(rs, 19650218U);
    size_t i = 1, j = 0;
    size_t k = n > NPRS_STATE_LEN ? n : NPRS_STATE_LEN;
    for (; k; k--) {
        mt[i] = (mt[i] ^ ((mt[i - 1] ^ (mt[i - 1] >> 30)) * 1664525U)) + key[j] + (uint32_t)j;
        i++;
        j++;
        if (i >= NPRS_STATE_LEN) {
            mt[0] = mt[NPRS_STATE_LEN - 1];
            i = 1;
        }
        if (j >= n) j = 0;
    }
    for (k = NPRS_STATE_LEN - 1; k; k--) {
        mt[i] = (mt[i] ^ ((mt[i - 1] ^ (mt[i - 1] >> 30)) * 1566083941U)) - (uint32_t)i;
        i++;
        if (i >= NPRS_STATE_LEN) {
            mt[0] = mt[NPRS_STATE_LEN - 1];
            i = 1;
        }
    }
    mt[0] = 0x80000000U; /* guarantees a non-zero state */
    rs->pos = NPRS_STATE_LEN;
}

static uint32_t mt_twist(uint32_t a, uint32_t b, uint32_t far)
{
    uint32_t y = (a & MT_UPPER) | (b & MT_LOWER);
    return far ^ (y >> 1) ^ ((y & 1U) ? MT_MATRIX_A : 0U);
}

static void mt_reload(struct nprs *rs)
{
    uint32_t *mt = rs->key;
    int kk;
    for (kk = 0; kk < NPRS_STATE_LEN - MT_M; kk++) mt[kk] = mt_twist(mt[kk], mt[kk + 1], mt[kk + MT_M]);
    for (; kk < NPRS_STATE_LEN - 1; kk++)
        mt[kk] = mt_twist(mt[kk], mt[kk + 1], mt[kk + MT_M - NPRS_STATE_LEN]);
    mt[NPRS_STATE_LEN - 1] = mt_twist(mt[NPRS_STATE_LEN - 1], mt[0], mt[MT_M - 1]);
    rs->pos = 0;
}

uint32_t nprs_next_uint32(struct nprs *rs)
{
    if (rs->pos == NPRS_STATE_LEN) mt_reload(rs);
    uint32_t y = rs->key[rs->pos++];
    /* tempering */
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680U;
    y ^= (y << 15) & 0xefc60000U;
    y ^= y >> 18;
    return y;
}

uint64_t nprs_next_uint64(struct nprs *rs)
{
    uint64_t hi = nprs_next_uint32(rs);
    return (hi << 32) | nprs_next_uint32(rs);
}

double nprs_random_sample(struct nprs *rs)
{
    /* 27 + 26 bits: numpy's mt19937_next_double */
    int32_t a = (int32_t)(nprs_next_uint32(rs) >> 5);
    int32_t b = (int32_t)(nprs_next_uint32(rs) >> 6);
    return (a * 67108864.0 + b) / 9007199254740992.0;
}

/* Smallest all-ones mask covering max. */
static uint64_t gen_mask(uint64_t max)
{
    uint64_t mask = max;
    mask |= mask >> 1;
    mask |= mask >> 2;
    mask |= mask >> 4;
    mask |= mask >> 8;
    mask |= mask >> 16;
    mask |= mask >> 32;
    return mask;
}

uint64_t nprs_interval(struct nprs *rs, uint64_t max)
{
    if (max == 0) return 0;
    uint64_t mask = gen_mask(max), value;
    if (max <= 0xffffffffULL) {
        while ((value = (nprs_next_uint32(rs) & mask)) > max) {
        }
    } else {
        while ((value = (nprs_next_uint64(rs) & mask)) > max) {
        }
    }
    return value;
}

int64_t nprs_randint(struct nprs *rs, int64_t low, int64_t high)
{
    /* numpy: off = low, rng = (high - 1) - low, then random_bounded_uint64_fill(use_masked=1) */
    uint64_t rng = (uint64_t)high - 1 - (uint64_t)low;
    uint64_t v;
    if (rng == 0)
        v = 0;
    else if (rng == 0xffffffffULL)
        v = nprs_next_uint32(rs);
    else if (rng == UINT64_MAX)
        v = nprs_next_uint64(rs);
    else
        v = nprs_interval(rs, rng); /* same masked rejection, 32- or 64-bit draws by range */
    return (int64_t)((uint64_t)low + v);
}

void nprs_shuffle(struct nprs *rs, void *data, int64_t n, size_t itemsize)
{
    unsigned char *p = data, tmp[16];
    CHECK(itemsize <= sizeof(tmp));
    for (int64_t i = n - 1; i >= 1; i--) {
        uint64_t j = nprs_interval(rs, (uint64_t)i);
        memcpy(tmp, p + j * itemsize, itemsize);
        memcpy(p + j * itemsize, p + (size_t)i * itemsize, itemsize);
        memcpy(p + (size_t)i * itemsize, tmp, itemsize);
    }
}

/* ---- SeedSequence (numpy/random/bit_generator.pyx; after M. E. O'Neill's seed_seq design) ---- */

#define SS_POOL_SIZE 4
#define SS_INIT_A 0x43b0d7e5U
#define SS_MULT_A 0x931e8875U
#define SS_INIT_B 0x8b51f9ddU
#define SS_MULT_B 0x58f38dedU
#define SS_MIX_MULT_L 0xca01f9ddU
#define SS_MIX_MULT_R 0x4973f715U
#define SS_XSHIFT 16

static uint32_t ss_hashmix(uint32_t value, uint32_t *hash_const)
{
    value ^= *hash_const;
    *hash_const *= SS_MULT_A;
    value *= *hash_const;
    value ^= value >> SS_XSHIFT;
    return value;
}

static uint32_t ss_mix(uint32_t x, uint32_t y)
{
    uint32_t result = SS_MIX_MULT_L * x - SS_MIX_MULT_R * y;
    result ^= result >> SS_XSHIFT;
    return result;
}

/* The entropy int as little-endian 32-bit words (0 is one zero word), mixed into the pool. */
static void ss_pool(uint64_t entropy, uint32_t pool[SS_POOL_SIZE])
{
    uint32_t words[2];
    size_t n = 0;
    do {
        words[n++] = (uint32_t)entropy;
        entropy >>= 32;
    } while (entropy > 0);

    uint32_t hash_const = SS_INIT_A;
    for (size_t i = 0; i < SS_POOL_SIZE; i++) pool[i] = ss_hashmix(i < n ? words[i] : 0U, &hash_const);
    for (size_t src = 0; src < SS_POOL_SIZE; src++)
        for (size_t dst = 0; dst < SS_POOL_SIZE; dst++)
            if (src != dst) pool[dst] = ss_mix(pool[dst], ss_hashmix(pool[src], &hash_const));
}

void np_seed_sequence_state(uint64_t entropy, uint32_t *out, size_t n_words)
{
    uint32_t pool[SS_POOL_SIZE];
    ss_pool(entropy, pool);
    uint32_t hash_const = SS_INIT_B;
    for (size_t i = 0; i < n_words; i++) {
        uint32_t v = pool[i % SS_POOL_SIZE];
        v ^= hash_const;
        hash_const *= SS_MULT_B;
        v *= hash_const;
        v ^= v >> SS_XSHIFT;
        out[i] = v;
    }
}

/* ---- PCG64 (O'Neill's PCG XSL-RR 128/64, numpy/random/src/pcg64) ---- */

#define PCG_MULT ((((unsigned __int128)0x2360ed051fc65da4ULL) << 64) | 0x4385df649fccf645ULL)

static void pcg_step(struct np_pcg64 *g)
{
    g->state = g->state * PCG_MULT + g->inc;
}

void np_pcg64_seed(struct np_pcg64 *g, uint64_t seed)
{
    /* PCG64._seed: generate_state(4, uint64) = 8 uint32 words paired little-endian;
     * initstate = w[0] << 64 | w[1], initseq = w[2] << 64 | w[3]. */
    uint32_t s[8];
    np_seed_sequence_state(seed, s, 8);
    uint64_t w[4];
    for (int i = 0; i < 4; i++) w[i] = (uint64_t)s[2 * i] | ((uint64_t)s[2 * i + 1] << 32);
    unsigned __int128 initstate = ((unsigned __int128)w[0] << 64) | w[1];
    unsigned __int128 initseq = ((unsigned __int128)w[2] << 64) | w[3];
    /* pcg_setseq_128_srandom_r */
    g->state = 0;
    g->inc = (initseq << 1) | 1;
    pcg_step(g);
    g->state += initstate;
    pcg_step(g);
    g->has_uint32 = 0;
    g->uinteger = 0;
}

uint64_t np_pcg64_next_uint64(struct np_pcg64 *g)
{
    pcg_step(g);
    uint64_t x = (uint64_t)(g->state >> 64) ^ (uint64_t)g->state;
    unsigned rot = (unsigned)(g->state >> 122);
    return (x >> rot) | (x << ((64 - rot) & 63));
}

uint32_t np_pcg64_next_uint32(struct np_pcg64 *g)
{
    if (g->has_uint32) {
        g->has_uint32 = 0;
        return g->uinteger;
    }
    uint64_t next = np_pcg64_next_uint64(g);
    g->has_uint32 = 1;
    g->uinteger = (uint32_t)(next >> 32);
    return (uint32_t)next;
}

/* numpy's buffered_bounded_lemire_uint32 (Lemire 2019, "Fast random integer generation in an
 * interval"): uniform in [0, rng]. */
static uint32_t lemire_uint32(struct np_pcg64 *g, uint32_t rng)
{
    const uint32_t rng_excl = rng + 1;
    uint64_t m = (uint64_t)np_pcg64_next_uint32(g) * rng_excl;
    uint32_t leftover = (uint32_t)m;
    if (leftover < rng_excl) {
        const uint32_t threshold = (UINT32_MAX - rng) % rng_excl;
        while (leftover < threshold) {
            m = (uint64_t)np_pcg64_next_uint32(g) * rng_excl;
            leftover = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

void np_generator_integers_int32(struct np_pcg64 *g, int32_t low, int32_t high, int32_t *out, int64_t n)
{
    uint32_t rng = (uint32_t)((int64_t)high - 1 - low), off = (uint32_t)low;
    for (int64_t i = 0; i < n; i++) {
        uint32_t v;
        if (rng == 0)
            v = 0;
        else if (rng == UINT32_MAX)
            v = np_pcg64_next_uint32(g);
        else
            v = lemire_uint32(g, rng);
        out[i] = (int32_t)(off + v);
    }
}
