#!/usr/bin/env bash
# On a machine of several GPUs (nvidia-h200-x4 or -x8): what issue 8 asks for, as far as the GPUs go.
# 1. NCCL all-reduce bus bandwidth through our communicators (scripts/bench/nccl_bw.c)
# 2. weak scaling of the 1.5B GPT-2 (48 x 1600, seq 1024, micro batch 8 per GPU) with data
#    parallelism, the distributed optimizer and overlapped reduction on 1, 2, ... GPUS GPUs, with
#    --timing-log-level 1 (the data-parallel communication time per iteration)
# 3. interleaved pipeline PP=GPUS with 2 virtual stages (and 1F1B) for the same 48-layer model, micro
#    batch 4, 8 micro batches, against 1 GPU: measured bubble and the schedule's
# 4. (8 GPUs) the 8B LLaMA-style model of issue 8 (32 x 4096, 32 heads, 8 query groups, SwiGLU 14336,
#    seq 4096, vocab 128256) with TP2 x DP4 and TP1 x PP2 x DP4, distributed optimizer, micro batch 1,
#    global batch 32: tokens/s and TFLOP/s per GPU by Megatron's formula
# ITERS (default 20) sets the iterations of each run, logged every ITERS/2.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/gpu_scaling_out}
GPUS=${GPUS:-$(nvidia-smi -L | wc -l)}
mkdir -p "$OUT"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0
nvidia-smi --query-gpu=name --format=csv,noheader | sort | uniq -c | tee "$OUT/gpu.txt"
make -j32 CUDA=1 megatron build/scripts/bench/nccl_bw >"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
run() { # name ranks flags...
    local name=$1 np=$2
    shift 2
    mpirun -np "$np" --bind-to none -x NCCL_NVLS_ENABLE ./megatron pretrain "$@" >"$OUT/$name.log" 2>&1
    grep -m2 -i "error" "$OUT/$name.log"
}
ms() { grep ' iteration ' "$1" | tail -1 | sed 's/.*elapsed time per iteration (ms): \([^ ]*\) .*/\1/'; }

mpirun -np "$GPUS" --bind-to none -x NCCL_NVLS_ENABLE build/scripts/bench/nccl_bw 2>&1 | tee "$OUT/nccl_bw.txt"

model="--num-layers 48 --hidden-size 1600 --num-attention-heads 25 --seq-length 1024 --max-position-embeddings 1024
    --train-iters ${ITERS:-20} --lr 1e-4 --lr-decay-style constant --mock-data --tokenizer-type NullTokenizer --vocab-size 50257
    --log-interval $((${ITERS:-20} / 2)) --log-throughput --eval-iters 0 --hidden-dropout 0 --attention-dropout 0 --split 1,1,1 --bf16
    --device cuda"
one=""
for n in 1 2 4 8; do
    [ "$n" -gt "$GPUS" ] && break
    run "dp$n" "$n" $model --micro-batch-size 8 --global-batch-size $((8 * n)) --use-distributed-optimizer \
        --overlap-grad-reduce --timing-log-level 1
    t=$(ms "$OUT/dp$n.log")
    [ -z "$one" ] && one=$t
    comm=$(grep 'data-parallel-communication' "$OUT/dp$n.log" | tail -1 | sed 's/.*: (\([^,]*\), \([^)]*\))/\2/')
    awk -v n=$n -v t="$t" -v one="$one" -v c="${comm:-0}" 'BEGIN {
        printf "DP=%d: %.1f ms/iter, %.0f tokens/s per GPU, %.1f%% of 1 GPU per GPU", n, t, 8 * 1024 / (t / 1000), 100 * one / t
        if (n > 1) printf ", data-parallel communication %.1f ms/iter", c
        printf "\n" }' | tee -a "$OUT/summary.txt"
done

pp="$model --micro-batch-size 4 --global-batch-size 32"
run pp_1gpu 1 $pp
run "pp$GPUS" "$GPUS" $pp --pipeline-model-parallel-size "$GPUS"
run "pp${GPUS}_vp2" "$GPUS" $pp --pipeline-model-parallel-size "$GPUS" --num-virtual-stages-per-pipeline-rank 2
one=$(ms "$OUT/pp_1gpu.log")
for v in 1 2; do
    name=pp$GPUS; [ $v = 2 ] && name=pp${GPUS}_vp2
    awk -v n=$name -v t="$(ms "$OUT/$name.log")" -v one="$one" -v p="$GPUS" -v v=$v 'BEGIN {
        printf "%s: %.1f ms/iter (1 GPU %.1f), %.0f tokens/s per GPU, bubble measured %.1f%%, schedule %.1f%%\n",
            n, t, one, 32 * 1024 / (t / 1000) / p, 100 * (1 - one / p / t), 100 * (p - 1) / (v * 8 + p - 1) }' \
        | tee -a "$OUT/summary.txt"
done

if [ "$GPUS" -ge 8 ]; then
    llama="--num-layers 32 --hidden-size 4096 --num-attention-heads 32 --group-query-attention --num-query-groups 8
        --ffn-hidden-size 14336 --swiglu --normalization RMSNorm --position-embedding-type rope --disable-bias-linear
        --untie-embeddings-and-output-weights --seq-length 4096 --max-position-embeddings 4096 --micro-batch-size 1
        --global-batch-size 32 --train-iters ${ITERS:-20} --log-interval $((${ITERS:-20} / 2)) --log-throughput --lr 1e-4
        --lr-decay-style constant --mock-data --tokenizer-type NullTokenizer --vocab-size 128256 --eval-iters 0
        --hidden-dropout 0 --attention-dropout 0 --split 1,1,1 --bf16 --device cuda --use-distributed-optimizer
        --overlap-grad-reduce --timing-log-level 1"
    run llama8b_tp2_dp4 8 $llama --tensor-model-parallel-size 2 --sequence-parallel
    run llama8b_pp2_dp4 8 $llama --pipeline-model-parallel-size 2
    for n in llama8b_tp2_dp4 llama8b_pp2_dp4; do
        grep ' iteration ' "$OUT/$n.log" | tail -1 \
            | sed 's/.*elapsed time per iteration (ms): \([^ ]*\) | throughput per GPU (TFLOP\/s\/GPU): \([^ ]*\) .*/\1 \2/' \
            | awk -v n=$n '{ printf "%s: %.1f ms/iter, %.0f tokens/s per GPU, %.1f TFLOP/s per GPU (MFU %.1f%%)\n",
                n, $1, 32 * 4096 / ($1 / 1000) / 8, $2, $2 / 9.89 }' | tee -a "$OUT/summary.txt"
    done
fi
