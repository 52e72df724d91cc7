# Shared settings and helpers of the team set-up scripts (sourced, not run).
#
# Everything the set-up writes lives under $LICANOM_TEAM_DIR (default: .team/ in the project):
# pidfiles, logs, the PostgreSQL data folder, MLflow's artifacts, Prefect's home, team.env.
# Every setting below can be overridden from the environment.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TEAM_DIR="${LICANOM_TEAM_DIR:-$ROOT/.team}"
PY="${PY:-$ROOT/.venv/bin/python}"
case "$PY" in /*) ;; *) PY="$ROOT/$PY" ;; esac
BIN="$(dirname "$PY")"

PG_PORT="${LICANOM_PG_PORT:-5433}"
PG_USER="${LICANOM_PG_USER:-licanom}"
PG_MLFLOW_DB="${LICANOM_PG_MLFLOW_DB:-mlflow}"
PG_PREFECT_DB="${LICANOM_PG_PREFECT_DB:-prefect}"
# Development default only: set LICANOM_PG_PASSWORD (from a secret store) anywhere else.
PG_PASSWORD="${LICANOM_PG_PASSWORD:-licanom-dev}"
MLFLOW_PORT="${LICANOM_MLFLOW_PORT:-5500}"
PREFECT_PORT="${LICANOM_PREFECT_PORT:-4300}"
POOL="${LICANOM_POOL:-licanom-process}"
POOL_LIMIT="${LICANOM_POOL_LIMIT:-2}"          # flow runs at once on the pool (each a process)
WORKER_NAME="${LICANOM_WORKER_NAME:-licanom-worker-1}"

HOST=127.0.0.1
PG_DIR="$TEAM_DIR/pg"
PG_DATA="$PG_DIR/data"
PG_SOCK="$PG_DIR/run"
PREFECT_HOME_DIR="$TEAM_DIR/prefect"
ARTIFACTS_DIR="$TEAM_DIR/mlflow-artifacts"
# where the MLflow server keeps artifacts: this folder, or an object store (s3://bucket/prefix,
# gs://..., with the store's credentials in the server's environment: deploy/README.md)
ARTIFACTS_DEST="${LICANOM_MLFLOW_ARTIFACTS:-$ARTIFACTS_DIR}"
LOG_DIR="$TEAM_DIR/logs"
RUN_DIR="$TEAM_DIR/run"
MLFLOW_URL="http://$HOST:$MLFLOW_PORT"
PREFECT_API="http://$HOST:$PREFECT_PORT/api"

QUIET="${LICANOM_TEAM_QUIET:-0}"

say() { [ "$QUIET" = 1 ] || echo "team: $*"; }
die() { echo "team: error: $*" >&2; exit 1; }

# the last lines of a log, for error messages
tail_log() { [ -f "$1" ] && { echo "--- last lines of $1 ---" >&2; tail -n "${2:-25}" "$1" >&2; }; return 0; }

# --- processes started by these scripts: pidfile + log, own session (process group) ---------
pidfile() { echo "$RUN_DIR/$1.pid"; }

# running NAME PATTERN: the pid in NAME's pidfile is alive and its command line contains PATTERN
running() {
    local pf pid
    pf="$(pidfile "$1")"
    [ -f "$pf" ] || return 1
    pid="$(cat "$pf" 2>/dev/null)" || return 1
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "$2"
}

pid_of() { cat "$(pidfile "$1")"; }

# start_bg NAME ENV... -- CMD...: start CMD in its own session with ENV, log to $LOG_DIR/NAME.log
start_bg() {
    local name="$1"; shift
    local envs=()
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    mkdir -p "$LOG_DIR" "$RUN_DIR"
    local pf; pf="$(pidfile "$name")"
    rm -f "$pf"
    # setsid: a new session, so the whole tree can be stopped by its process group; set -m: a
    # background job without job control would start with SIGINT ignored (no graceful stop)
    set -m
    env "${envs[@]}" setsid bash -c 'echo $$ > "$0"; exec "$@"' "$pf" "$@" \
        > "$LOG_DIR/$name.log" 2>&1 < /dev/null &
    set +m
    local i
    for i in $(seq 50); do [ -s "$pf" ] && return 0; sleep 0.1; done
    die "$name did not start"
}

# stop_bg NAME PATTERN [FIRST_SIGNAL]: signal the process group, wait, then SIGKILL what is left
stop_bg() {
    local name="$1" pattern="$2" sig="${3:-TERM}" pid i
    if ! running "$name" "$pattern"; then rm -f "$(pidfile "$name")"; return 0; fi
    pid="$(pid_of "$name")"
    kill -s "$sig" -- "-$pid" 2>/dev/null || kill -s "$sig" "$pid" 2>/dev/null || true
    for i in $(seq 150); do
        running "$name" "$pattern" || break
        sleep 0.2
    done
    if running "$name" "$pattern"; then
        say "$name did not stop within 30 s: SIGKILL"
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    # children left in the group (e.g. server workers) after the leader exited
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$(pidfile "$name")"
}

http_ok() { curl -fsS -o /dev/null --max-time 5 "$1" 2>/dev/null; }

# wait_http NAME URL SECONDS PATTERN: until URL answers 2xx, or fail with NAME's log
wait_http() {
    local name="$1" url="$2" secs="$3" pattern="$4" i
    for i in $(seq "$((secs * 2))"); do
        http_ok "$url" && return 0
        running "$name" "$pattern" || { tail_log "$LOG_DIR/$name.log"; die "$name exited while starting (log: $LOG_DIR/$name.log)"; }
        sleep 0.5
    done
    tail_log "$LOG_DIR/$name.log"
    die "$name not healthy at $url within $secs s (log: $LOG_DIR/$name.log)"
}

port_free() { ! (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# --- PostgreSQL -------------------------------------------------------------------------------
pg_bindir() {
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
    done
    command -v pg_ctl >/dev/null 2>&1 && [ -x "$(dirname "$(command -v pg_ctl)")/initdb" ] && {
        dirname "$(command -v pg_ctl)"; return 0; }
    return 1
}

# as_pg CMD...: run as the cluster's owner (the postgres user when we are root, else ourselves)
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

pg_running() {
    local bindir
    bindir="$(pg_bindir)" || return 1
    [ -f "$PG_DATA/PG_VERSION" ] || return 1
    as_pg "$bindir/pg_ctl" -D "$PG_DATA" status > /dev/null 2>&1
}

# psql as the superuser, over the cluster's private socket
pg_admin() {
    local bindir; bindir="$(pg_bindir)"
    PGOPTIONS='-c client_min_messages=warning' as_pg "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p "$PG_PORT" -U postgres "$@"
}

# --- what clients need: written by team-up, read by scripts, tests and people -------------------
team_env_file() { echo "$TEAM_DIR/team.env"; }
team_mlflow_yaml() { echo "$TEAM_DIR/mlflow.yaml"; }

# the environment of the worker and of every client of the set-up (no secrets)
client_env() {
    echo "PREFECT_HOME=$PREFECT_HOME_DIR"
    echo "PREFECT_API_URL=$PREFECT_API"
    echo "MLFLOW_TRACKING_URI=$MLFLOW_URL"
    echo "LICANOM_MLFLOW_CONFIG=$(team_mlflow_yaml)"
    echo "PREFECT_SERVER_ANALYTICS_ENABLED=false"
    echo "PREFECT_API_ENABLE_HTTP2=false"
    echo "MLFLOW_ENABLE_TELEMETRY=false"
    echo "DO_NOT_TRACK=1"
    echo "PYTHONUNBUFFERED=1"
}

mapfile -t CLIENT_ENV < <(client_env)
