#!/usr/bin/env bash
# compare.sh [OUTDIR] -- whole-command benchmarks: stowage against zstd and restic.
#
# For each input built by make-inputs.sh (pgdata.tar, random.bin, usr.tar), hyperfine runs,
# side by side in one invocation per group:
#   first    first backup into a fresh repository each run (stowage backup stdin, restic
#            backup --stdin) vs `zstd -3 -T2 -c INPUT > /dev/null` (compression alone)
#   second   a backup of the same input again, into a repository that already holds it
#   cat      stowage cat latest / stowage restore latest --to DIR
#            vs `zstd -d -T2` of INPUT.zst, restic dump latest, restic restore latest
#   verify   stowage verify --read-data vs stowage cat latest (and restic check --read-data)
# then `/usr/bin/time -v` takes the peak RSS of one backup of each input, of a 40 MiB input
# and of a 4 GiB stream (random.bin repeated, and 4 GiB of unique bytes).
# Results: OUTDIR/results/*.json and *.md (hyperfine exports), rss.tsv, summary.md.
# Caches are warm: every command runs once, unmeasured, before hyperfine measures it (that
# run also checks it works; a command that fails there is left out and the script exits 1).
#
# Issue targets (throughput = input bytes / mean wall time; summary.md checks each):
#   first backup     >= 0.8x `zstd -3 -T2` and >= 2x restic backup
#   second backup    >= 1 GB/s
#   cat / restore    >= 0.8x `zstd -d -T2` and >= 1.5x restic restore
#   verify --read-data >= 0.8x restore (stowage cat) throughput
#   peak RSS         <= 200 MiB for the 40 MiB and the 4 GiB inputs
#
# Environment:
#   STOWAGE_BENCH_DIR  default OUTDIR (/var/tmp/stowage-bench)
#   QUICK=1       small inputs (SCALE=5 RANDOM_MIB=64 USR_MIB=64, big RSS stream 256 MiB)
#                 in $STOWAGE_BENCH_DIR/quick: a smoke test of a few minutes
#   RUNS          hyperfine --runs (default 3)
#   INPUTS        subset of "pgdata random usr"
#   BENCHES       subset of "first second cat verify rss"
#   TOOLS         subset of "stowage zstd restic" (e.g. TOOLS="zstd restic" needs no stowage)
#   STOWAGE_BIN   use this binary instead of `cargo build --release --bin stowage`
#   RSS_BIG_MIB   size of the big RSS stream (default 4096)
#   REPO_DIR      where repositories and restores live (default: beside the inputs). Set it
#                 to a tmpfs (/dev/shm) to take the disk out of the comparison: `zstd ... >
#                 /dev/null` writes nothing, a backup must write every byte it keeps. The
#                 `zstd -3 -T2 > file` row writes into REPO_DIR too, for the same-disk view.
#   SCALE, RANDOM_MIB, USR_MIB   passed to make-inputs.sh
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

if [[ "${QUICK:-0}" == 1 ]]; then
    export SCALE="${SCALE:-5}" RANDOM_MIB="${RANDOM_MIB:-64}" USR_MIB="${USR_MIB:-64}"
    : "${RSS_BIG_MIB:=256}"
    default_outdir="${STOWAGE_BENCH_DIR:-/var/tmp/stowage-bench}/quick"
else
    : "${RSS_BIG_MIB:=4096}"
    default_outdir="${STOWAGE_BENCH_DIR:-/var/tmp/stowage-bench}"
fi
OUTDIR="${1:-$default_outdir}"
RUNS="${RUNS:-3}"
INPUTS="${INPUTS:-pgdata random usr}"
BENCHES="${BENCHES:-first second cat verify rss}"
TOOLS="${TOOLS:-stowage zstd restic}"
RESULTS="$OUTDIR/results"
LOGS="$RESULTS/logs"

export STOWAGE_PASSWORD="${STOWAGE_PASSWORD:-stowage-bench-password}"
export RESTIC_PASSWORD="${RESTIC_PASSWORD:-stowage-bench-password}"
unset STOWAGE_PASSWORD_FILE STOWAGE_REPO RESTIC_REPOSITORY RESTIC_PASSWORD_FILE

BENCH_TAG=compare
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"   # log, warn, die, has, q

FAILED=()   # commands left out because their check run failed

