#!/usr/bin/env bash
# wal.sh [OUTDIR] -- PostgreSQL WAL benchmarks: `stowage wal-push` / `wal-fetch` against
# pgBackRest (Debian's `pgbackrest`) and against `cp` from a local copy of the WAL.
#
# All WAL is real: a PostgreSQL 15 cluster (default 16 MiB segments) runs pgbench with
# `archive_command = 'cp ...'` into a local archive, after a `pg_basebackup -X none`.
# That cluster, its archive and the base backup are kept in OUTDIR/wal/gen and reused by the
# next run (delete the directory, or change SCALE/WAL_MIB, to rebuild them). Then, side by side:
#   push        latency of ONE archive command on one 16 MiB segment, whole process, run as
#               `postgres` from the data directory with `pg_wal/SEG` as PostgreSQL does:
#               `stowage wal-push` into a local repository and into an S3 repository (the
#               project's s3-server example on loopback) vs `pgbackrest archive-push` (sync,
#               archive-async=n, compress-type=zst, compress-level=3). Before every run
#               hyperfine --prepare deletes what the previous run stored (stowage: `wal/` and
#               `wal-index/` of the repository and its spool; pgbackrest: the archived file),
#               so each run archives a new segment, never the already-archived path.
#   throughput  an archiver loop exactly like PostgreSQL's over a pg_wal holding SEGMENTS real
#               consecutive segments, each with archive_status/SEG.ready: for each in order,
#               `stowage wal-push --parallel 8 pg_wal/SEG`, and after its exit 0 .ready
#               becomes .done. Whole loop timed -> MB/s. (pgbackrest archive-push with
#               archive-async=y, process-max=PGBR_PROCESS_MAX in the same loop, for reference.)
#   live        a cluster with archive_mode=on and `archive_command = 'stowage wal-push
#               --parallel 8 %p'` under `pgbench -c 8 -T 60`; every second pg_stat_archiver
#               and the number of pg_wal/archive_status/*.ready are sampled. Reports the
#               largest .ready backlog and whether it stayed bounded (same run with pgbackrest
#               async archive-push for reference).
#   replay      recovery of a copy of the base backup through the ~1 GiB of WAL archived after
#               it (recovery.signal, recovery_target_action=promote, no target: end of WAL),
#               timed from `pg_ctl start` until the promoted server accepts connections, with
#               `restore_command = 'stowage wal-fetch --prefetch 8 %f %p'` vs
#               `restore_command = 'cp ARCHIVE/%f %p'` (replay from a local WAL copy) vs
#               `pgbackrest archive-get` (archive-async=y, its prefetching mode).
# Results: OUTDIR/wal-results/{push,throughput,replay}.{json,md} (hyperfine exports),
# live.tsv and live-TOOL.tsv (the samples), facts.tsv, env.txt, summary.md, logs/.
# Every hyperfine command runs once first, unmeasured (after its prepare), and is checked
# (the segment is in the repository, every segment is archived, the recovered cluster holds
# every pgbench transaction); one that fails is left out and the script exits 1.
#
# Targets (summary.md checks each; ratios use hyperfine medians):
#   push        stowage wal-push median <= 0.6x pgbackrest archive-push median (local and S3)
#   throughput  stowage wal-push --parallel loop >= 250 MB/s
#   live        no failed archive_command, backlog drained, max .ready <= LIVE_MAX_READY
#   replay      stowage wal-fetch --prefetch replay time <= 1.25x the cp replay time
#
# `benches/wal.sh --summary [RESULTS]` prints the summary of a finished run again.
#
# Environment:
#   STOWAGE_BENCH_DIR  default OUTDIR (/var/tmp/stowage-bench); the cluster, WAL, repositories
#                 and scratch live in OUTDIR/wal, results in OUTDIR/wal-results
#   QUICK=1       smoke test in a few minutes: SCALE=5, SEGMENTS=4, WAL_MIB=112, LIVE_SECONDS=10,
#                 LAT_RUNS=3; OUTDIR defaults to $STOWAGE_BENCH_DIR/quick
#   RUNS          hyperfine --runs for throughput and replay (default 3)
#   LAT_RUNS      hyperfine --runs for push (default 10)
#   BENCHES       subset of "push throughput live replay" (default all)
#   TOOLS         subset of "stowage pgbackrest" (default both; TOOLS=pgbackrest needs no
#                 stowage binary). cp is always the replay baseline.
#   STORES        stowage stores for push: subset of "local s3" (default both)
#   SCALE         pgbench -i scale of the clusters (default 20, ~300 MB)
#   WAL_MIB       WAL generated after the base backup (default 1024, at least (SEGMENTS+3)*16)
#   SEGMENTS      segments in the throughput loop (default 64: 1 GiB)
#   PARALLEL, PREFETCH   --parallel of wal-push and --prefetch of wal-fetch (default 8, 8)
#   LIVE_SECONDS, LIVE_CLIENTS   pgbench -T and -c of the live run (default 60, 8)
#   LIVE_MAX_READY     largest .ready backlog still called bounded (default 16)
#   COMPRESSION_LEVEL  pgbackrest's zst compress-level (default 3, as the issue sets it)
#   STOWAGE_WAL_LEVEL  stowage's wal_compression_level (default: stowage's own default, 1,
#                 chosen for latency; set 3 to compare at equal levels)
#   PGBR_PROCESS_MAX   pgbackrest process-max for its async modes (default 2, the core count)
#   INIT_ARGS     arguments of `stowage init` (default none: the production Argon2id cost; the
#                 key cache pays it once per host, so timed pushes do not; set
#                 "--kdf-memory-kib 1024 --kdf-iterations 1" for a cheap KDF as in s3.sh)
#   PG_BIN        PostgreSQL binaries (default /usr/lib/postgresql/15/bin)
#   STOWAGE_BIN, S3_SERVER_BIN   default target/release/stowage and
#                 target/release/examples/s3-server (built with cargo build --release if missing)
#   PORT          the S3 server's port (default 0: a free one)
#   STOWAGE_PASSWORD   the repositories' passphrase (a fixed benchmark passphrase by default)
#   KEEP=1        keep OUTDIR/wal/run (repositories, spools, logs of the servers) at the end
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

BENCH_TAG=wal
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"   # log, warn, die, has, q

