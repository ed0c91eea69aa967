"""pipelines.yaml: the Prefect deployments and the task runner, strictly validated.

``load_pipelines`` reads the file into frozen dataclasses and refuses anything
it does not understand with a one-line :class:`PipelinesError` that names the
file and line (``pipelines.yaml line 12: ...``): unknown or missing keys,
wrong types, duplicate names, a cron expression or time zone Prefect would
refuse, an entrypoint whose file or ``@flow`` function is missing, parameters
the flow does not take. Flow files are read with ``ast``, never imported, so
checking the file is cheap and has no side effects.

Only yaml is imported at module level; prefect (its cron parser, schedules,
task runners) is imported inside the functions that need it. Serving the
deployments is :mod:`tradingrl.serving`.
"""

from __future__ import annotations

import ast
import re
import zoneinfo
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

CONFIG_VERSION = 1
TASK_RUNNER_KINDS = ("threads", "processes", "dask")

_TOP_KEYS = {"version": True, "task_runner": False, "deployments": True}  # key: required
_TASK_RUNNER_KEYS = {"kind": True, "max_workers": False, "dask_address": False}
_DEPLOYMENT_KEYS = {
    "name": True, "entrypoint": True, "cron": True, "timezone": False,
    "parameters": False, "tags": False, "description": False,
}
# Prefect refuses these in deployment names (prefect.types.names.BANNED_CHARACTERS).
_BANNED_NAME_CHARACTERS = "/%&><"
_ENTRYPOINT = re.compile(r"(?P<path>[^:]+\.py):(?P<function>[A-Za-z_][A-Za-z0-9_]*)")
_DASK_ADDRESS = re.compile(r"[a-z][a-z0-9+.-]*://\S+")


class PipelinesError(ValueError):
    """pipelines.yaml is missing, malformed or inconsistent; one line, naming file and line."""


@dataclass(frozen=True)
class TaskRunnerSettings:
    """How a flow runs its parallel parts (walk-forward folds, Optuna trials).

    ``threads``: Prefect's ThreadPoolTaskRunner with ``max_workers`` threads
    (None: Prefect's default); a stage runs its pieces one by one.
    ``processes``: a pool of ``max_workers`` spawned processes (None: one per
    CPU core; in a stage :func:`tradingrl.parallel.map_parallel`, in a flow
    Prefect's ProcessPoolTaskRunner). ``dask``: prefect-dask's DaskTaskRunner on the
    scheduler at ``dask_address``, or on a temporary local cluster of
    ``max_workers`` worker processes when the address is None.
    """

    kind: str = "threads"
    max_workers: int | None = None
    dask_address: str | None = None


@dataclass(frozen=True)
class DeploymentSpec:
    """One Prefect deployment: a flow entrypoint run on a cron schedule."""

    name: str
    entrypoint: str  # "<path relative to the config file's folder>.py:<flow function>"
    cron: str  # five fields, minute hour day-of-month month day-of-week
    timezone: str  # IANA name; the cron is read in this zone (DST included)
    parameters: dict[str, Any] = field(default_factory=dict, hash=False)
    tags: tuple[str, ...] = ()
    description: str | None = None  # None: Prefect takes the flow's docstring
    line: int = 0  # where the deployment starts in the file (1-based)

    @property
    def path(self) -> str:
        return self.entrypoint.rsplit(":", 1)[0]

    @property
    def function(self) -> str:
        return self.entrypoint.rsplit(":", 1)[1]


@dataclass(frozen=True)
class PipelinesConfig:
    version: int
    task_runner: TaskRunnerSettings
    deployments: tuple[DeploymentSpec, ...]
    path: Path  # the file, as given
    repo_root: Path  # absolute; entrypoints are relative to it


def load_pipelines(path: Path | str, repo_root: Path | str | None = None) -> PipelinesConfig:
    """Read and validate ``path``; entrypoints resolve under ``repo_root``
    (default: the file's folder). Raises :class:`PipelinesError`."""
    path = Path(path)
    root = Path(repo_root if repo_root is not None else path.parent).resolve()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PipelinesError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise PipelinesError(f"{path}: cannot be read: {error}") from None
    return _Validator(path, root).config(text)


