#!/usr/bin/env bash
# Layout invariance (ARCHITECTURE.md principle 5): the same flags under tensor parallelism, data
# parallelism, both, and each with the distributed optimizer, overlapped gradient reduction and
# sequence parallelism, print the same lm loss, grad norm and params norm as the single-rank run
# at every logged iteration of a 30-iteration fp32 CPU run (relative difference below 1e-5), for a
# GPT-2-style and a LLaMA-style model, dropout on; the LLaMA-style runs also the same number of
# zeros in the gradients (its untied embedding's rows of unseen tokens: exact zeros in any layout,
# where the GPT-2-style key biases' gradients are zero only up to rounding).
set -euo pipefail
MEGATRON=${MEGATRON:-./megatron}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

gpt="--num-layers 2 --hidden-size 32 --num-attention-heads 4 --seq-length 16 --max-position-embeddings 16"
llama="$gpt --swiglu --normalization RMSNorm --position-embedding-type rope --group-query-attention \
    --num-query-groups 2 --disable-bias-linear --untie-embeddings-and-output-weights --log-num-zeros-in-grad"
common="--micro-batch-size 2 --global-batch-size 8 --train-iters 30 --lr 3e-3 --lr-decay-style cosine \
    --lr-warmup-iters 3 --mock-data --tokenizer-type NullTokenizer --vocab-size 256 --log-interval 5 \
    --eval-interval 15 --eval-iters 1 --log-params-norm"

MIN_NUMBERS=22
source "$(dirname "$0")/lib/layouts.sh"

for family in gpt llama; do
    model=${!family}
    run "$family-single" 1 $model $common
    run "$family-tp2" 2 $model $common --tensor-model-parallel-size 2
    run "$family-dp2" 2 $model $common
    run "$family-tp2-dp2" 4 $model $common --tensor-model-parallel-size 2
    run "$family-tp2-sp" 2 $model $common --tensor-model-parallel-size 2 --sequence-parallel
    run "$family-dp2-distopt" 2 $model $common --use-distributed-optimizer --overlap-grad-reduce
    run "$family-tp2-dp2-all" 4 $model $common --tensor-model-parallel-size 2 --sequence-parallel \
        --use-distributed-optimizer --overlap-grad-reduce
    for layout in tp2 dp2 tp2-dp2 tp2-sp dp2-distopt tp2-dp2-all; do
        compare "$family-single" "$family-$layout"
    done
    echo "$family: 6 layouts match the single-rank run"
done
