/* Tests of parallel/pipeline and parallel/pipeline_check: Megatron's layer-to-stage mapping (the
 * reference's L=16, PP=2, vp=2 example, uneven first/last stages), the three schedules' compute
 * order and warm-up counts, the checks on whole sets of tables (and that broken ones are caught),
 * the bubble against (PP-1)/(vp*M), and every pipeline constraint's one-line error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "parallel/pipeline.h"
#include "parallel/pipeline_check.h"

static struct pipeline_spec spec(int pp, int vp, int64_t layers, int m, int g)
{
    return (struct pipeline_spec){pp, vp, layers, -1, -1, m, g, true};
}

/* The compact compute order of one rank, as megatron plan prints it. */
static char *format_rank(const struct pipeline_schedule *sc, int rank)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    pipeline_table_format(&sc->tables[rank], 1000, f);
    fclose(f);
    return buf;
}

static void expect_order(const struct pipeline_spec *s, int rank, const char *want)
{
    struct pipeline_schedule sc;
    char err[512] = "";
    assert_int_equal(pipeline_spec_validate(s, err, sizeof err), 0);
    pipeline_schedule_build(&sc, s);
    char *got = format_rank(&sc, rank);
    if (strcmp(got, want) != 0) print_error("rank %d: got  \"%s\"\n        want \"%s\"\n", rank, got, want);
    assert_string_equal(got, want);
    free(got);
    pipeline_schedule_free(&sc);
}

static void expect_layers(const struct pipeline_spec *s, int rank, int chunk, int64_t first, int64_t count)
{
    int64_t f = -1, c = pipeline_layers(s, rank, chunk, &f);
    if (f != first || c != count)
        print_error("rank %d chunk %d: layers %lld..+%lld, want %lld..+%lld\n", rank, chunk, (long long)f,
                    (long long)c, (long long)first, (long long)count);
    assert_true(f == first && c == count);
}

/* Activations in flight: 1F1B keeps warm-up + 1 micro batches on a rank (min(PP - rank, M), as
 * Megatron), no pipelining one; every stage but the first holds a received input and an outgoing
 * gradient at most at a time under 1F1B; interleaving keeps more per rank, never more than M per
 * chunk (each chunk's peak is counted on its own: they need not coincide). */
static void test_activation_memory_follows_the_schedule(void **state)
{
    (void)state;
    struct pipeline_schedule sc;
    struct pipeline_memory mem[4];
    int ms[] = {1, 2, 8};
    for (int k = 0; k < 3; k++) {
        struct pipeline_spec s = spec(4, 1, 8, ms[k], 4);
        pipeline_schedule_build(&sc, &s);
        for (int r = 0; r < 4; r++) {
            pipeline_table_memory(&sc.tables[r], 1, ms[k], mem);
            assert_int_equal(mem[0].activations, 4 - r < ms[k] ? 4 - r : ms[k]);
            assert_int_equal(mem[0].inputs, r > 0);
            assert_int_equal(mem[0].grads, r > 0);
        }
        pipeline_schedule_free(&sc);
    }
    struct pipeline_spec s = spec(1, 1, 8, 8, 1);
    pipeline_schedule_build(&sc, &s);
    pipeline_table_memory(&sc.tables[0], 1, 8, mem);
    assert_int_equal(mem[0].activations, 1);
    assert_int_equal(mem[0].inputs + mem[0].grads, 0);
    pipeline_schedule_free(&sc);
    s = spec(4, 2, 8, 8, 4);
    pipeline_schedule_build(&sc, &s);
    for (int r = 0; r < 4; r++) {
        pipeline_table_memory(&sc.tables[r], 2, 8, mem);
        for (int v = 0; v < 2; v++) assert_true(mem[v].activations >= 1 && mem[v].activations <= 8);
        assert_true(mem[0].activations + mem[1].activations >= 4 - r);
    }
    pipeline_schedule_free(&sc);
}

static void test_megatron_example_l16_pp2_vp2_interleaves_layers(void **state)
{
    (void)state;
    struct pipeline_spec s = spec(2, 2, 16, 4, 2);
    expect_layers(&s, 0, 0, 0, 4);  /* rank 0: layers 0-3 */
    expect_layers(&s, 0, 1, 8, 4);  /*         and 8-11 */
    expect_layers(&s, 1, 0, 4, 4);  /* rank 1: layers 4-7 */
    expect_layers(&s, 1, 1, 12, 4); /*         and 12-15 */
    assert_true(pipeline_holds_embedding(&s, 0, 0));
    assert_false(pipeline_holds_embedding(&s, 1, 0));
    assert_false(pipeline_holds_embedding(&s, 0, 1));
    assert_true(pipeline_holds_loss(&s, 1, 1));
    assert_false(pipeline_holds_loss(&s, 1, 0));
    assert_false(pipeline_holds_loss(&s, 0, 1));
}

