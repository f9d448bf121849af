/* Tests of what the flag table prints (args.c): --help for every subcommand (every group and
 * flag, defaults, the not-supported marks, --help winning over other arguments) and the
 * Megatron-style config dump of --print-config and the arguments block. */
#include <strings.h>

#include "tests/args_run.h"

static void test_help_lists_every_group_title_and_flag(void **state)
{
    (void)state;
    static const char *const titles[] = {
        "network size:", "regularization:", "training:", "initialization:", "learning rate:", "checkpointing:",
        "mixed precision:", "distributed:", "validation:", "data and dataloader:", "tokenizer:", "moe:", "logging:",
        "Transformer-Engine:", "this implementation:"};
    for (int cmd = CMD_PRETRAIN; cmd <= CMD_PLAN; cmd++) {
        char *text = NULL;
        CAPTURE(text, args_print_help, (enum subcommand)cmd);
        const char *names[400];
        int n = args_flag_names((enum subcommand)cmd, names, 400);
        assert_true(n > 0 && n <= 400);
        for (int i = 0; i < n; i++) {
            char needle[128];
            snprintf(needle, sizeof needle, "  %s", names[i]);
            if (!strstr(text, needle)) fail_msg("help of %s lacks %s", args_subcommand_name((enum subcommand)cmd), names[i]);
        }
        if (cmd == CMD_PRETRAIN)
            for (size_t i = 0; i < sizeof titles / sizeof titles[0]; i++)
                if (!strstr(text, titles[i])) fail_msg("pretrain help lacks group %s", titles[i]);
        if (cmd == CMD_PREPROCESS)
            assert_non_null(strstr(text, "input data:\n") && strstr(text, "output data:\n") && strstr(text, "runtime:\n"));
        free(text);
    }
}

static void test_help_shows_defaults_and_unsupported_marks(void **state)
{
    (void)state;
    char *text = NULL;
    CAPTURE(text, args_print_help, CMD_PRETRAIN);
    assert_non_null(strstr(text, "usage: megatron pretrain"));
    assert_non_null(strstr(text, "(default: 0.1)"));
    assert_non_null(strstr(text, "(default: 4294967296.0)"));
    assert_non_null(strstr(text, "[not supported yet]"));
    assert_non_null(strstr(text, "--save-interval SAVE_INTERVAL, --persistent-save-interval"));
    free(text);
}

static void test_help_flag_wins_over_other_arguments(void **state)
{
    (void)state;
    struct run r;
    assert_int_equal(parse(&r, CMD_PRETRAIN, "--seed 3 --help --bogus"), 0);
    assert_true(r.cfg.help_requested);
    done(&r);
    assert_int_equal(parse(&r, CMD_PRETRAIN, "--bogus --help"), 0);
    assert_true(r.cfg.help_requested);
    done(&r);
    assert_int_equal(parse(&r, CMD_PREPROCESS, "-h"), 0);
    assert_true(r.cfg.help_requested);
    done(&r);
}

static void test_print_config_matches_megatron_dump_format(void **state)
{
    (void)state;
    struct run r;
    assert_int_equal(run(&r, CMD_PRETRAIN, 1, BASE "--bf16 --data-path=x --mock-data"), -1); /* two sources */
    done(&r);
    assert_int_equal(run(&r, CMD_PRETRAIN, 1, BASE "--bf16"), 0);
    char *text = NULL;
    CAPTURE(text, args_print_config, &r.cfg);
    assert_true(strncmp(text, "------------------------ arguments ------------------------\n", 60) == 0);
    assert_non_null(strstr(text, "\n-------------------- end of arguments ---------------------\n"));
    /* name, one space, 48 - len(name) dots, one space, value */
    assert_non_null(strstr(text, "\n  hidden_dropout .................................. 0.1\n"));
    assert_non_null(strstr(text, "\n  bf16 ............................................ True\n"));
    assert_non_null(strstr(text, "\n  norm_epsilon .................................... 1e-05\n"));
    assert_non_null(strstr(text, "\n  adam_eps ........................................ 1e-08\n"));
    assert_non_null(strstr(text, "\n  initial_loss_scale .............................. 4294967296.0\n"));
    assert_non_null(strstr(text, "\n  loss_scale ...................................... None\n"));
    assert_non_null(strstr(text, "\n  data_path ....................................... None\n"));
    assert_non_null(strstr(text, "\n  params_dtype .................................... torch.bfloat16\n"));
    assert_non_null(strstr(text, "\n  lr .............................................. 0.0003\n"));
    /* sorted by name, case-insensitively */
    char *prev = NULL;
    for (char *line = strstr(text, "\n  "); line; line = strstr(line + 1, "\n  ")) {
        char *name = line + 3;
        if (prev) {
            size_t a = strcspn(prev, " "), b = strcspn(name, " ");
            char pa[64], pb[64];
            snprintf(pa, sizeof pa, "%.*s", (int)a, prev);
            snprintf(pb, sizeof pb, "%.*s", (int)b, name);
            if (strcasecmp(pa, pb) >= 0) fail_msg("%s before %s", pa, pb);
        }
        prev = name;
    }
    free(text);
    done(&r);

    assert_int_equal(parse(&r, CMD_PREPROCESS, "--json-keys text title"), 0);
    text = NULL;
    CAPTURE(text, args_print_config, &r.cfg);
    assert_non_null(strstr(text, "\n  json_keys ....................................... ['text', 'title']\n"));
    assert_non_null(strstr(text, "\n  log_interval .................................... 1000\n"));
    assert_null(strstr(text, "hidden_size"));
    free(text);
    done(&r);
}

/* Megatron's dump prints the attention backend as its enum (AttnBackend.auto). */
static void test_print_config_names_the_attention_backend_as_megatron(void **state)
{
    (void)state;
    struct run r;
    assert_int_equal(run(&r, CMD_PRETRAIN, 1, BASE), 0);
    char *dump = NULL;
    CAPTURE(dump, args_print_config, &r.cfg);
    assert_non_null(strstr(dump, "  attention_backend ............................... AttnBackend.auto\n"));
    free(dump);
    done(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_lists_every_group_title_and_flag),
        cmocka_unit_test(test_help_shows_defaults_and_unsupported_marks),
        cmocka_unit_test(test_help_flag_wins_over_other_arguments),
        cmocka_unit_test(test_print_config_matches_megatron_dump_format),
        cmocka_unit_test(test_print_config_names_the_attention_backend_as_megatron),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
