#!/usr/bin/env bash
# `megatron samples` reproduces the samples Megatron's GPTDataset gives for the jargon fixture
# (fixtures/samples: seq 128, seed 1234, split 949,50,1, 3000/200/20 requested samples), for all
# three splits: each dumped row is the sample's 128 tokens followed by its last label.
set -euo pipefail
MEGATRON=${MEGATRON:-./megatron}
FIXTURES=${FIXTURES:-../shared/fixtures}
GPT2=${MEGATRON_GPT2_DIR:-$FIXTURES/../data/gpt2}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

rows() { od -An -v -t d4 -w"$2" "$1" | tr -s ' ' | sed 's/^ //'; }
for split in train valid test; do
    n=200
    [ $split = test ] && n=20
    "$MEGATRON" samples --data-path "$FIXTURES/megatron_data/jargon_text_document" --seq-length 128 \
        --seed 1234 --split 949,50,1 --train-iters 150 --global-batch-size 20 --micro-batch-size 4 \
        --eval-iters 1 --eval-interval 16 --tokenizer-type GPT2BPETokenizer \
        --vocab-file "$GPT2/encoder.json" --merge-file "$GPT2/vocab.bpe" --data-cache-path "$dir/cache" \
        --samples-split $split --samples-count $n --samples-output "$dir/$split.i32"
    rows "$FIXTURES/samples/samples_jargon_s128_${split}_tokens.i32" 512 >"$dir/tokens"
    rows "$FIXTURES/samples/samples_jargon_s128_${split}_labels.i32" 512 | awk '{print $NF}' >"$dir/last"
    paste -d' ' "$dir/tokens" "$dir/last" >"$dir/want"
    rows "$dir/$split.i32" 516 >"$dir/got"
    [ "$(wc -l <"$dir/want")" -eq $n ] || { echo "fixture $split has $(wc -l <"$dir/want") rows, expected $n"; exit 1; }
    cmp -s "$dir/want" "$dir/got" || { echo "$split samples differ from Megatron's"; diff "$dir/want" "$dir/got" | head -3; exit 1; }
done
# without --samples-output the samples are printed as text
"$MEGATRON" samples --data-path "$FIXTURES/megatron_data/jargon_text_document" --seq-length 128 --split 949,50,1 \
    --train-iters 10 --global-batch-size 4 --micro-batch-size 4 --tokenizer-type GPT2BPETokenizer \
    --vocab-file "$GPT2/encoder.json" --merge-file "$GPT2/vocab.bpe" --data-cache-path "$dir/cache" \
    --samples-count 2 >"$dir/text"
grep -q '^=== sample 1 (129 tokens) ===$' "$dir/text" || { echo "no decoded text"; head -3 "$dir/text"; exit 1; }
