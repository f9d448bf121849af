#!/usr/bin/env bash
# On the GPU machine: attention's backward of our own (kernels/cuda/flash_backward.cu) against
# cuDNN's, in one call: its GPU op test, then for each model the step time and the attention
# backward's time per call (MEGATRON_OP_TIMING) with ours by key blocks (the default), cuDNN's
# (MEGATRON_FLASH_BACKWARD=cudnn), ours by heads (=heads) and --deterministic-mode (ours by heads,
# and no choice by timing), in turn, ROUNDS times.
#   OUT=dir MEGATRON=./megatron TESTS=build/tests/gpu/test_cuda_ops MODELS="124m 350m 1.5b" \
#       scripts/bench/gpu_flash.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/gpu_flash_out}
mkdir -p "$OUT"
M=${MEGATRON:-./megatron}
T=${TESTS:-build/tests/gpu/test_cuda_ops}
nvidia-smi --query-gpu=name --format=csv,noheader
if [ -x "$T" ]; then
    timeout 300 "$T" test_attention_flash_backward_matches_cpu test_attention_mha_matches_cpu \
        >"$OUT/ops.txt" 2>&1
    echo "op tests rc=$?: $(grep -c ' ok$' "$OUT/ops.txt") ok, $(grep -c 'FAIL' "$OUT/ops.txt") FAIL"
    grep -E "FAIL|ours" "$OUT/ops.txt"
fi
source scripts/bench/gpt2_shapes.sh
for model in ${MODELS:-124m}; do
    gpt2_model "$model"
    for run in $(seq "${ROUNDS:-1}"); do for v in ours cudnn heads deterministic; do
        log="$OUT/${model}_${v}_$run.log"
        fb=$v extra=
        [ $v = deterministic ] && fb= extra=--deterministic-mode
        timeout 200 env MEGATRON_FLASH_BACKWARD=$fb "$M" pretrain $flags $extra >"$log" 2>&1
        ms=$(grep ' iteration ' "$log" | tail -1 | sed 's/.*per iteration (ms): \([0-9.]*\).*/\1/')
        loss=$(grep ' iteration ' "$log" | tail -1 | sed 's/.*lm loss: \([0-9.E+-]*\).*/\1/')
        # (60 iterations: without autotuning 30 of 124M's end within the 4 s the timing skips)
        timeout 200 env MEGATRON_FLASH_BACKWARD=$fb MEGATRON_OP_TIMING=4000 "$M" pretrain \
            ${flags/--train-iters 30/--train-iters 60} $extra >"$log.timing" 2>&1
        us=$(awk '/op_attention_backward/ { print $3 }' "$log.timing")
        echo "$model $v: step $ms ms, loss at 30 $loss, attention backward $us us a call"
    done; done
done
