# shellcheck shell=bash
# Sourced by the PostgreSQL benchmark scripts (pg.sh, pitr.sh; wal.sh for the setup and server
# helpers only) and by the helper scripts they write (archive_wait, switch_wal): the setup they
# share (postgres user, socket directory, cleanup, passphrase file, archive_command, pgBackRest
# settings), the server helpers, and the generated pgbench cluster of pg.sh and pitr.sh
# (OUTDIR/pg/gen, made once and reused by both). Needs from the caller (read when a function
# runs): log and die (common.sh), PG_BIN, RUN, LOGS, PGDIR, GEN (PGDIR/gen), SCALE, and the
# RUNNING array (data directories of the servers started); pg_user_setup defines as_pg and
# to_pg (run as / hand over to the postgres user) and PGRUN, pg_sock sets SOCK.

# ------------------------------------------------------------------ setup
# pg_check_bins NAME...: each PostgreSQL program is in PG_BIN
pg_check_bins() {
    local b
    for b in "$@"; do
        [[ -x "$PG_BIN/$b" ]] || die "no $b in $PG_BIN (apt-get install postgresql-15)"
    done
}

# pg_user_setup [ENV=VALUE...]: PostgreSQL refuses to run as root, so as root the server runs
# as `postgres` (as_pg: runuser) and so do the timed commands (PGRUN: setpriv, no PAM session,
# the same few milliseconds for every tool; HOME and XDG_CACHE_HOME in RUN, then ENV)
pg_user_setup() {
    # shellcheck disable=SC2317  # as_pg and to_pg: called by the scripts
    if [[ $(id -u) -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' user"
        as_pg() { runuser -u postgres -- "$@"; }
        to_pg() { chown -R postgres: "$@"; }
        PGRUN=(setpriv --reuid=postgres --regid=postgres --init-groups env "HOME=$RUN/home" "XDG_CACHE_HOME=$RUN/cache" "$@")
    else
        as_pg() { "$@"; }
        to_pg() { :; }
        PGRUN=(env "HOME=$RUN/home" "XDG_CACHE_HOME=$RUN/cache" "$@")
    fi
    # shellcheck disable=SC2034  # used by the scripts
    PGRUN_S=$(printf '%q ' "${PGRUN[@]}")     # for hyperfine command strings
}

# pgbr_check_zst SUBCOMMAND: this pgbackrest can compress with zstd
pgbr_check_zst() {
    pgbackrest help "$1" compress-type 2>/dev/null | grep -q '\* zst' \
        || die "this pgbackrest has no zst compression"
}

# pg_sock PREFIX: SOCK = /tmp/PREFIX.XXXXXX, the servers' socket directory (a short path: unix
# socket names max ~107 bytes)
pg_sock() {
    SOCK=$(mktemp -d "/tmp/$1.XXXXXX")
    chmod 755 "$SOCK"
    to_pg "$SOCK"
}

# pg_cleanup [DATA...]: the EXIT trap, so that no server or pgbench outlives the script: stops
# BG_PIDS, the servers in RUNNING and DATA..., removes SOCK and (unless KEEP=1) RUN
pg_cleanup() {
    local rc=$? d p
    for p in "${BG_PIDS[@]}"; do
        [[ -n "$p" ]] || continue
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    for d in "${RUNNING[@]}" "$@"; do
        [[ -n "$d" && -f "$d/postmaster.pid" ]] || continue
        as_pg "$PG_BIN/pg_ctl" -D "$d" -m fast -w -t 120 stop >/dev/null 2>&1 \
            || as_pg "$PG_BIN/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1 || true
    done
    rm -rf "$SOCK" "$PGDIR/gen.partial"
    if [[ "${KEEP:-0}" != 1 ]]; then rm -rf "$RUN"; fi
    exit "$rc"
}

# pg_password_file: STOWAGE_PASSWORD into RUN/conf/password (then unset), which the postgres
# user, running every stowage command, reads through its config
pg_password_file() {
    printf '%s\n' "$STOWAGE_PASSWORD" >"$RUN/conf/password"
    chmod 0640 "$RUN/conf/password"
    if [[ $(id -u) -eq 0 ]]; then chgrp "$(id -gn postgres)" "$RUN/conf/password"; fi
    unset STOWAGE_PASSWORD
}

# archive_setup STOWAGE INIT_LOG: ARCHIVE_COMMAND and the server's SERVER_ENV, each tool's half
# chained with && (PostgreSQL retries the whole command; wal-push of an already stored segment
# with the same content exits 0): stowage's when STOWAGE=1 (after `stowage init` of BASE_CONF,
# output in INIT_LOG), pgbackrest's when USE_PGBR=1
archive_setup() {
    local ac=() a
    # shellcheck disable=SC2034  # used by the scripts
    SERVER_ENV=()
    if (($1)); then
        # shellcheck disable=SC2086  # INIT_ARGS: several arguments
        "${PGRUN[@]}" "STOWAGE_CONFIG=$BASE_CONF" "$S" init $INIT_ARGS >"$2" 2>&1 \
            || { tail -20 "$2" >&2; die "stowage init ($BASE_CONF) failed"; }
        ac+=("$S wal-push %p")
        # shellcheck disable=SC2034  # used by the scripts
        SERVER_ENV=("STOWAGE_CONFIG=$BASE_CONF" "HOME=$RUN/home" "XDG_CACHE_HOME=$RUN/cache" "PATH=$CMD_PATH")
    fi
    if ((USE_PGBR)); then ac+=("pgbackrest --config=$PGBR_CONF --stanza=$STANZA archive-push %p"); fi
    ARCHIVE_COMMAND=""
    for a in "${ac[@]}"; do ARCHIVE_COMMAND+="${ARCHIVE_COMMAND:+ && }$a"; done
}

# archive_check [CMD...]: fail early when archiving does not work. With pgbackrest: stanza-create,
# CMD, then `pgbackrest check` (a switched segment reaches its archive, so stowage's half of the
# chain took it too); else `HELPER switch`; nothing when archiving is off
archive_check() {
    if ((USE_PGBR)); then
        log "pgbackrest stanza-create and check"
        as_pg pgbackrest "--config=$PGBR_CONF" "--stanza=$STANZA" stanza-create >"$LOGS/pgbackrest-stanza-create.log" 2>&1 \
            || { tail -20 "$LOGS/pgbackrest-stanza-create.log" >&2; die "pgbackrest stanza-create failed"; }
        "$@"
        as_pg pgbackrest "--config=$PGBR_CONF" "--stanza=$STANZA" check >"$LOGS/pgbackrest-check.log" 2>&1 \
            || { tail -20 "$LOGS/pgbackrest-check.log" >&2; tail -10 "$PGLOG" >&2; die "pgbackrest check failed (archive_command: see $PGLOG)"; }
    elif [[ -n "$ARCHIVE_COMMAND" ]]; then
        log "checking archive_command"
        "$HELPER" switch || die "archiving does not work; see $PGLOG"
    fi
}

# pgbr_conf [LINES]: PGBR_CONF, the same pgBackRest settings for every PostgreSQL bench (zstd
# at COMPRESSION_LEVEL, PGBR_PROCESS_MAX, synchronous archive-push; all of it in RUN/pgbr and
# PGBR_REPO), with LINES (more sections) before the stanza of the cluster in DATA
# shellcheck disable=SC2153  # DATA, PORT: the scripts'
pgbr_conf() {
    mkdir -p "$RUN/pgbr"/{repo,log,lock,spool}
    {
        echo "[global]"
        echo "repo1-path=$PGBR_REPO"
        echo "repo1-retention-full=2"
        echo "log-path=$RUN/pgbr/log"
        echo "lock-path=$RUN/pgbr/lock"
        echo "spool-path=$RUN/pgbr/spool"
        echo "compress-type=zst"
        echo "compress-level=$COMPRESSION_LEVEL"
        echo "process-max=$PGBR_PROCESS_MAX"
        echo "start-fast=y"
        echo "archive-async=n"
        echo "log-level-console=warn"
        if [[ -n "${1:-}" ]]; then
            echo
            printf '%s\n' "$1"
        fi
        echo
        echo "[$STANZA]"
        echo "pg1-path=$DATA"
        echo "pg1-socket-path=$SOCK"
        echo "pg1-port=$PORT"
    } >"$PGBR_CONF"
}

# ------------------------------------------------------------------ PostgreSQL helpers
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

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

# ------------------------------------------------------------------ for RUN/bin/helper
# (the scripts' helper sources this file; these also need PORT, DATA and PGLOG)
# archive_wait: wait until the archiver is idle (nothing .ready), so no push runs during a timing
archive_wait() {
    local ready=0
    for _ in $(seq 6000); do
        ready=$(find "$DATA/pg_wal/archive_status" -name '*.ready' | wc -l)
        ((ready == 0)) && return 0
        sleep 0.1
    done
    echo "helper: $ready segments still .ready after 10 minutes; see $PGLOG" >&2
    tail -5 "$PGLOG" >&2
    return 1
}
# switch_wal: write a WAL record, pg_switch_wal(), wait until archived: all WAL so far is stored
switch_wal() {
    local seg
    sql "$PORT" "SELECT pg_logical_emit_message(false, 'stowage-bench', 'switch')" >/dev/null
    seg=$(sql "$PORT" "SELECT pg_walfile_name(pg_switch_wal())")
    for _ in $(seq 6000); do
        [[ $(sql "$PORT" "SELECT coalesce(last_archived_wal, '') >= '$seg' FROM pg_stat_archiver") == t ]] && return 0
        sleep 0.1
    done
    echo "helper: segment $seg not archived after 10 minutes; see $PGLOG" >&2
    tail -5 "$PGLOG" >&2
    return 1
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
