/* Unit tests for parallel/grid: the groups of Megatron's documented examples (parallel_state.py
 * docstrings and reference section 6), both rank orders, context and expert parallel groups,
 * the embedding groups, one group per kind per rank for every layout up to 32 ranks, and the
 * one-line errors for layouts that do not fit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "parallel/grid.h"

#define MAXR 64

static struct grid make(int world, int rank, int tp, int pp, int cp, int ep, bool tp_pp_dp)
{
    struct grid g;
    char err[256] = "";
    int rc = grid_init(&g, world, rank, tp, pp, cp, ep, tp_pp_dp, err, sizeof err);
    if (rc) print_error("%s\n", err);
    assert_int_equal(rc, 0);
    return g;
}

/* Asserts the groups of a kind, in Megatron's creation order: want is "0,1 2,3 ..." (groups
 * separated by spaces, members by commas). */
static void expect_groups(const struct grid *g, enum grid_group_kind kind, const char *want)
{
    char got[1024] = "";
    int members[MAXR];
    int n = grid_num_groups(g, kind);
    for (int i = 0; i < n; i++) {
        int size = grid_group_members(g, kind, i, members, MAXR);
        assert_int_equal(size, grid_group_size(g, kind));
        for (int j = 0; j < size; j++) {
            char b[16];
            snprintf(b, sizeof b, "%s%d", j ? "," : (i ? " " : ""), members[j]);
            strcat(got, b);
        }
    }
    if (strcmp(got, want) != 0) print_error("%s groups: got \"%s\", want \"%s\"\n", grid_group_name(kind), got, want);
    assert_string_equal(got, want);
}

static void expect_error(int world, int rank, int tp, int pp, int cp, int ep, bool tp_pp_dp, const char *want)
{
    struct grid g;
    char err[256] = "";
    assert_int_equal(grid_init(&g, world, rank, tp, pp, cp, ep, tp_pp_dp, err, sizeof err), -1);
    assert_string_equal(err, want);
}

static void test_megatron_example_tp2_dp2_pp2_on_8_ranks(void **state)
{
    (void)state;
    struct grid g = make(8, 0, 2, 2, 1, 1, false);
    assert_int_equal(g.dp, 2);
    expect_groups(&g, GRID_TP, "0,1 2,3 4,5 6,7");
    expect_groups(&g, GRID_DP, "0,2 1,3 4,6 5,7");
    expect_groups(&g, GRID_PP, "0,4 1,5 2,6 3,7");
    expect_groups(&g, GRID_MP, "0,1,4,5 2,3,6,7");
    expect_groups(&g, GRID_DP_CP, "0,2 1,3 4,6 5,7");
    expect_groups(&g, GRID_CP, "0 1 2 3 4 5 6 7");
    expect_groups(&g, GRID_TP_DP, "0,1,2,3 4,5,6,7");
    expect_groups(&g, GRID_EMBEDDING, "0,4 1,5 2,6 3,7");
    expect_groups(&g, GRID_POSITION_EMBEDDING, "0 1 2 3");
    expect_groups(&g, GRID_WORLD, "0,1,2,3,4,5,6,7");
}

/* initialize_model_parallel's docstring: 16 GPUs, TP 2, PP 4 (so DP 2). */
static void test_megatron_docstring_tp2_pp4_on_16_ranks(void **state)
{
    (void)state;
    struct grid g = make(16, 0, 2, 4, 1, 1, false);
    expect_groups(&g, GRID_DP, "0,2 1,3 4,6 5,7 8,10 9,11 12,14 13,15");
    expect_groups(&g, GRID_TP, "0,1 2,3 4,5 6,7 8,9 10,11 12,13 14,15");
    expect_groups(&g, GRID_PP, "0,4,8,12 1,5,9,13 2,6,10,14 3,7,11,15");
    expect_groups(&g, GRID_EMBEDDING, "0,12 1,13 2,14 3,15");
}

