/* The process grid: rank <-> (tp, cp, ep, dp, pp) coordinates and every communication group, by
 * the arithmetic of Megatron-Core's parallel_state.py (RankGenerator and
 * generate_masked_orthogonal_rank_groups). Also the process-wide current grid. */
#include "parallel/grid.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util/error.h"

/* Semantic axes; a generator lists them in rank order (leftmost fastest). */
enum { AX_TP, AX_CP, AX_EP, AX_DP, AX_PP, AX_N };
#define BIT(a) (1u << (a))

struct generator {
    int size[AX_N];  /* size of each semantic axis */
    int order[AX_N]; /* order[i]: the axis at position i, position 0 varying fastest */
};

/* Which generator and which axes (Megatron's mask) form each kind; the embedding kinds are
 * derived from the pp groups and have no entry of their own. */
static const struct {
    const char *name;
    bool expert;
    unsigned mask;
} KINDS[GRID_NUM_KINDS] = {
    [GRID_TP] = {"tp", false, BIT(AX_TP)},
    [GRID_CP] = {"cp", false, BIT(AX_CP)},
    [GRID_DP] = {"dp", false, BIT(AX_DP)},
    [GRID_DP_CP] = {"dp-cp", false, BIT(AX_DP) | BIT(AX_CP)},
    [GRID_PP] = {"pp", false, BIT(AX_PP)},
    [GRID_MP] = {"tp-pp", false, BIT(AX_TP) | BIT(AX_PP)},
    [GRID_TP_CP] = {"tp-cp", false, BIT(AX_TP) | BIT(AX_CP)},
    [GRID_TP_DP] = {"tp-dp", false, BIT(AX_TP) | BIT(AX_DP)},
    [GRID_TP_DP_CP] = {"tp-dp-cp", false, BIT(AX_TP) | BIT(AX_DP) | BIT(AX_CP)},
    [GRID_EMBEDDING] = {"embedding", false, BIT(AX_PP)},
    [GRID_POSITION_EMBEDDING] = {"position-embedding", false, BIT(AX_PP)},
    [GRID_EP] = {"ep", true, BIT(AX_EP)},
    [GRID_EXPERT_TP] = {"expert-tp", true, BIT(AX_TP)},
    [GRID_EXPERT_TP_EP] = {"expert-tp-ep", true, BIT(AX_TP) | BIT(AX_EP)},
    [GRID_EXPERT_TP_EP_PP] = {"expert-tp-ep-pp", true, BIT(AX_TP) | BIT(AX_EP) | BIT(AX_PP)},
    [GRID_EXPERT_DP] = {"expert-dp", true, BIT(AX_DP)},
    [GRID_WORLD] = {"world", false, BIT(AX_TP) | BIT(AX_CP) | BIT(AX_EP) | BIT(AX_DP) | BIT(AX_PP)},
};

static void check_kind(enum grid_group_kind kind)
{
    if ((int)kind < 0 || kind >= GRID_NUM_KINDS) BUG("grid: group kind %d out of range", (int)kind);
}

/* The dense generator has EP = 1, the expert one CP = 1 (initialize_model_parallel). */
static struct generator generator_of(const struct grid *g, bool expert)
{
    static const int dp_pp[AX_N] = {AX_TP, AX_CP, AX_EP, AX_DP, AX_PP};
    static const int pp_dp[AX_N] = {AX_TP, AX_CP, AX_EP, AX_PP, AX_DP};
    struct generator gen;
    memcpy(gen.order, g->tp_pp_dp ? pp_dp : dp_pp, sizeof gen.order);
    gen.size[AX_TP] = expert ? g->etp : g->tp;
    gen.size[AX_CP] = expert ? 1 : g->cp;
    gen.size[AX_EP] = expert ? g->ep : 1;
    gen.size[AX_DP] = expert ? g->edp : g->dp;
    gen.size[AX_PP] = g->pp;
    return gen;
}

/* Coordinates of `rank`: position i has stride size[order[0]] * ... * size[order[i-1]]. */
static void generator_coords(const struct generator *gen, int rank, int coord[AX_N])
{
    for (int i = 0; i < AX_N; i++) {
        int a = gen->order[i];
        coord[a] = rank % gen->size[a];
        rank /= gen->size[a];
    }
}

/* generate_masked_orthogonal_rank_groups: the member at `pos` of group `index` takes its masked
 * coordinates from pos and its unmasked ones from index, each decomposed leftmost-fastest. */
static int generator_rank(const struct generator *gen, unsigned mask, int index, int pos)
{
    int rank = 0, stride = 1;
    for (int i = 0; i < AX_N; i++) {
        int a = gen->order[i], s = gen->size[a], c;
        if (mask & BIT(a)) {
            c = pos % s;
            pos /= s;
        } else {
            c = index % s;
            index /= s;
        }
        rank += c * stride;
        stride *= s;
    }
    return rank;
}

