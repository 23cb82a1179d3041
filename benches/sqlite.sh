#!/usr/bin/env bash
# sqlite.sh [OUTDIR] -- SQLite backups: `stowage backup sqlite` against the runbook's nightly
# job (`sqlite3 db ".backup f"` then `zstd -3 -T2 f`) and restic, side by side in one run.
#
# The database (benches/sqlite_gen.py, fixed seed): WAL mode, 4 KiB pages, rows of mixed
# text, integers and blobs plus an index on a random column, SQLITE_BENCH_MB MiB (1024),
# about 2x at zstd -3. Made once in OUTDIR/sqlite/gen.db and reused (delete it to rebuild).
# Each run works on a copy, in this order, every command once under /usr/bin/time -v
# (wall time, CPU, peak RSS; results in OUTDIR/sqlite-results/oneshot.tsv):
#   first   stowage backup sqlite into an empty repository; then sqlite3 .backup + zstd -3
#           -T2 in sequence (their times added); then restic backup of the same file.
#   update  sqlite_gen.py updates UPDATE_PCT % (1) of the rows, scattered; the changed
#           pages are found by comparing the database before and after page by page, and
#           their zstd -3 size is the floor; second stowage backup and restic backup.
#   append  sqlite_gen.py appends APPEND_PCT % (1) new rows; floor as above; third backups.
# Stored bytes: stowage's bytes_stored (--json) and the growth of each repository on disk.
#
# Targets (summary.md checks each):
#   first   stowage throughput >= 1.5x (.backup then zstd -3 -T2)
#   update  stowage stored <= 1.2x floor; time <= first / 3
#   append  stowage stored <= 1.2x floor; time <= first / 5
#
# Environment: SQLITE_BENCH_MB (1024; 64 for a quick run), STOWAGE (default
# target/release/stowage, built if missing), UPDATE_PCT, APPEND_PCT.
set -euo pipefail
BENCH_TAG=sqlite
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
source "$HERE/lib/common.sh"

OUT=${1:-${STOWAGE_BENCH_DIR:-/var/tmp/stowage-bench}}
MB=${SQLITE_BENCH_MB:-1024}
UPDATE_PCT=${UPDATE_PCT:-1}
APPEND_PCT=${APPEND_PCT:-1}
WORK=$OUT/sqlite
RES=$OUT/sqlite-results
mkdir -p "$WORK" "$RES"

for tool in sqlite3 zstd restic; do
  command -v "$tool" >/dev/null || { apt-get update -qq && apt-get install -y -qq sqlite3 zstd restic time >/dev/null; break; }
done
[[ -x /usr/bin/time ]] || apt-get install -y -qq time >/dev/null
STOWAGE=${STOWAGE:-$ROOT/target/release/stowage}
if [[ ! -x $STOWAGE ]]; then
  log "building stowage (release)"
  (cd "$ROOT" && cargo build --release --bin stowage)
  STOWAGE=${CARGO_TARGET_DIR:-$ROOT/target}/release/stowage
fi

GEN=$WORK/gen-$MB.db
if [[ ! -f $GEN ]]; then
  log "generating a $MB MiB database"
  python3 "$HERE/sqlite_gen.py" create "$GEN" "$MB"
fi
DB=$WORK/run.db
rm -f "$DB" "$DB-wal" "$DB-shm"
cp "$GEN" "$DB"
DB_BYTES=$(stat -c %s "$DB")

export STOWAGE_REPO=$WORK/repo STOWAGE_PASSWORD=bench STOWAGE_CACHE_DIR=$WORK/cache
export RESTIC_REPOSITORY=$WORK/restic RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$WORK/restic-cache
rm -rf "$STOWAGE_REPO" "$STOWAGE_CACHE_DIR" "$RESTIC_REPOSITORY" "$RESTIC_CACHE_DIR" "$WORK/dump"*
"$STOWAGE" -q init >/dev/null
restic init -q >/dev/null