static void test_tp_pp_dp_order_puts_pipeline_before_data(void **state)
{
    (void)state;
    struct grid g = make(8, 0, 2, 2, 1, 1, true);
    assert_string_equal(grid_order_name(&g), "tp-cp-ep-pp-dp");
    expect_groups(&g, GRID_TP, "0,1 2,3 4,5 6,7");
    expect_groups(&g, GRID_PP, "0,2 1,3 4,6 5,7");
    expect_groups(&g, GRID_DP, "0,4 1,5 2,6 3,7");
    expect_groups(&g, GRID_MP, "0,1,2,3 4,5,6,7");
    struct grid r5 = make(8, 5, 2, 2, 1, 1, true); /* 5 = tp 1 + 2 * (pp 0 + 2 * dp 1) */
    assert_int_equal(r5.tp_rank, 1);
    assert_int_equal(r5.pp_rank, 0);
    assert_int_equal(r5.dp_rank, 1);
}

/* The context_parallel_size docstring: 8 GPUs, TP 4, CP 2 give CP groups [0,4] [1,5] [2,6] [3,7]. */
static void test_context_parallel_groups(void **state)
{
    (void)state;
    struct grid g = make(8, 0, 4, 1, 2, 1, false);
    assert_int_equal(g.dp, 1);
    expect_groups(&g, GRID_CP, "0,4 1,5 2,6 3,7");
    g = make(8, 0, 2, 1, 2, 1, false);
    expect_groups(&g, GRID_CP, "0,2 1,3 4,6 5,7");
    expect_groups(&g, GRID_DP, "0,4 1,5 2,6 3,7");
    expect_groups(&g, GRID_DP_CP, "0,2,4,6 1,3,5,7");
    expect_groups(&g, GRID_TP_CP, "0,1,2,3 4,5,6,7");
    expect_groups(&g, GRID_TP_DP_CP, "0,1,2,3,4,5,6,7");
}

static void test_embedding_groups_are_first_and_last_stage(void **state)
{
    (void)state;
    int members[MAXR];
    struct grid g = make(8, 0, 1, 4, 1, 1, false); /* rank = dp + 2 * pp */
    expect_groups(&g, GRID_PP, "0,2,4,6 1,3,5,7");
    expect_groups(&g, GRID_EMBEDDING, "0,6 1,7");
    expect_groups(&g, GRID_POSITION_EMBEDDING, "0 1");
    struct grid mid = make(8, 4, 1, 4, 1, 1, false);
    assert_int_equal(grid_group(&mid, GRID_EMBEDDING, members, MAXR), 0);
    assert_int_equal(grid_group_index(&mid, GRID_POSITION_EMBEDDING, 4), -1);
    struct grid last = make(8, 7, 1, 4, 1, 1, false);
    assert_int_equal(grid_group(&last, GRID_EMBEDDING, members, MAXR), 2);
    assert_int_equal(members[0], 1);
    assert_int_equal(members[1], 7);
    assert_int_equal(grid_group(&last, GRID_POSITION_EMBEDDING, members, MAXR), 0);
    g = make(2, 0, 1, 1, 1, 1, false); /* one stage: the embedding group is that stage alone */
    expect_groups(&g, GRID_EMBEDDING, "0 1");
}

/* Expert generator: cp = 1, ETP = TP, EDP = world / (ETP x EP x PP), same order. */
static void test_expert_groups(void **state)
{
    (void)state;
    struct grid g = make(8, 6, 2, 1, 1, 2, false); /* 6 = tp 0 + 2 * (ep 1 + 2 * edp 1) */
    assert_int_equal(g.edp, 2);
    assert_int_equal(g.ep_rank, 1);
    assert_int_equal(g.edp_rank, 1);
    expect_groups(&g, GRID_EP, "0,2 1,3 4,6 5,7");
    expect_groups(&g, GRID_EXPERT_TP, "0,1 2,3 4,5 6,7");
    expect_groups(&g, GRID_EXPERT_TP_EP, "0,1,2,3 4,5,6,7");
    expect_groups(&g, GRID_EXPERT_DP, "0,4 1,5 2,6 3,7");
    expect_groups(&g, GRID_DP, "0,2,4,6 1,3,5,7"); /* the dense generator ignores EP */
    g = make(8, 0, 1, 2, 2, 2, true);              /* EP = CP keeps the pp groups equal */
    expect_groups(&g, GRID_PP, "0,2 1,3 4,6 5,7");
    expect_groups(&g, GRID_EXPERT_TP_EP_PP, "0,1,2,3 4,5,6,7");
}

