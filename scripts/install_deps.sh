#!/usr/bin/env bash
# Installs what a fresh Debian/Ubuntu machine lacks to build and test megatron:
# cmocka (tests), Open MPI (multi-rank runs), Unicode data (tokenizer tables).
# The CUDA toolkit is optional and not installed here.
#   scripts/install_deps.sh          install what is missing (needs root or sudo)
#   scripts/install_deps.sh --check  exit 0 if nothing is missing, else list it and exit 1
#   scripts/install_deps.sh --fuzz   also clang and its libFuzzer runtime (make fuzz)
set -euo pipefail

missing=()
[ -f /usr/include/cmocka.h ] || missing+=(libcmocka-dev)
command -v mpicc >/dev/null 2>&1 || missing+=(libopenmpi-dev)
command -v mpirun >/dev/null 2>&1 || missing+=(openmpi-bin)
[ -f /usr/share/unicode/UnicodeData.txt ] || missing+=(unicode-data)
if [ "${1:-}" = "--fuzz" ]; then
    command -v clang >/dev/null 2>&1 || missing+=(clang)
    ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 || missing+=(libclang-rt-dev)
    shift
fi

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "${1:-}" = "--check" ]; then
    echo "missing: ${missing[*]}"
    exit 1
fi

sudo=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo="sudo"
    else
        echo "megatron: error: missing packages: ${missing[*]}: not root and no sudo; install them with your package manager" >&2
        exit 2
    fi
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
