#!/usr/bin/env bash
# pitr.sh [OUTDIR] -- point-in-time restore: `stowage restore pg` and `stowage drill` against
# pgBackRest's restore, and the restore's file writing against `zstd -d` of the same bytes.
#
# The PostgreSQL 15 cluster made by `pgbench -i -s SCALE` (100: ~1.6 GB data directory) is the
# one pg.sh keeps, stopped, in OUTDIR/pg/gen (made here when missing or of another SCALE;
# benches/lib/pg.sh). Each run works on a `cp -a` copy of it in OUTDIR/pitr/run/data, started
# with archive_mode = on and
#     archive_command = 'stowage wal-push %p && pgbackrest --stanza=bench archive-push %p'
# (each half only when TOOLS has that tool), synchronous_commit = off (fsync stays on),
# autovacuum = off (no background work during the timed restores, no stray commit in the
# drill's gap), checkpoint_timeout = 1min (the WAL mixes full-page images and records) and
# track_commit_timestamp = on (the drill's reference commit time); local repositories for both
# tools on the same disk, everything run as `postgres`. pgBackRest: compress-type=zst,
# compress-level=3, process-max=2, start-fast=y, archive-push synchronous; its archive-get is
# the restore_command its restore writes, asynchronous with a queue of PREFETCH segments (its
# prefetching mode); stowage's restore_command (written by `restore pg`) is `stowage wal-fetch`
# with `wal_prefetch = PREFETCH` in the restore settings file (its own spool directory).
# Then, in this order:
#   setup  `stowage backup pg-base --fast` and `pgbackrest backup --type=full` (one each,
#          untimed, stowage first), then `pgbench -n -c PGBENCH_CLIENTS` in 10 s rounds until
#          WAL_MIB (1024) MiB of WAL are written after the backups, pg_switch_wal() and wait
#          until both archives hold every segment; the number of pgbench_history rows is the
#          expected content of every recovered cluster.
#   full   full restore to the latest point, files plus WAL replay until the server accepts
#          connections, hyperfine RUNS times each into the same empty directory: `stowage
#          restore pg --to DIR --latest --target-action promote` vs `pgbackrest --pg1-path=DIR
#          --type=default restore` (recovery to the end of the archive), each followed by the
#          same start: pg_ctl start as postgres with `-c archive_mode=off -c hot_standby=off`,
#          its own port and socket, polled every 50 ms until pg_isready and `SELECT
#          pg_is_in_recovery()` is false. Prepare: stop the previous server (immediate), wait
#          until no prefetcher of the previous run is left, empty DIR and both tools' restore
#          spools, sync. Checked once first: the promoted server holds every pgbench
#          transaction. The last server is stopped after the group.
#   files  the files part only, same prepare: `stowage restore pg --to DIR --latest` vs
#          `pgbackrest restore` (no server start) vs `zstd -d -T2 -c data.tar.zst | tar -xf -
#          -C DIR` (decompress and write: the comparable) and `zstd -d -T2 -c data.tar.zst >
#          /dev/null` (decompression alone), where data.tar.zst = `tar -cf - -C DIR . | zstd -3
#          -T2` of a data directory restored once before (untimed, with stowage or else
#          pgbackrest): the same bytes. Throughput = that restored directory's bytes / median.
#          Every command under /usr/bin/time -f %M (peak RSS, largest single process).
#   drill  `INSERT INTO rpo VALUES (clock_timestamp())` every 100 ms (pgbench -c 1, a script
#          with \sleep 100 ms) for TICK_SECONDS; X = commit time of the last tick
#          (pg_xact_commit_timestamp); wait GAP seconds; ONE more row (a commit after the
#          target); pg_switch_wal() and wait until archived; then ONE `stowage --json drill
#          --target-time T --scratch DIR --pg-bin PG_BIN` with T = X + GAP/2 (the key cache the
#          other commands use), under /usr/bin/time. The report's rpo_seconds is compared with
#          the gap the script made (T - X) and its last_commit with X; rto_seconds,
#          restore_seconds, replay_seconds, wal_replayed_bytes, wal_segments are printed.
# Results: OUTDIR/pitr-results/{full,files}.{json,md} (hyperfine exports), drill-report.json
# (the drill's --json report), rss.tsv, facts.tsv, env.txt, summary.md, logs/ (server logs in
# logs/postgres/). Each run replaces all of them. A command failing its check is left out and
# the script exits 1.
#
# Targets (summary.md checks each):
#   full   stowage median <= 0.7x pgbackrest's
#   files  stowage MB/s >= 1.5x pgbackrest's and >= 0.8x `zstd -d -T2 | tar -x` (decompress
#          and write; the pure decompression is shown beside it)
#   drill  rto_seconds < 30; rpo_seconds = the gap the script made
#
# `benches/pitr.sh --summary [RESULTS]` prints the summary of a finished run again.
#
# Environment:
#   STOWAGE_BENCH_DIR  default OUTDIR (/var/tmp/stowage-bench); the generated cluster is
#                 OUTDIR/pg/gen (shared with pg.sh), this run's files OUTDIR/pitr/run, results
#                 OUTDIR/pitr-results
#   QUICK=1       smoke test: SCALE=5, WAL_MIB=128, TICK_SECONDS=2, GAP=4; OUTDIR defaults to
#                 $STOWAGE_BENCH_DIR/quick
#   RUNS          hyperfine --runs (default 3)
#   BENCHES       subset of "full files drill" (default all; drill needs stowage)
#   TOOLS         subset of "stowage pgbackrest" (default both; zstd is always in files)
#   SCALE         pgbench -i scale (default 100)
#   WAL_MIB       WAL written by pgbench after the base backups (default 1024)
#   PGBENCH_CLIENTS   pgbench -c of the WAL rounds (default 4)
#   PREFETCH      segments fetched ahead of recovery: stowage wal_prefetch, pgBackRest
#                 archive-async=y with archive-get-queue-max = PREFETCH x 16 MiB (default 8;
#                 0 = both synchronous)
#   TICK_SECONDS, GAP   the drill's writes and pause (default 5, 10 s)
#   COMPRESSION_LEVEL  pgbackrest's zst compress-level (default 3); stowage uses its repository's
#   PGBR_PROCESS_MAX   pgbackrest process-max (default 2, the core count)
#   INIT_ARGS     arguments of `stowage init` (default none: the production Argon2id cost)
#   PG_BIN        PostgreSQL binaries (default /usr/lib/postgresql/15/bin)
#   STOWAGE_BIN   default target/release/stowage (built with cargo build --release if missing)
#   STOWAGE_PASSWORD   the repository's passphrase (a fixed benchmark passphrase by default)
#   KEEP=1        keep OUTDIR/pitr/run (the cluster copy, repositories) at the end
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

