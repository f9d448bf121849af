#!/usr/bin/env bash
# --save-retain-interval (Megatron's): after each save, the checkpoint the tracker named before is
# deleted unless its iteration is a multiple of the interval; the latest always stays. Saving
# every 2 iterations with 4 retained leaves iter 4, 8 and 10 of 2..10; a resumed run skips a
# previous checkpoint that is a symbolic link, as Megatron does; an interval that is not a
# multiple of --save-interval is refused in one line.
set -uo pipefail
MEGATRON=${MEGATRON:-./megatron}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() {
    echo "ckpt_retain: FAIL: $*" >&2
    exit 1
}

model=(--num-layers 2 --hidden-size 32 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 32
    --micro-batch-size 2 --global-batch-size 4 --lr 1e-3 --lr-decay-style constant --mock-data
    --tokenizer-type NullTokenizer --vocab-size 256 --eval-iters 0 --log-interval 1 --device cpu)

d=$tmp/ckpt
"$MEGATRON" pretrain "${model[@]}" --train-iters 10 --save "$d" --save-interval 2 --save-retain-interval 4 \
    >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "the run"; }
[ "$(cd "$d" && ls -d iter_* | tr '\n' ' ')" = "iter_0000004 iter_0000008 iter_0000010 " ] ||
    { ls "$d"; fail "expected iter_0000004, iter_0000008 and iter_0000010 to remain"; }
[ "$(cat "$d/latest_checkpointed_iteration.txt")" = 10 ] || fail "the tracker"
for it in 2 6; do
    grep -q "^  successfully deleted checkpoint from iteration *$it at $d\$" "$tmp/out" || { cat "$tmp/out"; fail "no deletion line for $it"; }
done
[ "$(grep -c 'successfully deleted checkpoint' "$tmp/out")" -eq 2 ] || fail "deleted more than iterations 2 and 6"

# the latest checkpoint is a symbolic link: a resumed run saving at 12 keeps it
mv "$d/iter_0000010" "$tmp/iter_0000010"
ln -s "$tmp/iter_0000010" "$d/iter_0000010"
"$MEGATRON" pretrain "${model[@]}" --train-iters 12 --load "$d" --save "$d" --save-interval 2 --save-retain-interval 4 \
    >"$tmp/out2" 2>&1 || { cat "$tmp/out2"; fail "the resumed run"; }
grep -q 'successfully loaded checkpoint from .* at iteration 10' "$tmp/out2" || { cat "$tmp/out2"; fail "resume"; }
grep -q "^  skipping deleting checkpoint from iteration *10 at $d since it is a symbolic link\$" "$tmp/out2" ||
    { cat "$tmp/out2"; fail "no skip line for the link"; }
[ -L "$d/iter_0000010" ] && [ -d "$tmp/iter_0000010" ] && [ -d "$d/iter_0000012" ] || fail "the link or iter 12"

"$MEGATRON" pretrain "${model[@]}" --train-iters 4 --save "$tmp/x" --save-interval 2 --save-retain-interval 3 \
    >"$tmp/out3" 2>"$tmp/err3"
rc=$?
[ $rc -eq 2 ] && [ "$(wc -l <"$tmp/err3")" -eq 1 ] && [ ! -e "$tmp/x" ] || { cat "$tmp/err3"; fail "exit $rc for 3 against 2"; }
grep -q '^megatron: error: --save-retain-interval 3: not a multiple of --save-interval 2' "$tmp/err3" || fail "the message"
echo "ckpt_retain: ok"
