#!/usr/bin/env bash
# s3.sh [OUTDIR] -- whole-command benchmarks: stowage on S3 against stowage on a local directory.
#
# Starts the test suite's S3 server (`cargo run --example s3-server`: s3s + s3s-fs, HTTP with
# SigV4 on loopback) with its objects on REPO_DIR, a tmpfs by default, and keeps the local
# repositories on the same tmpfs: disk speed is out of the comparison, what remains is what
# S3 costs stowage (HTTP, signing, checksums, multipart uploads, ranged GETs) plus the
# server's own work, which shares the machine's cores. For each input (random.bin and
# pgdata.tar from make-inputs.sh), hyperfine runs, side by side in one invocation per group:
#   backup   `stowage backup stdin --name NAME < INPUT` into a fresh local repository vs
#            into a fresh S3 repository (hyperfine --prepare deletes it and runs `stowage init`)
#   restore  `stowage cat latest > /dev/null` and `stowage restore latest --to DIR` from a
#            local vs an S3 repository that hold one backup of the input
# then `/usr/bin/time -v` takes the peak RSS of one backup (the one that fills those
# repositories) and one `stowage cat latest` against each store.
# Results: OUTDIR/s3-results/*.json and *.md (hyperfine exports), rss.tsv, stored.tsv,
# summary.md, logs/ (the server's log among them).
# Caches are warm: every command runs once, unmeasured, before hyperfine measures it (that
# run also checks it works: cat and restore are compared with the input; a command that
# fails there is left out and the script exits 1).
# Repositories are made with a cheap passphrase KDF (`init --kdf-memory-kib 1024
# --kdf-iterations 1`) on both stores, so key derivation (the same on both) is not timed.
#
# Targets (throughput = input bytes / mean wall time; summary.md checks each):
#   S3 backup            >= 0.8x local backup
#   S3 cat / restore     >= 0.8x local cat / restore
#   peak RSS             <= in-flight cap (--in-flight-mib, 128) + fixed overhead (72 MiB),
#                        for backup and cat, on both stores
#
# `benches/s3.sh --summary [RESULTS]` prints the summary of a finished run again.
#
# Environment:
#   STOWAGE_BENCH_DIR  where the inputs are (default /var/tmp/stowage-bench; make-inputs.sh
#                 builds a missing one there, full size) and default OUTDIR
#   QUICK=1       smoke test: the first QUICK_MIB MiB (default 128) of each input, cut with
#                 head -c into OUTDIR/s3-inputs/; OUTDIR defaults to $STOWAGE_BENCH_DIR/quick
#   RUNS          hyperfine --runs (default 3)
#   INPUTS        subset of "random pgdata usr" (default "random pgdata")
#   BENCHES       subset of "backup restore rss" (default all)
#   REPO_DIR      where the S3 server's objects, the local repositories and the restores
#                 live (default /dev/shm/stowage-s3-bench; a run works in a fresh directory
#                 below it and removes it at the end)
#   IN_FLIGHT_MIB      --in-flight-mib for every stowage command (default 128, stowage's own)
#   RSS_OVERHEAD_MIB   fixed memory allowed above the in-flight cap (default 72: 200 MiB in all)
#   PORT          the server's port (default 0: a free one)
#   STOWAGE_BIN, S3_SERVER_BIN   use these binaries instead of
#                 `cargo build --release --bin stowage --example s3-server`
#   STOWAGE_PASSWORD   the repositories' passphrase (a fixed benchmark passphrase by default)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

BENCH_TAG=s3
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"   # log, warn, die, has, q

