#!/usr/bin/env bash
# Bring up the team set-up on this machine, or finish bringing it up: each step is skipped
# when already done, so running it again is safe.
#
#   PostgreSQL (own cluster under .team/pg, 127.0.0.1:$LICANOM_PG_PORT, role licanom,
#   databases mlflow and prefect) -> MLflow server on PostgreSQL with proxied artifacts
#   -> Prefect server on PostgreSQL -> process work pool + worker -> the deployments.
#
# Options: --no-deploy  (leave the deployments as they are)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

DEPLOY=1
for arg in "$@"; do
    case "$arg" in
        --no-deploy) DEPLOY=0 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) die "unknown option $arg (see --help)" ;;
    esac
done

[ -x "$PY" ] || die "no Python at $PY: run 'make venv' first (or set PY)"
command -v curl > /dev/null || die "curl is needed (apt-get install -y curl)"
mkdir -p "$TEAM_DIR" "$LOG_DIR" "$RUN_DIR" "$PREFECT_HOME_DIR" "$ARTIFACTS_DIR"

valid_ident() { [[ "$1" =~ ^[a-z_][a-z0-9_]{0,62}$ ]] || die "invalid PostgreSQL name '$1' (lower-case letters, digits, _)"; }
valid_ident "$PG_USER"; valid_ident "$PG_MLFLOW_DB"; valid_ident "$PG_PREFECT_DB"

# --- 1. PostgreSQL ------------------------------------------------------------------------------
pg_install() {
    local log="$LOG_DIR/apt-postgresql.log" before
    say "PostgreSQL is not installed: installing Debian's package 'postgresql'"
    before="$(pg_lsclusters -h 2>/dev/null | awk '{print $1"/"$2}' || true)"
    if [ "$(id -u)" = 0 ]; then
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } > "$log" 2>&1 \
            || { tail_log "$log"; die "could not install PostgreSQL with apt-get (log: $log)"; }
    elif command -v sudo > /dev/null && sudo -n true 2> /dev/null; then
        { sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } > "$log" 2>&1 \
            || { tail_log "$log"; die "could not install PostgreSQL with sudo apt-get (log: $log)"; }
    else
        die "PostgreSQL is not installed and this user cannot install it: run 'sudo apt-get install -y postgresql', then this again"
    fi
    # Debian's package creates and may start a default cluster: this set-up runs its own.
    local c
    for c in $(pg_lsclusters -h 2>/dev/null | awk '$4 == "online" {print $1"/"$2}'); do
        if ! grep -qx "$c" <<< "$before"; then
            say "stopping the default cluster $c that the package started"
            pg_ctlcluster "${c%/*}" "${c#*/}" stop || true
        fi
    done
    pg_bindir > /dev/null || die "PostgreSQL was installed but initdb/pg_ctl were not found under /usr/lib/postgresql"
}

