#!/usr/bin/env bash
# A demo pretraining run on the CPU that needs no data: a 2-layer GPT on Megatron's mock dataset.
# Pass extra flags to override any of these (the last value of a flag wins, as in Megatron).
set -euo pipefail
cd "$(dirname "$0")/.."
exec ./megatron pretrain --model gpt --num-layers 2 --hidden-size 64 --num-attention-heads 4 \
    --seq-length 64 --max-position-embeddings 64 --micro-batch-size 4 --global-batch-size 8 \
    --train-iters 60 --lr 3e-3 --min-lr 3e-4 --lr-decay-style cosine --lr-warmup-iters 5 \
    --mock-data --tokenizer-type NullTokenizer --vocab-size 512 \
    --log-interval 10 --eval-interval 30 --eval-iters 2 "$@"
