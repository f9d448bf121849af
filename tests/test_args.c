/* Tests of the flag table (args.c): Megatron's defaults, both value syntaxes, every validation
 * rule's one-line message and the derived fields (what it prints: tests/test_args_output.c). */
#include <math.h>

#include "tests/args_run.h"
#include "train.h"

static void test_defaults_match_megatron(void **state)
{
    (void)state;
    struct config c;
    args_defaults(&c, CMD_PRETRAIN);
    assert_int_equal(c.num_layers, -1);
    assert_int_equal(c.ffn_hidden_size, -1);
    assert_int_equal(c.num_query_groups, 1);
    assert_int_equal(c.make_vocab_size_divisible_by, 128);
    assert_true(c.norm_epsilon == 1e-5);
    assert_true(c.add_bias_linear);
    assert_string_equal(c.position_embedding_type, "learned_absolute");
    assert_int_equal(c.rotary_base, 10000);
    assert_true(c.rotary_percent == 1.0);
    assert_string_equal(c.normalization, "LayerNorm");
    assert_true(c.hidden_dropout == 0.1 && c.attention_dropout == 0.1);
    assert_true(c.init_method_std == 0.02);
    assert_int_equal(c.seed, 1234);
    assert_true(c.weight_decay == 0.01 && isnan(c.start_weight_decay) && isnan(c.end_weight_decay));
    assert_string_equal(c.weight_decay_incr_style, "constant");
    assert_true(c.clip_grad == 1.0 && c.adam_beta1 == 0.9 && c.adam_beta2 == 0.999 && c.adam_eps == 1e-8);
    assert_true(c.sgd_momentum == 0.9);
    assert_string_equal(c.optimizer, "adam");
    assert_true(isnan(c.lr) && c.min_lr == 0.0 && isnan(c.lr_warmup_fraction) && c.lr_warmup_init == 0.0);
    assert_string_equal(c.lr_decay_style, "linear");
    assert_string_equal(c.lr_wsd_decay_style, "exponential");
    assert_int_equal(c.lr_warmup_iters, 0);
    assert_int_equal(c.lr_warmup_samples, 0);
    assert_int_equal(c.lr_decay_iters, -1);
    assert_true(isnan(c.loss_scale) && c.initial_loss_scale == 4294967296.0 && c.min_loss_scale == 1.0);
    assert_true(c.loss_scale_window == 1000.0);
    assert_int_equal(c.hysteresis, 2);
    assert_int_equal(c.tensor_model_parallel_size, 1);
    assert_int_equal(c.pipeline_model_parallel_size, 1);
    assert_int_equal(c.context_parallel_size, 1);
    assert_int_equal(c.expert_model_parallel_size, 1);
    assert_int_equal(c.ddp_bucket_size, -1);
    assert_int_equal(c.log_interval, 100);
    assert_int_equal(c.eval_iters, 100);
    assert_int_equal(c.eval_interval, -1);
    assert_int_equal(c.num_workers, 2);
    assert_null(c.data_path);
    assert_int_equal(c.data_path_count, 0);
    assert_null(c.split);
    assert_null(c.tokenizer_type);
    assert_int_equal(c.vocab_size, -1);
    assert_string_equal(c.transformer_impl, "transformer_engine");
    assert_string_equal(c.model, "gpt");
    assert_string_equal(c.device, "auto");
    assert_false(c.fp16 || c.bf16 || c.mock_data || c.swiglu || c.print_config);
    args_free(&c);
}

static void test_preprocess_defaults_match_preprocess_data_py(void **state)
{
    (void)state;
    struct config c;
    args_defaults(&c, CMD_PREPROCESS);
    assert_int_equal(c.json_keys_count, 1);
    assert_string_equal(c.json_keys[0], "text");
    assert_int_equal(c.partitions, 1);
    assert_int_equal(c.log_interval, 1000);
    assert_int_equal(c.workers, -1);
    assert_null(c.input);
    assert_string_equal(c.on_invalid, "stop");
    assert_false(c.append_eod || c.keep_sequential_samples);
    args_free(&c);
}

static void test_space_and_equals_syntax_store_the_same_value(void **state)
{
    (void)state;
    struct run a, b;
    assert_int_equal(parse(&a, CMD_PRETRAIN, "--hidden-size 96 --lr 0.5 --normalization RMSNorm --data-path x y"), 0);
    assert_int_equal(parse(&b, CMD_PRETRAIN, "--hidden-size=96 --lr=0.5 --normalization=RMSNorm --data-path=x"), 0);
    assert_int_equal(a.cfg.hidden_size, 96);
    assert_int_equal(b.cfg.hidden_size, 96);
    assert_true(a.cfg.lr == 0.5 && b.cfg.lr == 0.5);
    assert_string_equal(a.cfg.normalization, "RMSNorm");
    assert_string_equal(b.cfg.normalization, "RMSNorm");
    assert_int_equal(a.cfg.data_path_count, 2);
    assert_int_equal(b.cfg.data_path_count, 1);
    assert_string_equal(b.cfg.data_path[0], "x");
    done(&a);
    done(&b);
}

static void test_last_value_wins_for_scalars_and_lists(void **state)
{
    (void)state;
    struct run r;
    assert_int_equal(parse(&r, CMD_PRETRAIN, "--seed 1 --seed=7 --data-path a b c --data-path d --split 1 --split 2"), 0);
    assert_int_equal(r.cfg.seed, 7);
    assert_int_equal(r.cfg.data_path_count, 1);
    assert_string_equal(r.cfg.data_path[0], "d");
    assert_string_equal(r.cfg.split, "2");
    done(&r);
    assert_int_equal(parse(&r, CMD_PREPROCESS, "--json-keys a b --json-keys c"), 0);
    assert_int_equal(r.cfg.json_keys_count, 1);
    assert_string_equal(r.cfg.json_keys[0], "c");
    done(&r);
}

