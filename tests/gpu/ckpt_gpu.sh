#!/usr/bin/env bash
# Checkpoints on the CUDA backend, on a machine with a GPU (not part of `make test`):
#  1. exact resume: a small GPT in bf16 on the GPU, 20 iterations uninterrupted against 10 saved
#     (--save-interval 10 --exit-interval 10) and resumed to 20: the log lines of iterations 11-20
#     (lm loss, grad norm, learning rate, loss scale, skipped iterations) must be identical; the
#     same in fp16 from Megatron's default loss scale, whose first steps overflow and are skipped;
#  2. a GPU checkpoint loads on the CPU (--skip-train), and 2 more iterations from it on the CPU
#     follow 2 more on the GPU within 2% (the CPU-vs-GPU tolerance of scripts/bench/gpu_train.sh);
#  3. a CPU checkpoint loads on the GPU, and 2 more iterations follow the CPU's within 2%.
#  4. with two GPUs (or more): pipeline-parallel checkpoints on the GPU (tied embeddings, so the last
#     stage's copy of the word embeddings is restored from the first stage's): PP=2 resume 10 -> 20
#     logs the uninterrupted PP=2 run's iterations exactly; the PP=2 checkpoint of iteration 20
#     continues on one GPU and 2 iterations on follow PP=2's own continuation within 2%.
# Prints PASS/FAIL per check and exits non-zero when one fails. Logs go to $OUT.
#   tests/gpu/ckpt_gpu.sh            (MEGATRON=path to use a prebuilt binary)
#   GPU_DEVICE=cpu tests/gpu/ckpt_gpu.sh   runs the same checks with the CPU in the GPU's place
#                                          (checks the script itself on a machine without a GPU)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-build/gpu-logs/ckpt}
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
export PATH=$CUDA_HOME/bin:$PATH
mkdir -p "$OUT"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ -z "${MEGATRON:-}" ] && [ "${GPU_DEVICE:-cuda}" = cpu ]; then
    MEGATRON=./megatron
elif [ -z "${MEGATRON:-}" ]; then
    make -j"$(nproc)" CUDA=1 NVCC="$CUDA_HOME/bin/nvcc" CUDA_HOME="$CUDA_HOME" megatron >"$OUT/build.txt" 2>&1 ||
        { tail -30 "$OUT/build.txt"; echo "FAIL: build"; exit 1; }
    MEGATRON=./megatron
fi

failed=0
pass() { echo "PASS: $*"; }
fail() {
    echo "FAIL: $*"
    failed=1
}

model=(--num-layers 4 --hidden-size 256 --num-attention-heads 8 --seq-length 256 --max-position-embeddings 256
    --micro-batch-size 4 --global-batch-size 8 --lr 1e-3 --min-lr 1e-4 --lr-decay-style cosine
    --lr-warmup-iters 2 --mock-data --tokenizer-type NullTokenizer --vocab-size 1024 --log-interval 1
    --eval-iters 0 --hidden-dropout 0 --attention-dropout 0 --split 1,1,1)
gpu=(--device "${GPU_DEVICE:-cuda}")
cpu=(--device cpu)

precision() { [[ " $* " == *" --fp16 "* ]] || echo --bf16; } # bf16 unless the flags say --fp16
run() { # run NAME FLAGS...: the log in $OUT/NAME.log; false when megatron failed
    local name=$1
    shift
    "$MEGATRON" pretrain "${model[@]}" $(precision "$@") "$@" >"$OUT/$name.log" 2>&1 ||
        { tail -5 "$OUT/$name.log"; return 1; }
}
gpu_run() { run "$1" "${gpu[@]}" "${@:2}"; } # gpu_run NAME FLAGS...: run on the GPU

# the iteration lines without what differs between runs (timestamp, time per iteration)
lines() {
    grep -E ' iteration .*consumed samples' "$1" |
        sed -E 's/^ \[[^]]*\]//; s/elapsed time per iteration \(ms\): [0-9.]+ \|//; s/throughput[^|]*\|//'
}
loss_at() { # loss_at LOG ITERATION
    grep -E " iteration +$2/" "$1" | sed -E 's/.*lm loss: ([^ ]+) .*/\1/'
}
close() { # close A B: relative difference within 2%
    awk -v a="$1" -v b="$2" 'BEGIN { d = (a - b) / b; if (d < 0) d = -d; exit !(a != "" && b != "" && d < 0.02) }'
}