/* rank = tp + TP * (cp + CP * (dp + DP * pp)) by default, pp and dp swapped with tp-pp-dp. */
static void test_rank_formula_and_coordinates_round_trip(void **state)
{
    (void)state;
    const int layouts[][4] = {{2, 2, 1, 8}, {2, 1, 2, 8}, {1, 2, 2, 8}, {2, 3, 2, 24}, {4, 1, 1, 4}};
    for (size_t l = 0; l < sizeof layouts / sizeof layouts[0]; l++) {
        int tp = layouts[l][0], pp = layouts[l][1], cp = layouts[l][2], world = layouts[l][3];
        for (int order = 0; order < 2; order++) {
            if (order && pp > 1 && cp > 1) continue; /* Megatron refuses it unless EP = CP */
            for (int rank = 0; rank < world; rank++) {
                struct grid g = make(world, rank, tp, pp, cp, 1, order);
                int dp = g.dp;
                int want = order ? g.tp_rank + tp * (g.cp_rank + cp * (g.pp_rank + pp * g.dp_rank))
                                 : g.tp_rank + tp * (g.cp_rank + cp * (g.dp_rank + dp * g.pp_rank));
                assert_int_equal(want, rank);
                struct grid_coords c = grid_coords_of(&g, rank);
                assert_int_equal(c.tp, g.tp_rank);
                assert_int_equal(grid_rank_of(&g, c), rank);
                /* a rank's position in its group is its coordinate along that axis */
                int members[MAXR];
                grid_group(&g, GRID_TP, members, MAXR);
                assert_int_equal(members[g.tp_rank], rank);
                grid_group(&g, GRID_DP, members, MAXR);
                assert_int_equal(members[g.dp_rank], rank);
                grid_group(&g, GRID_PP, members, MAXR);
                assert_int_equal(members[g.pp_rank], rank);
                grid_group(&g, GRID_CP, members, MAXR);
                assert_int_equal(members[g.cp_rank], rank);
            }
        }
    }
}

/* For one layout: each kind's groups partition the world (embedding kinds: their stages), with
 * ascending members, and grid_group_index agrees with the member lists. */
static void check_partition(int world, int tp, int pp, int cp, int ep, bool order)
{
    struct grid g = make(world, 0, tp, pp, cp, ep, order);
    for (int k = 0; k < GRID_NUM_KINDS; k++) {
        int seen[MAXR] = {0}, members[MAXR];
        int n = grid_num_groups(&g, k), size = grid_group_size(&g, k);
        for (int i = 0; i < n; i++) {
            assert_int_equal(grid_group_members(&g, k, i, members, MAXR), size);
            for (int j = 0; j < size; j++) {
                assert_true(members[j] >= 0 && members[j] < world);
                if (j > 0) assert_true(members[j] > members[j - 1]);
                seen[members[j]]++;
                assert_int_equal(grid_group_index(&g, k, members[j]), i);
            }
        }
        for (int r = 0; r < world; r++) {
            int pp_rank = grid_coords_of(&g, r).pp;
            int expected = 1;
            if (k == GRID_EMBEDDING) expected = pp_rank == 0 || pp_rank == pp - 1;
            if (k == GRID_POSITION_EMBEDDING) expected = pp_rank == 0;
            if (seen[r] != expected)
                print_error("world %d tp %d pp %d cp %d ep %d order %d: rank %d in %d %s groups\n", world, tp, pp, cp,
                            ep, order, r, seen[r], grid_group_name(k));
            assert_int_equal(seen[r], expected);
            if (!expected) assert_int_equal(grid_group_index(&g, k, r), -1);
        }
    }
}

