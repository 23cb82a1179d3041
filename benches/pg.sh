#!/usr/bin/env bash
# pg.sh [OUTDIR] -- PostgreSQL backups: `stowage backup pg-base` against pgBackRest full and
# incremental backups, and `stowage backup pg-dump` against plain `pg_dump -Fc -Z0`.
#
# One PostgreSQL 15 cluster (default 16 MiB WAL segments) made by `pgbench -i -s SCALE`
# (100: ~1.6 GB data directory) is kept, stopped, in OUTDIR/pg/gen and reused by the next run
# (delete it, or change SCALE, to rebuild: ~20 s at full size here). Each run works on a
# `cp -a` copy of it in OUTDIR/pg/run/data, started with archive_mode = on and
#     archive_command = 'stowage wal-push %p && pgbackrest --stanza=bench archive-push %p'
# (STOWAGE_CONFIG in the server's environment names the stowage repository; each tool's half
# only when TOOLS has it), local repositories for both tools on the same disk as the cluster,
# everything run as `postgres`. Then, in this order:
#   base   first full base backup, hyperfine RUNS times each, each run into an empty
#          repository: `stowage backup pg-base --dbname CONNSTR --pgdata DATADIR` (prepare:
#          wait until the archiver is idle, delete the repository and its spool, `stowage
#          init`, then write one WAL record, pg_switch_wal() and wait until that segment is
#          archived: the fresh repository already receives the cluster's WAL, as in production
#          where archiving runs before the first base backup; every segment the backup needs
#          starts after that switch, so it all lands in the new repository) vs `pgbackrest
#          backup --type=full` (compress-type=zst, compress-level=3, process-max=2,
#          start-fast=y; prepare: wait for the archiver, restore the stanza's backup directory
#          as stanza-create left it, so the repository holds no backup; the WAL archive stays).
#          Throughput = data directory bytes (without pg_wal) / median wall time. The last run
#          of each is the full the next bench builds on; its repository size is reported.
#   incr   after the first fulls, `pgbench -n -T PGBENCH_SECONDS -c PGBENCH_CLIENTS`,
#          CHECKPOINT, archiver caught up; pages of base/ that changed are counted (a blake2b
#          digest of every 8 KiB page before pgbench and after); then ONE second full
#          `stowage --json backup pg-base` into the same repository vs ONE `pgbackrest backup
#          --type=incr`, each under /usr/bin/time -v (wall time, CPU, peak RSS). Stored bytes:
#          the growth of the repository's files over the command (stowage: WAL objects under
#          wal/ and wal-index/ excluded; pgbackrest: its backup/STANZA directory, the archive
#          excluded), and stowage's `bytes_stored` from its --json output.
#   dump   `stowage backup pg-dump --dbname CONNSTR` (pg_dump -Fc -Z0 inside) into an empty
#          repository each run vs `pg_dump -Fc -Z0 -d CONNSTR > /dev/null` (hyperfine);
#          throughput = dump size (measured once with `| wc -c`) / median time. Then the
#          nightly-dedup figure, outside hyperfine under /usr/bin/time -v: one `stowage --json
#          backup pg-dump` into an empty repository, then DUMP_INSERT_PCT % new rows in
#          pgbench_accounts and DUMP_UPDATE_ROWS scattered rows updated, then a second one
#          into the same repository: bytes_stored of the second / of the first.
# Every hyperfine command runs under `/usr/bin/time -f %M` (peak RSS of each run, largest
# single process) and once first, unmeasured, after its prepare, checked: the repository lists
# exactly one snapshot of the kind (`stowage --json snapshots --kind K`) or one full backup
# (`pgbackrest info --output=json`). One that fails is left out and the script exits 1.
# Results: OUTDIR/pg-results/{base,dump}.{json,md} (hyperfine exports), oneshot.tsv (the
# /usr/bin/time runs), rss.tsv (peak RSS of the hyperfine commands), facts.tsv, env.txt,
# summary.md, logs/ (server log in logs/postgres/). Each run replaces all of them.
#
# Targets (summary.md checks each):
#   base   stowage throughput >= 2x pgbackrest's (hyperfine medians)
#   incr   stowage second full time <= 0.5x pgbackrest incr time; stored <= 0.5x
#   dump   stowage pg-dump throughput >= 0.9x pg_dump's; second dump's bytes_stored <= 10% of
#          the first's
#
# `benches/pg.sh --summary [RESULTS]` prints the summary of a finished run again.
#
# Environment:
#   STOWAGE_BENCH_DIR  default OUTDIR (/var/tmp/stowage-bench); the cluster, repositories and
#                 scratch live in OUTDIR/pg, results in OUTDIR/pg-results
#   QUICK=1       smoke test: SCALE=5 (~90 MB), PGBENCH_SECONDS=10; OUTDIR defaults to
#                 $STOWAGE_BENCH_DIR/quick
#   RUNS          hyperfine --runs for base and dump (default 3)
#   BENCHES       subset of "base incr dump" (default all; incr without base makes the first
#                 fulls once, untimed)
#   TOOLS         subset of "stowage pgbackrest" (default both; TOOLS=pgbackrest needs no stowage
#                 binary). pg_dump is always the dump baseline.
#   SCALE         pgbench -i scale (default 100)
#   PGBENCH_SECONDS, PGBENCH_CLIENTS   the changes between the fulls (default 30, 1: the issue's
#                 `pgbench -T 30`, whose default is one client; 4 clients change about half the pages)
#   DUMP_INSERT_PCT, DUMP_UPDATE_ROWS  the changes between the dumps (default 1, 1000)
#   COMPRESSION_LEVEL  pgbackrest's zst compress-level (default 3); stowage uses its repository's
#   PGBR_PROCESS_MAX   pgbackrest process-max (default 2, the core count)
#   INIT_ARGS     arguments of `stowage init` (default none: the production Argon2id cost; the
#                 key cache pays it once per repository, at the first wal-push of the prepare
#                 step, as the archiver does in production)
#   PG_BIN        PostgreSQL binaries (default /usr/lib/postgresql/15/bin; first in PATH of
#                 every command, so stowage runs the same pg_dump as the baseline)
#   STOWAGE_BIN   default target/release/stowage (built with cargo build --release if missing)
#   STOWAGE_PASSWORD   the repositories' passphrase (a fixed benchmark passphrase by default)
#   KEEP=1        keep OUTDIR/pg/run (the cluster copy, repositories) at the end
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

