#!/usr/bin/env bash
# --tensorboard-dir: the event file a run writes holds Megatron's training_log scalars (each
# against the iteration and against the consumed samples) with the values its log lines print,
# every --tensorboard-log-interval iterations, and the validation losses (and perplexities with
# --log-validation-ppl-to-tensorboard), and with --log-timers-to-tensorboard the iteration time
# and throughput of each log line; under pipeline parallelism only the last rank writes (with
# --log-world-size-to-tensorboard the world size, with --no-log-loss-scale-to-tensorboard no loss
# scale); a directory that cannot be made is refused in one line before training. The file is read
# back by build/tests/test_tensorboard --dump, which checks every record's CRCs.
set -uo pipefail
MEGATRON=${MEGATRON:-./megatron}
BUILD=${BUILD:-build}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() {
    echo "tensorboard: FAIL: $*" >&2
    exit 1
}
dump() { "$BUILD/tests/test_tensorboard" --dump "$(ls "$1"/events.out.tfevents.*)"; }

flags=(--num-layers 2 --hidden-size 32 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 32
    --micro-batch-size 2 --global-batch-size 4 --train-iters 10 --lr 1e-3 --lr-decay-style cosine
    --lr-warmup-iters 2 --mock-data --tokenizer-type NullTokenizer --vocab-size 256 --log-interval 1
    --eval-interval 5 --eval-iters 1 --log-params-norm --log-num-zeros-in-grad --device cpu)

"$MEGATRON" pretrain "${flags[@]}" --tensorboard-dir "$tmp/tb" --log-validation-ppl-to-tensorboard \
    >"$tmp/log" 2>&1 || { cat "$tmp/log"; fail "the run"; }
[ "$(ls "$tmp/tb" | grep -c '^events\.out\.tfevents\.[0-9]\{10\}\..*\.[0-9]*\.0$')" -eq 1 ] || { ls "$tmp/tb"; fail "one event file"; }
dump "$tmp/tb" >"$tmp/scalars" || fail "the event file does not read back"
for tag in learning-rate batch-size "lm loss" loss-scale grad-norm num-zeros params-norm; do
    [ "$(awk -F'\t' -v t="$tag" '$2 == t' "$tmp/scalars" | wc -l)" -eq 10 ] || fail "$tag: not 10 scalars"
    [ "$(awk -F'\t' -v t="$tag vs samples" '$2 == t { print $1 }' "$tmp/scalars" | tr '\n' ' ')" = \
        "4 8 12 16 20 24 28 32 36 40 " ] || fail "$tag vs samples: not at the consumed samples"
done
# each logged value, as the log line prints it
field() { grep ' iteration ' "$tmp/log" | sed -n "s/.* $1: \([^ ]*\) .*/\1/p"; }
check() { # tag, log field, absolute slack of the printed digits
    paste <(awk -F'\t' -v t="$1" '$2 == t { print $3 }' "$tmp/scalars") <(field "$2") | awk -v t="$1" -v s="$3" '
        { d = $1 - $2; if (d < 0) d = -d; m = $2 < 0 ? -$2 : $2
          if (d > s + 2e-7 * m) { printf "%s: %s in the event file, %s in the log\n", t, $1, $2; bad = 1 }; n++ }
        END { exit bad || n != 10 }' || fail "$1 differs from the log"
}
check "lm loss" "lm loss" 5e-7
check learning-rate "learning rate" 5e-13
check grad-norm "grad norm" 5e-4
check params-norm "params norm" 5e-4
check num-zeros "num zeros" 0
check loss-scale "loss scale" 0.05
awk -F'\t' '$2 == "batch-size" && $3 != 4 { exit 1 }' "$tmp/scalars" || fail "batch-size"
# validation at 5 and 10, and once more after training (Megatron's too), with perplexities
[ "$(awk -F'\t' '$2 == "lm loss validation" { print $1 }' "$tmp/scalars" | tr '\n' ' ')" = "5 10 10 " ] || fail "validation steps"
paste <(awk -F'\t' '$2 == "lm loss validation" { print $3 }' "$tmp/scalars") \
    <(grep -v 'on test set' "$tmp/log" | sed -n 's/.*lm loss value: \([^ ]*\) .*/\1/p') |
    awk '{ d = $1 - $2; if (d < 0) d = -d; if ($1 == "" || d > 1e-6 * $2) exit 1 }' ||
    fail "validation losses differ from the log"