static void test_list_values_stop_at_next_flag_and_take_negative_numbers(void **state)
{
    (void)state;
    struct run r;
    assert_int_equal(parse(&r, CMD_PRETRAIN, "--data-path 0.3 p1 -0.5 p2 --seed 3"), 0);
    assert_int_equal(r.cfg.data_path_count, 4);
    assert_string_equal(r.cfg.data_path[2], "-0.5");
    assert_int_equal(r.cfg.seed, 3);
    done(&r);
    assert_int_equal(parse(&r, CMD_PRETRAIN, "--lr -1"), -1); /* a value, then out of range */
    assert_non_null(strstr(r.err, "--lr -1: must be >= 0"));
    done(&r);
}

static void test_no_and_disable_forms_set_their_fields(void **state)
{
    (void)state;
    struct run r;
    assert_int_equal(parse(&r, CMD_PRETRAIN, "--disable-bias-linear --no-load-optim --no-load-rng --no-save-optim "
                                             "--no-save-rng"), 0);
    assert_false(r.cfg.add_bias_linear);
    assert_true(r.cfg.no_load_optim && r.cfg.no_load_rng && r.cfg.no_save_optim && r.cfg.no_save_rng);
    done(&r);
}

/* Megatron's MLP applies its fused bias-GeLU (the tanh approximation) unless --no-bias-gelu-fusion or
 * --disable-bias-linear turn the fusion off (then F.gelu, erf); --openai-gelu is tanh, --swiglu SwiGLU. */
static void test_gelu_form_follows_megatrons_bias_gelu_fusion(void **state)
{
    (void)state;
    static const struct {
        const char *flags;
        bool fusion;
        enum activation_type act;
    } cases[] = {
        {"", true, ACT_GELU_TANH},
        {"--no-bias-gelu-fusion", false, ACT_GELU},
        {"--disable-bias-linear", false, ACT_GELU},
        {"--no-bias-gelu-fusion --openai-gelu", false, ACT_GELU_TANH},
        {"--disable-bias-linear --openai-gelu", false, ACT_GELU_TANH},
        {"--swiglu", true, ACT_SWIGLU},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char line[512];
        snprintf(line, sizeof line, BASE "%s", cases[i].flags);
        struct run r;
        if (run(&r, CMD_PRETRAIN, 1, line)) fail_msg("'%s': %s", line, r.err);
        struct model_config mc;
        train_model_config(&r.cfg, 128, &mc);
        if (r.cfg.bias_gelu_fusion != cases[i].fusion || mc.activation != cases[i].act)
            fail_msg("'%s': bias_gelu_fusion %d activation %d, want %d and %d", cases[i].flags, r.cfg.bias_gelu_fusion,
                     (int)mc.activation, cases[i].fusion, (int)cases[i].act);
        done(&r);
    }
}

static void test_persistent_save_interval_is_an_alias(void **state)
{
    (void)state;
    struct run r;
    assert_int_equal(parse(&r, CMD_PRETRAIN, "--persistent-save-interval 50"), 0);
    assert_int_equal(r.cfg.save_interval, 50);
    done(&r);
}

static void test_unknown_flag_suggests_nearest_flag(void **state)
{
    (void)state;
    struct run r;
    parse(&r, CMD_PRETRAIN, "--hiden-size 3");
    assert_string_equal(r.err, "unknown flag --hiden-size: did you mean --hidden-size?; see megatron pretrain --help");
    done(&r);
    parse(&r, CMD_PRETRAIN, "--lr-warmup-iter=3");
    assert_non_null(strstr(r.err, "did you mean --lr-warmup-iters?"));
    done(&r);
    parse(&r, CMD_PRETRAIN, "--zzzzzzzz");
    assert_string_equal(r.err, "unknown flag --zzzzzzzz: not a flag of megatron pretrain; see megatron pretrain --help");
    done(&r);
}

static void test_flag_of_another_subcommand_is_named(void **state)
{
    (void)state;
    expect_error(CMD_PRETRAIN, 1, "--input x.jsonl", "--input: not a flag of megatron pretrain (it belongs to megatron preprocess)");
    expect_error(CMD_PREPROCESS, 1, "--hidden-size 4", "--hidden-size: not a flag of megatron preprocess (it belongs to megatron pretrain)");
}

static void test_unexpected_positional_argument_is_an_error(void **state)
{
    (void)state;
    expect_error(CMD_PRETRAIN, 1, "gpt2", "unexpected argument 'gpt2'");
    expect_error(CMD_PRETRAIN, 1, "hidden-size 4", "did you mean --hidden-size?");
    expect_error(CMD_PRETRAIN, 1, "--fp16 true", "unexpected argument 'true'");
}

static void test_unsupported_megatron_flags_are_rejected_by_name(void **state)
{
    (void)state;
    const char *flags[] = {"--recompute-activations", "--recompute-granularity full", "--num-experts 8",
                           "--fp8-format hybrid", "--log-memory-to-tensorboard", "--wandb-project p", "--apply-layernorm-1p",
                           "--qk-layernorm", "--rampup-batch-size 1 2 3"};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        struct run r;
        assert_int_equal(parse(&r, CMD_PRETRAIN, flags[i]), -1);
        char name[64];
        sscanf(flags[i], "%63s", name);
        if (strncmp(r.err, name, strlen(name)) != 0 || !strstr(r.err, "not supported yet"))
            fail_msg("%s: %s", flags[i], r.err);
        done(&r);
    }
    expect_error(CMD_PREPROCESS, 1, "--split-sentences", "--split-sentences: a Megatron-LM flag that is not supported yet");
}

