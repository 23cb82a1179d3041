#!/usr/bin/env bash
# vault.sh [OUTDIR] -- Vault raft snapshots: `stowage backup vault --file` on two nights of a
# synthetic Vault, beside restic backing up the same .snap file and the runbook's
# `gzip -d | zstd -3` copy of it.
#
# The snapshots come from benches/make-vault-snapshots.py (fixed seed): a state.bin of
# STATE_MIB MiB shaped like Vault's FSM snapshot (key-ordered protobuf entries with
# random-looking encrypted values), then night 2 after 1% of the entries were rewritten, 1%
# inserted and 0.3% deleted; each a .snap as raft-snapshot writes it (gzip of a tar). They are
# kept in OUTDIR/vault/gen-STATE_MIB and reused. For each night, in this order, one run each
# under /usr/bin/time -v (wall time, CPU, peak RSS), the night's file copied to the same path:
#   stowage   `stowage --json backup vault --file vault.snap` into one repository (both nights)
#   restic    `restic backup vault.snap` into one repository (both nights; Debian's restic,
#             repository version 2, zstd "auto")
#   zstd      `gzip -dc vault.snap | zstd -3 -T2 -o nightN.tar.zst` (what a runbook keeps: a
#             full copy every night)
# Stored bytes = the growth of each tool's directory over the command (du -sb), and stowage's
# own bytes_stored. Then night 2 is restored (`stowage restore latest --to FILE`, timed the
# same way) and its members (names, modes, times, SHA-256) compared with the original's. Results: OUTDIR/vault-results/{oneshot,facts}.tsv, env.txt, summary.md.
#
# Targets (summary.md checks each):
#   night 2 stowage stores <= 15% of what it stored on night 1 (the members deduplicated; the
#           .snap itself is gzip, so a file-level tool stores it whole again)
#   night 2 stowage stores <= restic's night 2
#   peak RSS of stowage <= 300 MiB whatever STATE_MIB (the pipeline's 128 MiB cap plus code)
#
# `benches/vault.sh --summary [RESULTS]` prints the summary of a finished run again.
#
# Environment:
#   STOWAGE_BENCH_DIR  default OUTDIR (/var/tmp/stowage-bench)
#   STATE_MIB     size of state.bin (default 256)
#   QUICK=1       STATE_MIB=32
#   STOWAGE_BIN   default target/release/stowage (built with cargo build --release if missing)
#   INIT_ARGS     arguments of `stowage init` (default: cheap key derivation, which only
#                 changes the one-off key unwrap, not the backup)
#   KEEP=1        keep OUTDIR/vault/run (the repositories) at the end
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
BENCH_TAG=vault
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$SCRIPT_DIR/lib/common.sh"   # log, warn, die, has, q

