"""Benchmark: the batched engine against the plain numpy reference on the Fig. 3 workload.

Workload: P problem instances at N = 3000, d = 300, K = 5, r = 100, each solved by AGD
(beta = 0.2) and GD (beta = 0) from the same start, for a fixed number of iterations
(tol = 0, so every run does the same work).  One iteration of one run costs about
4 N r K flops (two passes over the (N, r) inputs of each of the K neurons).

Prints the machine's float64 matrix-matrix peak, runs per second and GFLOP/s of each
variant, the ratio to the reference and the fraction of the peak.  Times are medians of
--repeats repetitions (machines are shared and noisy).  Not a test: run it by hand,
`make benchmark`, or on a GPU machine with --device cuda.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from winning_ticket.algorithms.agd import run_agd
from winning_ticket.algorithms.engine import run_agd_batched
from winning_ticket.algorithms.teacher_student import initial_point, make_problem, starts_along
from winning_ticket.experiments.seeding import seed_sequence

QUOTED_PEAK_F64 = 44.0  # GFLOP/s, float64 GEMM on the project's 2-core reference machine (issue #2)


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def gemm_peak(device: str, repeats: int, n: int = 2048) -> float:
    a = torch.randn(n, n, dtype=torch.float64, device=device)
    t = median_time(lambda: a @ a, repeats)
    return 2 * n**3 / t / 1e9


def read_bandwidth(device: str, repeats: int, n_bytes: int = 1 << 29) -> float:
    """GB/s of a streaming read (sum of a 512 MiB float64 tensor)."""
    x = torch.ones(n_bytes // 8, dtype=torch.float64, device=device)
    t = median_time(lambda: x.sum(), repeats)
    return n_bytes / t / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", type=int, default=16)
    ap.add_argument("--r", type=int, default=100)
    ap.add_argument("--iters", type=int, default=300, help="iterations per run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--gpu-batch", type=int, default=256, help="problems in the large-batch GPU variant")
    ap.add_argument("--skip-reference", action="store_true")
    ap.add_argument("--workload", choices=["fig3", "fig2"], default="fig3",
                    help="fig3: N=3000 d=300 K=5, AGD+GD per problem; fig2: N=3000 d=500 K=5, "
                         "5 lambdas x 2 step sizes (10 runs) per problem, as in the Landscape chapter")
    args = ap.parse_args()

    N, d, K, r, P, T = 3000, (300 if args.workload == "fig3" else 500), 5, args.r, args.problems, args.iters
    print(f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}")
    peak = gemm_peak(args.device, args.repeats)
    bw = read_bandwidth(args.device, args.repeats)
    print(f"float64 GEMM peak measured here: {peak:.1f} GFLOP/s (quoted for the 2-core CI machine: {QUOTED_PEAK_F64})")
    # One iteration reads each problem's inputs twice (8 bytes an entry) for 4 S flops an entry:
    # S/4 flop per byte of memory traffic when the data does not stay in cache.
    print(f"streaming read bandwidth: {bw:.1f} GB/s -> memory roofline {0.5 * bw:.1f} GFLOP/s for S = 2 runs "
          f"per problem, {1.0 * bw:.1f} for S = 4")

    def workload(n_problems: int, starts: int):
        probs = [make_problem(N, d, K, r, 0.0, seed_sequence(0, i)) for i in range(n_problems)]
        W0 = np.stack([[initial_point(p.w_star, 0.5, seed_sequence(1, i, s)) for s in range(starts) for _ in (0, 1)]
                       for i, p in enumerate(probs)])
        return probs, W0, np.array([0.2, 0.0] * starts)

    if args.workload == "fig2":
        lams, etas = (0.5, 1.0, 2.0, 4.0, 8.0), (0.5, 5.0)
        probs = [make_problem(N, d, K, r, 0.0, seed_sequence(0, i)) for i in range(P)]
        W0 = np.stack([starts_along(p.w_star, [lam for _ in etas for lam in lams], seed_sequence(1, i))
                       for i, p in enumerate(probs)])
        eta_cols = np.array([eta for eta in etas for _ in lams])
        S = W0.shape[1]
        print(f"Fig. 2 workload: {P} problems x {S} runs (5 lambdas x 2 step sizes), N={N} d={d} K={K} r={r}, "
              f"{T} iterations per run\n")
        flop_per_run = 4.0 * N * r * K * T
        ref_rate = None
        if not args.skip_reference:
            subs = [p.sub_inputs() for p in probs]

            def reference():
                for i, p in enumerate(probs):
                    for s in range(S):
                        run_agd(subs[i], p.y, p.w_star, W0[i, s], eta_cols[s], 0.2, max_iter=T, tol=0.0)

            t = median_time(reference, 1)
            ref_rate = P * S / t
            print(f"{'numpy reference, one run at a time':<48s} {ref_rate:9.2f} runs/s  "
                  f"{P * S * flop_per_run / t / 1e9:7.1f} GFLOP/s")
        t = median_time(lambda: run_agd_batched(probs, W0, eta_cols, 0.2, max_iter=T, tol=0.0, device=args.device,
                                                progress=False, record_history=False), args.repeats)
        gflops = P * S * flop_per_run / t / 1e9
        ratio = f"{P * S / t / ref_rate:7.1f}x" if ref_rate else "      -"
        print(f"{'engine, one problem shared by its 10 runs':<48s} {P * S / t:9.2f} runs/s  {gflops:7.1f} GFLOP/s  "
              f"{ratio}  {100 * gflops / peak:5.1f}% of peak  ({100 * gflops / QUOTED_PEAK_F64:.0f}% of "
              f"{QUOTED_PEAK_F64:.0f})")
        return

    print(f"workload: {P} problems x (AGD, GD), N={N} d={d} K={K} r={r}, {T} iterations per run\n")
    flop_per_run = 4.0 * N * r * K * T
    rows = []

    def report(name: str, runs: int, seconds: float, ref_rate: float | None) -> float:
        rate = runs / seconds
        gflops = runs * flop_per_run / seconds / 1e9
        ratio = f"{rate / ref_rate:7.1f}x" if ref_rate else "      -"
        rows.append(name)
        print(f"{name:<48s} {rate:9.2f} runs/s  {gflops:7.1f} GFLOP/s  {ratio}  {100 * gflops / peak:5.1f}% of peak"
              f"  ({100 * gflops / QUOTED_PEAK_F64:.0f}% of {QUOTED_PEAK_F64:.0f})")
        return rate

    probs, W0, betas = workload(P, 1)
    ref_rate = None
    if not args.skip_reference:
        subs = [p.sub_inputs() for p in probs]

        def reference():
            for i, p in enumerate(probs):
                for s, beta in enumerate(betas):
                    run_agd(subs[i], p.y, p.w_star, W0[i, s], 0.5, beta, max_iter=T, tol=0.0)

        ref_rate = report("numpy reference, one run at a time", 2 * P, median_time(reference, 1), None)

    def engine(problems, starts, **kw):
        return lambda: run_agd_batched(problems, starts, 0.5, betas_for(starts), max_iter=T, tol=0.0,
                                       device=args.device, progress=False, record_history=False, **kw)

    def betas_for(W):
        return np.array([0.2, 0.0] * (W.shape[1] // 2))

    report("engine, AGD+GD share each problem (default)", 2 * P, median_time(engine(probs, W0), args.repeats), ref_rate)
    report("engine, all problems in one chunk", 2 * P,
           median_time(engine(probs, W0, max_chunk_bytes=1 << 40), args.repeats), ref_rate)
    probs2, W02, _ = workload(P // 2, 2)
    report("engine, 2 starts x (AGD+GD) share each problem", 2 * P, median_time(engine(probs2, W02), args.repeats), ref_rate)
    if args.device.startswith("cuda"):
        big, Wb, _ = workload(args.gpu_batch, 1)
        report(f"engine, {args.gpu_batch} problems x (AGD+GD) in one batch", 2 * args.gpu_batch,
               median_time(engine(big, Wb), args.repeats), ref_rate)


if __name__ == "__main__":
    main()
