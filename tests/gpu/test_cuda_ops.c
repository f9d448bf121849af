/* GPU checks of the CUDA backend (kernels/cuda/): every CUDA op against the CPU op (the reference)
 * on fresh random inputs, the fused ops included, AdamW bitwise, the sum of squares, dropout
 * masks, determinism. The tests are in test_cuda_ops_layers.c, test_cuda_ops_attention.c and
 * test_cuda_ops_optim.c, their shared helpers in cuda_test.h; this file is the runner and the
 * method.
 * Needs a GPU; `make test-gpu` builds and runs it. `--dry-run` needs none: it builds and validates
 * the cuDNN attention graphs through the cuDNN library alone. Each test runs in its own process,
 * so one crash cannot hide the others' results (the parent never initializes CUDA: a CUDA context
 * does not survive fork); `--in-process` runs them in this process instead, for compute-sanitizer,
 * which did not instrument the forked children. Output follows cmocka's summary lines.
 *
 * Method: every test of an op on 16-bit data runs twice, with bf16 and with fp16 storage (A.dt):
 * inputs are drawn in fp32 and rounded to that type (the GPU's storage); the CPU op runs in fp32
 * on exactly those values; outputs are compared by relative L2 error ||gpu - cpu|| / ||cpu||.
 * Tolerances: a bf16 output carries its own rounding, a relative error up to 2^-9 per element,
 * about 1.1e-3 in L2 for uniform rounding; the GPU also rounds a few intermediates to bf16
 * (attention's P and dS, as cuDNN does), which adds a few 1e-3. So 16-bit outputs must agree to
 * TOL_LP = 1e-2 (fp16's rounding is 8 times finer: the same bound holds with room). fp32 outputs (parameter gradients, statistics, losses) come from the same bf16
 * inputs with fp32 arithmetic in another order: TOL_F32 = 1e-4 (observed errors are near 1e-6).
 * Outputs are poisoned with NaN before every run and a NaN anywhere fails the check. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/gpu/cuda_test.h"

struct allocs A;

/* ---- runner ---- */

struct test {
    const char *name;
    bool (*fn)(void);
    int expect_exit; /* 0, or the exit code the test must end with */
    bool fp32_only;  /* no 16-bit data: runs once */
};

#define T(fn) {#fn, fn, 0, false}
static const struct test TESTS[] = {
    T(test_linear_matches_cpu),
    T(test_linear_residual_matches_cpu),
    T(test_linear_weight_grad_matches_cpu),
    T(test_linear_gelu_matches_cpu),
    T(test_linear_gelu_saving_grad_matches_cpu),
    T(test_embedding_matches_cpu_and_backward_is_bitwise),
    T(test_norms_match_cpu),
    T(test_bias_dropout_add_norm_matches_cpu),
    T(test_norm_backward_add_matches_cpu),
    T(test_norm_weight_gradients_alone_match_cpu),
    T(test_activations_match_cpu),
    T(test_rope_matches_cpu),
    T(test_attention_mha_matches_cpu),
    T(test_attention_gqa_matches_cpu),
    T(test_attention_seq_not_multiple_of_128_matches_cpu),
    T(test_attention_flash_backward_matches_cpu),
    T(test_attention_dropout_repeats_per_key_and_changes_with_it),
    T(test_attention_dropout_is_unbiased_and_drops_p_of_the_mass),
    T(test_attention_dropout_backward_is_the_gradient),
    T(test_bias_dropout_add_matches_cpu_and_cpu_mask),
    T(test_dropout_stream_in_device_memory_is_the_same_mask),
    T(test_add_zero_and_copy),
    T(test_cross_entropy_matches_cpu),
    T(test_vocab_parallel_cross_entropy_matches_cpu),
    T(test_output_layer_cross_entropy_matches_cpu),
    {"test_adam_is_bitwise_the_cpu", test_adam_is_bitwise_the_cpu, 0, true},
    T(test_adam_chunks_is_bitwise_the_cpu),
    T(test_sgd_chunks_is_bitwise_the_cpu),
    {"test_sum_squares_matches_clip_norm", test_sum_squares_matches_clip_norm, 0, true},
    T(test_gradient_reductions_repeat_bitwise),
};
#undef T