BENCH_TAG=pg
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"   # log, warn, die, has, q

# ------------------------------------------------------------------ summary
# summarize RESULTS: Markdown from facts.tsv, {base,dump}.json, oneshot.tsv, rss.tsv
summarize() {
    BENCH_LIB="$(dirname "${BASH_SOURCE[0]}")/lib" python3 - "$1" <<'PY'
import json, os, sys
from functools import partial

sys.path.insert(0, os.environ["BENCH_LIB"])
import summary  # noqa: E402  (benches/lib/summary.py)
from summary import mb, mib, num, table, verdict  # noqa: E402

results = sys.argv[1]
group = partial(summary.group, results)
fact = summary.facts(results).get
rss = summary.rss(results)
oneshot = summary.read_tsv(results, "oneshot.tsv")
shot = lambda bench, tool: next((r for r in oneshot if r["bench"] == bench and r["tool"] == tool), None)
summary.print_env(results)

shown = False
# ---- 1. first full base backup
base = group("base")
if base:
    shown = True
    data = int(fact("datadir_bytes", 0))
    target = float(fact("base_min_ratio", 2))
    print(f"## 1. First full base backup: pgbench -s {fact('scale', '?')}, data directory {mb(data)} MB "
          f"(without pg_wal; {mb(num(fact('datadir_total_bytes')))} MB with it)\n")
    print(f"Each run into an empty repository. MB/s = data directory bytes / median wall time; "
          f"target: stowage >= {target:g}x pgbackrest's MB/s. Stored = the repository's files after "
          f"the last run (WAL excluded). Peak RSS: largest single process, highest of the runs.\n")
    pg = next((r for c, r in base.items() if c.startswith("pgbackrest")), None)
    rows = []
    for cmd, r in base.items():
        tool = "stowage" if cmd.startswith("stowage") else "pgbackrest"
        mbs = data / r["median"] / 1e6
        ratio = (pg["median"] / r["median"]) if pg and tool == "stowage" else None
        stored = num(fact(f"base_stored_{tool}"))
        rr = rss.get(("base", cmd))
        rows.append([cmd, f"{r['median']:.2f}", f"{r['mean']:.2f} ± {r.get('stddev') or 0:.2f}",
                     len(r.get("times", [])), f"{mbs:.0f}",
                     f"{ratio:.2f}x" if ratio is not None else "",
                     f"{mb(stored)} ({100 * stored / data:.1f} %)" if stored is not None and data else "n/a",
                     mib(num(rr["maxrss_kb"])) if rr else "n/a",
                     verdict(ratio >= target) if ratio is not None else ("(reference)" if tool != "stowage" else "n/a")])
    print(table(["command", "median s", "mean ± sd s", "runs", "MB/s", "vs pgbackrest", "stored MB",
                 "peak RSS MiB", "verdict"], rows))
    print()

# ---- 2. second full after changes
st, pb = shot("incr", "stowage"), shot("incr", "pgbackrest")
if st or pb:
    shown = True
    tt, tb = float(fact("incr_max_time_ratio", 0.5)), float(fact("incr_max_bytes_ratio", 0.5))
    pt, pc = num(fact("pages_total")), num(fact("pages_changed"))
    ft, fc = num(fact("files_total")), num(fact("files_changed"))
    print(f"## 2. Second full after `pgbench -n -c {fact('pgbench_clients', '?')} -T {fact('pgbench_seconds', '?')}` "
          f"({fact('pgbench_transactions', '?')} transactions, {fact('pgbench_tps', '?')} tps) and CHECKPOINT\n")
    if pt:
        print(f"8 KiB pages of base/ changed: {pc:.0f} of {pt:.0f} (**{100 * pc / pt:.1f} %**, of which "
              f"{fact('pages_new', '?')} new): {mb(num(fact('changed_bytes')))} MB of {mb(num(fact('base_bytes')))} MB. "
              f"They lie in {fc:.0f} of {ft:.0f} files, which hold {mb(num(fact('files_changed_bytes')))} MB "
              f"({100 * (num(fact('files_changed_bytes')) or 0) / (num(fact('base_bytes')) or 1):.1f} % of the bytes: "
              f"what a file-level incremental copies).\n")
    print(f"One run each (stateful), /usr/bin/time -v. Stored = growth of the repository's files "
          f"(stowage: WAL excluded; pgbackrest: backup/, archive excluded); bytes_stored = stowage's "
          f"--json figure. Targets: stowage time <= {tt:g}x pgbackrest incr; stored <= {tb:g}x.\n")
    rows = []
    for r in (st, pb):
        if not r:
            continue
        wall, stored = num(r["wall_s"]), num(r["stored_bytes"])
        tr = br = None
        if r is st and pb and num(pb["wall_s"]) and r["exit"] == "0" and pb["exit"] == "0":
            tr = wall / num(pb["wall_s"])
            if stored is not None and num(pb["stored_bytes"]):
                br = stored / num(pb["stored_bytes"])
        cpu = (num(r["user_s"]) or 0) + (num(r["sys_s"]) or 0)
        rows.append([r["label"], r["exit"], f"{wall:.2f}", f"{cpu:.2f}", mib(num(r["maxrss_kb"])), mb(stored),
                     mb(num(r["json_bytes_stored"])) if r["json_bytes_stored"] else "",
                     f"{tr:.2f}x {verdict(tr <= tt)}" if tr is not None else ("(reference)" if r is pb else "n/a"),
                     f"{br:.2f}x {verdict(br <= tb)}" if br is not None else ("(reference)" if r is pb else "n/a")])
    print(table(["command", "exit", "wall s", "CPU s", "peak RSS MiB", "stored MB", "bytes_stored MB",
                 "time vs pgbackrest", "stored vs pgbackrest"], rows))
    print()

# ---- 3. pg_dump
dump = group("dump")
d1, d2 = shot("dump-first", "stowage"), shot("dump-second", "stowage")
if dump or d1 or d2:
    shown = True
    print(f"## 3. Logical dump: pg_dump -Fc -Z0 of the database ({mb(num(fact('dump_bytes')))} MB)\n")
if dump:
    size = int(fact("dump_bytes", 0))
    target = float(fact("dump_min_ratio", 0.9))
    print(f"stowage: each run into an empty repository. MB/s = dump bytes / median wall time; "
          f"target: stowage >= {target:g}x pg_dump's MB/s.\n")
    base_r = next((r for c, r in dump.items() if c.startswith("pg_dump")), None)
    rows = []
    for cmd, r in dump.items():
        stow = cmd.startswith("stowage")
        ratio = base_r["median"] / r["median"] if base_r and stow else None
        rr = rss.get(("dump", cmd))
        rows.append([cmd, f"{r['median']:.2f}", f"{r['mean']:.2f} ± {r.get('stddev') or 0:.2f}",
                     len(r.get("times", [])), f"{size / r['median'] / 1e6:.0f}",
                     f"{ratio:.2f}x" if ratio is not None else "", mib(num(rr["maxrss_kb"])) if rr else "n/a",
                     verdict(ratio >= target) if ratio is not None else "(reference)"])
    print(table(["command", "median s", "mean ± sd s", "runs", "MB/s", "vs pg_dump", "peak RSS MiB", "verdict"], rows))
    print()
if d1 or d2:
    target = float(fact("dedup_max_ratio", 0.1))
    print(f"Nightly dedup: a first dump into an empty repository, then {fact('dump_rows_inserted', '?')} rows "
          f"inserted into pgbench_accounts ({fact('dump_insert_pct', '?')} %) and {fact('dump_rows_updated', '?')} "
          f"scattered rows updated, then a second dump into the same repository. Target: second bytes_stored "
          f"<= {100 * target:g} % of the first's.\n")
    rows = []
    for r in (d1, d2):
        if r:
            rows.append([r["label"], r["exit"], f"{num(r['wall_s']):.2f}", mib(num(r["maxrss_kb"])),
                         mb(num(r["json_bytes_read"])), mb(num(r["json_bytes_stored"])), mb(num(r["stored_bytes"]))])
    print(table(["command", "exit", "wall s", "peak RSS MiB", "bytes_read MB", "bytes_stored MB",
                 "repository growth MB"], rows))
    a = num(d1["json_bytes_stored"]) if d1 else None
    b = num(d2["json_bytes_stored"]) if d2 else None
    if a and b is not None:
        print(f"\nSecond / first bytes_stored: **{100 * b / a:.2f} %** (target <= {100 * target:g} %): "
              f"{verdict(b / a <= target)}")
    else:
        print("\nSecond / first bytes_stored: n/a (no bytes_stored in the --json output)")
    print()

# ---- 4. peak memory
if rss or oneshot:
    shown = True
    print("## 4. Peak memory (/usr/bin/time: maximum resident set size of the largest single process)\n")
    rows = []
    for (bench, label), r in rss.items():
        rows.append([bench, label, mib(num(r["maxrss_kb"])), f"highest of {r['samples']} runs"])
    for r in oneshot:
        rows.append([r["bench"], r["label"], mib(num(r["maxrss_kb"])), "one run"])
    rows.sort(key=lambda row: (not row[1].startswith("stowage"), row[0]))
    print(table(["bench", "command", "peak RSS MiB", "from"], rows))
    print()

if not shown:
    print("(no results)")
PY
}

