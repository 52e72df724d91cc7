#!/usr/bin/env bash
# Stop the team set-up: the worker, the Prefect server, the MLflow server and PostgreSQL, in that
# order. Only processes that deploy/team-up.sh started (pidfiles under .team/run, the cluster under
# .team/pg) are stopped; what is not running is skipped.
#
# Options: --purge  (then delete .team/: databases, artifacts, logs; asks nothing)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PURGE=0
for arg in "$@"; do
    case "$arg" in
        --purge) PURGE=1 ;;
        -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
        *) die "unknown option $arg (see --help)" ;;
    esac
done

[ -d "$TEAM_DIR" ] || { say "nothing to stop ($TEAM_DIR does not exist)"; exit 0; }

stop_one() {  # NAME PATTERN SIGNAL LABEL
    if running "$1" "$2"; then
        stop_bg "$1" "$2" "$3"
        say "stopped $4"
    else
        rm -f "$(pidfile "$1")"
    fi
}

stop_one worker "prefect worker start" INT "the worker"
stop_one prefect-server "prefect server start" TERM "the Prefect server"
stop_one mlflow "mlflow server" TERM "the MLflow server"

if pg_running; then
    as_pg "$(pg_bindir)/pg_ctl" -D "$PG_DATA" -w -t 60 -m fast stop > "$LOG_DIR/pg-ctl.log" 2>&1 \
        || { tail_log "$LOG_DIR/pg-ctl.log"; die "PostgreSQL did not stop (log: $PG_DIR/postgres.log)"; }
    say "stopped PostgreSQL"
fi

if [ "$PURGE" = 1 ]; then
    rm -rf "$TEAM_DIR"
    say "deleted $TEAM_DIR"
fi
