/* The `megatron` program: dispatches a subcommand (pretrain, preprocess, samples, ...) to the
 * module that implements it. Everything else lives in train.c and the module folders. */
#include <stdio.h>
#include <string.h>

#include "args.h"
#include "ckpt/convert.h"
#include "data/preprocess.h"
#include "data/samples.h"
#include "parallel/plan.h"
#include "parallel/comm.h"
#include "train.h"
#include "util/error.h"

#define MEGATRON_VERSION "0.1.0"

static const struct {
    const char *name;
    const char *summary;
} commands[] = {
    {"pretrain", "train a GPT-family model with Megatron-LM's flags"},
    {"preprocess", "tokenize JSONL into Megatron's .bin/.idx (tools/preprocess_data.py)"},
    {"samples", "print or dump the samples the trainer would see for the same flags"},
    {"convert", "convert checkpoints to and from Hugging Face (--load-hf DIR --save CKPT | --load CKPT --save-hf DIR)"},
    {"generate", "generate text from a checkpoint (not available yet)"},
    {"plan", "show layout, groups, memory and FLOPs per rank for --world-size N, without running"},
};
#define NUM_COMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
    fprintf(f, "usage: megatron <command> [flags]   (megatron <command> --help for its flags)\n\ncommands:\n");
    for (size_t i = 0; i < NUM_COMMANDS; i++) fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nmulti-rank runs: mpirun -np N ./megatron pretrain ... (or srun inside a SLURM allocation)\n");
}

/* One process per rank under mpirun or srun (or a single process): MPI starts first so the
 * flags are validated against the world size. */
static int run_pretrain(int argc, char **argv)
{
    struct config cfg;
    comm_init(&argc, &argv);
    args_parse_or_die(&cfg, CMD_PRETRAIN, argc, argv, comm_world_size());
    if (comm_world_rank() == 0) args_print_config(stdout, &cfg);
    int rc = pretrain_main(&cfg, stdout);
    args_free(&cfg);
    comm_finalize();
    return rc;
}

static int run_preprocess(int argc, char **argv)
{
    struct config cfg;
    struct preprocess_options o;
    args_parse_or_die(&cfg, CMD_PREPROCESS, argc, argv, 1);
    memset(&o, 0, sizeof o);
    o.input = cfg.input;
    o.output_prefix = cfg.output_prefix;
    o.json_keys = cfg.json_keys;
    o.json_keys_count = cfg.json_keys_count;
    o.tokenizer_type = cfg.tokenizer_type;
    o.vocab_file = cfg.vocab_file;
    o.merge_file = cfg.merge_file;
    o.vocab_size = cfg.vocab_size;
    o.append_eod = cfg.append_eod;
    o.workers = cfg.workers;
    o.log_interval = cfg.log_interval;
    o.partitions = cfg.partitions;
    o.keep_sequential_samples = cfg.keep_sequential_samples;
    o.on_invalid = cfg.on_invalid;
    int rc = preprocess_main(&o);
    args_free(&cfg);
    return rc;
}

static int run_samples(int argc, char **argv)
{
    struct config cfg;
    args_parse_or_die(&cfg, CMD_SAMPLES, argc, argv, 1);
    int rc = samples_main(&cfg);
    args_free(&cfg);
    return rc;
}

static int run_convert(int argc, char **argv)
{
    struct config cfg;
    args_parse_or_die(&cfg, CMD_CONVERT, argc, argv, 1);
    int rc = convert_main(&cfg);
    args_free(&cfg);
    return rc;
}

static int run_plan(int argc, char **argv)
{
    struct config cfg;
    args_parse_or_die(&cfg, CMD_PLAN, argc, argv, 1);
    int rc = plan_main(&cfg);
    args_free(&cfg);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("megatron %s\n", MEGATRON_VERSION);
        return 0;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "pretrain") == 0) return run_pretrain(argc - 2, argv + 2);
    if (strcmp(cmd, "preprocess") == 0) return run_preprocess(argc - 2, argv + 2);
    if (strcmp(cmd, "samples") == 0) return run_samples(argc - 2, argv + 2);
    if (strcmp(cmd, "plan") == 0) return run_plan(argc - 2, argv + 2);
    if (strcmp(cmd, "convert") == 0) return run_convert(argc - 2, argv + 2);
    for (size_t i = 0; i < NUM_COMMANDS; i++)
        if (strcmp(cmd, commands[i].name) == 0)
            die_user("megatron %s: not supported yet; see megatron --help for the commands available now", cmd);
    die_user("unknown command '%s': the commands are pretrain, preprocess, samples, convert, generate, plan; see megatron --help", cmd);
}
