"""Sweeps: a grid of tasks times independent trials, run through the batched engine.

A *task* is a dict of parameters (for example ``{"r": 100, ...}``); a *task function*
runs a group of trials of one task and returns one row (a dict) per run.  The sweep

* derives the seed of trial ``t`` of a task from ``SeedSequence(seed)`` keyed by a
  stable hash of the task's parameters and ``t``, so a trial's numbers do not depend on
  the batch size, the order of execution, the other tasks of the grid, or the number of
  workers;
* submits the work to any :class:`concurrent.futures.Executor`: in-process by default,
  a ``ProcessPoolExecutor``, or a Dask cluster through ``client.get_executor()``;
* writes each finished unit of work atomically to a cache directory keyed by the sweep's
  parameters, the package version, the code and the engine settings that change a run's numbers
  (:func:`engine_settings`), so an interrupted sweep resumes where it stopped;
* returns a tidy :class:`pandas.DataFrame`, one row per run.

:func:`success_summary` adds Wilson 95% intervals to per-cell success rates.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import os
import re
import tempfile
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, CancelledError, Executor, Future, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from .. import __version__
from .validation import check_int
from .seeding import seed_sequence
from .progress import progress_bar
from .stats import wilson_interval

TaskFn = Callable[[Mapping[str, Any], list[np.random.SeedSequence], list[int]], list[dict]]


class InlineExecutor(Executor):
    """An executor that runs each task at once in the calling process (the default)."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        """Run ``fn(*args, **kwargs)`` now; return a finished future holding its result or exception."""
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # handed to the caller through the future; Ctrl-C propagates at once
            future.set_exception(exc)
        return future


def _canonical(params: Mapping[str, Any]) -> str:
    def plain(v):
        if isinstance(v, (np.integer,)):
            return int(v)
        if isinstance(v, (np.floating,)):
            return float(v)
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        return v

    out = {}
    for k, v in params.items():
        try:
            json.dumps(plain(v), allow_nan=False)
        except (TypeError, ValueError):
            raise ValueError(f"sweep parameter {k!r} = {v!r} is not a JSON number, string, bool, None or "
                             "list of them; tasks are named and seeded by their parameters") from None
        out[k] = plain(v)
    return json.dumps(out, sort_keys=True)


def task_key(params: Mapping[str, Any]) -> int:
    """A stable 62-bit integer naming a task by its parameters (order of keys irrelevant)."""
    return int.from_bytes(hashlib.sha256(_canonical(params).encode()).digest()[:8], "big") >> 2


def trial_seed(params: Mapping[str, Any], seed: int, trial: int, seed_keys: Sequence[str] | None = None):
    """The seed sequence of one trial of a task.

    By default keyed by :func:`task_key` of all the task's parameters; with ``seed_keys``,
    by the values of those parameters only (integers), so tasks that differ in other
    parameters (a step size, an iteration cap) see the same problem instances.
    """
    if seed_keys is None:
        return seed_sequence(seed, task_key(params), trial)
    missing = [k for k in seed_keys if k not in params]
    if missing:
        raise ValueError(f"seed_keys {missing} are not parameters of the task; it has: {', '.join(sorted(params))}")
    return seed_sequence(seed, *(check_int(f"seed key {k}", params[k], 0) for k in seed_keys), trial)


def _run_unit(fn: TaskFn, params: Mapping[str, Any], seed: int, trials: list[int],
              seed_keys: Sequence[str] | None = None) -> list[dict]:
    seeds = [trial_seed(params, seed, t, seed_keys) for t in trials]
    start = time.perf_counter()
    try:
        rows = fn(params, seeds, trials)
    except KeyError as exc:
        if exc.args and isinstance(exc.args[0], str) and exc.args[0] not in params:
            raise ValueError(f"task {fn.__qualname__} raised KeyError({exc.args[0]!r}), which is not one of its "
                             f"parameters ({', '.join(sorted(params))}): a missing sweep parameter?") from exc
        raise
    key = task_key(params)
    seconds = (time.perf_counter() - start) / max(1, len(rows))
    return [{**row, "task_key": key, "seed": seed, "unit_seconds": seconds} for row in rows]


def _json_value(o):
    """numpy scalars and arrays (and torch tensors) as plain JSON values; anything else is an error."""
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"a task returned a value of type {type(o).__name__} that cannot be cached: {o!r:.80}")


def _write_atomic(path: Path, rows: list[dict]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(rows, fh, default=_json_value)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class SweepResult:
    """Rows of every run, and how many units of work were computed or read from the cache."""

    runs: pd.DataFrame
    seconds: float
    computed: int
    cached: int
    cache_path: Path | None


_NAME_OK = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def run_sweep(
    fn: TaskFn,
    tasks: Sequence[Mapping[str, Any]],
    trials: int,
    *,
    seed: int,
    name: str,
    trials_per_unit: int | None = None,
    executor: Executor | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool | None = None,
    seed_keys: Sequence[str] | None = None,
) -> SweepResult:
    """Run ``trials`` trials of every task; see the module docstring.

    ``trials_per_unit`` trials of one task form one unit of work (one engine batch, one
    cache file); default: all trials of a task together.  ``seed_keys``: see :func:`trial_seed`.
    The rows are ordered by task, then by trial, whatever the order in which units finish.

    Faults: every unit is written to ``cache_dir`` as soon as it finishes, whatever the
    executor, so a killed sweep resumes with what it had; on Ctrl-C, an exception in a task
    or an executor that fails to accept work, the finished units are kept and the error is
    raised.  A cache file that cannot be read or does not hold exactly the unit's trials is
    recomputed, with a warning naming it.
    """
    if not tasks:
        raise ValueError("tasks must not be empty")
    if not isinstance(name, str) or not _NAME_OK.fullmatch(name):
        raise ValueError(f"name = {name!r}: a sweep name is letters, digits, '.', '_' and '-', not starting with '.'")
    trials = check_int("trials", trials, 1)
    per = trials if trials_per_unit is None else check_int("trials_per_unit", trials_per_unit, 1)
    seed = check_int("seed", seed, 0)
    keys = [task_key(t) for t in tasks]  # every parameter must be JSON-serializable (it names the task and its seeds)
    if len(set(keys)) != len(keys):
        dup = next(t for t, k in zip(tasks, keys) if keys.count(k) > 1)
        raise ValueError(f"tasks must be distinct; {dict(dup)} appears more than once (a repeated grid value?)")
    executor = executor or InlineExecutor()
    units = [(i, list(range(lo, min(trials, lo + per)))) for i in range(len(tasks)) for lo in range(0, trials, per)]

    cache_path = None
    if cache_dir is not None:
        ident = {"name": name, "fn": f"{fn.__module__}.{fn.__qualname__}", "tasks": [_canonical(t) for t in tasks],
                 "trials": trials, "seed": seed, "seed_keys": list(seed_keys) if seed_keys else None,
                 "version": __version__, "source": code_digest(fn)}
        ident.update(engine_settings())  # units made under other engine settings are other numbers
        ident = _canonical(ident)
        cache_path = Path(cache_dir) / f"{name}-{hashlib.sha256(ident.encode()).hexdigest()[:16]}"
        cache_path.mkdir(parents=True, exist_ok=True)

    def unit_file(i: int, group: list[int]) -> Path | None:
        return None if cache_path is None else cache_path / f"task{i:04d}-trials{group[0]}-{group[-1]}.json"

    results: dict[int, list[dict]] = {}
    start = time.perf_counter()
    pending: dict[Future, tuple[int, Path | None]] = {}
    cached = computed = 0
    error: BaseException | None = None
    with progress_bar(total=len(units), desc=f"sweep {name}", enable=progress) as bar:

        def finish(future: Future) -> None:
            nonlocal error, computed
            u, path = pending.pop(future)
            if future.cancelled():
                error = error or CancelledError(f"unit {u} of sweep {name!r} was cancelled by its executor")
                return
            if future.exception() is not None:
                error = error or future.exception()
                return
            rows = future.result()
            if path is not None:
                _write_atomic(path, rows)
            results[u] = rows
            computed += 1
            if bar is not None:
                bar.update(1)

        try:
            for u, (i, group) in enumerate(units):
                path = unit_file(i, group)
                rows = _read_unit(path, tasks[i], group) if path is not None and path.exists() else None
                if rows is not None:
                    results[u] = rows
                    cached += 1
                    if bar is not None:
                        bar.update(1)
                    continue
                future = executor.submit(_run_unit, fn, dict(tasks[i]), seed, group, seed_keys)
                pending[future] = (u, path)
                for f in [f for f in pending if f.done()]:  # write finished units now (inline: this one)
                    finish(f)
                if error is not None:
                    break
            while pending and error is None:
                done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                for f in done:
                    finish(f)
        except BaseException as exc:  # Ctrl-C, or an executor that refuses work: keep what finished
            error = error or exc
        if error is not None:
            interrupted = isinstance(error, KeyboardInterrupt)
            for f in list(pending):
                f.cancel()  # queued units never start
            for f in list(pending):
                if not (f.done() or interrupted):
                    wait([f])  # a unit already running elsewhere: keep its result
                if f.done() and not f.cancelled():
                    try:
                        finish(f)
                    except Exception:  # noqa: BLE001 - keep saving the others; the first error is raised
                        pass
            raise error
    rows = [row for u in range(len(units)) for row in results[u]]
    return SweepResult(
        runs=pd.DataFrame(rows), seconds=time.perf_counter() - start, computed=computed, cached=cached,
        cache_path=cache_path,
    )


def _read_unit(path: Path, params: Mapping[str, Any], trials: list[int]) -> list[dict] | None:
    """The rows of a cached unit, or ``None`` (with a warning naming the file) if they are not exactly its trials."""
    try:
        rows = json.loads(path.read_text())
        ok = (isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows)
              and sorted({r.get("trial") for r in rows}) == list(trials)
              and {r.get("task_key") for r in rows} == {task_key(params)}
              and all("unit_seconds" in r for r in rows)
              and len({frozenset(r) for r in rows}) == 1
              and len(rows) % len(trials) == 0
              and all(sum(r.get("trial") == t for r in rows) == len(rows) // len(trials) for t in trials))
        if ok:
            return rows
        why = "does not hold exactly this unit's trials"
    except (OSError, ValueError, TypeError) as exc:
        why = f"cannot be read ({type(exc).__name__}: {exc})"
    warnings.warn(f"sweep cache file {path} {why}; recomputing it", RuntimeWarning, stacklevel=3)
    return None


_ROOT = Path(__file__).resolve().parents[1]


def _imported_algorithms(path: Path) -> set[str]:
    """The algorithm modules a source file imports directly (``..algorithms.x``, ``.x`` inside algorithms/)."""
    found = set()
    inside = path.parent.name == "algorithms"
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        parts = (node.module or "").split(".")
        if node.level == 0 and parts[:2] == ["winning_ticket", "algorithms"]:
            parts, level = parts[1:], 2  # the absolute form of ..algorithms
        else:
            level = node.level
        if level == 2 and parts[0] == "algorithms":
            found.update([parts[1]] if len(parts) > 1 else [a.name for a in node.names])
        elif level == 1 and inside and parts[0]:
            found.add(parts[0])
        elif level == 1 and inside:
            found.update(a.name for a in node.names)
    return {m for m in found if (_ROOT / "algorithms" / f"{m}.py").exists()}


def algorithm_modules(source: Path | str) -> list[str]:
    """Every algorithm module a source file depends on, directly or through other algorithm modules."""
    todo, seen = list(_imported_algorithms(Path(source))), set()
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(_imported_algorithms(_ROOT / "algorithms" / f"{m}.py"))
    return sorted(seen)


def package_digest(modules: Sequence[str] | None = None) -> str:
    """Digest of the algorithm code that computes the numbers: the given algorithm modules (default:
    all of them) and the seeding module."""
    names = sorted(modules) if modules is not None else sorted(p.stem for p in (_ROOT / "algorithms").glob("*.py"))
    files = [_ROOT / "algorithms" / f"{m}.py" for m in names] + [_ROOT / "experiments" / "seeding.py"]
    h = hashlib.sha256()
    for p in files:
        h.update(p.relative_to(_ROOT).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def source_file(fn: Callable) -> Path | None:
    """The source file of a function's module, or ``None`` (a notebook cell, a builtin)."""
    module = inspect.getmodule(fn)
    path = getattr(module, "__file__", None)
    return Path(path) if path else None