static void test_transformer_impl_local_and_transformer_engine_are_accepted(void **state)
{
    (void)state;
    struct run r;
    assert_int_equal(run(&r, CMD_PRETRAIN, 1, BASE "--transformer-impl local"), 0);
    assert_string_equal(r.cfg.transformer_impl, "local");
    done(&r);
    assert_int_equal(run(&r, CMD_PRETRAIN, 1, BASE "--transformer-impl transformer_engine"), 0);
    done(&r);
    expect_error(CMD_PRETRAIN, 1, BASE "--transformer-impl inference_optimized", "not supported yet");
}

/* Megatron's attention backends are kernels for the same exact attention: every choice and
 * --use-flash-attn are accepted (and run the one attention there is); other names are refused. */
static void test_attention_backends_are_accepted(void **state)
{
    (void)state;
    const char *backends[] = {"flash", "fused", "unfused", "local", "auto"};
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++) {
        char flags[1024];
        snprintf(flags, sizeof flags, BASE "--attention-backend %s --use-flash-attn", backends[i]);
        struct run r;
        assert_int_equal(run(&r, CMD_PRETRAIN, 1, flags), 0);
        assert_string_equal(r.cfg.attention_backend, backends[i]);
        assert_true(r.cfg.use_flash_attn);
        done(&r);
    }
    struct run r;
    assert_int_equal(run(&r, CMD_PRETRAIN, 1, BASE), 0);
    assert_string_equal(r.cfg.attention_backend, "auto");
    done(&r);
    expect_error(CMD_PRETRAIN, 1, BASE "--attention-backend cudnn", "--attention-backend");
}

/* --deterministic-mode is taken (the GPU's kernels are picked at start-up, train.c); with
 * --use-flash-attn it is refused, as Megatron's validate_args refuses it. */
static void test_deterministic_mode_is_taken_and_refuses_flash_attn(void **state)
{
    (void)state;
    struct run r;
    assert_int_equal(run(&r, CMD_PRETRAIN, 1, BASE "--deterministic-mode"), 0);
    assert_true(r.cfg.deterministic_mode);
    done(&r);
    assert_int_equal(run(&r, CMD_PRETRAIN, 1, BASE), 0);
    assert_false(r.cfg.deterministic_mode);
    done(&r);
    expect_error(CMD_PRETRAIN, 1, BASE "--deterministic-mode --use-flash-attn",
                 "can not be used in deterministic mode");
}

/* Megatron's OptimizerParamScheduler refuses both ways of resolving a resumed schedule at once. */
static void test_scheduler_override_and_use_checkpoint_exclude_each_other(void **state)
{
    (void)state;
    expect_error(CMD_PRETRAIN, 1, BASE "--override-opt_param-scheduler --use-checkpoint-opt_param-scheduler",
                 "both override and use-checkpoint are set");
}

/* --log-timers-to-tensorboard writes the iteration time and throughput; Megatron's per-phase
 * timers (--timing-log-level 1 and 2) are refused with it by name. */
static void test_log_timers_to_tensorboard_refuses_phase_timers(void **state)
{
    (void)state;
    struct run r;
    assert_int_equal(run(&r, CMD_PRETRAIN, 1, BASE "--tensorboard-dir tb --log-timers-to-tensorboard"), 0);
    done(&r);
    expect_error(CMD_PRETRAIN, 1, BASE "--log-timers-to-tensorboard --timing-log-level 1",
                 "--log-timers-to-tensorboard with --timing-log-level 1: the per-phase timers are not written");
}

static void test_value_errors_are_one_line(void **state)
{
    (void)state;
    expect_error(CMD_PRETRAIN, 1, "--hidden-size abc", "--hidden-size abc: not an integer");
    expect_error(CMD_PRETRAIN, 1, "--hidden-size 1.5", "--hidden-size 1.5: not an integer");
    expect_error(CMD_PRETRAIN, 1, "--train-iters 99999999999999999999", "out of range of a 64-bit integer");
    expect_error(CMD_PRETRAIN, 1, "--lr fast", "--lr fast: not a number");
    expect_error(CMD_PRETRAIN, 1, "--lr inf", "--lr inf: not a finite number");
    expect_error(CMD_PRETRAIN, 1, "--lr 0x10", "not a number");
    expect_error(CMD_PRETRAIN, 1, "--hidden-size", "--hidden-size: missing value; write --hidden-size HIDDEN_SIZE");
    expect_error(CMD_PRETRAIN, 1, "--hidden-size --seed 3", "--hidden-size: missing value");
    expect_error(CMD_PRETRAIN, 1, "--normalization rmsnorm", "invalid choice (choose from LayerNorm, RMSNorm); did you mean RMSNorm?");
    expect_error(CMD_PRETRAIN, 1, "--lr-decay-style exotic", "--lr-decay-style exotic: invalid choice");
    expect_error(CMD_PRETRAIN, 1, "--fp16=yes", "--fp16: takes no value");
    expect_error(CMD_PRETRAIN, 1, "--num-layers 0", "--num-layers 0: must be >= 1");
    expect_error(CMD_PRETRAIN, 1, "--save=", "--save: empty value");
    expect_error(CMD_PREPROCESS, 1, "--json-keys", "--json-keys: needs at least one value");
}