BENCH_TAG=pitr
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$SCRIPT_DIR/lib/common.sh"   # log, warn, die, has, q

# ------------------------------------------------------------------ summary
# summarize RESULTS: Markdown from facts.tsv, {full,files}.json, rss.tsv, drill-report.json
summarize() {
    BENCH_LIB="$SCRIPT_DIR/lib" python3 - "$1" <<'PY'
import json, os, sys
from functools import partial

sys.path.insert(0, os.environ["BENCH_LIB"])
import summary  # noqa: E402  (benches/lib/summary.py)
from summary import mb, mib, num, table, verdict  # noqa: E402

results = sys.argv[1]
group = partial(summary.group, results)
fact = summary.facts(results).get
rss = summary.rss(results)
pick = lambda g, prefix: next((r for c, r in g.items() if c.startswith(prefix)), None)
summary.print_env(results)

shown = False
wal = num(fact("wal_bytes"))
# ---- 1. full restore with replay
full = group("full")
if full:
    shown = True
    target = float(fact("full_max_ratio", 0.7))
    print(f"## 1. Full restore to the latest point: pgbench -s {fact('scale', '?')} "
          f"({mb(num(fact('restored_bytes')))} MB restored) + {mb(wal)} MB of WAL replayed, until the "
          f"promoted server accepts connections\n")
    print(f"Each run into an empty directory; restore_command prefetch: {fact('prefetch', '?')} segments. "
          f"Target: stowage median <= {target:g}x pgbackrest's.\n")
    pb = pick(full, "pgbackrest")
    rows = []
    for cmd, r in full.items():
        stow = cmd.startswith("stowage")
        ratio = r["median"] / pb["median"] if pb and stow else None
        rows.append([cmd, f"{r['median']:.2f}", f"{r['mean']:.2f} ± {r.get('stddev') or 0:.2f}",
                     len(r.get("times", [])), f"{ratio:.2f}x" if ratio is not None else "",
                     verdict(ratio <= target) if ratio is not None else ("(reference)" if not stow else "n/a")])
    print(table(["command", "median s", "mean ± sd s", "runs", "vs pgbackrest", "verdict"], rows))
    print()

# ---- 2. files only
files = group("files")
if files:
    shown = True
    data = num(fact("restored_bytes"))
    t_pb, t_zw = float(fact("files_min_ratio", 1.5)), float(fact("zstd_min_ratio", 0.8))
    print(f"## 2. The files part only: {mb(data)} MB data directory (no server start)\n")
    print(f"MB/s = the restored directory's bytes / median wall time. data.tar.zst = `tar | zstd -3 -T2` "
          f"of a restored directory: {mb(num(fact('tar_bytes')))} MB of tar in {mb(num(fact('tar_zst_bytes')))} MB. "
          f"Targets: stowage >= {t_pb:g}x pgbackrest's MB/s and >= {t_zw:g}x `zstd -d -T2 | tar -x`'s "
          f"(decompress and write; `> /dev/null` is decompression alone, for reference). "
          f"Peak RSS: largest single process, highest of the runs.\n")
    pb, zw, zn = pick(files, "pgbackrest"), pick(files, "zstd -d -T2 | tar"), pick(files, "zstd -d -T2 >")
    rows = []
    for cmd, r in files.items():
        stow = cmd.startswith("stowage")
        vs = lambda ref: f"{ref['median'] / r['median']:.2f}x" if ref and stow else ""
        checks = []
        if stow and pb:
            checks.append(f"pgbackrest {verdict(pb['median'] / r['median'] >= t_pb)}")
        if stow and zw:
            checks.append(f"zstd+tar {verdict(zw['median'] / r['median'] >= t_zw)}")
        rr = rss.get(("files", cmd))
        rows.append([cmd.replace("|", "\\|"), f"{r['median']:.2f}", f"{r['mean']:.2f} ± {r.get('stddev') or 0:.2f}",
                     len(r.get("times", [])), f"{data / r['median'] / 1e6:.0f}" if data else "n/a",
                     vs(pb), vs(zw), vs(zn), mib(num(rr["maxrss_kb"])) if rr else "n/a",
                     "; ".join(checks) if checks else ("(reference)" if not stow else "n/a")])
    print(table(["command", "median s", "mean ± sd s", "runs", "MB/s", "vs pgbackrest", "vs zstd+tar",
                 "vs zstd > /dev/null", "peak RSS MiB", "verdict"], rows))
    print()

# ---- 3. drill
path = os.path.join(results, "drill-report.json")
if os.path.exists(path) or fact("drill_target_time"):
    shown = True
    try:
        with open(path) as f:
            rep = json.load(f)
    except (OSError, ValueError):
        rep = {}
    rto_max = float(fact("drill_max_rto", 30))
    gap = num(fact("drill_gap_seconds"))
    print(f"## 3. Restore drill: `stowage --json drill --target-time T`\n")
    print(f"{fact('drill_ticks', '?')} rows written every 100 ms, the last committed at X = "
          f"{fact('drill_last_tick', '?')}; a pause of {fact('drill_pause', '?')} s, then one more row "
          f"({fact('drill_after_commit', '?')}); T = X + {fact('drill_pause', '?')}/2 = {fact('drill_target_time', '?')}. "
          f"Exit {fact('drill_exit', '?')}, wall {fact('drill_wall_s', '?')} s, peak RSS {mib(num(fact('drill_maxrss_kb')))} MiB.\n")
    rpo, rto = num(rep.get("rpo_seconds")), num(rep.get("rto_seconds"))
    rows = [
        ["ok", rep.get("ok"), ""],
        ["snapshot", rep.get("snapshot"), ""],
        ["rto_seconds", f"{rto:.2f}" if rto is not None else "n/a",
         f"target < {rto_max:g} s: {verdict(rto < rto_max)}" if rto is not None else "**NOT met** (no figure)"],
        ["rpo_seconds", f"{rpo:.3f}" if rpo is not None else "n/a",
         (f"gap made by the script T - X = {gap:.3f} s: "
          + ("matches" if abs(rpo - gap) < 0.001 else f"**differs by {rpo - gap:+.3f} s**"))
         if rpo is not None and gap is not None else ""],
        ["last_commit", rep.get("last_commit"), f"X = {fact('drill_last_tick', '?')}"],
        ["requested_time", rep.get("requested_time"), f"T = {fact('drill_target_time', '?')}"],
        ["restore_seconds", f"{num(rep.get('restore_seconds')):.2f}" if num(rep.get("restore_seconds")) is not None else "n/a",
         f"{mb(num(rep.get('bytes_restored')))} MB restored"],
        ["replay_seconds", f"{num(rep.get('replay_seconds')):.2f}" if num(rep.get("replay_seconds")) is not None else "n/a",
         "server start to promotion"],
        ["wal_replayed_bytes", f"{mb(num(rep.get('wal_replayed_bytes')))} MB", f"{rep.get('wal_segments', '?')} segments"],
        ["recovery end", rep.get("recovery_end_lsn"), f"{rep.get('recovery_end_reason', '')}, timeline {rep.get('timeline', '?')}"],
    ]
    print(table(["field", "value", "note"], rows))
    steps = rep.get("steps") or []
    if steps:
        print()
        print(table(["step", "ok", "s", "detail"],
                    [[s.get("name"), s.get("ok"), f"{num(s.get('seconds')) or 0:.2f}",
                      str(s.get("detail", "")).replace("|", "\\|")] for s in steps]))
    print()

if not shown:
    print("(no results)")
PY
}

