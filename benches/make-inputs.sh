#!/usr/bin/env bash
# make-inputs.sh [OUTDIR] -- build the inputs for the whole-command benchmarks (compare.sh).
#
# Three opaque byte streams, each representative of something stowage backs up:
#   pgdata.tar  a stopped PostgreSQL 15 data directory after `pgbench -i -s $SCALE`
#               (SCALE=100 gives ~1.5-1.6 GB: heap pages, btree indexes, a little WAL)
#   random.bin  $RANDOM_MIB MiB (default 1024) of incompressible, deterministic bytes
#               (AES-128-CTR keystream of a fixed passphrase)
#   usr.tar     a valid tar of regular files from /usr, taken in sorted path order
#               until ~$USR_MIB MiB (default 1024): binaries, shared libraries, text
#
# Idempotent: an input that already exists is kept (delete it to rebuild). Files are
# written as NAME.partial and renamed when complete, so an interrupted run leaves nothing
# that looks finished.
#
# Environment:
#   STOWAGE_BENCH_DIR  default OUTDIR (/var/tmp/stowage-bench)
#   QUICK=1            small sizes for smoke tests (SCALE=5 RANDOM_MIB=64 USR_MIB=64);
#                      the default OUTDIR then becomes $STOWAGE_BENCH_DIR/quick
#   SCALE, RANDOM_MIB, USR_MIB   override the sizes above
#   INPUTS             subset to build, e.g. INPUTS="random usr" (default: "pgdata random usr")
#   PG_BIN             PostgreSQL binaries (default /usr/lib/postgresql/15/bin)
set -euo pipefail

if [[ "${QUICK:-0}" == 1 ]]; then
    : "${SCALE:=5}" "${RANDOM_MIB:=64}" "${USR_MIB:=64}"
    default_outdir="${STOWAGE_BENCH_DIR:-/var/tmp/stowage-bench}/quick"
else
    : "${SCALE:=100}" "${RANDOM_MIB:=1024}" "${USR_MIB:=1024}"
    default_outdir="${STOWAGE_BENCH_DIR:-/var/tmp/stowage-bench}"
fi
OUTDIR="${1:-$default_outdir}"
INPUTS="${INPUTS:-pgdata random usr}"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"

log() { printf '[make-inputs] %s\n' "$*" >&2; }
die() { printf '[make-inputs] ERROR: %s\n' "$*" >&2; exit 1; }

mkdir -p "$OUTDIR"
chmod a+x "$OUTDIR"  # the postgres user must be able to reach its scratch dir below it

