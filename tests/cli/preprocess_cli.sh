#!/usr/bin/env bash
# `megatron preprocess` from the command line: jargon.jsonl gives Megatron's .bin/.idx byte for
# byte; a bad line is one error line naming it, exit code 2, and no output; --on-invalid skip
# warns and goes on; progress lines appear every --log-interval documents.
# Env: MEGATRON (binary), FIXTURES (default ../shared/fixtures), MEGATRON_GPT2_DIR (default
# ../shared/data/gpt2), MEGATRON_CORPUS_DIR (default ../shared/data/corpus).
set -uo pipefail

MEGATRON=${MEGATRON:-./megatron}
FIXTURES=${FIXTURES:-../shared/fixtures}
GPT2=${MEGATRON_GPT2_DIR:-../shared/data/gpt2}
CORPUS=${MEGATRON_CORPUS_DIR:-../shared/data/corpus}

fail() {
    echo "preprocess_cli: FAIL: $*" >&2
    exit 1
}

for f in "$MEGATRON" "$GPT2/encoder.json" "$GPT2/vocab.bpe" "$CORPUS/jargon.jsonl" \
    "$FIXTURES/megatron_data/jargon_text_document.bin" "$FIXTURES/megatron_data/jargon_text_document.idx"; do
    [ -e "$f" ] || fail "$f is missing (see the Env line at the top of this script)"
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

gpt2_flags=(--tokenizer-type GPT2BPETokenizer --vocab-file "$GPT2/encoder.json" --merge-file "$GPT2/vocab.bpe"
    --append-eod)

# 1. parity with Megatron, 2 workers, progress lines on stderr
"$MEGATRON" preprocess --input "$CORPUS/jargon.jsonl" --output-prefix "$tmp/jargon" "${gpt2_flags[@]}" \
    --workers 2 --log-interval 300 2>"$tmp/log" || { cat "$tmp/log"; fail "preprocess of jargon.jsonl failed"; }
for ext in bin idx; do
    cmp "$tmp/jargon_text_document.$ext" "$FIXTURES/megatron_data/jargon_text_document.$ext" ||
        fail "jargon_text_document.$ext differs from Megatron's"
done
grep -q '^Processed [0-9]* documents (.* docs/s, .* MB/s), ETA ' "$tmp/log" || { cat "$tmp/log"; fail "no progress line"; }

# 2. a malformed line stops the run: one error line with the line number, exit 2, nothing left
printf '{"text": "fine"}\n{"text": "broken\n{"text": "fine"}\n' >"$tmp/bad.jsonl"
"$MEGATRON" preprocess --input "$tmp/bad.jsonl" --output-prefix "$tmp/bad" "${gpt2_flags[@]}" --workers 2 \
    >"$tmp/out" 2>"$tmp/err"
rc=$?
[ $rc -eq 2 ] || fail "exit code $rc for a malformed line, expected 2"
[ "$(wc -l <"$tmp/err")" -eq 1 ] || { cat "$tmp/err"; fail "expected exactly one line on stderr"; }
grep -q "^megatron: error: $tmp/bad.jsonl line 2: invalid JSON" "$tmp/err" || { cat "$tmp/err"; fail "error line"; }
! ls "$tmp" | grep -q '^bad_' || fail "files left behind: $(ls "$tmp" | grep '^bad_')"

# 3. --on-invalid skip: a warning with the count, exit 0, the good lines written
"$MEGATRON" preprocess --input "$tmp/bad.jsonl" --output-prefix "$tmp/skip" "${gpt2_flags[@]}" --workers 2 \
    --on-invalid skip 2>"$tmp/err" || { cat "$tmp/err"; fail "skip mode failed"; }
grep -q '^megatron: warning: skipped 1 invalid line' "$tmp/err" || { cat "$tmp/err"; fail "no skip warning"; }
[ "$(stat -c %s "$tmp/skip_text_document.bin")" -eq 8 ] || fail "skip mode: expected 2 documents of 2 tokens (fine, EOD)"

# 4. a missing input file
"$MEGATRON" preprocess --input "$tmp/nope.jsonl" --output-prefix "$tmp/nope" "${gpt2_flags[@]}" --workers 1 \
    2>"$tmp/err"
rc=$?
[ $rc -eq 2 ] || fail "exit code $rc for a missing input, expected 2"
grep -q "^megatron: error: --input $tmp/nope.jsonl: no such file" "$tmp/err" || { cat "$tmp/err"; fail "missing input"; }
echo "preprocess_cli: ok"
