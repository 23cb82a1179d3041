# shellcheck shell=bash
# Sourced by the whole-command benchmark scripts (compare.sh, s3.sh, wal.sh, pg.sh, pitr.sh): the
# hyperfine driver they share. Needs from the caller: log, warn and q (common.sh), LOGS and
# RESULTS directories, and a FAILED array.
#
# The caller fills a group with `add NAME PREPARE COMMAND [CHECK]` (PREPARE "" for none,
# CHECK "" to just run the command), then `run_group STEM RUNS`. Each command runs once
# first, unmeasured: its prepare command, then its check (or the command itself). Those
# that fail are left out (named in FAILED, their log's tail on stderr); the rest go to one
# hyperfine invocation, exported to RESULTS/STEM.json and RESULTS/STEM.md. `timed` (pg.sh,
# pitr.sh) puts /usr/bin/time in front of a command for its peak memory.

NAMES=() PREPS=() CMDS=() CHECKS=()
add() { NAMES+=("$1"); PREPS+=("$2"); CMDS+=("$3"); CHECKS+=("${4:-}"); }

run_group() {   # run_group STEM RUNS
    local stem=$1 runs=$2 i args=() logf
    for i in "${!NAMES[@]}"; do
        logf="$LOGS/$stem-${NAMES[i]//[ \/]/_}.log"
        {
            echo "+ ${PREPS[i]:-true}"; echo "+ ${CHECKS[i]:-${CMDS[i]}}"
        } >"$logf"
        if sh -c "${PREPS[i]:-true}" >>"$logf" 2>&1 && sh -c "${CHECKS[i]:-${CMDS[i]} >/dev/null}" >>"$logf" 2>&1; then
            args+=(--prepare "${PREPS[i]:-true}" -n "${NAMES[i]}" "${CMDS[i]}")
        else
            warn "'${NAMES[i]}' failed, left out of $stem; see $logf:"
            tail -5 "$logf" | sed 's/^/    /' >&2
            FAILED+=("$stem/${NAMES[i]}")
        fi
    done
    NAMES=() PREPS=() CMDS=() CHECKS=()
    if ((${#args[@]} == 0)); then warn "nothing to run for $stem"; return; fi
    log "$stem ($runs runs each)"
    if ! hyperfine --runs "$runs" --style basic \
        --export-json "$RESULTS/$stem.json" --export-markdown "$RESULTS/$stem.md" \
        "${args[@]}"; then
        warn "hyperfine failed on $stem"
        FAILED+=("$stem/hyperfine")
    fi
}

# timed BENCH LABEL: TW = a /usr/bin/time prefix appending the peak RSS of each run of LABEL to
# a file (RSS_FILES["BENCH|LABEL"]) that the caller's rss_rows reads: hyperfine gives no memory
declare -A RSS_FILES=()
TW=""
# shellcheck disable=SC2034  # RSS_FILES, TW: used by the scripts
timed() {
    local f="$LOGS/rss-$1-${2//[^A-Za-z0-9_.-]/_}.txt"
    : >"$f"
    RSS_FILES["$1|$2"]=$f
    TW="/usr/bin/time -a -o $(q "$f") -f %M "
}