static void test_values_with_control_characters_stay_on_one_line(void **state)
{
    (void)state;
    struct run r;
    memset(&r, 0, sizeof r);
    char value[] = "12\n34", flag[] = "--hidden-size";
    char *argv[] = {flag, value};
    args_defaults(&r.cfg, CMD_PRETRAIN);
    assert_int_equal(args_parse(&r.cfg, CMD_PRETRAIN, 2, argv, r.err, sizeof r.err), -1);
    assert_null(strchr(r.err, '\n'));
    assert_non_null(strstr(r.err, "12?34"));
    args_free(&r.cfg);
}

static void test_heads_must_divide_hidden_unless_kv_channels_given(void **state)
{
    (void)state;
    expect_error(CMD_PRETRAIN, 1, BASE "--hidden-size 66",
                 "--hidden-size 66: must be divisible by --num-attention-heads = 4 (or give --kv-channels); use 64 or 68");
    struct run r;
    assert_int_equal(run(&r, CMD_PRETRAIN, 1, BASE "--hidden-size 66 --kv-channels 16"), 0);
    assert_int_equal(r.cfg.kv_channels, 16);
    done(&r);
}

static void test_query_groups_must_divide_heads(void **state)
{
    (void)state;
    expect_error(CMD_PRETRAIN, 1, BASE "--group-query-attention --num-query-groups 3",
                 "--num-query-groups 3: must divide --num-attention-heads = 4; use one of 1, 2, 4");
    struct run r;
    assert_int_equal(run(&r, CMD_PRETRAIN, 1, BASE "--group-query-attention --num-query-groups 2"), 0);
    assert_int_equal(r.cfg.num_query_groups, 2);
    done(&r);
    assert_int_equal(run(&r, CMD_PRETRAIN, 1, BASE "--num-query-groups 2"), 0); /* ignored without GQA */
    assert_int_equal(r.cfg.num_query_groups, 4);
    done(&r);
}

static void test_global_batch_must_be_divisible_by_micro_batch_times_dp(void **state)
{
    (void)state;
    struct run r;
    run(&r, CMD_PRETRAIN, 1, BASE "--micro-batch-size 4 --global-batch-size 10");
    assert_string_equal(r.err, "--global-batch-size 10: must be divisible by --micro-batch-size x data-parallel size = "
                               "4 x 1 = 4; use 8 or 12");
    done(&r);
    expect_error(CMD_PRETRAIN, 2, BASE "--micro-batch-size 4 --global-batch-size 12", "= 4 x 2 = 8; use 8 or 16");
}

static void test_seq_length_must_fit_learned_positions(void **state)
{
    (void)state;
    expect_error(CMD_PRETRAIN, 1, BASE "--seq-length 128",
                 "--seq-length 128: must be <= --max-position-embeddings = 64");
    expect_error(CMD_PRETRAIN, 1, MODEL DATA "--micro-batch-size 2 --train-iters 10 --lr 1 --max-position-embeddings=-1",
                 "--max-position-embeddings -1: must be >= 1");
    struct run r;
    /* RoPE needs no table: max positions default to the sequence length. */
    assert_int_equal(run(&r, CMD_PRETRAIN, 1,
                         "--num-layers 2 --hidden-size 64 --num-attention-heads 4 --seq-length 48 "
                         "--position-embedding-type rope " DATA "--micro-batch-size 2 --train-iters 10 --lr 1e-3"), 0);
    assert_int_equal(r.cfg.max_position_embeddings, 48);
    done(&r);
    expect_error(CMD_PRETRAIN, 1,
                 "--num-layers 2 --hidden-size 64 --num-attention-heads 4 --seq-length 48 " DATA
                 "--micro-batch-size 2 --train-iters 10 --lr 1e-3",
                 "--max-position-embeddings: missing");
    assert_int_equal(run(&r, CMD_PRETRAIN, 1, BASE "--use-rotary-position-embeddings"), 0);
    assert_string_equal(r.cfg.position_embedding_type, "rope");
    done(&r);
}

static void test_warmup_fraction_and_warmup_iters_are_exclusive(void **state)
{
    (void)state;
    expect_error(CMD_PRETRAIN, 1, BASE "--lr-warmup-fraction 0.1 --lr-warmup-iters 2",
                 "--lr-warmup-fraction 0.1: cannot be combined with --lr-warmup-iters 2; give only one of them");
    expect_error(CMD_PRETRAIN, 1, BASE "--lr-warmup-fraction 1", "--lr-warmup-fraction 1: must be in [0, 1)");
}

static void test_train_iters_and_train_samples_exclusive_and_one_required(void **state)
{
    (void)state;
    expect_error(CMD_PRETRAIN, 1, BASE "--train-samples 100",
                 "--train-iters 10: cannot be combined with --train-samples 100; give only one of them");
    expect_error(CMD_PRETRAIN, 1, MODEL DATA "--micro-batch-size 2 --lr 1",
                 "--train-iters: missing (megatron pretrain needs --train-iters or --train-samples)");
    expect_error(CMD_PRETRAIN, 1, BASE "--lr-decay-samples 40", "--lr-decay-samples: training is iteration-based");
    expect_error(CMD_PRETRAIN, 1, MODEL DATA "--micro-batch-size 2 --lr 1 --train-samples 40 --lr-warmup-iters 2",
                 "--lr-warmup-iters: training is sample-based (--train-samples); use --lr-warmup-samples instead");
}