def next_run(deployment: DeploymentSpec, after: datetime | None = None) -> datetime:
    """The first time at or after ``after`` (default: now) that the deployment's
    schedule fires, in its time zone, computed by Prefect's own scheduler code."""
    import asyncio

    from prefect.server.schemas.schedules import CronSchedule

    schedule = CronSchedule(cron=deployment.cron, timezone=deployment.timezone)
    dates = asyncio.run(schedule.get_dates(n=1, start=after))
    if not dates:
        raise PipelinesError(f"deployment {deployment.name!r}: cron {deployment.cron!r} "
                             "never fires")
    return dates[0]


def task_runner_from_config(settings: TaskRunnerSettings):
    """A Prefect task runner for ``settings``: ThreadPoolTaskRunner,
    ProcessPoolTaskRunner or prefect-dask's DaskTaskRunner (imported here; an
    error names the missing package)."""
    if settings.kind == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=settings.max_workers)
    if settings.kind == "processes":
        from prefect.task_runners import ProcessPoolTaskRunner

        return ProcessPoolTaskRunner(max_workers=settings.max_workers)
    if settings.kind == "dask":
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError:
            raise PipelinesError(
                "task_runner kind 'dask' needs the prefect-dask package, which is not "
                "installed (pip install -e . installs it with tradingrl's dependencies)"
            ) from None
        if settings.dask_address is not None:
            return DaskTaskRunner(address=settings.dask_address)
        # A temporary local cluster; scheduler and dashboard on the loopback
        # only; one thread per worker process, since the pieces train models
        # that draw from per-process random generators (tradingrl.parallel).
        cluster_kwargs: dict[str, Any] = {
            "host": "127.0.0.1", "dashboard_address": "127.0.0.1:0",
            "processes": True, "threads_per_worker": 1,
        }
        if settings.max_workers is not None:
            cluster_kwargs["n_workers"] = settings.max_workers
        return DaskTaskRunner(cluster_kwargs=cluster_kwargs)
    raise PipelinesError(f"unknown task_runner kind {settings.kind!r} "
                         f"(allowed: {', '.join(TASK_RUNNER_KINDS)})")


@lru_cache(maxsize=1)
def _time_zones() -> frozenset[str]:
    # The same list Prefect checks a schedule's time zone against.
    return frozenset(zoneinfo.available_timezones())