static void test_uneven_first_and_last_stages_follow_megatron_offsets(void **state)
{
    (void)state;
    /* 10 layers, first 1, last 3: the 2 middle stages share 6 */
    struct pipeline_spec s = spec(4, 1, 10, 4, 4);
    s.first_stage_layers = 1;
    s.last_stage_layers = 3;
    expect_layers(&s, 0, 0, 0, 1);
    expect_layers(&s, 1, 0, 1, 3);
    expect_layers(&s, 2, 0, 4, 3);
    expect_layers(&s, 3, 0, 7, 3);
    /* with 2 virtual stages each stage's layers split over its chunks, rows of L / vp = 8 layers */
    s = spec(4, 2, 16, 4, 4);
    s.first_stage_layers = 2;
    s.last_stage_layers = 2;
    expect_layers(&s, 0, 0, 0, 1);
    expect_layers(&s, 1, 0, 1, 3);
    expect_layers(&s, 2, 0, 4, 3);
    expect_layers(&s, 3, 0, 7, 1);
    expect_layers(&s, 0, 1, 8, 1);
    expect_layers(&s, 1, 1, 9, 3);
    expect_layers(&s, 2, 1, 12, 3);
    expect_layers(&s, 3, 1, 15, 1);
    /* only the last stage set: rank 0 is a middle stage */
    s = spec(3, 1, 9, 3, 3);
    s.last_stage_layers = 1;
    expect_layers(&s, 0, 0, 0, 4);
    expect_layers(&s, 1, 0, 4, 4);
    expect_layers(&s, 2, 0, 8, 1);
}

/* Walking the stages in order (stage = chunk * pp + rank) visits every layer once, in order. */
static void test_stages_in_order_hold_every_layer_once(void **state)
{
    (void)state;
    int checked = 0;
    for (int pp = 1; pp <= 6; pp++)
        for (int vp = 1; vp <= 3; vp++)
            for (int64_t layers = 1; layers <= 36; layers++)
                for (int64_t first = -1; first <= 6; first++)
                    for (int64_t last = -1; last <= 6; last++) {
                        struct pipeline_spec s = spec(pp, vp, layers, 8 * pp, pp);
                        s.first_stage_layers = first;
                        s.last_stage_layers = last;
                        if ((first == 0 || last == 0) || pipeline_spec_validate(&s, NULL, 0)) continue;
                        int64_t next = 0;
                        for (int st = 0; st < pp * vp; st++) {
                            int64_t f, c = pipeline_layers(&s, st % pp, st / pp, &f);
                            assert_int_equal(f, next);
                            assert_true(c >= 1);
                            next += c;
                        }
                        assert_int_equal(next, layers);
                        for (int r = 0; r < pp; r++) {
                            int64_t sum = 0;
                            for (int v = 0; v < vp; v++) sum += pipeline_layers(&s, r, v, NULL);
                            assert_int_equal(sum, pipeline_rank_layers(&s, r));
                        }
                        checked++;
                    }
    assert_true(checked > 500);
}

static void test_no_pipelining_alternates_forward_and_backward(void **state)
{
    (void)state;
    struct pipeline_spec s = spec(1, 1, 4, 3, 1);
    struct pipeline_schedule sc;
    expect_order(&s, 0, "F0.0 B0.0 F1.0 B1.0 F2.0 B2.0");
    pipeline_schedule_build(&sc, &s);
    assert_int_equal(sc.kind, PIPE_NO_PIPELINING);
    assert_string_equal(pipeline_kind_name(sc.kind), "forward_backward_no_pipelining");
    assert_int_equal(sc.tables[0].n, 6); /* no communication at all */
    pipeline_schedule_free(&sc);
}

static void test_1f1b_warms_up_pp_minus_rank_minus_1_forwards(void **state)
{
    (void)state;
    struct pipeline_spec s = spec(4, 1, 8, 6, 4);
    expect_order(&s, 0, "F0.0 F1.0 F2.0 | F3.0 B0.0 F4.0 B1.0 F5.0 B2.0 | B3.0 B4.0 B5.0");
    expect_order(&s, 1, "F0.0 F1.0 | F2.0 B0.0 F3.0 B1.0 F4.0 B2.0 F5.0 B3.0 | B4.0 B5.0");
    expect_order(&s, 3, "F0.0 B0.0 F1.0 B1.0 F2.0 B2.0 F3.0 B3.0 F4.0 B4.0 F5.0 B5.0");
    for (int r = 0; r < 4; r++) assert_int_equal(pipeline_num_warmup(&s, r), 3 - r);
    /* fewer micro batches than stages: the warm-up is capped at M */
    s = spec(4, 1, 8, 2, 4);
    assert_int_equal(pipeline_num_warmup(&s, 0), 2);
    expect_order(&s, 0, "F0.0 F1.0 | B0.0 B1.0");
}