# ------------------------------------------------------------------ summary
# summarize RESULTS: Markdown from inputs.tsv, INPUT-{backup,restore}.json, stored.tsv, rss.tsv
summarize() {
    BENCH_LIB="$(dirname "${BASH_SOURCE[0]}")/lib" python3 - "$1" <<'PY'
import json, os, sys
from functools import partial

sys.path.insert(0, os.environ["BENCH_LIB"])
import summary  # noqa: E402  (benches/lib/summary.py)

results = sys.argv[1]
MIN_RATIO = 0.8
# (group, local command, S3 command, label)
PAIRS = [
    ("backup", "local backup", "s3 backup", "backup"),
    ("restore", "local cat", "s3 cat", "cat latest > /dev/null"),
    ("restore", "local restore", "s3 restore", "restore latest --to DIR"),
]

read_tsv = partial(summary.read_tsv, results)
table = summary.table

size = {r["input"]: int(r["bytes"]) for r in read_tsv("inputs.tsv")}
means = {}  # means[input][group][command] = (mean, stddev)
for inp in size:
    for group in ("backup", "restore"):
        path = os.path.join(results, f"{inp}-{group}.json")
        if os.path.exists(path):
            with open(path) as f:
                for r in json.load(f)["results"]:
                    means.setdefault(inp, {}).setdefault(group, {})[r["command"]] = (
                        r["mean"], r.get("stddev") or 0.0)

def mbs(inp, seconds):
    return size[inp] / seconds / 1e6

env = os.path.join(results, "env.txt")
if os.path.exists(env):
    with open(env) as f:
        print("".join("    " + line for line in f))

print("## Inputs and what each repository holds\n")
stored = read_tsv("stored.tsv")
rows = []
for inp, b in size.items():
    st = {r["store"]: int(r["stored_bytes"]) for r in stored if r["input"] == inp and r["stored_bytes"]}
    pct = lambda s: f"{st[s] / b * 100:.1f}%" if s in st else "n/a"
    rows.append([inp, b, f"{b / 2**20:.1f}", pct("local"), pct("s3")])
print(table(["input", "bytes", "MiB", "local repository", "S3 objects"], rows))

print("\n## Wall time (hyperfine mean ± stddev) and throughput\n")
rows = []
for inp in size:
    for group, cmds in means.get(inp, {}).items():
        for cmd, (mean, sd) in cmds.items():
            rows.append([inp, group, cmd, f"{mean:.3f} ± {sd:.3f}", f"{mbs(inp, mean):.0f}"])
print(table(["input", "group", "command", "mean s", "MB/s"], rows) if rows else "(no hyperfine results)")

print(f"\n## S3 against local (throughput of S3 / local; target >= {MIN_RATIO}x)\n")
rows = []
for inp in size:
    for group, local, s3, label in PAIRS:
        a = means.get(inp, {}).get(group, {}).get(local)
        b = means.get(inp, {}).get(group, {}).get(s3)
        ratio = a[0] / b[0] if a and b else None
        rows.append([inp, label,
                     f"{mbs(inp, a[0]):.0f}" if a else "n/a",
                     f"{mbs(inp, b[0]):.0f}" if b else "n/a",
                     "n/a" if ratio is None else f"{ratio:.2f}x",
                     "n/a" if ratio is None else ("PASS" if ratio >= MIN_RATIO else "FAIL")])
print(table(["input", "command", "local MB/s", "S3 MB/s", "S3 / local", "verdict"], rows))

rss = read_tsv("rss.tsv")
if rss:
    cap, over = int(rss[0]["in_flight_mib"]), int(rss[0]["overhead_mib"])
    limit = cap + over
    print(f"\n## One run each under /usr/bin/time -v: peak RSS (target <= in-flight cap {cap} + {over}"
          f" = {limit} MiB), wall and CPU seconds\n")
    print("The S3 server runs on the same cores: its CPU time during the command is beside stowage's.\n")
    rows = []
    for r in rss:
        mib = int(r["maxrss_kb"]) / 1024 if r["maxrss_kb"] else None
        ok = mib is not None and mib <= limit and r["exit"] == "0"
        rows.append([r["input"], r["op"], r["store"],
                     "n/a" if mib is None else f"{mib:.1f}" + (f" (exit {r['exit']})" if r["exit"] != "0" else ""),
                     r["elapsed_s"] or "n/a", r["cpu_s"] or "n/a",
                     r["server_cpu_s"] if r["store"] == "s3" else "",
                     "PASS" if ok else "FAIL"])
    print(table(["input", "command", "store", "peak RSS MiB", "wall s", "stowage CPU s",
                 "server CPU s", "RSS verdict"], rows))
PY
}

