#!/usr/bin/env bash
# --distributed-timeout-minutes: in a 2-rank job whose last rank never answers, the other rank's
# collective gives up after the limit (0.5 s here, set by mpi_test_comm --abort-on-timeout) and the
# whole job ends with exit code 2 and one line naming the rank, the collective and the group,
# instead of hanging.
set -uo pipefail
BUILD=${BUILD:-build}
bin=$BUILD/tests/mpi_test_comm
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

fail() { echo "comm_timeout: $*"; exit 1; }
[ -x "$bin" ] || fail "$bin is not built (make $bin)"
start=$(date +%s)
out=$(timeout 120 mpirun --oversubscribe --mca pml ob1 --mca btl self,vader -np 2 "$bin" --abort-on-timeout 2>&1)
rc=$?
elapsed=$(($(date +%s) - start))
[ $rc -ne 124 ] || fail "the job hung until the outer timeout"
[ $rc -eq 2 ] || { printf '%s\n' "$out"; fail "exit code $rc, want 2"; }
want="megatron: error: rank 0: comm_all_reduce_sum on the dp group (ranks 0,1) waited "
grep -qF -- "$want" <<<"$out" || { printf '%s\n' "$out"; fail "no line starting '$want'"; }
grep -q "the collective returned" <<<"$out" && fail "a collective returned without every rank"
[ $elapsed -lt 40 ] || fail "the job took $elapsed s to end"
exit 0
