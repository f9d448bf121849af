#!/usr/bin/env bash
# On the two-GPU machine: data and tensor parallelism over NCCL.
# 1. correctness: a small GPT in bf16 on 1 GPU, DP=2, TP=2 with sequence parallelism, and DP=2 with
#    the distributed optimizer and overlapped reduction follow the 1-GPU losses (bf16: within 2%)
# 2. speed: the 1.5B GPT-2 (48 x 1600, 25 heads, seq 1024) on 1 GPU, DP=2 (same micro batch per GPU,
#    weak scaling) and TP=2: tokens/s per GPU by the log line.
# 3. an even-head 1.4B GPT on 1 GPU, DP=2 and TP=2 with the timers of --timing-log-level 1.
# 4. (reduce) the 1.5B GPT at DP=2 against 1 GPU with fp32 and bf16 gradient reduction
#    (--grad-reduce-in-bf16), one micro batch per GPU per step and with gradient accumulation;
#    the small GPT's DP=2 runs with bf16 reduction follow the 1-GPU losses.
# 5. (optime) where DP=2's extra forward-backward time goes: MEGATRON_OP_TIMING op tables of the
#    1-GPU run and of both DP=2 ranks, and DP=2 without overlap (the reduction after the backward).
# 6. (streams) DP=2 overlapped with CUDA_DEVICE_MAX_CONNECTIONS 1 and 32 and with larger and smaller
#    buckets: whether the extra time is per bucket launch and comes from streams sharing a queue.
# 7. (accum) the 1.5B GPT with gradient accumulation, global batch 128 (16 micro batches on 1 GPU,
#    8 per rank at DP=2), fp32 and bf16 reduction.
# PARTS="small big even" (the default) picks the parts; PARTS="reduce optime streams accum" the others.
# SMALL_PRECISION=fp16 runs part 1 in fp16 (a dynamic loss scale from 4096, so no step overflows).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/gpu_parallel_out}
mkdir -p "$OUT"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$OUT/gpu.txt"
make -j32 CUDA=1 megatron >"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
run() { # name ranks flags...
    local name=$1 np=$2
    shift 2
    if [ "$np" -eq 1 ]; then ./megatron pretrain "$@" >"$OUT/$name.log" 2>&1
    else mpirun -np "$np" --bind-to none ./megatron pretrain "$@" >"$OUT/$name.log" 2>&1; fi
    grep -m2 -i "error" "$OUT/$name.log"
}
loss() { grep ' iteration .*lm loss' "$1" | sed 's/.*lm loss: \([^ ]*\) .*/\1/'; }
want() { [[ " ${PARTS:-small big even} " == *" $1 "* ]]; } # PARTS: which of the three parts below run

if want small; then
small="--num-layers 4 --hidden-size 256 --num-attention-heads 8 --seq-length 256 --max-position-embeddings 256
    --micro-batch-size 4 --global-batch-size 16 --train-iters 30 --lr 1e-3 --lr-decay-style constant
    --mock-data --tokenizer-type NullTokenizer --vocab-size 4096 --log-interval 5 --eval-iters 0
    --hidden-dropout 0 --attention-dropout 0 --split 1,1,1 --device cuda"
if [ "${SMALL_PRECISION:-bf16}" = fp16 ]; then small="$small --fp16 --initial-loss-scale 4096"; else small="$small --bf16"; fi
run small_1gpu 1 $small
run small_dp2 2 $small
run small_tp2_sp 2 $small --tensor-model-parallel-size 2 --sequence-parallel
run small_dp2_distopt 2 $small --use-distributed-optimizer --overlap-grad-reduce
for n in small_dp2 small_tp2_sp small_dp2_distopt; do
    paste <(loss "$OUT/small_1gpu.log") <(loss "$OUT/$n.log") | awk -v n=$n -v p="${SMALL_PRECISION:-bf16}" '
        { r = ($2 - $1) / $1; if (r < 0) r = -r; if (r > w) w = r; c++ }
        END { printf "%s (%s) vs 1 GPU: %d logged losses, worst relative difference %.4f (%s)\n", n, p, c, w,
              (c == 6 && w < 0.02) ? "within 2%" : "FAILED" }' | tee -a "$OUT/compare.txt"
