"""The evidence archive: each chapter's evidence run, stored as tidy tables with provenance.

``results/<chapter>/`` (the repository's ``results/``, or ``$WT_RESULTS_DIR``) holds one
Parquet file per table of the chapter's result (one row per run, with every parameter, the
trial's seed key and its outcome) and ``provenance.json``: what produced it (package version,
source digests, git commit, profile and full config, trials per cell, device, torch version,
thread count, wall time, date).  Writing is atomic (a new directory replaces the old one), so
a killed run never leaves a half-written archive.

* :func:`save` / :func:`load`: write and read a chapter's archived run;
* :func:`load_or_run`: the archived result when the config is the archived one, else a live run;
* :func:`audit`: re-execute a seeded sample of archived runs and compare them exactly, and
  check that the algorithm code is the code that produced the archive.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import inspect
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import __version__
from ..algorithms.engine import torch_threads
from .sweep import _run_unit, algorithm_modules, package_digest, task_key
from .validation import check_int

REPO_ROOT = Path(__file__).resolve().parents[3]
TIMING_COLUMNS = ("unit_seconds",)
"""Columns that measure time, not results: never compared by the audit."""
RESULTS_DIR = Path(os.environ.get("WT_RESULTS_DIR", REPO_ROOT / "results"))
"""Where the archive lives (``$WT_RESULTS_DIR``, default ``results/`` at the repository root)."""


def _plain(v):
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


def config_dict(config) -> dict:
    """A chapter config as plain JSON data (tuples as lists)."""
    return {f.name: _plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def config_from_dict(spec, data: dict):
    """Rebuild a chapter config from :func:`config_dict` output."""
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return spec.config(**kw)


def _module_digest(spec) -> str:
    return hashlib.sha256(inspect.getsource(inspect.getmodule(spec.run)).encode()).hexdigest()[:16]


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", "src"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("+dirty-src" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> dict:
    """The machine a run is on: CPU model and cores, torch and its threads, CUDA device if any."""
    import torch

    from ..algorithms.engine import default_device, engine_chunk_bytes, engine_threads, kernel_setting, precision_setting

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    dev = default_device()
    return {"device": str(dev), "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
            "cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "numpy": np.__version__,
            "engine_threads": engine_threads(), "engine_kernel": kernel_setting(),
            "engine_chunk_bytes": engine_chunk_bytes(), "engine_precision": precision_setting(), **_fused_kernel(),
            "python": platform.python_version()}


def _fused_kernel() -> dict:
    """What the engine's fused kernel is here: numba's version and the largest ``r`` that takes its
    sample-block layout (:func:`winning_ticket.algorithms.kernels.layout_for`); ``None`` without numba."""
    from ..algorithms import kernels

    if not kernels.available():
        return {"numba": None, "engine_blocks_max_r": None}
    return {"numba": kernels.numba.__version__, "engine_blocks_max_r": kernels.BLOCKS_MAX_R}


def archive_dir(name: str, root: Path | None = None) -> Path:
    """``results/<name>``."""
    return Path(root or RESULTS_DIR) / name


def archivable(spec) -> bool:
    """Whether a chapter's result is tidy tables only (so it can be archived and rebuilt)."""
    fields = {f.name for f in dataclasses.fields(spec.result)}
    return fields <= set(spec.result.TABLES) | {"config", "seconds"}


def code_state(spec) -> dict:
    """What the code is now: the algorithm digest, the chapter module's and task functions' digests, the commit.

    Take it when a run starts and pass it to :func:`save`, so an edit made while a long run was
    going is not attributed to it.
    """
    tasks = {}
    if spec.sweeps is not None:
        plans = spec.sweeps(spec.config.for_profile("smoke"))
        tasks = {plan.fn.__qualname__: _source_digest(plan.fn) for plan in plans}
    modules = chapter_algorithms(spec)
    return {"source_digest": package_digest(modules), "algorithm_modules": modules,
            "chapter_digest": _module_digest(spec), "task_digests": tasks, "git_commit": _git_commit()}


def chapter_algorithms(spec) -> list[str]:
    """The algorithm modules a chapter's computations depend on (its source digest covers these and seeding)."""
    return algorithm_modules(inspect.getsourcefile(inspect.getmodule(spec.run)))


def _source_digest(fn) -> str:
    return hashlib.sha256(inspect.getsource(fn).encode()).hexdigest()[:16]