static void test_fp16_and_bf16_are_exclusive_and_set_params_dtype(void **state)
{
    (void)state;
    expect_error(CMD_PRETRAIN, 1, BASE "--fp16 --bf16", "--fp16: cannot be combined with --bf16; choose one precision");
    struct run r;
    assert_int_equal(run(&r, CMD_PRETRAIN, 1, BASE "--bf16"), 0);
    assert_int_equal(r.cfg.params_dtype, DT_BF16);
    assert_true(r.cfg.accumulate_allreduce_grads_in_fp32);
    done(&r);
    assert_int_equal(run(&r, CMD_PRETRAIN, 1, BASE "--fp16"), 0);
    assert_int_equal(r.cfg.params_dtype, DT_F16);
    done(&r);
    assert_int_equal(run(&r, CMD_PRETRAIN, 1, BASE), 0);
    assert_int_equal(r.cfg.params_dtype, DT_F32);
    done(&r);
}

static void test_dropout_must_be_in_zero_one(void **state)
{
    (void)state;
    expect_error(CMD_PRETRAIN, 1, "--hidden-dropout 1.0", "--hidden-dropout 1.0: must be in [0, 1); use a value in that range (default 0.1)");
    expect_error(CMD_PRETRAIN, 1, "--attention-dropout -0.1", "--attention-dropout -0.1: must be in [0, 1)");
    struct run r;
    assert_int_equal(parse(&r, CMD_PRETRAIN, "--hidden-dropout 0 --attention-dropout 0.99"), 0);
    done(&r);
}

static void test_exactly_one_data_source(void **state)
{
    (void)state;
    expect_error(CMD_PRETRAIN, 1, BASE "--data-path corpus_text_document",
                 "--mock-data: cannot be combined with --data-path");
    expect_error(CMD_PRETRAIN, 1, MODEL "--tokenizer-type NullTokenizer --vocab-size 8 --micro-batch-size 2 "
                 "--train-iters 10 --lr 1", "no training data: megatron pretrain needs --data-path PREFIX [PREFIX ...], --train-data-path ... or --mock-data");
    struct run r;
    assert_int_equal(run(&r, CMD_PRETRAIN, 1, MODEL "--tokenizer-type NullTokenizer --vocab-size 8 "
                                              "--micro-batch-size 2 --train-iters 10 --lr 1 --data-path 0.7 a 0.3 b"), 0);
    assert_int_equal(r.cfg.data_path_count, 4);
    done(&r);
    expect_error(CMD_PRETRAIN, 1, BASE "--train-data-path a --mock-data",
                 "--mock-data: cannot be combined with --train/valid/test-data-path");
    expect_error(CMD_PRETRAIN, 1, BASE "--reset-attention-mask", "--reset-attention-mask: not supported yet by the model");
}

static void test_tokenizer_needs_its_vocabulary(void **state)
{
    (void)state;
    const char *common = MODEL "--mock-data --micro-batch-size 2 --train-iters 10 --lr 1 ";
    char line[512];
    snprintf(line, sizeof line, "%s--tokenizer-type NullTokenizer", common);
    expect_error(CMD_PRETRAIN, 1, line, "--vocab-size: required with --tokenizer-type NullTokenizer; add --vocab-size N");
    snprintf(line, sizeof line, "%s--tokenizer-type GPT2BPETokenizer --merge-file m.txt", common);
    expect_error(CMD_PRETRAIN, 1, line, "--vocab-file: required with --tokenizer-type GPT2BPETokenizer");
    snprintf(line, sizeof line, "%s--tokenizer-type GPT2BPETokenizer --vocab-file v.json", common);
    expect_error(CMD_PRETRAIN, 1, line, "--merge-file: required with --tokenizer-type GPT2BPETokenizer");
    snprintf(line, sizeof line, "%s", common);
    expect_error(CMD_PRETRAIN, 1, line, "--tokenizer-type: missing");
    snprintf(line, sizeof line, "%s--tokenizer-type HuggingFaceTokenizer", common);
    expect_error(CMD_PRETRAIN, 1, line, "--tokenizer-type HuggingFaceTokenizer: not supported yet");
}

static void test_parallel_sizes_are_validated_then_not_supported_yet(void **state)
{
    (void)state;
    struct run r;
    expect_error(CMD_PRETRAIN, 3, BASE "--tensor-model-parallel-size 2",
                 "world size 3: not divisible by tensor x pipeline x context parallel size = 2 x 1 x 1 = 2");
    assert_int_equal(run(&r, CMD_PRETRAIN, 4, BASE "--tensor-model-parallel-size 2"), 0);
    assert_int_equal(r.cfg.data_parallel_size, 2);
    done(&r);
    assert_int_equal(run(&r, CMD_PRETRAIN, 2, BASE "--pipeline-model-parallel-size 2"), 0);
    assert_int_equal(r.cfg.data_parallel_size, 1);
    done(&r);
    expect_error(CMD_PRETRAIN, 2, BASE "--context-parallel-size 2", "context parallelism is not supported yet");
    expect_error(CMD_PRETRAIN, 2, BASE "--expert-model-parallel-size 2", "expert parallelism is not supported yet");
    expect_error(CMD_PRETRAIN, 4, BASE "--tensor-model-parallel-size 4 --num-attention-heads 2 --hidden-size 64",
                 "--num-attention-heads 2: must be a multiple of --tensor-model-parallel-size = 4");
    expect_error(CMD_PRETRAIN, 2, BASE "--pipeline-model-parallel-size 2 --num-layers 3",
                 "--num-layers 3: must be divisible by --pipeline-model-parallel-size = 2");
    expect_error(CMD_PRETRAIN, 1, BASE "--num-layers-per-virtual-pipeline-stage 1",
                 "the interleaved schedule needs --pipeline-model-parallel-size > 1");
}