done

fi

if want big; then
big="--num-layers 48 --hidden-size 1600 --num-attention-heads 25 --seq-length 1024 --max-position-embeddings 1024
    --micro-batch-size ${MBS:-8} --train-iters 20 --lr 1e-4 --lr-decay-style constant --mock-data
    --tokenizer-type NullTokenizer --vocab-size 50257 --log-interval 10 --log-throughput --eval-iters 0
    --hidden-dropout 0 --attention-dropout 0 --split 1,1,1 --bf16 --device cuda"
mbs=${MBS:-8}
run big_1gpu 1 $big --global-batch-size $mbs
run big_dp2 2 $big --global-batch-size $((2 * mbs)) --overlap-grad-reduce
run big_dp2_distopt 2 $big --global-batch-size $((2 * mbs)) --use-distributed-optimizer --overlap-grad-reduce
run big_tp2 2 $big --global-batch-size $mbs --tensor-model-parallel-size 2 --sequence-parallel
for n in big_1gpu big_dp2 big_dp2_distopt big_tp2; do
    grep ' iteration ' "$OUT/$n.log" | tail -1 | sed 's/.*global batch size: *\([0-9]*\).*/\1/' >"$OUT/gbs"
    grep ' iteration ' "$OUT/$n.log" | tail -1 \
        | sed 's/.*elapsed time per iteration (ms): \([^ ]*\) | throughput per GPU (TFLOP\/s\/GPU): \([^ ]*\) .*/\1 \2/' \
        | awk -v n=$n -v gbs="$(cat "$OUT/gbs")" -v g=$([ $n = big_1gpu ] && echo 1 || echo 2) \
            '{ printf "%s: %.1f ms/iter, %.0f tokens/s per GPU, %.1f TFLOP/s/GPU\n", n, $1, gbs * 1024 / ($1 / 1000) / g, $2 }' \
        | tee -a "$OUT/summary.txt"
done

fi

# TP=2 needs an even head count: a GPT of 48 x 1536 with 24 heads of 64 (~1.4B), micro batch 8 per
# GPU, on 1 GPU, DP=2 and TP=2 with sequence parallelism, with --timing-log-level 1 (phases and
# each group's communication time per iteration)
if want even; then
even="--num-layers 48 --hidden-size 1536 --num-attention-heads 24 --seq-length 1024 --max-position-embeddings 1024
    --micro-batch-size 8 --train-iters 20 --lr 1e-4 --lr-decay-style constant --mock-data
    --tokenizer-type NullTokenizer --vocab-size 50257 --log-interval 10 --log-throughput --eval-iters 0
    --hidden-dropout 0 --attention-dropout 0 --split 1,1,1 --bf16 --device cuda --timing-log-level 1"
run even_1gpu 1 $even --global-batch-size 8
run even_dp2 2 $even --global-batch-size 16 --overlap-grad-reduce
run even_tp2 2 $even --global-batch-size 8 --tensor-model-parallel-size 2 --sequence-parallel
for n in even_1gpu even_dp2 even_tp2; do
    echo "$n:" | tee -a "$OUT/summary.txt"
    grep -A7 'iteration       20/' "$OUT/$n.log" | sed 's/.*elapsed time per iteration (ms): \([^ ]*\) .*/  ms\/iter \1/' \
        | tee -a "$OUT/summary.txt"
done
fi

if want reduce; then
small="--num-layers 4 --hidden-size 256 --num-attention-heads 8 --seq-length 256 --max-position-embeddings 256
    --micro-batch-size 4 --global-batch-size 16 --train-iters 30 --lr 1e-3 --lr-decay-style constant
    --mock-data --tokenizer-type NullTokenizer --vocab-size 4096 --log-interval 5 --eval-iters 0
    --hidden-dropout 0 --attention-dropout 0 --split 1,1,1 --bf16 --device cuda"
