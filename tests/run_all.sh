#!/usr/bin/env bash
# Runs the whole suite: every cmocka binary in $BUILD/tests (given the fixture directory as its
# argument), the parity test once per Hugging Face fixture, the MPI test binaries under mpirun,
# and every CLI script in tests/cli.
# Prints each suite's output and ends with one line "N passed, N failed".
set -uo pipefail
BUILD=${BUILD:-build}
FIXTURES=${FIXTURES:-../shared/fixtures}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} # idle OpenMP threads sleep rather than spin
export MEGATRON=${MEGATRON:-$PWD/megatron} FIXTURES BUILD
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

passed=0
failed=0
failed_names=()

# Runs one cmocka binary and adds its counts; a crash counts as one failure.
run_cmocka() {
    local name=$1
    shift
    local out rc
    out=$("$@" 2>&1)
    rc=$?
    printf '%s\n' "$out"
    local p f
    p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | awk '{s+=$1} END {print s+0}')
    f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | awk '{s+=$1} END {print s+0}')
    passed=$((passed + p))
    failed=$((failed + f))
    if [ $rc -ne 0 ]; then
        [ "$f" -eq 0 ] && failed=$((failed + 1))
        failed_names+=("$name")
    fi
}

for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    if [ "$name" = test_parity ]; then
        for fx in "$FIXTURES"/gpt2_tiny "$FIXTURES"/llama_tiny; do
            echo "== $name $fx"
            run_cmocka "$name $(basename "$fx")" "$t" "$fx"
        done
    else
        echo "== $name"
        run_cmocka "$name" "$t" "$FIXTURES"
    fi
done

# MPI tests: each binary as a plain process and under mpirun with 2, 4 and 8 ranks. Rank 0 prints
# the cmocka report of the job (the ranks agree on every verdict before asserting), so each run
# counts once; a job that fails to start or crashes counts as a failure.
MPIRUN=(mpirun --oversubscribe --mca pml ob1 --mca btl self,vader)
for t in "$BUILD"/tests/mpi_test_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    echo "== $name (1 process)"
    run_cmocka "$name" "$t" "$FIXTURES"
    for np in 2 4 8; do
        echo "== $name (mpirun -np $np)"
        run_cmocka "$name -np $np" "${MPIRUN[@]}" -np "$np" "$t" "$FIXTURES"
    done
done

for s in tests/cli/*.sh; do
    [ -f "$s" ] || continue
    echo "== $s"
    if bash "$s"; then
        echo "[  PASSED  ] 1 test(s)."
        passed=$((passed + 1))
    else
        echo "[  FAILED  ] 1 test(s): $s"
        failed=$((failed + 1))
        failed_names+=("$s")
    fi
done

if [ ${#failed_names[@]} -gt 0 ]; then
    echo "failing suites: ${failed_names[*]}"
fi
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