static int generator_group_index(const struct generator *gen, unsigned mask, int rank)
{
    int coord[AX_N], index = 0, mult = 1;
    generator_coords(gen, rank, coord);
    for (int i = 0; i < AX_N; i++) {
        int a = gen->order[i];
        if (mask & BIT(a)) continue;
        index += coord[a] * mult;
        mult *= gen->size[a];
    }
    return index;
}

static int generator_group_size(const struct generator *gen, unsigned mask)
{
    int n = 1;
    for (int a = 0; a < AX_N; a++)
        if (mask & BIT(a)) n *= gen->size[a];
    return n;
}

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* "use 4 or 8 ranks": the multiples of unit around world (the lower one only when positive). */
static const char *nearest_worlds(int world, int unit, char *buf, size_t n)
{
    long lo = (long)world / unit * unit, hi = lo + unit;
    if (lo > 0) snprintf(buf, n, "use %ld or %ld ranks", lo, hi);
    else snprintf(buf, n, "use %ld ranks", hi);
    return buf;
}

static int check_sizes(int world_size, int rank, int tp, int pp, int cp, int ep, char *err, size_t errlen)
{
    const struct { const char *flag; int v; } sizes[] = {
        {"--tensor-model-parallel-size", tp}, {"--pipeline-model-parallel-size", pp},
        {"--context-parallel-size", cp}, {"--expert-model-parallel-size", ep},
    };
    if (world_size < 1) return fail(err, errlen, "world size %d: must be >= 1; launch at least one rank", world_size);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (sizes[i].v < 1) return fail(err, errlen, "%s %d: must be >= 1; use 1 or more", sizes[i].flag, sizes[i].v);
    if (rank < 0 || rank >= world_size)
        return fail(err, errlen, "rank %d: outside the world of %d ranks; check the launcher", rank, world_size);
    return 0;
}

/* a x b x c, or -1 when it exceeds INT_MAX (then it cannot divide any world size). */
static long product3(int a, int b, int c)
{
    long p = (long)a * b;
    if (p > INT_MAX) return -1;
    p *= c;
    return p > INT_MAX ? -1 : p;
}

static int check_divisible(const struct grid *g, char *err, size_t errlen)
{
    char b[64];
    long model = product3(g->tp, g->pp, g->cp), expert = product3(g->etp, g->ep, g->pp);
    if (model < 0)
        return fail(err, errlen, "world size %d: TP x PP x CP = %d x %d x %d is larger than any world; lower them",
                    g->world_size, g->tp, g->pp, g->cp);
    if (g->world_size % model != 0)
        return fail(err, errlen, "world size %d: not divisible by TP x PP x CP = %d x %d x %d = %ld; %s", g->world_size,
                    g->tp, g->pp, g->cp, model, nearest_worlds(g->world_size, (int)model, b, sizeof b));
    if (expert < 0)
        return fail(err, errlen, "world size %d: expert TP x EP x PP = %d x %d x %d is larger than any world; lower "
                    "them", g->world_size, g->etp, g->ep, g->pp);
    if (g->world_size % expert != 0)
        return fail(err, errlen, "world size %d: not divisible by expert TP x EP x PP = %d x %d x %d = %ld; %s",
                    g->world_size, g->etp, g->ep, g->pp, expert,
                    nearest_worlds(g->world_size, (int)expert, b, sizeof b));
    return 0;
}

int grid_init(struct grid *g, int world_size, int rank, int tp, int pp, int cp, int ep, bool tp_pp_dp, char *err,
              size_t errlen)
{
    memset(g, 0, sizeof *g);
    if (check_sizes(world_size, rank, tp, pp, cp, ep, err, errlen)) return -1;
    g->world_size = world_size;
    g->rank = rank;
    g->tp = g->etp = tp; /* --expert-tensor-parallel-size defaults to TP and is not supported yet */
    g->pp = pp;
    g->cp = cp;
    g->ep = ep;
    g->tp_pp_dp = tp_pp_dp;
    if (check_divisible(g, err, errlen)) return -1;
    g->dp = world_size / (tp * pp * cp);
    g->edp = world_size / (g->etp * ep * pp);
    /* Megatron asserts that the pp groups of both generators agree; with pp last they always do,
     * with tp-pp-dp only when the two data parallel sizes match. */
    if (tp_pp_dp && pp > 1 && g->edp != g->dp)
        return fail(err, errlen, "--use-tp-pp-dp-mapping: with PP > 1 the expert data parallel size world / (TP x EP x "
                    "PP) = %d must equal the data parallel size world / (TP x CP x PP) = %d; make "
                    "--expert-model-parallel-size equal --context-parallel-size or drop --use-tp-pp-dp-mapping",
                    g->edp, g->dp);
    struct grid_coords c = grid_coords_of(g, rank);
    g->tp_rank = c.tp;
    g->cp_rank = c.cp;
    g->dp_rank = c.dp;
    g->pp_rank = c.pp;
    struct generator ex = generator_of(g, true);
    int coord[AX_N];
    generator_coords(&ex, rank, coord);
    g->ep_rank = coord[AX_EP];
    g->edp_rank = coord[AX_DP];
    return 0;
}

