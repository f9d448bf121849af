#!/usr/bin/env bash
# On the GPU machine: build, check the CUDA training step against the CPU, and time GPT-2 124M
# beside the PyTorch baseline in the same call.
#   scripts/bench/gpu_train.sh [TORCH_SCRIPT]    (logs under $OUT when set; MEGATRON=path runs a
#                                                 prebuilt binary instead of building one)
# 1. correctness: 20 bf16 iterations of a small GPT on the GPU follow the fp32 CPU run's losses
#    within 2% (issue 5, part 6); so do 20 fp16 iterations with a dynamic loss scale that starts
#    low enough never to overflow (--initial-loss-scale 4096); from Megatron's default start
#    (2^32) fp16 overflows, and the run must skip those steps and halve the scale as Megatron's
#    DynamicGradScaler does (hysteresis 2: the first overflow keeps the scale), then train; and
#    20 bf16 iterations with --optimizer sgd follow the fp32 CPU's SGD run within 2%, and the bf16
#    run's --log-params-norm (the fp32 main weights' norm) the CPU's within 0.1%; with untied
#    embeddings and no linear biases, --log-num-zeros-in-grad (mostly the untied embedding's rows
#    of unseen tokens; bf16 gradients add a few exact zeros of their own) within 0.1% of the
#    CPU's at every iteration. The CUDA graph of the step replays exactly what the uncaptured
#    step does (1b). --deterministic-mode repeats itself bit for bit (1c).
# 2. speed: GPT-2 124M (12 x 768, seq 1024, vocab 50304) at a given micro batch: tokens/s and
#    TFLOP/s by Megatron's formula, MFU against 989 TFLOP/s; then torch_gpt.py on the same GPU.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/gpu_train_out}
mkdir -p "$OUT"
TORCH=${1:-}
MBS=${MBS:-16}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
if [ -z "${MEGATRON:-}" ]; then
    make -j16 CUDA=1 megatron >"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
fi
M=${MEGATRON:-./megatron}

small="--num-layers 2 --hidden-size 128 --num-attention-heads 4 --seq-length 128 --max-position-embeddings 128
    --micro-batch-size 4 --global-batch-size 8 --train-iters 20 --lr 1e-3 --lr-decay-style constant
    --mock-data --tokenizer-type NullTokenizer --vocab-size 1024 --log-interval 1 --eval-iters 0
    --hidden-dropout 0 --attention-dropout 0 --split 1,1,1 --log-params-norm --log-num-zeros-in-grad"