static void test_distributed_features_are_not_supported_yet(void **state)
{
    (void)state;
    struct run r;
    /* sequence parallelism needs TP > 1 (Megatron turns it off otherwise) and a divisible sequence */
    assert_int_equal(run(&r, CMD_PRETRAIN, 1, BASE "--sequence-parallel"), 0);
    assert_false(r.cfg.sequence_parallel);
    done(&r);
    expect_error(CMD_PRETRAIN, 3, BASE "--tensor-model-parallel-size 3 --num-attention-heads 3 --hidden-size 96 "
                 "--sequence-parallel", "--sequence-parallel: --seq-length 32 must be divisible by "
                 "--tensor-model-parallel-size = 3");
    assert_int_equal(run(&r, CMD_PRETRAIN, 2, BASE "--use-distributed-optimizer --overlap-grad-reduce"), 0);
    done(&r);
    expect_error(CMD_PRETRAIN, 2, BASE "--overlap-param-gather",
                 "--overlap-param-gather: only supported with the distributed optimizer");
    expect_error(CMD_PRETRAIN, 2, BASE "--overlap-param-gather --use-distributed-optimizer",
                 "--overlap-param-gather: must be used with --overlap-grad-reduce");
    expect_error(CMD_PRETRAIN, 2, BASE "--overlap-param-gather --use-distributed-optimizer --overlap-grad-reduce",
                 "not supported yet");
}

static void test_unsupported_optimizers_and_positions_are_refused_by_name(void **state)
{
    (void)state;
    expect_error(CMD_PRETRAIN, 1, BASE "--optimizer muon", "--optimizer muon: not supported yet; use adam or sgd");
    expect_error(CMD_PRETRAIN, 1, BASE "--position-embedding-type yarn", "--position-embedding-type yarn: not supported yet");
}

static void test_ffn_hidden_size_defaults_as_megatron(void **state)
{
    (void)state;
    struct run r;
    assert_int_equal(run(&r, CMD_PRETRAIN, 1, BASE), 0);
    assert_int_equal(r.cfg.ffn_hidden_size, 256); /* 4h */
    done(&r);
    assert_int_equal(run(&r, CMD_PRETRAIN, 1, BASE "--swiglu"), 0);
    assert_int_equal(r.cfg.ffn_hidden_size, 128); /* int(4*64*2/3/64)*64 = int(2.67)*64 */
    done(&r);
    assert_int_equal(run(&r, CMD_PRETRAIN, 1, BASE "--swiglu --hidden-size 4096 --num-attention-heads 32"), 0);
    assert_int_equal(r.cfg.ffn_hidden_size, 10880); /* LLaMA-style 4096 -> 10880 */
    done(&r);
    assert_int_equal(run(&r, CMD_PRETRAIN, 1, BASE "--swiglu --ffn-hidden-size 11008"), 0);
    assert_int_equal(r.cfg.ffn_hidden_size, 11008);
    done(&r);
    expect_error(CMD_PRETRAIN, 1, BASE "--swiglu --hidden-size 16", "the default --ffn-hidden-size int(4h*2/3/64)*64 is 0");
}

static void test_kv_channels_and_query_groups_default_from_heads(void **state)
{
    (void)state;
    struct run r;
    assert_int_equal(run(&r, CMD_PRETRAIN, 1, BASE), 0);
    assert_int_equal(r.cfg.kv_channels, 16);
    assert_int_equal(r.cfg.num_query_groups, 4);
    done(&r);
}

static void test_global_batch_defaults_to_micro_batch_times_dp(void **state)
{
    (void)state;
    struct run r;
    assert_int_equal(run(&r, CMD_PRETRAIN, 4, BASE), 0);
    assert_int_equal(r.cfg.world_size, 4);
    assert_int_equal(r.cfg.data_parallel_size, 4);
    assert_int_equal(r.cfg.global_batch_size, 8);
    assert_int_equal(r.cfg.num_micro_batches, 1);
    done(&r);
    assert_int_equal(run(&r, CMD_PRETRAIN, 2, BASE "--global-batch-size 16"), 0);
    assert_int_equal(r.cfg.num_micro_batches, 4);
    done(&r);
}