run small_1gpu 1 $small
run small_dp2_bf16reduce 2 $small --overlap-grad-reduce --grad-reduce-in-bf16
run small_dp2_distopt_bf16reduce 2 $small --use-distributed-optimizer --overlap-grad-reduce --grad-reduce-in-bf16
for n in small_dp2_bf16reduce small_dp2_distopt_bf16reduce; do
    paste <(loss "$OUT/small_1gpu.log") <(loss "$OUT/$n.log") | awk -v n=$n '
        { r = ($2 - $1) / $1; if (r < 0) r = -r; if (r > w) w = r; c++ }
        END { printf "%s vs 1 GPU: %d logged losses, worst relative difference %.4f (%s)\n", n, c, w,
              (c == 6 && w < 0.02) ? "within 2%" : "FAILED" }' | tee -a "$OUT/compare.txt"
done
r15="--num-layers 48 --hidden-size 1600 --num-attention-heads 25 --seq-length 1024 --max-position-embeddings 1024
    --micro-batch-size 8 --train-iters 15 --lr 1e-4 --lr-decay-style constant --mock-data
    --tokenizer-type NullTokenizer --vocab-size 50257 --log-interval 5 --eval-iters 0
    --hidden-dropout 0 --attention-dropout 0 --split 1,1,1 --bf16 --device cuda --timing-log-level 1"
ms() { grep ' iteration  *15/' "$1" | sed 's/.*elapsed time per iteration (ms): \([^ ]*\) .*/\1/'; }
summary() { # name gbs gpus reference-name reference-gbs
    local t=$(ms "$OUT/$1.log") t1=$(ms "$OUT/$4.log")
    awk -v n="$1" -v t="$t" -v g="$2" -v p="$3" -v t1="$t1" -v g1="$5" 'BEGIN {
        printf "%s: %.1f ms/iter, %.0f tokens/s, %.0f per GPU, %.3fx the 1-GPU tokens/s\n", n, t, g * 1024 / (t / 1000),
               g * 1024 / (t / 1000) / p, (g / t) / (g1 / t1) }' | tee -a "$OUT/summary.txt"
    grep -A8 'iteration  *15/' "$OUT/$1.log" | grep -E 'forward-backward|all-grads-sync|optimizer|data-parallel' \
        | sed 's/^/    /' | tee -a "$OUT/summary.txt"
}
run r15_1gpu_gbs8 1 $r15 --global-batch-size 8
run r15_dp2_gbs16 2 $r15 --global-batch-size 16 --overlap-grad-reduce
run r15_dp2_gbs16_bf16 2 $r15 --global-batch-size 16 --overlap-grad-reduce --grad-reduce-in-bf16
run r15_dp2_gbs16_distopt_bf16 2 $r15 --global-batch-size 16 --use-distributed-optimizer --overlap-grad-reduce \
    --grad-reduce-in-bf16
run r15_1gpu_gbs64 1 $r15 --global-batch-size 64
run r15_dp2_gbs64 2 $r15 --global-batch-size 64 --overlap-grad-reduce
run r15_dp2_gbs64_bf16 2 $r15 --global-batch-size 64 --overlap-grad-reduce --grad-reduce-in-bf16
summary r15_1gpu_gbs8 8 1 r15_1gpu_gbs8 8
for n in r15_dp2_gbs16 r15_dp2_gbs16_bf16 r15_dp2_gbs16_distopt_bf16; do summary $n 16 2 r15_1gpu_gbs8 8; done
summary r15_1gpu_gbs64 64 1 r15_1gpu_gbs64 64
for n in r15_dp2_gbs64 r15_dp2_gbs64_bf16; do summary $n 64 2 r15_1gpu_gbs64 64; done
fi

if want optime; then
r15="--num-layers 48 --hidden-size 1600 --num-attention-heads 25 --seq-length 1024 --max-position-embeddings 1024
    --micro-batch-size 8 --train-iters 15 --lr 1e-4 --lr-decay-style constant --mock-data
    --tokenizer-type NullTokenizer --vocab-size 50257 --log-interval 5 --eval-iters 0
    --hidden-dropout 0 --attention-dropout 0 --split 1,1,1 --bf16 --device cuda --timing-log-level 1"
