#!/usr/bin/env bash
# Two runs with the same flags (dropout on, gradient accumulation, 2 OpenMP threads vs 1) print the
# same log lines once timestamps, times and throughput are removed; so does one with
# --deterministic-mode, which the CPU backend takes and needs nothing for (its kernels sum in fixed
# orders already; on the GPU the flag picks kernels: scripts/bench/gpu_train.sh checks that).
set -euo pipefail
MEGATRON=${MEGATRON:-./megatron}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
run() {
    OMP_NUM_THREADS=$1 "$MEGATRON" pretrain ${2:-} --num-layers 2 --hidden-size 32 --num-attention-heads 4 \
        --seq-length 32 --max-position-embeddings 32 --micro-batch-size 2 --global-batch-size 6 \
        --train-iters 12 --lr 1e-3 --lr-decay-style linear --lr-warmup-iters 2 --hidden-dropout 0.1 \
        --attention-dropout 0.1 --mock-data --tokenizer-type NullTokenizer --vocab-size 256 \
        --log-interval 2 --eval-interval 6 --eval-iters 1 --log-throughput \
        | grep -E ' iteration | validation loss ' \
        | sed -E 's/^ \[[^]]*\]//; s/elapsed time per iteration \(ms\): [0-9.]+/elapsed/; s/throughput per GPU \(TFLOP\/s\/GPU\): [0-9.]+/throughput/'
}
run 2 >"$dir/a"
run 2 >"$dir/b"
run 1 >"$dir/c"
run 2 --deterministic-mode >"$dir/d"
[ "$(wc -l <"$dir/a")" -ge 8 ] || { echo "too few log lines"; cat "$dir/a"; exit 1; }
diff "$dir/a" "$dir/b" || { echo "two identical runs differ"; exit 1; }
diff "$dir/a" "$dir/c" || { echo "1 and 2 OpenMP threads differ"; exit 1; }
diff "$dir/a" "$dir/d" || { echo "--deterministic-mode changed a CPU run"; exit 1; }