# 1. exact resume on the GPU: exact_resume NAME DIR RUNNER FLAGS... (RUNNER NAME FLAGS... runs one
# job, gpu_run or pp below; the checkpoint stays in DIR)
exact_resume() {
    local name=$1 dir=$2 runner=$3
    shift 3
    if $runner ${name}_full "$@" --train-iters 20 &&
        $runner ${name}_first "$@" --train-iters 20 --save "$dir" --save-interval 10 --exit-interval 10 &&
        $runner ${name}_second "$@" --train-iters 20 --save "$dir" --save-interval 10 --load "$dir"; then
        grep -q "successfully loaded checkpoint from $dir .* at iteration 10" "$OUT/${name}_second.log" ||
            fail "$name resume: the second run did not load iteration 10"
        lines "$OUT/${name}_full.log" | tail -n 10 >"$tmp/a"
        lines "$OUT/${name}_second.log" >"$tmp/b"
        if [ "$(wc -l <"$tmp/a")" -eq 10 ] && diff "$tmp/a" "$tmp/b" >"$OUT/${name}_resume.diff"; then
            pass "$name resume 10 -> 20 logs the uninterrupted run's iterations 11-20 exactly"
        else
            # a second uninterrupted run tells a resume bug from kernels that are not deterministic
            $runner ${name}_full2 "$@" --train-iters 20
            if lines "$OUT/${name}_full.log" | cmp -s - <(lines "$OUT/${name}_full2.log"); then
                fail "$name resume differs from the uninterrupted run, which repeats exactly (see $OUT/${name}_resume.diff)"
            else
                fail "$name resume differs, and so do two uninterrupted runs: the CUDA step is not deterministic (see $OUT/${name}_resume.diff)"
            fi
        fi
    else
        fail "$name training with --save/--load did not run (see $OUT/${name}_*.log)"
    fi
}
exact_resume gpu "$tmp/gpu" gpu_run
# fp16 from Megatron's default loss scale (2^32): the first steps overflow and are skipped, so the
# checkpoint of iteration 10 must carry the dynamic scaler's state (scale, hysteresis, growth)
exact_resume gpu_fp16 "$tmp/gpu_fp16" gpu_run --fp16
# 2. the GPU checkpoint of iteration 20 on the CPU, and 2 more iterations on each device
if [ -f "$tmp/gpu/latest_checkpointed_iteration.txt" ]; then
    cp -r "$tmp/gpu" "$tmp/gpu_for_gpu"
    cp -r "$tmp/gpu" "$tmp/gpu_for_cpu"
    if run cpu_loads_gpu "${cpu[@]}" --train-iters 20 --load "$tmp/gpu" --skip-train &&
        grep -q "successfully loaded checkpoint from $tmp/gpu .* at iteration 20" "$OUT/cpu_loads_gpu.log"; then
        pass "the GPU checkpoint loads on the CPU (--skip-train)"
    else
        fail "the GPU checkpoint does not load on the CPU (see $OUT/cpu_loads_gpu.log)"
    fi
    if gpu_run gpu_more --train-iters 22 --load "$tmp/gpu_for_gpu" &&
        run cpu_more "${cpu[@]}" --train-iters 22 --load "$tmp/gpu_for_cpu"; then
        g=$(loss_at "$OUT/gpu_more.log" 22)
        c=$(loss_at "$OUT/cpu_more.log" 22)
        if close "$c" "$g"; then pass "from the GPU checkpoint, iteration 22: CPU lm loss $c, GPU $g (within 2%)"
        else fail "from the GPU checkpoint, iteration 22: CPU lm loss '$c', GPU '$g'"; fi
    else
        fail "continuing from the GPU checkpoint failed (see $OUT/gpu_more.log, $OUT/cpu_more.log)"
    fi
fi

# 3. a CPU checkpoint on the GPU
if run cpu_first "${cpu[@]}" --train-iters 10 --save "$tmp/cpu" --save-interval 10 &&
    cp -r "$tmp/cpu" "$tmp/cpu_for_gpu" &&
    run cpu_then "${cpu[@]}" --train-iters 12 --load "$tmp/cpu" &&
    gpu_run gpu_then --train-iters 12 --load "$tmp/cpu_for_gpu"; then
    grep -q "successfully loaded checkpoint from $tmp/cpu_for_gpu .* at iteration 10" "$OUT/gpu_then.log" ||
        fail "the GPU run did not load the CPU checkpoint"
    g=$(loss_at "$OUT/gpu_then.log" 12)
    c=$(loss_at "$OUT/cpu_then.log" 12)
    if close "$g" "$c"; then pass "from the CPU checkpoint, iteration 12: GPU lm loss $g, CPU $c (within 2%)"
    else fail "from the CPU checkpoint, iteration 12: GPU lm loss '$g', CPU '$c'"; fi
else
    fail "a CPU checkpoint on the GPU did not run (see $OUT/cpu_first.log, $OUT/cpu_then.log, $OUT/gpu_then.log)"
fi

# 4. pipeline-parallel checkpoints on two GPUs
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
if [ "${GPU_DEVICE:-cuda}" = cuda ] && [ "$gpus" -ge 2 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0
    pp() { # pp NAME FLAGS...: the same as run, on two ranks with --pipeline-model-parallel-size 2
        local name=$1
        shift
        mpirun -np 2 --bind-to none "$MEGATRON" pretrain "${model[@]}" $(precision "$@") "${gpu[@]}" \
            --pipeline-model-parallel-size 2 "$@" >"$OUT/$name.log" 2>&1 || { tail -5 "$OUT/$name.log"; return 1; }
    }
    exact_resume pp "$tmp/pp" pp
    if [ -f "$tmp/pp/latest_checkpointed_iteration.txt" ]; then
        cp -r "$tmp/pp" "$tmp/pp_for_one"
        if pp pp_more --train-iters 22 --load "$tmp/pp" && gpu_run one_from_pp --train-iters 22 --load "$tmp/pp_for_one"; then
            a=$(loss_at "$OUT/pp_more.log" 22)
            b=$(loss_at "$OUT/one_from_pp.log" 22)
            if close "$b" "$a"; then pass "the PP=2 checkpoint on one GPU, iteration 22: lm loss $b, PP=2 $a (within 2%)"
            else fail "the PP=2 checkpoint on one GPU, iteration 22: lm loss '$b', PP=2 '$a'"; fi
        else
            fail "continuing from the PP=2 checkpoint failed (see $OUT/pp_more.log, $OUT/one_from_pp.log)"
        fi
    fi
fi

grep -h "checkpoint written and synced\|checkpoint read and verified" "$OUT"/gpu_*.log | sort -u | head -4
exit $failed