def cron_problem(expression: str) -> str | None:
    """Why Prefect's scheduler would refuse ``expression``, or None when it is a
    valid five-field cron expression that fires at some point."""
    from prefect._vendor.croniter import croniter
    from prefect._vendor.croniter.croniter import CroniterBadDateError, CroniterError

    fields = expression.split()
    if len(fields) != 5:
        # croniter also takes 6 or 7 fields (seconds, year); Prefect's cron is minutes.
        return (f"has {len(fields)} fields; expected 5 "
                "(minute hour day-of-month month day-of-week)")
    if any(part.casefold() in ("r", "h") for part in fields):
        return "random (R) and hashed (H) fields are not supported by Prefect"
    try:
        croniter(expression, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterBadDateError:
        return "never fires (no such date)"
    except CroniterError as error:
        return str(error)
    return None


class _Validator:
    """Walks the YAML node tree (``yaml.compose``) so that every complaint can
    name the line of the key or value at fault."""

    def __init__(self, path: Path, repo_root: Path):
        self.path = path
        self.repo_root = repo_root
        self._constructor = yaml.SafeLoader("")
        self._key_of: dict[int, yaml.Node] = {}  # id(value node) -> its key node

    def fail(self, node: yaml.Node, message: str):
        raise PipelinesError(f"{self.path} line {node.start_mark.line + 1}: {message}")

    def value(self, node: yaml.Node) -> Any:
        return self._constructor.construct_object(node, deep=True)

    def config(self, text: str) -> PipelinesConfig:
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark or error.context_mark
            line = f" line {mark.line + 1}" if mark is not None else ""
            problem = error.problem or error.context or "cannot be parsed"
            if "expected alphabetic or numeric character" in problem:
                problem += " (quote a value that starts with *, e.g. cron: \"*/5 * * * *\")"
            raise PipelinesError(f"{self.path}{line}: invalid YAML: {problem}") from None
        except yaml.YAMLError as error:
            raise PipelinesError(f"{self.path}: invalid YAML: {error}") from None
        if root is None:
            raise PipelinesError(f"{self.path} line 1: empty file; expected a mapping with "
                                 f"keys {', '.join(_TOP_KEYS)}")
        top = self.mapping(root, _TOP_KEYS, "the file")
        version = top["version"]
        if version.tag != "tag:yaml.org,2002:int" or self.value(version) != CONFIG_VERSION:
            self.fail(version, f"version must be {CONFIG_VERSION}, "
                               f"got {self.value(version)!r}")
        task_runner = (self.task_runner(top["task_runner"]) if "task_runner" in top
                       else TaskRunnerSettings())
        deployments_node = top["deployments"]
        if not isinstance(deployments_node, yaml.SequenceNode):
            self.fail(deployments_node, "deployments must be a list of deployments")
        deployments: list[DeploymentSpec] = []
        seen: dict[str, int] = {}
        for item in deployments_node.value:
            spec = self.deployment(item)
            if spec.name in seen:
                self.fail(item, f"duplicate deployment name {spec.name!r} "
                                f"(first at line {seen[spec.name]})")
            seen[spec.name] = spec.line
            deployments.append(spec)
        return PipelinesConfig(version=CONFIG_VERSION, task_runner=task_runner,
                               deployments=tuple(deployments), path=self.path,
                               repo_root=self.repo_root)

    def mapping(self, node: yaml.Node, keys: dict[str, bool], what: str) -> dict[str, yaml.Node]:
        """The key -> value nodes of a mapping with only ``keys`` (True: required)."""
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, f"{what} must be a mapping with keys {', '.join(keys)}")
        found: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = self.value(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str) or key not in keys:
                self.fail(key_node, f"unknown key {key!r} in {what} "
                                    f"(allowed: {', '.join(keys)})")
            if key in found:
                self.fail(key_node, f"duplicate key {key!r} in {what}")
            found[key] = value_node
            self._key_of[id(value_node)] = key_node
        missing = [key for key, required in keys.items() if required and key not in found]
        if missing:
            self.fail(node, f"{what} is missing required key {missing[0]!r}")
        return found

    def string(self, node: yaml.Node, what: str, *, nullable: bool = False) -> str | None:
        if nullable and node.tag == "tag:yaml.org,2002:null":
            return None
        if not isinstance(node, yaml.ScalarNode) or node.tag != "tag:yaml.org,2002:str":
            self.fail(node, f"{what} must be a string{' or null' if nullable else ''}, "
                            f"got {self.describe(node)}")
        text = self.value(node)
        if not text.strip():
            self.fail(node, f"{what} must not be empty")
        return text

    def describe(self, node: yaml.Node) -> str:
        if isinstance(node, yaml.MappingNode):
            return "a mapping"
        if isinstance(node, yaml.SequenceNode):
            return "a list"
        return f"{type(self.value(node)).__name__} {self.value(node)!r}"

    def task_runner(self, node: yaml.Node) -> TaskRunnerSettings:
        fields = self.mapping(node, _TASK_RUNNER_KEYS, "task_runner")
        kind = self.string(fields["kind"], "task_runner.kind")
        if kind not in TASK_RUNNER_KINDS:
            self.fail(fields["kind"], f"task_runner.kind must be one of "
                                      f"{', '.join(TASK_RUNNER_KINDS)}, got {kind!r}")
        max_workers = None
        if "max_workers" in fields and fields["max_workers"].tag != "tag:yaml.org,2002:null":
            workers = fields["max_workers"]
            if workers.tag != "tag:yaml.org,2002:int" or self.value(workers) < 1:
                self.fail(workers, "task_runner.max_workers must be a whole number >= 1 or "
                                   f"null, got {self.describe(workers)}")
            max_workers = self.value(workers)
        address = None
        if "dask_address" in fields:
            address = self.string(fields["dask_address"], "task_runner.dask_address",
                                  nullable=True)
        if address is not None:
            where = fields["dask_address"]
            if kind != "dask":
                self.fail(where, "task_runner.dask_address is only used with kind: dask "
                                 "(set it to null, or kind to dask)")
            if not _DASK_ADDRESS.fullmatch(address):
                self.fail(where, "task_runner.dask_address must be a scheduler address such "
                                 f"as tcp://host:8786, got {address!r}")
            if max_workers is not None:
                self.fail(fields["max_workers"], "task_runner.max_workers is not used with a "
                                                 "dask_address (the cluster has its own "
                                                 "workers); set it to null")
        return TaskRunnerSettings(kind=kind, max_workers=max_workers, dask_address=address)

    def deployment(self, node: yaml.Node) -> DeploymentSpec:
        what = f"the deployment at line {node.start_mark.line + 1}"
        fields = self.mapping(node, _DEPLOYMENT_KEYS, what)
        name = self.string(fields["name"], "name")
        what = f"deployment {name!r}"
        if any(char in name for char in _BANNED_NAME_CHARACTERS):
            self.fail(fields["name"], f"{what}: the name must not contain any of "
                                      f"{' '.join(_BANNED_NAME_CHARACTERS)}")
        entrypoint = self.string(fields["entrypoint"], f"{what}: entrypoint")
        signature = self.flow_signature(fields["entrypoint"], entrypoint, what)

        cron = self.string(fields["cron"], f"{what}: cron").strip()
        problem = cron_problem(cron)
        if problem is not None:
            self.fail(fields["cron"], f"{what}: cron {cron!r} is not a valid cron "
                                      f"expression: {problem}")
        timezone = "UTC"
        if "timezone" in fields:
            timezone = self.string(fields["timezone"], f"{what}: timezone")
            if timezone not in _time_zones():
                self.fail(fields["timezone"], f"{what}: unknown time zone {timezone!r} "
                                              "(an IANA name such as UTC or America/New_York)")
        parameters = self.parameters(fields.get("parameters"), signature, what, node)
        tags: tuple[str, ...] = ()
        if "tags" in fields:
            tags_node = fields["tags"]
            if not isinstance(tags_node, yaml.SequenceNode):
                self.fail(tags_node, f"{what}: tags must be a list of strings, "
                                     f"got {self.describe(tags_node)}")
            tags = tuple(self.string(tag, f"{what}: each tag") for tag in tags_node.value)
        description = None
        if "description" in fields:
            description = self.string(fields["description"], f"{what}: description",
                                      nullable=True)
        return DeploymentSpec(name=name, entrypoint=entrypoint, cron=cron, timezone=timezone,
                              parameters=parameters, tags=tags, description=description,
                              line=node.start_mark.line + 1)

    def flow_signature(self, node: yaml.Node, entrypoint: str, what: str) -> _Signature:
        match = _ENTRYPOINT.fullmatch(entrypoint)
        if match is None:
            self.fail(node, f"{what}: entrypoint must look like path/to/file.py:flow_function, "
                            f"got {entrypoint!r}")
        relative = Path(match["path"])
        file = (self.repo_root / relative).resolve()
        if relative.is_absolute() or not file.is_relative_to(self.repo_root):
            self.fail(node, f"{what}: entrypoint file {match['path']!r} must be a relative "
                            f"path inside {self.repo_root}")
        if not file.is_file():
            self.fail(node, f"{what}: entrypoint file {match['path']} does not exist "
                            f"under {self.repo_root}")
        try:
            module = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
        except SyntaxError as error:
            self.fail(node, f"{what}: {match['path']} line {error.lineno} has a syntax "
                            f"error: {error.msg}")
        except (OSError, UnicodeDecodeError) as error:
            self.fail(node, f"{what}: {match['path']} cannot be read: {error}")
        function = _module_function(module, match["function"])
        if function is None:
            self.fail(node, f"{what}: {match['path']} defines no top-level function "
                            f"{match['function']!r}")
        if not _is_flow(module, function):
            self.fail(node, f"{what}: {match['function']} in {match['path']} (line "
                            f"{function.lineno}) is not decorated with prefect's @flow")
        return _Signature.of(function)

    def parameters(self, node: yaml.Node | None, signature: _Signature, what: str,
                   deployment: yaml.Node) -> dict[str, Any]:
        given: dict[str, Any] = {}
        if node is not None and node.tag != "tag:yaml.org,2002:null":
            if not isinstance(node, yaml.MappingNode):
                self.fail(node, f"{what}: parameters must be a mapping of the flow's "
                                f"parameters to values, got {self.describe(node)}")
            for key_node, value_node in node.value:
                key = self.value(key_node) if isinstance(key_node, yaml.ScalarNode) else None
                if not isinstance(key, str):
                    self.fail(key_node, f"{what}: parameter names must be strings, "
                                        f"got {self.describe(key_node)}")
                if key in given:
                    self.fail(key_node, f"{what}: duplicate parameter {key!r}")
                if not signature.accepts(key):
                    self.fail(key_node, f"{what}: {signature.function} has no parameter "
                                        f"{key!r} (its parameters: "
                                        f"{', '.join(signature.names) or 'none'})")
                value = self.value(value_node)
                offending = _not_json(value)
                if offending is not None:
                    self.fail(value_node, f"{what}: parameter {key!r} must be made of strings, "
                                          "numbers, booleans, nulls, lists and mappings with "
                                          f"string keys (quote dates), found "
                                          f"{type(offending[0]).__name__} {offending[0]!r}")
                given[key] = value
        missing = [name for name in signature.required if name not in given]
        if missing:
            self.fail(self._key_of[id(node)] if node is not None else deployment,
                      f"{what}: {signature.function} parameter {missing[0]!r} has no "
                      "default; give it under parameters")
        return given


