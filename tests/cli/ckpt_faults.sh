#!/usr/bin/env bash
# Faults around checkpoints, from the command line:
#  1. --load of a missing or empty directory: one warning line, training from scratch, exit 0; with
#     --exit-on-missing-checkpoint one error line, exit 2;
#     --pretrained-checkpoint then finetunes from another directory (one error line if it is empty);
#  2. a flipped byte in a checkpoint: one error line naming the tensor and the checksum, exit 2;
#  3. flags whose shapes do not fit: one error line naming the tensor and both shapes, exit 2;
#  4. SIGKILL at random moments of a run that saves every iteration: the latest checkpoint loads;
#  5. SIGTERM with --exit-signal-handler: the iteration finishes, a checkpoint is saved, exit 0,
#     and resuming from it prints what the uninterrupted run prints.
set -uo pipefail
MEGATRON=${MEGATRON:-./megatron}
tmp=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$tmp"' EXIT

fail() {
    echo "ckpt_faults: FAIL: $*" >&2
    exit 1
}

model=(--num-layers 2 --hidden-size 32 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 32
    --micro-batch-size 2 --global-batch-size 4 --lr 1e-3 --lr-decay-style cosine --lr-warmup-iters 4
    --hidden-dropout 0.1 --mock-data --tokenizer-type NullTokenizer --vocab-size 256 --eval-iters 0)

lines() {
    grep -E ' iteration .*consumed samples' "$1" | sed -E 's/^ \[[^]]*\]//; s/elapsed time per iteration \(ms\): [0-9.]+ \|//'
}

# 1. nothing to load
mkdir "$tmp/empty"
for dir in "$tmp/empty" "$tmp/missing"; do
    "$MEGATRON" pretrain "${model[@]}" --train-iters 6 --log-interval 1 --load "$dir" >"$tmp/out" 2>"$tmp/err" ||
        { cat "$tmp/err"; fail "--load $dir should start from scratch"; }
    [ "$(wc -l <"$tmp/err")" -eq 1 ] || { cat "$tmp/err"; fail "expected one warning line"; }
    grep -q "^megatron: warning: --load $dir: no checkpoint there" "$tmp/err" || { cat "$tmp/err"; fail "warning"; }
    grep -q ' iteration        2/' "$tmp/out" || fail "did not train after the warning"
    "$MEGATRON" pretrain "${model[@]}" --train-iters 6 --log-interval 1 --load "$dir" --exit-on-missing-checkpoint \
        --save "$tmp/unwritten" --save-interval 2 >"$tmp/out" 2>"$tmp/err"
    rc=$?
    [ $rc -eq 2 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] || { cat "$tmp/err"; fail "--exit-on-missing-checkpoint: exit $rc"; }
    grep -q "^megatron: error: --load $dir: no checkpoint there .* --exit-on-missing-checkpoint is set; " "$tmp/err" ||
        { cat "$tmp/err"; fail "--exit-on-missing-checkpoint: the error"; }
    ! grep -q 'consumed samples' "$tmp/out" && [ ! -e "$tmp/unwritten" ] ||
        fail "--exit-on-missing-checkpoint: trained or wrote a checkpoint"
done

# a checkpoint at iteration 4 to damage
"$MEGATRON" pretrain "${model[@]}" --train-iters 6 --log-interval 1 --save "$tmp/good" --save-interval 4 --exit-interval 4 \
    >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "save"; }

# --pretrained-checkpoint when --load holds nothing: Megatron's finetune from it (weights only,
# iteration 0); and nothing there either: one error line
"$MEGATRON" pretrain "${model[@]}" --train-iters 6 --log-interval 1 --load "$tmp/empty" --pretrained-checkpoint "$tmp/good" \
    >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "--pretrained-checkpoint"; }
grep -q "^Checkpoint file not found in load directory $tmp/empty attempting to finetune with checkpoint in $tmp/good\$" "$tmp/out" &&
    grep -q "successfully loaded checkpoint from $tmp/good .* at iteration 0\$" "$tmp/out" &&
    grep -q ' iteration        6/       6 ' "$tmp/out" || { cat "$tmp/out"; fail "--pretrained-checkpoint: finetune"; }
"$MEGATRON" pretrain "${model[@]}" --train-iters 6 --load "$tmp/empty" --pretrained-checkpoint "$tmp/missing" \
    >"$tmp/out" 2>"$tmp/err"
rc=$?
[ $rc -eq 2 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] &&
    grep -q "^megatron: error: --pretrained-checkpoint $tmp/missing: no checkpoint there" "$tmp/err" ||
    { cat "$tmp/err"; fail "--pretrained-checkpoint with nothing there: exit $rc"; }