summary_mode pg-results "$@"

# ------------------------------------------------------------------ settings
if [[ "${QUICK:-0}" == 1 ]]; then
    : "${SCALE:=5}" "${PGBENCH_SECONDS:=10}"
else
    : "${SCALE:=100}" "${PGBENCH_SECONDS:=30}"
fi
OUTDIR=$(bench_outdir "${1:-}")
RUNS="${RUNS:-3}"
BENCHES="${BENCHES:-base incr dump}"
TOOLS="${TOOLS:-stowage pgbackrest}"
PGBENCH_CLIENTS="${PGBENCH_CLIENTS:-1}"
DUMP_INSERT_PCT="${DUMP_INSERT_PCT:-1}"
DUMP_UPDATE_ROWS="${DUMP_UPDATE_ROWS:-1000}"
COMPRESSION_LEVEL="${COMPRESSION_LEVEL:-3}"
PGBR_PROCESS_MAX="${PGBR_PROCESS_MAX:-2}"
INIT_ARGS="${INIT_ARGS-}"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
BASE_MIN_RATIO=2 INCR_MAX_TIME_RATIO=0.5 INCR_MAX_BYTES_RATIO=0.5 DUMP_MIN_RATIO=0.9 DEDUP_MAX_RATIO=0.10

PGDIR="$OUTDIR/pg"            # everything of this benchmark but the results
GEN="$PGDIR/gen"              # kept: the stopped cluster after pgbench -i
RUN="$PGDIR/run"              # this run: the cluster copy, repositories, spools, configs
RESULTS="$OUTDIR/pg-results"
LOGS="$RESULTS/logs"
PGLOGS="$LOGS/postgres"        # server logs (written by the postgres user)
DATA="$RUN/data"              # the running cluster
STANZA=bench                  # pgbackrest stanza
CLUSTER=bench                 # stowage cluster name