summary_mode pitr-results "$@"

# ------------------------------------------------------------------ settings
if [[ "${QUICK:-0}" == 1 ]]; then
    : "${SCALE:=5}" "${WAL_MIB:=128}" "${TICK_SECONDS:=2}" "${GAP:=4}"
else
    : "${SCALE:=100}" "${WAL_MIB:=1024}" "${TICK_SECONDS:=5}" "${GAP:=10}"
fi
OUTDIR=$(bench_outdir "${1:-}")
RUNS="${RUNS:-3}"
BENCHES="${BENCHES:-full files drill}"
TOOLS="${TOOLS:-stowage pgbackrest}"
PGBENCH_CLIENTS="${PGBENCH_CLIENTS:-4}"
PREFETCH="${PREFETCH:-8}"
COMPRESSION_LEVEL="${COMPRESSION_LEVEL:-3}"
PGBR_PROCESS_MAX="${PGBR_PROCESS_MAX:-2}"
INIT_ARGS="${INIT_ARGS-}"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
FULL_MAX_RATIO=0.7 FILES_MIN_RATIO=1.5 ZSTD_MIN_RATIO=0.8 DRILL_MAX_RTO=30

PGDIR="$OUTDIR/pg"            # the generated cluster, shared with pg.sh
GEN="$PGDIR/gen"              # kept: the stopped cluster after pgbench -i
RUN="$OUTDIR/pitr/run"        # this run: the cluster copy, repositories, spools, restores
RESULTS="$OUTDIR/pitr-results"
LOGS="$RESULTS/logs"
PGLOGS="$LOGS/postgres"        # server logs (written by the postgres user)
DATA="$RUN/data"              # the running cluster
TARGET="$RUN/target"          # every timed restore goes here
DRILL_DIR="$RUN/drill"        # the drill's scratch directory
STANZA=bench                  # pgbackrest stanza
CLUSTER=bench                 # stowage cluster name

