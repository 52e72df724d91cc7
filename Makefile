# Two commands for a newcomer: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ok
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_API_ENABLE_HTTP2 ?= false
export MLFLOW_ENABLE_TELEMETRY ?= false
export DO_NOT_TRACK ?= 1
export PYTHONUNBUFFERED := 1

.PHONY: venv demo test test-fast bench bench-data bench-train clean lock

venv: $(STAMP)

# torch first, from its exact pin (a CPU build on local disk here), then the lock in one call.
$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m flows.demo

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

bench: bench-data bench-train

bench-data: $(STAMP)
	$(PY) -m benchmarks.bench_data

bench-train: $(STAMP)
	$(PY) -m benchmarks.bench_train

# Re-resolve the lock from requirements.in (maintainers only).
lock:
	rm -rf /tmp/licanom-lock && $(PYTHON) -m venv /tmp/licanom-lock
	/tmp/licanom-lock/bin/pip install -q torch==2.13.0 && /tmp/licanom-lock/bin/pip install -q -r requirements.in
	/tmp/licanom-lock/bin/pip freeze | grep -v '^-e' | sed 's/^torch==\(.*\)+cpu$$/torch==\1/' > requirements.lock

clean:
	rm -rf .prefect mlruns mlflow.db out .pytest_cache