const char *grid_order_name(const struct grid *g)
{
    return g->tp_pp_dp ? "tp-cp-ep-pp-dp" : "tp-cp-ep-dp-pp";
}

const char *grid_group_name(enum grid_group_kind kind)
{
    check_kind(kind);
    return KINDS[kind].name;
}

static bool is_embedding(enum grid_group_kind kind)
{
    return kind == GRID_EMBEDDING || kind == GRID_POSITION_EMBEDDING;
}

int grid_group_size(const struct grid *g, enum grid_group_kind kind)
{
    check_kind(kind);
    if (kind == GRID_EMBEDDING) return g->pp > 1 ? 2 : 1;
    if (kind == GRID_POSITION_EMBEDDING) return 1;
    struct generator gen = generator_of(g, KINDS[kind].expert);
    return generator_group_size(&gen, KINDS[kind].mask);
}

int grid_num_groups(const struct grid *g, enum grid_group_kind kind)
{
    check_kind(kind);
    if (is_embedding(kind)) return grid_num_groups(g, GRID_PP); /* one per pp group */
    return g->world_size / grid_group_size(g, kind);
}

int grid_group_members(const struct grid *g, enum grid_group_kind kind, int index, int *members, int max)
{
    int size = grid_group_size(g, kind);
    if (index < 0 || index >= grid_num_groups(g, kind))
        BUG("grid: group %d of kind %s out of range", index, grid_group_name(kind));
    struct generator gen = generator_of(g, KINDS[kind].expert);
    if (is_embedding(kind)) {
        /* default_embedding_ranks / default_position_embedding_ranks: first (and last) stage */
        int first = generator_rank(&gen, BIT(AX_PP), index, 0);
        int last = generator_rank(&gen, BIT(AX_PP), index, g->pp - 1);
        if (max > 0) members[0] = first;
        if (size > 1 && max > 1) members[1] = last;
        return size;
    }
    for (int pos = 0; pos < size && pos < max; pos++) members[pos] = generator_rank(&gen, KINDS[kind].mask, index, pos);
    return size;
}

int grid_group_index(const struct grid *g, enum grid_group_kind kind, int rank)
{
    check_kind(kind);
    if (rank < 0 || rank >= g->world_size) BUG("grid: rank %d outside the world of %d", rank, g->world_size);
    if (is_embedding(kind)) {
        int pp_rank = grid_coords_of(g, rank).pp;
        bool member = pp_rank == 0 || (kind == GRID_EMBEDDING && pp_rank == g->pp - 1);
        return member ? grid_group_index(g, GRID_PP, rank) : -1;
    }
    struct generator gen = generator_of(g, KINDS[kind].expert);
    return generator_group_index(&gen, KINDS[kind].mask, rank);
}

int grid_group(const struct grid *g, enum grid_group_kind kind, int *members, int max)
{
    int index = grid_group_index(g, kind, g->rank);
    return index < 0 ? 0 : grid_group_members(g, kind, index, members, max);
}

struct grid_coords grid_coords_of(const struct grid *g, int rank)
{
    struct generator gen = generator_of(g, false);
    int coord[AX_N];
    generator_coords(&gen, rank, coord);
    return (struct grid_coords){coord[AX_TP], coord[AX_CP], coord[AX_DP], coord[AX_PP]};
}

int grid_rank_of(const struct grid *g, struct grid_coords c)
{
    struct generator gen = generator_of(g, false);
    int coord[AX_N] = {[AX_TP] = c.tp, [AX_CP] = c.cp, [AX_EP] = 0, [AX_DP] = c.dp, [AX_PP] = c.pp};
    int rank = 0, stride = 1;
    for (int i = 0; i < AX_N; i++) {
        int a = gen.order[i];
        if (coord[a] < 0 || coord[a] >= gen.size[a]) BUG("grid: coordinate %d out of range", coord[a]);
        rank += coord[a] * stride;
        stride *= gen.size[a];
    }
    return rank;
}

/* The process grid: with the parsed config, the only process-wide state (STYLE.md). */
static struct grid current_grid;
static bool current_grid_set;

void grid_set_current(const struct grid *g)
{
    current_grid = *g;
    current_grid_set = true;
}

const struct grid *grid_current(void)
{
    return current_grid_set ? &current_grid : NULL;
}
