"""The layers hold: licanom/ never imports Prefect, each package says what it owns, the lower
packages never import the higher ones, and the README's folder table lists every package."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIB = ROOT / "licanom"
PACKAGES = sorted(p.parent.name for p in LIB.glob("*/__init__.py"))
# What each package may not import (its docstring says the same in words).
FORBIDDEN = {
    # (the pipeline's `simulate` source reads the simulator: data may import licanom.sim)
    "data": ("licanom.detectors", "licanom.ops", "licanom.report", "licanom.evaluation"),
    "sim": ("licanom.detectors", "licanom.ops", "licanom.report", "licanom.evaluation"),
    "detectors": ("licanom.ops", "licanom.report", "licanom.evaluation", "licanom.sim", "mlflow"),
    "report": ("licanom.ops", "licanom.evaluation", "licanom.sim"),
}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_the_library_never_imports_prefect() -> None:
    offenders = [str(p.relative_to(ROOT)) for p in LIB.rglob("*.py")
                 if any(m == "prefect" or m.startswith("prefect.") for m in _imports(p))]
    assert not offenders


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_says_what_it_owns(package: str) -> None:
    doc = ast.get_docstring(ast.parse((LIB / package / "__init__.py").read_text()))
    assert doc and len(doc.split()) >= 8, f"licanom/{package}/__init__.py needs a docstring saying what it owns"


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_lower_packages_do_not_import_higher_ones(package: str) -> None:
    bad = {
        f"{p.relative_to(ROOT)}: {m}"
        for p in (LIB / package).rglob("*.py")
        for m in _imports(p)
        if any(m == f or m.startswith(f + ".") for f in FORBIDDEN[package])
    }
    assert not bad


def _library_calls_in_flow_bodies(path: Path) -> list[str]:
    """``file:line name`` for each call, in the body of a function decorated with ``@flow``, of a
    name imported from licanom (``from licanom.x import f``; ``licanom.x.f(...)``). Methods of what
    a task returned (``result.summary()``) are not counted: they are not calls the flow imports."""
    tree = ast.parse(path.read_text(), filename=str(path))
    library = {"licanom"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and \
                (node.module == "licanom" or node.module.startswith("licanom.")):
            library.update(a.asname or a.name for a in node.names)
        elif isinstance(node, ast.Import):  # import licanom.config as lc
            library.update(a.asname for a in node.names if a.asname and a.name.split(".")[0] == "licanom")

    def is_flow(decorator: ast.expr) -> bool:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        return (isinstance(target, ast.Name) and target.id == "flow") or \
            (isinstance(target, ast.Attribute) and target.attr == "flow")

    def root(func: ast.expr) -> str | None:
        while isinstance(func, ast.Attribute):
            func = func.value
        return func.id if isinstance(func, ast.Name) else None

    found = []
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(is_flow(d) for d in fn.decorator_list):
            found += [f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name}:{node.lineno} "
                      f"{ast.unparse(node.func)}" for node in ast.walk(fn)
                      if isinstance(node, ast.Call) and root(node.func) in library]
    return found


def test_flows_only_wire_tasks() -> None:
    """A flow's body calls tasks (and other flows), never the library itself: each library call is
    a task run of its own, seen in Prefect with its state (tasks/ wraps one call each)."""
    calls = [c for p in sorted((ROOT / "flows").glob("*.py")) for c in _library_calls_in_flow_bodies(p)]
    assert not calls


def test_the_flow_body_check_finds_each_way_of_importing_the_library(tmp_path: Path) -> None:
    flows = tmp_path / "a_flow.py"
    flows.write_text("""
import licanom.config as lc
from licanom.ops import nightly
from licanom.config import vendor_config as vc
import licanom.ops.training
from prefect import flow

@flow(name="x")
def f(vendor: str) -> None:
    lc.vendor_config(vendor)
    nightly.score_rows(None, 0.5)
    vc(vendor)
    licanom.ops.training.last_chunked_id(None)
    print(vendor.upper())