# ------------------------------------------------------------------ tools to compare with
missing=()
command -v hyperfine >/dev/null || missing+=(hyperfine)
command -v python3 >/dev/null || missing+=(python3)
[[ -x /usr/bin/time ]] || missing+=(time)
command -v openssl >/dev/null || missing+=(openssl)
command -v zstd >/dev/null || missing+=(zstd)   # INPUT.zst is needed for the cat group too
if has "$TOOLS" restic; then command -v restic >/dev/null || missing+=(restic); fi
install_missing "${missing[@]}"
if has "$TOOLS" restic; then
    # repository v2 and --compression need restic >= 0.14
    rv=$(restic version | awk '{print $2}')
    if [[ "$(printf '%s\n0.14.0\n' "$rv" | sort -V | head -1)" != 0.14.0 ]]; then
        die "restic $rv is too old: repository v2 and --compression need >= 0.14"
    fi
fi

# ------------------------------------------------------------------ inputs
mkdir -p "$RESULTS" "$LOGS"
load=$(cut -d' ' -f1 /proc/loadavg)
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  host: $(hostname)  cpus: $(nproc)  load at start: $load"
    echo "tools: $(hyperfine --version); zstd $(zstd -V | grep -o 'v[0-9.]*' | head -1)$(has "$TOOLS" restic && printf '; restic %s' "$rv")"
    echo "runs: $RUNS; inputs: $INPUTS; benches: $BENCHES; tools: $TOOLS"
} >"$RESULTS/env.txt"
warn_if_busy "$load"
INPUTS="$INPUTS" bash "$SCRIPT_DIR/make-inputs.sh" "$OUTDIR"

input_file() {
    case "$1" in
        pgdata) echo "$OUTDIR/pgdata.tar" ;; random) echo "$OUTDIR/random.bin" ;; usr) echo "$OUTDIR/usr.tar" ;;
        *) die "unknown input '$1'" ;;
    esac
}

# ------------------------------------------------------------------ scratch space
WORK=$(mktemp -d "${REPO_DIR:-$OUTDIR}/.work.XXXXXX")   # default: the inputs' disk, not /tmp
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
export RESTIC_CACHE_DIR="$WORK/restic-cache"
export XDG_CACHE_HOME="$WORK/cache"

# ------------------------------------------------------------------ stowage
S=""
if has "$TOOLS" stowage; then
    if [[ -n "${STOWAGE_BIN:-}" ]]; then
        S="$STOWAGE_BIN"
    else
        log "cargo build --release"
        cargo build --release --bin stowage --manifest-path "$REPO_ROOT/Cargo.toml" \
            || die "cargo build --release failed"
        target_dir=$(cargo metadata --format-version 1 --no-deps --manifest-path "$REPO_ROOT/Cargo.toml" \
            | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
        S="$target_dir/release/stowage"
    fi
    [[ -x "$S" ]] || die "no stowage binary at $S"
    if ! out=$(STOWAGE_REPO="$WORK/preflight" "$S" init 2>&1); then
        printf '%s\n' "$out" >&2
        die "'stowage init' failed (binary $S): stowage cannot be benchmarked; TOOLS=\"zstd restic\" runs the rest"
    fi
    rm -rf "$WORK/preflight"
    log "stowage: $S ($("$S" --version 2>/dev/null || echo 'version unknown'))"
fi

# ------------------------------------------------------------------ hyperfine driver
source "$(dirname "${BASH_SOURCE[0]}")/lib/hyperfine.sh"   # add, run_group

# peak RSS and wall time of one command (stdin from a file or a producer pipeline)
#   rss LABEL BYTES TOOL 'PREPARE' 'PRODUCER' CMD...
rss() {
    local label=$1 bytes=$2 tool=$3 prep=$4 producer=$5; shift 5
    local tf="$WORK/time.txt" status=0
    if ! sh -c "$prep" >"$LOGS/rss-$label-$tool.log" 2>&1; then
        warn "$tool: preparing $label failed; see $LOGS/rss-$label-$tool.log"
        FAILED+=("rss/$label/$tool"); return
    fi
    set +o pipefail   # the producer may die of SIGPIPE if the command stops reading early
    rm -f "$tf"
    sh -c "$producer" | /usr/bin/time -v -o "$tf" "$@" >/dev/null 2>>"$LOGS/rss-$label-$tool.log" || status=$?
    set -o pipefail
    local kb secs
    kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tf" 2>/dev/null || true)
    secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s}' "$tf" 2>/dev/null || true)
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$bytes" "$tool" "${kb:-}" "${secs:-}" "$status" >>"$RESULTS/rss.tsv"
    printf '  %-14s %-8s peak RSS %7.1f MiB  %6.2f s  exit %s\n' "$label" "$tool" "$(awk -v k="${kb:-0}" 'BEGIN{print k/1024}')" "${secs:-0}" "$status" >&2
    if ((status != 0)); then
        warn "$tool on $label exited $status; see $LOGS/rss-$label-$tool.log"
        FAILED+=("rss/$label/$tool")
    fi
}

