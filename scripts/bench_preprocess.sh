#!/usr/bin/env bash
# Measures `megatron preprocess` throughput in MB/s of JSONL input (MB = 2^20 bytes, as
# preprocess_data.py reports it) with 1 and 2 worker threads, GPT-2 BPE with --append-eod, on the
# King James Bible (kjv.jsonl, 1189 chapters) repeated to ~17 MB so that start-up does not count.
#   scripts/bench_preprocess.sh [DATA_DIR [WORKERS...]]    defaults: data-cache, 1 2
# DATA_DIR is filled by scripts/fetch_data.sh (run here when files are missing).
# MEGATRON names the binary (default ./megatron); REPEAT the copies of kjv (default 4); RUNS the
# timed runs per worker count, the best one is reported (default 3).
set -euo pipefail

data=${1:-data-cache}
shift || true
workers=("$@")
[ ${#workers[@]} -gt 0 ] || workers=(1 2)
MEGATRON=${MEGATRON:-./megatron}
REPEAT=${REPEAT:-4}
RUNS=${RUNS:-3}

die() {
    echo "megatron: error: bench_preprocess: $*" >&2
    exit 2
}

[ -x "$MEGATRON" ] || die "$MEGATRON: not found or not executable; build it with make, or set MEGATRON"
if [ ! -f "$data/corpus/kjv.jsonl" ] || [ ! -f "$data/gpt2/encoder.json" ]; then
    "$(dirname "$0")/fetch_data.sh" "$data"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for _ in $(seq "$REPEAT"); do cat "$data/corpus/kjv.jsonl"; done >"$tmp/input.jsonl"
bytes=$(stat -c %s "$tmp/input.jsonl")
echo "input: kjv.jsonl x $REPEAT = $bytes bytes, $(wc -l <"$tmp/input.jsonl") documents; $(nproc) CPU cores"

now() { date +%s.%N; }

base=""
for w in "${workers[@]}"; do
    best=""
    for _ in $(seq "$RUNS"); do
        t0=$(now)
        "$MEGATRON" preprocess --input "$tmp/input.jsonl" --output-prefix "$tmp/out" \
            --tokenizer-type GPT2BPETokenizer --vocab-file "$data/gpt2/encoder.json" \
            --merge-file "$data/gpt2/vocab.bpe" --append-eod --workers "$w" --log-interval 100000000 \
            2>"$tmp/log" || { cat "$tmp/log" >&2; die "megatron preprocess failed"; }
        t=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { print b - a }')
        best=$(awk -v t="$t" -v b="${best:-1e30}" 'BEGIN { print (t < b) ? t : b }')
    done
    mbs=$(awk -v n="$bytes" -v t="$best" 'BEGIN { print n / t / 1048576 }')
    [ -n "$base" ] || base=$mbs
    printf 'workers %d: %6.1f MB/s  (best of %d: %.3f s)  speedup %.2fx\n' "$w" "$mbs" "$RUNS" "$best" \
        "$(awk -v a="$mbs" -v b="$base" 'BEGIN { print a / b }')"
done
