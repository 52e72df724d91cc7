# The team set-up on this machine (deploy/README.md): PostgreSQL, an MLflow server on it, a
# Prefect server on it, a process work pool with a worker, and the per-vendor deployments.
# Included by the main Makefile (`include deploy/team.mk`), whose $(PY) and $(STAMP) it uses.
#
#   make team-up        start what is not running yet (safe to repeat)
#   make team-status    one line per part; fails when a part is down
#   make team-down      stop everything team-up started (TEAM_PURGE=1 also deletes .team/)
#   make team-test      the end-to-end test on that set-up (starts and stops it if it is down)
#   make bench-load     one night of BENCH_VENDORS simulated vendors through the worker

TEAM_PREFECT_PORT ?= 4300
TEAM_MLFLOW_PORT ?= 5500
TEAM_PG_PORT ?= 5433
TEAM_POOL ?= licanom-process
TEAM_POOL_LIMIT ?= 2
BENCH_VENDORS ?= 100
BENCH_RUNNER ?= threads
BENCH_WORKERS ?= default

TEAM_ENV = PY=$(abspath $(PY)) LICANOM_PREFECT_PORT=$(TEAM_PREFECT_PORT) LICANOM_MLFLOW_PORT=$(TEAM_MLFLOW_PORT) \
	LICANOM_PG_PORT=$(TEAM_PG_PORT) LICANOM_POOL=$(TEAM_POOL) LICANOM_POOL_LIMIT=$(TEAM_POOL_LIMIT)

.PHONY: team-up team-down team-status team-test bench-load

team-up: $(STAMP)
	@$(TEAM_ENV) bash deploy/team-up.sh

team-down:
	@$(TEAM_ENV) bash deploy/team-down.sh $(if $(filter 1,$(TEAM_PURGE)),--purge)

team-status:
	@$(TEAM_ENV) bash deploy/team-status.sh

team-test: $(STAMP)
	$(TEAM_ENV) $(PY) -m pytest -q -m team tests/test_team_deploy.py

bench-load: $(STAMP)
	$(TEAM_ENV) $(PY) -m benchmarks.bench_load --vendors $(BENCH_VENDORS) --runner $(BENCH_RUNNER) --workers $(BENCH_WORKERS)