# ------------------------------------------------------------------ benchmarks
printf 'input\tfile\tbytes\n' >"$RESULTS/inputs.tsv"
printf 'input\ttool\tstored_bytes\n' >"$RESULTS/stored.tsv"
printf 'label\tbytes\ttool\tmaxrss_kb\telapsed_s\texit\n' >"$RESULTS/rss.tsv"

for input in $INPUTS; do
    IN=$(input_file "$input")
    name=$(basename "$IN")
    bytes=$(stat -c %s "$IN")
    printf '%s\t%s\t%s\n' "$input" "$IN" "$bytes" >>"$RESULTS/inputs.tsv"
    rm -f "$RESULTS/$input"-{first,second,cat,verify}.{json,md}
    # what each tool compares against: the same bytes, compressed once by zstd
    if [[ ! -s "$IN.zst" ]]; then
        log "making $(basename "$IN").zst (zstd -3 -T2)"
        zstd -q -3 -T2 -f -o "$IN.zst.partial" "$IN" && mv "$IN.zst.partial" "$IN.zst"
    fi
    cat "$IN" "$IN.zst" >/dev/null   # into the page cache

    sf="$WORK/s-first" rf="$WORK/r-first"     # fresh repositories, remade before each run
    sm="$WORK/s-main"  rm_="$WORK/r-main"     # repositories holding one backup of the input
    sr="$WORK/s-restore" rr="$WORK/r-restore" # restore targets
    rm -rf "$sf" "$rf" "$sm" "$rm_" "$sr" "$rr"
    sbackup="$(q "$S") backup stdin --name $(q "$name") < $(q "$IN")"
    rback() { echo "restic -q -r $(q "$1") backup --compression auto --stdin --stdin-filename $(q "$name") < $(q "$IN")"; }

    if has "$BENCHES" first; then
        has "$TOOLS" stowage && add "stowage backup" \
            "rm -rf $(q "$sf") && STOWAGE_REPO=$(q "$sf") $(q "$S") init >/dev/null" \
            "STOWAGE_REPO=$(q "$sf") $sbackup"
        has "$TOOLS" zstd && add "zstd -3 -T2" "" "zstd -q -3 -T2 -c $(q "$IN") > /dev/null"
        has "$TOOLS" zstd && add "zstd -3 -T2 > file" "rm -f $(q "$WORK/z.zst")" \
            "zstd -q -3 -T2 -c $(q "$IN") > $(q "$WORK/z.zst") && sync -f $(q "$WORK/z.zst")"
        has "$TOOLS" restic && add "restic backup" \
            "rm -rf $(q "$rf") && restic -q -r $(q "$rf") init --repository-version 2 >/dev/null" \
            "$(rback "$rf")"
        run_group "$input-first" "$RUNS"
        rm -rf "$sf" "$rf"
    fi

    if has "$BENCHES" second || has "$BENCHES" cat || has "$BENCHES" verify; then
        log "$input: preparing repositories with one backup"
        printf '%s\tzstd -3\t%s\n' "$input" "$(stat -c %s "$IN.zst")" >>"$RESULTS/stored.tsv"
        if has "$TOOLS" stowage; then
            if STOWAGE_REPO="$sm" "$S" init >"$LOGS/$input-setup-stowage.log" 2>&1 \
                && sh -c "STOWAGE_REPO=$(q "$sm") $sbackup" >>"$LOGS/$input-setup-stowage.log" 2>&1; then
                printf '%s\tstowage\t%s\n' "$input" "$(du -sb "$sm" | cut -f1)" >>"$RESULTS/stored.tsv"
            else
                warn "stowage backup of $input failed; see $LOGS/$input-setup-stowage.log"
                tail -5 "$LOGS/$input-setup-stowage.log" | sed 's/^/    /' >&2
                FAILED+=("$input/setup/stowage")
            fi
        fi
        if has "$TOOLS" restic; then
            restic -q -r "$rm_" init --repository-version 2 >/dev/null
            sh -c "$(rback "$rm_")"
            printf '%s\trestic\t%s\n' "$input" "$(du -sb --exclude=locks "$rm_" | cut -f1)" >>"$RESULTS/stored.tsv"
        fi
    fi

    if has "$BENCHES" second; then
        has "$TOOLS" stowage && add "stowage backup" "" "STOWAGE_REPO=$(q "$sm") $sbackup"
        has "$TOOLS" restic && add "restic backup" "" "$(rback "$rm_")"
        run_group "$input-second" "$RUNS"
    fi

    if has "$BENCHES" cat; then
        if has "$TOOLS" stowage; then
            add "stowage cat" "" "STOWAGE_REPO=$(q "$sm") $(q "$S") cat latest > /dev/null" \
                "STOWAGE_REPO=$(q "$sm") $(q "$S") cat latest | cmp - $(q "$IN")"
            add "stowage restore" "rm -rf $(q "$sr")" \
                "STOWAGE_REPO=$(q "$sm") $(q "$S") restore latest --to $(q "$sr")" \
                "STOWAGE_REPO=$(q "$sm") $(q "$S") restore latest --to $(q "$sr") && cmp \"\$(find $(q "$sr") -type f -size ${bytes}c | head -n 1)\" $(q "$IN")"
        fi
        has "$TOOLS" zstd && add "zstd -d -T2" "" "zstd -q -d -T2 -c $(q "$IN.zst") > /dev/null"
        if has "$TOOLS" restic; then
            add "restic dump" "" "restic -q -r $(q "$rm_") dump latest $(q "/$name") > /dev/null" \
                "restic -q -r $(q "$rm_") dump latest $(q "/$name") | cmp - $(q "$IN")"
            add "restic restore" "rm -rf $(q "$rr")" \
                "restic -q -r $(q "$rm_") restore latest --target $(q "$rr")" \
                "restic -q -r $(q "$rm_") restore latest --target $(q "$rr") && cmp $(q "$rr/$name") $(q "$IN")"
        fi
        run_group "$input-cat" "$RUNS"
        rm -rf "$sr" "$rr"
    fi

    if has "$BENCHES" verify; then
        if has "$TOOLS" stowage; then
            add "stowage verify --read-data" "" "STOWAGE_REPO=$(q "$sm") $(q "$S") verify --read-data"
            add "stowage cat" "" "STOWAGE_REPO=$(q "$sm") $(q "$S") cat latest > /dev/null"
        fi
        has "$TOOLS" restic && add "restic check --read-data" "" "restic -q -r $(q "$rm_") check --read-data"
        run_group "$input-verify" "$RUNS"
    fi
    rm -rf "$sm" "$rm_"
