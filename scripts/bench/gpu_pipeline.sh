#!/usr/bin/env bash
# On the two-GPU machine: pipeline parallelism over NCCL.
# 1. correctness: a small GPT (8 layers) in bf16 on 1 GPU, PP=2 (1F1B) and PP=2 with 2 virtual
#    stages per rank (interleaved) follow the 1-GPU losses (bf16: within 2%)
# 2. speed and bubble: the 1.5B GPT-2 (48 x 1600, seq 1024), micro batch $MBS, $M micro batches per
#    iteration, on 1 GPU (gradient accumulation) and on PP=2 (with overlapped sends and receives,
#    and without) and PP=2 x vp=2 (and its --timing-log-level timers). The measured bubble
#    is 1 - (1-GPU time / 2) / (PP=2 time): the share of a PP=2 step not covered by half the
#    1-GPU work; the schedule's prediction is (PP-1) / (vp*M + PP-1).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/gpu_pipeline_out}
mkdir -p "$OUT"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$OUT/gpu.txt"
[ -x ./megatron ] || make -j32 CUDA=1 megatron >"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
run() { # name ranks flags...
    local name=$1 np=$2
    shift 2
    if [ "$np" -eq 1 ]; then ./megatron pretrain "$@" >"$OUT/$name.log" 2>&1
    else mpirun -np "$np" --bind-to none ./megatron pretrain "$@" >"$OUT/$name.log" 2>&1; fi
    grep -m2 -i "error" "$OUT/$name.log"
}
loss() { grep ' iteration .*lm loss' "$1" | sed 's/.*lm loss: \([^ ]*\) .*/\1/'; }

small="--num-layers 8 --hidden-size 256 --num-attention-heads 8 --seq-length 256 --max-position-embeddings 256
    --micro-batch-size 4 --global-batch-size 32 --train-iters 30 --lr 1e-3 --lr-decay-style constant
    --mock-data --tokenizer-type NullTokenizer --vocab-size 4096 --log-interval 5 --eval-iters 0
    --hidden-dropout 0 --attention-dropout 0 --split 1,1,1 --bf16 --device cuda"
run small_1gpu 1 $small
run small_pp2 2 $small --pipeline-model-parallel-size 2
run small_pp2_vp2 2 $small --pipeline-model-parallel-size 2 --num-virtual-stages-per-pipeline-rank 2
for n in small_pp2 small_pp2_vp2; do
    paste <(loss "$OUT/small_1gpu.log") <(loss "$OUT/$n.log") | awk -v n=$n '
        { r = ($2 - $1) / $1; if (r < 0) r = -r; if (r > w) w = r; c++ }
        END { printf "%s vs 1 GPU: %d logged losses, worst relative difference %.4f (%s)\n", n, c, w,
              (c == 6 && w < 0.02) ? "within 2%" : "FAILED" }' | tee -a "$OUT/compare.txt"
done

mbs=${MBS:-4} m=${M:-8}
big="--num-layers 48 --hidden-size 1600 --num-attention-heads 25 --seq-length 1024 --max-position-embeddings 1024
    --micro-batch-size $mbs --global-batch-size $((mbs * m)) --train-iters 20 --lr 1e-4 --lr-decay-style constant
    --mock-data --tokenizer-type NullTokenizer --vocab-size 50257 --log-interval 10 --log-throughput --eval-iters 0
    --hidden-dropout 0 --attention-dropout 0 --split 1,1,1 --bf16 --device cuda"
run big_1gpu 1 $big
run big_pp2 2 $big --pipeline-model-parallel-size 2
run big_pp2_blocking 2 $big --pipeline-model-parallel-size 2 --no-overlap-p2p-communication
run big_pp2_vp2 2 $big --pipeline-model-parallel-size 2 --num-virtual-stages-per-pipeline-rank 2
run big_pp2_vp2_timers 2 $big --pipeline-model-parallel-size 2 --num-virtual-stages-per-pipeline-rank 2 \
    --timing-log-level 1
ms() { grep ' iteration ' "$1" | tail -1 | sed 's/.*elapsed time per iteration (ms): \([^ ]*\) .*/\1/'; }
one=$(ms "$OUT/big_1gpu.log")
grep -A6 'iteration       20/' "$OUT/big_pp2_vp2_timers.log" | tail -6 | tee -a "$OUT/summary.txt"
for n in big_1gpu big_pp2 big_pp2_blocking big_pp2_vp2; do
    t=$(ms "$OUT/$n.log")
    tf=$(grep ' iteration ' "$OUT/$n.log" | tail -1 | sed 's/.*throughput per GPU (TFLOP\/s\/GPU): \([^ ]*\) .*/\1/')
    g=1 vp=1
    [ $n != big_1gpu ] && g=2
    [ $n = big_pp2_vp2 ] && vp=2
    awk -v n=$n -v t="$t" -v one="$one" -v g=$g -v vp=$vp -v m=$m -v tok=$((mbs * m * 1024)) -v tf="$tf" 'BEGIN {
        printf "%s: %.1f ms/iter, %.0f tokens/s per GPU, %s TFLOP/s/GPU", n, t, tok / (t / 1000) / g, tf
        if (g == 2) printf ", bubble measured %.1f%%, schedule %.1f%%", 100 * (1 - one / 2 / t), 100 * 1 / (vp * m + 1)
        printf "\n" }' | tee -a "$OUT/summary.txt"
done
