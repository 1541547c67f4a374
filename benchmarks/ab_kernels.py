"""The fused gradient kernel against the one of an earlier commit, side by side, kernel alone.

The earlier ``src/winning_ticket/algorithms/kernels.py`` is read with ``git show REV:...`` into a
temporary directory and imported under another name, so both kernels run in this process, one
thread, on the same arrays.  For each shape ``(N, K, r, S)`` (one problem; the defaults are the
two benchmark workloads and shapes of the chapters' evidence grids) the two kernels, each in the
layout its own engine takes for the shape's r, run alternately, ``--repeats`` times each, and the table gives the medians, their ratio and the
largest difference of each from the one-sample reference loop, relative to the gradient's
largest entry.  Not a test: run it by hand; ``--update-readme`` replaces the README's block
between ``<!-- ab:begin -->`` and ``<!-- ab:end -->`` with the table.

Usage: python benchmarks/ab_kernels.py [--rev 166a7ea] [--repeats 9] [--shapes 3000,5,100,2 ...] [--update-readme]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy as np

from winning_ticket.algorithms import kernels

ROOT = Path(__file__).resolve().parents[1]
KERNELS = "src/winning_ticket/algorithms/kernels.py"
SHAPES = ((3000, 5, 100, 2), (3000, 5, 256, 10), (500, 5, 100, 2), (3000, 5, 80, 2), (3000, 5, 120, 2),
          (2000, 5, 40, 6),
          (3000, 5, 64, 2), (3000, 5, 32, 2), (3000, 5, 24, 2), (3000, 5, 30, 3), (3000, 5, 20, 4),
          (3000, 10, 16, 2), (1000, 10, 10, 2), (1000, 10, 5, 2))


def earlier_kernel(rev: str, where: Path):
    """The module ``kernels.py`` as it was at commit ``rev``."""
    try:
        source = subprocess.run(["git", "show", f"{rev}:{KERNELS}"], cwd=ROOT, check=True, capture_output=True,
                                text=True).stdout
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"--rev {rev}: git cannot show {KERNELS} there ({exc.stderr.strip()})") from exc
    path = where / "kernels_earlier.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("kernels_earlier", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compare(shape, old, reference, repeats: int, seed: int = 0) -> str:
    """One table row: the earlier kernel against today's, each in the layout its own engine takes for
    this ``r`` and with its own sample blocks (``layout_for`` and ``to_blocks`` of each version; a
    version without them has only the row layout).  The inputs are random per-neuron rows, so no
    feature is shared: today's engine also stores a feature several neurons read once
    (``kernels.feature_blocks``), which this comparison leaves out (``bench_engine.py`` measures it)."""
    N, K, r, S = shape
    rng = np.random.default_rng(seed)
    XN = rng.standard_normal((1, N, K, r))
    y = np.abs(rng.standard_normal((1, N)))
    W = rng.standard_normal((1, K, S, r)) / np.sqrt(r)
    n = np.array([N])
    inner = max(1, 60000 // N)
    ref = reference(XN, y, W, n, np.empty(W.shape))
    outs, fns, inputs, layouts = {}, {}, {}, {}
    for k, module in (("earlier", old), ("now", kernels)):
        layout = module.layout_for(r) if hasattr(module, "layout_for") else "rows"
        layouts[k] = layout
        inputs[k] = module.to_blocks(XN, y) if layout == "blocks" else (XN, y)
        fns[k] = module.compiled("blocks" if layout == "blocks" else "gradient")
        outs[k] = np.empty(W.shape)
    for k, fn in fns.items():
        fn(*inputs[k], W, n, outs[k])  # compile and warm
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            for _ in range(inner):
                fn(*inputs[k], W, n, outs[k])
            times[k].append((time.perf_counter() - t) / inner)
    flop = 4.0 * N * K * r * S
    med = {k: statistics.median(v) for k, v in times.items()}
    diff = {k: float(np.max(np.abs(outs[k] - ref)) / np.max(np.abs(ref))) for k in fns}
    return (f"| {N}, {K}, {r}, {S} | {layouts['earlier']} | {layouts['now']} | {flop / med['earlier'] / 1e9:.1f} | {flop / med['now'] / 1e9:.1f} | "
            f"{med['earlier'] / med['now']:.2f}x | {diff['earlier']:.0e} | {diff['now']:.0e} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rev", default="166a7ea", help="the earlier commit (default: the previous round's kernels, "
                                                      "sample blocks of 256 for r <= 64)")
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--shapes", nargs="*", default=None, help="N,K,r,S of one problem (default: a built-in list)")
    ap.add_argument("--update-readme", action="store_true", help="replace the README's ab block with the table")
    args = ap.parse_args()
    if args.repeats < 1:
        ap.error(f"--repeats = {args.repeats}; allowed: 1 or more")
    shapes = SHAPES
    if args.shapes:
        try:
            shapes = [tuple(int(v) for v in s.split(",")) for s in args.shapes]
        except ValueError:
            ap.error("--shapes: each shape is N,K,r,S with four positive integers")
        if any(len(s) != 4 or min(s) < 1 for s in shapes):
            ap.error("--shapes: each shape is N,K,r,S with four positive integers")
    reference = kernels.compiled("reference")
    lines = [f"Kernel alone, one problem, one thread, medians of {args.repeats} alternating repetitions; "
             f"earlier = {args.rev}, now = the working tree.", "",
             "| N, K, r, S | earlier layout | now's layout | earlier GFLOP/s | now GFLOP/s | now vs earlier | "
             "earlier vs reference | now vs reference |", "|---|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        old = earlier_kernel(args.rev, Path(tmp))
        for shape in shapes:
            lines.append(compare(shape, old, reference, args.repeats))
            print(lines[-1], flush=True)
    if args.update_readme:
        from bench_engine import update_readme  # benchmarks/ is on the path when this runs as a script

        update_readme("ab", "\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