static void test_interleaved_order_is_megatrons_schedule_table(void **state)
{
    (void)state;
    /* L=16, PP=2, vp=2, M=4: warm-up (2-0-1)*2 + (2-1)*2 = 4 on rank 0, 2 on rank 1; backward k
     * runs chunk vp-1-chunk of virtual micro batch k */
    struct pipeline_spec s = spec(2, 2, 16, 4, 2);
    expect_order(&s, 0, "F0.0 F1.0 F0.1 F1.1 | F2.0 B0.1 F3.0 B1.1 F2.1 B0.0 F3.1 B1.0 | B2.1 B3.1 B2.0 B3.0");
    expect_order(&s, 1, "F0.0 F1.0 | F0.1 B0.1 F1.1 B1.1 F2.0 B0.0 F3.0 B1.0 F2.1 B2.1 F3.1 B3.1 | B2.0 B3.0");
    assert_int_equal(pipeline_num_warmup(&s, 0), 4);
    assert_int_equal(pipeline_num_warmup(&s, 1), 2);
    /* schedules.py's example "PP2 N3M5 with VP2": virtual micro batches are micro batch
     * 0 1 2 0 1 2 3 4 3 4 on chunk 0 0 0 1 1 1 0 0 1 1, the order of every rank's forwards; rank 0
     * warms up (2-0-1)*2 + (2-1)*3 = 5 of them */
    s = spec(2, 2, 8, 5, 3);
    expect_order(&s, 0, "F0.0 F1.0 F2.0 F0.1 F1.1 | F2.1 B0.1 F3.0 B1.1 F4.0 B2.1 F3.1 B0.0 F4.1 B1.0 | B2.0 B3.1 "
                        "B4.1 B3.0 B4.0");
    /* warm-up capped at M * vp: (4-0-1)*2 + (2-1)*4 = 10 > 8 */
    s = spec(4, 2, 8, 4, 4);
    assert_int_equal(pipeline_num_warmup(&s, 0), 8);
    assert_int_equal(pipeline_num_warmup(&s, 3), 4);
}

/* One steady round of an interleaved rank sends and receives in one batch, as Megatron's
 * send_forward_backward_recv_forward_backward; a batch ends at the action with wait set. */
static void test_actions_name_peers_and_batches_end_with_wait(void **state)
{
    (void)state;
    struct pipeline_spec s = spec(4, 2, 16, 8, 4);
    struct pipeline_schedule sc;
    pipeline_schedule_build(&sc, &s);
    assert_int_equal(sc.kind, PIPE_INTERLEAVED);
    for (int r = 0; r < 4; r++) {
        const struct pipeline_table *t = &sc.tables[r];
        assert_int_equal(t->pp_rank, r);
        for (int i = 0; i < t->n; i++) {
            const struct pipeline_action *a = &t->actions[i];
            bool comm = a->op != PIPE_FORWARD && a->op != PIPE_BACKWARD;
            if (!comm) {
                assert_int_equal(a->peer, -1);
                continue;
            }
            bool next = a->op == PIPE_SEND_FORWARD || a->op == PIPE_RECV_BACKWARD;
            assert_int_equal(a->peer, next ? (r + 1) % 4 : (r + 3) % 4);
            bool last = i + 1 == t->n || t->actions[i + 1].op == PIPE_FORWARD || t->actions[i + 1].op == PIPE_BACKWARD;
            if (last) assert_true(a->wait);
        }
    }
    /* the last stage of chunk 0 (rank 3) feeds chunk 1 of rank 0 */
    bool found = false;
    for (int i = 0; i < sc.tables[0].n; i++) {
        const struct pipeline_action *a = &sc.tables[0].actions[i];
        if (a->op == PIPE_RECV_FORWARD && a->mb == 0) {
            assert_int_equal(a->chunk, 1);
            assert_int_equal(a->peer, 3);
            found = true;
        }
    }
    assert_true(found);
    pipeline_schedule_free(&sc);
}

static int valid_spec(struct pipeline_spec *s) { return pipeline_spec_validate(s, NULL, 0) == 0; }

/* PP in {2, 4}, vp in {1, 2}, many M (and group sizes): the tables pass every check, never
 * deadlock, and hold at most Megatron's warm-up + 1 micro-batch chunks per rank. */