run o_dp2_no_overlap 2 $r15 --global-batch-size 16
MEGATRON_OP_TIMING=2500 ./megatron pretrain $r15 --global-batch-size 8 >"$OUT/o_1gpu.log" 2>"$OUT/o_1gpu.ops"
mpirun -np 2 --bind-to none -x MEGATRON_OP_TIMING=2500 ./megatron pretrain $r15 --global-batch-size 16 \
    --overlap-grad-reduce >"$OUT/o_dp2.log" 2>"$OUT/o_dp2.ops"
for n in o_1gpu o_dp2 o_dp2_no_overlap; do
    echo "$n:" | tee -a "$OUT/summary.txt"
    grep -A8 'iteration  *15/' "$OUT/$n.log" | grep -E 'elapsed|forward-backward|all-grads-sync|optimizer|data-parallel' \
        | sed 's/^/    /; s/| throughput.*//' | tee -a "$OUT/summary.txt"
done
head -30 "$OUT/o_1gpu.ops" | tee -a "$OUT/summary.txt"
head -60 "$OUT/o_dp2.ops" | tee -a "$OUT/summary.txt"
fi

if want streams; then
r15="--num-layers 48 --hidden-size 1600 --num-attention-heads 25 --seq-length 1024 --max-position-embeddings 1024
    --micro-batch-size 8 --train-iters 15 --lr 1e-4 --lr-decay-style constant --mock-data
    --tokenizer-type NullTokenizer --vocab-size 50257 --log-interval 5 --eval-iters 0
    --hidden-dropout 0 --attention-dropout 0 --split 1,1,1 --bf16 --device cuda --timing-log-level 1"
env | grep -E '^(CUDA|NCCL)' | tee "$OUT/env.txt"
run s_1gpu 1 $r15 --global-batch-size 8
run s_dp2 2 $r15 --global-batch-size 16 --overlap-grad-reduce
for c in 1 32; do
    export CUDA_DEVICE_MAX_CONNECTIONS=$c
    run s_dp2_conn$c 2 $r15 --global-batch-size 16 --overlap-grad-reduce
    unset CUDA_DEVICE_MAX_CONNECTIONS
done
run s_dp2_bucket200m 2 $r15 --global-batch-size 16 --overlap-grad-reduce --ddp-bucket-size 200000000
run s_dp2_bucket10m 2 $r15 --global-batch-size 16 --overlap-grad-reduce --ddp-bucket-size 10000000
for n in s_1gpu s_dp2 s_dp2_conn1 s_dp2_conn32 s_dp2_bucket200m s_dp2_bucket10m; do
    echo "$n:" | tee -a "$OUT/summary.txt"
    grep -A8 'iteration  *15/' "$OUT/$n.log" | grep -E 'elapsed|forward-backward|all-grads-sync|data-parallel' \
        | sed 's/^ *\[[^]]*\] iteration.*elapsed time per iteration (ms): \([^ ]*\) .*/    ms\/iter \1/' \
        | tee -a "$OUT/summary.txt"
done
fi

if want accum; then
r15="--num-layers 48 --hidden-size 1600 --num-attention-heads 25 --seq-length 1024 --max-position-embeddings 1024
    --micro-batch-size 8 --train-iters 10 --lr 1e-4 --lr-decay-style constant --mock-data
    --tokenizer-type NullTokenizer --vocab-size 50257 --log-interval 5 --eval-iters 0
    --hidden-dropout 0 --attention-dropout 0 --split 1,1,1 --bf16 --device cuda --timing-log-level 1"
line() { grep -A8 'iteration  *10/' "$OUT/$1.log" | grep -E 'elapsed|forward-backward|all-grads-sync|data-parallel' \
    | sed 's/^ *\[[^]]*\] iteration.*elapsed time per iteration (ms): \([^ ]*\) .*/    ms\/iter \1/'; }
run a_1gpu_gbs128 1 $r15 --global-batch-size 128
run a_dp2_gbs128 2 $r15 --global-batch-size 128 --overlap-grad-reduce
run a_dp2_gbs128_bf16 2 $r15 --global-batch-size 128 --overlap-grad-reduce --grad-reduce-in-bf16
for n in a_1gpu_gbs128 a_dp2_gbs128 a_dp2_gbs128_bf16; do
    echo "$n:" | tee -a "$OUT/summary.txt"; line $n | tee -a "$OUT/summary.txt"
done
fi
