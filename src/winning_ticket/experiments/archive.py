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
from .sweep import _run_unit, package_digest

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

    from ..algorithms.engine import default_device, engine_threads

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
            "engine_threads": engine_threads(), "python": platform.python_version()}


def archive_dir(name: str, root: Path | None = None) -> Path:
    """``results/<name>``."""
    return Path(root or RESULTS_DIR) / name


def archivable(spec) -> bool:
    """Whether a chapter's result is tidy tables only (so it can be archived and rebuilt)."""
    fields = {f.name for f in dataclasses.fields(spec.result)}
    return fields <= set(spec.result.TABLES) | {"config", "seconds"}


def save(spec, result, *, root: Path | None = None, workers: int = 1, source_digest: str | None = None) -> Path:
    """Write ``result`` as the archived evidence run of chapter ``spec`` (atomically).

    ``source_digest``: the :func:`~winning_ticket.experiments.sweep.package_digest` taken when the
    run started (default: now), so an edit made while a long run was going is not attributed to it.
    """
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
            "package_version": __version__, "source_digest": source_digest or package_digest(), "chapter_digest": _module_digest(spec),
            "git_commit": _git_commit(), "machine": machine(), "workers": workers,
            "wall_seconds": round(float(result.seconds), 1),
            "compute_seconds": round(float(sum(t["unit_seconds"].sum() for t in result.tables().values()
                                               if "unit_seconds" in t)), 1),
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        (tmp / "provenance.json").write_text(json.dumps(prov, indent=2, ensure_ascii=False) + "\n")
        old = target.with_name(f".{spec.name}-old")
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


@dataclass
class Archived:
    """An archived evidence run: the rebuilt result and its provenance record."""

    result: Any
    provenance: dict

    def caption(self) -> str:
        """One line for under a figure: where the numbers come from."""
        p, m = self.provenance, self.provenance["machine"]
        where = m["gpu"] or f"{m['cpu']} ({p['workers']} worker{'s' if p['workers'] != 1 else ''} x {m['engine_threads']} thread)"
        trials = f", {p['trials_per_cell']} trials per cell" if p.get("trials_per_cell") else ""
        return (f"Archived evidence run: profile '{p['profile']}'{trials}; {where}; "
                f"{p['compute_seconds'] / 60:.1f} min of computation, on {p['date'][:10]}; commit {p['git_commit'][:10]}.")


def load(spec, root: Path | None = None) -> Archived:
    """The archived evidence run of chapter ``spec``; ``FileNotFoundError`` naming ``make reproduce`` if absent."""
    d = archive_dir(spec.name, root)
    path = d / "provenance.json"
    if not path.exists():
        raise FileNotFoundError(f"no archived evidence run for chapter {spec.name!r} in {d}; "
                                f"make it with `make reproduce CHAPTER={spec.name}`")
    prov = json.loads(path.read_text())
    tables = {name: pd.read_parquet(d / f"{name}.parquet", engine="pyarrow") for name in prov["tables"]}
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

    @property
    def ok(self) -> bool:
        """Whether every re-executed run matched and the code is the archive's."""
        return self.digest_ok and not self.mismatches

    def line(self) -> str:
        """A one-line summary."""
        status = "OK" if self.ok else "FAILED"
        why = [] if self.digest_ok else ["the algorithm code changed since the archive was made (source digest differs); "
                                         f"regenerate it with `make reproduce CHAPTER={self.chapter}`"]
        return (f"{self.chapter}: {status}: {self.checked} archived runs re-executed, {len(self.mismatches)} differ"
                f" ({self.seconds:.0f} s)" + ("; " + "; ".join(why + self.mismatches[:3]) if not self.ok else ""))


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple, np.ndarray)) or isinstance(b, (list, tuple, np.ndarray)):
        if a is None or b is None:
            return a is None and b is None
        return np.array_equal(np.asarray(a, dtype=float), np.asarray(b, dtype=float), equal_nan=True)
    if isinstance(a, float) or isinstance(b, float):
        return (a == b) or (a != a and b != b)  # bitwise equal values, NaN equal to NaN
    return a == b


def audit(spec, samples: int = 10, seed: int = 0, root: Path | None = None) -> AuditReport:
    """Re-execute ``samples`` archived units of work (a seeded sample, at least one per task) and compare exactly.

    Exact equality is required: the engine is deterministic for a fixed unit of work (same
    batch, same thread count), and a unit is re-executed exactly as it was archived.
    """
    start = time.perf_counter()
    arch = load(spec, root)
    prov, result = arch.provenance, arch.result
    digest_ok = prov["source_digest"] == package_digest()
    plans = spec.sweeps(result.config)
    mismatches, checked = [], 0
    rng = np.random.default_rng(seed)
    for plan in plans:
        table = result.tables()[plan.table]
        units = table.groupby(["task_key", "trial"]).size().index.to_list()
        keyed = {int(k): t for t in plan.tasks for k in [_task_key(t)]}
        by_task = {}
        for k, t in units:
            by_task.setdefault(int(k), []).append(int(t))
        chosen = [(k, ts[rng.integers(len(ts))]) for k, ts in sorted(by_task.items())]
        extra = max(0, samples - len(chosen))
        pool = [(int(k), int(t)) for k, t in units if (int(k), int(t)) not in chosen]
        chosen += [pool[i] for i in rng.choice(len(pool), size=min(extra, len(pool)), replace=False)]
        for k, trial in chosen:
            rows = _run_unit(plan.fn, keyed[k], plan.seed, [trial], plan.seed_keys)
            old = table[(table["task_key"] == k) & (table["trial"] == trial)].to_dict("records")
            checked += 1
            if len(rows) != len(old):
                mismatches.append(f"task {k} trial {trial}: {len(rows)} rows, archived {len(old)}")
                continue
            for new_row, old_row in zip(rows, old):
                bad = [c for c in old_row if c not in TIMING_COLUMNS and not _same(new_row.get(c), old_row[c])]
                if bad:
                    mismatches.append(f"task {k} trial {trial}: {', '.join(bad)} differ")
                    break
    return AuditReport(spec.name, checked, mismatches, digest_ok, time.perf_counter() - start)


def _task_key(params) -> int:
    from .sweep import task_key

    return task_key(params)