static void test_tables_pass_checks_and_never_deadlock(void **state)
{
    (void)state;
    int built = 0;
    int pps[] = {2, 4};
    for (int a = 0; a < 2; a++)
        for (int vp = 1; vp <= 2; vp++)
            for (int m = 1; m <= 24; m++)
                for (int g = pps[a]; g <= (vp == 1 ? pps[a] : m); g++) {
                    struct pipeline_spec s = spec(pps[a], vp, 4 * pps[a], m, g);
                    if (!valid_spec(&s)) continue;
                    struct pipeline_schedule sc;
                    struct pipeline_rank_stats st[4];
                    double makespan;
                    char err[512] = "";
                    pipeline_schedule_build(&sc, &s);
                    int rc = pipeline_simulate(&sc, NULL, st, &makespan, err, sizeof err);
                    if (rc) print_error("pp %d vp %d m %d g %d: %s\n", s.pp, vp, m, g, err);
                    assert_int_equal(rc, 0);
                    assert_int_equal(pipeline_schedule_check(&sc, err, sizeof err), 0);
                    for (int r = 0; r < s.pp; r++) {
                        int w = pipeline_num_warmup(&s, r), want = w + 1 < m * vp ? w + 1 : m * vp;
                        assert_int_equal(st[r].peak_alive, want);
                        assert_true(fabs(st[r].busy - 3.0 * m * vp) < 1e-9);
                    }
                    pipeline_schedule_free(&sc);
                    built++;
                }
    assert_true(built > 100);
}

/* Removes action i of rank r. */
static void drop_action(struct pipeline_schedule *sc, int r, int i)
{
    struct pipeline_table *t = &sc->tables[r];
    memmove(&t->actions[i], &t->actions[i + 1], (size_t)(t->n - i - 1) * sizeof *t->actions);
    t->n--;
}

/* The first action of rank r with op inside a batch (not its last action). */
static int find_in_batch(const struct pipeline_schedule *sc, int r, enum pipeline_op op)
{
    for (int i = 0; i < sc->tables[r].n; i++)
        if (sc->tables[r].actions[i].op == op && !sc->tables[r].actions[i].wait) return i;
    return -1;
}

static void expect_check_fails(const struct pipeline_schedule *sc, const char *want)
{
    char err[512] = "";
    assert_int_equal(pipeline_schedule_check(sc, err, sizeof err), -1);
    if (!strstr(err, want)) print_error("got \"%s\", want \"%s\"\n", err, want);
    assert_non_null(strstr(err, want));
    assert_null(strchr(err, '\n'));
}

static void test_dropped_send_is_caught(void **state)
{
    (void)state;
    struct pipeline_spec s = spec(4, 2, 16, 8, 4);
    struct pipeline_schedule sc;
    pipeline_schedule_build(&sc, &s);
    int i = find_in_batch(&sc, 1, PIPE_SEND_FORWARD);
    assert_true(i >= 0);
    struct pipeline_action a = sc.tables[1].actions[i];
    drop_action(&sc, 1, i);
    char want[160];
    snprintf(want, sizeof want, "RECV_FORWARD of micro batch %d, chunk %d from rank 1): rank 1 never sends it", a.mb,
             a.chunk);
    expect_check_fails(&sc, want);
    pipeline_schedule_free(&sc);
}

static void test_dropped_receive_and_duplicate_forward_are_caught(void **state)
{
    (void)state;
    struct pipeline_spec s = spec(2, 1, 4, 4, 2);
    struct pipeline_schedule sc;
    pipeline_schedule_build(&sc, &s);
    int i = -1;
    for (int k = 0; k < sc.tables[1].n && i < 0; k++)
        if (sc.tables[1].actions[k].op == PIPE_RECV_FORWARD && sc.tables[1].actions[k].mb == 2) i = k;
    assert_true(i >= 0);
    if (sc.tables[1].actions[i].wait && sc.tables[1].actions[i - 1].op > PIPE_BACKWARD)
        sc.tables[1].actions[i - 1].wait = true;
    drop_action(&sc, 1, i);
    expect_check_fails(&sc, "SEND_FORWARD of micro batch 2, chunk 0 to rank 1): rank 1 never receives it");
    pipeline_schedule_free(&sc);

    pipeline_schedule_build(&sc, &s);
    pipeline_table_push(&sc.tables[0], (struct pipeline_action){PIPE_FORWARD, 1, 0, -1, false, PIPE_COOLDOWN});
    expect_check_fails(&sc, "rank 0: runs the forward of micro batch 1, chunk 0 twice");
    pipeline_schedule_free(&sc);
}