# ---------------------------------------------------------------- cleanup on any exit
TMP=$(mktemp -d "$OUTDIR/.tmp.XXXXXX")       # big scratch space, on the same disk as OUTDIR
SOCK=$(mktemp -d /tmp/stowage-pgsock.XXXXXX) # short path: unix socket names max ~107 bytes
chmod 755 "$TMP" "$SOCK"
PG_DATA=""
cleanup() {
    local rc=$?
    if [[ -n "$PG_DATA" && -f "$PG_DATA/postmaster.pid" ]]; then
        log "stopping scratch PostgreSQL cluster"
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$TMP" "$SOCK"
    rm -f "$OUTDIR"/*.partial
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Run a command as the postgres user when we are root (initdb/postgres refuse to run as root).
as_pg() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---------------------------------------------------------------- pgdata.tar
make_pgdata() {
    local out="$OUTDIR/pgdata.tar"
    if [[ -s "$out" ]]; then log "pgdata.tar present, keeping it"; return; fi
    [[ -x "$PG_BIN/initdb" ]] || die "no PostgreSQL binaries in $PG_BIN (apt-get install postgresql-15)"

    local pg="$TMP/pg"   # owned by the server's user: data dir and server log live here
    PG_DATA="$pg/data"
    mkdir -p "$PG_DATA"
    chmod 700 "$PG_DATA"
    if [[ $(id -u) -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' user"
        chown -R postgres: "$pg" "$SOCK"
        as_pg test -w "$pg" || die "user postgres cannot write $pg: use an OUTDIR whose parents are world-searchable"
    fi

    local port; port=$(free_port)
    log "initdb (scale $SCALE, port $port, unix socket in $SOCK)"
    as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -A trust -E UTF8 --no-locale >"$TMP/initdb.log" 2>&1 \
        || { cat "$TMP/initdb.log" >&2; die "initdb failed"; }

    # Unix socket only. fsync off: durability of a scratch cluster is irrelevant, and the
    # clean shutdown below still writes every dirty page and a shutdown checkpoint.
    # wal_level=minimal lets pgbench's COPY skip WAL, so the tree is dominated by table and
    # index files, as a real data directory is, rather than by recycled WAL segments.
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$pg/postgres.log" -w -t 120 \
        -o "-c listen_addresses='' -k $SOCK -p $port -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c wal_level=minimal -c max_wal_senders=0" \
        start >/dev/null || { cat "$pg/postgres.log" >&2; die "postgres did not start"; }

    log "pgbench -i -s $SCALE"
    as_pg "$PG_BIN/pgbench" -h "$SOCK" -p "$port" -U postgres -i -s "$SCALE" -q postgres >"$TMP/pgbench.log" 2>&1 \
        || { tail -20 "$TMP/pgbench.log" >&2; die "pgbench -i failed"; }

    log "stopping the cluster (fast, clean shutdown)"
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 600 stop >/dev/null
    [[ -f "$PG_DATA/postmaster.pid" ]] && die "postgres did not stop"
    rm -f "$pg/postgres.log"

    log "tar cf pgdata.tar"
    tar -C "$pg" --sort=name -cf "$out.partial" data
    mv "$out.partial" "$out"
    rm -rf "$pg"; PG_DATA=""
}

# ---------------------------------------------------------------- random.bin
make_random() {
    local out="$OUTDIR/random.bin"
    if [[ -s "$out" ]]; then log "random.bin present, keeping it"; return; fi
    log "random.bin: $RANDOM_MIB MiB of AES-CTR keystream"
    # CTR output has exactly the input's length, so no head(1) and no SIGPIPE.
    head -c "$((RANDOM_MIB * 1024 * 1024))" /dev/zero \
        | openssl enc -aes-128-ctr -pass pass:stowage -nosalt -pbkdf2 -iter 1 >"$out.partial"
    mv "$out.partial" "$out"
}

# ---------------------------------------------------------------- usr.tar
make_usr() {
    local out="$OUTDIR/usr.tar"
    if [[ -s "$out" ]]; then log "usr.tar present, keeping it"; return; fi
    log "usr.tar: files from /usr in sorted path order up to $USR_MIB MiB"
    # Regular files and symlinks, byte-wise sorted by path. Each entry costs its 512-byte
    # header plus its data padded to 512; a file that would overshoot the budget is skipped
    # and later (smaller) ones still fill the gap, so the tar ends just under the budget.
    # Names with backslashes (which tar -T would unescape) are skipped. awk reads to the
    # end rather than exiting early, so sort gets no SIGPIPE.
    (cd / && { LC_ALL=C find usr -xdev \( -type f -o -type l \) -printf '%s\t%y\t%p\n' 2>/dev/null || true; }) \
        | LC_ALL=C sort -t $'\t' -k3,3 \
        | awk -F '\t' -v budget="$((USR_MIB * 1024 * 1024 - 10240))" '
            $3 ~ /\\/ { next }
            { cost = 512 + ($2 == "f" ? int(($1 + 511) / 512) * 512 : 0)
              if (total + cost > budget) next
              total += cost; print $3 }' >"$TMP/usr.list"
    tar -C / --no-recursion --ignore-failed-read --warning=no-file-changed \
        -cf "$out.partial" -T "$TMP/usr.list"
    mv "$out.partial" "$out"
}

for input in $INPUTS; do
    case "$input" in
        pgdata) make_pgdata ;;
        random) make_random ;;
        usr) make_usr ;;
        *) die "unknown input '$input' (expected pgdata, random, usr)" ;;
    esac
done

echo "inputs in $OUTDIR:"
for input in $INPUTS; do
    case "$input" in pgdata) f=pgdata.tar ;; random) f=random.bin ;; usr) f=usr.tar ;; esac
    bytes=$(stat -c %s "$OUTDIR/$f")
    awk -v f="$f" -v b="$bytes" 'BEGIN { printf "  %-11s %12d bytes  %8.1f MiB\n", f, b, b / 1048576 }' 
done
