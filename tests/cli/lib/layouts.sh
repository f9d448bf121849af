# Shared by the layout-invariance tests (tests/cli/parallel_layouts.sh, pipeline_layouts.sh):
# run the same flags under a layout and compare every logged number with the single-rank run.
# Sourced after `set -euo pipefail`; the caller sets MEGATRON, dir (a temporary directory) and
# MIN_NUMBERS (how many numbers the reference run must log at least).

# lm loss, grad norm, num zeros and params norm (with --log-num-zeros-in-grad, --log-params-norm)
# of every log line, and every validation loss, one number per line
numbers() {
    grep -E ' iteration .*lm loss| validation loss at ' "$1" | awk '
        / validation loss at / { for (i = 2; i <= NF; i++) if ($i == "value:") print $(i + 1); next }
        { for (i = 2; i <= NF; i++)
              if (($i == "loss:" && $(i - 1) == "lm") || $i == "norm:" || $i == "zeros:") print $(i + 1) }'
}

run() { # name ranks flags...
    local name=$1 np=$2
    shift 2
    if [ "$np" -eq 1 ]; then
        "$MEGATRON" pretrain "$@" >"$dir/$name.log" 2>&1
    else
        mpirun --oversubscribe --mca pml ob1 --mca btl self,vader -np "$np" "$MEGATRON" pretrain "$@" \
            >"$dir/$name.log" 2>&1
    fi || { echo "$name failed:"; tail -5 "$dir/$name.log"; exit 1; }
    numbers "$dir/$name.log" >"$dir/$name.txt"
}

compare() { # reference name: every number within a relative 1e-5 (a zero: exactly), and as many of them
    [ "$(wc -l <"$dir/$1.txt")" -ge "$MIN_NUMBERS" ] || { echo "$1: too few numbers"; cat "$dir/$1.log"; exit 1; }
    paste "$dir/$1.txt" "$dir/$2.txt" | awk -v n="$2" '
        { d = $1 - $2; if (d < 0) d = -d; r = $1 == 0 ? d : d / ($1 < 0 ? -$1 : $1);
          if (!($2 != "") || r >= 1e-5) { printf "%s: %s vs %s (relative %.2e)\n", n, $2, $1, r; bad = 1 } }
        END { exit bad }' || exit 1
    [ "$(wc -l <"$dir/$1.txt")" -eq "$(wc -l <"$dir/$2.txt")" ] || { echo "$2: line count differs"; exit 1; }
}