case "$OUTDIR" in *[\"\\\'\ ]*) die "OUTDIR must not contain quotes, backslashes or spaces: $OUTDIR" ;; esac
export STOWAGE_PASSWORD="${STOWAGE_PASSWORD:-stowage-bench-password}"
unset STOWAGE_PASSWORD_FILE STOWAGE_REPO STOWAGE_CONFIG STOWAGE_CACHE_DIR
unset PGOPTIONS PGHOST PGPORT PGUSER PGDATABASE PGSERVICE PGPASSWORD

FAILED=()   # what was left out because it failed

# the setup shared with the other PostgreSQL benches (pg_user_setup, pg_sock, pg_cleanup,
# archive_setup, pgbr_conf, ...), the server helpers (pg_start, sql, ...), make_gen, gen_ensure
# shellcheck source-path=SCRIPTDIR source=lib/pg.sh
source "$SCRIPT_DIR/lib/pg.sh"

for b in $BENCHES; do has "full files drill" "$b" || die "unknown bench '$b' (full files drill)"; done
for t in $TOOLS; do has "stowage pgbackrest" "$t" || die "unknown tool '$t' (stowage pgbackrest)"; done
[[ -n "${TOOLS// /}" ]] || die "TOOLS is empty"
[[ "$SCALE" =~ ^[1-9][0-9]*$ ]] || die "SCALE must be a positive integer"
[[ "$WAL_MIB" =~ ^[1-9][0-9]*$ ]] || die "WAL_MIB must be a positive integer"
[[ "$PREFETCH" =~ ^[0-9]+$ ]] || die "PREFETCH must be a number"
if ! [[ "$GAP" =~ ^[0-9]+$ ]] || ((GAP < 2)); then die "GAP must be a whole number of seconds, at least 2"; fi
[[ "$TICK_SECONDS" =~ ^[1-9][0-9]*$ ]] || die "TICK_SECONDS must be a positive integer"
if has "$BENCHES" drill && ! has "$TOOLS" stowage; then
    warn "drill needs stowage (TOOLS=$TOOLS): left out"
    BENCHES=${BENCHES//drill/}
fi
USE_PGBR=0
has "$TOOLS" pgbackrest && USE_PGBR=1

# ------------------------------------------------------------------ tools
missing=()
command -v hyperfine >/dev/null || missing+=(hyperfine)
command -v python3 >/dev/null || missing+=(python3)
command -v zstd >/dev/null || missing+=(zstd)
[[ -x /usr/bin/time ]] || missing+=(time)
if ((USE_PGBR)); then command -v pgbackrest >/dev/null || missing+=(pgbackrest); fi
install_missing "${missing[@]}"
pg_check_bins initdb pg_ctl pgbench psql pg_isready pg_controldata

# The servers, the backups, restores and the drill run as `postgres` (lib/pg.sh), with PG_BIN
# first in PATH.
CMD_PATH="$PG_BIN:/usr/local/bin:/usr/bin:/bin"
pg_user_setup "PATH=$CMD_PATH"

S=""
if has "$TOOLS" stowage; then
    find_stowage
    subs=(init wal-push wal-fetch "backup pg-base")
    has "$BENCHES" drill && subs+=(drill)
    stowage_has "${subs[@]}"
    "$S" restore pg --help 2>/dev/null | grep -q -- '--latest' \
        || die "$S has no 'restore pg --latest' (an older build? rebuild, or set STOWAGE_BIN)"
    as_pg test -x "$S" || die "user postgres cannot execute $S: use a STOWAGE_BIN it can reach"
fi
if ((USE_PGBR)); then pgbr_check_zst backup; fi

# ------------------------------------------------------------------ scratch space, cleanup
rm -rf "$LOGS"   # pg_ctl -l appends
mkdir -p "$RESULTS" "$LOGS" "$PGLOGS" "$PGDIR" "$OUTDIR/pitr"
rm -f "$RESULTS"/{full,files}.{json,md} "$RESULTS"/{facts,rss}.tsv "$RESULTS"/{env.txt,summary.md,drill-report.json}
to_pg "$PGLOGS"
chmod a+x "$OUTDIR" "$PGDIR" "$OUTDIR/pitr"   # the postgres user must reach its directories below
as_pg test -x "$OUTDIR/pitr" || die "user postgres cannot reach $OUTDIR/pitr: use an OUTDIR whose parents are world-searchable"
rm -rf "$RUN" "$PGDIR/gen.partial"
pg_sock stowage-pgsock

RUNNING=()          # data directories of the servers this script started
BG_PIDS=()          # background processes this script started (pgbench)
# besides the primary: a restored server left by an interrupted run, the drill's
cleanup() { pg_cleanup "$TARGET" "$DRILL_DIR/pgdata"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ generated cluster (kept)
gen_ensure
# shellcheck disable=SC1091
source "$GEN/gen.env"

# ------------------------------------------------------------------ this run's layout
mkdir -p "$RUN"/{bin,home,cache,spool/base,spool/restore,conf,pgbr}
log "copying the cluster to $DATA"
t=$(now)
cp -a "$GEN/data" "$DATA"
log "  copied in $(secs_since "$t")s"
PORT=$(free_port)
RPORT=$(free_port)            # the restored servers'
PGLOG="$PGLOGS/server.log"
CONN="host=$SOCK port=$PORT user=postgres dbname=postgres"

# Two settings files on one repository: base.toml for the archiver and the base backup,
# restore.toml (its own spool, wal_prefetch) for the restores and the drill, whose
# restore_command names it.
REPO="$RUN/repo"
stowage_conf() {   # stowage_conf NAME [EXTRA LINE]: RUN/conf/NAME.toml, spool RUN/spool/NAME
    {
        printf 'repo = "%s"\n' "$REPO"
        printf 'password_file = "%s"\n' "$RUN/conf/password"
        printf 'cluster = "%s"\n' "$CLUSTER"
        printf 'spool_dir = "%s"\n' "$RUN/spool/$1"
        if [[ -n "${2:-}" ]]; then printf '%s\n' "$2"; fi
    } >"$RUN/conf/$1.toml"
    echo "$RUN/conf/$1.toml"
}
BASE_CONF=$(stowage_conf base)
RCONF=$(stowage_conf restore "$( ((PREFETCH > 0)) && echo "wal_prefetch = $PREFETCH")")
RSPOOL="$RUN/spool/restore"

PGBR_CONF="$RUN/pgbr/pgbackrest.conf" PGBR_REPO="$RUN/pgbr/repo" PGBR_SPOOL="$RUN/pgbr/spool"
PGBR_GET=""   # archive-get (the restore_command): asynchronous, a queue of PREFETCH segments
if ((PREFETCH > 0)); then
    PGBR_GET=$(printf '%s\n' "[global:archive-get]" "archive-async=y" "archive-get-queue-max=$((PREFETCH * 16 * 1024 * 1024))")
fi
pgbr_conf "$PGBR_GET"

# The helper the hyperfine prepares, commands and checks call. Settings from RUN/bench.env.
HELPER="$RUN/bin/helper"
cat >"$HELPER" <<'HELPER_EOF'
#!/usr/bin/env bash
# helper archive-wait        wait until nothing is .ready (the primary's archiver is idle)
# helper switch              write a WAL record, pg_switch_wal(), wait until archived
# helper reset-target        stop the restored server, wait for leftover prefetchers, empty
#                            TARGET and both tools' restore spools, sync
# helper start-wait          start the restored server in TARGET; return once it is promoted
# helper stop-target         stop the restored server (immediate)
# helper check-recovered     the promoted server holds every pgbench transaction
# helper check-files         TARGET holds a restored data directory
set -euo pipefail
source "$(dirname "$0")/../bench.env"
source "$BENCH_LIB/pg.sh"   # sql, archive_wait, switch_wal
stop_target() {
    if [[ -f "$TARGET/postmaster.pid" ]]; then
        "${PGRUN[@]}" "$PG_BIN/pg_ctl" -D "$TARGET" -m immediate -w -t 120 stop >/dev/null
    fi
}
# wait until no process of the postgres user names MARKER (a detached stowage prefetcher or
# pgBackRest's async archive-get of the previous run)
wait_idle() {
    local marker=$1 pids p
    for _ in $(seq 600); do
        pids=()
        for p in $(grep -lsaF -- "$marker" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3 | sort -u); do
            [[ $p == "$$" || $p == "$BASHPID" ]] && continue
            [[ $(stat -c %U "/proc/$p" 2>/dev/null) == postgres ]] && pids+=("$p")
        done
        ((${#pids[@]})) || return 0
        sleep 0.1
    done
    echo "helper: processes ${pids[*]} still running with $marker after 60 s" >&2
    return 1
}
case "$1" in
archive-wait)
    archive_wait ;;
switch)
    archive_wait && switch_wal ;;
reset-target)
    stop_target
    wait_idle "$RCONF"
    wait_idle "archive-get"
    rm -rf "$TARGET"
    mkdir -m 0700 "$TARGET"
    find "$RSPOOL" -mindepth 1 -delete
    rm -rf "$PGBR_SPOOL/archive"
    if [[ $(id -u) -eq 0 ]]; then chown postgres: "$TARGET" "$RSPOOL"; fi
    sync
    ;;
start-wait)
    # -W: pg_ctl returns at once (with hot_standby off nothing connects before promotion)
    "${PGRUN[@]}" "$PG_BIN/pg_ctl" -D "$TARGET" -l "$RLOG" -W \
        -o "-p $RPORT -k $SOCK -c listen_addresses='' -c archive_mode=off -c hot_standby=off" start >/dev/null
    start=$EPOCHSECONDS
    while :; do
        if "$PG_BIN/pg_isready" -q -h "$SOCK" -p "$RPORT" \
            && [[ $(sql "$RPORT" 'SELECT pg_is_in_recovery()' 2>/dev/null) == f ]]; then
            break
        fi
        pid=$(head -n 1 "$TARGET/postmaster.pid" 2>/dev/null || true)
        if { [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; } \
            || { [[ -z "$pid" ]] && ((EPOCHSECONDS - start > 30)); }; then
            tail -20 "$RLOG" >&2
            echo "helper: the restored server exited during recovery" >&2
            exit 1
        fi
        if ((EPOCHSECONDS - start > 3600)); then
            tail -20 "$RLOG" >&2
            echo "helper: recovery did not finish in an hour" >&2
            exit 1
        fi
        sleep 0.05
    done
    ;;
stop-target)
    stop_target ;;
check-recovered)
    n=$(sql "$RPORT" 'SELECT count(*) FROM pgbench_history')
    tli=$(sql "$RPORT" 'SELECT timeline_id FROM pg_control_checkpoint()')
    echo "recovered: $n pgbench transactions (expected $HISTORY_COUNT), timeline $tli"
    grep -E 'redo done|archive recovery complete|selected new timeline' "$RLOG" | tail -3 || true
    [[ "$n" == "$HISTORY_COUNT" ]]
    ;;
check-files)
    for f in PG_VERSION global/pg_control recovery.signal; do
        [[ -f "$TARGET/$f" ]] || { echo "helper: no $f in $TARGET" >&2; exit 1; }
    done
    echo "restored: $(du -sb "$TARGET" | cut -f1) bytes in $TARGET"
    ;;
