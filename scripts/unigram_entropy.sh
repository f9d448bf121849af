#!/usr/bin/env bash
# Unigram entropy, in nats (the unit of lm loss), of the training split of a Megatron dataset:
#   scripts/unigram_entropy.sh PREFIX [SPLIT]        SPLIT defaults to 949,50,1
# prints H = -sum_t p(t) ln p(t) over the token ids of the sequences GPTDataset puts in the train
# split, p(t) = count(t) / tokens. A model that has learnt only how often each token occurs scores
# about H (more on another split); a validation lm loss below H shows it uses the context.
set -euo pipefail

die() {
    echo "megatron: error: unigram_entropy: $*" >&2
    exit 2
}

{ [ $# -ge 1 ] && [ $# -le 2 ]; } || die "usage: scripts/unigram_entropy.sh PREFIX [SPLIT]; give the prefix of a .bin/.idx pair"
prefix=$1
split=${2:-949,50,1}
idx=$prefix.idx
bin=$prefix.bin
{ [ -r "$idx" ] && [ -r "$bin" ]; } || die "$prefix: no readable .idx/.bin pair; run megatron preprocess first"

# Megatron's .idx: magic "MMIDIDX\0\0", u64 version 1, u8 dtype code, u64 sequence count,
# u64 document count, i32 sizes[sequences], i64 pointers[sequences], i64 document_indices[...].
u64() { od -An -v -t u8 -j "$1" -N 8 "$idx" | tr -d ' '; }
[ "$(head -c 9 "$idx" | od -An -v -t x1 | tr -d ' ')" = 4d4d49444944580000 ] || die "$idx: not a Megatron .idx (bad magic)"
[ "$(u64 9)" = 1 ] || die "$idx: .idx version $(u64 9), expected 1"
code=$(od -An -v -t u1 -j 17 -N 1 "$idx" | tr -d ' ')
# DType codes of Megatron's indexed_dataset: 1 uint8, 2 int8, 3 int16, 4 int32, 5 int64, 8 uint16
case $code in
1) fmt=u1 width=1 ;;
2) fmt=d1 width=1 ;;
3) fmt=d2 width=2 ;;
4) fmt=d4 width=4 ;;
5) fmt=d8 width=8 ;;
8) fmt=u2 width=2 ;;
*) die "$idx: dtype code $code is not an integer token type" ;;
esac
nseq=$(u64 18)

# The train split is sequences [0, round(w_train / sum(w) * nseq)): the first bookend of Megatron's
# convert_split_vector_to_split_matrix, rounded as Python's round() does (half to even, as glibc's
# printf "%.0f"). Weights are the runs of [.0-9] in SPLIT, as parse_and_normalize_split reads them.
end=$(printf '%s\n' "$split" | grep -oE '[.0-9]+' |
    awk -v n="$nseq" '{ w[NR] = $1 + 0; s += $1 } END { if (!(s > 0)) exit 1; printf "%.0f\n", w[1] / s * n }') ||
    die "--split $split: the weights must have a positive sum; give e.g. 949,50,1"
[ "$end" -gt 0 ] || die "--split $split: the train split of $nseq sequences is empty"

# Its tokens are the first sum(sizes[0..end)) tokens of the .bin (sequences are stored in order).
tokens=$(od -An -v -t d4 -j 34 -N $((4 * end)) "$idx" | awk '{ for (i = 1; i <= NF; i++) s += $i } END { printf "%d\n", s }')
[ $((tokens * width)) -le "$(stat -c %s "$bin")" ] || die "$bin: shorter than its .idx says; re-run megatron preprocess"

head -c $((tokens * width)) "$bin" | od -An -v -t "$fmt" |
    awk -v prefix="$prefix" -v end="$end" -v nseq="$nseq" '
        { for (i = 1; i <= NF; i++) c[$i]++; n += NF }
        END {
            for (t in c) { p = c[t] / n; h -= p * log(p); k++ }
            printf "unigram_entropy: %s: train split = sequences 0..%d of %d, %d tokens, %d distinct ids\n", prefix, end - 1, nseq, n, k > "/dev/stderr"
            printf "%.4f\n", h
        }'
