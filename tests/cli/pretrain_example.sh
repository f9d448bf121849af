#!/usr/bin/env bash
# The README's example run: it must finish well inside a minute on 2 cores, print Megatron's log
# line every --log-interval and a validation line, and its last logged lm loss must be below 80%
# of its first.
set -euo pipefail
MEGATRON=${MEGATRON:-./megatron}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

TIMEFORMAT='%R %U %S'
timing=$( { time "$MEGATRON" pretrain --model gpt --num-layers 2 --hidden-size 64 --num-attention-heads 4 \
    --seq-length 64 --max-position-embeddings 64 --micro-batch-size 4 --global-batch-size 8 \
    --train-iters 60 --lr 3e-3 --min-lr 3e-4 --lr-decay-style cosine --lr-warmup-iters 5 \
    --mock-data --tokenizer-type NullTokenizer --vocab-size 512 \
    --log-interval 10 --eval-interval 30 --eval-iters 2 >"$log" ; } 2>&1 )
read -r wall user sys <<<"$timing"
cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.0f", u + s }')

lines=$(grep -c ' iteration .*/ *60 | consumed samples:' "$log" || true)
[ "$lines" -eq 6 ] || { echo "expected 6 log lines, got $lines"; cat "$log"; exit 1; }
# Megatron's line, field by field
grep -Eq '^ \[[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8}\.[0-9]{6}\] iteration +10/ +60 \| consumed samples: +80 \| elapsed time per iteration \(ms\): [0-9.]+ \| learning rate: [0-9]\.[0-9]{6}E[-+][0-9]{2} \| global batch size: +8 \| lm loss: [0-9]\.[0-9]{6}E[-+][0-9]{2} \| loss scale: 1\.0 \| grad norm: [0-9.]+ \| number of skipped iterations: +0 \| number of nan iterations: +0 \|$' "$log" \
    || { echo "log line does not match Megatron's format"; grep ' iteration ' "$log" | head -2; exit 1; }
grep -q ' validation loss at iteration 30 | lm loss value: ' "$log" || { echo "no validation line at 30"; exit 1; }
grep -q ' validation loss at iteration 60 on test set | lm loss value: ' "$log" || { echo "no test line"; exit 1; }

first=$(grep ' iteration .* consumed samples' "$log" | head -1 | sed 's/.*lm loss: \([^ ]*\) .*/\1/')
last=$(grep ' iteration .* consumed samples' "$log" | tail -1 | sed 's/.*lm loss: \([^ ]*\) .*/\1/')
awk -v f="$first" -v l="$last" 'BEGIN { if (!(l < 0.8 * f)) { printf "loss fell from %s to %s: not below 80%%\n", f, l; exit 1 } }'
echo "example run: lm loss $first -> $last in ${wall}s (${cpu}s of CPU time)"
# CPU time, not wall time: a busy machine stretches the wall clock, not the work
[ "$cpu" -lt 45 ] || { echo "used ${cpu}s of CPU: expected well under a minute on 2 cores"; exit 1; }
