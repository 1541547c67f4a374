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
  parameters and the package version, so an interrupted sweep resumes where it stopped;
* returns a tidy :class:`pandas.DataFrame`, one row per run.

:func:`success_summary` adds Wilson 95% intervals to per-cell success rates.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import tempfile
import time
from concurrent.futures import Executor, Future, as_completed
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
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
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

    return json.dumps({k: plain(v) for k, v in params.items()}, sort_keys=True)


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
    return seed_sequence(seed, *(params[k] for k in seed_keys), trial)


def _run_unit(fn: TaskFn, params: Mapping[str, Any], seed: int, trials: list[int],
              seed_keys: Sequence[str] | None = None) -> list[dict]:
    seeds = [trial_seed(params, seed, t, seed_keys) for t in trials]
    rows = fn(params, seeds, trials)
    key = task_key(params)
    return [{**row, "task_key": key, "seed": seed} for row in rows]


def _write_atomic(path: Path, rows: list[dict]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(rows, fh, default=lambda o: o.item() if hasattr(o, "item") else str(o))
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
    cache file); default: all trials of a task together.  ``seed_keys``: see :func:`trial_seed`.  The rows are ordered by task,
    then by trial, whatever the order in which units finish.
    """
    if not tasks:
        raise ValueError("tasks must not be empty")
    trials = check_int("trials", trials, 1)
    per = check_int("trials_per_unit", trials_per_unit or trials, 1)
    seed = check_int("seed", seed, 0)
    executor = executor or InlineExecutor()
    units = [(i, list(range(lo, min(trials, lo + per)))) for i in range(len(tasks)) for lo in range(0, trials, per)]

    cache_path = None
    if cache_dir is not None:
        ident = _canonical(
            {"name": name, "fn": f"{fn.__module__}.{fn.__qualname__}", "tasks": [_canonical(t) for t in tasks],
             "trials": trials, "seed": seed, "seed_keys": list(seed_keys) if seed_keys else None,
             "version": __version__, "source": _source_digest(fn)}
        )
        cache_path = Path(cache_dir) / f"{name}-{hashlib.sha256(ident.encode()).hexdigest()[:16]}"
        cache_path.mkdir(parents=True, exist_ok=True)

    def unit_file(i: int, group: list[int]) -> Path | None:
        return None if cache_path is None else cache_path / f"task{i:04d}-trials{group[0]}-{group[-1]}.json"

    results: dict[int, list[dict]] = {}
    start = time.perf_counter()
    pending: dict[Future, tuple[int, Path | None]] = {}
    cached = 0
    with progress_bar(total=len(units), desc=f"sweep {name}", enable=progress) as bar:
        for u, (i, group) in enumerate(units):
            path = unit_file(i, group)
            if path is not None and path.exists():
                results[u] = json.loads(path.read_text())
                cached += 1
                if bar is not None:
                    bar.update(1)
                continue
            pending[executor.submit(_run_unit, fn, dict(tasks[i]), seed, group, seed_keys)] = (u, path)
        error: BaseException | None = None
        for future in as_completed(pending):
            u, path = pending[future]
            if future.cancelled():
                continue
            if future.exception() is not None:
                # keep every unit that did finish, so a rerun resumes; then report the first error
                error = error or future.exception()
                for other in pending:
                    other.cancel()
                continue
            rows = future.result()
            if path is not None:
                _write_atomic(path, rows)
            results[u] = rows
            if bar is not None:
                bar.update(1)
        if error is not None:
            raise error
    rows = [row for u in range(len(units)) for row in results[u]]
    return SweepResult(
        runs=pd.DataFrame(rows), seconds=time.perf_counter() - start, computed=len(pending), cached=cached,
        cache_path=cache_path,
    )


def _source_digest(fn: Callable) -> str:
    """Digest of the task function's module source, so editing the code invalidates the cache."""
    try:
        source = inspect.getsource(inspect.getmodule(fn))
    except (OSError, TypeError):
        source = ""
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def success_summary(runs: pd.DataFrame, by: Sequence[str], success: str = "success") -> pd.DataFrame:
    """Per cell: trials, successes, success rate and its Wilson 95% interval."""
    g = runs.groupby(list(by), sort=True)[success]
    out = pd.DataFrame({"trials": g.size(), "successes": g.sum().astype(int)})
    out["rate"] = out["successes"] / out["trials"]
    lo, hi = wilson_interval(out["successes"].to_numpy(), out["trials"].to_numpy())
    out["rate_low"], out["rate_high"] = lo, hi
    return out