# ------------------------------------------------------------------ summary
summarize() {
    BENCH_LIB="$SCRIPT_DIR/lib" python3 - "$1" <<'PY'
import os, sys
sys.path.insert(0, os.environ["BENCH_LIB"])
import summary  # noqa: E402  (benches/lib/summary.py)

results = sys.argv[1]
facts = {r["key"]: r["value"] for r in summary.read_tsv(results, "facts.tsv")}
shots = summary.read_tsv(results, "oneshot.tsv")
num = lambda v: float(v) if v not in (None, "") else None
mb = lambda b: f"{b / 1e6:,.1f}" if b is not None else "n/a"
verdict = lambda ok: "met" if ok else "**NOT met**"
shot = lambda night, tool: next((r for r in shots if r["night"] == night and r["tool"] == tool), None)

env = os.path.join(results, "env.txt")
if os.path.exists(env):
    with open(env) as f:
        print("".join("    " + line for line in f))
s1, s2 = num(facts.get("state1_bytes")), num(facts.get("state2_bytes"))
print(f"## Vault raft snapshots, two nights: state.bin {mb(s1)} MB, then {mb(s2)} MB after "
      f"{facts.get('changed_entries', '?')} of {facts.get('entries', '?')} entries rewritten, "
      f"{facts.get('inserted_entries', '?')} inserted, {facts.get('deleted_entries', '?')} deleted\n")
print(f".snap files (gzip): {mb(num(facts.get('snap1_bytes')))} MB and {mb(num(facts.get('snap2_bytes')))} MB. "
      "One run each under /usr/bin/time -v; stored = growth of the tool's directory.\n")
rows = []
for r in shots:
    wall = num(r["wall_s"])
    size = s1 if r["night"] == "1" else s2
    cpu = (num(r["user_s"]) or 0) + (num(r["sys_s"]) or 0)
    rows.append([r["night"], r["label"], r["exit"], f"{wall:.2f}", f"{cpu:.2f}",
                 f"{size / wall / 1e6:.0f}" if wall and size else "n/a",
                 f"{num(r['maxrss_kb']) / 1024:.0f}" if r["maxrss_kb"] else "n/a",
                 mb(num(r["stored_bytes"])), mb(num(r["json_bytes_stored"])) if r["json_bytes_stored"] else ""])
print(summary.table(["night", "command", "exit", "wall s", "CPU s", "state MB/s", "peak RSS MiB",
                     "stored MB", "bytes_stored MB"], rows))
print()
st1, st2, rs2 = shot("1", "stowage"), shot("2", "stowage"), shot("2", "restic")
if st1 and st2:
    a, b = num(st1["stored_bytes"]), num(st2["stored_bytes"])
    print(f"- night 2 / night 1 stored, stowage: {100 * b / a:.1f} % (target <= 15 %): {verdict(b <= 0.15 * a)}")
    if rs2:
        r = num(rs2["stored_bytes"])
        print(f"- night 2 stored, stowage vs restic: {mb(b)} MB vs {mb(r)} MB ({b / r:.2f}x; target <= 1): {verdict(b <= r)}")
    peak = max(num(x["maxrss_kb"]) or 0 for x in (st1, st2)) / 1024
    if "restore_members_equal" in facts:
        print(f"- night 2 restored with `restore --to FILE`: members equal to the original's: {facts['restore_members_equal']}")
    print(f"- stowage peak RSS: {peak:.0f} MiB (target <= 300 MiB): {verdict(peak <= 300)}")
PY
}

summary_mode vault-results "$@"

OUTDIR=${1:-${STOWAGE_BENCH_DIR:-/var/tmp/stowage-bench}}
STATE_MIB=${STATE_MIB:-256}
[[ "${QUICK:-0}" == 1 ]] && STATE_MIB=32
GEN="$OUTDIR/vault/gen-$STATE_MIB"
RUN="$OUTDIR/vault/run"
RESULTS="$OUTDIR/vault-results"
INIT_ARGS=${INIT_ARGS:---kdf-memory-kib 1024 --kdf-iterations 1}
export STOWAGE_PASSWORD=${STOWAGE_PASSWORD:-stowage vault bench}
export RESTIC_PASSWORD=$STOWAGE_PASSWORD