$M pretrain $small --device cpu >"$OUT/small_cpu.log" 2>&1
$M pretrain $small --device cuda --bf16 >"$OUT/small_gpu.log" 2>&1
$M pretrain $small --device cuda --fp16 --initial-loss-scale 4096 >"$OUT/small_gpu_fp16.log" 2>&1
$M pretrain $small --device cuda --fp16 --train-iters 30 >"$OUT/small_gpu_fp16_dynamic.log" 2>&1
$M pretrain $small --device cpu --optimizer sgd >"$OUT/small_cpu_sgd.log" 2>&1
$M pretrain $small --device cuda --bf16 --optimizer sgd >"$OUT/small_gpu_sgd.log" 2>&1
untied="--untie-embeddings-and-output-weights --disable-bias-linear"
$M pretrain $small $untied --device cpu >"$OUT/small_cpu_untied.log" 2>&1
$M pretrain $small $untied --device cuda --bf16 >"$OUT/small_gpu_untied.log" 2>&1
loss() { grep ' iteration .*lm loss' "$1" | sed 's/.*lm loss: \([^ ]*\) .*/\1/'; }
params_norm() { grep ' iteration ' "$1" | sed -n 's/.*params norm: \([^ ]*\) .*/\1/p'; }
num_zeros() { grep ' iteration ' "$1" | sed -n 's/.*num zeros: \([^ ]*\) .*/\1/p'; }
compare() { # name, log[, CPU log]: the run's losses against the CPU's
    paste <(loss "${3:-$OUT/small_cpu.log}") <(loss "$2") | awk -v name="$1" '
        { r = ($2 - $1) / $1; if (r < 0) r = -r; if (r > worst || r != r) worst = r; n++ }
        END { printf "small GPT, %d iterations: worst relative difference GPU %s vs CPU fp32 = %.4f (%s)\n",
              n, name, worst, (n == 20 && worst < 0.02) ? "within 2%" : "FAILED" }'
}
{
    compare bf16 "$OUT/small_gpu.log"
    compare "fp16 (initial loss scale 4096)" "$OUT/small_gpu_fp16.log"
    compare "bf16 --optimizer sgd" "$OUT/small_gpu_sgd.log" "$OUT/small_cpu_sgd.log"
    # --log-params-norm: the fp32 main weights' norm, every iteration, within 0.1% of the CPU's
    paste <(params_norm "$OUT/small_cpu.log") <(params_norm "$OUT/small_gpu.log") | awk '
        { r = ($2 - $1) / $1; if (r < 0) r = -r; if (r > worst || r != r) worst = r; n++ }
        END { printf "small GPT, %d iterations: worst relative difference of the params norm GPU bf16 vs CPU fp32 = %.6f (%s)\n",
              n, worst, (n == 20 && worst < 0.001) ? "within 0.1%" : "FAILED" }'
    paste <(num_zeros "$OUT/small_cpu_untied.log") <(num_zeros "$OUT/small_gpu_untied.log") | awk '
        { d = $2 - $1; if (d < 0) d = -d; if (!($1 > 0) || d > 0.001 * $1) bad++; if (d > worst) worst = d; n++ }
        END { printf "small GPT, untied, no linear biases: num zeros GPU bf16 vs CPU fp32 at most %d apart over %d iterations (%s)\n",
              worst, n, (n == 20 && !bad) ? "within 0.1%, ok" : "FAILED" }'
    grep ' iteration ' "$OUT/small_gpu_fp16.log" | tail -1 | grep -q 'loss scale: 4096.0 .*skipped iterations:   0 ' &&
        echo "fp16 (initial loss scale 4096): no step skipped, scale 4096 (ok)" ||
        echo "fp16 (initial loss scale 4096): FAILED (a step was skipped or the scale moved)"
    # Each log line (interval 1) holds the loss scale after its step and whether the step was
    # skipped; a skipped step prints no lm loss, as Megatron's does not. After k skips the scale is
    # 2^32 / 2^max(0, k-1); the losses of the steps taken after the first skip must fall.
    grep ' iteration ' "$OUT/small_gpu_fp16_dynamic.log" | awk -F' [|] ' '
        { loss = ""; for (i = 1; i <= NF; i++) { split($i, kv, ": *")
              if (kv[1] == "lm loss") loss = kv[2] + 0
              if (kv[1] == "loss scale") scale = kv[2] + 0
              if (kv[1] == "number of skipped iterations") skip = kv[2] + 0 }
          k += skip; want = 2^32 / 2^(k > 1 ? k - 1 : 0)
          if (scale != want || (!skip && (loss == "" || loss != loss))) bad++
          if (k > 0 && !skip) { if (!seen) first = loss; seen = 1; final = loss }
          n++ }
        END { ok = n == 30 && !bad && k > 0 && seen && final < first
              printf "fp16 from loss scale 2^32: %d of %d iterations skipped, scale then %g (%s); loss %.4f -> %.4f over the steps taken (%s)\n",
                     k, n, 2^32 / 2^(k > 1 ? k - 1 : 0), bad ? "not as Megatron" : "as Megatron", first, final, ok ? "ok" : "FAILED" }'
} | tee "$OUT/small_compare.txt"
tail -3 "$OUT/small_gpu.log"