def save(spec, result, *, root: Path | None = None, workers: int | str = 1, code: dict | None = None,
         source_digest: str | None = None) -> Path:
    """Write ``result`` as the archived evidence run of chapter ``spec`` (atomically).

    ``code``: :func:`code_state` taken when the run started (default: now).  ``workers``: how the
    units were spread (a number of processes, or ``"dask"``).  An existing archive is replaced
    only once the new one is complete; on any failure the old one is put back.
    """
    code = dict(code or code_state(spec))
    if source_digest is not None:
        code["source_digest"] = source_digest
    if not archivable(spec):
        raise ValueError(f"chapter {spec.name!r}: its result holds more than tidy tables; it cannot be archived yet")
    target = archive_dir(spec.name, root)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{spec.name}-"))
    tmp.chmod(0o755)
    try:
        tables = {}
        for name, frame in result.tables().items():
            path = tmp / f"{name}.parquet"
            frame.to_parquet(path, index=False, engine="pyarrow")
            tables[name] = {"rows": len(frame), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
        cfg = result.config
        prov = {
            "chapter": spec.name, "profile": cfg.profile, "config": config_dict(cfg),
            "trials_per_cell": getattr(cfg, "trials", None), "tables": tables,
            "package_version": __version__, **code, "machine": machine(), "workers": workers,
            "wall_seconds": round(float(result.seconds), 1),
            "compute_seconds": round(float(sum(t["unit_seconds"].sum() for t in result.tables().values()
                                               if "unit_seconds" in t)), 1),
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        (tmp / "provenance.json").write_text(json.dumps(prov, indent=2, ensure_ascii=False) + "\n")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{spec.name}-old-")) if target.exists() else None
    try:
        if old is not None:
            os.replace(target, old / "archive")
        os.replace(tmp, target)
    except BaseException:
        if old is not None and not target.exists():
            os.replace(old / "archive", target)  # put the previous archive back
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return target


@dataclass
class Archived:
    """An archived evidence run: the rebuilt result and its provenance record."""

    result: Any
    provenance: dict

    def caption(self) -> str:
        """One line for under a figure: where the numbers come from."""
        p, m = self.provenance, self.provenance["machine"]
        workers = p["workers"]
        where = m["gpu"] or (f"{m['cpu']}, {workers} worker process{'es' if workers != 1 else ''} x {m['engine_threads']} "
                             f"thread" if isinstance(workers, int) else f"{m['cpu']}, a Dask cluster")
        trials = f", {p['trials_per_cell']} trials per cell" if p.get("trials_per_cell") else ""
        if m.get("engine_precision") == "mixed":
            where += " (mixed precision)"
        return (f"Archived evidence run: profile '{p['profile']}'{trials}; {where}; {p['wall_seconds'] / 60:.0f} min "
                f"({p['compute_seconds'] / 60:.0f} min of computation) on {p['date'][:10]}; commit {p['git_commit'][:7]}"
                + (" with uncommitted source changes" if p["git_commit"].endswith("+dirty-src") else "") + ".")


def load(spec, root: Path | None = None) -> Archived:
    """The archived evidence run of chapter ``spec``; ``FileNotFoundError`` naming ``make reproduce`` if absent."""
    d = archive_dir(spec.name, root)
    path = d / "provenance.json"
    if not path.exists():
        raise FileNotFoundError(f"no archived evidence run for chapter {spec.name!r} in {d}; "
                                f"make it with `make reproduce CHAPTER={spec.name}`")
    prov = json.loads(path.read_text())
    tables = {}
    for name, meta in prov["tables"].items():
        table_path = d / f"{name}.parquet"
        digest = hashlib.sha256(table_path.read_bytes()).hexdigest() if table_path.exists() else "missing"
        if digest != meta["sha256"]:
            raise ValueError(f"archive table {table_path} does not match its provenance record (sha256 {digest[:12]}, "
                             f"recorded {meta['sha256'][:12]}); regenerate it with `make reproduce CHAPTER={spec.name}`")
        tables[name] = pd.read_parquet(table_path, engine="pyarrow")
    result = spec.result(config=config_from_dict(spec, prov["config"]), seconds=prov["wall_seconds"], **tables)
    return Archived(result=result, provenance=prov)


def load_or_run(spec, config, **run_kwargs):
    """The archived result if ``config`` is the archived config, else a live ``spec.run(config)``.

    Returns ``(result, archived)`` with ``archived`` the :class:`Archived` record or ``None``.
    """
    try:
        arch = load(spec)
    except FileNotFoundError:
        arch = None
    if arch is not None and config_dict(arch.result.config) == config_dict(config):
        return arch.result, arch
    return spec.run(config, **run_kwargs), None


@dataclass
class AuditReport:
    """What the audit of one chapter found."""

    chapter: str
    checked: int
    mismatches: list[str]
    digest_ok: bool
    seconds: float
    algorithm_changed: bool = False
    """Whether the algorithm code's digest differs from the archive's (one of the problems listed)."""
    skipped: tuple[str, ...] = ()
    """Tables the quick audit left out (all their units took longer than :data:`QUICK_MAX_SECONDS`)."""
    precision: str | None = None
    """``None``: the audit proper (bit for bit, with the archive's settings); ``"mixed"``: the precision
    check (the units re-executed in mixed precision, their verdicts compared)."""
    runs: int = 0
    """Rows compared."""
    drift: dict = dataclasses.field(default_factory=dict)
    """The precision check: each other numeric column's largest relative difference from the archive."""
    flips: int = 0
    """The precision check: runs whose verdict (a :func:`verdict_column`) differs from the archive's."""

    @property
    def ok(self) -> bool:
        """Whether every re-executed run matched and the code is the archive's."""
        return self.digest_ok and not self.mismatches

    def line(self) -> str:
        """A one-line summary."""
        status = "OK" if self.ok else "FAILED"
        fix = [] if self.ok else [f"regenerate it with `make reproduce CHAPTER={self.chapter}`"]
        left = (f" (left out of the quick audit, units too long: {', '.join(self.skipped)}; `make audit` re-executes them)"
                if self.skipped else "")
        if self.precision is not None:
            verdicts = f"{self.flips} of {self.runs} verdicts differ" if self.flips else "verdicts as archived"
            return (f"{self.chapter}: {status}: {self.checked} archived units ({self.runs} rows) re-executed in "
                    f"{self.precision} precision, {verdicts} ({self.seconds:.0f} s)"
                    f"{left}" + ("; " + "; ".join(self.mismatches[:4]) if not self.ok else ""))
        return (f"{self.chapter}: {status}: {self.checked} archived units re-executed"
                f" ({self.seconds:.0f} s){left}" + ("; " + "; ".join(self.mismatches[:4] + fix) if not self.ok else ""))


ALGORITHM_CHANGED = ("the algorithm code it depends on ({modules}, seeding) changed since the archive was made "
                     "(source digest differs)")


def recertify(spec, report: AuditReport, *, samples: int, quick: bool, root: Path | None = None) -> Path:
    """Accept today's algorithm code for an archive whose sampled runs it re-executes bit for bit.

    For a change to the algorithm modules that is meant to leave archived numbers alone (a new
    kernel beside the one that made the archive, a refactoring): ``report`` must come from
    :func:`audit` of this archive with the code changed and *nothing else* wrong (every
    re-executed unit equal, task functions unchanged, the archive complete).  The provenance
    record then takes the new source digest and keeps the old one, with the audit that
    justified the change, in its ``recertified`` list.  Written atomically.
    """
    if report.chapter != spec.name:
        raise ValueError(f"report is for {report.chapter!r}, not {spec.name!r}")
    modules = chapter_algorithms(spec)
    expected = ALGORITHM_CHANGED.format(modules=", ".join(modules))
    others = [m for m in report.mismatches if m != expected]
    if not report.algorithm_changed:
        raise ValueError(f"{spec.name}: the algorithm code is the archive's; nothing to recertify")
    if others or report.checked < 1:
        raise ValueError(f"{spec.name}: cannot recertify: " + ("; ".join(others[:4]) or "no unit was re-executed"))
    path = archive_dir(spec.name, root) / "provenance.json"
    prov = json.loads(path.read_text())
    prov.setdefault("recertified", []).append({
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "git_commit": _git_commit(),
        "from_source_digest": prov["source_digest"], "to_source_digest": package_digest(modules),
        "units_reexecuted_bitwise_equal": report.checked, "samples": samples, "quick": quick,
        "kernel": prov.get("machine", {}).get("engine_kernel", "torch"),
        "from_algorithm_modules": prov.get("algorithm_modules"), "to_algorithm_modules": modules})
    prov["source_digest"] = package_digest(modules)
    prov["algorithm_modules"] = modules
    return _write_json_atomic(path, prov)


AUDIT_RECORD = "audit.json"
"""The file in a chapter's archive that records its last audit (written by ``make audit``)."""

PRECISION_RECORD = "precision_check.json"
"""The file in a chapter's archive that records its last precision check (``tools/audit.py --precision mixed --record``)."""


def record_audit(report: AuditReport, *, samples: int, quick: bool, root: Path | None = None) -> Path:
    """Store ``report`` as the chapter's last audit (``results/<chapter>/audit.json``, written atomically),
    or, for a precision check, as its last precision check (``precision_check.json``, with the rows
    compared and the drift of the other columns).

    Re-archiving a chapter replaces its directory, so a record always belongs to the archive beside it.
    """
    target = archive_dir(report.chapter, root) / (AUDIT_RECORD if report.precision is None else PRECISION_RECORD)
    record = {"chapter": report.chapter, "ok": report.ok, "checked": report.checked, "samples": samples,
              "quick": quick, "seconds": round(report.seconds, 1), "mismatches": report.mismatches[:10],
              "git_commit": _git_commit(), "machine": machine(),
              "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    if report.precision is not None:  # what the check re-executed with (machine() reads the restored environment)
        record["machine"].update(device="cpu", gpu=None, engine_kernel="fused", engine_precision=report.precision)
        record.update(precision=report.precision, rows=report.runs, flips=report.flips,
                      drift={c: float(f"{v:.3g}") for c, v in sorted(report.drift.items()) if v > 0})
    return _write_json_atomic(target, record)


def _write_json_atomic(path: Path, obj) -> Path:
    """Write ``obj`` as indented JSON to ``path`` through a temporary file in the same directory."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def last_audit(name: str, root: Path | None = None) -> dict | None:
    """The chapter's last recorded audit (:func:`record_audit`), or ``None``."""
    path = archive_dir(name, root) / AUDIT_RECORD
    return json.loads(path.read_text()) if path.exists() else None


def last_precision_check(name: str, root: Path | None = None) -> dict | None:
    """The chapter's last recorded precision check (:func:`record_audit` of a mixed-precision report), or ``None``."""
    path = archive_dir(name, root) / PRECISION_RECORD
    return json.loads(path.read_text()) if path.exists() else None


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def _same(a, b) -> bool:
    if _missing(a) or _missing(b):
        return _missing(a) and _missing(b)  # Parquet stores a missing number as null, read back as NaN or None
    if isinstance(a, (list, tuple, np.ndarray)) or isinstance(b, (list, tuple, np.ndarray)):
        if a is None or b is None:
            return a is None and b is None
        return np.array_equal(np.asarray(a, dtype=float), np.asarray(b, dtype=float), equal_nan=True)
    if isinstance(a, float) or isinstance(b, float):
        return (a == b) or (a != a and b != b)  # bitwise equal values, NaN equal to NaN
    return a == b


QUICK_MAX_SECONDS = 90.0
"""The quick audit leaves out units that took longer than this when archived (``make audit`` covers them)."""


def verdict_column(name: str) -> bool:
    """Whether a result column holds a run's verdict (what the precision check compares): its stopping
    status, its success, a flag of the initialization or a recovered support."""
    return name in ("status", "success", "flagged", "recovered") or name.startswith("success_")


def _iteration_column(name: str) -> bool:
    return name.startswith("iterations") or name in ("history", "rounds")


def audit(spec, samples: int = 10, seed: int = 0, root: Path | None = None, quick: bool = False,
          precision: str | None = None) -> AuditReport:
    """Re-execute archived units of work and compare them exactly; check the archive is whole and current.

    * ``samples`` units per chapter: a seeded sample with at least one unit per task;
      ``quick=True`` (the audit of ``make test``) takes the ``samples`` units that took the least
      time when archived instead, with no minimum per task, and none that took more than
      :data:`QUICK_MAX_SECONDS` (a table with only longer units is left out and named in the report).
    * Each unit is re-executed exactly as it was archived (the same trials in one batch, one
      engine thread, on the archive's device type, with its engine kernel and CPU chunk size) and
      must equal its rows bit for bit.
    * The archive must hold every (task, trial) of its config's sweeps, no more; the algorithm
      code (:func:`~winning_ticket.experiments.sweep.package_digest`) and each task function must
      be the code that produced it.

    ``precision="mixed"`` makes it the precision check instead: the same units, re-executed with the
    fused kernel in mixed precision (:data:`~winning_ticket.algorithms.engine.PRECISIONS`), must
    give every run the archived verdict (:func:`verdict_column`: status, success, flags); the
    iterates, iteration counts and errors may differ, and each numeric column's largest relative
    difference is reported as ``drift``.  Changed algorithm code is not a problem for it.
    """
    samples = check_int("samples", samples, 1)
    if precision not in (None, "mixed"):
        raise ValueError(f"precision = {precision!r}; allowed: None (the audit) or 'mixed' (the precision check)")
    start = time.perf_counter()
    arch = load(spec, root)
    prov, result = arch.provenance, arch.result
    problems = []
    modules = chapter_algorithms(spec)
    algorithm_changed = prov["source_digest"] != package_digest(modules)
    if algorithm_changed and precision is None:
        problems.append(ALGORITHM_CHANGED.format(modules=", ".join(modules)))
    mismatches, checked, skipped, runs, drift, flips = [], 0, [], 0, {}, 0
    rng = np.random.default_rng(seed)
    device = prov.get("machine", {}).get("device", "cpu").split(":")[0]
    # the engine kernel that made it (archives from before the fused kernel were made by the torch one)
    kernel = prov.get("machine", {}).get("engine_kernel", "torch")
    # and its CPU chunk (the torch kernel's bits can depend on it): archives from before it was recorded used 48 MiB
    from ..algorithms.engine import CHUNK_BYTES_BEFORE

    chunk = str(prov.get("machine", {}).get("engine_chunk_bytes", CHUNK_BYTES_BEFORE))
    run_precision = prov.get("machine", {}).get("engine_precision", "float64")  # float64 before it was recorded
    if precision is not None:  # the precision check: today's CPU fused kernel in that precision
        if run_precision != "float64":  # compared with itself, the check would pass whatever it found
            problems.append(f"the archive was made in {run_precision} precision; the precision check compares "
                            f"with a float64 archive")
        device, kernel, run_precision = "cpu", "fused", precision
    saved = {name: os.environ.get(name) for name in ("WT_DEVICE", "WT_KERNEL", "WT_CHUNK_BYTES", "WT_PRECISION")}
    os.environ["WT_DEVICE"], os.environ["WT_KERNEL"], os.environ["WT_CHUNK_BYTES"] = device, kernel, chunk
    os.environ["WT_PRECISION"] = run_precision
    try:
        for plan in spec.sweeps(result.config):
            recorded = prov.get("task_digests", {}).get(plan.fn.__qualname__)
            if recorded is not None and recorded != _source_digest(plan.fn):
                problems.append(f"task function {plan.fn.__qualname__} changed since the archive was made")
            table = result.tables()[plan.table]
            keyed = {task_key(t): t for t in plan.tasks}
            expected = {(k, t) for k in keyed for t in range(plan.trials)}
            have = {(int(k), int(t)) for k, t in table.groupby(["task_key", "trial"]).size().index}
            if have != expected:
                problems.append(f"table {plan.table!r} holds {len(have & expected)} of the {len(expected)} (task, trial) "
                                f"units of its config and {len(have - expected)} others")
            per = plan.trials_per_unit or plan.trials
            units = sorted(have & expected)
            if not units:
                continue
            if quick:
                cost = table.groupby(["task_key", "trial"])["unit_seconds"].sum()
                if plan.audit_prefix is not None:  # only the prefix is re-executed: its share of the rows
                    name, value, column = plan.audit_prefix
                    share = (table[column] <= value).groupby([table["task_key"], table["trial"]]).mean()
                    cost = cost * share.reindex(cost.index)
                unit_cost = cost.groupby([cost.index.get_level_values(0),
                                          cost.index.get_level_values(1) // per * per]).sum()
                cost = cost.sort_values(kind="stable")
                chosen = [(int(k), int(t)) for k, t in cost.index if (int(k), int(t)) in expected
                          and unit_cost[(k, int(t) // per * per)] <= QUICK_MAX_SECONDS][:samples]
                if not chosen:
                    skipped.append(plan.table)
            else:
                by_task: dict[int, list[int]] = {}
                for k, t in units:
                    by_task.setdefault(k, []).append(t)
                chosen = [(k, ts[rng.integers(len(ts))]) for k, ts in sorted(by_task.items())]
                pool = [u for u in units if u not in chosen]
                extra = max(0, samples - len(chosen))
                chosen += [pool[i] for i in rng.choice(len(pool), size=min(extra, len(pool)), replace=False)]
            done = set()
            for k, trial in chosen:
                lo = trial - trial % per
                group = list(range(lo, min(plan.trials, lo + per)))  # the unit as it was run
                if (k, lo) in done:
                    continue
                done.add((k, lo))
                params, old = keyed[k], table[(table["task_key"] == k) & table["trial"].isin(group)]
                if plan.audit_prefix is not None:  # the unit's first steps only
                    name, value, column = plan.audit_prefix
                    params = {**params, name: min(value, params[name])}
                    old = old[old[column] <= value]
                old = old.to_dict("records")
                with torch_threads(1):  # as archived: one thread per worker (LAPACK results depend on it)
                    rows = _run_unit(plan.fn, params, plan.seed, group, plan.seed_keys)
                if plan.audit_prefix is not None:
                    rows = [{**r, "task_key": k} for r in rows]  # the archived unit's key, not the prefix's
                checked += 1
                if len(rows) != len(old):
                    mismatches.append(f"task {k} trials {group[0]}-{group[-1]}: {len(rows)} rows, archived {len(old)}")
                    continue
                # pair rows by their discrete fields (a chapter may sort its table differently from a unit's order)
                keys = [c for c in (old[0] if old else ()) if c not in TIMING_COLUMNS
                        and isinstance(old[0][c], (str, int, np.integer))
                        and (precision is None or not (verdict_column(c) or _iteration_column(c)))]
                if precision is not None and old:  # and the inputs among the floats (a level, a lambda): the
                    # columns whose values the re-execution gives exactly, as a multiset; outcomes never do
                    same = lambda c: sorted(str(r.get(c)) for r in rows) == sorted(str(r.get(c)) for r in old)  # noqa: E731
                    keys += [c for c in old[0] if c not in keys and c not in TIMING_COLUMNS and not verdict_column(c)
                             and isinstance(old[0][c], float) and same(c)]
                order = lambda rs: sorted(rs, key=lambda r: tuple(str(r.get(c)) for c in keys))  # noqa: E731
                for new_row, old_row in zip(order(rows), order(old)):
                    runs += 1
                    if precision is None:
                        bad = [c for c in old_row if c not in TIMING_COLUMNS and not _same(new_row.get(c), old_row[c])]
                    else:
                        bad = [c for c in old_row if verdict_column(c) and not _same(new_row.get(c), old_row[c])]
                        _record_drift(drift, new_row, old_row)
                    if bad:
                        detail = ""
                        if precision is not None:  # what the verdict rests on: the iterations and errors, both ways
                            more = [c for c in old_row if _iteration_column(c) and c != "history" or "error" in c]
                            detail = (f" ({', '.join(f'{c} {old_row[c]} -> {new_row.get(c)}' for c in bad + more)})")
                        mismatches.append(f"task {k} trial {new_row.get('trial')}: {', '.join(bad)} differ" + detail)
                        if precision is None:
                            break
                        flips += 1
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old
    return AuditReport(spec.name, checked, mismatches + problems, not problems, time.perf_counter() - start,
                       algorithm_changed, tuple(skipped), precision, runs, drift, flips)


def _record_drift(drift: dict, new_row: dict, old_row: dict) -> None:
    """Update each numeric non-verdict column's largest relative difference (the precision check's report)."""
    for c, a in old_row.items():
        if c in TIMING_COLUMNS or verdict_column(c) or isinstance(a, (str, bool, np.bool_)):
            continue
        b = new_row.get(c)
        try:
            a_, b_ = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        except (TypeError, ValueError):
            continue
        if a_.shape != b_.shape or a_.size == 0:
            continue
        finite = np.isfinite(a_) & np.isfinite(b_)
        if not finite.any():
            continue
        scale = np.maximum(np.abs(a_[finite]), np.abs(b_[finite]))
        diff = np.abs(a_[finite] - b_[finite])
        rel = np.where(scale > 0, diff / np.where(scale > 0, scale, 1.0), 0.0)
        drift[c] = max(drift.get(c, 0.0), float(rel.max()))
