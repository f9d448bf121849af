#!/usr/bin/env bash
# `megatron plan` prints each pipeline rank's layers, schedule and bubble: the reference's L=16,
# PP=2, vp=2 layout with 4 micro batches (interleaved 1F1B, Megatron's warm-up 4 and 2), and a
# pipeline constraint it cannot schedule as one line on stderr with exit code 2.
set -uo pipefail
MEGATRON=${MEGATRON:-./megatron}
M=(--num-layers 16 --hidden-size 64 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 32
   --micro-batch-size 1 --vocab-size 1000)

fail() { echo "plan_pipeline: $*"; exit 1; }
expect_line() { grep -qxF -- "$2" <<<"$1" || { printf '%s\n' "$1"; fail "missing line: $2"; }; }

out=$("$MEGATRON" plan "${M[@]}" --world-size 2 --pipeline-model-parallel-size 2 \
    --num-layers-per-virtual-pipeline-stage 4 --global-batch-size 4) || fail "plan exited $?"
expect_line "$out" "pipeline schedule: forward_backward_pipelining_with_interleaving, PP 2 x 2 virtual stages (micro batches in groups of 2), 4 micro batches per iteration"
expect_line "$out" "  pp rank 0: layers 0-3 (chunk 0, embedding), 8-11 (chunk 1); warm-up 4 forwards, at most 5 micro-batch chunks alive, bubble 11.1%"
expect_line "$out" "    F0.0 F1.0 F0.1 F1.1 | F2.0 B0.1 F3.0 B1.1 F2.1 B0.0 F3.1 B1.0 | B2.1 B3.1 B2.0 B3.0"
expect_line "$out" "  pp rank 1: layers 4-7 (chunk 0), 12-15 (chunk 1, output layer and loss); warm-up 2 forwards, at most 3 micro-batch chunks alive, bubble 11.1%"
expect_line "$out" "    F0.0 F1.0 | F0.1 B0.1 F1.1 B1.1 F2.0 B0.0 F3.0 B1.0 F2.1 B2.1 F3.1 B3.1 | B2.0 B3.0"
# the per-rank table shows the interleaved layers too
awk '$1 == 0 && $5 == 0 {print $6}' <<<"$out" | grep -qxF "0-3,8-11" || { printf '%s\n' "$out"; fail "rank 0 layers"; }
# (PP - 1) / (vp x M) = 1/8 of the compute, 1/9 of the time
grep -qF "the textbook (PP - 1) / (vp x M) = 0.125 of the compute is 11.1% of the time" <<<"$out" ||
    fail "textbook bubble line"

err=$("$MEGATRON" plan "${M[@]}" --world-size 4 --pipeline-model-parallel-size 4 \
    --num-virtual-stages-per-pipeline-rank 2 --global-batch-size 6 2>&1 >/dev/null)
rc=$?
[ $rc -eq 2 ] || fail "6 micro batches on 4 stages: exit code $rc, want 2"
[ "$(wc -l <<<"$err")" -eq 1 ] || fail "more than one line: $err"
grep -qF "megatron: error: 6 micro batches per iteration" <<<"$err" || fail "got '$err'"
grep -qF "use 4 or 8 micro batches (--global-batch-size 4 or 8)" <<<"$err" || fail "got '$err'"
exit 0