summary_mode s3-results "$@"

# ------------------------------------------------------------------ settings
INPUT_DIR="${STOWAGE_BENCH_DIR:-/var/tmp/stowage-bench}"
QUICK_MIB="${QUICK_MIB:-128}"
if [[ "${QUICK:-0}" == 1 ]]; then
    default_outdir="$INPUT_DIR/quick"
else
    default_outdir="$INPUT_DIR"
fi
OUTDIR="${1:-$default_outdir}"
RUNS="${RUNS:-3}"
INPUTS="${INPUTS:-random pgdata}"
BENCHES="${BENCHES:-backup restore rss}"
REPO_DIR="${REPO_DIR:-/dev/shm/stowage-s3-bench}"
IN_FLIGHT_MIB="${IN_FLIGHT_MIB:-128}"
RSS_OVERHEAD_MIB="${RSS_OVERHEAD_MIB:-72}"
PORT="${PORT:-0}"
RESULTS="$OUTDIR/s3-results"
LOGS="$RESULTS/logs"
KDF="--kdf-memory-kib 1024 --kdf-iterations 1"   # cheap key derivation, both stores
BUCKET_FRESH=stowage-fresh   # repositories remade before each backup run
BUCKET_MAIN=stowage-main     # a repository holding one backup of the input

export STOWAGE_PASSWORD="${STOWAGE_PASSWORD:-stowage-bench-password}"
unset STOWAGE_PASSWORD_FILE STOWAGE_REPO
# Only the test server's credentials (read from the server below), nothing from the host.
unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN AWS_DEFAULT_REGION AWS_ROLE_ARN \
    AWS_WEB_IDENTITY_TOKEN_FILE AWS_CONTAINER_CREDENTIALS_RELATIVE_URI \
    AWS_CONTAINER_CREDENTIALS_FULL_URI AWS_ENDPOINT_URL_S3

FAILED=()   # commands left out because their check run failed

# ------------------------------------------------------------------ tools
missing=()
command -v hyperfine >/dev/null || missing+=(hyperfine)
command -v python3 >/dev/null || missing+=(python3)
[[ -x /usr/bin/time ]] || missing+=(time)
install_missing "${missing[@]}"