# 1b. the CUDA graph: from its second step a one-GPU run replays the captured step; it must do
# exactly what the uncaptured step does: the same log lines and, after the last step, the same
# weights and optimizer state bit for bit (bf16; fp16 from the default scale, skips and scale
# changes included; SGD; a clipping threshold that clips every step; hidden dropout; validation
# and checkpoints saved between replays, whose validation losses must match too).
strip() { grep -E ' iteration .*consumed samples|validation loss' "$1" | sed -E 's/^ \[[^]]*\]//; s/elapsed time per iteration \(ms\): [0-9.]+ \|//'; }
graph_check() { # NAME FLAGS...
    local name=$1 g="$OUT/graph_$1" e="$OUT/eager_$1"
    shift
    rm -rf "$g" "$e"
    $M pretrain $small --device cuda --save "$g" --save-interval 1000 "$@" >"$g.log" 2>&1
    MEGATRON_CUDA_GRAPH=0 $M pretrain $small --device cuda --save "$e" --save-interval 1000 "$@" >"$e.log" 2>&1
    local it
    it=$(cat "$g/latest_checkpointed_iteration.txt" 2>/dev/null)
    local dir
    dir=$(printf 'iter_%07d' "${it:-0}")
    if grep -q 'CUDA graph: the training step captured' "$g.log" && ! grep -q 'CUDA graph: the training step captured' "$e.log" &&
        [ -n "$(strip "$g.log")" ] && cmp -s <(strip "$g.log") <(strip "$e.log") &&
        cmp -s "$g/$dir/model.safetensors" "$e/$dir/model.safetensors" &&
        cmp -s "$g/$dir/optimizer.safetensors" "$e/$dir/optimizer.safetensors"; then
        echo "CUDA graph, $name: $(strip "$g.log" | wc -l) log lines and the final weights and optimizer state bitwise the uncaptured run's (ok)"
    else
        echo "CUDA graph, $name: FAILED (see $g.log, $e.log)"
    fi
}
{
    # the control: two uncaptured runs repeat each other bit for bit (cuDNN's attention backward
    # sums dQ with atomics; were its order to show, the comparisons below would mean nothing)
    rm -rf "$OUT/eager_again"
    MEGATRON_CUDA_GRAPH=0 $M pretrain $small --device cuda --bf16 --save "$OUT/eager_again" \
        --save-interval 1000 >"$OUT/eager_again.log" 2>&1
    graph_check bf16 --bf16
    cmp -s "$OUT/eager_again/iter_0000020/model.safetensors" "$OUT/eager_bf16/iter_0000020/model.safetensors" &&
        echo "control: two uncaptured bf16 runs end with the same weights bit for bit (ok)" ||
        echo "control: two uncaptured bf16 runs differ: FAILED (the graph comparisons cannot be bitwise)"
    graph_check fp16-dynamic --fp16 --train-iters 30
    graph_check sgd --bf16 --optimizer sgd
    graph_check clipped --bf16 --clip-grad 0.05
    graph_check hidden-dropout --bf16 --hidden-dropout 0.1
    # validation and checkpoints between replays (the evaluation runs uncaptured on the same buffers)
    graph_check eval-and-save --bf16 --eval-interval 5 --eval-iters 2 --save-interval 7
} | tee "$OUT/graph_compare.txt"
# attention dropout too is captured (its cuDNN seed read from device memory): the run trains
$M pretrain $small --device cuda --bf16 --attention-dropout 0.1 --hidden-dropout 0.1 \
    >"$OUT/graph_attention_dropout.log" 2>&1
{
    ad=$(loss "$OUT/graph_attention_dropout.log")
    grep -q 'CUDA graph: the training step captured' "$OUT/graph_attention_dropout.log" && [ "$(echo "$ad" | wc -l)" -eq 20 ] &&
        echo "CUDA graph, attention and hidden dropout 0.1: captured, 20 steps, lm loss $(echo "$ad" | head -1) -> $(echo "$ad" | tail -1)" ||
        echo "CUDA graph, attention and hidden dropout 0.1: FAILED (see graph_attention_dropout.log)"
} | tee -a "$OUT/graph_compare.txt"

