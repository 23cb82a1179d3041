# shellcheck shell=bash
# Sourced by the PostgreSQL benchmark scripts (pg.sh, pitr.sh): the server helpers and the
# generated pgbench cluster they share (OUTDIR/pg/gen, made once and reused by both).
# Needs from the caller (read when a function runs): log and die (common.sh), as_pg and
# to_pg (run as / hand over to the postgres user), PG_BIN, SOCK (the unix socket
# directory), RUNNING (an array: data directories of the servers started), LOGS, PGDIR,
# GEN (PGDIR/gen) and SCALE.

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ------------------------------------------------------------------ PostgreSQL helpers
# pg_conf DATA NAME VALUE [NAME VALUE ...]: append settings to postgresql.auto.conf (the last
# occurrence wins), quoted as PostgreSQL reads them.
pg_conf() {
    local data=$1; shift
    while (($#)); do
        printf "%s = '%s'\n" "$1" "${2//\'/\'\'}" >>"$data/postgresql.auto.conf"
        shift 2
    done
}
# pg_start DATA PORT LOG [OPTS [ENV=VALUE ...]]: start a server on the unix socket only
pg_start() {
    local data=$1 port=$2 logf=$3 opts=${4:-}; shift 4 2>/dev/null || shift $#
    as_pg env "$@" "$PG_BIN/pg_ctl" -D "$data" -l "$logf" -w -t 600 \
        -o "-p $port -k $SOCK -c listen_addresses='' $opts" start >/dev/null \
        || { tail -30 "$logf" >&2; die "postgres did not start in $data (log $logf)"; }
    RUNNING+=("$data")
}
pg_stop() {   # pg_stop DATA [MODE]
    as_pg "$PG_BIN/pg_ctl" -D "$1" -m "${2:-fast}" -w -t 600 stop >/dev/null
    [[ ! -f "$1/postmaster.pid" ]] || die "postgres did not stop in $1"
    RUNNING=("${RUNNING[@]/$1}")
}
sql() {   # sql PORT SQL: one query as postgres over the unix socket, unaligned output
    "$PG_BIN/psql" -X -Atq -v ON_ERROR_STOP=1 -h "$SOCK" -p "$1" -U postgres -d postgres -c "$2"
}
now() { printf '%s' "$EPOCHREALTIME"; }
secs_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
secs_since3() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }'; }
# file_bytes DIR [TOP...]: bytes of the regular files under DIR, leaving out DIR/TOP subtrees
file_bytes() {
    local dir=$1 ex=() t; shift
    [[ -d "$dir" ]] || { echo 0; return; }
    for t in "$@"; do ex+=(! -path "$dir/$t/*"); done
    # (a running server's temporary files may vanish meanwhile)
    { find "$dir" -type f "${ex[@]}" -printf '%s\n' 2>/dev/null || true; } | awk '{ s += $1 } END { printf "%d\n", s }'
}

# ------------------------------------------------------------------ generated cluster (kept)
# GEN/data     the cluster after initdb (16 MiB segments, no data checksums) and pgbench -i
#              -s SCALE, stopped cleanly (made with wal_level=minimal and fsync=off: that
#              changes no data page, only how fast it is made)
# GEN/gen.env  the parameters it was made with
GEN_VERSION=1
make_gen() {
    local P="$PGDIR/gen.partial" port t0 t
    rm -rf "$GEN" "$P"
    mkdir -p "$P"
    to_pg "$P"
    port=$(free_port)
    log "generating the cluster: initdb, pgbench -i -s $SCALE (kept in $GEN for the next runs)"
    t0=$(now) t=$(now)
    as_pg "$PG_BIN/initdb" -D "$P/data" -U postgres -A trust -E UTF8 --no-locale >"$LOGS/gen-initdb.log" 2>&1 \
        || { cat "$LOGS/gen-initdb.log" >&2; die "initdb failed"; }
    pg_start "$P/data" "$port" "$LOGS/postgres/gen.log" \
        "-c fsync=off -c synchronous_commit=off -c wal_level=minimal -c max_wal_senders=0 -c archive_mode=off -c max_wal_size=4GB"
    local T_INITDB; T_INITDB=$(secs_since "$t"); t=$(now)
    "$PG_BIN/pgbench" -h "$SOCK" -p "$port" -U postgres -i -s "$SCALE" -q postgres >"$LOGS/gen-pgbench-i.log" 2>&1 \
        || { tail -20 "$LOGS/gen-pgbench-i.log" >&2; die "pgbench -i failed"; }
    sql "$port" CHECKPOINT
    local T_PGBENCH_INIT; T_PGBENCH_INIT=$(secs_since "$t")
    pg_stop "$P/data" fast
    sync   # made with fsync=off: on disk before it is called done
    local segsize; segsize=$(as_pg "$PG_BIN/pg_controldata" "$P/data" | awk -F': *' '/Bytes per WAL segment/ {print $2}')
    [[ "$segsize" == 16777216 ]] || die "the cluster has $segsize-byte WAL segments, not 16 MiB"
    local T_TOTAL; T_TOTAL=$(secs_since "$t0")
    local GEN_SCALE=$SCALE GEN_BYTES; GEN_BYTES=$(file_bytes "$P/data" pg_wal)
    declare -p GEN_VERSION GEN_SCALE GEN_BYTES T_INITDB T_PGBENCH_INIT T_TOTAL \
        | sed 's/^declare -[-a-zA-Z]* //' >"$P/gen.env"
    mv "$P" "$GEN"
    log "cluster generated in ${T_TOTAL}s (pgbench -i ${T_PGBENCH_INIT}s): $((GEN_BYTES / 1000000)) MB without pg_wal"
}

# gen_ensure: reuse GEN when it was made with this GEN_VERSION and SCALE, else make it
gen_ensure() {
    local gen_ok=0
    if [[ -f "$GEN/gen.env" && -f "$GEN/data/global/pg_control" ]]; then
        (
            want=$GEN_VERSION
            # shellcheck disable=SC1091
            source "$GEN/gen.env"
            [[ "$GEN_VERSION" == "$want" && "$GEN_SCALE" == "$SCALE" ]]
        ) && gen_ok=1
    fi
    if ((gen_ok)); then
        log "reusing the generated cluster in $GEN (pgbench -s $SCALE)"
    else
        make_gen
    fi
}