*)
    echo "helper: unknown command $1" >&2; exit 2 ;;
esac
HELPER_EOF
chmod 755 "$HELPER" "$RUN/bin"
RLOG="$PGLOGS/restored.log"
BENCH_LIB="$SCRIPT_DIR/lib"
declare -p PG_BIN SOCK PORT RPORT DATA TARGET PGLOG RLOG PGRUN RCONF RSPOOL PGBR_SPOOL BENCH_LIB >"$RUN/bench.env"
H=$(q "$HELPER")

to_pg "$RUN"
pg_password_file   # RUN/conf/password; unsets STOWAGE_PASSWORD

# ------------------------------------------------------------------ the primary
with_stowage=0
if has "$TOOLS" stowage; then with_stowage=1; fi
archive_setup "$with_stowage" "$LOGS/init.log"   # ARCHIVE_COMMAND, SERVER_ENV
pg_conf "$DATA" wal_level replica archive_mode on archive_command "$ARCHIVE_COMMAND" \
    synchronous_commit off autovacuum off checkpoint_timeout 1min track_commit_timestamp on
log "starting the cluster (port $PORT), archive_command = '$ARCHIVE_COMMAND'"
pg_start "$DATA" "$PORT" "$PGLOG" "" "${SERVER_ENV[@]}"