case "$PGDIR" in *[\"\\\'\ ]*) die "OUTDIR must not contain quotes, backslashes or spaces: $PGDIR" ;; esac
export STOWAGE_PASSWORD="${STOWAGE_PASSWORD:-stowage-bench-password}"
# Each stowage command gets its settings from its own config file (STOWAGE_CONFIG), nothing
# from the caller's environment.
unset STOWAGE_PASSWORD_FILE STOWAGE_REPO STOWAGE_CONFIG
unset PGOPTIONS PGHOST PGPORT PGUSER PGDATABASE PGSERVICE PGPASSWORD

FAILED=()   # what was left out because it failed

# the setup shared with the other PostgreSQL benches (pg_user_setup, pg_sock, pg_cleanup,
# archive_setup, pgbr_conf, ...), the server helpers (pg_start, sql, ...), make_gen, gen_ensure
# shellcheck source-path=SCRIPTDIR source=lib/pg.sh
source "$SCRIPT_DIR/lib/pg.sh"

for b in $BENCHES; do has "base incr dump" "$b" || die "unknown bench '$b' (base incr dump)"; done
for t in $TOOLS; do has "stowage pgbackrest" "$t" || die "unknown tool '$t' (stowage pgbackrest)"; done
[[ "$SCALE" =~ ^[1-9][0-9]*$ ]] || die "SCALE must be a positive integer"
NEED_ARCHIVE=0   # base and incr need WAL archiving into the repositories
if has "$BENCHES" base || has "$BENCHES" incr; then NEED_ARCHIVE=1; fi
USE_PGBR=0       # pgbackrest only takes part in base and incr
if has "$TOOLS" pgbackrest && ((NEED_ARCHIVE)); then USE_PGBR=1; fi

# ------------------------------------------------------------------ tools
missing=()
command -v hyperfine >/dev/null || missing+=(hyperfine)
command -v python3 >/dev/null || missing+=(python3)
[[ -x /usr/bin/time ]] || missing+=(time)
if ((USE_PGBR)); then command -v pgbackrest >/dev/null || missing+=(pgbackrest); fi
install_missing "${missing[@]}"
pg_check_bins initdb pg_ctl pgbench pg_dump psql

# The server, the backups (which read its data directory) and the dumps run as `postgres`
# (lib/pg.sh), with PG_BIN first in PATH.
CMD_PATH="$PG_BIN:/usr/local/bin:/usr/bin:/bin"
pg_user_setup "PATH=$CMD_PATH"

S=""
if has "$TOOLS" stowage; then
    find_stowage
    subs=(init snapshots)
    ((NEED_ARCHIVE)) && subs+=(wal-push "backup pg-base")
    has "$BENCHES" dump && subs+=("backup pg-dump")
    stowage_has "${subs[@]}"
    as_pg test -x "$S" || die "user postgres cannot execute $S (archive_command runs as postgres): use a STOWAGE_BIN it can reach"
fi
if ((USE_PGBR)); then pgbr_check_zst backup; fi

# ------------------------------------------------------------------ scratch space, cleanup
rm -rf "$LOGS"   # pg_ctl -l appends
mkdir -p "$RESULTS" "$LOGS" "$PGLOGS" "$PGDIR"
rm -f "$RESULTS"/{base,dump}.{json,md} "$RESULTS"/{facts,oneshot,rss}.tsv "$RESULTS"/{env.txt,summary.md}
to_pg "$PGLOGS"
chmod a+x "$OUTDIR" "$PGDIR"   # the postgres user must reach its directories below
as_pg test -x "$PGDIR" || die "user postgres cannot reach $PGDIR: use an OUTDIR whose parents are world-searchable"
rm -rf "$RUN" "$PGDIR/gen.partial"
pg_sock stowage-pgsock

RUNNING=()          # data directories of the servers this script started
BG_PIDS=()          # background processes this script started (pgbench)
trap pg_cleanup EXIT   # stops the servers, removes SOCK and (unless KEEP=1) RUN
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ generated cluster (kept)
gen_ensure
# shellcheck disable=SC1091
source "$GEN/gen.env"

# ------------------------------------------------------------------ this run's layout
mkdir -p "$RUN"/{bin,home,cache,repos,spool,conf,pgbr}
log "copying the cluster to $DATA"
t=$(now)
cp -a "$GEN/data" "$DATA"
log "  copied in $(secs_since "$t")s"
PORT=$(free_port)
PGLOG="$PGLOGS/server.log"
CONN="host=$SOCK port=$PORT user=postgres dbname=postgres"

# stowage_conf NAME REPO: RUN/conf/NAME.toml with spool RUN/spool/NAME
stowage_conf() {
    {
        printf 'repo = "%s"\n' "$2"
        printf 'password_file = "%s"\n' "$RUN/conf/password"
        printf 'cluster = "%s"\n' "$CLUSTER"
        printf 'spool_dir = "%s"\n' "$RUN/spool/$1"
    } >"$RUN/conf/$1.toml"
    echo "$RUN/conf/$1.toml"
}
BASE_REPO="$RUN/repos/base" BASE_SPOOL="$RUN/spool/base"
DUMP_REPO="$RUN/repos/dump" DUMP_SPOOL="$RUN/spool/dump"
BASE_CONF=$(stowage_conf base "$BASE_REPO")
DUMP_CONF=$(stowage_conf dump "$DUMP_REPO")
mkdir -p "$BASE_SPOOL" "$DUMP_SPOOL"

PGBR_CONF="$RUN/pgbr/pgbackrest.conf" PGBR_REPO="$RUN/pgbr/repo"
PGBR_BACKUP="$PGBR_REPO/backup/$STANZA" PGBR_EMPTY="$RUN/pgbr/backup-empty"
pgbr_conf

# bench.py: page digests, JSON fields, /usr/bin/time -v files, snapshot counts
cat >"$RUN/bin/bench.py" <<'PY_EOF'
import hashlib, json, os, pickle, sys

PAGE = 8192

def files(root):
    for d, dirs, names in os.walk(root):
        dirs.sort()
        for n in sorted(names):
            p = os.path.join(d, n)
            if os.path.isfile(p) and not os.path.islink(p):
                yield os.path.relpath(p, root), p

def digests(path):
    out = []
    try:
        with open(path, "rb") as f:
            while True:
                buf = f.read(PAGE * 256)
                if not buf:
                    break
                mv = memoryview(buf)
                for i in range(0, len(buf), PAGE):
                    out.append(hashlib.blake2b(mv[i:i + PAGE], digest_size=16).digest())
    except FileNotFoundError:   # a temporary file of the running server
        return None
    return out

def parse_json(path):
    text = open(path, errors="replace").read()
    try:
        return json.loads(text)
    except ValueError:
        a, b = text.find("{"), text.rfind("}")
        if a >= 0 and b > a:
            try:
                return json.loads(text[a:b + 1])
            except ValueError:
                pass
    return None

cmd = sys.argv[1]
if cmd == "pages-hash":          # pages-hash DIR OUT: a digest of every 8 KiB page of every file
    root, out = sys.argv[2], sys.argv[3]
    table = {}
    for rel, p in files(root):
        d = digests(p)
        if d is not None:
            table[rel] = d
    with open(out, "wb") as f:
        pickle.dump(table, f)
elif cmd == "pages-compare":     # pages-compare DIR OLD: key<TAB>value lines for facts.tsv
    root, old_path = sys.argv[2], sys.argv[3]
    with open(old_path, "rb") as f:
        old = pickle.load(f)
    pages = changed = new = nfiles = fchanged = nbytes = cbytes = fbytes = 0
    seen = set()
    for rel, p in files(root):
        d = digests(p)
        if d is None:
            continue
        seen.add(rel)
        nfiles += 1
        nbytes += os.path.getsize(p)
        o = old.get(rel, [])
        c = 0
        for i, h in enumerate(d):
            if i >= len(o):
                new += 1
                c += 1
            elif o[i] != h:
                c += 1
        pages += len(d)
        changed += c
        cbytes += c * PAGE
        if c > 0 or len(o) > len(d):
            fchanged += 1
            fbytes += os.path.getsize(p)
    for k, v in [("pages_total", pages), ("pages_changed", changed), ("pages_new", new),
                 ("files_total", nfiles), ("files_changed", fchanged), ("files_removed", len(set(old) - seen)),
                 ("base_bytes", nbytes), ("changed_bytes", cbytes), ("files_changed_bytes", fbytes)]:
        print(f"{k}\t{v}")
elif cmd == "json-fields":       # json-fields FILE KEY...: the values, tab-separated ("" if absent)
    obj = parse_json(sys.argv[2])
    obj = obj if isinstance(obj, dict) else {}
    print("\t".join("" if obj.get(k) is None else str(obj.get(k)) for k in sys.argv[3:]))
elif cmd == "timev":             # timev FILE: user_s sys_s maxrss_kb from /usr/bin/time -v
    vals = {}
    for line in open(sys.argv[2], errors="replace"):
        k, _, v = line.strip().rpartition(": ")
        vals[k] = v
    print(vals.get("User time (seconds)", ""), vals.get("System time (seconds)", ""),
          vals.get("Maximum resident set size (kbytes)", ""), sep="\t")
elif cmd == "maxrss":            # maxrss FILE: highest value and count of the %M lines
    v = [int(x) for x in open(sys.argv[2]).read().split() if x.isdigit()]
    print(max(v) if v else "", len(v), sep="\t")
elif cmd == "count-snapshots":   # count-snapshots FILE KIND N: exit 0 if exactly N of KIND
    rows = parse_json(sys.argv[2])
    n = sum(1 for r in rows if r.get("kind") == sys.argv[3]) if isinstance(rows, list) else -1
    print(f"{n} snapshot(s) of kind {sys.argv[3]}")
    sys.exit(0 if n == int(sys.argv[4]) else 1)
elif cmd == "count-pgbr":        # count-pgbr FILE TYPE N: exit 0 if exactly N backups, the last of TYPE
    info = parse_json(sys.argv[2])
    backups = info[0].get("backup", []) if info else []
    print(f"{len(backups)} backup(s): " + ", ".join(f"{b['label']} {b['type']}" for b in backups))
    sys.exit(0 if len(backups) == int(sys.argv[4]) and backups[-1]["type"] == sys.argv[3] else 1)
else:
    sys.exit(f"bench.py: unknown command {cmd}")
PY_EOF
BENCHPY=(python3 "$RUN/bin/bench.py")

# The helper the hyperfine prepares and checks call. Settings come from RUN/bench.env.
HELPER="$RUN/bin/helper"
cat >"$HELPER" <<'HELPER_EOF'
#!/usr/bin/env bash
# helper archive-wait                 wait until nothing is .ready (the archiver is idle)
# helper switch                       write a WAL record, pg_switch_wal(), wait until archived
# helper stowage-reset CONF REPO SPOOL [switch]   archiver idle, delete REPO and SPOOL, stowage
#                                     init as postgres; with `switch`, one segment archived
#                                     into the new repository
# helper pgbr-reset                   archiver idle, the stanza's backup directory as
#                                     stanza-create left it (no backup; the archive stays)
# helper stowage-count CONF KIND N    the repository lists exactly N snapshots of KIND
# helper pgbr-count TYPE N            the stanza holds exactly N backups, the last of TYPE
set -euo pipefail
source "$(dirname "$0")/../bench.env"
source "$BENCH_LIB/pg.sh"   # sql, archive_wait, switch_wal
case "$1" in
archive-wait)
    archive_wait ;;
