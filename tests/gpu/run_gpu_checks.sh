#!/usr/bin/env bash
# Builds and runs the GPU checks on a machine with a GPU: the CUDA-vs-CPU op tests
# (tests/gpu/test_cuda_ops.c), then the timings (scripts/bench/bench_ops.c). Logs go to
# $OUT (default build/gpu-logs); the last lines printed are the summaries.
#   BIN_DIR=dir   use prebuilt test_cuda_ops and bench_ops from dir when they run here
#   CHECKS=test|bench|ckpt|all|memcheck   (default all; memcheck runs the tests in one process
#                                          under compute-sanitizer, slow; ckpt runs
#                                          tests/gpu/ckpt_gpu.sh, checkpoints on the GPU)
# The build goes through make; if the library does not build (a file elsewhere in progress), only
# what the checks need is compiled directly.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-build/gpu-logs}
CHECKS=${CHECKS:-all}
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
export PATH=$CUDA_HOME/bin:$PATH
export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$CUDA_HOME/lib64:$CUDA_HOME/lib
mkdir -p "$OUT"

{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    nvcc --version | tail -2
    ls /usr/lib/x86_64-linux-gnu/libcudnn.so.* "$CUDA_HOME"/lib*/libcudnn.so.* 2>/dev/null
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# The objects the checks link: the CPU reference, tensors, errors, the optimizer, the CUDA backend.
direct_build() {
    local flags="-std=c11 -D_GNU_SOURCE -I. -Wall -Wextra -Werror -fopenmp -O2 -march=x86-64-v2"
    local libs="-fopenmp -lm -lpthread -L$CUDA_HOME/lib64 -lcudnn -lcublasLt -lcublas -lcudart -lstdc++"
    local dir=build/gpu-direct objs=()
    mkdir -p "$dir"
    for f in util/error.c kernels/tensor.c kernels/cpu/*.c optim/adam.c optim/clip.c; do
        objs+=("$dir/${f//\//_}.o")
        gcc $flags -c "$f" -o "$dir/${f//\//_}.o" &
    done
    for f in kernels/cuda/*.cu; do
        objs+=("$dir/${f//\//_}.o")
        nvcc -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -gencode arch=compute_90,code=sm_90 \
            -I. -c "$f" -o "$dir/${f//\//_}.o" &
    done
    wait
    mkdir -p build/tests/gpu build/scripts/bench
    gcc $flags -o build/tests/gpu/test_cuda_ops tests/gpu/test_cuda_ops*.c "${objs[@]}" $libs &&
        gcc $flags -o build/scripts/bench/bench_ops scripts/bench/bench_ops.c "${objs[@]}" $libs
}

TEST=build/tests/gpu/test_cuda_ops
BENCH=build/scripts/bench/bench_ops
if [ -n "${BIN_DIR:-}" ] && "$BIN_DIR/test_cuda_ops" --dry-run >"$OUT/dry_run.txt" 2>&1; then
    TEST=$BIN_DIR/test_cuda_ops
    BENCH=$BIN_DIR/bench_ops
    echo "using the prebuilt checks in $BIN_DIR"
elif ! make -j"$(nproc)" CUDA=1 NVCC="$CUDA_HOME/bin/nvcc" CUDA_HOME="$CUDA_HOME" "$TEST" "$BENCH" \
    >"$OUT/build.txt" 2>&1; then
    echo "make failed (see build.txt); building only what the checks need"
    direct_build >>"$OUT/build.txt" 2>&1 || { tail -30 "$OUT/build.txt"; exit 1; }
fi

rc=0
if [ "$CHECKS" = memcheck ]; then
    compute-sanitizer --tool memcheck --print-limit 20 "$TEST" --in-process 2>&1 |
        tee "$OUT/memcheck.txt"
    exit "${PIPESTATUS[0]}"
fi
if [ "$CHECKS" = ckpt ]; then
    OUT="$OUT/ckpt" tests/gpu/ckpt_gpu.sh 2>&1 | tee "$OUT/ckpt_gpu.txt"
    exit "${PIPESTATUS[0]}"
fi
if [ "$CHECKS" != bench ]; then
    "$TEST" 2>&1 | tee "$OUT/test_cuda_ops.txt"
    rc=${PIPESTATUS[0]}
fi
if [ "$CHECKS" != test ]; then
    "$BENCH" 2>&1 | tee "$OUT/bench_ops.txt"
fi
if [ "$CHECKS" = all ]; then
    OUT="$OUT/ckpt" tests/gpu/ckpt_gpu.sh 2>&1 | tee "$OUT/ckpt_gpu.txt"
    [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
fi
[ "$CHECKS" != bench ] && grep -E '^\[  (PASSED|FAILED)  \]|FAIL' "$OUT/test_cuda_ops.txt"
exit $rc
