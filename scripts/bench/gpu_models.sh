#!/usr/bin/env bash
# On the GPU machine: the issue's three GPT-2 sizes on one GPU beside the PyTorch baseline, in one
# call, and our GEMM autotuning on and off.
#   scripts/bench/gpu_models.sh [TORCH_SCRIPT]    (logs under $OUT)
# For each of GPT-2 124M (micro batch 64), 350M (32) and 1.5B (16), seq 1024, vocab 50257 (padded
# 50304), bf16, mock data, dropout 0: ours with MEGATRON_GEMM_AUTOTUNE=0 (cuBLASLt's first
# algorithm per GEMM) and with autotuning (the fastest of its 8 candidates, the default); then
# torch_gpt.py with the same shape. Each of ours prints tokens/s, TFLOP/s by Megatron's formula, MFU
# against 989 TFLOP/s, peak GPU memory (the device's, by the driver's count, from Megatron's
# memory report line) and the time from start-up to the end of the first step; for the default
# (autotuned) run and torch's, the SM clock and board power while they train (a step runs at the
# board's power limit: docs/PERFORMANCE.md). MODELS="124m 350m 1.5b" picks the models; AB names
# another variable to run with at 0 and 1 in place of MEGATRON_GEMM_AUTOTUNE (e.g. AB=MEGATRON_FUSED_CE),
# and ROUNDS=2 runs the pair twice, alternating; MEGATRON=path runs a prebuilt binary, and
# MEGATRON_B=path pairs it with another build instead (B then A, both with the default settings:
# two trees compared in one call).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/gpu_models_out}
mkdir -p "$OUT"
TORCH=${1:-}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
if [ -z "${MEGATRON:-}" ]; then # MEGATRON=path: a prebuilt binary
    make -j16 CUDA=1 megatron >"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
fi
M=${MEGATRON:-./megatron}

# nvidia-smi samples every 200 ms from smi_start to smi_stop; smi_stop prints their means over the
# samples above 400 W (the training steps, not start-up or compilation).
smi_start() {
    nvidia-smi --query-gpu=clocks.sm,power.draw --format=csv,noheader,nounits -lms 200 \
        >"$OUT/smi.csv" 2>/dev/null &
    SMI=$!
}
smi_stop() { # label
    kill "$SMI" 2>/dev/null
    wait "$SMI" 2>/dev/null
    awk -F', *' -v l="$1" '$2 > 400 { c += $1; p += $2; n++ }
        END { if (n) printf "%s: SM clock %.0f MHz, board power %.0f W (mean of %d samples above 400 W)\n",
                             l, c / n, p / n, n }' "$OUT/smi.csv" | tee -a "$OUT/summary.txt"
}

source scripts/bench/gpt2_shapes.sh

for model in ${MODELS:-124m 350m 1.5b}; do
    gpt2_model "$model"
    for run in $(seq "${ROUNDS:-1}"); do for tune in 0 1; do
        if [ -n "${MEGATRON_B:-}" ] && [ "$tune" = 0 ]; then # two binaries: B, then A
            label=binary=B cmd=("$MEGATRON_B")
        elif [ -n "${MEGATRON_B:-}" ]; then
            label=binary=A cmd=("$M")
        else
            label="${AB:-autotune}=$tune"
            cmd=(env "${AB:-MEGATRON_GEMM_AUTOTUNE}=$tune" "$M")
        fi
        log="$OUT/${model}_${label/=/}_$run.log"
        start=$(date +%s.%N)
        [ "$tune" = 1 ] && smi_start
        "${cmd[@]}" pretrain $flags >"$log" 2>&1
        [ "$tune" = 1 ] && smi_stop "$model ours"
        wall=$(echo "$(date +%s.%N) - $start" | awk '{ print $1 - $3 }')
        grep -m2 -iE "error|fail" "$log"
        first=$(sed -n 's/.*end of the first training step: \([0-9.]*\) s/\1/p' "$log")
        peak=$(sed -n 's/.*max reserved: \([0-9.]*\)$/\1/p' "$log")
        grep ' iteration ' "$log" | tail -1 \
            | sed 's/.*elapsed time per iteration (ms): \([^ ]*\) | throughput per GPU (TFLOP\/s\/GPU): \([^ ]*\) .*/\1 \2/' \
            | awk -v n="$model $label" -v tok=$((mbs * 1024)) -v w="$wall" -v f="${first:-nan}" -v p="${peak:-nan}" \
                '{ printf "%s: %.1f ms/iter, %.0f tokens/s, %.1f TFLOP/s (MFU %.1f%%), peak GPU memory %.1f GiB, first step done %.2f s after start-up, run %.0f s\n",
                          n, $1, tok / ($1 / 1000), $2, $2 / 9.89, p / 1024, f, w }' \
            | tee -a "$OUT/summary.txt"
    done; done
    if [ -n "$TORCH" ]; then
        smi_start
        PYTHONUNBUFFERED=1 python3 "$TORCH" --layers "$layers" --hidden "$hidden" --heads "$heads" --mbs "$mbs" \
            >"$OUT/${model}_torch.log" 2>&1
        smi_stop "$model torch.compile"
        echo "$model torch.compile: $(tail -2 "$OUT/${model}_torch.log" | tr '\n' ' ')" | tee -a "$OUT/summary.txt"
    fi
done
