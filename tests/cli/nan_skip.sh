#!/usr/bin/env bash
# A non-finite loss or gradient norm skips the update and is counted, as Megatron does: an absurd
# learning rate blows the weights up after the first step; every later iteration is skipped,
# counted in "number of skipped iterations" and "number of nan iterations", printed as Python
# prints NaN, and the run goes on to the end (exit 0).
set -euo pipefail
MEGATRON=${MEGATRON:-./megatron}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
"$MEGATRON" pretrain --num-layers 1 --hidden-size 32 --num-attention-heads 2 --seq-length 16 \
    --max-position-embeddings 16 --micro-batch-size 2 --train-iters 6 --lr 1e30 --clip-grad 0 \
    --mock-data --tokenizer-type NullTokenizer --vocab-size 64 --log-interval 2 --eval-iters 1 >"$log"
lines=$(grep ' iteration ' "$log")
echo "$lines" | sed -n 1p | grep -q 'lm loss: [0-9].*grad norm: nan | number of skipped iterations:   1 | number of nan iterations:   1 |$' \
    || { echo "first interval: expected one skipped NaN iteration"; echo "$lines"; exit 1; }
echo "$lines" | sed -n 3p | grep -q ' iteration        6/       6 .*grad norm: nan | number of skipped iterations:   2 | number of nan iterations:   2 |$' \
    || { echo "last interval: expected two skipped NaN iterations"; echo "$lines"; exit 1; }
grep -q 'lm loss value: NAN | lm loss PPL: 4.851652E+08 | ' "$log" || { echo "validation of NaN weights"; cat "$log"; exit 1; }
