#!/usr/bin/env bash
# Checkpoint speed against the disk it lands on (issue 4 part 6): builds scripts/bench/ckpt_bench.c,
# which saves a ~1B-parameter GPT in bf16 with its Adam state (14.2 GB: bf16 weights, fp32 main
# params, two fp32 moments) through ckpt_save and reads it back cold through ckpt_load (every
# checksum verified, every element compared), then runs `dd` of the same size in the same
# directory (write with conv=fsync, then read cold) and prints the rates and ratios. Each run
# pairs a checkpoint round with dd right after it, since a shared disk's speed drifts.
#
#   scripts/bench/ckpt_bench.sh              # or: make bench-ckpt
#   CKPT_BENCH_RUNS=3 CKPT_BENCH_DIR=/mnt/x scripts/bench/ckpt_bench.sh
#   CKPT_BENCH_ARGS="--num-layers 2"        # a smaller model (quick check of the script)
#
# Needs about 16 GB of memory and 16 GB free on the disk; removes everything it wrote. The page
# cache is dropped before every read when the kernel allows it (root); otherwise the reads may be
# served partly from memory and the script says so.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
RUNS=${CKPT_BENCH_RUNS:-2}
ARGS=${CKPT_BENCH_ARGS:-}
BIN=$BUILD/scripts/bench/ckpt_bench
NEED_GB=16

make --no-print-directory BUILD="$BUILD" "$BIN" >/dev/null

free_gb() { df -P -B1G "$1" | awk 'NR == 2 { print $4 }'; }
if [ -n "${CKPT_BENCH_DIR:-}" ]; then
    base=$CKPT_BENCH_DIR
else
    base=
    for d in /tmp "$BUILD"; do
        if [ -d "$d" ] && [ "$(free_gb "$d")" -ge "$NEED_GB" ]; then base=$d; break; fi
    done
    [ -n "$base" ] || { echo "ckpt_bench: no directory with $NEED_GB GB free (tried /tmp and $BUILD); set CKPT_BENCH_DIR" >&2; exit 2; }
fi
[ "$(free_gb "$base")" -ge "$NEED_GB" ] || { echo "ckpt_bench: $base has less than $NEED_GB GB free" >&2; exit 2; }
work=$(mktemp -d "$base/ckpt_bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

drop_caches() { sync; { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; }
if drop_caches; then cold=yes; else cold=no; fi

echo "== checkpoint speed: $(nproc) cores, $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)," \
    "directory $work on $(df -P "$base" | awk 'NR == 2 { print $1 " (" $6 ")" }'), $(free_gb "$base") GB free"
if [ "$cold" = no ]; then
    echo "note: /proc/sys/vm/drop_caches cannot be written here (not root?): reads may come partly from the page" \
        "cache, so both load and dd read rates are upper bounds and their ratio is less meaningful"
fi

# dd's rate in GB/s from its last line ("N bytes (...) copied, S s, R MB/s").
dd_rate() { awk '/copied/ { for (i = 1; i <= NF; i++) if ($i == "copied,") print $1 / $(i + 1) / 1e9 }'; }

rows=()
for run in $(seq 1 "$RUNS"); do
    if ! out=$("$BIN" "$work" $ARGS); then
        echo "$out"
        echo "ckpt_bench: run $run failed (see above; a process killed for memory shows in dmesg)" >&2
        exit 1
    fi
    echo "$out" | sed "s/^/  [run $run] /"
    bytes=$(echo "$out" | awk '$1 == "checkpoint_bytes" { print $2 }')
    save=$(echo "$out" | awk '$1 == "save_gbps" { print $2 }')
    load=$(echo "$out" | awk '$1 == "load_gbps" { print $2 }')
    [[ "$out" == *"read_back identical"* ]] || { echo "ckpt_bench: the load did not bring every element back" >&2; exit 1; }
    count=$(((bytes + 16777215) / 16777216))
    ddw=$(dd if=/dev/zero of="$work/dd.bin" bs=16M count="$count" conv=fsync 2>&1 | dd_rate)
    drop_caches || true
    ddr=$(dd if="$work/dd.bin" of=/dev/null bs=16M 2>&1 | dd_rate)
    rm -f "$work/dd.bin"
    ddwd=$(dd if=/dev/zero of="$work/dd.bin" bs=16M count="$count" oflag=direct conv=fsync 2>&1 | dd_rate)
    drop_caches || true
    ddrd=$(dd if="$work/dd.bin" of=/dev/null bs=16M iflag=direct 2>&1 | dd_rate)
    rm -f "$work/dd.bin"
    rows+=("$run $save $ddw $load $ddr $ddwd $ddrd")
done

echo
echo "== $(awk -v b="${bytes:-0}" 'BEGIN { printf "%.2f GB", b / 1e9 }') per checkpoint; rates in GB/s; ratio = ours / dd"
printf '%-4s %8s %8s %6s   %8s %8s %6s   %s\n' run save dd-write ratio load dd-read ratio "(dd O_DIRECT write/read)"
for row in "${rows[@]}"; do
    echo "$row" | awk '{ printf "%-4s %8.2f %8.2f %6.2f   %8.2f %8.2f %6.2f   (%.2f / %.2f)\n", $1, $2, $3, $2 / $3, $4, $5, $4 / $5, $6, $7 }'
done
printf '%s\n' "${rows[@]}" | awk '
    { s = $2 / $3; l = $4 / $5
      if (NR == 1 || s < smin) smin = s; if (NR == 1 || s > smax) smax = s
      if (NR == 1 || l < lmin) lmin = l; if (NR == 1 || l > lmax) lmax = l }
    END { printf "save/dd-write %.2f-%.2f, load/dd-read %.2f-%.2f over %d runs (goal: at least 0.5)\n", smin, smax, lmin, lmax, NR }'
echo "page cache dropped before reads: $cold"
