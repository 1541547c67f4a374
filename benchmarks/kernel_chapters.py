"""The engine's kernels on each archived chapter's own evidence units: speed and agreement.

For every archived chapter (or the ones named), a seeded sample of its evidence units is
re-executed twice, once with the torch kernel (``WT_KERNEL=torch``, which made the archives)
and once with the default (``WT_KERNEL=auto``: the fused kernel on the CPU), in alternating
order, one thread, in this process.  It prints per chapter:

* the time of the sampled units under each setting and their ratio;
* the chapter's regeneration time projected from it: the archived evidence run's computation
  time times the ratio, over two workers (the archive's own time was measured on a machine that
  was often running other work, so the projection is an order of magnitude, not a promise);
* agreement: every discrete field of every row (status, success, iteration counts, verdict
  inputs that are integers, booleans or strings) must be equal under both settings, and floats
  equal to a relative 1e-6; the count of fields that are not is printed, and the script exits 1
  if there is any.

Units are drawn with probability proportional to their archived time (so the sample reflects
where a regeneration spends its time), among units archived at under ``--max-unit-seconds``
(to bound this script's own time; the longest units are left out, which the output says).

Usage: python benchmarks/kernel_chapters.py [CHAPTER ...] [--units 3] [--max-unit-seconds 20]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy as np

from winning_ticket import chapters
from winning_ticket.algorithms.engine import torch_threads
from winning_ticket.experiments import archive
from winning_ticket.experiments.sweep import _run_unit, task_key

SKIP = {"task_key", "seed", "unit_seconds", "trial"}


def compare(a: list[dict], b: list[dict]) -> int:
    """Fields that differ between two runs of a unit (discrete exactly, floats to 1e-6)."""
    if len(a) != len(b):
        return max(len(a), len(b))
    bad = 0
    for ra, rb in zip(a, b):
        for k, va in ra.items():
            if k in SKIP:
                continue
            vb = rb.get(k)
            if isinstance(va, (float, np.floating)) or isinstance(vb, (float, np.floating)):
                if not np.allclose(va, vb, rtol=1e-6, atol=1e-12, equal_nan=True):
                    bad += 1
            elif isinstance(va, (list, tuple, np.ndarray)):
                x, y = np.asarray(va, dtype=float), np.asarray(vb, dtype=float)
                if x.shape != y.shape or not np.allclose(x, y, rtol=1e-6, atol=1e-12, equal_nan=True):
                    bad += 1
            elif va != vb:
                bad += 1
    return bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("chapters", nargs="*")
    ap.add_argument("--units", type=int, default=3, help="units per table")
    ap.add_argument("--max-unit-seconds", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    names = args.chapters or [n for n in chapters.NAMES if (archive.archive_dir(n) / "provenance.json").exists()]
    rng = np.random.default_rng(args.seed)
    total_bad = 0
    print("| chapter | units timed | torch kernel | default (auto) | ratio | archived computation | "
          "projected regeneration on 2 workers | fields that differ |")
    print("|---|---|---|---|---|---|---|---|")
    for name in names:
        spec = chapters.get(name)
        arch = archive.load(spec)
        prov, tables = arch.provenance, arch.result.tables()
        spent = {"torch": 0.0, "auto": 0.0}
        n_units = bad = left_out = 0
        for plan in spec.sweeps(arch.result.config):
            table = tables[plan.table]
            keyed = {task_key(t): t for t in plan.tasks}
            per = plan.trials_per_unit or plan.trials
            cost = table.groupby(["task_key", "trial"])["unit_seconds"].sum()
            units = {}
            for (k, t), sec in cost.items():
                lo = int(t) - int(t) % per
                units[(int(k), lo)] = units.get((int(k), lo), 0.0) + float(sec)
            small = {u: s for u, s in units.items() if s <= args.max_unit_seconds and u[0] in keyed}
            left_out += len(units) - len(small)
            if not small:
                continue
            keys = sorted(small)
            p = np.array([small[u] for u in keys]) + 1e-9
            pick = rng.choice(len(keys), size=min(args.units, len(keys)), replace=False, p=p / p.sum())
            for i in pick:
                k, lo = keys[i]
                group = list(range(lo, min(plan.trials, lo + per)))
                rows = {}
                order = ("torch", "auto") if n_units % 2 == 0 else ("auto", "torch")
                for setting in order:
                    os.environ["WT_KERNEL"] = setting
                    start = time.perf_counter()
                    with torch_threads(1):
                        rows[setting] = _run_unit(plan.fn, keyed[k], plan.seed, group, plan.seed_keys)
                    spent[setting] += time.perf_counter() - start
                bad += compare(rows["torch"], rows["auto"])
                n_units += 1
        os.environ.pop("WT_KERNEL", None)
        ratio = spent["auto"] / spent["torch"] if spent["torch"] else float("nan")
        compute = prov["compute_seconds"]
        note = f" ({left_out} longer units left out)" if left_out else ""
        print(f"| {name} | {n_units}{note} | {spent['torch']:.0f} s | {spent['auto']:.0f} s | {ratio:.2f} | "
              f"{compute / 60:.0f} min | {compute * ratio / 2 / 60:.0f} min | {bad} |", flush=True)
        total_bad += bad
    return 1 if total_bad else 0


if __name__ == "__main__":
    sys.exit(main())
