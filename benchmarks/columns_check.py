"""Sample complexity on the CPU: a student's sizes N cell by cell against one zero-padded call, on the evidence grid.

The `paper` profile of the Sample-complexity chapter runs all sizes N of a student size r in one
engine call (``batch_columns``: the problems are zero-padded to the largest N and each gradient is
divided by its own N), because on a GPU the cell-by-cell sweep is launch-bound.  This script
checks, on the archived evidence grid, that the columns give the archived runs, and times both
layouts on this CPU, side by side:

* for each chosen r, the evidence config's cells of that student are re-executed as the archive
  made them (units of ``trials_per_unit`` teachers per cell) and as one column (all N, all
  teachers, one call), alternating which goes first, one thread, the engine's default kernel
  (``WT_KERNEL``, ``auto`` unless set);
* every row of both is compared with the archive (made with the torch kernel): status, success
  and iteration count must be equal, the final error equal to a relative 1e-6 (the kernels
  agree to rounding); the count of rows that differ is printed and the script exits 1 if any.

Usage: python benchmarks/columns_check.py [--r 10 20] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy as np
import pandas as pd
import torch

from winning_ticket import chapters
from winning_ticket.algorithms.engine import engine_kernel, torch_threads
from winning_ticket.chapters import sample_complexity as sc
from winning_ticket.experiments import archive
from winning_ticket.experiments.sweep import _run_unit

KEY = ["r", "N", "trial"]
EXACT = ["status", "success", "iterations"]


def differing(rows: list[dict], archived: pd.DataFrame) -> int:
    """Rows whose status, success or iteration count differ from the archive's, or whose final
    error differs by more than a relative 1e-6 (or that the archive lacks)."""
    got = pd.DataFrame(rows).set_index(KEY).sort_index()
    want = archived.set_index(KEY).loc[got.index]
    bad = np.zeros(len(got), dtype=bool)
    for f in EXACT:
        bad |= got[f].to_numpy() != want[f].to_numpy()
    bad |= ~np.isclose(got["final_error"].to_numpy(float), want["final_error"].to_numpy(float), rtol=1e-6, atol=0)
    return int(bad.sum())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--r", type=int, nargs="+", default=[10, 20], help="student sizes to check")
    ap.add_argument("--markdown", type=Path, default=None, help="also write the table to this file")
    args = ap.parse_args()
    spec = chapters.get("sample_complexity")
    arch = archive.load(spec)
    config = arch.result.config
    runs = arch.result.runs
    (cells_plan,) = sc.sweeps(config)
    (col_plan,) = sc.sweeps(config.replace(batch_columns=True))
    lines = ["| r | runs | kernel | cell by cell | one call per column | ratio | rows unlike the archive (cells / column) |",
             "|---|---|---|---|---|---|---|"]
    print(lines[0], lines[1], sep="\n", flush=True)
    total_bad = 0
    for i, r in enumerate(args.r):
        if r not in config.r_values:
            raise SystemExit(f"--r {r}: the evidence config's students are r = {config.r_values}")
        per = cells_plan.trials_per_unit or cells_plan.trials
        groups = [list(range(lo, min(config.trials, lo + per))) for lo in range(0, config.trials, per)]
        out, spent = {}, {}

        def cells():
            rows = []
            for task in (t for t in cells_plan.tasks if t["r"] == r):
                for g in groups:
                    rows += _run_unit(cells_plan.fn, task, cells_plan.seed, g, cells_plan.seed_keys)
            return rows

        def column():
            (task,) = (t for t in col_plan.tasks if t["r"] == r)
            return _run_unit(col_plan.fn, task, col_plan.seed, list(range(config.trials)), col_plan.seed_keys)

        order = (("cells", cells), ("column", column)) if i % 2 == 0 else (("column", column), ("cells", cells))
        for name, fn in order:
            start = time.perf_counter()
            with torch_threads(1):
                out[name] = fn()
            spent[name] = time.perf_counter() - start
        bad = {k: differing(v, runs) for k, v in out.items()}
        total_bad += sum(bad.values())
        line = (f"| {r} | {len(out['column'])} | {engine_kernel('cpu', r)} | {spent['cells']:.1f} s | "
                f"{spent['column']:.1f} s | {spent['cells'] / spent['column']:.2f} | {bad['cells']} / {bad['column']} |")
        lines.append(line)
        print(line, flush=True)
    if args.markdown:
        head = (f"Measured {dt.date.today()} on {platform.machine()} ({os.cpu_count()} cores), one thread, "
                f"torch {torch.__version__}; ratio: cell by cell over one call per column; the evidence config "
                f"({config.trials} teachers, d = {config.d}, K = {config.K}).\n\n")
        args.markdown.write_text(head + "\n".join(lines) + "\n")
    return 1 if total_bad else 0


if __name__ == "__main__":
    sys.exit(main())
