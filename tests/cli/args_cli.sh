#!/usr/bin/env bash
# CLI behaviour of the flag table through the real binary: exit codes, one-line errors on stderr
# ("megatron: error: ..."), --help and --print-config. Run by tests/run_all.sh with MEGATRON set.
set -euo pipefail
M=${MEGATRON:-./megatron}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

BASE=(--num-layers 2 --hidden-size 64 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 32
      --micro-batch-size 2 --train-iters 10 --lr 3e-4 --mock-data --tokenizer-type NullTokenizer --vocab-size 128
      --split 98,1,1)

# expect_error TEXT ARGS...: exit code 2, exactly one line on stderr, starting "megatron: error: ",
# containing TEXT, and nothing on stdout.
expect_error() {
    local want=$1 rc=0
    shift
    "$M" "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
    if [ "$rc" -ne 2 ]; then echo "FAIL: exit $rc (want 2): megatron $*"; cat "$tmp/err"; exit 1; fi
    if [ "$(wc -l <"$tmp/err")" -ne 1 ]; then echo "FAIL: stderr is not one line: megatron $*"; cat "$tmp/err"; exit 1; fi
    if ! grep -q '^megatron: error: ' "$tmp/err"; then echo "FAIL: no 'megatron: error: ' prefix: $*"; cat "$tmp/err"; exit 1; fi
    if ! grep -qF -- "$want" "$tmp/err"; then echo "FAIL: stderr lacks '$want': megatron $*"; cat "$tmp/err"; exit 1; fi
    if [ -s "$tmp/out" ]; then echo "FAIL: stdout not empty on error: megatron $*"; exit 1; fi
}

# --help: exit 0, usage and Megatron's group titles on stdout, nothing on stderr.
"$M" pretrain --help >"$tmp/out" 2>"$tmp/err"
grep -q '^usage: megatron pretrain' "$tmp/out"
for g in "network size:" "regularization:" "training:" "learning rate:" "mixed precision:" "distributed:" \
         "data and dataloader:" "tokenizer:" "--hidden-size HIDDEN_SIZE"; do
    grep -qF -- "$g" "$tmp/out" || { echo "FAIL: pretrain --help lacks $g"; exit 1; }
done
[ ! -s "$tmp/err" ]
"$M" pretrain -h >/dev/null
"$M" preprocess --help >"$tmp/out"
grep -qF -- "--output-prefix OUTPUT_PREFIX" "$tmp/out"

expect_error "unknown flag --hiden-size: did you mean --hidden-size?; see megatron pretrain --help" pretrain --hiden-size 3
expect_error "--hidden-size abc: not an integer" pretrain "${BASE[@]}" --hidden-size abc
expect_error "--hidden-size: missing value" pretrain "${BASE[@]}" --hidden-size
expect_error "--train-iters 99999999999999999999: out of range" pretrain "${BASE[@]}" --train-iters 99999999999999999999
expect_error "--normalization rmsnorm: invalid choice" pretrain "${BASE[@]}" --normalization rmsnorm
expect_error "--global-batch-size 11: must be divisible by --micro-batch-size x data-parallel size = 2 x 1 = 2; use 10 or 12" \
    pretrain "${BASE[@]}" --global-batch-size 11
expect_error "--num-experts: a Megatron-LM flag that is not supported yet" pretrain "${BASE[@]}" --num-experts 8
expect_error "--recompute-activations: a Megatron-LM flag that is not supported yet" pretrain --recompute-activations
expect_error "--fp16: cannot be combined with --bf16" pretrain "${BASE[@]}" --fp16 --bf16
expect_error "--input: not a flag of megatron pretrain (it belongs to megatron preprocess)" pretrain --input x.jsonl
expect_error "world size 1: not divisible by tensor x pipeline x context parallel size = 2 x 1 x 1 = 2" \
    pretrain "${BASE[@]}" --tensor-model-parallel-size 2
expect_error "--num-layers: missing" pretrain --hidden-size 64
expect_error "no training data" pretrain "${BASE[@]/--mock-data/--eod-mask-loss}"
expect_error "--workers: missing" preprocess --input x.jsonl --output-prefix "$tmp/o" --tokenizer-type NullTokenizer \
    --vocab-size 10
expect_error "unexpected argument" pretrain "${BASE[@]}" stray

# --print-config: Megatron's dump on stdout, exit 0, no training.
"$M" pretrain "${BASE[@]}" --bf16 --print-config >"$tmp/out"
head -1 "$tmp/out" | grep -qx -- '------------------------ arguments ------------------------'
grep -qx '  params_dtype .................................... torch.bfloat16' "$tmp/out"
grep -qx '  global_batch_size ............................... 2' "$tmp/out"
tail -1 "$tmp/out" | grep -qx -- '-------------------- end of arguments ---------------------'
echo "args_cli: ok"