archive_check

fact() { printf '%s\t%s\n' "$1" "$2" >>"$RESULTS/facts.tsv"; }
printf 'key\tvalue\n' >"$RESULTS/facts.tsv"
printf 'bench\tlabel\tmaxrss_kb\tsamples\n' >"$RESULTS/rss.tsv"
fact scale "$SCALE"
fact prefetch "$PREFETCH"
fact full_max_ratio "$FULL_MAX_RATIO"
fact files_min_ratio "$FILES_MIN_RATIO"
fact zstd_min_ratio "$ZSTD_MIN_RATIO"
fact drill_max_rto "$DRILL_MAX_RTO"

# ------------------------------------------------------------------ base backups, then WAL
LSN0=$(sql "$PORT" "SELECT pg_current_wal_lsn()")
if has "$TOOLS" stowage; then
    log "stowage backup pg-base (untimed)"
    t=$(now)
    "${PGRUN[@]}" "STOWAGE_CONFIG=$BASE_CONF" "$S" --json backup pg-base --fast --dbname "$CONN" --pgdata "$DATA" \
        >"$LOGS/backup-stowage.json" 2>"$LOGS/backup-stowage.log" \
        || { tail -20 "$LOGS/backup-stowage.log" >&2; die "stowage backup pg-base failed"; }
    fact backup_seconds_stowage "$(secs_since "$t")"
    log "  $(secs_since "$t")s"
fi
if ((USE_PGBR)); then
    log "pgbackrest backup --type=full (untimed)"
    t=$(now)
    as_pg pgbackrest "--config=$PGBR_CONF" "--stanza=$STANZA" backup --type=full >"$LOGS/backup-pgbackrest.log" 2>&1 \
        || { tail -20 "$LOGS/backup-pgbackrest.log" >&2; die "pgbackrest backup failed"; }
    fact backup_seconds_pgbackrest "$(secs_since "$t")"
    log "  $(secs_since "$t")s"
fi

log "pgbench -n -c $PGBENCH_CLIENTS in 10 s rounds until $WAL_MIB MiB of WAL"
LSN1=$(sql "$PORT" "SELECT pg_current_wal_lsn()")
jobs=$PGBENCH_CLIENTS; ((jobs <= $(nproc))) || jobs=$(nproc)
t=$(now) rounds=0
: >"$LOGS/pgbench.log"
while :; do
    written=$(sql "$PORT" "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$LSN1')::bigint")
    printf '\r  %s MiB of %s' "$((written / 1048576))" "$WAL_MIB" >&2
    ((written >= WAL_MIB * 1048576)) && break
    "$PG_BIN/pgbench" -h "$SOCK" -p "$PORT" -U postgres -n -c "$PGBENCH_CLIENTS" -j "$jobs" -T 10 postgres \
        >>"$LOGS/pgbench.log" 2>&1 || { tail -20 "$LOGS/pgbench.log" >&2; die "pgbench failed"; }
    rounds=$((rounds + 1))