S="${STOWAGE_BIN:-}" SRV="${S3_SERVER_BIN:-}"
if [[ -z "$S" || -z "$SRV" ]]; then
    log "cargo build --release --bin stowage --example s3-server"
    cargo build --release --bin stowage --example s3-server --manifest-path "$REPO_ROOT/Cargo.toml" \
        || die "cargo build --release failed"
    target_dir=$(cargo metadata --format-version 1 --no-deps --manifest-path "$REPO_ROOT/Cargo.toml" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    : "${S:=$target_dir/release/stowage}" "${SRV:=$target_dir/release/examples/s3-server}"
fi
[[ -x "$S" ]] || die "no stowage binary at $S"
[[ -x "$SRV" ]] || die "no s3-server binary at $SRV"
SG="$(q "$S") --in-flight-mib $IN_FLIGHT_MIB"   # stowage and its global flags, for sh -c

# ------------------------------------------------------------------ inputs
mkdir -p "$RESULTS" "$LOGS"
input_file() {
    case "$1" in
        pgdata) echo "$INPUT_DIR/pgdata.tar" ;; random) echo "$INPUT_DIR/random.bin" ;; usr) echo "$INPUT_DIR/usr.tar" ;;
        *) die "unknown input '$1' (expected random, pgdata, usr)" ;;
    esac
}
absent=()
for input in $INPUTS; do [[ -s "$(input_file "$input")" ]] || absent+=("$input"); done
if ((${#absent[@]})); then
    log "building ${absent[*]} (full size) in $INPUT_DIR"
    QUICK=0 INPUTS="${absent[*]}" bash "$SCRIPT_DIR/make-inputs.sh" "$INPUT_DIR"
fi
declare -A IN_OF=()
for input in $INPUTS; do
    src=$(input_file "$input")
    if [[ "${QUICK:-0}" == 1 ]]; then
        slice="$OUTDIR/s3-inputs/$(basename "$src")"
        want=$((QUICK_MIB * 1024 * 1024))
        if ((want > $(stat -c %s "$src"))); then want=$(stat -c %s "$src"); fi
        if [[ ! -f "$slice" || $(stat -c %s "$slice") -ne $want ]]; then
            mkdir -p "$OUTDIR/s3-inputs"
            head -c "$want" "$src" >"$slice.partial"
            mv "$slice.partial" "$slice"
        fi
        IN_OF[$input]=$slice
    else
        IN_OF[$input]=$src
    fi
done

# ------------------------------------------------------------------ scratch space, server
mkdir -p "$REPO_DIR"
WORK=$(mktemp -d "$REPO_DIR/run.XXXXXX")
S3ROOT="$WORK/s3"
SERVER_PID=""
cleanup() {
    if [[ -n "$SERVER_PID" ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
    rmdir "$REPO_DIR" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
export XDG_CACHE_HOME="$WORK/cache"

log "starting the S3 server on $S3ROOT"
"$SRV" --root "$S3ROOT" --bucket "$BUCKET_FRESH" --bucket "$BUCKET_MAIN" --port "$PORT" \
    >"$LOGS/s3-server.out" 2>"$LOGS/s3-server.log" &
SERVER_PID=$!
CLK_TCK=$(getconf CLK_TCK)
for _ in $(seq 300); do
    grep -q '^listening on ' "$LOGS/s3-server.out" && break
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$LOGS/s3-server.log" >&2; die "the S3 server exited"; }
    sleep 0.1
done
ENDPOINT=$(sed -n 's/^listening on //p' "$LOGS/s3-server.out")
[[ -n "$ENDPOINT" ]] || die "the S3 server did not report its address in 30 s; see $LOGS/s3-server.log"
# The client environment it printed (endpoint, test credentials, region, no host config).
while IFS='=' read -r k v; do
    case "$k" in AWS_[A-Z0-9_]*) export "$k=$v" ;; esac
done <"$LOGS/s3-server.out"
[[ "${AWS_ENDPOINT_URL:-}" == "$ENDPOINT" && -n "${AWS_ACCESS_KEY_ID:-}" ]] \
    || die "the S3 server printed no client environment; see $LOGS/s3-server.out"
export AWS_EC2_METADATA_DISABLED=true AWS_REGION="${AWS_REGION:-us-east-1}"
log "S3 server: $ENDPOINT (pid $SERVER_PID)"

# s3s-fs keeps a small side file per object in the server root, named after the base64url
# of the bucket: removed with the repository so that runs do not pile them up.
sidecars() { printf '%s/.bucket-%s.object-*' "$(q "$S3ROOT")" "$(printf %s "$1" | base64 -w0 | tr '+/' '-_' | tr -d '=')"; }
s3_reset() {   # command string: empty bucket BUCKET (its repository and side files)
    echo "rm -rf $(q "$S3ROOT/$1/repo") $(sidecars "$1")"
}

if ! out=$(STOWAGE_REPO="$WORK/preflight" sh -c "$SG init $KDF" 2>&1); then
    printf '%s\n' "$out" >&2
    die "'stowage init' of a local repository failed (binary $S)"
fi
if ! out=$(STOWAGE_REPO="s3://$BUCKET_FRESH/repo" sh -c "$SG init $KDF" 2>&1); then
    printf '%s\n' "$out" >&2
    die "'stowage init' on the S3 server failed (binary $S, endpoint $ENDPOINT)"
fi
rm -rf "$WORK/preflight"
sh -c "$(s3_reset "$BUCKET_FRESH")"

load=$(cut -d' ' -f1 /proc/loadavg)
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  host: $(hostname)  cpus: $(nproc)  load at start: $load"
    echo "tools: $(hyperfine --version); stowage: $("$S" --version 2>/dev/null || echo unknown) ($S)"
    echo "runs: $RUNS; inputs: $INPUTS; benches: $BENCHES; quick: ${QUICK:-0}$([[ "${QUICK:-0}" == 1 ]] && echo " (first $QUICK_MIB MiB)")"
    echo "repositories and S3 objects in: $REPO_DIR ($(df --output=fstype "$REPO_DIR" | tail -1)); S3 server: $ENDPOINT"
    echo "in-flight cap: $IN_FLIGHT_MIB MiB; RSS overhead allowed: $RSS_OVERHEAD_MIB MiB; init: $KDF"
} >"$RESULTS/env.txt"
warn_if_busy "$load"

# ------------------------------------------------------------------ hyperfine driver
source "$(dirname "${BASH_SOURCE[0]}")/lib/hyperfine.sh"   # add, run_group

# CPU seconds (user + system) the S3 server has used so far
server_cpu() { awk -v hz="$CLK_TCK" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$SERVER_PID/stat"; }

# peak RSS, wall and CPU time of one stowage command (stdin from a file), and the CPU time
# the S3 server spent meanwhile (it runs on the same cores)
#   rss INPUT BYTES OP STORE STDIN REPO
rss() {
    local input=$1 bytes=$2 op=$3 store=$4 stdin=$5 repo=$6 status=0 kb secs cpu srv srv0 srv1
    local tf="$WORK/time.txt" logf="$LOGS/rss-$input-$op-$store.log"
    local cmd=(env STOWAGE_REPO="$repo" "$S" --in-flight-mib "$IN_FLIGHT_MIB")
    case "$op" in
        backup) cmd+=(backup stdin --name "$(basename "${IN_OF[$input]}")") ;;
        cat) cmd+=(cat latest) ;;
    esac
    rm -f "$tf"
    srv0=$(server_cpu)
    /usr/bin/time -v -o "$tf" "${cmd[@]}" <"$stdin" >/dev/null 2>"$logf" || status=$?
    srv1=$(server_cpu)
    kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tf" 2>/dev/null || true)
    secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s}' "$tf" 2>/dev/null || true)
    cpu=$(awk -F': ' '/(User|System) time \(seconds\)/ {s += $2; n++} END {if (n) printf "%.2f", s}' "$tf" 2>/dev/null || true)
    srv=$(awk -v a="$srv0" -v b="$srv1" 'BEGIN { printf "%.2f", b - a }')
    if has "$BENCHES" rss; then
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$input" "$bytes" "$op" "$store" "${kb:-}" \
            "${secs:-}" "${cpu:-}" "$srv" "$status" "$IN_FLIGHT_MIB" "$RSS_OVERHEAD_MIB" >>"$RESULTS/rss.tsv"
        printf '  %-8s %-7s %-6s peak RSS %7.1f MiB  %6.2f s  stowage CPU %6.2f s  server CPU %6.2f s  exit %s\n' \
            "$input" "$op" "$store" "$(awk -v k="${kb:-0}" 'BEGIN{print k/1024}')" "${secs:-0}" "${cpu:-0}" \
            "$srv" "$status" >&2
    fi
    if ((status != 0)); then
        warn "$op on $store ($input) exited $status; see $logf"
        tail -5 "$logf" | sed 's/^/    /' >&2
        FAILED+=("$input/$op/$store")
    fi
    return "$status"
}

# ------------------------------------------------------------------ benchmarks
printf 'input\tfile\tbytes\n' >"$RESULTS/inputs.tsv"
printf 'input\tstore\tstored_bytes\n' >"$RESULTS/stored.tsv"
printf 'input\tbytes\top\tstore\tmaxrss_kb\telapsed_s\tcpu_s\tserver_cpu_s\texit\tin_flight_mib\toverhead_mib\n' \
    >"$RESULTS/rss.tsv"

SF="s3://$BUCKET_FRESH/repo" SM="s3://$BUCKET_MAIN/repo"   # S3 repositories
for input in $INPUTS; do
    IN=${IN_OF[$input]}
    name=$(basename "$IN")
    bytes=$(stat -c %s "$IN")
    printf '%s\t%s\t%s\n' "$input" "$IN" "$bytes" >>"$RESULTS/inputs.tsv"
    rm -f "$RESULTS/$input"-{backup,restore}.{json,md}
    cat "$IN" >/dev/null   # into the page cache

    lf="$WORK/local-fresh" lm="$WORK/local-main"   # local repositories
    rl="$WORK/restore-local" rs="$WORK/restore-s3"  # restore targets
    rm -rf "$lf" "$lm" "$rl" "$rs"
    sh -c "$(s3_reset "$BUCKET_FRESH"); $(s3_reset "$BUCKET_MAIN")"
    backup="backup stdin --name $(q "$name") < $(q "$IN")"

    if has "$BENCHES" backup; then
        add "local backup" "rm -rf $(q "$lf") && STOWAGE_REPO=$(q "$lf") $SG init $KDF >/dev/null" \
            "STOWAGE_REPO=$(q "$lf") $SG $backup"
        add "s3 backup" "$(s3_reset "$BUCKET_FRESH") && STOWAGE_REPO=$SF $SG init $KDF >/dev/null" \
            "STOWAGE_REPO=$SF $SG $backup"
        run_group "$input-backup" "$RUNS"
        rm -rf "$lf"
        sh -c "$(s3_reset "$BUCKET_FRESH")"
    fi

    if has "$BENCHES" restore || has "$BENCHES" rss; then
        log "$input: one backup into a local and an S3 repository (peak RSS of each)"
        ok=()
        for store in local s3; do
            if [[ $store == local ]]; then repo=$lm; else repo=$SM; fi
            if ! STOWAGE_REPO="$repo" sh -c "$SG init $KDF" >"$LOGS/$input-init-$store.log" 2>&1; then
                warn "stowage init ($store) failed; see $LOGS/$input-init-$store.log"
                FAILED+=("$input/init/$store")
            elif rss "$input" "$bytes" backup "$store" "$IN" "$repo"; then
                ok+=("$store")   # rss() records a failed backup itself
            fi
        done
        printf '%s\tlocal\t%s\n' "$input" "$(du -sb "$lm" 2>/dev/null | cut -f1)" >>"$RESULTS/stored.tsv"
        printf '%s\ts3\t%s\n' "$input" "$(du -sb "$S3ROOT/$BUCKET_MAIN/repo" 2>/dev/null | cut -f1)" >>"$RESULTS/stored.tsv"

        if has "$BENCHES" restore; then
            for store in "${ok[@]}"; do
                if [[ $store == local ]]; then repo=$(q "$lm"); else repo=$SM; fi
                add "$store cat" "" "STOWAGE_REPO=$repo $SG cat latest > /dev/null" \
                    "STOWAGE_REPO=$repo $SG cat latest | cmp - $(q "$IN")"
            done
            for store in "${ok[@]}"; do
                if [[ $store == local ]]; then repo=$(q "$lm") dir=$rl; else repo=$SM dir=$rs; fi
                add "$store restore" "rm -rf $(q "$dir")" \
                    "STOWAGE_REPO=$repo $SG restore latest --to $(q "$dir")" \
                    "STOWAGE_REPO=$repo $SG restore latest --to $(q "$dir") && cmp \"\$(find $(q "$dir") -type f -size ${bytes}c | head -n 1)\" $(q "$IN")"
            done
            run_group "$input-restore" "$RUNS"
            rm -rf "$rl" "$rs"
        fi

        if has "$BENCHES" rss; then
            for store in "${ok[@]}"; do
                if [[ $store == local ]]; then repo=$lm; else repo=$SM; fi
                rss "$input" "$bytes" cat "$store" /dev/null "$repo" || true
            done
        fi
    fi
    rm -rf "$lm"
    sh -c "$(s3_reset "$BUCKET_MAIN")"
done

# ------------------------------------------------------------------ summary
finish   # exits 1 when something was left out
