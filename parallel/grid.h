/* The process grid: which tensor/context/expert/data/pipeline coordinates a rank has, and the
 * groups of ranks that communicate, formed exactly as Megatron-Core's parallel_state does
 * (RankGenerator + generate_masked_orthogonal_rank_groups). Pure arithmetic, no MPI.
 *
 * Contract:
 *  - Rank order is Megatron's "tp-cp-ep-dp-pp" (default) or "tp-cp-ep-pp-dp" (tp_pp_dp, Megatron's
 *    --use-tp-pp-dp-mapping); the leftmost axis varies fastest, so by default
 *    rank = tp + TP*(cp + CP*(dp + DP*pp)).
 *  - Dense groups come from the generator with EP = 1 (sizes TP, CP, DP, PP with
 *    DP = world / (TP*CP*PP)); expert groups from the generator with CP = 1 and sizes
 *    ETP (= TP), EP, EDP = world / (ETP*EP*PP), PP, as Megatron's initialize_model_parallel.
 *  - Every group of a kind has the same size; members are listed by rank within the group, which
 *    is ascending global rank; groups are enumerated in Megatron's creation order.
 *  - Each rank is in exactly one group of each kind, except the embedding groups (first and last
 *    pipeline stage only) and the position-embedding groups (first stage only).
 *  - The current grid (grid_set_current / grid_current) is the one process-wide layout: set at
 *    start-up before any communicator is built (tests may set another after comm_groups_free). */
#ifndef MEGATRON_PARALLEL_GRID_H
#define MEGATRON_PARALLEL_GRID_H

#include <stdbool.h>
#include <stddef.h>

enum grid_group_kind {
    GRID_TP,                 /* "tp": tensor model parallel */
    GRID_CP,                 /* "cp": context parallel */
    GRID_DP,                 /* "dp": data parallel */
    GRID_DP_CP,              /* "dp-cp": gradient reduction and the distributed optimizer */
    GRID_PP,                 /* "pp": pipeline stages of one model replica */
    GRID_MP,                 /* "tp-pp": model parallel */
    GRID_TP_CP,              /* "tp-cp" */
    GRID_TP_DP,              /* "tp-dp" */
    GRID_TP_DP_CP,           /* "tp-dp-cp" */
    GRID_EMBEDDING,          /* first and last stage of each pp group (tied embedding grads) */
    GRID_POSITION_EMBEDDING, /* first stage of each pp group */
    GRID_EP,                 /* expert generator "ep": expert model parallel */
    GRID_EXPERT_TP,          /* expert generator "tp" */
    GRID_EXPERT_TP_EP,       /* expert generator "tp-ep" */
    GRID_EXPERT_TP_EP_PP,    /* expert generator "tp-ep-pp" */
    GRID_EXPERT_DP,          /* expert generator "dp" */
    GRID_WORLD,              /* every rank */
    GRID_NUM_KINDS
};

struct grid {
    int world_size, rank;
    int tp, cp, ep, dp, pp; /* dense sizes (dp = world / (tp*cp*pp)); ep for the expert groups */
    int etp, edp;           /* expert generator: etp = tp, edp = world / (etp*ep*pp) */
    int tp_rank, cp_rank, dp_rank, pp_rank; /* this rank's dense coordinates */
    int ep_rank, edp_rank;                  /* this rank's expert coordinates */
    bool tp_pp_dp;                          /* order tp-cp-ep-pp-dp */
};

struct grid_coords {
    int tp, cp, dp, pp;
};

/* Builds the grid of `rank` among world_size ranks. 0, or -1 with a one-line
 * "<what>: <why>; <what to do>" in err (e.g. a world size that TP x PP x CP does not divide). */
int grid_init(struct grid *g, int world_size, int rank, int tp, int pp, int cp, int ep, bool tp_pp_dp, char *err,
              size_t errlen);

/* "tp-cp-ep-dp-pp" or "tp-cp-ep-pp-dp". */
const char *grid_order_name(const struct grid *g);
/* Megatron's token for the kind ("tp", "dp-cp", "tp-pp", "embedding", "expert-dp", ...). */
const char *grid_group_name(enum grid_group_kind kind);

/* Members of each group of the kind, and how many groups there are. */
int grid_group_size(const struct grid *g, enum grid_group_kind kind);
int grid_num_groups(const struct grid *g, enum grid_group_kind kind);
/* Fills up to max members of group `index` (0 <= index < grid_num_groups); returns the size. */
int grid_group_members(const struct grid *g, enum grid_group_kind kind, int index, int *members, int max);
/* The index of the group of the kind that `rank` belongs to, or -1 when it belongs to none. */
int grid_group_index(const struct grid *g, enum grid_group_kind kind, int rank);
/* The members of g->rank's group of the kind (up to max); returns the size, or 0 when none. */
int grid_group(const struct grid *g, enum grid_group_kind kind, int *members, int max);

/* Dense coordinates of any rank, and the rank at given coordinates. */
struct grid_coords grid_coords_of(const struct grid *g, int rank);
int grid_rank_of(const struct grid *g, struct grid_coords c);

/* The process-wide layout. grid_current returns NULL until grid_set_current was called. */
void grid_set_current(const struct grid *g);
const struct grid *grid_current(void);

#endif
