# Two commands for a newcomer: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ok
# licanom sets these itself wherever it starts (licanom/settings.py); here for the servers `make ui`
# starts with Prefect's and MLflow's own commands
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_API_ENABLE_HTTP2 ?= false
export MLFLOW_DISABLE_TELEMETRY ?= true
export DO_NOT_TRACK ?= true
export PYTHONUNBUFFERED := 1

PREFECT_PORT ?= 4200
MLFLOW_PORT ?= 5000

.PHONY: venv browser demo test test-fast eval eval-dev eval-detect eval-blocked bench bench-decision bench-data bench-csv bench-train bench-sequence bench-hdfs bench-faults bench-quality bench-calibration bench-entities bench-score bench-gpu bench-threads bench-fixed bench-summary serve ui ui-stop clean lock

venv: $(STAMP)

# torch first, from its exact pin (a CPU build on local disk here), then the lock in one call; then
# Prefect's database in .prefect/ created once here, not by the first flow (its migrations take
# 5-8 s: benchmarks/results/fixed-costs.md); only that SQLite file, whatever database the
# environment names for a Prefect server of its own.
$(STAMP): requirements.lock pyproject.toml
	@echo "setting up $(VENV): torch, Prefect, MLflow and the rest (the first time: about 3 minutes)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	env -u PREFECT_API_DATABASE_CONNECTION_URL PREFECT_SERVER_DATABASE_CONNECTION_URL=sqlite+aiosqlite:///$(PREFECT_HOME)/prefect.db \
	  $(VENV)/bin/prefect server database upgrade -y > /dev/null
	touch $(STAMP)

# `make demo` trains the default detector and one thesis autoencoder (train.models: auto);
# `make demo MODELS=all` trains the eight autoencoders instead.
demo: $(STAMP)
	LICANOM_DEMO_MODELS=$(MODELS) $(PY) -m flows.demo

# Debian's Chromium for the browser test of the HTML report (installed once, when missing).
browser:
	bash scripts/ensure-chromium.sh

# Everything but the team set-up's servers (make team-test runs those); docs/testing.md.
# Two workers, each file's tests on one of them (their module fixtures are built once), the files
# that share the session's Prefect API on one, the longest first (tests/conftest.py; docs/testing.md,
# measured in benchmarks/results/test-suite.md). TEST_WORKERS=0 runs everything in this process.
TEST_WORKERS ?= 2
test: $(STAMP) browser
	$(PY) -m pytest -q -m "not team" -n $(TEST_WORKERS) --dist loadfile --durations=15

# The quick loop while editing: no servers, flows or subprocesses.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not team"

# The per-vendor deployments, served to the Prefect server that `make ui` starts.
serve: $(STAMP)
	PREFECT_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api $(VENV)/bin/licanom serve

# Prefect UI and MLflow UI over the same local stores the demo wrote (stop: make ui-stop).
ui: $(STAMP)
	mkdir -p .ui
	PREFECT_UI_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api nohup $(VENV)/bin/prefect server start --host 127.0.0.1 --port $(PREFECT_PORT) > .ui/prefect.log 2>&1 & echo $$! > .ui/prefect.pid
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false nohup $(VENV)/bin/mlflow server --host 127.0.0.1 --port $(MLFLOW_PORT) --workers 1 \
		--backend-store-uri $$($(PY) -c 'from licanom.ops.tracking import TrackingConfig; print(TrackingConfig.load().tracking_uri)') \
		--default-artifact-root $$($(PY) -c 'from licanom.ops.tracking import TrackingConfig; print(TrackingConfig.load().artifact_location)') \
		> .ui/mlflow.log 2>&1 & echo $$! > .ui/mlflow.pid
	@echo "Prefect UI: http://127.0.0.1:$(PREFECT_PORT)   MLflow UI: http://127.0.0.1:$(MLFLOW_PORT)/#/experiments?workflowType=machine_learning   (logs in .ui/, stop with make ui-stop; docs/ui.md)"