switch)
    archive_wait && switch_wal ;;
stowage-reset)
    conf=$2 repo=$3 spool=$4
    archive_wait
    rm -rf "$repo" "$spool"
    mkdir -p "$spool"
    if [[ $(id -u) -eq 0 ]]; then chown postgres: "$spool"; fi
    # shellcheck disable=SC2086
    "${PGRUN[@]}" "STOWAGE_CONFIG=$conf" "$S" init $INIT_ARGS >/dev/null
    if [[ "${5:-}" == switch ]]; then switch_wal; fi
    ;;
pgbr-reset)
    archive_wait
    rm -rf "$PGBR_BACKUP"
    cp -a "$PGBR_EMPTY" "$PGBR_BACKUP"
    ;;
stowage-count)
    out=$(mktemp)
    trap 'rm -f "$out"' EXIT
    "${PGRUN[@]}" "STOWAGE_CONFIG=$2" "$S" --json snapshots --kind "$3" >"$out"
    python3 "$(dirname "$0")/bench.py" count-snapshots "$out" "$3" "$4"
    ;;
pgbr-count)
    out=$(mktemp)
    trap 'rm -f "$out"' EXIT
    "${PGRUN[@]}" pgbackrest "--config=$PGBR_CONF" "--stanza=$STANZA" info --output=json >"$out"
    python3 "$(dirname "$0")/bench.py" count-pgbr "$out" "$2" "$3"
    ;;
