#!/usr/bin/env bash
# Where the team set-up stands: one line per part. Exit status 0 when every part is up, 3 when not.
#
# Options: -q  (print nothing; only the exit status)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[ "${1:-}" = "-q" ] && QUIET=1
down=0
line() { [ "$QUIET" = 1 ] || printf '%-16s %-5s %s\n' "$1" "$2" "$3"; }
part() {  # LABEL OK(0/1) DETAIL
    if [ "$2" = 0 ]; then line "$1" up "$3"; else line "$1" down "$3"; down=1; fi
}

st() { if "$@"; then echo 0; else echo 1; fi; }
mlflow_up() { running mlflow "mlflow server" && http_ok "$MLFLOW_URL/health"; }
prefect_up() { running prefect-server "prefect server start" && http_ok "$PREFECT_API/health"; }

part postgresql "$(st pg_running)" "$HOST:$PG_PORT  db $PG_MLFLOW_DB, $PG_PREFECT_DB  (data $PG_DATA)"
part mlflow "$(st mlflow_up)" "$MLFLOW_URL  (log $LOG_DIR/mlflow.log)"
part prefect-server "$(st prefect_up)" "http://$HOST:$PREFECT_PORT  (log $LOG_DIR/prefect-server.log)"

detail="pool $POOL  (log $LOG_DIR/worker.log)"
ok=1
if running worker "prefect worker start"; then
    ok=0
    if [ "$QUIET" != 1 ] && http_ok "$PREFECT_API/health"; then
        n="$(curl -fsS -X POST -H 'Content-Type: application/json' -d '{"limit": 200}' \
              "$PREFECT_API/deployments/filter" 2> /dev/null \
              | "$PY" -c 'import json, sys; print(sum(d.get("work_pool_name") == sys.argv[1] for d in json.load(sys.stdin)))' "$POOL" 2> /dev/null || echo "?")"
        detail="pool $POOL, $n deployments on it  (log $LOG_DIR/worker.log)"
    fi
fi
part worker $ok "$detail"

if [ "$QUIET" != 1 ] && [ "$down" = 0 ]; then echo "clients: set -a; . $(team_env_file); set +a"; fi
[ "$down" = 0 ] || exit 3