ui-stop:
	-kill $$(cat .ui/prefect.pid) $$(cat .ui/mlflow.pid) 2>/dev/null; rm -f .ui/*.pid

# The labelled benchmark of every detector (EVAL_ARGS, e.g. "--profiles floating --seeds 1").
# The held-out evaluation: nightly mode over the robustness sweep and the late kinds, on the report
# seeds (only these figures are published; EVAL_ARGS e.g. "--profiles floating --worlds 'share 10%'").
# Each night is cut at 02:00 UTC, as the flows' default score_cron runs.
eval: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m benchmarks.eval_nightly --seeds report --night-cut-hour 2 --out benchmarks/results/nightly $(EVAL_ARGS)

# The same on the development seeds: for choosing designs and defaults, never reported.
eval-dev: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m benchmarks.eval_nightly --seeds dev --night-cut-hour 2 $(EVAL_ARGS)

# licanom detect's default decision on the same worlds, report seeds: each whole log split at random,
# the test chunks judged (the nightly evaluation above is the headline).
eval-detect: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m benchmarks.eval_nightly --seeds report --mode detect --detectors Tail_context --no-clustering --out benchmarks/results/detect-mode $(EVAL_ARGS)
	OMP_NUM_THREADS=1 $(PY) -m benchmarks.eval_nightly --seeds report --mode detect --detect-chunks all --detectors Tail_context --no-clustering --out benchmarks/results/detect-mode-all $(EVAL_ARGS)

# The earlier labelled evaluation of every detector and threshold (blocked folds; ranking and speed).
eval-blocked: $(STAMP)
	$(PY) -m benchmarks.eval_detectors $(EVAL_ARGS)

# Then issue 24's table from each row's latest record (benchmarks/results/latest/; docs/benchmarks.md).
bench: bench-data bench-score bench-train bench-sequence bench-decision bench-fixed
	$(PY) -m benchmarks.summary

# Issue 24's table alone, from the records the benches last wrote.
bench-summary: $(STAMP)
	$(PY) -m benchmarks.summary

# What severity and the decision add to scoring time (target: at most 10%).
bench-decision: $(STAMP)
	$(PY) -m benchmarks.bench_decision

# Entity scoring beside a night's chunk scoring on 1 million rows (target: at most +20%), and with
# BENCH_ENTITIES_ARGS="--eval-dev" what it finds on the development seeds; writes benchmarks/results/entities.md.
bench-entities: $(STAMP)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 10 $(PY) -m benchmarks.bench_entities $(BENCH_ENTITIES_ARGS)

bench-sequence: $(STAMP)
	$(PY) -m benchmarks.bench_sequence

# Every per-key sequence model on the public HDFS sessions (../shared/datasets/hdfs), 2 processes x 1 thread.
bench-hdfs: $(STAMP)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 10 $(PY) -m benchmarks.bench_hdfs $(BENCH_HDFS_ARGS)

# Nights killed with SIGKILL at every crash point, rerun, the ledger checked (BENCH_FAULTS_ARGS, e.g. "--rounds 1");
# the exhaustive sweep of which tests/test_fault_injection.py runs a sample (docs/testing.md).
bench-faults: $(STAMP)
	$(PY) -m benchmarks.bench_faults $(BENCH_FAULTS_ARGS)

# Each detector's AUROC on planted anomalies of seeded vendors against its floor (the quality bars the
# tests held on fixed seeds; BENCH_QUALITY_ARGS, e.g. "--seeds 3,11 --only Tail_context"); exits 1 under a floor.
# How the severity's tail holds on held-out nights, and other fits of it (development seeds;
# BENCH_CALIBRATION_ARGS="--seeds 1,2,3,4,5,6"); benchmarks/results/calibration.md.
bench-calibration: $(STAMP)
	OMP_NUM_THREADS=1 nice -n 10 $(PY) -m benchmarks.bench_calibration $(BENCH_CALIBRATION_ARGS)

bench-quality: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m benchmarks.bench_quality --out benchmarks/results/quality.md $(BENCH_QUALITY_ARGS)

# Where a one-vendor training flow and a one-vendor night spend their seconds outside the library.
bench-fixed: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m benchmarks.bench_fixed $(BENCH_FIXED_ARGS)

bench-data: $(STAMP)
	$(PY) -m benchmarks.bench_data

# What the field-count check of CSV lines costs read_log (BENCH_CSV_ARGS, e.g. "--baseline /tmp/old").
bench-csv: $(STAMP)
	$(PY) -m benchmarks.bench_csv_read $(BENCH_CSV_ARGS)

# Scoring raw rows through the registered model per detector family on 0.1, 1 and 2.5 M rows
# (BENCH_SCORE_ARGS, e.g. "--models Tail_context --profile").
bench-score: $(STAMP)
	$(PY) -m benchmarks.bench_score $(BENCH_SCORE_ARGS)

# The eight autoencoders and the sequence models at case-3 volume, batch 32, on a GPU when present,
# beside the thesis's Figure 4.5 (a few minutes on a GPU; BENCH_GPU_ARGS="--quick" checks it on a CPU).
bench-gpu: $(STAMP)
	$(PY) -m benchmarks.bench_gpu $(BENCH_GPU_ARGS)

# One or two torch threads per family, alone and beside a busy process; two variants side by side
# (train.parallel); the framework's cost at batch 32. Writes benchmarks/results/threads.md.
bench-threads: $(STAMP)
	$(PY) -m benchmarks.bench_threads $(BENCH_THREADS_ARGS)

# Three rounds over the eight variants (about half an hour on 2 cores); the bars are judged on medians.
BENCH_TRAIN_ARGS ?= --repeat 3
bench-train: $(STAMP)
	$(PY) -m benchmarks.bench_train $(BENCH_TRAIN_ARGS)

# Re-resolve the lock from requirements.in (maintainers only).
lock:
	rm -rf /tmp/licanom-lock && $(PYTHON) -m venv /tmp/licanom-lock
	/tmp/licanom-lock/bin/pip install -q torch==2.13.0 && /tmp/licanom-lock/bin/pip install -q -r requirements.in
	/tmp/licanom-lock/bin/pip freeze | grep -v '^-e' | sed 's/^torch==\(.*\)+cpu$$/torch==\1/' > requirements.lock

# The team deployment on real servers: PostgreSQL, MLflow, Prefect, a worker (deploy/README.md).
include deploy/team.mk

clean:
	rm -rf .prefect mlruns mlflow.db mlartifacts out .pytest_cache .ui