need=()
for tool in restic zstd gzip; do command -v "$tool" >/dev/null || need+=("$tool"); done
[[ -x /usr/bin/time ]] || need+=(time)
if ((${#need[@]})); then
    log "apt-get install -y ${need[*]}"
    apt-get install -y "${need[@]}" >/dev/null || die "cannot install ${need[*]}"
fi

target_dir="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
S="${STOWAGE_BIN:-$target_dir/release/stowage}"
if [[ -z "${STOWAGE_BIN:-}" && ! -x "$S" ]]; then
    log "cargo build --release --bin stowage"
    cargo build --release --bin stowage --manifest-path "$REPO_ROOT/Cargo.toml" || die "cargo build --release failed"
fi
S=$(realpath "$(type -P "$S")") || die "no stowage binary at $S"
"$S" backup vault --help >/dev/null 2>&1 || die "$S has no 'backup vault' (an older build? rebuild it)"

mkdir -p "$RESULTS"
rm -f "$RESULTS"/{oneshot,facts}.tsv "$RESULTS"/{env.txt,summary.md}
rm -rf "$RUN"
mkdir -p "$RUN/input" "$RUN/zstd" "$RUN/logs"
cleanup() {
    local rc=$?
    [[ "${KEEP:-0}" == 1 ]] || rm -rf "$RUN"
    exit "$rc"
}
trap cleanup EXIT

if [[ ! -f "$GEN/night2.snap" ]]; then
    log "making two nights of snapshots, state.bin ~$STATE_MIB MiB, in $GEN"
    python3 "$SCRIPT_DIR/make-vault-snapshots.py" "$GEN" "$STATE_MIB" || die "snapshot generator failed"
fi
cp "$GEN/facts.tsv" "$RESULTS/facts.tsv"
printf 'snap1_bytes\t%s\nsnap2_bytes\t%s\n' "$(stat -c %s "$GEN/night1.snap")" "$(stat -c %s "$GEN/night2.snap")" >>"$RESULTS/facts.tsv"
{
    echo "date: $(date -u +%FT%TZ)"
    echo "host: $(uname -srm), $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "stowage: $S ($("$S" --version))"
    echo "restic: $(restic version)"
    echo "zstd: $(zstd --version)"
} >"$RESULTS/env.txt"

REPO="$RUN/stowage-repo"
RREPO="$RUN/restic-repo"
# shellcheck disable=SC2086  # INIT_ARGS is a list of words
"$S" --repo "$REPO" init $INIT_ARGS >/dev/null || die "stowage init failed"
restic -r "$RREPO" init >/dev/null 2>&1 || die "restic init failed"

du_bytes() { du -sb "$1" | cut -f1; }
printf 'night\ttool\tlabel\texit\twall_s\tuser_s\tsys_s\tmaxrss_kb\tstored_bytes\tjson_bytes_stored\n' >"$RESULTS/oneshot.tsv"
# oneshot NIGHT TOOL LABEL DIR CMD...: one run of CMD under /usr/bin/time -v; stored = growth of DIR
oneshot() {
    local night=$1 tool=$2 label=$3 dir=$4; shift 4
    local tf="$RUN/logs/$tool-$night.time" out="$RUN/logs/$tool-$night.out" err="$RUN/logs/$tool-$night.err"
    local before after rc=0 js=""
    log "night $night: $label"
    before=$(du_bytes "$dir")
    /usr/bin/time -v -o "$tf" "$@" >"$out" 2>"$err" || rc=$?
    after=$(du_bytes "$dir")
    ((rc == 0)) || { warn "$label exited $rc:"; tail -5 "$err" >&2; }
    [[ "$tool" == stowage && $rc == 0 ]] && js=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["bytes_stored"])' "$out")
    python3 - "$tf" "$night" "$tool" "$label" "$rc" "$((after - before))" "$js" >>"$RESULTS/oneshot.tsv" <<'PY'
import sys
tf, *row = sys.argv[1:]
v = {}
for line in open(tf):
    k, _, val = line.strip().rpartition(": ")
    v[k] = val
h, m, s = (["0"] + v["Elapsed (wall clock) time (h:mm:ss or m:ss)"].split(":"))[-3:]
wall = int(h) * 3600 + int(m) * 60 + float(s)
night, tool, label, rc, stored, js = row
print("\t".join([night, tool, label, rc, f"{wall:.3f}", v["User time (seconds)"], v["System time (seconds)"],
                 v["Maximum resident set size (kbytes)"], stored, js]))
PY
    return "$rc"
}

failed=0
for night in 1 2; do
    cp "$GEN/night$night.snap" "$RUN/input/vault.snap"
    sync
    oneshot "$night" stowage "stowage backup vault --file" "$REPO" \
        "$S" --repo "$REPO" --json backup vault --file "$RUN/input/vault.snap" || failed=1
    oneshot "$night" restic "restic backup" "$RREPO" \
        restic -r "$RREPO" backup --quiet "$RUN/input/vault.snap" || failed=1
    oneshot "$night" zstd "gzip -d | zstd -3 -T2" "$RUN/zstd" \
        bash -c "gzip -dc $(q "$RUN/input/vault.snap") | zstd -3 -T2 -q -o $(q "$RUN/zstd/night$night.tar.zst")" || failed=1
done

# Restore of night 2: the .snap rebuilt (checked against SHA256SUMS while written), then its
# members compared with the original's.
mkdir -p "$RUN/restore"
oneshot 2 restore "stowage restore latest --to FILE" "$RUN/restore" \
    "$S" --repo "$REPO" restore latest --to "$RUN/restore/vault.snap" || failed=1
python3 - "$GEN/night2.snap" "$RUN/restore/vault.snap" >>"$RESULTS/facts.tsv" <<'PY' || failed=1
import hashlib, sys, tarfile
def members(path):
    with tarfile.open(path, "r:gz") as tar:
        return [(m.name, m.mode, m.mtime, hashlib.sha256(tar.extractfile(m).read()).hexdigest()) for m in tar]
same = members(sys.argv[1]) == members(sys.argv[2])
print(f"restore_members_equal\t{same}")
sys.exit(0 if same else 1)
PY

summarize "$RESULTS" | tee "$RESULTS/summary.md"
exit "$failed"