# ------------------------------------------------------------------ summary
# summarize RESULTS: Markdown from facts.tsv, {push,throughput,replay}.json, live*.tsv
summarize() {
    BENCH_LIB="$(dirname "${BASH_SOURCE[0]}")/lib" python3 - "$1" <<'PY'
import json, os, statistics, sys
from functools import partial

sys.path.insert(0, os.environ["BENCH_LIB"])
import summary  # noqa: E402  (benches/lib/summary.py)

results = sys.argv[1]

read_tsv = partial(summary.read_tsv, results)
group = partial(summary.group, results)
table = summary.table

facts = {r["key"]: r["value"] for r in read_tsv("facts.tsv")}
fact = lambda k, d=None: facts.get(k, d)
verdict = lambda ok: "PASS" if ok else "FAIL"

env = os.path.join(results, "env.txt")
if os.path.exists(env):
    with open(env) as f:
        print("".join("    " + line for line in f))

# ---- push latency
push = group("push")
if push:
    target = float(fact("push_max_ratio", 0.6))
    print(f"## One archive command, one 16 MiB segment ({fact('push_segment', '?')}), whole process\n")
    print(f"Ratio = median / pgbackrest median; target <= {target}x.\n")
    base = next((r for c, r in push.items() if c.startswith("pgbackrest")), None)
    rows = []
    for cmd, r in push.items():
        ratio = r["median"] / base["median"] if base and not cmd.startswith("pgbackrest") else None
        rows.append([cmd, f"{r['median'] * 1000:.1f}", f"{r['mean'] * 1000:.1f} ± {(r.get('stddev') or 0) * 1000:.1f}",
                     f"{r['min'] * 1000:.1f}", f"{r['max'] * 1000:.1f}", len(r.get("times", [])),
                     "" if ratio is None else f"{ratio:.2f}x",
                     "" if ratio is None else verdict(ratio <= target)])
    print(table(["command", "median ms", "mean ± sd ms", "min ms", "max ms", "runs", "vs pgbackrest", "verdict"], rows))
    print()

# ---- throughput
tp = group("throughput")
if tp:
    nbytes = int(fact("throughput_bytes", 0))
    target = float(fact("throughput_min_mbs", 250))
    print(f"## Archiver loop over {fact('throughput_segments', '?')} segments ({nbytes / 2**20:.0f} MiB), "
          f"one archive command per segment in order\n")
    print(f"MB/s = bytes / median wall time; target for stowage >= {target:.0f} MB/s.\n")
    rows = []
    for cmd, r in tp.items():
        mbs = nbytes / r["median"] / 1e6
        stow = cmd.startswith("stowage")
        rows.append([cmd, f"{r['median']:.2f}", f"{r['mean']:.2f} ± {r.get('stddev') or 0:.2f}", f"{mbs:.0f}",
                     verdict(mbs >= target) if stow else "(reference)"])
    print(table(["command", "median s", "mean ± sd s", "MB/s", "verdict"], rows))
    print()

# ---- live
live = read_tsv("live.tsv")
if live:
    limit = int(fact("live_max_ready", 16))
    print(f"## Live archiving under pgbench -c {fact('live_clients', '?')} -T {fact('live_seconds', '?')} "
          f"(samples every second)\n")
    print(f"Backlog = .ready files in pg_wal/archive_status; lag = segments finished but not yet reported "
          f"archived by pg_stat_archiver. Bounded: no failure, drained after pgbench, max .ready <= {limit}.\n")

    def segno(name):
        return int(name[8:16], 16) * 256 + int(name[16:24], 16) if name and len(name) >= 24 else None

    rows = []
    for r in live:
        samples = read_tsv(r["samples"])
        run = [s for s in samples if s["phase"] in ("run", "end")]
        ready = [int(s["ready"]) for s in run if s["ready"] != ""]
        lags = []
        for s in run:
            a, c = segno(s["last_archived_wal"]), segno(s["current_wal"])
            if c is not None:
                lags.append(max(0, c - 1 - a) if a is not None else 0)
        failed = int(r["failed"] or 0)
        max_ready = max(ready) if ready else None
        ok = failed == 0 and r["drained"] == "yes" and max_ready is not None and max_ready <= limit
        wal = int(r["wal_bytes"] or 0)
        secs = float(r["seconds"] or 0)
        rows.append([r["tool"], r["archive_command"], f"{wal / 1e6:.0f}", f"{wal / secs / 1e6:.1f}" if secs else "n/a",
                     f"{float(r['tps']):.0f}" if r["tps"] else "n/a", r["archived"], failed,
                     "n/a" if max_ready is None else max_ready,
                     f"{statistics.mean(ready):.1f}" if ready else "n/a",
                     max(lags) if lags else "n/a", r["ready_at_end"], r["drain_s"], verdict(ok)])
    print(table(["tool", "archive_command", "WAL MB", "WAL MB/s", "tps", "archived", "failed", "max .ready",
                 "mean .ready", "max lag", ".ready at end", "drain s", "bounded"], rows))
    print()

# ---- replay
rp = group("replay")
if rp:
    target = float(fact("replay_max_ratio", 1.25))
    nbytes = int(fact("replay_bytes", 0))
    print(f"## Recovery of the base backup through {fact('replay_segments', '?')} archived segments "
          f"({nbytes / 2**20:.0f} MiB), start to promoted server accepting connections\n")
    print(f"Ratio = median / cp median (time; lower is faster); target for stowage <= {target}x.\n")
    base = next((r for c, r in rp.items() if c.startswith("cp")), None)
    rows = []
    for cmd, r in rp.items():
        ratio = r["median"] / base["median"] if base and not cmd.startswith("cp") else None
        stow = cmd.startswith("stowage")
        rows.append([cmd, f"{r['median']:.2f}", f"{r['mean']:.2f} ± {r.get('stddev') or 0:.2f}",
                     f"{nbytes / r['median'] / 1e6:.0f}",
                     "" if ratio is None else f"{ratio:.2f}x",
                     verdict(ratio <= target) if stow and ratio is not None else ("(reference)" if ratio else "")])
    print(table(["restore_command", "median s", "mean ± sd s", "WAL MB/s", "vs cp", "verdict"], rows))
    print()

if not (push or tp or live or rp):
    print("(no results)")
PY
}

summary_mode wal-results "$@"

# ------------------------------------------------------------------ settings
if [[ "${QUICK:-0}" == 1 ]]; then
    : "${SCALE:=5}" "${SEGMENTS:=4}" "${LIVE_SECONDS:=10}" "${LAT_RUNS:=3}"
else
    : "${SCALE:=20}" "${SEGMENTS:=64}" "${LIVE_SECONDS:=60}" "${LAT_RUNS:=10}"
fi
OUTDIR=$(bench_outdir "${1:-}")
RUNS="${RUNS:-3}"
BENCHES="${BENCHES:-push throughput live replay}"
TOOLS="${TOOLS:-stowage pgbackrest}"
STORES="${STORES:-local s3}"
# The throughput loop takes SEGMENTS full segments strictly between the base backup's stop
# segment and the last (switched) one: ask for enough WAL.
min_wal=$(((SEGMENTS + 3) * 16))
if [[ "${QUICK:-0}" == 1 ]]; then WAL_MIB="${WAL_MIB:-$min_wal}"; else WAL_MIB="${WAL_MIB:-1024}"; fi
((WAL_MIB >= min_wal)) || WAL_MIB=$min_wal
PARALLEL="${PARALLEL:-8}"
PREFETCH="${PREFETCH:-8}"
LIVE_CLIENTS="${LIVE_CLIENTS:-8}"
LIVE_MAX_READY="${LIVE_MAX_READY:-16}"
COMPRESSION_LEVEL="${COMPRESSION_LEVEL:-3}"
PGBR_PROCESS_MAX="${PGBR_PROCESS_MAX:-2}"
INIT_ARGS="${INIT_ARGS-}"
STOWAGE_WAL_LEVEL="${STOWAGE_WAL_LEVEL:-}"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
PORT="${PORT:-0}"
PUSH_MAX_RATIO=0.6 THROUGHPUT_MIN_MBS=250 REPLAY_MAX_RATIO=1.25

WALDIR="$OUTDIR/wal"          # everything of this benchmark but the results
GEN="$WALDIR/gen"             # kept: generator cluster, its WAL archive, base backup, live template
RUN="$WALDIR/run"             # this run: repositories, spools, fake pg_wal dirs, restored clusters
RESULTS="$OUTDIR/wal-results"
LOGS="$RESULTS/logs"
PGLOGS="$LOGS/postgres"        # server logs (written by the postgres user)
STANZA=bench                  # pgbackrest stanza of the generator cluster
CLUSTER=bench                 # stowage cluster name of the generator cluster's WAL
BUCKET=stowage-wal            # the S3 server's bucket

