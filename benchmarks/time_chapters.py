"""Time the experiment behind each chapter at a profile and print its claims verdicts.

Usage: WT_PROFILE=paper python benchmarks/time_chapters.py [convergence ...] [--device cuda]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

from winning_ticket.chapters import convergence, greedy_pruning, imp_mnist, imp_synthetic, initialization, landscape, noise, samplecomplexity, strong_tickets
from winning_ticket.experiments.claims import verdict_lines
from winning_ticket.experiments.profiles import current_profile

CHAPTERS = {
    "convergence": (convergence.ConvergenceConfig.for_profile, convergence.run_convergence, convergence.check_claims),
    "landscape": (landscape.LandscapeConfig.for_profile, landscape.run_landscape, landscape.check_claims),
    "sample_complexity": (samplecomplexity.SampleComplexityConfig.for_profile, samplecomplexity.run_sample_complexity,
                          samplecomplexity.check_claims),
    "noise": (noise.NoiseConfig.for_profile, noise.run_noise, noise.check_claims),
    "initialization": (initialization.InitConfig.for_profile, initialization.run_initialization,
                       initialization.check_claims),
    "imp_synthetic": (imp_synthetic.IMPConfig.for_profile, imp_synthetic.run_imp_synthetic, imp_synthetic.check_claims),
    "imp_mnist": (imp_mnist.MNISTIMPConfig.for_profile, imp_mnist.run_imp_mnist, imp_mnist.check_claims),
    "greedy_pruning": (greedy_pruning.GreedyConfig.for_profile, greedy_pruning.run_greedy, greedy_pruning.check_claims),
    "strong_tickets": (strong_tickets.StrongConfig.for_profile, strong_tickets.run_strong_tickets,
                       strong_tickets.check_claims),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("chapters", nargs="*", help=f"some of {', '.join(CHAPTERS)} (default: all)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--trials", type=int, default=None, help="override the profile's trial count")
    args = ap.parse_args()
    unknown = set(args.chapters) - set(CHAPTERS)
    if unknown:
        ap.error(f"unknown chapter(s) {', '.join(sorted(unknown))}; choose from {', '.join(CHAPTERS)}")
    if args.device:
        os.environ["WT_DEVICE"] = args.device  # sweep tasks pick their device from here
    profile = current_profile()
    for name in args.chapters or list(CHAPTERS):
        make_config, run, check = CHAPTERS[name]
        start = time.perf_counter()
        config = make_config()
        if args.trials is not None:
            config = dataclasses.replace(config, trials=args.trials)
        result = run(config)
        seconds = time.perf_counter() - start
        flops = getattr(result, "flops", None)
        rate = f", {flops / seconds / 1e9:.1f} GFLOP/s" if flops else ""
        print(f"== {name} (profile {profile}, {config.trials} trials): {seconds:.1f} s, {len(result.runs)} runs{rate}",
              flush=True)
        print(verdict_lines(check(result)))


if __name__ == "__main__":
    main()