*)
    echo "helper: unknown command $1" >&2; exit 2 ;;
esac
HELPER_EOF
chmod 755 "$HELPER" "$RUN/bin"
BENCH_LIB="$SCRIPT_DIR/lib"
declare -p PG_BIN SOCK PORT DATA PGLOG PGRUN S INIT_ARGS STANZA PGBR_CONF PGBR_BACKUP PGBR_EMPTY BENCH_LIB >"$RUN/bench.env"
H=$(q "$HELPER")

to_pg "$RUN"
pg_password_file   # RUN/conf/password; unsets STOWAGE_PASSWORD

# ------------------------------------------------------------------ the server
with_stowage=0
if has "$TOOLS" stowage && ((NEED_ARCHIVE)); then with_stowage=1; fi
archive_setup "$with_stowage" "$LOGS/init-base.log"   # ARCHIVE_COMMAND, SERVER_ENV
if [[ -n "$ARCHIVE_COMMAND" ]]; then
    pg_conf "$DATA" wal_level replica archive_mode on archive_command "$ARCHIVE_COMMAND"
else
    pg_conf "$DATA" archive_mode off
fi
# fsync stays on (a real server); commits do not wait for their WAL flush, so pgbench changes
# more pages in its window
pg_conf "$DATA" synchronous_commit off
log "starting the cluster (port $PORT), archive_command = '${ARCHIVE_COMMAND:-(archiving off)}'"
pg_start "$DATA" "$PORT" "$PGLOG" "" "${SERVER_ENV[@]}"

# the empty stanza's backup directory, which pgbr-reset puts back before each full
archive_check cp -a "$PGBR_BACKUP" "$PGBR_EMPTY"

# ------------------------------------------------------------------ environment record
DATA_BYTES=$(file_bytes "$DATA" pg_wal)
DATA_TOTAL=$(file_bytes "$DATA")
load=$(cut -d' ' -f1 /proc/loadavg)
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  host: $(hostname)  cpus: $(nproc)  load at start: $load"
    echo "tools: $(hyperfine --version); $("$PG_BIN/postgres" --version)$( ((USE_PGBR)) && printf '; %s' "$(pgbackrest version)")"
    if has "$TOOLS" stowage; then
        echo "stowage: $("$S" --version 2>/dev/null || echo unknown) ($S, built $(date -u -r "$S" +%Y-%m-%dT%H:%M:%SZ)); init: ${INIT_ARGS:-(defaults)}"
    fi
    echo "benches: $BENCHES; tools: $TOOLS; quick: ${QUICK:-0}; runs: $RUNS"
    echo "cluster: pgbench -s $SCALE, $((DATA_BYTES / 1000000)) MB without pg_wal ($((DATA_TOTAL / 1000000)) MB with), generated in ${T_TOTAL}s; fsync on, synchronous_commit off"
    echo "pgbackrest: compress-type=zst compress-level=$COMPRESSION_LEVEL process-max=$PGBR_PROCESS_MAX start-fast=y archive-async=n; stowage: its repository's compression"
    echo "archive_command: ${ARCHIVE_COMMAND:-(off)}"
    echo "data, repositories on: $PGDIR ($(df --output=fstype "$PGDIR" | tail -1))"
} >"$RESULTS/env.txt"
warn_if_busy "$load"
fact() { printf '%s\t%s\n' "$1" "$2" >>"$RESULTS/facts.tsv"; }
printf 'key\tvalue\n' >"$RESULTS/facts.tsv"
fact scale "$SCALE"
fact datadir_bytes "$DATA_BYTES"
fact datadir_total_bytes "$DATA_TOTAL"
fact gen_seconds "$T_TOTAL"
fact base_min_ratio "$BASE_MIN_RATIO"
fact incr_max_time_ratio "$INCR_MAX_TIME_RATIO"
fact incr_max_bytes_ratio "$INCR_MAX_BYTES_RATIO"
fact dump_min_ratio "$DUMP_MIN_RATIO"
fact dedup_max_ratio "$DEDUP_MAX_RATIO"
printf 'bench\tlabel\tmaxrss_kb\tsamples\n' >"$RESULTS/rss.tsv"
printf 'bench\ttool\tlabel\twall_s\tuser_s\tsys_s\tmaxrss_kb\texit\tstored_bytes\tjson_bytes_stored\tjson_bytes_read\n' \
    >"$RESULTS/oneshot.tsv"

# ------------------------------------------------------------------ drivers
# shellcheck source-path=SCRIPTDIR source=lib/hyperfine.sh
source "$SCRIPT_DIR/lib/hyperfine.sh"   # add, run_group, timed

# rss_rows BENCH: rss.tsv rows of BENCH's hyperfine commands that were measured
rss_rows() {
    local key f v
    for key in "${!RSS_FILES[@]}"; do
        [[ ${key%%|*} == "$1" ]] || continue
        printf '%s\n' "${FAILED[@]}" | grep -qxF "$1/${key#*|}" && continue
        f=${RSS_FILES[$key]}
        v=$("${BENCHPY[@]}" maxrss "$f")
        printf '%s\t%s\t%s\n' "$1" "${key#*|}" "$v" >>"$RESULTS/rss.tsv"
    done
}
failed() { printf '%s\n' "${FAILED[@]}" | grep -qxF "$1"; }

