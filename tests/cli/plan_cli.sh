#!/usr/bin/env bash
# `megatron plan`: Megatron's groups for TP 2 x PP 2 x DP 2 on 8 ranks (reference section 6) in both
# rank orders, the parameters and memory of the first and last pipeline stage, and one-line errors
# (exit code 2) for layouts that do not fit.
set -uo pipefail
MEGATRON=${MEGATRON:-./megatron}
M=(--num-layers 4 --hidden-size 64 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 32
   --micro-batch-size 1 --vocab-size 1000)

fail() { echo "plan_cli: $*"; exit 1; }
expect_line() { grep -qxF -- "$2" <<<"$1" || { printf '%s\n' "$1"; fail "missing line: $2"; }; }
# rank row: rank, tp, cp, dp, pp, layers, parameters, memory (MB)
expect_row() { awk -v r="$2" '$1 == r' <<<"$1" | awk '{print $1, $2, $3, $4, $5, $6, $7, $8}' | grep -qxF -- "$3" ||
    { printf '%s\n' "$1"; fail "rank $2: want '$3'"; }; }

out=$("$MEGATRON" plan "${M[@]}" --world-size 8 --tensor-model-parallel-size 2 --pipeline-model-parallel-size 2) ||
    fail "plan exited $?"
expect_line "$out" "layout: TP 2 x CP 1 x PP 2 x DP 2 = 8 ranks, EP 1, rank order tp-cp-ep-dp-pp"
expect_line "$out" "  tp                  [0,1] [2,3] [4,5] [6,7]"
expect_line "$out" "  dp                  [0,2] [1,3] [4,6] [5,7]"
expect_line "$out" "  pp                  [0,4] [1,5] [2,6] [3,7]"
expect_line "$out" "  tp-pp               [0,1,4,5] [2,3,6,7]"
expect_line "$out" "  embedding           [0,4] [1,5] [2,6] [3,7]"
# h 64, 4 heads, ffn 256, vocab 1000 padded to 1024: a layer holds 49600 split by TP + 384 whole;
# stage 0 adds half the word embedding (32768) and the positions (2048), stage 1 the final norm
# (128) and half the tied embedding's copy (32768); fp32 with Adam: 16 bytes per parameter.
expect_row "$out" 0 "0 0 0 0 0 0-1 85184 1.30"
expect_row "$out" 7 "7 1 0 1 1 2-3 83264 1.27"
[ "$(grep -cE '^ +[0-9]+ +[0-9]+ +[0-9]+ +[0-9]+ +[0-9]+ ' <<<"$out")" -eq 8 ] || fail "expected 8 rank rows"

out=$("$MEGATRON" plan "${M[@]}" --world-size 8 --tensor-model-parallel-size 2 --pipeline-model-parallel-size 2 \
    --use-tp-pp-dp-mapping --bf16 --use-distributed-optimizer) || fail "plan --use-tp-pp-dp-mapping exited $?"
expect_line "$out" "  pp                  [0,2] [1,3] [4,6] [5,7]"
expect_line "$out" "  dp                  [0,4] [1,5] [2,6] [3,7]"
expect_row "$out" 0 "0 0 0 0 0 0-1 85184 0.97" # 6 + 12/2 = 12 bytes per parameter

# Errors: one line on stderr, nothing on stdout, exit code 2.
expect_error() {
    local want=$1
    shift
    local err rc
    err=$("$MEGATRON" plan "${M[@]}" "$@" 2>&1 >/dev/null)
    rc=$?
    [ $rc -eq 2 ] || fail "plan $*: exit code $rc, want 2"
    [ "$(wc -l <<<"$err")" -eq 1 ] || fail "plan $*: more than one line: $err"
    grep -qF -- "$want" <<<"$err" || fail "plan $*: got '$err', want '$want'"
}
expect_error "megatron: error: world size 6: not divisible by" --world-size 6 --tensor-model-parallel-size 2 \
    --pipeline-model-parallel-size 2
expect_error "megatron: error: world size 4: not divisible by expert TP x EP x PP = 1 x 8 x 1 = 8; use 8 ranks" \
    --world-size 4 --expert-model-parallel-size 8
expect_error "megatron: error: --use-tp-pp-dp-mapping: with PP > 1 the expert data parallel size" --world-size 8 \
    --pipeline-model-parallel-size 2 --expert-model-parallel-size 2 --use-tp-pp-dp-mapping
err=$("$MEGATRON" plan --num-layers 4 --hidden-size 64 --num-attention-heads 4 --seq-length 32 \
    --max-position-embeddings 32 --micro-batch-size 1 --world-size 2 2>&1 >/dev/null)
[ "$err" = "megatron: error: --vocab-size: missing (megatron plan needs the vocabulary size); add --vocab-size N, or --tokenizer-type with its files" ] ||
    fail "no vocabulary: got '$err'"
exit 0
