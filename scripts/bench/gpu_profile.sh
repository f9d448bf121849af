#!/usr/bin/env bash
# On the GPU machine: where a GPT-2 124M step spends its time (nsys kernel summary, when nsys is
# there), then the issue's configuration (micro batch 64) beside torch_gpt.py.
#   scripts/bench/gpu_profile.sh [TORCH_SCRIPT]
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/gpu_profile_out}
mkdir -p "$OUT"
make -j16 CUDA=1 megatron >"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
gpt2() { # micro batch, iterations
    echo "--num-layers 12 --hidden-size 768 --num-attention-heads 12 --seq-length 1024 --max-position-embeddings 1024
    --micro-batch-size $1 --global-batch-size $1 --train-iters $2 --lr 6e-4 --lr-decay-style constant
    --mock-data --tokenizer-type NullTokenizer --vocab-size 50257 --log-interval 10 --log-throughput
    --eval-iters 0 --hidden-dropout 0 --attention-dropout 0 --split 1,1,1 --bf16 --device cuda"
}
NSYS=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -1)
if [ -n "$NSYS" ]; then
    "$NSYS" profile -o "$OUT/prof" --force-overwrite true -t cuda ./megatron pretrain $(gpt2 16 20) >"$OUT/prof_run.log" 2>&1
    "$NSYS" stats --report cuda_gpu_kern_sum --format csv "$OUT/prof.nsys-rep" 2>/dev/null \
        | awk -F'","' 'NR>1 { gsub(/"/, ""); printf "%6.2f%% %10.1f ms %6d  %s\n", $1, $2/1e6, $3, substr($9, 1, 90) }' \
        | head -25 | tee "$OUT/kernels.txt"
    "$NSYS" stats --report cuda_api_sum --format csv "$OUT/prof.nsys-rep" 2>/dev/null | head -12 >"$OUT/api.txt"
    rm -f "$OUT/prof.nsys-rep" "$OUT/prof.sqlite"
else
    echo "no nsys on this machine"
fi
for mbs in ${MBS_LIST:-64}; do
    ./megatron pretrain $(gpt2 "$mbs" 30) >"$OUT/gpt2_mbs$mbs.log" 2>&1
    grep ' iteration ' "$OUT/gpt2_mbs$mbs.log" | tail -1 | sed 's/.*elapsed time per iteration (ms): \([^ ]*\) | throughput per GPU (TFLOP\/s\/GPU): \([^ ]*\) .*/\1 \2/' \
        | awk -v tok=$((mbs * 1024)) -v m=$mbs '{ printf "ours mbs %d: %.1f ms/iter, %.0f tokens/s, %.1f TFLOP/s, MFU %.1f%%\n", m, $1, tok / ($1 / 1000), $2, $2 / 989 * 100 }' | tee -a "$OUT/summary.txt"
    grep -m1 -i "error" "$OUT/gpt2_mbs$mbs.log"
    [ -n "${1:-}" ] && PYTHONUNBUFFERED=1 python3 "$1" --layers 12 --hidden 768 --heads 12 --mbs "$mbs" 2>&1 | tail -1 | tee -a "$OUT/summary.txt"
done