# oneshot BENCH TOOL LABEL 'MEASURE' CMD...: one run of CMD under /usr/bin/time -v; stored
# bytes = MEASURE (a command printing a byte count) after minus before; a row in oneshot.tsv
oneshot() {
    local bench=$1 tool=$2 label=$3 measure=$4; shift 4
    local tag="$bench-$tool" before after t0 wall rc=0 tv js
    local out="$LOGS/$tag.out" err="$LOGS/$tag.log" tf="$LOGS/$tag.time"
    log "$label (one run, /usr/bin/time -v)"
    before=$(eval "$measure")
    t0=$(now)
    /usr/bin/time -v -o "$tf" "$@" >"$out" 2>"$err" || rc=$?
    wall=$(secs_since3 "$t0")
    after=$(eval "$measure")
    tv=$("${BENCHPY[@]}" timev "$tf")
    js=$("${BENCHPY[@]}" json-fields "$out" bytes_stored bytes_read)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$bench" "$tool" "$label" "$wall" "$tv" "$rc" \
        "$((after - before))" "$js" >>"$RESULTS/oneshot.tsv"
    log "  exit $rc, ${wall}s, stored $(((after - before) / 1000)) kB (files), --json: ${js//$'\t'/ / }"
    if [[ $tool == stowage && $rc == 0 && -z "${js%%$'\t'*}" ]]; then
        warn "$label: no bytes_stored in its --json output ($out)"
    fi
    if ((rc != 0)); then
        warn "$label exited $rc; see $err"
        tail -5 "$err" | sed 's/^/    /' >&2
        FAILED+=("$bench/$label")
        return 1
    fi
}
stowage_stored() { file_bytes "$1" wal wal-index; }   # a repository's files but its WAL

# ------------------------------------------------------------------ 1. first full base backup
ST_BASE_CMD="${PGRUN_S}STOWAGE_CONFIG=$(q "$BASE_CONF") $(q "$S") backup pg-base --fast --dbname $(q "$CONN") --pgdata $(q "$DATA")"
ST_BASE_PREP="$H stowage-reset $(q "$BASE_CONF") $(q "$BASE_REPO") $(q "$BASE_SPOOL") switch"
ST_BASE_CHECK="$H stowage-count $(q "$BASE_CONF") pg-base"
PB_FULL_CMD="${PGRUN_S}pgbackrest --config=$(q "$PGBR_CONF") --stanza=$STANZA backup --type=full"
PB_FULL_PREP="$H pgbr-reset"
ST_BASE_LABEL="stowage backup pg-base"
PB_FULL_LABEL="pgbackrest backup --type=full"
if has "$BENCHES" base; then
    log "base: first full backup of $((DATA_BYTES / 1000000)) MB, $RUNS runs each, into empty repositories"
    sql "$PORT" CHECKPOINT
    if has "$TOOLS" stowage; then
        timed base "$ST_BASE_LABEL"
        add "$ST_BASE_LABEL" "$ST_BASE_PREP" "$TW$ST_BASE_CMD" "$TW$ST_BASE_CMD && $ST_BASE_CHECK 1"
    fi
    if has "$TOOLS" pgbackrest; then
        timed base "$PB_FULL_LABEL"
        add "$PB_FULL_LABEL" "$PB_FULL_PREP" "$TW$PB_FULL_CMD" "$TW$PB_FULL_CMD && $H pgbr-count full 1"
    fi
    run_group base "$RUNS"
    rss_rows base
    "$HELPER" archive-wait
    if has "$TOOLS" stowage && ! failed "base/$ST_BASE_LABEL"; then
        fact base_stored_stowage "$(stowage_stored "$BASE_REPO")"
    fi
    if has "$TOOLS" pgbackrest && ! failed "base/$PB_FULL_LABEL"; then
        fact base_stored_pgbackrest "$(file_bytes "$PGBR_BACKUP")"
    fi
fi

# ------------------------------------------------------------------ 2. second full after changes
if has "$BENCHES" incr; then
    INCR_TOOLS=()
    for tool in $TOOLS; do
        label=$ST_BASE_LABEL; [[ $tool == pgbackrest ]] && label=$PB_FULL_LABEL
        if has "$BENCHES" base; then
            if failed "base/$label"; then
                warn "incr: no first full of $tool (it failed in base): $tool left out"
                FAILED+=("incr/$tool")
                continue
            fi
        else
            log "incr: first full of $tool (once, untimed)"
            if [[ $tool == stowage ]]; then
                prep=$ST_BASE_PREP cmd="$ST_BASE_CMD && $ST_BASE_CHECK 1"
            else
                prep=$PB_FULL_PREP cmd="$PB_FULL_CMD && $H pgbr-count full 1"
            fi
            if ! sh -c "$prep && $cmd" >"$LOGS/incr-first-full-$tool.log" 2>&1; then
                warn "incr: the first full of $tool failed: $tool left out; see $LOGS/incr-first-full-$tool.log"
                tail -5 "$LOGS/incr-first-full-$tool.log" | sed 's/^/    /' >&2
                FAILED+=("incr/$tool")
                continue
            fi
        fi
        INCR_TOOLS+=("$tool")
    done

    "$HELPER" archive-wait
    sql "$PORT" CHECKPOINT
    log "incr: digests of every page of base/ before pgbench"
    "${BENCHPY[@]}" pages-hash "$DATA/base" "$RUN/pages-before.pickle"
    log "incr: pgbench -n -c $PGBENCH_CLIENTS -T $PGBENCH_SECONDS"
    jobs=$PGBENCH_CLIENTS; ((jobs <= $(nproc))) || jobs=$(nproc)
    "$PG_BIN/pgbench" -h "$SOCK" -p "$PORT" -U postgres -n -c "$PGBENCH_CLIENTS" -j "$jobs" -T "$PGBENCH_SECONDS" postgres \
        >"$LOGS/incr-pgbench.log" 2>&1 || { tail -20 "$LOGS/incr-pgbench.log" >&2; die "pgbench failed"; }
    sql "$PORT" CHECKPOINT
    "$HELPER" archive-wait
    tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$LOGS/incr-pgbench.log" | head -n 1)
    ntx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$LOGS/incr-pgbench.log" | head -n 1)
    fact pgbench_seconds "$PGBENCH_SECONDS"
    fact pgbench_clients "$PGBENCH_CLIENTS"
    fact pgbench_tps "${tps%.*}"
    fact pgbench_transactions "${ntx:-}"
    "${BENCHPY[@]}" pages-compare "$DATA/base" "$RUN/pages-before.pickle" >"$RUN/pages.tsv"
    cat "$RUN/pages.tsv" >>"$RESULTS/facts.tsv"
    rm -f "$RUN/pages-before.pickle"
    awk -F'\t' '{ v[$1] = $2 } END { printf "  %d of %d pages changed (%.1f %%), in %d of %d files (%.1f %% of the bytes)\n",
        v["pages_changed"], v["pages_total"], 100 * v["pages_changed"] / v["pages_total"], v["files_changed"], v["files_total"],
        100 * v["files_changed_bytes"] / v["base_bytes"] }' \
        "$RUN/pages.tsv" >&2
    for tool in "${INCR_TOOLS[@]}"; do
        if [[ $tool == stowage ]]; then
            if oneshot incr stowage "stowage backup pg-base (second full)" "stowage_stored $(q "$BASE_REPO")" \
                "${PGRUN[@]}" "STOWAGE_CONFIG=$BASE_CONF" "$S" --json backup pg-base --fast --dbname "$CONN" --pgdata "$DATA" \
                && ! "$HELPER" stowage-count "$BASE_CONF" pg-base 2 >>"$LOGS/incr-stowage.log" 2>&1; then
                warn "the stowage repository does not list 2 pg-base snapshots; see $LOGS/incr-stowage.log"
                FAILED+=("incr/stowage check")
            fi
        else
            if oneshot incr pgbackrest "pgbackrest backup --type=incr" "file_bytes $(q "$PGBR_BACKUP")" \
                "${PGRUN[@]}" pgbackrest "--config=$PGBR_CONF" "--stanza=$STANZA" backup --type=incr \
                && ! "$HELPER" pgbr-count incr 2 >>"$LOGS/incr-pgbackrest.log" 2>&1; then
                warn "pgbackrest does not list a full and an incr backup; see $LOGS/incr-pgbackrest.log"
                FAILED+=("incr/pgbackrest check")
            fi
        fi
        "$HELPER" archive-wait
    done
