#!/usr/bin/env bash
# A checkpoint converted from the Hugging Face fixtures reproduces their logits from the command
# line (issue 4 part 5): `megatron convert --load-hf` prints the pretrain flags; `pretrain` with
# those flags, --load and --skip-train --eval-batch on the fixture's reference.safetensors prints
# the batch's lm loss, which must equal the reference's first loss (relative 1e-5), and the
# relative L2 error of the logits, which must be below 1e-4 (the foundation issue's parity
# tolerance), with one and with two sequences per micro batch. A batch that does not fit the flags
# is one error line with exit code 2.
set -uo pipefail
MEGATRON=${MEGATRON:-./megatron}
FIXTURES=${FIXTURES:-../shared/fixtures}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() {
    echo "ckpt_eval_batch: FAIL: $*" >&2
    exit 1
}

for name in gpt2_tiny llama_tiny; do
    src="$FIXTURES/$name"
    [ -f "$src/reference.safetensors" ] || fail "$src/reference.safetensors is missing (FIXTURES=$FIXTURES)"
    "$MEGATRON" convert --load-hf "$src" --save "$tmp/$name" >"$tmp/$name.convert" 2>&1 || { cat "$tmp/$name.convert"; fail "$name: convert"; }
    flags=$(sed -n '/^--num-layers/p' "$tmp/$name.convert")
    [ -n "$flags" ] || fail "$name: convert printed no flags"
    vocab=$(sed -n 's/.*--tokenizer-type NullTokenizer --vocab-size \([0-9]*\).*/\1/p' "$tmp/$name.convert")
    seq=$(sed -n 's/^ *"T": \([0-9]*\).*/\1/p' "$src/reference.json")
    want=$(tr -d ' \n' <"$src/reference.json" | sed -n 's/.*"losses":\[\([^,]*\),.*/\1/p')
    [ -n "$vocab" ] && [ -n "$seq" ] && [ -n "$want" ] || fail "$name: cannot read the vocabulary, T or the first loss"
    for mbs in 1 2; do
        # shellcheck disable=SC2086
        "$MEGATRON" pretrain $flags --seq-length "$seq" --tokenizer-type NullTokenizer --vocab-size "$vocab" \
            --micro-batch-size "$mbs" --global-batch-size "$mbs" --train-iters 1 --lr 1e-4 --load "$tmp/$name" \
            --skip-train --eval-batch "$src/reference.safetensors" >"$tmp/$name.$mbs.out" 2>&1 \
            || { cat "$tmp/$name.$mbs.out"; fail "$name: pretrain --eval-batch"; }
        loss=$(sed -n 's/^ eval batch .* lm loss value: \([^ ]*\) .*/\1/p' "$tmp/$name.$mbs.out")
        err=$(sed -n 's/^ eval batch logits: relative L2 error \([^ ]*\) .*/\1/p' "$tmp/$name.$mbs.out")
        [ -n "$loss" ] && [ -n "$err" ] || { cat "$tmp/$name.$mbs.out"; fail "$name: no eval batch lines"; }
        awk -v a="$loss" -v b="$want" 'BEGIN { d = (a - b) / b; exit !(d < 1e-5 && d > -1e-5) }' \
            || fail "$name (micro batch $mbs): lm loss $loss, the reference's is $want"
        awk -v e="$err" 'BEGIN { exit !(e < 1e-4) }' || fail "$name (micro batch $mbs): logits relative L2 error $err >= 1e-4"
        echo "$name (micro batch $mbs): lm loss $loss (reference $want), logits relative L2 error $err"
    done
done

# a batch the flags cannot take: one line, exit 2, before anything is loaded
expect_error() { # what expected-text flags...
    local what=$1 text=$2
    shift 2
    "$MEGATRON" pretrain "$@" >"$tmp/bad.out" 2>"$tmp/bad.err"
    local rc=$?
    [ $rc -eq 2 ] || { cat "$tmp/bad.out" "$tmp/bad.err"; fail "$what: exit code $rc, expected 2"; }
    [ "$(wc -l <"$tmp/bad.err")" -eq 1 ] && grep -q "^megatron: error: $text" "$tmp/bad.err" \
        || { cat "$tmp/bad.err"; fail "$what: expected one line 'megatron: error: $text'"; }
}
# shellcheck disable=SC2086
base="$flags --tokenizer-type NullTokenizer --train-iters 1 --lr 1e-4 --micro-batch-size 2 --global-batch-size 2 --load $tmp/llama_tiny"
ref="$FIXTURES/llama_tiny/reference.safetensors"
# shellcheck disable=SC2086
expect_error "ids outside the vocabulary" "--eval-batch $ref: tokens holds id [0-9]*, outside the vocabulary of 100 tokens" \
    $base --vocab-size 100 --seq-length "$seq" --skip-train --eval-batch "$ref"
# shellcheck disable=SC2086
expect_error "another sequence length" "--eval-batch $ref: tokens has sequences of $seq tokens, --seq-length is 64; use --seq-length $seq" \
    $base --vocab-size "$vocab" --seq-length 64 --skip-train --eval-batch "$ref"
# shellcheck disable=SC2086
expect_error "without --skip-train" "--eval-batch: evaluates a model instead of training it; add --skip-train" \
    $base --vocab-size "$vocab" --seq-length "$seq" --eval-batch "$ref"
# shellcheck disable=SC2086
expect_error "not a safetensors file" "--eval-batch: " \
    $base --vocab-size "$vocab" --seq-length "$seq" --skip-train --eval-batch "$src/config.json"
# several ranks: refused by name (TP ranks hold vocabulary slices of the logits, PP ranks no logits)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# shellcheck disable=SC2086
if mpirun --oversubscribe --mca pml ob1 --mca btl self,vader -np 2 "$MEGATRON" pretrain $base --vocab-size "$vocab" \
    --seq-length "$seq" --global-batch-size 4 --skip-train --eval-batch "$ref" >/dev/null 2>"$tmp/ranks.out"; then
    fail "--eval-batch ran under mpirun -np 2"
fi
[ "$(grep -c '^megatron: error: --eval-batch: runs as one process, this job has 2 ranks; run it without mpirun$' "$tmp/ranks.out")" -eq 2 ] \
    || { cat "$tmp/ranks.out"; fail "mpirun -np 2: expected the one-line refusal from each rank"; }
echo "ckpt_eval_batch: ok"
