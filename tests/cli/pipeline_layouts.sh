#!/usr/bin/env bash
# Pipeline parallelism is layout-invariant (issue 7 part 5): PP=2, PP=4, PP=2 and PP=4 with two
# virtual stages per rank (interleaved 1F1B; with overlapped sends and receives, Megatron's default,
# and without), uneven first/last stages, and TP=2 x PP=2 x DP=2 with the distributed optimizer,
# overlapped reduction and sequence parallelism each print the same lm loss, grad norm and params
# norm as the single-rank run at every logged iteration of a 30-iteration fp32 CPU run, and the
# same validation losses (relative difference below 1e-5), for a GPT-2-style model (tied
# embeddings split over the first and last stage) and a LLaMA-style one (its number of zeros in
# the gradients too, as in parallel_layouts.sh), dropout on. The 8-rank
# run also prints --timing-log-level's timers (which must not change the numbers).
set -euo pipefail
MEGATRON=${MEGATRON:-./megatron}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

gpt="--num-layers 8 --hidden-size 32 --num-attention-heads 4 --seq-length 16 --max-position-embeddings 16"
llama="$gpt --swiglu --normalization RMSNorm --position-embedding-type rope --group-query-attention \
    --num-query-groups 2 --disable-bias-linear --untie-embeddings-and-output-weights --log-num-zeros-in-grad"
common="--micro-batch-size 2 --global-batch-size 8 --train-iters 30 --lr 3e-3 --lr-decay-style cosine \
    --lr-warmup-iters 3 --mock-data --tokenizer-type NullTokenizer --vocab-size 256 --log-interval 5 \
    --eval-interval 15 --eval-iters 1 --log-params-norm"

MIN_NUMBERS=22
source "$(dirname "$0")/lib/layouts.sh"

# each pipeline rank holds its own share of the layers
stages() { # name count
    [ "$(grep -c 'number of parameters on (tensor, pipeline) model parallel rank' "$dir/$1.log")" -eq "$2" ] \
        || { echo "$1: expected $2 model-parallel ranks to report their parameters"; cat "$dir/$1.log"; exit 1; }
}

for family in gpt llama; do
    model=${!family}
    run "$family-single" 1 $model $common
    run "$family-pp2" 2 $model $common --pipeline-model-parallel-size 2
    run "$family-pp4" 4 $model $common --pipeline-model-parallel-size 4
    run "$family-pp2-vp2" 2 $model $common --pipeline-model-parallel-size 2 --num-layers-per-virtual-pipeline-stage 2
    run "$family-pp4-vp2" 4 $model $common --pipeline-model-parallel-size 4 --num-virtual-stages-per-pipeline-rank 2
    run "$family-pp4-vp2-blocking" 4 $model $common --pipeline-model-parallel-size 4 \
        --num-virtual-stages-per-pipeline-rank 2 --no-overlap-p2p-communication
    run "$family-pp3-uneven" 3 $model $common --pipeline-model-parallel-size 3 --decoder-first-pipeline-num-layers 2 \
        --decoder-last-pipeline-num-layers 2
    run "$family-tp2-pp2-dp2" 8 $model $common --tensor-model-parallel-size 2 --pipeline-model-parallel-size 2 \
        --use-distributed-optimizer --overlap-grad-reduce --sequence-parallel --timing-log-level 1
    stages "$family-pp4" 4
    # --timing-log-level 1: the phases and every group's communication, after each log line
    [ "$(grep -c '^(min, max) time across ranks (ms):' "$dir/$family-tp2-pp2-dp2.log")" -eq 6 ] &&
        [ "$(grep -cE '^    (forward-backward|all-grads-sync|optimizer|tensor-parallel-communication|pipeline-parallel-communication|data-parallel-communication|embedding-grads-all-reduce) \.+: \([0-9.]+, [0-9.]+\)$' \
            "$dir/$family-tp2-pp2-dp2.log")" -eq 42 ] || { echo "$family: timers missing"; cat "$dir/$family-tp2-pp2-dp2.log"; exit 1; }
    stages "$family-tp2-pp2-dp2" 4
    for layout in pp2 pp4 pp2-vp2 pp4-vp2 pp4-vp2-blocking pp3-uneven tp2-pp2-dp2; do
        compare "$family-single" "$family-$layout"
    done
    echo "$family: 7 pipeline layouts match the single-rank run"
done