""")
    found = _library_calls_in_flow_bodies(flows)
    assert [c.split(" ", 1)[1] for c in found] == [
        "lc.vendor_config", "nightly.score_rows", "vc", "licanom.ops.training.last_chunked_id"]


def test_the_readme_folder_table_lists_every_package() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [p for p in PACKAGES if f"| `licanom/{p}/` |" not in readme]
    assert not missing


def test_the_configurations_names_are_imported_by_their_public_names() -> None:
    """licanom.evaluation.cli, licanom.cli and licanom.ops.detect imported ``_sequence_models`` and
    ``_known_models``, private names of licanom.config: what other modules read of the
    configuration has a public name."""
    private = sorted(
        f"{p.relative_to(ROOT)}: {a.name}"
        for p in [*LIB.rglob("*.py"), *(ROOT / "flows").rglob("*.py"), *(ROOT / "tasks").rglob("*.py")]
        if p != LIB / "config.py"
        for node in ast.walk(ast.parse(p.read_text(), filename=str(p)))
        if isinstance(node, ast.ImportFrom) and node.module == "licanom.config"
        for a in node.names if a.name.startswith("_"))
    assert not private


def test_the_registry_names_match_the_families_own_lists() -> None:
    from licanom.detectors import catalog
    from licanom.detectors.autoencoders.nets import NETS
    from licanom.detectors.sequence.detector import ERGEN_MODELS, NEXT_EVENT_MODELS

    assert catalog.AUTOENCODERS == tuple(NETS)
    assert (catalog.ERGEN_MODELS, catalog.NEXT_EVENT_MODELS) == (ERGEN_MODELS, NEXT_EVENT_MODELS)


# One fresh process for the two tests below (a process start and licanom's imports are seconds):
# first the imports of a context model's night and the flows, then the default detector's training
# step, run for real, then torch itself; it prints what was imported after each step.
WITHOUT_TORCH = """
import sys
from contextlib import contextmanager
from pathlib import Path

def networks():
    return sorted(m for m in ("torch", "lightning", "pytorch_lightning") if m in sys.modules)

import licanom.ops.nightly, licanom.ops.bundle, licanom.ops.detect, licanom.ops.training
import flows.train_vendor, flows.score_vendor, flows.nightly, licanom.detectors.autoencoders.epochs
from licanom.detectors import build, names, spec
assert len(names()) >= 20 and spec('Tail_context').family == 'context'
build('Tail_context', context=None)
from licanom.config import TrainConfig, load_config
assert len(TrainConfig(models='all').models) == 8 and load_config('demo').vendor == 'demo'
import licanom.evaluation.blocked
from licanom.evaluation.nightly import _one_thread
_one_thread()  # an evaluation worker's start
print("imported:", networks(), flush=True)

from licanom.data.pipeline import prepare
from licanom.ops import training
from licanom.sim import simulate

class Recorder:
    @contextmanager
    def run(self, *args, **kwargs):
        yield "run-1"
    def __getattr__(self, name):
        return lambda *args, **kwargs: None

out = Path(sys.argv[1])
cfg = load_config(overrides={"train": {"models": ["Tail_context"]}, "output_dir": str(out)})
prepared = prepare(simulate("node-locked", seed=1, days=3).log, cfg)
cfg = training.for_vendor_size(cfg, prepared)
result = training.train_variant(Recorder(), cfg, prepared, "Tail_context", "parent", out / "work")
assert result.bundle_dir.exists()
print("trained:", networks(), flush=True)

import torch
print("threads:", torch.get_num_threads())
"""


@pytest.fixture(scope="module")
def without_torch(tmp_path_factory) -> tuple[dict[str, str], str]:
    """What the process printed after each step (``imported``, ``trained``, ``threads``), and its
    stderr. Started without OMP_NUM_THREADS (tests/conftest.py sets it): torch's own default."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    done = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, str(tmp_path_factory.mktemp("layers"))],
                          capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)
    printed = dict(line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line)
    return printed, f"exit {done.returncode}: {done.stderr[-2000:]}"


def test_a_context_models_night_does_not_import_torch(without_torch) -> None:
    """A night of the default detector reads no network: torch and Lightning (seconds of start-up
    in every new process) stay out until a family that needs them is built; reading a
    configuration (even one naming every autoencoder) does not import them either, nor do the
    flows and the training step (the default's training run hears of epochs through a module of
    its own: benchmarks/results/fixed-costs.md)."""
    printed, stderr = without_torch
    assert "imported" in printed and "threads" in printed, stderr
    # no network imported; an evaluation worker's torch, imported later, runs one thread
    assert (printed["imported"], printed["threads"]) == ("[]", "1")


def test_training_the_default_detector_imports_no_torch(without_torch) -> None:
    """The training step of the default (context) model, run for real, never imports torch or
    Lightning: importing Lightning alone cost seconds of every one-vendor training run
    (benchmarks/results/fixed-costs.md)."""
    printed, stderr = without_torch
    assert "trained" in printed, stderr
    assert printed["trained"] == "[]"