fi

# ------------------------------------------------------------------ 3. pg_dump
if has "$BENCHES" dump; then
    log "dump: size of pg_dump -Fc -Z0"
    DUMP_BYTES=$("${PGRUN[@]}" pg_dump -Fc -Z0 -d "$CONN" | wc -c)
    ((DUMP_BYTES > 0)) || die "pg_dump wrote nothing"
    fact dump_bytes "$DUMP_BYTES"
    log "  $((DUMP_BYTES / 1000000)) MB"
    PD_LABEL="pg_dump -Fc -Z0 > /dev/null"
    timed dump "$PD_LABEL"
    add "$PD_LABEL" "" "$TW${PGRUN_S}pg_dump -Fc -Z0 -d $(q "$CONN") > /dev/null"
    ST_DUMP_CMD="${PGRUN_S}STOWAGE_CONFIG=$(q "$DUMP_CONF") $(q "$S") backup pg-dump --dbname $(q "$CONN")"
    ST_DUMP_LABEL="stowage backup pg-dump"
    if has "$TOOLS" stowage; then
        timed dump "$ST_DUMP_LABEL"
        add "$ST_DUMP_LABEL" "$H stowage-reset $(q "$DUMP_CONF") $(q "$DUMP_REPO") $(q "$DUMP_SPOOL")" \
            "$TW$ST_DUMP_CMD" "$TW$ST_DUMP_CMD && $H stowage-count $(q "$DUMP_CONF") pg-dump 1"
    fi
    run_group dump "$RUNS"
    rss_rows dump

    if has "$TOOLS" stowage; then
        "$HELPER" stowage-reset "$DUMP_CONF" "$DUMP_REPO" "$DUMP_SPOOL"
        ok=1
        oneshot dump-first stowage "stowage backup pg-dump (first, empty repository)" "stowage_stored $(q "$DUMP_REPO")" \
            "${PGRUN[@]}" "STOWAGE_CONFIG=$DUMP_CONF" "$S" --json backup pg-dump --dbname "$CONN" || ok=0
        if ((ok)) && ! "$HELPER" stowage-count "$DUMP_CONF" pg-dump 1 >>"$LOGS/dump-first-stowage.log" 2>&1; then
            warn "the dump repository does not list 1 pg-dump snapshot; see $LOGS/dump-first-stowage.log"
            FAILED+=("dump-first/stowage check")
            ok=0
        fi
        n=$((SCALE * 100000)) ins=$((SCALE * 100000 * DUMP_INSERT_PCT / 100))
        log "dump: $ins rows inserted into pgbench_accounts ($DUMP_INSERT_PCT %), $DUMP_UPDATE_ROWS scattered rows updated"
        inserted=$(sql "$PORT" "WITH i AS (INSERT INTO pgbench_accounts (aid, bid, abalance, filler)
            SELECT aid + $n, bid, abalance, filler FROM pgbench_accounts WHERE aid <= $ins RETURNING 1)
            SELECT count(*) FROM i")
        # rows i * 2654435761 (a prime) mod N: distinct, scattered over the table, the same every run
        updated=$(sql "$PORT" "WITH u AS (UPDATE pgbench_accounts SET abalance = abalance + 1
            WHERE aid IN (SELECT 1 + (i * 2654435761) % $n FROM generate_series(1::bigint, $DUMP_UPDATE_ROWS) i) RETURNING 1)
            SELECT count(*) FROM u")
        fact dump_insert_pct "$DUMP_INSERT_PCT"
        fact dump_rows_inserted "$inserted"
        fact dump_rows_updated "$updated"
        if ((ok)) && oneshot dump-second stowage "stowage backup pg-dump (second, after the changes)" \
            "stowage_stored $(q "$DUMP_REPO")" \
            "${PGRUN[@]}" "STOWAGE_CONFIG=$DUMP_CONF" "$S" --json backup pg-dump --dbname "$CONN" \
            && ! "$HELPER" stowage-count "$DUMP_CONF" pg-dump 2 >>"$LOGS/dump-second-stowage.log" 2>&1; then
            warn "the dump repository does not list 2 pg-dump snapshots; see $LOGS/dump-second-stowage.log"
            FAILED+=("dump-second/stowage check")
        fi
    fi
fi

fact archive_failed_count "$(sql "$PORT" "SELECT failed_count FROM pg_stat_archiver")"
pg_stop "$DATA" fast

# ------------------------------------------------------------------ summary
finish   # exits 1 when something was left out
