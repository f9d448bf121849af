#!/usr/bin/env bash
# `megatron convert` from the command line, for the GPT-2 and LLaMA fixtures: HF -> checkpoint
# prints the pretrain flags of the model; `pretrain` with exactly those flags loads the checkpoint
# (and trains from it); checkpoint -> HF gives back model.safetensors byte for byte and the same
# config.json; a directory that is not a model is one error line with exit code 2.
set -uo pipefail
MEGATRON=${MEGATRON:-./megatron}
FIXTURES=${FIXTURES:-../shared/fixtures}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() {
    echo "ckpt_convert: FAIL: $*" >&2
    exit 1
}

for name in gpt2_tiny llama_tiny; do
    src="$FIXTURES/$name"
    [ -f "$src/model.safetensors" ] || fail "$src is missing (FIXTURES=$FIXTURES)"
    "$MEGATRON" convert --load-hf "$src" --save "$tmp/$name.ckpt" >"$tmp/$name.out" 2>&1 || { cat "$tmp/$name.out"; fail "$name: to checkpoint"; }
    [ "$(cat "$tmp/$name.ckpt/latest_checkpointed_iteration.txt")" = release ] || fail "$name: not a release checkpoint"
    flags=$(grep -E '^--num-layers ' "$tmp/$name.out") || { cat "$tmp/$name.out"; fail "$name: no flags printed"; }
    # shellcheck disable=SC2086 # the printed flags are words without quoting
    "$MEGATRON" pretrain $flags --load "$tmp/$name.ckpt" --tokenizer-type NullTokenizer --vocab-size 512 \
        --micro-batch-size 2 --global-batch-size 2 --train-iters 3 --lr 1e-4 --log-interval 1 --mock-data \
        --eval-iters 1 --eval-interval 3 >"$tmp/$name.train" 2>&1 || { tail -3 "$tmp/$name.train"; fail "$name: pretrain with the printed flags"; }
    grep -q "successfully loaded checkpoint from $tmp/$name.ckpt .* at iteration 0" "$tmp/$name.train" || fail "$name: not loaded"
    grep -q ' iteration        3/' "$tmp/$name.train" || fail "$name: did not train from the converted weights"
    "$MEGATRON" convert --load "$tmp/$name.ckpt" --save-hf "$tmp/$name.hf" >"$tmp/$name.back" 2>&1 || { cat "$tmp/$name.back"; fail "$name: to HF"; }
    cmp "$src/model.safetensors" "$tmp/$name.hf/model.safetensors" || fail "$name: model.safetensors differs after the round trip"
    cmp "$src/config.json" "$tmp/$name.hf/config.json" || fail "$name: config.json differs after the round trip"
done

"$MEGATRON" convert --load-hf "$tmp" --save "$tmp/x" >"$tmp/out" 2>"$tmp/err"
rc=$?
[ $rc -eq 2 ] || fail "a directory without a model: exit code $rc, expected 2"
[ "$(wc -l <"$tmp/err")" -eq 1 ] || { cat "$tmp/err"; fail "expected one error line"; }
grep -q "^megatron: error: megatron convert: $tmp/config.json: missing; $tmp is not a Hugging Face model directory" "$tmp/err" ||
    { cat "$tmp/err"; fail "error line"; }
[ ! -e "$tmp/x" ] || fail "a refused conversion left $tmp/x behind"

# converting into a directory that already holds checkpoints would repoint its tracker
"$MEGATRON" convert --load-hf "$FIXTURES/gpt2_tiny" --save "$tmp/gpt2_tiny.ckpt" >"$tmp/out" 2>"$tmp/err"
rc=$?
[ $rc -eq 2 ] || fail "converting into an existing checkpoint directory: exit code $rc, expected 2"
grep -q "already holds checkpoints" "$tmp/err" || { cat "$tmp/err"; fail "error line"; }
echo "ckpt_convert: ok"