/* Splitting an exchange (send forward + receive backward, and the neighbour's send backward +
 * receive forward) into separate blocking batches makes both ranks wait on a send: the tables
 * still match message for message, but running them together deadlocks. */
static void test_split_exchange_deadlocks_and_is_caught(void **state)
{
    (void)state;
    struct pipeline_spec s = spec(2, 1, 4, 4, 2);
    struct pipeline_schedule sc;
    pipeline_schedule_build(&sc, &s);
    int i0 = find_in_batch(&sc, 0, PIPE_SEND_FORWARD), i1 = -1;
    assert_true(i0 >= 0);
    assert_int_equal(sc.tables[0].actions[i0 + 1].op, PIPE_RECV_BACKWARD);
    int mb = sc.tables[0].actions[i0].mb;
    for (int k = 0; k < sc.tables[1].n; k++)
        if (sc.tables[1].actions[k].op == PIPE_RECV_FORWARD && sc.tables[1].actions[k].mb == mb) i1 = k - 1;
    assert_true(i1 >= 0);
    assert_int_equal(sc.tables[1].actions[i1].op, PIPE_SEND_BACKWARD);
    sc.tables[0].actions[i0].wait = true;
    sc.tables[1].actions[i1].wait = true;
    expect_check_fails(&sc, "deadlock: rank 0 waits at action");
    pipeline_schedule_free(&sc);
}

static void test_receive_after_its_forward_is_caught(void **state)
{
    (void)state;
    struct pipeline_spec s = spec(2, 1, 4, 2, 2);
    struct pipeline_schedule sc;
    pipeline_schedule_build(&sc, &s);
    /* rank 1 starts: receive micro batch 0, forward it; swap the two */
    struct pipeline_table *t = &sc.tables[1];
    assert_int_equal(t->actions[0].op, PIPE_RECV_FORWARD);
    assert_int_equal(t->actions[1].op, PIPE_FORWARD);
    struct pipeline_action a = t->actions[0];
    t->actions[0] = t->actions[1];
    t->actions[1] = a;
    expect_check_fails(&sc, "rank 1, action 0 (FORWARD of micro batch 0, chunk 0): its input is never received "
                            "before it");
    pipeline_schedule_free(&sc);
}

/* With a chunk's forward 1 and backward 2 and communication free, the tables' idle time is the
 * textbook bubble (Narayanan et al. 2021): (PP - 1) / (vp * M) of the compute. */
static void test_bubble_matches_textbook(void **state)
{
    (void)state;
    int pps[] = {2, 4}, ms[] = {4, 8, 16, 32};
    for (int a = 0; a < 2; a++)
        for (int vp = 1; vp <= 2; vp++)
            for (int b = 0; b < 4; b++) {
                struct pipeline_spec s = spec(pps[a], vp, 4 * pps[a], ms[b], pps[a]);
                struct pipeline_schedule sc;
                struct pipeline_rank_stats st[4];
                double makespan, textbook = (double)(s.pp - 1) / (vp * s.num_micro_batches);
                assert_true(valid_spec(&s));
                pipeline_schedule_build(&sc, &s);
                assert_int_equal(pipeline_simulate(&sc, NULL, st, &makespan, NULL, 0), 0);
                for (int r = 0; r < s.pp; r++) {
                    double ratio = st[r].idle / st[r].busy;
                    if (fabs(ratio - textbook) > 1e-9)
                        print_error("pp %d vp %d m %d rank %d: idle/busy %g, textbook %g\n", s.pp, vp,
                                    s.num_micro_batches, r, ratio, textbook);
                    assert_true(fabs(ratio - textbook) <= 1e-9);
                    assert_true(fabs(st[r].bubble - textbook / (1 + textbook)) <= 1e-9);
                }
                pipeline_schedule_free(&sc);
            }
}

/* Interleaving shrinks the bubble; a slow last chunk (an uneven split) idles the other ranks. */
static void test_interleaving_shrinks_bubble_and_slow_stage_idles_others(void **state)
{
    (void)state;
    struct pipeline_spec one = spec(4, 1, 16, 8, 4), two = spec(4, 2, 16, 8, 4);
    struct pipeline_schedule a, b;
    struct pipeline_rank_stats sa[4], sb[4];
    double ma, mb;
    pipeline_schedule_build(&a, &one);
    pipeline_schedule_build(&b, &two);
    assert_int_equal(pipeline_simulate(&a, NULL, sa, &ma, NULL, 0), 0);
    assert_int_equal(pipeline_simulate(&b, NULL, sb, &mb, NULL, 0), 0);
    assert_true(sb[0].bubble < sa[0].bubble);
    double cost[4] = {1, 1, 1, 2}; /* the last stage does twice the work */
    struct pipeline_rank_stats sc[4];
    double mc;
    assert_int_equal(pipeline_simulate(&a, cost, sc, &mc, NULL, 0), 0);
    assert_true(mc > ma);
    assert_true(fabs(sc[3].busy - 2 * sa[3].busy) < 1e-9);
    assert_true(sc[0].bubble > sc[3].bubble);
    pipeline_schedule_free(&a);
    pipeline_schedule_free(&b);
}