@dataclass(frozen=True)
class _Signature:
    function: str
    names: tuple[str, ...]
    required: tuple[str, ...]
    takes_any: bool  # **kwargs

    @classmethod
    def of(cls, function: ast.FunctionDef | ast.AsyncFunctionDef) -> _Signature:
        arguments = function.args
        positional = [*arguments.posonlyargs, *arguments.args]
        first_default = len(positional) - len(arguments.defaults)
        required = [arg.arg for i, arg in enumerate(positional) if i < first_default]
        required += [arg.arg for arg, default in zip(arguments.kwonlyargs, arguments.kw_defaults)
                     if default is None]
        names = [arg.arg for arg in (*positional, *arguments.kwonlyargs)]
        return cls(function.name, tuple(names), tuple(required), arguments.kwarg is not None)

    def accepts(self, name: str) -> bool:
        return self.takes_any or name in self.names


def _module_function(module: ast.Module, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    found = None
    for statement in module.body:  # the last definition wins, as when Python runs the file
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef) and statement.name == name:
            found = statement
    return found


def _is_flow(module: ast.Module, function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Whether ``function`` carries prefect's flow decorator (``@flow``,
    ``@flow(...)``, ``@prefect.flow``, under whatever names the module imported)."""
    flow_names: set[str] = set()
    prefect_names: set[str] = set()
    for statement in ast.walk(module):
        if isinstance(statement, ast.ImportFrom) and statement.module in ("prefect",
                                                                          "prefect.flows"):
            flow_names |= {alias.asname or alias.name for alias in statement.names
                           if alias.name == "flow"}
        elif isinstance(statement, ast.Import):
            prefect_names |= {alias.asname or alias.name for alias in statement.names
                              if alias.name == "prefect"}
    for decorator in function.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Name) and target.id in flow_names:
            return True
        if (isinstance(target, ast.Attribute) and target.attr == "flow"
                and isinstance(target.value, ast.Name) and target.value.id in prefect_names):
            return True
    return False


def _not_json(value: Any) -> tuple[Any] | None:
    """The first part of ``value`` (wrapped in a tuple) that a JSON document
    could not hold, or None when it is all JSON (deployment parameters travel
    to the Prefect API as JSON)."""
    if value is None or isinstance(value, str | int | float | bool):
        return None
    if isinstance(value, list):
        items = value
    elif isinstance(value, dict):
        bad_keys = [key for key in value if not isinstance(key, str)]
        if bad_keys:
            return (bad_keys[0],)
        items = list(value.values())
    else:
        return (value,)
    for item in items:
        offending = _not_json(item)
        if offending is not None:
            return offending
    return None
