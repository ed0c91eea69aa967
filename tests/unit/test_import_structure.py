"""The code's shape, checked from the source with ``ast`` (tests/imports.py):
no import cycles, package dependencies that point one way, no library or
stage code importing a stage module, every package importable alone, and
dvc.yaml code dependencies that are exactly the modules each stage runs."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from tests.imports import REPO_ROOT, closure, cycles, import_graph, python_files

MODULES = python_files(["tradingrl", "tasks", "flows"])
GRAPH = import_graph(MODULES)
LIBRARY = {name: deps for name, deps in GRAPH.items() if name.startswith("tradingrl")}

# The one direction dependencies may point: a package imports only packages
# of a lower layer (ARCHITECTURE: data <- features <- models <- evaluation;
# envs <- agents; risk used by envs, backtest and registry).
LAYERS: dict[str, int] = {
    "data": 0, "splits": 0, "risk": 0, "params": 0, "resume": 0, "orchestration": 0,
    "tracking": 0,
    "features": 1, "stage": 1, "parallel": 1, "serving": 1,
    "headline": 2, "feature_check": 2,
    "envs": 2, "models": 2,
    "backtest": 3, "agents": 3,
    "evaluation": 4,
    "registry": 5,
    "monitoring": 6,
    "cli": 7,
}


def package(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 else ""


def test_every_library_module_has_a_layer():
    missing = sorted({package(m) for m in LIBRARY if package(m) and package(m) not in LAYERS})
    assert missing == [], f"add these to LAYERS: {missing}"


def test_no_import_cycle_between_library_modules():
    assert cycles(LIBRARY) == []


def test_packages_depend_one_way():
    wrong = sorted(
        f"{a} imports {b}" for a, deps in LIBRARY.items() for b in deps
        if package(a) and package(b) and package(a) != package(b)
        and LAYERS[package(b)] >= LAYERS[package(a)])
    assert wrong == []


def test_nothing_imports_a_stage_module():
    wrong = sorted(f"{a} imports {b}" for a, deps in GRAPH.items() for b in deps
                   if b.startswith("tasks") and b != "tasks")
    assert wrong == []


def test_the_test_finds_a_planted_cycle_and_a_backwards_import():
    planted = {**LIBRARY, "tradingrl.data.columns": LIBRARY["tradingrl.data.columns"]
               | {"tradingrl.features.build"}}
    assert cycles(planted) != [] or any(
        LAYERS[package(b)] >= LAYERS["data"] for b in planted["tradingrl.data.columns"]
        if package(b) != "data")


@pytest.mark.parametrize("name", sorted({m.split(".")[1] for m in LIBRARY if "." in m}))
def test_each_package_imports_alone(name):
    run = subprocess.run([sys.executable, "-c", f"import tradingrl.{name}"], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr[-2000:]


def code_paths(modules: set[str]) -> set[str]:
    """The files of ``modules`` as repository paths, with a package folder in
    place of its files when every module of the package is in ``modules``.
    ``tradingrl/__init__.py`` (the version string only) is left out."""
    files = {MODULES[m].relative_to(REPO_ROOT).as_posix() for m in modules}
    files.discard("tradingrl/__init__.py")
    files.discard("tasks/__init__.py")
    out = set(files)
    for folder in sorted({f.rsplit("/", 1)[0] for f in files if f.count("/") >= 2}):
        members = {p.relative_to(REPO_ROOT).as_posix()
                   for p in (REPO_ROOT / folder).glob("*.py")}
        if members <= files:
            out -= members
            out.add(folder)
    return out


# Files inside the package that a stage reads as data, not code.
PACKAGE_DATA_DEPS = {"validate": {"tradingrl/data/docs_assets"}}


def test_dvc_deps_are_the_code_each_stage_runs():
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    for stage, spec in stages.items():
        module = spec["cmd"].split("python -m ", 1)[1].split()[0]
        wanted = code_paths(closure(module, GRAPH)) | PACKAGE_DATA_DEPS.get(stage, set())
        listed = {d for d in spec.get("deps", [])
                  if str(d).startswith(("tradingrl", "tasks", "flows"))}
        assert listed == wanted, (
            f"stage {stage}: missing {sorted(wanted - listed)}, not run {sorted(listed - wanted)}")