/* ------------------------------------------------------------------ flags and their errors */

#define MODEL "--hidden-size 64 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 32 --vocab-size 1000 "

/* Runs `megatron plan` argument handling on a line; returns the rc, the message in err. */
static int plan_args(const char *line, struct config *c, char *err, size_t errlen)
{
    char *buf = strdup(line), *argv[64];
    int argc = 0;
    for (char *tok = strtok(buf, " "); tok && argc < 64; tok = strtok(NULL, " ")) argv[argc++] = tok;
    args_defaults(c, CMD_PLAN);
    int rc = args_parse(c, CMD_PLAN, argc, argv, err, errlen);
    if (rc == 0) rc = args_finalize(c, CMD_PLAN, 1, err, errlen);
    args_free(c);
    free(buf);
    return rc;
}

static void expect_error(const char *line, const char *want)
{
    struct config c;
    char err[1024] = "", full[1024];
    snprintf(full, sizeof full, MODEL "%s", line);
    int rc = plan_args(full, &c, err, sizeof err);
    if (rc == 0 || !strstr(err, want)) print_error("%s\n  got \"%s\"\n  want \"%s\"\n", line, err, want);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err, want));
    assert_null(strchr(err, '\n'));
}

static void test_plan_flags_derive_virtual_stages_and_group_size(void **state)
{
    (void)state;
    struct config c;
    char err[1024] = "";
    struct pipeline_spec s;
    assert_int_equal(plan_args(MODEL "--num-layers 16 --micro-batch-size 1 --global-batch-size 4 --world-size 2 "
                                     "--pipeline-model-parallel-size 2 --num-layers-per-virtual-pipeline-stage 4",
                               &c, err, sizeof err), 0);
    assert_int_equal(c.virtual_pipeline_model_parallel_size, 2);
    assert_int_equal(c.microbatch_group_size_per_vp_stage, 2);
    assert_true(c.overlap_p2p_comm);
    assert_int_equal(pipeline_spec_from_config(&c, &s, err, sizeof err), 0);
    assert_int_equal(s.vp, 2);
    assert_int_equal(s.group_size, 2);
    assert_int_equal(s.num_micro_batches, 4);
    /* one virtual stage is no interleaving (arguments.py sets it to None), and p2p overlap is off */
    assert_int_equal(plan_args(MODEL "--num-layers 16 --micro-batch-size 1 --world-size 2 "
                                     "--pipeline-model-parallel-size 2 --num-virtual-stages-per-pipeline-rank 1",
                               &c, err, sizeof err), 0);
    assert_int_equal(c.virtual_pipeline_model_parallel_size, -1);
    assert_false(c.overlap_p2p_comm);
    /* uneven stages */
    assert_int_equal(plan_args(MODEL "--num-layers 10 --micro-batch-size 1 --world-size 4 "
                                     "--pipeline-model-parallel-size 4 --decoder-first-pipeline-num-layers 1 "
                                     "--decoder-last-pipeline-num-layers 3", &c, err, sizeof err), 0);
    assert_int_equal(pipeline_spec_from_config(&c, &s, err, sizeof err), 0);
    assert_int_equal(pipeline_rank_layers(&s, 0), 1);
    assert_int_equal(pipeline_rank_layers(&s, 1), 3);
    assert_int_equal(pipeline_rank_layers(&s, 3), 3);
}

static void test_layer_split_errors_name_the_numbers(void **state)
{
    (void)state;
    expect_error("--num-layers 10 --micro-batch-size 1 --world-size 4 --pipeline-model-parallel-size 4",
                 "--num-layers 10: must be divisible by --pipeline-model-parallel-size = 4 (every stage holds the "
                 "same number of layers); use --num-layers 8 or 12, a --pipeline-model-parallel-size of 1, 2, 5 or "
                 "10, or --decoder-first-pipeline-num-layers / --decoder-last-pipeline-num-layers for an uneven split");
    expect_error("--num-layers 16 --micro-batch-size 1 --world-size 2 --pipeline-model-parallel-size 2 "
                 "--num-layers-per-virtual-pipeline-stage 3",
                 "--num-layers-per-virtual-pipeline-stage 3: must divide the layers per pipeline stage = 8 "
                 "(--num-layers 16 / --pipeline-model-parallel-size 2); use 1, 2, 4 or 8");
    expect_error("--num-layers 16 --micro-batch-size 1 --world-size 2 --pipeline-model-parallel-size 2 "
                 "--num-virtual-stages-per-pipeline-rank 3",
                 "--num-virtual-stages-per-pipeline-rank 3: 3 virtual stages must divide the 8 layers of each "
                 "pipeline stage (--num-layers 16 / --pipeline-model-parallel-size 2) (every model chunk of a stage "
                 "holds the same number of layers); use a virtual stage count of 1, 2, 4 or 8");
}