[ "$(awk -F'\t' '$2 == "lm loss validation ppl vs samples"' "$tmp/scalars" | wc -l)" -eq 3 ] || fail "validation ppl"

# --log-timers-to-tensorboard: iteration-time (seconds) and throughput at each log line, as printed
"$MEGATRON" pretrain "${flags[@]}" --log-interval 5 --tensorboard-dir "$tmp/tb5" --log-timers-to-tensorboard --log-throughput \
    >"$tmp/log5" 2>&1 || { cat "$tmp/log5"; fail "the run with --log-timers-to-tensorboard"; }
dump "$tmp/tb5" >"$tmp/scalars5"
paste <(awk -F'\t' '$2 == "iteration-time" { print $1, $3 * 1000 }' "$tmp/scalars5") \
    <(sed -n 's/.* iteration *\([0-9]*\)\/.*per iteration (ms): \([^ ]*\) .*/\1 \2/p' "$tmp/log5") |
    awk '{ d = $2 - $4; if (d < 0) d = -d; if ($1 != $3 || d > 0.05 + 1e-6 * $4) exit 1; n++ } END { exit n != 2 }' ||
    fail "iteration-time differs from the log"
paste <(awk -F'\t' '$2 == "throughput" { print $3 }' "$tmp/scalars5") \
    <(sed -n 's/.*(TFLOP\/s\/GPU): \([^ ]*\) .*/\1/p' "$tmp/log5") |
    awk '{ d = $1 - $2; if (d < 0) d = -d; if (d > 0.05 + 1e-6 * $2) exit 1; n++ } END { exit n != 2 }' ||
    fail "throughput differs from the log"

# every second iteration
"$MEGATRON" pretrain "${flags[@]}" --tensorboard-dir "$tmp/tb2" --tensorboard-log-interval 2 >"$tmp/log2" 2>&1 ||
    fail "the run with --tensorboard-log-interval 2"
[ "$(dump "$tmp/tb2" | awk -F'\t' '$2 == "lm loss" { print $1 }' | tr '\n' ' ')" = "2 4 6 8 10 " ] || fail "interval 2"

# two pipeline stages: one file, from the last rank, with the losses; the world size and no loss
# scale when asked
mpirun --oversubscribe --mca pml ob1 --mca btl self,vader -np 2 "$MEGATRON" pretrain "${flags[@]}" \
    --pipeline-model-parallel-size 2 --tensorboard-dir "$tmp/tb3" --log-world-size-to-tensorboard \
    --no-log-loss-scale-to-tensorboard >"$tmp/log3" 2>&1 || { cat "$tmp/log3"; fail "PP=2"; }
dump "$tmp/tb3" >"$tmp/scalars3"
[ "$(ls "$tmp/tb3" | wc -l)" -eq 1 ] && [ "$(awk -F'\t' '$2 == "lm loss"' "$tmp/scalars3" | wc -l)" -eq 10 ] ||
    fail "PP=2: one file with 10 losses"
[ "$(awk -F'\t' '$2 == "world-size" && $3 == 2' "$tmp/scalars3" | wc -l)" -eq 10 ] &&
    ! grep -q 'loss-scale' "$tmp/scalars3" || fail "PP=2: world-size, or a loss-scale that was switched off"

"$MEGATRON" pretrain "${flags[@]}" --tensorboard-dir /proc/no/such >"$tmp/out4" 2>"$tmp/err4"
rc=$?
[ $rc -eq 2 ] && [ "$(wc -l <"$tmp/err4")" -eq 1 ] && ! grep -q 'consumed samples' "$tmp/out4" ||
    { cat "$tmp/err4"; fail "an unwritable directory: exit $rc"; }
grep -q '^megatron: error: --tensorboard-dir /proc/no/such: cannot create' "$tmp/err4" || fail "the message"
echo "tensorboard: ok"