done
echo >&2
T_PGBENCH=$(secs_since "$t")
"$HELPER" switch || die "the last segment was not archived; see $PGLOG"
LSN_END=$(sql "$PORT" "SELECT pg_current_wal_lsn()")
HISTORY_COUNT=$(sql "$PORT" "SELECT count(*) FROM pgbench_history")
declare -p HISTORY_COUNT >>"$RUN/bench.env"
WAL_BYTES=$(sql "$PORT" "SELECT pg_wal_lsn_diff('$LSN_END', '$LSN0')::bigint")
fact wal_bytes "$WAL_BYTES"
fact wal_pgbench_bytes "$written"
fact pgbench_seconds "$T_PGBENCH"
fact pgbench_transactions "$HISTORY_COUNT"
log "  $((written / 1048576)) MiB of WAL in ${T_PGBENCH}s ($rounds rounds), $((WAL_BYTES / 1048576)) MiB from before the base backups to the end; $HISTORY_COUNT pgbench transactions"

# ------------------------------------------------------------------ environment record
load=$(cut -d' ' -f1 /proc/loadavg)
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  host: $(hostname)  cpus: $(nproc)  load at start: $load"
    echo "tools: $(hyperfine --version); $("$PG_BIN/postgres" --version); zstd $(zstd -V | grep -o 'v[0-9.]*' | head -n 1)$( ((USE_PGBR)) && printf '; %s' "$(pgbackrest version)")"
    if has "$TOOLS" stowage; then
        echo "stowage: $("$S" --version 2>/dev/null || echo unknown) ($S, built $(date -u -r "$S" +%Y-%m-%dT%H:%M:%SZ)); init: ${INIT_ARGS:-(defaults)}"
    fi
    echo "benches: $BENCHES; tools: $TOOLS; quick: ${QUICK:-0}; runs: $RUNS"
    echo "cluster: pgbench -s $SCALE, then after the base backups pgbench -c $PGBENCH_CLIENTS: $((written / 1048576)) MiB of WAL in ${T_PGBENCH}s, $HISTORY_COUNT transactions; fsync on, synchronous_commit off, autovacuum off, checkpoint_timeout 1min"
    echo "pgbackrest: compress-type=zst compress-level=$COMPRESSION_LEVEL process-max=$PGBR_PROCESS_MAX; archive-get $( ((PREFETCH > 0)) && echo "async, queue $PREFETCH segments" || echo synchronous); stowage: wal_prefetch = $PREFETCH"
    echo "archive_command: $ARCHIVE_COMMAND"
    echo "data, repositories, restores on: $RUN ($(df --output=fstype "$RUN" | tail -1))"
} >"$RESULTS/env.txt"
warn_if_busy "$load"

# ------------------------------------------------------------------ drivers
# shellcheck source-path=SCRIPTDIR source=lib/hyperfine.sh
source "$SCRIPT_DIR/lib/hyperfine.sh"   # add, run_group, timed

rss_rows() {   # rss_rows BENCH: rss.tsv rows of BENCH's measured commands
    local key
    for key in "${!RSS_FILES[@]}"; do
        [[ ${key%%|*} == "$1" ]] || continue
        printf '%s\n' "${FAILED[@]}" | grep -qxF "$1/${key#*|}" && continue
        awk -v b="$1" -v l="${key#*|}" '/^[0-9]+$/ { n++; if ($1 > m) m = $1 }
            END { printf "%s\t%s\t%s\t%d\n", b, l, n ? m : "", n }' "${RSS_FILES[$key]}" >>"$RESULTS/rss.tsv"
    done
}

ST_RESTORE="${PGRUN_S}STOWAGE_CONFIG=$(q "$RCONF") $(q "$S") restore pg --to $(q "$TARGET") --latest"
PB_RESTORE="${PGRUN_S}pgbackrest --config=$(q "$PGBR_CONF") --stanza=$STANZA --pg1-path=$(q "$TARGET") --type=default restore"
RESET="$H reset-target"

# ------------------------------------------------------------------ 1. full restore + replay
if has "$BENCHES" full; then
    log "full: restore and replay of $((WAL_BYTES / 1048576)) MiB of WAL to promotion, $RUNS runs each"
    if has "$TOOLS" stowage; then
        c="$ST_RESTORE --target-action promote && $H start-wait"
        add "stowage restore pg --latest + replay" "$RESET" "$c" "$c && $H check-recovered"
    fi
    if ((USE_PGBR)); then
        c="$PB_RESTORE && $H start-wait"
        add "pgbackrest restore + replay" "$RESET" "$c" "$c && $H check-recovered"
    fi
    run_group full "$RUNS"
    "$HELPER" stop-target
fi