pg_up() {
    local bindir
    bindir="$(pg_bindir)" || { pg_install; bindir="$(pg_bindir)"; }
    mkdir -p "$PG_DIR"
    if [ "$(id -u)" = 0 ]; then
        id postgres > /dev/null 2>&1 || die "no 'postgres' user (is the postgresql package installed?)"
        chown postgres:postgres "$PG_DIR"
        runuser -u postgres -- test -w "$PG_DIR" \
            || die "the postgres user cannot write $PG_DIR (a parent folder is not searchable by others): set LICANOM_TEAM_DIR to a folder it can reach"
    fi
    if [ ! -f "$PG_DATA/PG_VERSION" ]; then
        say "initialising a PostgreSQL cluster in $PG_DATA"
        as_pg mkdir -p "$PG_DATA" "$PG_SOCK"
        as_pg chmod 700 "$PG_DATA" "$PG_SOCK"
        # trust only on the private socket folder (mode 700); passwords on TCP
        as_pg "$bindir/initdb" -D "$PG_DATA" -U postgres -E UTF8 --no-locale \
            --auth-local=trust --auth-host=scram-sha-256 > "$LOG_DIR/pg-initdb.log" 2>&1 \
            || { tail_log "$LOG_DIR/pg-initdb.log"; die "initdb failed (log: $LOG_DIR/pg-initdb.log)"; }
    fi
    if pg_running; then
        say "PostgreSQL already running ($HOST:$PG_PORT)"
    else
        port_free "$PG_PORT" || die "port $PG_PORT is in use by another program: set LICANOM_PG_PORT"
        as_pg mkdir -p "$PG_SOCK"
        as_pg "$bindir/pg_ctl" -D "$PG_DATA" -l "$PG_DIR/postgres.log" -w -t 60 \
            -o "-c listen_addresses=$HOST -p $PG_PORT -k $PG_SOCK" start > "$LOG_DIR/pg-ctl.log" 2>&1 \
            || { tail_log "$PG_DIR/postgres.log"; die "PostgreSQL did not start (log: $PG_DIR/postgres.log)"; }
        say "PostgreSQL started on $HOST:$PG_PORT"
    fi
    # role and databases (the password is set on every run, so changing it takes effect)
    local pw="${PG_PASSWORD//\'/\'\'}"
    pg_admin -d postgres <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_USER') THEN CREATE ROLE $PG_USER LOGIN; END IF;
END \$\$;
ALTER ROLE $PG_USER WITH LOGIN PASSWORD '$pw';
SQL
    local db
    for db in "$PG_MLFLOW_DB" "$PG_PREFECT_DB"; do
        if [ -z "$(pg_admin -d postgres -tA -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]; then
            pg_admin -d postgres -c "CREATE DATABASE $db OWNER $PG_USER"
            say "created database $db"
        fi
    done
    pg_admin -d "$PG_PREFECT_DB" -c "CREATE EXTENSION IF NOT EXISTS pg_trgm" > /dev/null
}

# --- 2. the optional 'team' dependencies (the PostgreSQL driver for MLflow) ----------------------
team_extra() {
    "$PY" -c "import psycopg" 2> /dev/null && return 0
    local reqs
    reqs="$("$PY" -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["optional-dependencies"]["team"]))' "$ROOT/pyproject.toml")" \
        || die "pyproject.toml has no [project.optional-dependencies] team group"
    say "installing the 'team' extra into $(dirname "$BIN"): $(echo $reqs)"
    # shellcheck disable=SC2086
    "$PY" -m pip install -q $reqs -c "$ROOT/requirements.lock" > "$LOG_DIR/pip-team.log" 2>&1 \
        || { tail_log "$LOG_DIR/pip-team.log"; die "pip could not install the team extra (log: $LOG_DIR/pip-team.log)"; }
}

# --- 3./4. the servers ----------------------------------------------------------------------------
mlflow_start() {
    if running mlflow "mlflow server"; then say "MLflow already running ($MLFLOW_URL)"; return 0; fi
    port_free "$MLFLOW_PORT" || die "port $MLFLOW_PORT is in use by another program: set LICANOM_MLFLOW_PORT"
    # the password reaches libpq through PGPASSWORD, never the command line
    start_bg mlflow PGPASSWORD="$PG_PASSWORD" MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
        MLFLOW_ENABLE_TELEMETRY=false DO_NOT_TRACK=1 -- \
        "$BIN/mlflow" server --host "$HOST" --port "$MLFLOW_PORT" --workers 1 \
        --backend-store-uri "postgresql+psycopg://$PG_USER@$HOST:$PG_PORT/$PG_MLFLOW_DB" \
        --serve-artifacts --artifacts-destination "$ARTIFACTS_DEST"
    MLFLOW_STARTED=1
}

prefect_start() {
    if running prefect-server "prefect server start"; then say "Prefect server already running ($PREFECT_API)"; return 0; fi
    port_free "$PREFECT_PORT" || die "port $PREFECT_PORT is in use by another program: set LICANOM_PREFECT_PORT"
    start_bg prefect-server -u PREFECT_API_URL PREFECT_HOME="$PREFECT_HOME_DIR" PREFECT_SERVER_ANALYTICS_ENABLED=false \
        PREFECT_SERVER_DATABASE_DRIVER=postgresql+asyncpg \
        PREFECT_SERVER_DATABASE_HOST="$HOST" PREFECT_SERVER_DATABASE_PORT="$PG_PORT" \
        PREFECT_SERVER_DATABASE_USER="$PG_USER" PREFECT_SERVER_DATABASE_NAME="$PG_PREFECT_DB" \
        PREFECT_SERVER_DATABASE_PASSWORD="$PG_PASSWORD" DO_NOT_TRACK=1 -- \
        "$BIN/prefect" server start --host "$HOST" --port "$PREFECT_PORT"
    PREFECT_STARTED=1
}

write_client_files() {
    cat > "$(team_mlflow_yaml)" <<YAML
# Written by deploy/team-up.sh: the team set-up's MLflow server. Artifacts go through the
# server (mlflow-artifacts:), which keeps them in $ARTIFACTS_DEST.
tracking_uri: $MLFLOW_URL
artifact_location: mlflow-artifacts:///licanom
YAML
    {
        echo "# Written by deploy/team-up.sh: 'set -a; . $(team_env_file); set +a' points a shell at the team set-up."
        client_env
    } > "$(team_env_file)"
}

# --- 5. work pool, worker, deployments ----------------------------------------------------------
prefect_cli() { env "${CLIENT_ENV[@]}" "$BIN/prefect" "$@"; }

pool_up() {
    if ! http_ok "$PREFECT_API/work_pools/$POOL"; then
        prefect_cli work-pool create "$POOL" --type process > "$LOG_DIR/work-pool.log" 2>&1 \
            || { tail_log "$LOG_DIR/work-pool.log"; die "could not create the work pool $POOL"; }
        say "created the process work pool $POOL"
    fi
    curl -fsS -o /dev/null -X PATCH -H 'Content-Type: application/json' \
        -d "{\"concurrency_limit\": $POOL_LIMIT}" "$PREFECT_API/work_pools/$POOL" \
        || die "could not set the concurrency limit of $POOL"
}

worker_online() {
    curl -fsS -X POST -H 'Content-Type: application/json' -d '{}' \
        "$PREFECT_API/work_pools/$POOL/workers/filter" 2> /dev/null \
        | "$PY" -c 'import json, sys; ws = json.load(sys.stdin); sys.exit(0 if any(w["name"] == sys.argv[1] and w.get("status") == "ONLINE" for w in ws) else 1)' "$WORKER_NAME"
}

worker_up() {
    if running worker "prefect worker start"; then say "worker already running (pool $POOL)"; return 0; fi
    start_bg worker "${CLIENT_ENV[@]}" PREFECT_WORKER_QUERY_SECONDS=5 PREFECT_WORKER_HEARTBEAT_SECONDS=10 -- \
        "$BIN/prefect" worker start --pool "$POOL" --type process --name "$WORKER_NAME"
    local i
    for i in $(seq 240); do
        worker_online && { say "worker $WORKER_NAME online (pool $POOL, at most $POOL_LIMIT flow runs at once)"; return 0; }
        running worker "prefect worker start" || { tail_log "$LOG_DIR/worker.log"; die "the worker exited (log: $LOG_DIR/worker.log)"; }
        sleep 0.5
    done
    tail_log "$LOG_DIR/worker.log"
    die "the worker did not come online within 120 s (log: $LOG_DIR/worker.log)"
}

deployments_up() {
    env "${CLIENT_ENV[@]}" "$PY" "$ROOT/deploy/register.py" --pool "$POOL" > "$LOG_DIR/register.log" 2>&1 \
        || { tail_log "$LOG_DIR/register.log"; die "registering the deployments failed (log: $LOG_DIR/register.log)"; }
    say "$(tail -n 1 "$LOG_DIR/register.log")"
}

# --- run ------------------------------------------------------------------------------------------
# on failure: what did come up stays up (running this again continues); say how to stop it
trap 'rc=$?; [ "$rc" = 0 ] || echo "team: not fully up; what did start stays up: deploy/team-down.sh stops it" >&2' EXIT
MLFLOW_STARTED=0
PREFECT_STARTED=0
pg_up
team_extra
mlflow_start
prefect_start
[ "$MLFLOW_STARTED" = 0 ] || { wait_http mlflow "$MLFLOW_URL/health" 180 "mlflow server"; say "MLflow started: $MLFLOW_URL (backend PostgreSQL, artifacts in $ARTIFACTS_DEST)"; }
[ "$PREFECT_STARTED" = 0 ] || { wait_http prefect-server "$PREFECT_API/health" 180 "prefect server start"; say "Prefect server started: http://$HOST:$PREFECT_PORT (database PostgreSQL)"; }
write_client_files
pool_up
worker_up
[ "$DEPLOY" = 0 ] || deployments_up
say "up. Clients: set -a; . $(team_env_file); set +a"