printf 'step\ttool\twall_s\tuser_s\tsys_s\tmaxrss_kb\tstored_bytes\n' > "$RES/oneshot.tsv"
# timed STEP TOOL STORED_CMD -- CMD...: runs CMD under /usr/bin/time -v, appends a row.
timed() {
  local step=$1 tool=$2; shift 2
  /usr/bin/time -v -o "$WORK/time.txt" "$@" > "$WORK/out.txt"
  local wall user sys rss
  wall=$(awk -F': ' '/Elapsed/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$WORK/time.txt")
  user=$(awk -F': ' '/User time/ {print $2}' "$WORK/time.txt")
  sys=$(awk -F': ' '/System time/ {print $2}' "$WORK/time.txt")
  rss=$(awk -F': ' '/Maximum resident/ {print $2}' "$WORK/time.txt")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t' "$step" "$tool" "$wall" "$user" "$sys" "$rss" >> "$RES/oneshot.tsv"
}
repo_bytes() { du -sb "$1" | cut -f1; }

stowage_backup() {  # STEP
  local before; before=$(repo_bytes "$STOWAGE_REPO")
  timed "$1" stowage "$STOWAGE" --json backup sqlite "$DB" --name bench
  local stored; stored=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["bytes_stored"])' "$WORK/out.txt")
  echo "$stored" >> "$RES/oneshot.tsv"
  printf '%s\tstowage-repo-growth\t%s\n' "$1" $(( $(repo_bytes "$STOWAGE_REPO") - before )) >> "$RES/facts.tsv"
}
restic_backup() {  # STEP
  local before; before=$(repo_bytes "$RESTIC_REPOSITORY")
  timed "$1" restic restic backup -q "$DB"
  echo $(( $(repo_bytes "$RESTIC_REPOSITORY") - before )) >> "$RES/oneshot.tsv"
}
floor() {  # STEP BEFORE: changed pages of $DB against BEFORE, zstd -3
  local pages; pages=$(python3 "$HERE/sqlite_gen.py" floor "$2" "$DB" "$WORK/changed.pages")
  local z; z=$(zstd -3 -q -c "$WORK/changed.pages" | wc -c)
  printf '%s\tchanged_pages\t%s\n%s\tfloor_bytes\t%s\n' "$1" "$pages" "$1" "$z" >> "$RES/facts.tsv"
}

printf 'step\tfact\tvalue\n' > "$RES/facts.tsv"
printf 'first\tdb_bytes\t%s\n' "$DB_BYTES" >> "$RES/facts.tsv"
printf 'first\tdb_zstd3_bytes\t%s\n' "$(zstd -3 -T2 -q -c "$DB" | wc -c)" >> "$RES/facts.tsv"
sync

log "first backups"
stowage_backup first
timed first sqlite3-backup sqlite3 "$DB" ".backup $WORK/dump.db"; echo 0 >> "$RES/oneshot.tsv"
timed first zstd-3-T2 zstd -3 -T2 -q -f "$WORK/dump.db" -o "$WORK/dump.db.zst"
stat -c %s "$WORK/dump.db.zst" >> "$RES/oneshot.tsv"
rm -f "$WORK/dump.db" "$WORK/dump.db.zst"
restic_backup first

log "update $UPDATE_PCT % of the rows"
cp "$DB" "$WORK/before.db"
python3 "$HERE/sqlite_gen.py" update "$DB" "$UPDATE_PCT" >/dev/null
floor update "$WORK/before.db"
stowage_backup update
restic_backup update

log "append $APPEND_PCT % rows"
cp "$DB" "$WORK/before.db"
python3 "$HERE/sqlite_gen.py" append "$DB" "$APPEND_PCT" >/dev/null
floor append "$WORK/before.db"
stowage_backup append
restic_backup append
rm -f "$WORK/before.db" "$WORK/changed.pages"

{ uname -a; nproc; uptime; "$STOWAGE" --version 2>/dev/null || true; sqlite3 --version; restic version; zstd --version; } > "$RES/env.txt" 2>&1

python3 - "$RES" > "$RES/summary.md" <<'PY'
import csv, sys
res = sys.argv[1]
rows = list(csv.DictReader(open(f"{res}/oneshot.tsv"), delimiter="\t"))
facts = {(r["step"], r["fact"]): int(r["value"]) for r in csv.DictReader(open(f"{res}/facts.tsv"), delimiter="\t")}
t = {(r["step"], r["tool"]): r for r in rows}
mib = facts[("first", "db_bytes")] / 2**20
w = lambda s, tool: float(t[(s, tool)]["wall_s"])
st = lambda s, tool: int(t[(s, tool)]["stored_bytes"])
print(f"# SQLite bench: {mib:.0f} MiB database (zstd -3: {facts[('first','db_zstd3_bytes')]/2**20:.0f} MiB)\n")
print("| step | tool | wall s | MiB/s | peak RSS MiB | stored MiB |")
print("|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['step']} | {r['tool']} | {float(r['wall_s']):.2f} | {mib/max(float(r['wall_s']),1e-9):.0f} | {int(r['maxrss_kb'])/1024:.0f} | {int(r['stored_bytes'])/2**20:.2f} |")
base = w("first", "sqlite3-backup") + w("first", "zstd-3-T2")
first = w("first", "stowage")
ok = lambda c: "met" if c else "NOT met"
print()
print(f"- first: stowage {mib/first:.0f} MiB/s vs .backup+zstd {mib/base:.0f} MiB/s = {base/first:.2f}x (target >= 1.5x): {ok(base/first >= 1.5)}")
for step, speed in (("update", 3), ("append", 5)):
    fl = facts[(step, "floor_bytes")]
    s = st(step, "stowage")
    print(f"- {step}: {facts[(step,'changed_pages')]} pages changed, floor {fl/2**20:.2f} MiB; stowage stored {s/2**20:.2f} MiB = {s/fl:.2f}x floor (<= 1.2x: {ok(s <= 1.2*fl)}); restic stored {st(step,'restic')/2**20:.2f} MiB; "
          f"stowage {first/w(step,'stowage'):.1f}x faster than its first (>= {speed}x: {ok(first/w(step,'stowage') >= speed)})")
PY
cat "$RES/summary.md"