# expect_refusal WHAT PATTERN FLAGS...: exit 2, exactly one line, matching PATTERN
expect_refusal() {
    local what=$1 pattern=$2
    shift 2
    "$MEGATRON" pretrain "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    [ $rc -eq 2 ] || { cat "$tmp/err"; fail "$what: exit code $rc, expected 2"; }
    [ "$(wc -l <"$tmp/err")" -eq 1 ] || { cat "$tmp/err"; fail "$what: expected exactly one line on stderr"; }
    grep -Eq "$pattern" "$tmp/err" || { cat "$tmp/err"; fail "$what: the error does not say $pattern"; }
    ! grep -q 'consumed samples' "$tmp/out" || fail "$what: training ran on a refused checkpoint"
}

# 2. a flipped byte at the end of the last tensor of model.safetensors
cp -r "$tmp/good" "$tmp/bad"
f="$tmp/bad/iter_0000004/model.safetensors"
size=$(stat -c %s "$f")
byte=$(od -An -tu1 -j $((size - 2)) -N1 "$f" | tr -d ' ')
printf "$(printf '\\%03o' $((byte ^ 1)))" | dd of="$f" bs=1 seek=$((size - 2)) conv=notrunc status=none
expect_refusal "checksum" "^megatron: error: --load $tmp/bad: checkpoint .*iter_0000004: tensor [a-z_.0-9]+ in model.safetensors does not match its checksum \(sum64:[0-9a-f]{16} stored, sum64:[0-9a-f]{16} computed\)" \
    "${model[@]}" --train-iters 8 --load "$tmp/bad"

# 3. a wider model than the checkpoint holds
expect_refusal "shape" "tensor embedding.word_embeddings.weight has shape \[256, 32\] in the checkpoint but \[256, 64\] with these flags" \
    "${model[@]}" --train-iters 8 --load "$tmp/good" --hidden-size 64

# 4. SIGKILL at random moments: every iteration saves, so most kills land in or near a save
RANDOM=4242
inside=0
for trial in 1 2 3 4 5; do
    before=$(cat "$tmp/kill/latest_checkpointed_iteration.txt" 2>/dev/null)
    "$MEGATRON" pretrain "${model[@]}" --train-iters 3000 --log-interval 1000 --save "$tmp/kill" --save-interval 1 \
        --load "$tmp/kill" >"$tmp/kill.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    # once this run has saved, it saves every iteration: the kill lands at a random moment of that
    for _ in $(seq 400); do
        [ "$(cat "$tmp/kill/latest_checkpointed_iteration.txt" 2>/dev/null)" != "$before" ] && break
        sleep 0.02
    done
    sleep "0.$((RANDOM % 3))$((RANDOM % 10))"
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    ls -a "$tmp/kill" | grep -q '^\.iter_.*\.tmp$' && inside=$((inside + 1))
    latest=$(cat "$tmp/kill/latest_checkpointed_iteration.txt")
    "$MEGATRON" pretrain "${model[@]}" --train-iters 3000 --skip-train --load "$tmp/kill" >"$tmp/out" 2>"$tmp/err" ||
        { cat "$tmp/err"; fail "trial $trial: the checkpoint of iteration $latest does not load after SIGKILL"; }
    grep -q "successfully loaded checkpoint from $tmp/kill .* at iteration $latest$" "$tmp/out" || fail "trial $trial: not loaded"
done

# 5. SIGTERM with --exit-signal-handler
"$MEGATRON" pretrain "${model[@]}" --train-iters 3000 --log-interval 1 --save "$tmp/term" --save-interval 100000 \
    --exit-signal-handler >"$tmp/term.log" 2>&1 &
pid=$!
pids+=("$pid")
for _ in $(seq 200); do grep -q ' iteration       20/' "$tmp/term.log" && break; sleep 0.05; done
kill -TERM "$pid"
wait "$pid"
rc=$?
[ $rc -eq 0 ] || { tail -5 "$tmp/term.log"; fail "SIGTERM: exit code $rc, expected 0"; }
grep -q '^exiting program after receiving SIGTERM.$' "$tmp/term.log" || { tail -5 "$tmp/term.log"; fail "no exit line"; }
k=$(cat "$tmp/term/latest_checkpointed_iteration.txt")
last=$(grep -c 'consumed samples' "$tmp/term.log")
[ "$k" -eq "$last" ] || fail "SIGTERM: saved iteration $k, but $last iterations were logged"
stop=$((k + 5))
"$MEGATRON" pretrain "${model[@]}" --train-iters 3000 --log-interval 1 --exit-interval $stop >"$tmp/full.log" 2>&1 ||
    fail "uninterrupted run"
"$MEGATRON" pretrain "${model[@]}" --train-iters 3000 --log-interval 1 --exit-interval $stop --load "$tmp/term" \
    >"$tmp/resumed.log" 2>&1 || fail "resumed run"
lines "$tmp/full.log" | tail -5 >"$tmp/a"
lines "$tmp/resumed.log" >"$tmp/b"
[ "$(wc -l <"$tmp/b")" -eq 5 ] || { cat "$tmp/resumed.log"; fail "the resumed run should log iterations $((k + 1))..$stop"; }
diff "$tmp/a" "$tmp/b" || fail "the run resumed after SIGTERM differs from the uninterrupted run"
echo "ckpt_faults: ok ($inside of 5 kills inside a save; SIGTERM at iteration $k)"