static void test_uneven_split_errors_name_the_numbers(void **state)
{
    (void)state;
    expect_error("--num-layers 8 --micro-batch-size 1 --decoder-first-pipeline-num-layers 3",
                 "--decoder-first-pipeline-num-layers 3: an uneven split needs --pipeline-model-parallel-size > 1");
    expect_error("--num-layers 8 --micro-batch-size 1 --world-size 2 --pipeline-model-parallel-size 2 "
                 "--decoder-first-pipeline-num-layers 3 --decoder-last-pipeline-num-layers 4",
                 "--decoder-first-pipeline-num-layers 3 + --decoder-last-pipeline-num-layers 4 = 7: with "
                 "--pipeline-model-parallel-size 2 there are no middle stages, so the first and last stage must hold "
                 "all --num-layers = 8; use --decoder-last-pipeline-num-layers 5");
    expect_error("--num-layers 8 --micro-batch-size 1 --world-size 4 --pipeline-model-parallel-size 4 "
                 "--decoder-first-pipeline-num-layers 4 --decoder-last-pipeline-num-layers 4",
                 "= 8: leaves no layers for the 2 middle pipeline stages (--num-layers = 8); lower the edge stages' "
                 "layers by at least 2");
    expect_error("--num-layers 10 --micro-batch-size 1 --world-size 4 --pipeline-model-parallel-size 4 "
                 "--decoder-first-pipeline-num-layers 3",
                 "--decoder-first-pipeline-num-layers 3: leaves 7 layers (--num-layers 10 minus the edge stages) for "
                 "3 middle pipeline stages, not divisible by 3; use --decoder-first-pipeline-num-layers 4 or 1");
    expect_error("--num-layers 16 --micro-batch-size 1 --world-size 2 --pipeline-model-parallel-size 2 "
                 "--decoder-first-pipeline-num-layers 8 --num-layers-per-virtual-pipeline-stage 4",
                 "--num-layers-per-virtual-pipeline-stage 4: cannot be combined with "
                 "--decoder-first-pipeline-num-layers / --decoder-last-pipeline-num-layers; give "
                 "--num-virtual-stages-per-pipeline-rank instead");
    expect_error("--num-layers 16 --micro-batch-size 1 --global-batch-size 8 --world-size 4 "
                 "--pipeline-model-parallel-size 4 --decoder-first-pipeline-num-layers 3 "
                 "--decoder-last-pipeline-num-layers 1 --num-virtual-stages-per-pipeline-rank 2",
                 "--num-virtual-stages-per-pipeline-rank 2: 2 virtual stages must divide the 3 layers of the first "
                 "stage (every model chunk of a stage holds the same number of layers); use a virtual stage count of "
                 "1 or 3, or --decoder-first-pipeline-num-layers 2 or 4");
}

