#!/usr/bin/env bash
# Exact resume: 40 iterations with a checkpoint at 20 (--exit-interval 20), then --load from 20 to
# 40, print the same log and validation lines (timestamps and times removed) as one uninterrupted
# 40-iteration run: with mock data (fp32, and fp16 with a dynamic loss scale that moves), and with
# --data-path data made here by `megatron preprocess`; and resuming with other schedule flags and
# --override-opt_param-scheduler follows those flags, with --use-checkpoint-opt_param-scheduler the
# checkpoint's schedule.
set -euo pipefail
MEGATRON=${MEGATRON:-./megatron}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() {
    echo "ckpt_resume: FAIL: $*" >&2
    exit 1
}

# the lines that must agree, without what differs between runs (time, throughput)
lines() {
    grep -E ' iteration .*consumed samples| validation loss at ' "$1" |
        sed -E 's/^ \[[^]]*\]//; s/elapsed time per iteration \(ms\): [0-9.]+ \|//'
}

model=(--num-layers 2 --hidden-size 32 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 32
    --micro-batch-size 2 --global-batch-size 4 --train-iters 40 --lr 1e-3 --min-lr 1e-4 --lr-decay-style cosine
    --lr-warmup-iters 4 --hidden-dropout 0.1 --attention-dropout 0.1 --tokenizer-type NullTokenizer
    --vocab-size 256 --log-interval 5 --eval-interval 10 --eval-iters 1)

# check NAME FLAGS...: uninterrupted vs. saved at 20 and resumed
check() {
    local name=$1
    shift
    local dir="$tmp/$name"
    "$MEGATRON" pretrain "${model[@]}" "$@" >"$tmp/$name.full" 2>&1 || { cat "$tmp/$name.full"; fail "$name: run"; }
    "$MEGATRON" pretrain "${model[@]}" "$@" --save "$dir" --save-interval 20 --exit-interval 20 \
        >"$tmp/$name.first" 2>&1 || { cat "$tmp/$name.first"; fail "$name: first half"; }
    grep -q '^exiting program at iteration 20$' "$tmp/$name.first" || fail "$name: no exit at 20"
    [ "$(cat "$dir/latest_checkpointed_iteration.txt")" = 20 ] || fail "$name: tracker does not name 20"
    "$MEGATRON" pretrain "${model[@]}" "$@" --save "$dir" --save-interval 20 --load "$dir" \
        >"$tmp/$name.second" 2>&1 || { cat "$tmp/$name.second"; fail "$name: second half"; }
    grep -q "successfully loaded checkpoint from $dir .* at iteration 20" "$tmp/$name.second" || fail "$name: not loaded"
    lines "$tmp/$name.full" >"$tmp/$name.a"
    { lines "$tmp/$name.first"; lines "$tmp/$name.second"; } >"$tmp/$name.b"
    [ "$(grep -c 'consumed samples' "$tmp/$name.a")" -eq 8 ] || fail "$name: expected 8 log lines"
    diff "$tmp/$name.a" "$tmp/$name.b" || fail "$name: the resumed run differs from the uninterrupted one"
}

check mock --mock-data
# --override-opt_param-scheduler (what a resume does in any case): the flags' schedule from the
# checkpoint's step on: a constant 2e-3 after iteration 40
"$MEGATRON" pretrain "${model[@]/#40/50}" --mock-data --load "$tmp/mock" --lr 2e-3 --lr-decay-style constant \
    --override-opt_param-scheduler >"$tmp/override" 2>&1 || { cat "$tmp/override"; fail "override: run"; }
[ "$(grep -c ' iteration .*learning rate: 2.000000E-03 |' "$tmp/override")" -eq 2 ] &&
    grep -q ' iteration       45/      50 ' "$tmp/override" || { cat "$tmp/override"; fail "override: the schedule"; }
# --use-checkpoint-opt_param-scheduler: the checkpoint's cosine to 1e-4 over 40 iterations goes on,
# whatever the flags say
"$MEGATRON" pretrain "${model[@]/#40/50}" --mock-data --load "$tmp/mock" --lr 2e-3 --lr-decay-style constant \
    --use-checkpoint-opt_param-scheduler >"$tmp/from_ckpt" 2>&1 || { cat "$tmp/from_ckpt"; fail "use-checkpoint: run"; }
[ "$(grep -c ' iteration .*learning rate: 1.000000E-04 |' "$tmp/from_ckpt")" -eq 2 ] ||
    { cat "$tmp/from_ckpt"; fail "use-checkpoint: the schedule"; }
check fp16 --mock-data --fp16 --initial-loss-scale 4096 --loss-scale-window 3
grep -q 'loss scale: 8192.0' "$tmp/fp16.a" || fail "fp16: the loss scale never moved, the test would prove little"

# --data-path: 300 documents of random ids, tokenized by `megatron preprocess`
awk 'BEGIN { srand(7); for (d = 0; d < 300; d++) { n = 20 + int(rand() * 60); s = "";
    for (i = 0; i < n; i++) s = s (i ? " " : "") int(rand() * 255); printf "{\"text\": \"%s\"}\n", s } }' >"$tmp/docs.jsonl"
"$MEGATRON" preprocess --input "$tmp/docs.jsonl" --output-prefix "$tmp/docs" --tokenizer-type NullTokenizer \
    --vocab-size 256 --workers 1 --append-eod >/dev/null 2>&1 || fail "preprocess"
check data --data-path "$tmp/docs_text_document" --split 90,5,5 --data-cache-path "$tmp/cache"
echo "ckpt_resume: ok (mock, fp16 dynamic loss scale, --data-path)"
