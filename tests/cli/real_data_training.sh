#!/usr/bin/env bash
# Training on real data: a small GPT trained with --data-path on the jargon fixture ends with a
# validation loss below the unigram entropy of its training split (it has learnt more than token
# frequencies), and the same flags data-parallel over 2 ranks, each reading its half of every
# global batch, follow the same run: same first losses, same final loss up to reduction order.
set -euo pipefail
MEGATRON=${MEGATRON:-./megatron}
FIXTURES=${FIXTURES:-../shared/fixtures}
GPT2=${MEGATRON_GPT2_DIR:-$FIXTURES/../data/gpt2}
data=$FIXTURES/megatron_data/jargon_text_document
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

# --split 85,15,0: the validation split is the last 15% of the documents (the entries from "stu"
# on and the appendices). With 949,50,1 it would be almost only the appendices and bibliography,
# where a unigram model of the training split scores 6.81 nats against its entropy of 6.40, and
# beating the entropy there takes several times the 51,200 tokens this test can afford; here it
# is 6.52 against 6.41.
split=85,15,0
entropy=$("$here/../../scripts/unigram_entropy.sh" "$data" "$split")

# 400 iterations of 2 x 64 tokens; hidden 8, since the 50,304-way output layer and its softmax
# are nearly all the cost; no test split, one validation pass of 8,192 tokens at the end.
flags=(--model gpt --num-layers 2 --hidden-size 8 --num-attention-heads 2 --seq-length 64
    --max-position-embeddings 64 --micro-batch-size 1 --global-batch-size 2 --train-iters 400
    --lr 1e-2 --min-lr 1e-3 --lr-decay-style cosine --lr-warmup-iters 40
    --attention-dropout 0 --hidden-dropout 0
    --data-path "$data" --split "$split" --data-cache-path "$dir/cache"
    --tokenizer-type GPT2BPETokenizer --vocab-file "$GPT2/encoder.json" --merge-file "$GPT2/vocab.bpe"
    --log-interval 8 --eval-interval 1000 --eval-iters 64)

start=$(date +%s)
"$MEGATRON" pretrain "${flags[@]}" >"$dir/single.log" 2>&1 ||
    { echo "single-process run failed:"; tail -5 "$dir/single.log"; exit 1; }
mid=$(date +%s)
OMP_NUM_THREADS=1 mpirun --oversubscribe --mca pml ob1 --mca btl self,vader -np 2 \
    "$MEGATRON" pretrain "${flags[@]}" >"$dir/dp2.log" 2>&1 ||
    { echo "data-parallel run failed:"; tail -5 "$dir/dp2.log"; exit 1; }
end=$(date +%s)

final() { sed -n 's/.* on validation set | lm loss value: \([^ ]*\) .*/\1/p' "$1"; }
first() { grep -m1 ' iteration  *8/' "$1" | sed -E 's/.*(lm loss: [^ ]+).*(grad norm: [^ ]+).*/\1 \2/'; }
loss=$(final "$dir/single.log")
[ -n "$loss" ] || { echo "no final validation loss"; tail -5 "$dir/single.log"; exit 1; }
grep -q 'data_parallel_size \.* 2$' "$dir/dp2.log" || { echo "the mpirun job did not run with 2 data-parallel ranks"; exit 1; }

awk -v l="$loss" -v h="$entropy" 'BEGIN {
    if (!(l < h)) { printf "validation loss %s is not below the unigram entropy %s nats\n", l, h; exit 1 } }'

# Every global batch is the same samples: the first logged loss and grad norm (iterations 1-8)
# agree to every printed digit.
one=$(first "$dir/single.log")
two=$(first "$dir/dp2.log")
if [ -z "$one" ] || [ "$one" != "$two" ]; then
    echo "iterations 1-8: '$one' with 1 process, '$two' with 2 ranks"
    exit 1
fi
# Later on, accumulating two micro batches' gradients in one buffer and all-reducing them from two
# ranks add the same numbers in a different order (ARCHITECTURE.md, principle 5), and 400 steps
# turn those last-bit differences into about 1e-4 of the final loss (another --seed: 2e-2).
loss2=$(final "$dir/dp2.log")
awk -v a="$loss" -v b="$loss2" 'BEGIN { d = a - b; if (d < 0) d = -d
    if (!(b != "" && d <= 1e-3 * a)) { printf "validation loss %s with 2 ranks, %s with 1\n", b, a; exit 1 } }'

echo "real data: validation loss $loss (2 ranks: $loss2) below the unigram entropy $entropy nats;" \
    "$((mid - start)) s + $((end - mid)) s"