static void test_interleaving_errors_name_the_numbers(void **state)
{
    (void)state;
    expect_error("--num-layers 2 --micro-batch-size 1 --num-layers-per-virtual-pipeline-stage 1",
                 "--num-layers-per-virtual-pipeline-stage 1: the interleaved schedule needs "
                 "--pipeline-model-parallel-size > 1; raise it or remove the flag");
    expect_error("--num-layers 8 --micro-batch-size 1 --global-batch-size 4 --world-size 2 "
                 "--pipeline-model-parallel-size 2 --num-virtual-stages-per-pipeline-rank 2 "
                 "--no-overlap-p2p-communication",
                 "--no-overlap-p2p-communication: the interleaved schedule without overlapped p2p communication "
                 "needs --pipeline-model-parallel-size > 2");
    expect_error("--num-layers 16 --micro-batch-size 1 --global-batch-size 6 --world-size 4 "
                 "--pipeline-model-parallel-size 4 --num-virtual-stages-per-pipeline-rank 2",
                 "6 micro batches per iteration (--global-batch-size 6 / (--micro-batch-size x data-parallel size = "
                 "1)): the interleaved schedule runs them in groups of 4 (--microbatch-group-size-per-virtual-"
                 "pipeline-stage, default --pipeline-model-parallel-size) and the last group, 6 % 4 = 2, is smaller "
                 "than --pipeline-model-parallel-size = 4, so stages would wait on each other; use 4 or 8 micro "
                 "batches (--global-batch-size 4 or 8), or --microbatch-group-size-per-virtual-pipeline-stage 6");
    expect_error("--num-layers 16 --micro-batch-size 2 --global-batch-size 8 --world-size 8 "
                 "--pipeline-model-parallel-size 4 --num-virtual-stages-per-pipeline-rank 2",
                 "2 micro batches per iteration (--global-batch-size 8 / (--micro-batch-size x data-parallel size = "
                 "4)): the interleaved schedule needs at least --pipeline-model-parallel-size = 4 micro batches; use 4 "
                 "micro batches (--global-batch-size 16), or no virtual stages");
    expect_error("--num-layers 16 --micro-batch-size 1 --global-batch-size 8 --world-size 4 "
                 "--pipeline-model-parallel-size 4 --num-virtual-stages-per-pipeline-rank 2 "
                 "--microbatch-group-size-per-virtual-pipeline-stage 2",
                 "--microbatch-group-size-per-virtual-pipeline-stage 2: must be at least "
                 "--pipeline-model-parallel-size = 4 (a group keeps every stage busy while it passes); use 4 or more");
    expect_error("--num-layers 8 --micro-batch-size 1 --global-batch-size 4 --world-size 2 "
                 "--pipeline-model-parallel-size 2 --num-virtual-stages-per-pipeline-rank 2 "
                 "--microbatch-group-size-per-virtual-pipeline-stage 6",
                 "--microbatch-group-size-per-virtual-pipeline-stage 6: more than the 4 micro batches per iteration "
                 "(--global-batch-size 4 / (--micro-batch-size x data-parallel size = 1)); use 4 or less, or 6 micro "
                 "batches (--global-batch-size 6)");
    /* a valid remainder (M % G >= PP) passes */
    struct config c;
    char err[1024] = "";
    assert_int_equal(plan_args(MODEL "--num-layers 8 --micro-batch-size 1 --global-batch-size 7 --world-size 2 "
                                     "--pipeline-model-parallel-size 2 --num-virtual-stages-per-pipeline-rank 2 "
                                     "--microbatch-group-size-per-virtual-pipeline-stage 5", &c, err, sizeof err), 0);
}

static void test_spec_validate_explains_without_batch_flags(void **state)
{
    (void)state;
    struct pipeline_spec s = spec(4, 2, 16, 6, 4);
    char err[1024] = "";
    assert_int_equal(pipeline_spec_validate(&s, err, sizeof err), -1);
    assert_non_null(strstr(err, "6 micro batches per iteration: the interleaved schedule runs them in groups of 4"));
    assert_non_null(strstr(err, "use 4 or 8 micro batches, or --microbatch-group-size-per-virtual-pipeline-stage 6"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_activation_memory_follows_the_schedule),
        cmocka_unit_test(test_megatron_example_l16_pp2_vp2_interleaves_layers),
        cmocka_unit_test(test_uneven_first_and_last_stages_follow_megatron_offsets),
        cmocka_unit_test(test_stages_in_order_hold_every_layer_once),
        cmocka_unit_test(test_no_pipelining_alternates_forward_and_backward),
        cmocka_unit_test(test_1f1b_warms_up_pp_minus_rank_minus_1_forwards),
        cmocka_unit_test(test_interleaved_order_is_megatrons_schedule_table),
        cmocka_unit_test(test_actions_name_peers_and_batches_end_with_wait),
        cmocka_unit_test(test_tables_pass_checks_and_never_deadlock),
        cmocka_unit_test(test_dropped_send_is_caught),
        cmocka_unit_test(test_dropped_receive_and_duplicate_forward_are_caught),
        cmocka_unit_test(test_split_exchange_deadlocks_and_is_caught),
        cmocka_unit_test(test_receive_after_its_forward_is_caught),
        cmocka_unit_test(test_bubble_matches_textbook),
        cmocka_unit_test(test_interleaving_shrinks_bubble_and_slow_stage_idles_others),
        cmocka_unit_test(test_plan_flags_derive_virtual_stages_and_group_size),
        cmocka_unit_test(test_layer_split_errors_name_the_numbers),
        cmocka_unit_test(test_uneven_split_errors_name_the_numbers),
        cmocka_unit_test(test_interleaving_errors_name_the_numbers),
        cmocka_unit_test(test_spec_validate_explains_without_batch_flags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
