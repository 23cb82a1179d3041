# shellcheck shell=bash
# Sourced by the whole-command benchmark scripts (compare.sh, s3.sh, wal.sh, pg.sh, pitr.sh,
# vault.sh): the helpers several of them use. The caller sets BENCH_TAG (the prefix of its
# messages).

log() { printf '\n[%s] %s\n' "$BENCH_TAG" "$*" >&2; }
warn() { printf '[%s] WARNING: %s\n' "$BENCH_TAG" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$BENCH_TAG" "$*" >&2; exit 1; }
has() { [[ " $1 " == *" $2 "* ]]; }        # has "list" word
q() { printf '%q' "$1"; }                  # quote a path for a hyperfine command string

# install_missing TOOL...: apt-get install TOOLs (none: nothing to do); only root can, others die
install_missing() {
    (($#)) || return 0
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        log "installing $*"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    else
        die "missing $*: install them (apt-get install $*)"
    fi
}

# warn_if_busy LOAD: other work on the machine (LOAD: the 1-minute load average) makes the
# timings noisy
warn_if_busy() {
    if awk -v l="$1" -v n="$(nproc)" 'BEGIN { exit !(l > n / 2) }'; then
        warn "load average is $1 on $(nproc) CPUs: something else is running, timings will be noisy"
    fi
}

# find_stowage: S = the stowage binary (STOWAGE_BIN, else target/release/stowage, built when
# missing), an absolute path since the commands run from other directories. Needs REPO_ROOT.
find_stowage() {
    target_dir="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
    [[ "$target_dir" == /* ]] || target_dir="$REPO_ROOT/$target_dir"
    S="${STOWAGE_BIN:-$target_dir/release/stowage}"
    if [[ -z "${STOWAGE_BIN:-}" && ! -x "$S" ]]; then
        log "cargo build --release --bin stowage"
        cargo build --release --bin stowage --manifest-path "$REPO_ROOT/Cargo.toml" \
            || die "cargo build --release failed"
    fi
    S=$(type -P "$S" 2>/dev/null || true)   # STOWAGE_BIN may be a name in PATH
    [[ -n "$S" && -x "$S" ]] || die "no stowage binary at ${STOWAGE_BIN:-$target_dir/release/stowage}"
    S=$(realpath "$S")
}
# stowage_has SUB...: S knows every subcommand SUB ("backup pg-base" is one), else an older build
stowage_has() {
    local sub
    for sub in "$@"; do
        # shellcheck disable=SC2086  # "backup pg-base" is two words
        "$S" $sub --help >/dev/null 2>&1 \
            || die "$S has no '$sub' command (an older build? rebuild: cargo build --release, or set STOWAGE_BIN; TOOLS=pgbackrest runs the references alone)"
    done
}

# summary_mode NAME ARG...: `SCRIPT --summary [RESULTS]` prints the summary of a finished run
# (RESULTS, default $STOWAGE_BENCH_DIR/NAME) again with the script's summarize, and exits
summary_mode() {
    local name=$1; shift
    if [[ "${1:-}" == --summary ]]; then
        summarize "${2:-${STOWAGE_BENCH_DIR:-/var/tmp/stowage-bench}/$name}"
        exit 0
    fi
}

# bench_outdir [OUTDIR]: OUTDIR, else STOWAGE_BENCH_DIR (/var/tmp/stowage-bench) or, with
# QUICK=1, its quick/: a smoke run never replaces the real results
bench_outdir() {
    local dir="${STOWAGE_BENCH_DIR:-/var/tmp/stowage-bench}"
    if [[ "${QUICK:-0}" == 1 ]]; then dir="$dir/quick"; fi
    printf '%s\n' "${1:-$dir}"
}

# finish: the summary (summarize, also in RESULTS/summary.md); exit 1 when something failed and
# was left out (FAILED), so that a caller sees it
finish() {
    log "summary (also in $RESULTS/summary.md)"
    summarize "$RESULTS" | tee "$RESULTS/summary.md"
    if ((${#FAILED[@]})); then
        printf '\n[%s] FAILED (left out of the results): %s\n' "$BENCH_TAG" "${FAILED[*]}" >&2
        exit 1
    fi
}
