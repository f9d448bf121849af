#!/usr/bin/env bash
# Trains a small GPT on a real corpus on the CPU, from nothing:
#   scripts/demo_data.sh [--corpus jargon|kjv] [DIR] [pretrain flags ...]
# 1. fetches GPT-2's tokenizer files and the corpora into DIR (default: data-cache/ in the
#    repository, which git ignores) with scripts/fetch_data.sh when they are missing;
# 2. preprocesses the corpus (the Jargon File by default, the King James Bible with --corpus kjv)
#    into DIR/<corpus>_text_document.{bin,idx} with `megatron preprocess`;
# 3. prints the unigram entropy of the training split's tokens (--split 949,50,1 unless the extra
#    flags give another), computed by scripts/unigram_entropy.sh;
# 4. trains a 2-layer GPT with --data-path, prints the final validation loss against that entropy,
#    and exits 1 when the loss is not below it (the model would have learnt no more than token
#    frequencies). Extra flags go to `megatron pretrain` after ours: the last value of a flag wins.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
megatron=${MEGATRON:-$root/megatron}

die() {
    echo "megatron: error: demo_data: $*" >&2
    exit 2
}

corpus=jargon
if [ "${1:-}" = --corpus ]; then
    [ $# -ge 2 ] || die "--corpus needs a value; give jargon or kjv"
    corpus=$2
    shift 2
fi
case $corpus in
jargon | kjv) ;;
*) die "--corpus $corpus: unknown corpus; give jargon or kjv" ;;
esac
dir=$root/data-cache
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    dir=$1
    shift
fi
[ -x "$megatron" ] || die "$megatron not found; build it with make megatron"

# 1. inputs: fetch_data.sh fetches and checks every file, so run it only when one is missing
if [ ! -f "$dir/gpt2/encoder.json" ] || [ ! -f "$dir/gpt2/vocab.bpe" ] || [ ! -f "$dir/corpus/$corpus.jsonl" ]; then
    "$root/scripts/fetch_data.sh" "$dir"
fi

# 2. preprocess (under a second for either corpus)
prefix=$dir/${corpus}_text_document
"$megatron" preprocess --input "$dir/corpus/$corpus.jsonl" --output-prefix "$dir/$corpus" --json-keys text \
    --tokenizer-type GPT2BPETokenizer --vocab-file "$dir/gpt2/encoder.json" --merge-file "$dir/gpt2/vocab.bpe" \
    --append-eod --workers 2

# 3. the bar to clear: the entropy of the tokens the model trains on
split=949,50,1
prev=
for a in "$@"; do # a --split among the extra flags (the last one wins) moves the bar with it
    [ "$prev" = --split ] && split=$a
    case $a in --split=*) split=${a#--split=} ;; esac
    prev=$a
done
entropy=$("$root/scripts/unigram_entropy.sh" "$prefix" "$split")
echo "demo_data: unigram entropy of the $corpus training split: $entropy nats"

# 4. train. The output layer (50,304 x hidden) and its softmax are nearly all the cost on the
# CPU, so the model stays narrow; one sequence per step learns the most per token read.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
start=$(date +%s)
"$megatron" pretrain --model gpt --num-layers 2 --hidden-size 32 --num-attention-heads 4 \
    --seq-length 128 --max-position-embeddings 128 --micro-batch-size 1 --global-batch-size 1 \
    --train-iters 1500 --lr 1e-2 --min-lr 1e-3 --lr-decay-style cosine --lr-warmup-iters 150 \
    --attention-dropout 0 --hidden-dropout 0 \
    --data-path "$prefix" --split "$split" --data-cache-path "$dir/index-cache" \
    --tokenizer-type GPT2BPETokenizer --vocab-file "$dir/gpt2/encoder.json" --merge-file "$dir/gpt2/vocab.bpe" \
    --log-interval 100 --eval-interval 500 --eval-iters 128 "$@" | tee "$log"
elapsed=$(($(date +%s) - start))

# Megatron's last validation line: "validation loss at iteration N on validation set | lm loss value: X"
line=$(grep ' on validation set | lm loss value: ' "$log" | tail -1)
[ -n "$line" ] || die "no final validation loss in the training log; see the output above"
loss=$(printf '%s\n' "$line" | sed -E 's/.*lm loss value: ([^ ]+) .*/\1/')
iters=$(printf '%s\n' "$line" | sed -E 's/.*at iteration ([0-9]+) .*/\1/')
awk -v l="$loss" -v h="$entropy" -v it="$iters" -v s="$elapsed" -v c="$corpus" 'BEGIN {
    printf "demo_data: %s: validation loss %.3f after %d iterations, unigram entropy %.3f nats: %.3f %s, %d min %d s\n",
        c, l, it, h, (l < h ? h - l : l - h), (l < h ? "below" : "ABOVE, train longer"), s / 60, s % 60
    exit !(l < h)
}'