done

if has "$BENCHES" rss; then
    log "peak RSS (/usr/bin/time -v), one run each"
    big=$((RSS_BIG_MIB * 1024 * 1024))
    rss_all() {   # rss_all LABEL BYTES PRODUCER
        local label=$1 bytes=$2 producer=$3
        if has "$TOOLS" stowage; then
            rss "$label" "$bytes" stowage "rm -rf $(q "$WORK/rss-s") && STOWAGE_REPO=$(q "$WORK/rss-s") $(q "$S") init" \
                "$producer" env STOWAGE_REPO="$WORK/rss-s" "$S" backup stdin --name "$label"
        fi
        has "$TOOLS" zstd && rss "$label" "$bytes" zstd "true" "$producer" zstd -q -3 -T2 -c
        if has "$TOOLS" restic; then
            rss "$label" "$bytes" restic "rm -rf $(q "$WORK/rss-r") && restic -q -r $(q "$WORK/rss-r") init --repository-version 2" \
                "$producer" restic -q -r "$WORK/rss-r" backup --compression auto --stdin --stdin-filename "$label"
        fi
        rm -rf "$WORK/rss-s" "$WORK/rss-r"
    }
    for input in $INPUTS; do
        IN=$(input_file "$input")
        rss_all "$input" "$(stat -c %s "$IN")" "cat $(q "$IN")"
    done
    # 40 MiB, and a big stream (4 GiB unless QUICK/RSS_BIG_MIB): first random.bin repeated
    # (little unique data: tests streaming), then unique bytes (the chunk index grows too).
    rss_all 40MiB $((40 * 1024 * 1024)) \
        "head -c $((40 * 1024 * 1024)) /dev/zero | openssl enc -aes-128-ctr -pass pass:stowage-40 -nosalt -pbkdf2 -iter 1"
    R=$(input_file random)
    if [[ -s "$R" ]]; then
        reps=$(( (big + $(stat -c %s "$R") - 1) / $(stat -c %s "$R") ))
        rss_all "${RSS_BIG_MIB}MiB-repeat" "$big" \
            "for i in \$(seq $reps); do cat $(q "$R"); done | head -c $big"
    fi
    rss_all "${RSS_BIG_MIB}MiB-unique" "$big" \
        "head -c $big /dev/zero | openssl enc -aes-128-ctr -pass pass:stowage-big -nosalt -pbkdf2 -iter 1"
fi

# ------------------------------------------------------------------ summary
log "summary (also in $RESULTS/summary.md)"
python3 "$SCRIPT_DIR/summarize.py" "$RESULTS" | tee "$RESULTS/summary.md"

if ((${#FAILED[@]})); then
    printf '\n[compare] FAILED (left out of the results): %s\n' "${FAILED[*]}" >&2
    exit 1
fi