def engine_settings() -> dict[str, str]:
    """The engine settings of this process that can change a run's numbers, where they differ from
    the defaults; a sweep's cache is keyed by them.

    ``engine_precision`` (``$WT_PRECISION`` other than float64: mixed-precision units are other
    numbers), ``engine_kernel`` (``$WT_KERNEL`` other than ``auto``: the kernels agree only to
    rounding), ``engine_chunk_bytes`` (``$WT_CHUNK_BYTES`` other than the default: the torch kernel's
    last bits can depend on the batching) and ``engine_device`` (a device other than the CPU).  An
    archive records the same settings and its audit re-executes under them, so a cache that mixed
    units of two settings would give an archive that fails its audit.  With every default the dict
    is empty and a cache keeps the key it had before these settings were keyed.
    """
    from ..algorithms import engine  # here: the engine imports this package

    values = {"engine_precision": (engine.precision_setting(), "float64"),
              "engine_kernel": (engine.kernel_setting(), "auto"),
              "engine_chunk_bytes": (str(engine.engine_chunk_bytes()), str(engine.CHUNK_BYTES_CPU)),
              "engine_device": (str(engine.default_device()), "cpu")}
    return {name: value for name, (value, default) in values.items() if value != default}


def code_digest(fn: Callable) -> str:
    """Digest of the code that computes a task's result: its module's source (or, for a function
    defined in a notebook cell, its own source) and :func:`package_digest`.

    Raises ``ValueError`` when the task's source cannot be read: such a task cannot be cached,
    since an edit to it could not invalidate the cache.
    """
    module = inspect.getmodule(fn)
    source = None
    try:
        if module is not None and getattr(module, "__file__", None):
            source = inspect.getsource(module)
        else:
            source = inspect.getsource(fn)
    except (OSError, TypeError):
        source = None
    if not source:
        raise ValueError(f"cannot read the source of task {getattr(fn, '__qualname__', fn)!r}; "
                         "it cannot be cached (pass cache_dir=None, or define it in a module)")
    path = source_file(fn)
    deps = package_digest(algorithm_modules(path)) if path is not None else package_digest()
    return hashlib.sha256((source + deps).encode()).hexdigest()[:16]


def success_summary(runs: pd.DataFrame, by: Sequence[str], success: str = "success") -> pd.DataFrame:
    """Per cell: trials, successes, success rate and its Wilson 95% interval."""
    g = runs.groupby(list(by), sort=True)[success]
    out = pd.DataFrame({"trials": g.size(), "successes": g.sum().astype(int)})
    out["rate"] = out["successes"] / out["trials"]
    lo, hi = wilson_interval(out["successes"].to_numpy(), out["trials"].to_numpy())
    out["rate_low"], out["rate_high"] = lo, hi
    return out