# ------------------------------------------------------------------ 2. the files part only
if has "$BENCHES" files; then
    if has "$TOOLS" stowage; then ref=$ST_RESTORE; else ref=$PB_RESTORE; fi
    log "files: one restore (untimed) for the restored size and data.tar.zst"
    "$HELPER" reset-target
    sh -c "$ref" >"$LOGS/files-reference.log" 2>&1 \
        || { tail -20 "$LOGS/files-reference.log" >&2; die "the reference restore failed"; }
    RESTORED_BYTES=$(file_bytes "$TARGET")
    TARZ="$RUN/data.tar.zst"
    tar -cf - -C "$TARGET" . | zstd -3 -T2 -q -o "$TARZ"
    TAR_BYTES=$(zstd -d -q -c "$TARZ" | wc -c)
    fact restored_bytes "$RESTORED_BYTES"
    fact restored_bytes_without_wal "$(file_bytes "$TARGET" pg_wal)"
    fact tar_bytes "$TAR_BYTES"
    fact tar_zst_bytes "$(stat -c %s "$TARZ")"
    log "  $((RESTORED_BYTES / 1000000)) MB restored; data.tar.zst $(($(stat -c %s "$TARZ") / 1000000)) MB"
    "$HELPER" reset-target

    if has "$TOOLS" stowage; then
        L="stowage restore pg --latest"
        timed files "$L"
        add "$L" "$RESET" "$TW$ST_RESTORE" "$TW$ST_RESTORE && $H check-files"
    fi
    if ((USE_PGBR)); then
        L="pgbackrest restore"
        timed files "$L"
        add "$L" "$RESET" "$TW$PB_RESTORE" "$TW$PB_RESTORE && $H check-files"
    fi
    L="zstd -d -T2 | tar -x"
    timed files "$L"
    c="$TW${PGRUN_S}sh -c $(q "zstd -d -T2 -q -c $TARZ | tar -xf - -C $TARGET")"
    add "$L" "$RESET" "$c" "$c && test -f $(q "$TARGET/global/pg_control")"
    L="zstd -d -T2 > /dev/null"
    timed files "$L"
    add "$L" "sync" "$TW${PGRUN_S}zstd -d -T2 -q -c $(q "$TARZ") > /dev/null"
    run_group files "$RUNS"
    rss_rows files
    "$HELPER" reset-target
fi

# ------------------------------------------------------------------ 3. drill
if has "$BENCHES" drill; then
    log "drill: a row every 100 ms for ${TICK_SECONDS}s, a pause of ${GAP}s, one more row"
    sql "$PORT" "CREATE TABLE rpo (at timestamptz) WITH (autovacuum_enabled = off)"
    printf 'INSERT INTO rpo VALUES (clock_timestamp());\n\\sleep 100 ms\n' >"$RUN/rpo.sql"
    "$PG_BIN/pgbench" -h "$SOCK" -p "$PORT" -U postgres -n -c 1 -T "$TICK_SECONDS" -f "$RUN/rpo.sql" postgres \
        >"$LOGS/drill-pgbench.log" 2>&1 || { tail -20 "$LOGS/drill-pgbench.log" >&2; die "pgbench (drill ticks) failed"; }
    # X: the last tick's commit time (the commit record's, as replay sees it); T = X + GAP/2
    IFS='|' read -r ticks X T < <("$PG_BIN/psql" -X -Atq -F '|' -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U postgres -d postgres -c "
        SELECT count(*),
               to_char(max(c) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
               to_char((max(c) + make_interval(secs => $GAP / 2.0)) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')
        FROM (SELECT pg_xact_commit_timestamp(xmin) AS c FROM rpo) s")
    [[ -n "$X" && -n "$T" ]] || die "no commit time of the drill's rows (track_commit_timestamp?)"
    sleep "$GAP"
    sql "$PORT" "INSERT INTO rpo VALUES (clock_timestamp())"
    AFTER=$(sql "$PORT" "SELECT to_char(pg_xact_commit_timestamp(xmin) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM rpo ORDER BY at DESC LIMIT 1")
    "$HELPER" switch || die "the drill's last segment was not archived; see $PGLOG"
    fact drill_ticks "$ticks"
    fact drill_last_tick "$X"
    fact drill_pause "$GAP"
    fact drill_after_commit "$AFTER"
    fact drill_target_time "$T"
    fact drill_gap_seconds "$(awk -v g="$GAP" 'BEGIN { printf "%.6f", g / 2 }')"
    log "  $ticks ticks, last commit X = $X, next commit $AFTER; stowage --json drill --target-time $T"
    "$HELPER" reset-target   # the restore spools empty, no prefetcher left
    rm -rf "$DRILL_DIR"
    rc=0
    /usr/bin/time -o "$LOGS/drill.time" -f '%e %M' \
        "${PGRUN[@]}" "STOWAGE_CONFIG=$RCONF" "STOWAGE_CACHE_DIR=$RUN/cache/stowage" \
        "$S" --json drill --target-time "$T" --scratch "$DRILL_DIR" --pg-bin "$PG_BIN" \
        >"$RESULTS/drill-report.json" 2>"$LOGS/drill.log" || rc=$?
    read -r wall maxrss < <(tail -n 1 "$LOGS/drill.time")
    fact drill_exit "$rc"
    fact drill_wall_s "$wall"
    fact drill_maxrss_kb "$maxrss"
    log "  exit $rc in ${wall}s"
    if ((rc != 0)); then
        warn "stowage drill exited $rc; see $LOGS/drill.log and $RESULTS/drill-report.json"
        tail -5 "$LOGS/drill.log" | sed 's/^/    /' >&2
        FAILED+=("drill")
    fi
fi

fact archive_failed_count "$(sql "$PORT" "SELECT failed_count FROM pg_stat_archiver")"
pg_stop "$DATA" fast

# ------------------------------------------------------------------ summary
finish   # exits 1 when something was left out
