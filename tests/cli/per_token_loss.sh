#!/usr/bin/env bash
# --calculate-per-token-loss (Megatron's: the loss is the sum of the global batch's token losses
# over its token count, not a mean of micro-batch means): with --eod-mask-loss the micro batches
# hold different numbers of tokens, and the run must print the same lm loss and grad norm at every
# logged iteration (relative difference below 1e-5) whether the global batch of 8 is one micro
# batch, four, two on each of two data-parallel ranks, four over two pipeline stages or over two
# tensor-parallel ranks; without
# the flag one micro batch and four differ (each micro batch's mean weighs the same), which shows
# the counts do differ.
set -euo pipefail
MEGATRON=${MEGATRON:-./megatron}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

flags="--num-layers 2 --hidden-size 32 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 32
    --global-batch-size 8 --train-iters 12 --lr 3e-3 --lr-decay-style constant --mock-data
    --tokenizer-type NullTokenizer --vocab-size 256 --log-interval 3 --eval-iters 0 --eod-mask-loss
    --hidden-dropout 0.1 --device cpu"

MIN_NUMBERS=8
source "$(dirname "$0")/lib/layouts.sh"

run one 1 $flags --micro-batch-size 8 --calculate-per-token-loss
run four 1 $flags --micro-batch-size 2 --calculate-per-token-loss
run dp2 2 $flags --micro-batch-size 2 --calculate-per-token-loss
run pp2 2 $flags --micro-batch-size 2 --calculate-per-token-loss --pipeline-model-parallel-size 2
# (with tensor parallelism the loss gradient is made in the backward, not in the forward)
run tp2 2 $flags --micro-batch-size 2 --calculate-per-token-loss --tensor-model-parallel-size 2
for layout in four dp2 pp2 tp2; do compare one "$layout"; done

run one-mean 1 $flags --micro-batch-size 8
run four-mean 1 $flags --micro-batch-size 2
if (compare one-mean four-mean >/dev/null 2>&1); then
    echo "without --calculate-per-token-loss one micro batch and four agree: the test cannot tell the two apart"
    exit 1
fi
echo "per-token loss: one micro batch, four, DP=2, PP=2 and TP=2 match; the mean of micro-batch means differs"