# 1c. --deterministic-mode: attention's backward of our own (head dimension 64) and no choice by
# timing; two runs end with the same weights and optimizer state bit for bit, and the losses
# follow the fp32 CPU's within 2%; a shape it cannot take (head dimension 32) is refused (exit 2).
# Two default runs of the same model are compared too, for the record (the default backward adds dQ
# with atomics: they may or may not differ).
det="--num-layers 4 --hidden-size 512 --num-attention-heads 8 --seq-length 1024 --max-position-embeddings 1024
    --micro-batch-size 8 --global-batch-size 8 --train-iters 20 --lr 1e-3 --lr-decay-style constant
    --mock-data --tokenizer-type NullTokenizer --vocab-size 1024 --log-interval 1 --eval-iters 0
    --hidden-dropout 0 --attention-dropout 0 --split 1,1,1 --save-interval 1000"
{
    rm -rf "$OUT"/det_*
    for r in a b; do
        $M pretrain $det --device cuda --bf16 --deterministic-mode --save "$OUT/det_$r" >"$OUT/det_$r.log" 2>&1
        $M pretrain $det --device cuda --bf16 --save "$OUT/det_default_$r" >"$OUT/det_default_$r.log" 2>&1
    done
    $M pretrain $det --device cpu --train-iters 5 >"$OUT/det_cpu.log" 2>&1
    same() { cmp -s "$OUT/$1/iter_0000020/model.safetensors" "$OUT/$2/iter_0000020/model.safetensors" &&
        cmp -s "$OUT/$1/iter_0000020/optimizer.safetensors" "$OUT/$2/iter_0000020/optimizer.safetensors"; }
    if [ "$(loss "$OUT/det_a.log" | wc -l)" -eq 20 ] && same det_a det_b && cmp -s <(strip "$OUT/det_a.log") <(strip "$OUT/det_b.log"); then
        echo "--deterministic-mode: two runs, 20 log lines and the final weights and optimizer state bitwise alike (ok)"
    else
        echo "--deterministic-mode: two runs differ or failed: FAILED (see det_a.log, det_b.log)"
    fi
    same det_default_a det_default_b && echo "default (attention's backward by key blocks): two runs bitwise alike this time" ||
        echo "default (attention's backward by key blocks): two runs differ in their final weights"
    paste <(loss "$OUT/det_cpu.log") <(loss "$OUT/det_a.log" | head -5) | awk '
        { r = ($2 - $1) / $1; if (r < 0) r = -r; if (r > worst || r != r) worst = r; n++ }
        END { printf "--deterministic-mode, %d iterations: worst relative difference GPU bf16 vs CPU fp32 = %.4f (%s)\n",
              n, worst, (n == 5 && worst < 0.02) ? "within 2%" : "FAILED" }'
    $M pretrain $small --device cuda --bf16 --deterministic-mode >"$OUT/det_refused.log" 2>&1
    rc=$?
    [ $rc -eq 2 ] && grep -q 'error: --deterministic-mode on the GPU' "$OUT/det_refused.log" &&
        echo "--deterministic-mode at head dimension 32: refused, exit 2 (ok)" ||
        echo "--deterministic-mode at head dimension 32: exit $rc: FAILED (see det_refused.log)"
} | tee "$OUT/deterministic.txt"

gpt2="--num-layers 12 --hidden-size 768 --num-attention-heads 12 --seq-length 1024 --max-position-embeddings 1024
    --micro-batch-size $MBS --global-batch-size $MBS --train-iters 30 --lr 6e-4 --lr-decay-style constant
    --mock-data --tokenizer-type NullTokenizer --vocab-size 50257 --log-interval 10 --log-throughput
    --eval-iters 0 --hidden-dropout 0 --attention-dropout 0 --split 1,1,1 --bf16 --device cuda"
start=$(date +%s)
$M pretrain $gpt2 >"$OUT/gpt2_124m.log" 2>&1
echo "megatron: $(grep -c ' iteration ' "$OUT/gpt2_124m.log") log lines, wall $(( $(date +%s) - start )) s"
grep ' iteration ' "$OUT/gpt2_124m.log" | tail -2 | sed 's/.*elapsed time per iteration (ms): \([^ ]*\) | throughput per GPU (TFLOP\/s\/GPU): \([^ ]*\) .*lm loss: \([^ ]*\) .*/ms\/iter \1  TFLOP\/s \2  loss \3/' \
    | awk -v tok=$((MBS * 1024)) '{ printf "%s  tokens/s %.0f  MFU %.1f%%\n", $0, tok / ($2 / 1000), $4 / 989 * 100 }' | tee "$OUT/gpt2_summary.txt"
grep -E 'memory \(MB\)|end of the first training step' "$OUT/gpt2_124m.log" | tee -a "$OUT/gpt2_summary.txt"
grep -i "error" "$OUT/gpt2_124m.log" | head -3
# the graph's worth where launches are many and kernels short: 124M at micro batch 4, with and
# without it (median of the last log interval)
for graph in 1 0; do
    MEGATRON_CUDA_GRAPH=$graph $M pretrain ${gpt2/--micro-batch-size $MBS --global-batch-size $MBS/--micro-batch-size 4 --global-batch-size 4} \
        >"$OUT/gpt2_mbs4_graph$graph.log" 2>&1
    echo "124M micro batch 4, MEGATRON_CUDA_GRAPH=$graph: $(grep ' iteration ' "$OUT/gpt2_mbs4_graph$graph.log" | tail -1 |
        sed 's/.*elapsed time per iteration (ms): \([^ ]*\) .*/\1 ms per iteration/')"
done | tee "$OUT/graph_speed.txt"
if [ -n "$TORCH" ]; then
    PYTHONUNBUFFERED=1 python3 "$TORCH" --layers 12 --hidden 768 --heads 12 --mbs "$MBS" 2>&1 | tail -4 | tee "$OUT/torch.txt"
fi