static void test_schedule_steps_follow_megatron(void **state)
{
    (void)state;
    struct run r;
    assert_int_equal(run(&r, CMD_PRETRAIN, 1, BASE "--global-batch-size 8 --lr-warmup-iters 2"), 0);
    assert_int_equal(r.cfg.lr_decay_iters, 10);
    assert_int_equal(r.cfg.lr_decay_steps, 80);
    assert_int_equal(r.cfg.wd_incr_steps, 80);
    assert_true(r.cfg.lr_warmup_steps == 16.0);
    assert_int_equal(r.cfg.wsd_decay_steps, -1);
    done(&r);
    assert_int_equal(run(&r, CMD_PRETRAIN, 1, MODEL DATA "--micro-batch-size 2 --global-batch-size 8 --lr 1 "
                                              "--train-samples 100 --lr-warmup-fraction 0.25"), 0);
    assert_int_equal(r.cfg.train_iters, 12); /* 100 // 8 */
    assert_int_equal(r.cfg.lr_decay_samples, 100);
    assert_int_equal(r.cfg.lr_decay_steps, 100);
    assert_true(r.cfg.lr_warmup_steps == 25.0);
    done(&r);
    expect_error(CMD_PRETRAIN, 1, BASE "--lr-decay-style WSD", "--lr-decay-style WSD: needs the length of its annealing phase; add --lr-wsd-decay-iters N");
    assert_int_equal(run(&r, CMD_PRETRAIN, 1, BASE "--lr-decay-style WSD --lr-wsd-decay-iters 3"), 0);
    assert_int_equal(r.cfg.wsd_decay_steps, 6);
    done(&r);
    expect_error(CMD_PRETRAIN, 1, BASE "--lr-warmup-iters 10", "--lr-warmup-iters 10: warmup must end before the learning-rate decay ends");
    expect_error(CMD_PRETRAIN, 1, BASE "--min-lr 1", "--min-lr 1: must be <= --lr = 0.0003");
    expect_error(CMD_PRETRAIN, 1, MODEL DATA "--micro-batch-size 2 --train-iters 10", "--lr: missing");
}

static void test_weight_decay_increment_needs_start_and_end(void **state)
{
    (void)state;
    struct run r;
    assert_int_equal(run(&r, CMD_PRETRAIN, 1, BASE "--weight-decay 0.1"), 0);
    assert_true(r.cfg.start_weight_decay == 0.1 && r.cfg.end_weight_decay == 0.1);
    done(&r);
    expect_error(CMD_PRETRAIN, 1, BASE "--weight-decay-incr-style linear --start-weight-decay 0",
                 "--end-weight-decay: required with --weight-decay-incr-style linear");
    expect_error(CMD_PRETRAIN, 1, BASE "--start-weight-decay 0.1", "--start-weight-decay: only used with --weight-decay-incr-style");
    assert_int_equal(run(&r, CMD_PRETRAIN, 1, BASE "--weight-decay-incr-style cosine --start-weight-decay 0 "
                                              "--end-weight-decay 0.1"), 0);
    done(&r);
}

static void test_split_defaults_to_megatron_legacy_value_and_is_normalised(void **state)
{
    (void)state;
    struct run r;
    assert_int_equal(run(&r, CMD_PRETRAIN, 1, MODEL "--mock-data --tokenizer-type NullTokenizer --vocab-size 8 "
                                              "--micro-batch-size 2 --train-iters 10 --lr 1"), 0);
    assert_string_equal(r.cfg.split, "969, 30, 1");
    assert_false(r.cfg.split_defaulted); /* Megatron warns only with --data-path */
    assert_true(fabs(r.cfg.split_weights[0] - 0.969) < 1e-12 && fabs(r.cfg.split_weights[2] - 0.001) < 1e-12);
    done(&r);
    assert_int_equal(run(&r, CMD_PRETRAIN, 1, MODEL "--data-path p --tokenizer-type NullTokenizer --vocab-size 8 "
                                              "--micro-batch-size 2 --train-iters 10 --lr 1"), 0);
    assert_string_equal(r.cfg.split, "969, 30, 1");
    assert_true(r.cfg.split_defaulted);
    done(&r);
    assert_int_equal(run(&r, CMD_PRETRAIN, 1, BASE "--split 90,10"), 0);
    assert_true(r.cfg.split_weights[0] == 0.9 && r.cfg.split_weights[1] == 0.1 && r.cfg.split_weights[2] == 0.0);
    assert_false(r.cfg.split_defaulted);
    done(&r);
    expect_error(CMD_PRETRAIN, 1, BASE "--split 1,2,3,4", "--split 1,2,3,4: at most three proportions");
    expect_error(CMD_PRETRAIN, 1, BASE "--split 0,0", "--split 0,0: needs positive proportions");
    expect_error(CMD_PRETRAIN, 1, BASE "--split 1.2.3", "'1.2.3' is not a number");
}

static void test_preprocess_required_flags_and_partitions(void **state)
{
    (void)state;
    const char *tok = "--tokenizer-type NullTokenizer --vocab-size 100 ";
    char line[256];
    snprintf(line, sizeof line, "%s--output-prefix o --workers 2", tok);
    expect_error(CMD_PREPROCESS, 1, line, "--input: missing (megatron preprocess needs it)");
    snprintf(line, sizeof line, "%s--input x.jsonl --workers 2", tok);
    expect_error(CMD_PREPROCESS, 1, line, "--output-prefix: missing");
    snprintf(line, sizeof line, "%s--input x.jsonl --output-prefix o", tok);
    expect_error(CMD_PREPROCESS, 1, line, "--workers: missing");
    snprintf(line, sizeof line, "%s--input x.jsonl --output-prefix o --workers 3 --partitions 2", tok);
    expect_error(CMD_PREPROCESS, 1, line, "--workers 3: must be divisible by --partitions = 2");
    snprintf(line, sizeof line, "%s--input x.jsonl --output-prefix o --workers 4 --partitions 2 --append-eod "
             "--on-invalid skip --json-keys text meta", tok);
    struct run r;
    assert_int_equal(run(&r, CMD_PREPROCESS, 1, line), 0);
    assert_true(r.cfg.append_eod);
    assert_string_equal(r.cfg.on_invalid, "skip");
    assert_int_equal(r.cfg.json_keys_count, 2);
    done(&r);
    expect_error(CMD_PREPROCESS, 1, "--on-invalid ignore", "--on-invalid ignore: invalid choice (choose from stop, skip)");
}

