"""Benchmark: the engine's kernels against plain numpy loops, side by side, with the machine's limits.

Three workloads from the book's evidence runs:

* ``fig3``: 16 problems at N = 3000, d = 300, K = 5, r = 100, each solved by AGD (beta = 0.2)
  and GD from one start (S = 2 runs share a problem), 300 iterations (tol = 0: every run does
  the same work);
* ``landscape``: 2 problems at N = 3000, d = 500, K = 5, r = 256, each shared by 10 runs
  (5 values of lambda x 2 step sizes, as in the Landscape chapter), 100 iterations;
* ``short``: short rows, the Noise chapter's shape: 16 problems at N = 1000, d = 300, K = 10,
  r = 10, AGD and GD from one start each, 300 iterations (not one of the performance issue's
  goals; it shows the layout the engine takes for r up to ``kernels.BLOCKS_MAX_R``).

One iteration of one run is 4 N r K flops (forward and gradient products).  Variants:

* ``naive einsum loop``: one run at a time, forward and gradient as numpy ``einsum``, as a
  straightforward reproduction writes them;
* ``numpy reference``: :func:`winning_ticket.algorithms.agd.run_agd` (einsum forward, BLAS gradient);
* ``engine, torch kernel`` with the 48 MiB chunk of the archives and with 16 MiB (the default before
  this round's 8 MiB; the fused variants run with the engine's default chunk);
* ``engine, fused kernel`` (the CPU default, :mod:`winning_ticket.algorithms.kernels`) in its row
  layout with the one-sample loop (the same sums), with blocks of eight samples taking the runs
  one at a time, and with eight samples and two runs at a time; and in its sample-block layout
  (samples along the vector lanes).  The engine takes the sample blocks for ``r`` up to
  ``kernels.BLOCKS_MAX_R`` and the rows above; the row marked "CPU default" is the one it takes.
  The float64 fused variants run many iterations per call of the compiled loop
  (``kernels._iterate``); the one-sample and one-run rows, which swap the gradient kernel, and the
  row "one Python call per iteration" (the engine's own layout and kernel) call the gradient and
  the step from Python once per iteration (``kernels.ITERATIONS_PER_CALL = 0``), which shows what
  the compiled loop gains;
* ``engine, fused kernel ..., mixed precision``: the engine's option ``precision="mixed"``
  (float32 gradients until a run's error is below 1e-2 or its steps stall, float64 to finish;
  its iterates are not float64's, and its verdicts are checked by ``tools/audit.py --precision mixed``).

Every variant runs ``--repeats`` times (the numpy reference: up to 3), interleaved (variant A, B, C,
then A, B, C again), and the table quotes medians, so a noisy neighbour slows all of them alike.
The ratio to the naive loop is given twice: the ratio of the medians, and the median and range of
the per-repetition ratios (the naive loop's time over the variant's in the same round), a paired
statistic whose range shows how far one run of the benchmark can move it.
The one-thread float64 matrix product (2048^3) is one more interleaved variant of each workload,
so the "of GEMM" column compares rates measured side by side; the streaming read bandwidth is
measured before the workloads; the memory roofline of an iteration that reads each problem's inputs
once (fused) or twice (torch), and the iterates' largest difference between variants, are
printed with them.

Under each workload's table, the fused gradient kernel by itself on one problem of the
workload's shape, timed in the same interleaved loop: on the workload's first problem as the engine
lays it out (the sample blocks hold each input feature once, ``kernels.feature_blocks``), and with
random inputs in the per-neuron layout (one row per neuron input, nothing shared): at the
workload's N, at N = 200 (the inputs fit in the L2 cache, so memory is out of the way: the ceiling of the
kernel's arithmetic), with 64 MB of inputs (they come from memory), and in float32 throughout
(the precision the performance issue proposed; measured, not an engine option).  ``benchmarks/ab_kernels.py`` compares the
kernel with the one of any earlier commit.

``--markdown FILE`` writes the tables as Markdown; ``--update-readme`` replaces the README's
block between ``<!-- bench:begin -->`` and ``<!-- bench:end -->`` with them.  Not a test: run
it by hand or with ``make benchmark`` (one thread; the figures in the README are from it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from winning_ticket.algorithms import kernels
from winning_ticket.algorithms.agd import run_agd
from winning_ticket.algorithms.engine import run_agd_batched
from winning_ticket.algorithms.teacher_student import initial_point, make_problem, starts_along
from winning_ticket.experiments.seeding import seed_sequence

README = Path(__file__).resolve().parents[1] / "README.md"


def cache_sizes() -> str:
    """The L2 and L3 sizes as lscpu reports them (Linux), else an empty string."""
    found = {}
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            level, size, kind = ((index / f).read_text().strip() for f in ("level", "size", "type"))
        except OSError:
            continue
        if kind != "Instruction":
            found[f"L{level}"] = size
    return ", ".join(f"{k} {v}" for k, v in sorted(found.items()))


def gemm_rate(repeats: int, n: int = 2048) -> float:
    a = torch.randn(n, n, dtype=torch.float64)
    a @ a
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times) / 1e9


def read_bandwidth(repeats: int, n_bytes: int = 1 << 29) -> float:
    x = torch.ones(n_bytes // 8, dtype=torch.float64)
    x.sum()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        x.sum()
        times.append(time.perf_counter() - t)
    return n_bytes / statistics.median(times) / 1e9


def naive_einsum_agd(Xs, y, w_star, W0, eta, beta, T):
    """AGD as a straightforward reproduction writes it: einsum forward and gradient, one run."""
    K, N, _ = Xs.shape
    W, W_prev = W0.copy(), W0.copy()
    for _ in range(T):
        Z = np.einsum("knr,rk->nk", Xs, W)
        e = np.maximum(Z, 0).sum(axis=1) / K - y
        G = np.einsum("knr,nk->rk", Xs, e[:, None] * (Z > 0)) / (N * K)
        W, W_prev = W - eta * G + beta * (W - W_prev), W
        np.linalg.norm(W - w_star)  # the error the loop records
    return W


def make_workload(name: str, problems: int | None):
    N = 3000
    if name == "short":
        N, d, K, r, P = 1000, 300, 10, 10, problems or 16
        probs = [make_problem(N, d, K, r, 0.0, seed_sequence(0, i)) for i in range(P)]
        W0 = np.stack([[initial_point(p.w_star, 0.5, seed_sequence(1, i))] * 2 for i, p in enumerate(probs)])
        return probs, W0, np.array([0.5, 0.5]), np.array([0.2, 0.0]), 300
    if name == "fig3":
        d, K, r, P = 300, 5, 100, problems or 16
        probs = [make_problem(N, d, K, r, 0.0, seed_sequence(0, i)) for i in range(P)]
        W0 = np.stack([[initial_point(p.w_star, 0.5, seed_sequence(1, i))] * 2 for i, p in enumerate(probs)])
        return probs, W0, np.array([0.5, 0.5]), np.array([0.2, 0.0]), 300
    d, K, r, P = 500, 5, 256, problems or 2
    lams, etas = (0.5, 1.0, 2.0, 4.0, 8.0), (0.5, 5.0)
    probs = [make_problem(N, d, K, r, 0.0, seed_sequence(0, i)) for i in range(P)]
    W0 = np.stack([starts_along(p.w_star, [lam for _ in etas for lam in lams], seed_sequence(1, i))
                   for i, p in enumerate(probs)])
    return probs, W0, np.array([eta for eta in etas for _ in lams]), np.full(10, 0.2), 100


def run_workload(name: str, problems: int | None, repeats: int, skip_naive: bool, bw: float, device: str = "cpu"):
    probs, W0, etas, betas, T = make_workload(name, problems)
    p0 = probs[0]
    N, K, r, P, S = p0.N, p0.K, p0.r, len(probs), W0.shape[1]
    flop = 4.0 * N * r * K * T * P * S
    subs = [p.sub_inputs() for p in probs]
    out = {}

    def engine(kernel, chunk, variant=None, precision="float64"):
        def go():
            saved, saved_max_r = kernels._compiled.get("gradient"), kernels.BLOCKS_MAX_R
            saved_per_call = kernels.ITERATIONS_PER_CALL
            if variant == "blocks":  # the sample-block layout at any r
                kernels.BLOCKS_MAX_R = 1 << 30
            elif variant in ("rows", "one-sample", "one-run"):  # the row layout at any r
                kernels.BLOCKS_MAX_R = 0
            if variant in ("one-sample", "one-run", "per-iteration"):  # one Python call per iteration (the
                kernels.ITERATIONS_PER_CALL = 0  # compiled loop calls the engine's own kernel only)
            if variant == "one-sample":  # the plain loop (the same sums)
                kernels._compiled["gradient"] = kernels.compiled("reference")
            elif variant == "one-run":  # eight samples, runs one at a time: what pairing the runs gains
                kernels._compiled["gradient"] = lambda XN, y, W, n, G: saved(XN, y, W, n, G, False)
            try:
                res = run_agd_batched(probs, W0, etas, betas, max_iter=T, tol=0.0, device=device, progress=False,
                                      record_history=False, kernel=kernel, max_chunk_bytes=chunk, precision=precision)
            finally:
                kernels._compiled["gradient"], kernels.BLOCKS_MAX_R = saved, saved_max_r
                kernels.ITERATIONS_PER_CALL = saved_per_call
            out[(kernel + (f" {variant}" if variant else "") + (" mixed" if precision == "mixed" else ""), chunk)] = res.W
        return go

    gemm_a = torch.randn(2048, 2048, dtype=torch.float64)

    def matrix_product():
        gemm_a @ gemm_a

    def reference():
        out["reference"] = np.stack([[run_agd(subs[i], p.y, p.w_star, W0[i, s], etas[s], betas[s], max_iter=T,
                                              tol=0.0).W for s in range(S)] for i, p in enumerate(probs)])

    def naive():
        out["naive"] = np.stack([[naive_einsum_agd(subs[i], p.y, p.w_star, W0[i, s], etas[s], betas[s], T)
                                  for s in range(S)] for i, p in enumerate(probs)])

    variants = []
    loops = min(repeats, 3)
    if device != "cpu":
        variants = [(f"engine, torch kernel on {device}", engine("torch", None), repeats)]
    elif not skip_naive:
        variants += [("naive einsum loop, one run at a time", naive, repeats),  # every repetition: the ratios pair with it
                     ("numpy reference (`run_agd`), one run at a time", reference, loops)]
    if device == "cpu":
        variants += [("engine, torch kernel, 48 MiB chunks (before)", engine("torch", 48 << 20), repeats),
                     ("engine, torch kernel, 16 MiB chunks", engine("torch", 16 << 20), repeats)]
    if device == "cpu" and kernels.available():
        kernels.compiled("gradient")
        default = " (CPU default)"
        rows, blocks = (default, "") if kernels.layout_for(r) == "rows" else ("", default)
        variants += [("engine, fused kernel, rows, one sample at a time", engine("fused", None, "one-sample"),
                      repeats),
                     ("engine, fused kernel, rows, eight samples, runs one at a time",
                      engine("fused", None, "one-run"), repeats),
                     ("engine, fused kernel, rows, eight samples, runs two at a time" + rows,
                      engine("fused", None, "rows"), repeats),
                     ("engine, fused kernel, sample blocks (samples along the vector lanes)" + blocks,
                      engine("fused", None, "blocks"), repeats),
                     ("engine, fused kernel as the engine lays it out, one Python call per iteration (before the "
                      "compiled loop)", engine("fused", None, "per-iteration"), repeats),
                     ("engine, fused kernel as the engine lays it out, mixed precision (float32 gradients until a "
                      "run nears the end; other iterates)", engine("fused", None, precision="mixed"), repeats)]
    alone = kernel_cases(p0, S) if device == "cpu" and kernels.available() else []
    gemm_label = "one-thread float64 matrix product, 2048^3"
    extra = [(label, fn, repeats) for label, fn, _ in alone] + [(gemm_label, matrix_product, repeats)]
    n_engine = len(variants)
    variants += extra
    for _, fn, _ in variants:  # warm-up (numba compilation, caches)
        if fn not in (naive, reference):
            fn()
    print(f"{name}: {len(variants)} variants x {repeats} interleaved repetitions", flush=True)
    times = {label: [] for label, _, _ in variants}
    for rep in range(repeats):
        for label, fn, reps in variants:
            if rep < reps:
                t = time.perf_counter()
                fn()
                times[label].append(time.perf_counter() - t)
    gemm = 2 * 2048**3 / statistics.median(times.pop(gemm_label)) / 1e9  # measured beside the variants
    alone_times = {label: times.pop(label) for label, _, _ in alone}
    del variants[n_engine:]
    base_label = variants[0][0]
    base = statistics.median(times[base_label])
    torch_w = out[("torch", 16 << 20 if device == "cpu" else None)]
    diffs = {k: float(np.max(np.abs(v - torch_w))) for k, v in out.items() if not (isinstance(k, tuple) and k[0] == "torch")}
    reads = 1 if kernels.available() else 2
    roof = S / 2 * bw if reads == 1 else S / 4 * bw
    title = (f"{name}: {P} problems x {S} runs sharing each, N = {N}, d = {p0.d}, K = {K}, r = {r}, {T} iterations; "
             f"{flop / 1e9:.1f} GFLOP")
    lines = [f"| variant ({name}) | runs/s | GFLOP/s | vs {'naive' if not skip_naive else 'first'} | "
             f"per-repetition ratio: median (range) | of one-thread GEMM ({gemm:.1f} GFLOP/s, interleaved) |",
             "|---|---|---|---|---|---|"]
    for label, _, _ in variants:
        t = statistics.median(times[label])
        paired = paired_ratios(times[base_label], times[label])
        spread = f"{statistics.median(paired):.1f}x ({min(paired):.1f}-{max(paired):.1f})" if len(paired) > 1 else "-"
        lines.append(f"| {label} | {P * S / t:.2f} | {flop / t / 1e9:.1f} | {base / t:.1f}x | {spread} | "
                     f"{100 * flop / t / 1e9 / gemm:.0f}% |")
    notes = (f"Largest difference of the final iterates from the torch kernel's: "
             + ", ".join(f"{k if isinstance(k, str) else k[0]} {v:.1e}" for k, v in diffs.items())
             + f". Memory roofline of the fused kernel (one read of the inputs per iteration, S = {S}): "
             f"{roof:.0f} GFLOP/s; of the torch kernel (two reads): {S / 4 * bw:.0f} GFLOP/s.")
    if alone:
        naive_label = "naive einsum loop, one run at a time"
        naive_rate = flop / statistics.median(times[naive_label]) / 1e9 if naive_label in times else None
        lines += ["", "| fused gradient kernel alone, one problem (interleaved with the rows above) | GFLOP/s | "
                  "vs the naive loop's whole iterations | of one-thread GEMM |", "|---|---|---|---|"]
        for label, _, case_flop in alone:
            rate = case_flop / statistics.median(alone_times[label]) / 1e9
            vs = f"{rate / naive_rate:.1f}x" if naive_rate else "-"
            lines.append(f"| {label} | {rate:.1f} | {vs} | {100 * rate / gemm:.0f}% |")
    return title, lines, notes


def paired_ratios(base: list[float], variant: list[float]) -> list[float]:
    """``base[i] / variant[i]`` for each repetition ``i`` that timed both: the two ran back to back in
    the same round of the interleaved loop, so a slow spell of the machine slows both and cancels
    in the ratio (the spread of these ratios is the measurement's own spread)."""
    return [b / v for b, v in zip(base, variant)]


def kernel_cases(p0, S: int) -> list[tuple[str, object, float]]:
    """The fused gradient kernel by itself on one problem of the workload's shape, in the layout the
    engine takes for this ``r``, as ``(label, function, flop per call)``: float64 at the workload's N
    on the workload's first problem as the engine lays it out (for the sample blocks: each feature
    once, ``kernels.feature_blocks``), and, with random inputs in the per-neuron layout (one row per
    neuron input, ``kernels.to_blocks``; no feature shared), float64 at the workload's N, at N = 200
    (the inputs fit in the L2 cache: the kernel's arithmetic ceiling) and at an N whose inputs take
    64 MB (twice the benchmark machine's L3 cache: they come from memory), and float32 throughout
    at the workload's N (inputs, weights, labels, products and running sums in float32: the kernels
    compile a float32 version for float32 arrays; a measurement only, not an engine option).  A call
    runs the kernel on at least 60,000 samples in all.  The engine's own call is used (``pair_runs``
    left out)."""
    N, K, r = p0.N, p0.K, p0.r
    rng = np.random.default_rng(0)
    layout = kernels.layout_for(r)
    fn = kernels.compiled("blocks" if layout == "blocks" else "gradient")
    n_memory = -(-(64 << 20) // (8 * K * r))
    cases = []

    def add(label, inputs, W, n, dtype):
        nv, G, inner = np.array([n]), np.empty(W.shape, dtype), max(1, 60000 // n)

        def call(inputs=inputs, W=W, nv=nv, G=G, inner=inner):
            for _ in range(inner):
                fn(*inputs, W, nv, G)
        cases.append((f"{layout}: {label}", call, 4.0 * n * K * r * S * inner))

    W = rng.standard_normal((1, K, S, r)) / np.sqrt(r)
    if layout == "blocks":
        XF, rows, yF = kernels.feature_blocks([p0.X], [p0.omega], [p0.y])
        add(f"float64, N = {N}, the workload's problem as the engine lays it out ({XF.shape[2]} feature rows "
            f"for {K * r} neuron inputs; {XF.nbytes / 2**20:.0f} MB)", (XF, rows, yF), W, N, np.float64)
    else:
        add(f"float64, N = {N}, the workload's problem ({8 * N * K * r / 2**20:.0f} MB)",
            (np.ascontiguousarray(p0.X[:, p0.omega][None]), p0.y[None]), W, N, np.float64)
    shapes = [(f"float64, N = {N}, random inputs, one row per neuron input ({8 * N * K * r / 2**20:.0f} MB)", N, np.float64),
              ("float64, N = 200 (inputs fit in the L2 cache)", 200, np.float64),
              (f"float64, N = {n_memory} (inputs 64 MB, from memory)", n_memory, np.float64),
              (f"float32 throughout, N = {N} (measurement only)", N, np.float32)]
    for label, n, dtype in shapes:
        XN = rng.standard_normal((1, n, K, r)).astype(dtype)
        Wd = (rng.standard_normal((1, K, S, r)) / np.sqrt(r)).astype(dtype)
        y = np.abs(rng.standard_normal((1, n))).astype(dtype)
        add(label, kernels.to_blocks(XN, y) if layout == "blocks" else (XN, y), Wd, n, dtype)
    return cases


def update_readme(block: str, text: str) -> None:
    """Replace the README's lines between ``<!-- block:begin -->`` and ``<!-- block:end -->`` with ``text``."""
    readme = README.read_text()
    pattern = re.compile(rf"(<!-- {block}:begin -->\n).*?(<!-- {block}:end -->)", re.S)
    if not pattern.search(readme):
        raise SystemExit(f"README.md has no <!-- {block}:begin --> ... <!-- {block}:end --> block")
    README.write_text(pattern.sub(lambda m: m.group(1) + text + m.group(2), readme))
    print("updated README.md")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", choices=["fig3", "landscape", "short", "all"], default="all")
    ap.add_argument("--problems", type=int, default=None, help="problems per workload (default 16, 2 and 16)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--skip-naive", "--skip-reference", action="store_true",
                    help="leave out the two one-run-at-a-time numpy loops")
    ap.add_argument("--device", default="cpu", help="cpu (all variants) or cuda (the torch kernel only)")
    ap.add_argument("--markdown", type=Path, default=None, help="write the tables to this file")
    ap.add_argument("--update-readme", action="store_true", help="replace the README's benchmark block")
    args = ap.parse_args()
    if args.repeats < 1:
        ap.error(f"--repeats = {args.repeats}; allowed: 1 or more")
    torch.set_num_threads(1)
    threads = {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    if any(v != "1" for v in threads.values()):
        print("note: set OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 for one-thread numpy loops (make benchmark does)")
    gemm, bw = gemm_rate(args.repeats), read_bandwidth(args.repeats)  # gemm: before the workloads, for the header
    head = [f"Measured {dt.date.today().isoformat()} on {platform.processor() or platform.machine()} "
            f"({os.cpu_count()} cores; {cache_sizes() or 'cache sizes unknown'}), one thread, float64, torch "
            f"{torch.__version__}; medians of {args.repeats} interleaved repetitions (the numpy reference: "
            f"{min(args.repeats, 3)}); the ratios to the naive loop are the ratio of the medians and, per repetition, "
            f"the naive loop's time over the variant's in the same round (median and range). One-thread float64 matrix product (2048^3) before the workloads: {gemm:.1f} "
            f"GFLOP/s (each table's GEMM column uses the product interleaved with its variants); streaming read: "
            f"{bw:.1f} GB/s."]
    print(head[0])
    blocks = []
    for name in (["fig3", "landscape", "short"] if args.workload == "all" else [args.workload]):
        title, lines, notes = run_workload(name, args.problems, args.repeats, args.skip_naive, bw, args.device)
        print("\n" + title)
        print("\n".join(lines))
        print(notes)
        blocks += ["", f"*{title}*", "", *lines, "", notes]
    text = "\n".join(head + blocks) + "\n"
    if args.markdown:
        args.markdown.write_text(text)
    if args.update_readme:
        update_readme("bench", text)


if __name__ == "__main__":
    main()