case "$WALDIR" in *[\"\\\'\ ]*) die "OUTDIR must not contain quotes, backslashes or spaces: $WALDIR" ;; esac
export STOWAGE_PASSWORD="${STOWAGE_PASSWORD:-stowage-bench-password}"
# Each stowage command gets its settings from its own config file (STOWAGE_CONFIG), nothing
# from the caller's environment.
unset STOWAGE_PASSWORD_FILE STOWAGE_REPO STOWAGE_CONFIG
unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN AWS_DEFAULT_REGION AWS_ROLE_ARN \
    AWS_WEB_IDENTITY_TOKEN_FILE AWS_CONTAINER_CREDENTIALS_RELATIVE_URI \
    AWS_CONTAINER_CREDENTIALS_FULL_URI AWS_ENDPOINT_URL_S3 AWS_ENDPOINT_URL
unset PGOPTIONS PGHOST PGPORT PGUSER PGDATABASE PGSERVICE PGPASSWORD

FAILED=()   # what was left out because its check run failed

# pg_user_setup, pgbr_check_zst, pg_sock; free_port, pg_conf, pg_start, pg_stop, sql, now,
# secs_since (the generated cluster is wal.sh's own: GEN_VERSION and make_gen below replace
# lib/pg.sh's)
# shellcheck source-path=SCRIPTDIR source=lib/pg.sh
source "$SCRIPT_DIR/lib/pg.sh"

for b in $BENCHES; do has "push throughput live replay" "$b" || die "unknown bench '$b' (push throughput live replay)"; done
for t in $TOOLS; do has "stowage pgbackrest" "$t" || die "unknown tool '$t' (stowage pgbackrest)"; done
for s in $STORES; do has "local s3" "$s" || die "unknown store '$s' (local s3)"; done

# ------------------------------------------------------------------ tools
missing=()
command -v hyperfine >/dev/null || missing+=(hyperfine)
command -v python3 >/dev/null || missing+=(python3)
[[ -x /usr/bin/time ]] || missing+=(time)
if has "$TOOLS" pgbackrest; then command -v pgbackrest >/dev/null || missing+=(pgbackrest); fi
install_missing "${missing[@]}"
[[ -x "$PG_BIN/initdb" && -x "$PG_BIN/pgbench" ]] \
    || die "no PostgreSQL binaries in $PG_BIN (apt-get install postgresql-15)"

# Server-side commands run as `postgres` (as_pg: runuser), and so do the timed archive
# commands, as under a real archiver (PGRUN: setpriv costs ~1.5 ms rather than runuser's ~7 ms,
# the same for every tool); lib/pg.sh.
pg_user_setup
if [[ $(id -u) -eq 0 ]]; then PG_UID=$(id -u postgres); else PG_UID=$(id -u); fi

S="" SRV=""
if has "$TOOLS" stowage; then
    target_dir="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
    [[ "$target_dir" == /* ]] || target_dir="$REPO_ROOT/$target_dir"
    S="${STOWAGE_BIN:-$target_dir/release/stowage}"
    build=()
    [[ -n "${STOWAGE_BIN:-}" || -x "$S" ]] || build+=(--bin stowage)
    if has "$STORES" s3; then
        SRV="${S3_SERVER_BIN:-$target_dir/release/examples/s3-server}"
        [[ -n "${S3_SERVER_BIN:-}" || -x "$SRV" ]] || build+=(--example s3-server)
    fi
    if ((${#build[@]})); then
        log "cargo build --release ${build[*]}"
        cargo build --release "${build[@]}" --manifest-path "$REPO_ROOT/Cargo.toml" \
            || die "cargo build --release failed"
    fi
    [[ -x "$S" ]] || die "no stowage binary at $S"
    [[ -z "$SRV" || -x "$SRV" ]] || die "no s3-server binary at $SRV"
    for sub in wal-push wal-fetch; do
        "$S" "$sub" --help >/dev/null 2>&1 \
            || die "$S has no '$sub' command (an older build? rebuild: cargo build --release, or set STOWAGE_BIN)"
    done
    S=$(realpath "$S")   # the commands run from other directories
    [[ -z "$SRV" ]] || SRV=$(realpath "$SRV")
    as_pg test -x "$S" || die "user postgres cannot execute $S (archive_command runs as postgres): use a STOWAGE_BIN it can reach"
fi
if has "$TOOLS" pgbackrest; then pgbr_check_zst archive-push; fi

# ------------------------------------------------------------------ scratch space, cleanup
rm -rf "$PGLOGS"   # pg_ctl -l appends
mkdir -p "$RESULTS" "$LOGS" "$PGLOGS" "$WALDIR"
to_pg "$PGLOGS"
chmod a+x "$OUTDIR" "$WALDIR"   # the postgres user must reach its directories below
as_pg test -x "$WALDIR" || die "user postgres cannot reach $WALDIR: use an OUTDIR whose parents are world-searchable"
rm -rf "$RUN" "$WALDIR/gen.partial"
pg_sock stowage-walsock

RUNNING=()          # data directories of the servers this script started
BG_PIDS=()          # background processes this script started (S3 server, pgbench)
HELPER="$RUN/bin/helper"
cleanup() {
    local rc=$? d p
    for p in "${BG_PIDS[@]}"; do
        [[ -n "$p" ]] || continue
        kill "$p" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true   # a child stopped or stuck in I/O must not hang the exit
        wait "$p" 2>/dev/null || true
    done
    [[ -x "$HELPER" && -f "$RUN/bench.env" ]] && "$HELPER" replay-stop >/dev/null 2>&1 || true
    for d in "${RUNNING[@]}"; do
        [[ -f "$d/postmaster.pid" ]] && as_pg "$PG_BIN/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1 || true
    done
    rm -rf "$SOCK" "$WALDIR/gen.partial"
    if [[ "${KEEP:-0}" != 1 ]]; then rm -rf "$RUN"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

segs() { find "$1" -maxdepth 1 -type f -regextype posix-extended -regex '.*/[0-9A-F]{24}' -printf '%f\n' | LC_ALL=C sort; }

# ------------------------------------------------------------------ generated WAL (kept)
# GEN/data          the generator cluster (stopped): pgbench -i -s SCALE, then pgbench runs
# GEN/archive       every segment it completed, copied by archive_command = 'cp'
# GEN/base          pg_basebackup -X none taken between pgbench -i and the runs
# GEN/live-template a stopped cluster after pgbench -i -s SCALE, copied for each live run
# GEN/gen.env       the parameters it was made with and what the script needs to know
GEN_VERSION=2
make_gen() {
    local P="$WALDIR/gen.partial" port t0 t lsn0 diff target rounds=0
    rm -rf "$GEN" "$P"
    mkdir -p "$P/archive"
    to_pg "$P"
    port=$(free_port)
    log "generating WAL: initdb (16 MiB segments), pgbench -i -s $SCALE, base backup, then pgbench until $WAL_MIB MiB of WAL"
    t0=$(now) t=$(now)
    as_pg "$PG_BIN/initdb" -D "$P/data" -U postgres -A trust -E UTF8 --no-locale >"$LOGS/gen-initdb.log" 2>&1 \
        || { cat "$LOGS/gen-initdb.log" >&2; die "initdb failed"; }
    # fsync off only speeds this up: the WAL written is the same. full_page_writes stays on
    # (the default) and a checkpoint comes every minute: the WAL mixes full-page images and
    # records as a busy server's does.
    pg_conf "$P/data" wal_level replica archive_mode on \
        archive_command "test ! -f $P/archive/%f && cp %p $P/archive/%f" \
        fsync off synchronous_commit off max_wal_senders 4 checkpoint_timeout 1min max_wal_size 4GB
    pg_start "$P/data" "$port" "$P/postgres.log" ""
    local T_INITDB; T_INITDB=$(secs_since "$t"); t=$(now)
    "$PG_BIN/pgbench" -h "$SOCK" -p "$port" -U postgres -i -s "$SCALE" -q postgres >"$LOGS/gen-pgbench-i.log" 2>&1 \
        || { tail -20 "$LOGS/gen-pgbench-i.log" >&2; die "pgbench -i failed"; }
    sql "$port" CHECKPOINT
    local T_PGBENCH_INIT; T_PGBENCH_INIT=$(secs_since "$t"); t=$(now)
    # -X none: the backup needs the archive for its WAL; the server waits until the segment
    # holding the backup's end is archived.
    as_pg "$PG_BIN/pg_basebackup" -h "$SOCK" -p "$port" -U postgres -D "$P/base" -Fp -X none -c fast \
        >"$LOGS/gen-basebackup.log" 2>&1 || { cat "$LOGS/gen-basebackup.log" >&2; die "pg_basebackup failed"; }
    local T_BASEBACKUP; T_BASEBACKUP=$(secs_since "$t"); t=$(now)
    lsn0=$(sql "$port" "SELECT pg_current_wal_lsn()")
    target=$((WAL_MIB * 1024 * 1024))
    : >"$LOGS/gen-pgbench.log"
    while :; do
        diff=$(sql "$port" "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn0')::bigint")
        ((diff < target)) || break
        rounds=$((rounds + 1))
        printf '\r  %s MiB of %s' "$((diff / 1048576))" "$WAL_MIB" >&2
        "$PG_BIN/pgbench" -h "$SOCK" -p "$port" -U postgres -n -c 4 -j 2 -T 10 postgres >>"$LOGS/gen-pgbench.log" 2>&1 \
            || { tail -20 "$LOGS/gen-pgbench.log" >&2; die "pgbench failed"; }
    done
    printf '\n' >&2
    local HISTORY_COUNT END_SEG SYSID
    HISTORY_COUNT=$(sql "$port" "SELECT count(*) FROM pgbench_history")
    END_SEG=$(sql "$port" "SELECT pg_walfile_name(pg_switch_wal())")
    local T_PGBENCH; T_PGBENCH=$(secs_since "$t"); t=$(now)
    for _ in $(seq 600); do
        [[ $(sql "$port" "SELECT coalesce(last_archived_wal, '') >= '$END_SEG' FROM pg_stat_archiver") == t ]] && break
        sleep 0.5
    done
    [[ -f "$P/archive/$END_SEG" ]] || die "segment $END_SEG was not archived in 5 minutes; see $P/postgres.log"
    pg_stop "$P/data" fast   # a clean stop with archiving on switches and archives once more
    RUNNING=()
    SYSID=$(as_pg "$PG_BIN/pg_controldata" "$P/data" | awk -F': *' '/Database system identifier/ {print $2}')
    local segsize; segsize=$(as_pg "$PG_BIN/pg_controldata" "$P/data" | awk -F': *' '/Bytes per WAL segment/ {print $2}')
    [[ "$segsize" == 16777216 ]] || die "the cluster has $segsize-byte WAL segments, not 16 MiB"

    local BASE_START_SEG BASE_STOP_SEG backup_file
    BASE_START_SEG=$(sed -n 's/^START WAL LOCATION: .*(file \([0-9A-F]\{24\}\)).*/\1/p' "$P/base/backup_label")
    backup_file=$(find "$P/archive" -maxdepth 1 -name "$BASE_START_SEG.*.backup" | head -n 1)
    [[ -n "$backup_file" ]] || die "no $BASE_START_SEG.*.backup in the archive"
    BASE_STOP_SEG=$(sed -n 's/^STOP WAL LOCATION: .*(file \([0-9A-F]\{24\}\)).*/\1/p' "$backup_file")
    [[ -n "$BASE_START_SEG" && -n "$BASE_STOP_SEG" ]] || die "cannot read the base backup's WAL range"

    # The live runs start from a copy of this (wal_level=minimal: pgbench -i writes little WAL).
    t=$(now)
    as_pg "$PG_BIN/initdb" -D "$P/live-template" -U postgres -A trust -E UTF8 --no-locale >"$LOGS/gen-initdb-live.log" 2>&1 \
        || { cat "$LOGS/gen-initdb-live.log" >&2; die "initdb failed"; }
    port=$(free_port)
    pg_start "$P/live-template" "$port" "$P/live-template.log" \
        "-c fsync=off -c synchronous_commit=off -c wal_level=minimal -c max_wal_senders=0"
    "$PG_BIN/pgbench" -h "$SOCK" -p "$port" -U postgres -i -s "$SCALE" -q postgres >"$LOGS/gen-pgbench-i-live.log" 2>&1 \
        || { tail -20 "$LOGS/gen-pgbench-i-live.log" >&2; die "pgbench -i failed"; }
    pg_stop "$P/live-template" fast
    RUNNING=()
    local T_TEMPLATE; T_TEMPLATE=$(secs_since "$t")
    local T_TOTAL; T_TOTAL=$(secs_since "$t0")
    local GEN_SCALE=$SCALE GEN_WAL_MIB=$WAL_MIB WAL_AFTER_BASE=$diff PGBENCH_ROUNDS=$rounds
    declare -p GEN_VERSION GEN_SCALE GEN_WAL_MIB SYSID BASE_START_SEG BASE_STOP_SEG END_SEG HISTORY_COUNT \
        WAL_AFTER_BASE PGBENCH_ROUNDS T_INITDB T_PGBENCH_INIT T_BASEBACKUP T_PGBENCH T_TEMPLATE T_TOTAL \
        | sed 's/^declare -[-a-zA-Z]* //' >"$P/gen.env"
    mv "$P" "$GEN"
    log "WAL generated in ${T_TOTAL}s (initdb ${T_INITDB}s, pgbench -i ${T_PGBENCH_INIT}s, base backup ${T_BASEBACKUP}s, pgbench ${T_PGBENCH}s for $((diff / 1048576)) MiB, live template ${T_TEMPLATE}s)"
}

gen_ok=0
if [[ -f "$GEN/gen.env" ]]; then
    (
        want=$GEN_VERSION
        # shellcheck disable=SC1091
        source "$GEN/gen.env"
        [[ "$GEN_VERSION" == "$want" && "$GEN_SCALE" == "$SCALE" && "$GEN_WAL_MIB" == "$WAL_MIB" ]]
    ) && gen_ok=1
fi
if ((gen_ok)); then
    log "reusing the generated cluster and WAL in $GEN"
else
    make_gen
fi
# shellcheck disable=SC1091
source "$GEN/gen.env"
ARCH="$GEN/archive"
mapfile -t ALL_SEGS < <(segs "$ARCH")
REPLAY_SEGS=() MID_SEGS=()     # from the base backup's start on; full segments of pgbench WAL
for s in "${ALL_SEGS[@]}"; do
    [[ "$s" < "$BASE_START_SEG" ]] || REPLAY_SEGS+=("$s")
    [[ "$s" > "$BASE_STOP_SEG" && "$s" < "$END_SEG" ]] && MID_SEGS+=("$s")
done
((${#MID_SEGS[@]} >= SEGMENTS)) || die "only ${#MID_SEGS[@]} full segments of pgbench WAL in $ARCH, need $SEGMENTS: delete $GEN"
TP_SEGS=("${MID_SEGS[@]:0:SEGMENTS}")
LAT_SEG=${MID_SEGS[$((${#MID_SEGS[@]} / 2))]}
SEG_BYTES=16777216

# ------------------------------------------------------------------ this run's layout
mkdir -p "$RUN"/{bin,home,cache,repos,spool,conf,pgbr}
# fake_datadir DIR SEG...: DIR/pg_wal/SEG (hard links to the archive) with
# archive_status/SEG.ready, and DIR/global/pg_control (pgbackrest reads it from pg1-path)
fake_datadir() {
    local dir=$1 s; shift
    mkdir -p "$dir/pg_wal/archive_status" "$dir/global"
    cp "$GEN/data/global/pg_control" "$dir/global/"
    for s in "$@"; do
        ln "$ARCH/$s" "$dir/pg_wal/$s" 2>/dev/null || cp "$ARCH/$s" "$dir/pg_wal/$s"
        : >"$dir/pg_wal/archive_status/$s.ready"
    done
}

# stowage_conf NAME REPO CLUSTER [TOML...]: RUN/conf/NAME.toml, spool RUN/spool/NAME
stowage_conf() {
    local name=$1 repo=$2 cluster=$3; shift 3
    mkdir -p "$RUN/spool/$name"
    to_pg "$RUN/spool/$name"
    {
        printf 'repo = "%s"\n' "$repo"
        printf 'password_file = "%s"\n' "$RUN/conf/password"
        printf 'cluster = "%s"\n' "$cluster"
        printf 'spool_dir = "%s"\n' "$RUN/spool/$name"
        [[ -z "$STOWAGE_WAL_LEVEL" ]] || printf 'wal_compression_level = %s\n' "$STOWAGE_WAL_LEVEL"
        printf '%s\n' "$@"
    } >"$RUN/conf/$name.toml"
    echo "$RUN/conf/$name.toml"
}
stowage_init() {   # stowage_init CONF: `stowage init` as postgres, or die
    # shellcheck disable=SC2086
    "${PGRUN[@]}" "STOWAGE_CONFIG=$1" "$S" init $INIT_ARGS >"$LOGS/init-$(basename "$1" .toml).log" 2>&1 \
        || { tail -20 "$LOGS/init-$(basename "$1" .toml).log" >&2; die "stowage init ($1) failed"; }
}

# pgbr_conf NAME STANZA PG1PATH [OPTION=VALUE...]: RUN/pgbr/NAME.conf, repository, log, lock
# and spool under RUN/pgbr/NAME
pgbr_conf() {
    local name=$1 stanza=$2 pg1=$3 d="$RUN/pgbr/$1"; shift 3
    mkdir -p "$d"/{repo,log,lock,spool}
    {
        echo "[global]"
        echo "repo1-path=$d/repo"
        echo "log-path=$d/log"
        echo "lock-path=$d/lock"
        echo "spool-path=$d/spool"
        echo "compress-type=zst"
        echo "compress-level=$COMPRESSION_LEVEL"
        echo "log-level-console=warn"
        printf '%s\n' "$@"
        echo
        echo "[$stanza]"
        echo "pg1-path=$pg1"
        echo "pg1-socket-path=$SOCK"
    } >"$RUN/pgbr/$name.conf"
    echo "$RUN/pgbr/$name.conf"
}

# The helper the hyperfine commands call: the archiver loop, resets between runs, and the
# replay steps. Settings come from RUN/bench.env, written below.
cat >"$HELPER" <<'HELPER_EOF'
#!/usr/bin/env bash
# helper archive DIR CMD...      PostgreSQL's archiver over DIR/pg_wal: for each .ready in
#                                name order run `CMD pg_wal/SEG` from DIR; exit 0 -> .done
# helper reset DIR               every .done back to .ready
# helper wait-idle MARKER        wait until no process of the postgres user has MARKER in its
#                                command line or environment (async leftovers of a run)
# helper replay-prepare MODE     stop the restored server, copy the base backup, configure
#                                recovery with MODE's restore_command, empty the spools
# helper replay-run MODE         start it; return when the promoted server accepts connections
# helper replay-check MODE       the recovered cluster holds every pgbench transaction
# helper replay-stop             stop the restored server (immediate)
set -euo pipefail
source "$(dirname "$0")/../bench.env"   # PG_BIN SOCK PG_UID; the replay settings once written
as_pg() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

wait_idle() {
    local marker=$1 pids p
    for _ in $(seq 600); do
        pids=()
        for p in $(grep -lsaF -- "$marker" /proc/[0-9]*/cmdline /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3 | sort -u); do
            [[ $p == "$$" || $p == "$BASHPID" ]] && continue
            [[ $(stat -c %u "/proc/$p" 2>/dev/null) == "$PG_UID" ]] && pids+=("$p")
        done
        ((${#pids[@]})) || return 0
        sleep 0.1
    done
    echo "helper: processes ${pids[*]} still running with $marker after 60 s" >&2
    return 1
}

replay_stop() {
    if [[ -f "$RESTORE/postmaster.pid" ]]; then
        as_pg "$PG_BIN/pg_ctl" -D "$RESTORE" -m immediate -w -t 120 stop >/dev/null
    fi
}

case "$1" in
archive)
    dir=$2; shift 2
    cd "$dir"
    ready=(pg_wal/archive_status/*.ready)
    [[ -e "${ready[0]}" ]] || { echo "helper: nothing .ready in $dir" >&2; exit 1; }
    for r in "${ready[@]}"; do
        seg=$(basename "$r" .ready)
        "$@" "pg_wal/$seg" || { echo "helper: archive command failed ($?) on $seg" >&2; exit 1; }
        mv "$r" "pg_wal/archive_status/$seg.done"
    done
    ;;
reset)
    for d in "$2"/pg_wal/archive_status/*.done; do
        if [[ -e "$d" ]]; then mv "$d" "${d%.done}.ready"; fi
    done
    ;;
wait-idle)
    wait_idle "$2"
    ;;
replay-prepare)
    mode=$2
    replay_stop
    for m in "${IDLE_MARKERS[@]}"; do wait_idle "$m"; done
    rm -rf "$RESTORE"
    cp -a "$BASE" "$RESTORE"
    for d in "${SPOOLS[@]}"; do
        find "$d" -mindepth 1 -delete
    done
    printf '%s\n' \
        "listen_addresses = ''" "unix_socket_directories = '$SOCK'" "port = $RPORT" \
        "archive_mode = 'off'" "hot_standby = 'off'" "recovery_target_action = 'promote'" \
        "fsync = 'on'" "synchronous_commit = 'on'" \
        "restore_command = '${RC[$mode]//\'/\'\'}'" >>"$RESTORE/postgresql.auto.conf"
    as_pg touch "$RESTORE/recovery.signal"
    rm -f "$RLOG_DIR/replay-$mode.log"
    ;;
replay-run)
    mode=$2
    # shellcheck disable=SC2086
    RLOG="$RLOG_DIR/replay-$mode.log"
    as_pg env ${RENV[$mode]:-} "$PG_BIN/pg_ctl" -D "$RESTORE" -l "$RLOG" start >/dev/null
    start=$EPOCHSECONDS
    while :; do
        if "$PG_BIN/pg_isready" -q -h "$SOCK" -p "$RPORT" \
            && [[ $("$PG_BIN/psql" -X -Atq -h "$SOCK" -p "$RPORT" -U postgres -d postgres \
                    -c 'SELECT pg_is_in_recovery()' 2>/dev/null) == f ]]; then
            break
        fi
        pid=$(head -n 1 "$RESTORE/postmaster.pid" 2>/dev/null || true)
        if { [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; } \
            || { [[ -z "$pid" ]] && ((EPOCHSECONDS - start > 30)); }; then
            tail -20 "$RLOG" >&2
            echo "helper: the restored server ($mode) exited during recovery" >&2
            exit 1
        fi
        if ((EPOCHSECONDS - start > REPLAY_TIMEOUT)); then
            tail -20 "$RLOG" >&2
            echo "helper: recovery ($mode) did not finish in $REPLAY_TIMEOUT s" >&2
            exit 1
        fi
        sleep 0.05
    done
    ;;
replay-check)
    RLOG="$RLOG_DIR/replay-$2.log"
    n=$("$PG_BIN/psql" -X -Atq -h "$SOCK" -p "$RPORT" -U postgres -d postgres -c 'SELECT count(*) FROM pgbench_history')
    tli=$("$PG_BIN/psql" -X -Atq -h "$SOCK" -p "$RPORT" -U postgres -d postgres -c 'SELECT timeline_id FROM pg_control_checkpoint()')
    echo "recovered: $n pgbench transactions (expected $HISTORY_COUNT), timeline $tli"
    grep -E 'redo done|archive recovery complete|selected new timeline' "$RLOG" || true
    [[ "$n" == "$HISTORY_COUNT" ]]
    ;;
replay-stop)
    replay_stop
    ;;
*)
    echo "helper: unknown command $1" >&2; exit 2 ;;
esac
HELPER_EOF
chmod 755 "$HELPER" "$RUN/bin"
declare -p PG_BIN SOCK PG_UID >"$RUN/bench.env"

to_pg "$RUN"
# the passphrase: readable by the postgres user, which runs every stowage command
printf '%s\n' "$STOWAGE_PASSWORD" >"$RUN/conf/password"
chmod 0640 "$RUN/conf/password"
if [[ $(id -u) -eq 0 ]]; then chgrp "$(id -gn postgres)" "$RUN/conf/password"; fi
unset STOWAGE_PASSWORD   # commands read the password file named in their config

# ------------------------------------------------------------------ environment record
load=$(cut -d' ' -f1 /proc/loadavg)
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  host: $(hostname)  cpus: $(nproc)  load at start: $load"
    echo "tools: $(hyperfine --version); $("$PG_BIN/postgres" --version)$(has "$TOOLS" pgbackrest && printf '; %s' "$(pgbackrest version)")"
    if has "$TOOLS" stowage; then
        echo "stowage: $("$S" --version 2>/dev/null || echo unknown) ($S, built $(date -u -r "$S" +%Y-%m-%dT%H:%M:%SZ)); init: ${INIT_ARGS:-(defaults)}"
    fi
    echo "benches: $BENCHES; tools: $TOOLS; stores: $STORES; quick: ${QUICK:-0}; runs: push $LAT_RUNS, others $RUNS"
    echo "WAL: scale $SCALE, ${#REPLAY_SEGS[@]} segments after the base backup ($((WAL_AFTER_BASE / 1048576)) MiB written), generated in ${T_TOTAL}s (pgbench ${T_PGBENCH}s)"
    echo "zstd level: stowage ${STOWAGE_WAL_LEVEL:-default (1)}, pgbackrest $COMPRESSION_LEVEL; --parallel $PARALLEL, --prefetch $PREFETCH; pgbackrest process-max $PGBR_PROCESS_MAX (async modes)"
    echo "data, repositories, spools on: $WALDIR ($(df --output=fstype "$WALDIR" | tail -1))"
} >"$RESULTS/env.txt"
warn_if_busy "$load"
{
    printf 'key\tvalue\n'
    printf 'segment_bytes\t%s\n' "$SEG_BYTES"
    printf 'push_segment\t%s\n' "$LAT_SEG"
    printf 'push_max_ratio\t%s\n' "$PUSH_MAX_RATIO"
    printf 'throughput_segments\t%s\n' "$SEGMENTS"
    printf 'throughput_bytes\t%s\n' "$((SEGMENTS * SEG_BYTES))"
    printf 'throughput_min_mbs\t%s\n' "$THROUGHPUT_MIN_MBS"
    printf 'live_seconds\t%s\n' "$LIVE_SECONDS"
    printf 'live_clients\t%s\n' "$LIVE_CLIENTS"
    printf 'live_max_ready\t%s\n' "$LIVE_MAX_READY"
    printf 'replay_segments\t%s\n' "${#REPLAY_SEGS[@]}"
    printf 'replay_bytes\t%s\n' "$((${#REPLAY_SEGS[@]} * SEG_BYTES))"
    printf 'replay_max_ratio\t%s\n' "$REPLAY_MAX_RATIO"
    printf 'gen_seconds\t%s\n' "$T_TOTAL"
    printf 'gen_pgbench_seconds\t%s\n' "$T_PGBENCH"
} >"$RESULTS/facts.tsv"
for b in $BENCHES; do   # only the groups this run measures: the others' results stay
    if [[ $b == live ]]; then rm -f "$RESULTS"/live*.tsv; else rm -f "$RESULTS/$b".{json,md}; fi
done

# ------------------------------------------------------------------ S3 server (as s3.sh)
S3ROOT="$RUN/s3"
if has "$TOOLS" stowage && has "$STORES" s3 && has "$BENCHES" push; then
    log "starting the S3 server on $S3ROOT"
    "$SRV" --root "$S3ROOT" --bucket "$BUCKET" --port "$PORT" \
        >"$LOGS/s3-server.out" 2>"$LOGS/s3-server.log" &
    SERVER_PID=$!
    BG_PIDS+=("$SERVER_PID")
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
fi

# ------------------------------------------------------------------ pgbackrest stanzas
# Each pgbackrest repository gets its stanza from stanza-create against the running
# generator cluster (so its system identifier is the WAL's); the cluster is stopped again
# before anything is timed (archive-push and archive-get read pg_control, not the server).
PGBR_PUSH="" PGBR_TP="" PGBR_GET=""
if has "$TOOLS" pgbackrest && { has "$BENCHES" push || has "$BENCHES" throughput || has "$BENCHES" replay; }; then
    PGBR_PUSH=$(pgbr_conf push "$STANZA" "$GEN/data" archive-async=n)
    PGBR_TP=$(pgbr_conf throughput "$STANZA" "$GEN/data" archive-async=y "process-max=$PGBR_PROCESS_MAX")
    PGBR_GET=$(pgbr_conf replay "$STANZA" "$RUN/restore" archive-async=y "process-max=$PGBR_PROCESS_MAX" \
        "archive-get-queue-max=$((PREFETCH * SEG_BYTES))")
    to_pg "$RUN/pgbr"
    gport=$(free_port)
    log "pgbackrest stanza-create against the generator cluster (system identifier $SYSID)"
    pg_start "$GEN/data" "$gport" "$PGLOGS/gen-stanza.log" "-c archive_mode=off"
    for conf in "$PGBR_PUSH" "$PGBR_TP" "$PGBR_GET"; do
        as_pg pgbackrest "--config=$conf" "--stanza=$STANZA" "--pg1-path=$GEN/data" "--pg1-port=$gport" \
            stanza-create >>"$LOGS/pgbackrest-stanza-create.log" 2>&1 \
            || { tail -20 "$LOGS/pgbackrest-stanza-create.log" >&2; die "pgbackrest stanza-create failed ($conf)"; }
    done
    pg_stop "$GEN/data" fast
    RUNNING=()
fi

# ------------------------------------------------------------------ hyperfine driver
source "$(dirname "${BASH_SOURCE[0]}")/lib/hyperfine.sh"   # add, run_group

# wipe_wal CONF REPO_DIR SPOOL: shell text removing the objects wal-push stored (not config,
# keys or the cluster record, and not the directories, which exist in steady state as
# pgbackrest's archive directories do), and the spool's markers and prefetched files (not its
# cached cluster identity), once no process started with CONF is left (a helper pushing
# ahead, if any)
wipe_wal() {
    echo "$(q "$HELPER") wait-idle $(q "STOWAGE_CONFIG=$1") && find $(q "$2/wal") $(q "$2/wal-index") -type f -delete 2>/dev/null; find $(q "$3") -type f ! -name 'cluster-*' -delete"
}
# found_seg DIR SEG: shell text succeeding when DIR holds an object named SEG
found_seg() { echo "test -n \"\$(find $(q "$1") -type f -name $2 -print -quit 2>/dev/null)\""; }

# ------------------------------------------------------------------ 1. push latency
if has "$BENCHES" push; then
    LAT="$RUN/push-pgdata"
    fake_datadir "$LAT" "$LAT_SEG"
    to_pg "$LAT"
    cat "$LAT/pg_wal/$LAT_SEG" >/dev/null
    log "push: one segment ($LAT_SEG), $LAT_RUNS runs each"
    if has "$TOOLS" stowage; then
        for store in $STORES; do
            if [[ $store == local ]]; then
                repo_dir="$RUN/repos/push-local"
                conf=$(stowage_conf push-local "$repo_dir" "$CLUSTER")
            else
                repo_dir="$S3ROOT/$BUCKET/push"
                conf=$(stowage_conf push-s3 "s3://$BUCKET/push" "$CLUSTER" "" "[s3]" \
                    "endpoint = \"$ENDPOINT\"" "region = \"$AWS_REGION\"" "path_style = true")
            fi
            stowage_init "$conf"
            cmd="cd $(q "$LAT") && ${PGRUN_S}STOWAGE_CONFIG=$(q "$conf") $(q "$S") wal-push pg_wal/$LAT_SEG"
            add "stowage wal-push ($store)" "$(wipe_wal "$conf" "$repo_dir" "$RUN/spool/push-$store")" "$cmd" \
                "$cmd && $(found_seg "$repo_dir/wal" "$LAT_SEG")"
        done
    fi
    if has "$TOOLS" pgbackrest; then
        cmd="cd $(q "$LAT") && ${PGRUN_S}pgbackrest --config=$(q "$PGBR_PUSH") --stanza=$STANZA --pg1-path=$(q "$LAT") archive-push pg_wal/$LAT_SEG"
        add "pgbackrest archive-push" \
            "find $(q "$RUN/pgbr/push/repo/archive/$STANZA") -name '$LAT_SEG-*' -delete" "$cmd" \
            "$cmd && $(found_seg "$RUN/pgbr/push/repo/archive/$STANZA" "'$LAT_SEG-*'")"
    fi
    run_group push "$LAT_RUNS"
fi

# ------------------------------------------------------------------ 2a. archiver loop throughput
if has "$BENCHES" throughput; then
    TP="$RUN/throughput-pgdata"
    fake_datadir "$TP" "${TP_SEGS[@]}"
    to_pg "$TP"
    cat "$TP"/pg_wal/0* >/dev/null
    log "throughput: archiver loop over $SEGMENTS segments (${TP_SEGS[0]} .. ${TP_SEGS[-1]})"
    if has "$TOOLS" stowage; then
        conf=$(stowage_conf throughput "$RUN/repos/throughput" "$CLUSTER")
        stowage_init "$conf"
        cmd="${PGRUN_S}STOWAGE_CONFIG=$(q "$conf") $(q "$HELPER") archive $(q "$TP") $(q "$S") wal-push --parallel $PARALLEL"
        count="find $(q "$RUN/repos/throughput/wal") -type f -regextype posix-extended -regex '.*/[0-9A-F]{24}' -printf '%f\\n' | sort -u | wc -l"
        add "stowage wal-push --parallel $PARALLEL" \
            "$(wipe_wal "$conf" "$RUN/repos/throughput" "$RUN/spool/throughput") && $(q "$HELPER") reset $(q "$TP")" \
            "$cmd" "$cmd && test \"\$($count)\" -eq $SEGMENTS"
    fi
    if has "$TOOLS" pgbackrest; then
        cmd="${PGRUN_S}$(q "$HELPER") archive $(q "$TP") pgbackrest --config=$(q "$PGBR_TP") --stanza=$STANZA --pg1-path=$(q "$TP") archive-push"
        count="find $(q "$RUN/pgbr/throughput/repo/archive/$STANZA") -type f -name '0*-*' | wc -l"
        add "pgbackrest archive-push (async, process-max $PGBR_PROCESS_MAX)" \
            "$(q "$HELPER") wait-idle $(q "--config=$PGBR_TP") && find $(q "$RUN/pgbr/throughput/repo/archive/$STANZA") -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} + && find $(q "$RUN/pgbr/throughput/spool") -mindepth 1 -delete && $(q "$HELPER") reset $(q "$TP")" \
            "$cmd" "$cmd && test \"\$($count)\" -eq $SEGMENTS"
    fi
    run_group throughput "$RUNS"
    [[ -n "$PGBR_TP" ]] && "$HELPER" wait-idle "--config=$PGBR_TP" || true
    rm -rf "$TP"
fi

# ------------------------------------------------------------------ 2b. live archiving
# live_run TOOL: a copy of the template cluster archiving with TOOL under pgbench; samples
# every second into live-TOOL.tsv, one summary row into live.tsv.
live_run() {
    local tool=$1 data="$RUN/live-$1" port conf="" ac ac_show env=() samples="live-$1.tsv" pid t0 t_end lsn0 lsn1
    local a0 f0 a1 f1 drained=no drain_s ready tps
    port=$(free_port)
    rm -rf "$data"
    cp -a "$GEN/live-template" "$data"
    pg_conf "$data" wal_level replica archive_mode on archive_command '' synchronous_commit off
    if [[ $tool == stowage ]]; then
        conf=$(stowage_conf live "$RUN/repos/live" live)
        stowage_init "$conf"
        ac="$S wal-push --parallel $PARALLEL %p"
        ac_show="stowage wal-push --parallel $PARALLEL %p"
        env=("STOWAGE_CONFIG=$conf" "HOME=$RUN/home" "XDG_CACHE_HOME=$RUN/cache")
    else
        conf=$(pgbr_conf live live "$data" archive-async=y "process-max=$PGBR_PROCESS_MAX")
        to_pg "$RUN/pgbr"
        ac="pgbackrest --config=$conf --stanza=live archive-push %p"
        ac_show="pgbackrest archive-push %p (async, process-max $PGBR_PROCESS_MAX)"
    fi
    log "live ($tool): archive_command = '$ac', pgbench -c $LIVE_CLIENTS -T $LIVE_SECONDS"
    pg_start "$data" "$port" "$PGLOGS/live-$tool.log" "" "${env[@]}"
    if [[ $tool == pgbackrest ]]; then
        as_pg pgbackrest "--config=$conf" --stanza=live "--pg1-port=$port" stanza-create \
            >"$LOGS/live-pgbackrest-stanza-create.log" 2>&1 \
            || { tail -20 "$LOGS/live-pgbackrest-stanza-create.log" >&2; die "pgbackrest stanza-create (live) failed"; }
    fi
    sql "$port" "ALTER SYSTEM SET archive_command = '${ac//\'/\'\'}'" && sql "$port" "SELECT pg_reload_conf()" >/dev/null
    # whatever pgbench -i left is archived before the measured window
    for _ in $(seq 600); do
        [[ $(find "$data/pg_wal/archive_status" -name '*.ready' | wc -l) -eq 0 ]] && break
        sleep 0.2
    done
    read -r a0 f0 < <(sql "$port" "SELECT archived_count, failed_count FROM pg_stat_archiver" | tr '|' ' ')
    lsn0=$(sql "$port" "SELECT pg_current_wal_lsn()")
    printf 'phase\tt\tready\tarchived_count\tfailed_count\tlast_archived_wal\tcurrent_wal\n' >"$RESULTS/$samples"
    sample() {   # sample PHASE: one line of the samples file; echoes the .ready count
        local row r
        r=$(find "$data/pg_wal/archive_status" -name '*.ready' 2>/dev/null | wc -l)
        row=$("$PG_BIN/psql" -X -Atq -F $'\t' -h "$SOCK" -p "$port" -U postgres -d postgres -c \
            "SELECT archived_count, failed_count, coalesce(last_archived_wal, ''), pg_walfile_name(pg_current_wal_lsn()) FROM pg_stat_archiver" \
            2>/dev/null) || row=$'\t\t\t'
        printf '%s\t%s\t%s\t%s\n' "$1" "$(secs_since "$t0")" "$r" "$row" >>"$RESULTS/$samples"
        echo "$r"
    }
    t0=$(now)
    "$PG_BIN/pgbench" -h "$SOCK" -p "$port" -U postgres -n -c "$LIVE_CLIENTS" -T "$LIVE_SECONDS" postgres \
        >"$LOGS/live-$tool-pgbench.log" 2>&1 &
    pid=$!
    BG_PIDS+=("$pid")
    while kill -0 "$pid" 2>/dev/null; do
        ready=$(sample run)
        printf '\r  %5.0fs  .ready %3s' "$(secs_since "$t0")" "$ready" >&2
        sleep 1
    done
    wait "$pid" || warn "pgbench (live, $tool) exited non-zero; see $LOGS/live-$tool-pgbench.log"
    BG_PIDS=("${BG_PIDS[@]/$pid}")
    t_end=$(secs_since "$t0")
    lsn1=$(sql "$port" "SELECT pg_current_wal_lsn()")
    ready=$(sample end)
    local ready_end=$ready t1; t1=$(now)
    # drained: nothing .ready and the archiver has reported the segment before the current one
    for _ in $(seq 120); do
        if [[ $ready -eq 0 && $(sql "$port" "SELECT coalesce(last_archived_wal, '') >= pg_walfile_name(pg_current_wal_lsn() - 16777216) FROM pg_stat_archiver") == t ]]; then
            drained=yes
            break
        fi
        sleep 1
        ready=$(sample drain)
    done
    drain_s=$(secs_since "$t1")
    printf '\n' >&2
    read -r a1 f1 < <(sql "$port" "SELECT archived_count, failed_count FROM pg_stat_archiver" | tr '|' ' ')
    local wal_bytes; wal_bytes=$(sql "$port" "SELECT pg_wal_lsn_diff('$lsn1', '$lsn0')::bigint")
    pg_stop "$data" fast
    RUNNING=("${RUNNING[@]/$data}")
    tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$LOGS/live-$tool-pgbench.log" | head -n 1)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$ac_show" "$t_end" "$wal_bytes" "${tps:-}" \
        "$((a1 - a0))" "$((f1 - f0))" "$ready_end" "$drained" "$drain_s" "$samples" >>"$RESULTS/live.tsv"
    ((f1 - f0 == 0)) || warn "live ($tool): archive_command failed $((f1 - f0)) times; see $PGLOGS/live-$tool.log"
    [[ $drained == yes ]] || warn "live ($tool): the archiver had not caught up 2 minutes after pgbench ended"
    if [[ $tool == stowage ]]; then
        "${PGRUN[@]}" "STOWAGE_CONFIG=$conf" "$S" wal-show >"$LOGS/live-stowage-wal-show.log" 2>&1 || true
    fi
    rm -rf "$data"
}
if has "$BENCHES" live; then
    printf 'tool\tarchive_command\tseconds\twal_bytes\ttps\tarchived\tfailed\tready_at_end\tdrained\tdrain_s\tsamples\n' \
        >"$RESULTS/live.tsv"
    for tool in $TOOLS; do live_run "$tool"; done
fi

# ------------------------------------------------------------------ 3. replay
if has "$BENCHES" replay; then
    FILL="$RUN/replay-pgdata"
    fake_datadir "$FILL" "${REPLAY_SEGS[@]}"
    to_pg "$FILL"
    declare -A RC=() RENV=()
    RC[cp]="cp $ARCH/%f %p"
    SPOOLS=() IDLE_MARKERS=()
    MODES=(cp)
    if has "$TOOLS" stowage; then
        conf=$(stowage_conf replay "$RUN/repos/replay" "$CLUSTER")
        stowage_init "$conf"
        log "replay: archiving ${#REPLAY_SEGS[@]} segments into the stowage repository (wal-push --parallel $PARALLEL, not timed)"
        t=$(now)
        if "${PGRUN[@]}" "STOWAGE_CONFIG=$conf" "$HELPER" archive "$FILL" "$S" wal-push --parallel "$PARALLEL" \
            >"$LOGS/replay-fill-stowage.log" 2>&1; then
            log "  done in $(secs_since "$t")s"
            "${PGRUN[@]}" "STOWAGE_CONFIG=$conf" "$S" wal-show >"$LOGS/replay-stowage-wal-show.log" 2>&1 || true
            "${PGRUN[@]}" "STOWAGE_CONFIG=$conf" "$S" wal-window >"$LOGS/replay-stowage-wal-window.log" 2>&1 || true
            RC[stowage]="$S wal-fetch --prefetch $PREFETCH %f %p"
            RENV[stowage]="STOWAGE_CONFIG=$conf HOME=$RUN/home XDG_CACHE_HOME=$RUN/cache"
            SPOOLS+=("$RUN/spool/replay")
            IDLE_MARKERS+=("STOWAGE_CONFIG=$conf")
            MODES+=(stowage)
        else
            warn "stowage wal-push failed while filling the replay repository; see $LOGS/replay-fill-stowage.log"
            tail -5 "$LOGS/replay-fill-stowage.log" | sed 's/^/    /' >&2
            FAILED+=("replay/fill/stowage")
        fi
        "$HELPER" reset "$FILL"
    fi
    if has "$TOOLS" pgbackrest; then
        log "replay: archiving ${#REPLAY_SEGS[@]} segments into the pgbackrest repository (async archive-push, not timed)"
        t=$(now)
        if "${PGRUN[@]}" "$HELPER" archive "$FILL" pgbackrest "--config=$PGBR_GET" "--stanza=$STANZA" "--pg1-path=$FILL" \
            archive-push >"$LOGS/replay-fill-pgbackrest.log" 2>&1; then
            log "  done in $(secs_since "$t")s"
            "$HELPER" wait-idle "--config=$PGBR_GET"
            # shellcheck disable=SC2089  # the quotes are part of the restore_command text
            RC[pgbackrest]="pgbackrest --config=$PGBR_GET --stanza=$STANZA archive-get %f \"%p\""
            SPOOLS+=("$RUN/pgbr/replay/spool")
            IDLE_MARKERS+=("--config=$PGBR_GET")
            MODES+=(pgbackrest)
        else
            warn "pgbackrest archive-push failed while filling the replay repository; see $LOGS/replay-fill-pgbackrest.log"
            tail -5 "$LOGS/replay-fill-pgbackrest.log" | sed 's/^/    /' >&2
            FAILED+=("replay/fill/pgbackrest")
        fi
    fi
    rm -rf "$FILL"
    RESTORE="$RUN/restore" BASE="$GEN/base" RPORT=$(free_port) RLOG_DIR="$PGLOGS"
    REPLAY_TIMEOUT=3600
    declare -p RESTORE BASE RPORT RLOG_DIR HISTORY_COUNT REPLAY_TIMEOUT RC RENV SPOOLS IDLE_MARKERS \
        >>"$RUN/bench.env"
    cat "${REPLAY_SEGS[@]/#/$ARCH/}" >/dev/null   # the cp baseline reads a warm page cache too
    declare -A LABEL=([cp]="cp (local WAL copy)" [stowage]="stowage wal-fetch --prefetch $PREFETCH"
        [pgbackrest]="pgbackrest archive-get (async, process-max $PGBR_PROCESS_MAX)")
    log "replay: recovery through ${#REPLAY_SEGS[@]} segments ($BASE_START_SEG .. ${REPLAY_SEGS[-1]}), restore_command:"
    for m in "${MODES[@]}"; do
        printf '    %-10s %s\n' "$m" "${RC[$m]}" >&2
        add "${LABEL[$m]}" "$(q "$HELPER") replay-prepare $m" "$(q "$HELPER") replay-run $m" \
            "$(q "$HELPER") replay-run $m && $(q "$HELPER") replay-check $m"
    done
    run_group replay "$RUNS"
    "$HELPER" replay-stop || true
    rm -rf "$RESTORE"
fi

# ------------------------------------------------------------------ summary
finish   # exits 1 when something was left out
