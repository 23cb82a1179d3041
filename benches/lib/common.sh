# Sourced by the whole-command benchmark scripts (compare.sh, s3.sh, wal.sh, pg.sh): the
# helpers every one of them uses. The caller sets BENCH_TAG (the prefix of its messages).

log() { printf '\n[%s] %s\n' "$BENCH_TAG" "$*" >&2; }
warn() { printf '[%s] WARNING: %s\n' "$BENCH_TAG" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$BENCH_TAG" "$*" >&2; exit 1; }
has() { [[ " $1 " == *" $2 "* ]]; }        # has "list" word
q() { printf '%q' "$1"; }                  # quote a path for a hyperfine command string