static void test_samples_takes_pretrain_data_flags(void **state)
{
    (void)state;
    struct run r;
    assert_int_equal(run(&r, CMD_SAMPLES, 1, "--data-path p_text_document --split 9,1,0 --seq-length 16 "
                                            "--micro-batch-size 2 --train-iters 3 --tokenizer-type NullTokenizer "
                                            "--vocab-size 7 --samples-split valid"), 0);
    assert_string_equal(r.cfg.samples_split, "valid");
    assert_int_equal(r.cfg.samples_count, 10);
    assert_null(r.cfg.samples_output);
    assert_int_equal(r.cfg.global_batch_size, 2);
    done(&r);
    expect_error(CMD_SAMPLES, 1, "--samples-count 0", "--samples-count 0: must be >= 1");
    expect_error(CMD_PRETRAIN, 1, "--samples-count 3", "(it belongs to megatron samples)");
}

static void test_convert_needs_exactly_one_direction(void **state)
{
    (void)state;
    struct run r;
    assert_int_equal(run(&r, CMD_CONVERT, 1, "--load-hf hf --save ckpt"), 0);
    done(&r);
    assert_int_equal(run(&r, CMD_CONVERT, 1, "--load ckpt --save-hf hf"), 0);
    done(&r);
    expect_error(CMD_CONVERT, 1, "", "megatron convert: nothing to convert");
    expect_error(CMD_CONVERT, 1, "--load-hf hf", "--load-hf: needs --save");
    expect_error(CMD_CONVERT, 1, "--load-hf hf --save-hf out", "--load-hf: cannot be combined with --save-hf");
}

static void test_plan_takes_world_size_and_parallel_sizes(void **state)
{
    (void)state;
    struct run r;
    assert_int_equal(run(&r, CMD_PLAN, 1, MODEL "--micro-batch-size 1 --world-size 16 --tensor-model-parallel-size 2 "
                                           "--pipeline-model-parallel-size 2"), 0);
    assert_int_equal(r.cfg.world_size, 16);
    assert_int_equal(r.cfg.data_parallel_size, 4);
    assert_int_equal(r.cfg.global_batch_size, 4);
    done(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_match_megatron),
        cmocka_unit_test(test_preprocess_defaults_match_preprocess_data_py),
        cmocka_unit_test(test_space_and_equals_syntax_store_the_same_value),
        cmocka_unit_test(test_last_value_wins_for_scalars_and_lists),
        cmocka_unit_test(test_list_values_stop_at_next_flag_and_take_negative_numbers),
        cmocka_unit_test(test_no_and_disable_forms_set_their_fields),
        cmocka_unit_test(test_gelu_form_follows_megatrons_bias_gelu_fusion),
        cmocka_unit_test(test_persistent_save_interval_is_an_alias),
        cmocka_unit_test(test_unknown_flag_suggests_nearest_flag),
        cmocka_unit_test(test_flag_of_another_subcommand_is_named),
        cmocka_unit_test(test_unexpected_positional_argument_is_an_error),
        cmocka_unit_test(test_unsupported_megatron_flags_are_rejected_by_name),
        cmocka_unit_test(test_transformer_impl_local_and_transformer_engine_are_accepted),
        cmocka_unit_test(test_attention_backends_are_accepted),
        cmocka_unit_test(test_deterministic_mode_is_taken_and_refuses_flash_attn),
        cmocka_unit_test(test_log_timers_to_tensorboard_refuses_phase_timers),
        cmocka_unit_test(test_scheduler_override_and_use_checkpoint_exclude_each_other),
        cmocka_unit_test(test_value_errors_are_one_line),
        cmocka_unit_test(test_values_with_control_characters_stay_on_one_line),
        cmocka_unit_test(test_heads_must_divide_hidden_unless_kv_channels_given),
        cmocka_unit_test(test_query_groups_must_divide_heads),
        cmocka_unit_test(test_global_batch_must_be_divisible_by_micro_batch_times_dp),
        cmocka_unit_test(test_seq_length_must_fit_learned_positions),
        cmocka_unit_test(test_warmup_fraction_and_warmup_iters_are_exclusive),
        cmocka_unit_test(test_train_iters_and_train_samples_exclusive_and_one_required),
        cmocka_unit_test(test_fp16_and_bf16_are_exclusive_and_set_params_dtype),
        cmocka_unit_test(test_dropout_must_be_in_zero_one),
        cmocka_unit_test(test_exactly_one_data_source),
        cmocka_unit_test(test_tokenizer_needs_its_vocabulary),
        cmocka_unit_test(test_parallel_sizes_are_validated_then_not_supported_yet),
        cmocka_unit_test(test_distributed_features_are_not_supported_yet),
        cmocka_unit_test(test_unsupported_optimizers_and_positions_are_refused_by_name),
        cmocka_unit_test(test_ffn_hidden_size_defaults_as_megatron),
        cmocka_unit_test(test_kv_channels_and_query_groups_default_from_heads),
        cmocka_unit_test(test_global_batch_defaults_to_micro_batch_times_dp),
        cmocka_unit_test(test_schedule_steps_follow_megatron),
        cmocka_unit_test(test_weight_decay_increment_needs_start_and_end),
        cmocka_unit_test(test_split_defaults_to_megatron_legacy_value_and_is_normalised),
        cmocka_unit_test(test_preprocess_required_flags_and_partitions),
        cmocka_unit_test(test_samples_takes_pretrain_data_flags),
        cmocka_unit_test(test_convert_needs_exactly_one_direction),
        cmocka_unit_test(test_plan_takes_world_size_and_parallel_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