/* One test (in a child process unless --in-process): 0 when it passed. */
static int run_child(const struct test *t, uint64_t seed, enum dtype dt)
{
    alarm(300);
    A.seed = seed;
    A.dt = dt;
    cuda_init(0);
    bool ok = t->fn();
    cuda_synchronize();
    free_all();
    fflush(stdout);
    return ok ? 0 : 1;
}

/* Asks in a child process: CUDA initialized in this process would not survive the forks. */
static bool gpu_present(void)
{
    pid_t pid = fork();
    if (pid == 0) _exit(cuda_device_count() > 0 ? 0 : 1);
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static int dry_run(void)
{
    const struct attention_shape shapes[] = {shape(2, 256, 4, 4, 64), shape(2, 128, 8, 2, 128),
                                             shape(2, 96, 4, 1, 64), shape(64, 1024, 12, 12, 64)};
    int failed = 0;
    printf("cuda_device_count() = %d\n", cuda_device_count());
    for (size_t j = 0; j < 4 * sizeof shapes / sizeof shapes[0]; j++) {
        const struct attention_shape *s = &shapes[j / 4];
        enum dtype dt = j % 2 ? DT_F16 : DT_BF16;
        float p = j / 2 % 2 ? 0.1f : 0.0f; /* with the dropout RNG ops, and without */
        char err[600];
        bool ok = cuda_attention_dry_run_dtype(*s, dt, p, err, sizeof err);
        printf("attention graphs %s dropout %g B=%lld T=%lld n=%d g=%d d=%d: %s\n", dtype_name(dt),
               (double)p, (long long)s->batch, (long long)s->seq, s->heads, s->groups, s->head_dim,
               ok ? "finalized" : err);
        failed += !ok;
    }
    return failed ? 1 : 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* lines in order when piped, children included */
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    const char *only[16]; /* run the tests whose name contains one of these (all if none) */
    int nonly = 0;
    bool in_process = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dry-run")) return dry_run();
        if (!strcmp(argv[i], "--in-process")) {
            in_process = true;
            continue;
        }
        if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
            seed = strtoull(argv[++i], NULL, 0);
        } else if (nonly < 16) {
            only[nonly++] = argv[i];
        }
    }
    if (!gpu_present()) {
        printf("no GPU: nothing to test (use --dry-run to check the cuDNN graphs)\n");
        return 1;
    }
    printf("[==========] CUDA ops vs CPU ops, seed %llu (--seed to repeat)\n",
           (unsigned long long)seed);
    int passed = 0, failed = 0;
    const enum dtype types[2] = {DT_BF16, DT_F16};
    for (size_t j = 0; j < 2 * sizeof TESTS / sizeof TESTS[0]; j++) {
        const struct test *t = &TESTS[j / 2];
        enum dtype dt = types[j % 2];
        size_t i = j / 2;
        bool wanted = nonly == 0;
        for (int k = 0; k < nonly; k++) wanted |= strstr(t->name, only[k]) != NULL;
        if (!wanted || (in_process && t->expect_exit)) continue; /* that one must exit */
        if (t->fp32_only && dt != DT_BF16) continue;
        char name[160];
        snprintf(name, sizeof name, "%s%s", t->name, t->fp32_only ? "" : dt == DT_F16 ? " (fp16)" : " (bf16)");
        printf("[ RUN      ] %s\n", name);
        fflush(stdout);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int code;
        if (in_process) {
            code = run_child(t, seed + i, dt);
        } else {
            pid_t pid = fork();
            if (pid == 0) _exit(run_child(t, seed + i, dt));
            int status = 0;
            waitpid(pid, &status, 0);
            code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        bool ok = code == t->expect_exit;
        double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
        printf("[ %s ] %s (%.0f ms)\n", ok ? "      OK" : " FAILED ", name, ms);
        passed += ok;
        failed += !ok;
    }
    printf("[==========] %d test(s) run.\n", passed + failed);
    printf("[  PASSED  ] %d test(s).\n", passed);
    if (failed) printf("[  FAILED  ] %d test(s).\n", failed);
    return failed ? 1 : 0;
}