static void test_every_rank_is_in_exactly_one_group_of_each_kind(void **state)
{
    (void)state;
    int layouts = 0;
    for (int world = 1; world <= 32; world++)
        for (int tp = 1; tp <= world; tp++)
            for (int pp = 1; pp <= world; pp++)
                for (int cp = 1; cp <= world; cp++)
                    for (int ep = 1; ep <= world; ep++)
                        for (int order = 0; order < 2; order++) {
                            if (world % (tp * pp * cp) || world % (tp * ep * pp)) continue;
                            if (order && pp > 1 && world / (tp * ep * pp) != world / (tp * cp * pp)) continue;
                            check_partition(world, tp, pp, cp, ep, order);
                            layouts++;
                        }
    assert_true(layouts > 500);
}

static void test_layouts_that_do_not_fit_are_refused_with_the_arithmetic(void **state)
{
    (void)state;
    expect_error(6, 0, 2, 2, 1, 1, false, "world size 6: not divisible by TP x PP x CP = 2 x 2 x 1 = 4; use 4 or 8 ranks");
    expect_error(3, 0, 4, 1, 1, 1, false, "world size 3: not divisible by TP x PP x CP = 4 x 1 x 1 = 4; use 4 ranks");
    expect_error(12, 0, 1, 1, 8, 1, false, "world size 12: not divisible by TP x PP x CP = 1 x 1 x 8 = 8; use 8 or 16 ranks");
    expect_error(4, 0, 1, 1, 1, 8, false,
                 "world size 4: not divisible by expert TP x EP x PP = 1 x 8 x 1 = 8; use 8 ranks");
    expect_error(8, 0, 1, 2, 1, 2, true,
                 "--use-tp-pp-dp-mapping: with PP > 1 the expert data parallel size world / (TP x EP x PP) = 2 must "
                 "equal the data parallel size world / (TP x CP x PP) = 4; make --expert-model-parallel-size equal "
                 "--context-parallel-size or drop --use-tp-pp-dp-mapping");
    expect_error(8, 0, 0, 1, 1, 1, false, "--tensor-model-parallel-size 0: must be >= 1; use 1 or more");
    expect_error(8, 8, 1, 1, 1, 1, false, "rank 8: outside the world of 8 ranks; check the launcher");
    expect_error(0, 0, 1, 1, 1, 1, false, "world size 0: must be >= 1; launch at least one rank");
    expect_error(8, 0, 65536, 65536, 2, 1, false,
                 "world size 8: TP x PP x CP = 65536 x 65536 x 2 is larger than any world; lower them");
}

static void test_current_grid_is_set_once_and_copied(void **state)
{
    (void)state;
    assert_null(grid_current());
    struct grid g = make(4, 3, 2, 1, 1, 1, false);
    grid_set_current(&g);
    g.rank = 0; /* the current grid is a copy */
    const struct grid *cur = grid_current();
    assert_non_null(cur);
    assert_int_equal(cur->rank, 3);
    assert_int_equal(cur->dp_rank, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_megatron_example_tp2_dp2_pp2_on_8_ranks),
        cmocka_unit_test(test_megatron_docstring_tp2_pp4_on_16_ranks),
        cmocka_unit_test(test_tp_pp_dp_order_puts_pipeline_before_data),
        cmocka_unit_test(test_context_parallel_groups),
        cmocka_unit_test(test_embedding_groups_are_first_and_last_stage),
        cmocka_unit_test(test_expert_groups),
        cmocka_unit_test(test_rank_formula_and_coordinates_round_trip),
        cmocka_unit_test(test_every_rank_is_in_exactly_one_group_of_each_kind),
        cmocka_unit_test(test_layouts_that_do_not_fit_are_refused_with_the_arithmetic),
        cmocka_unit_test(test_current_grid_is_set_once_and_copied),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
