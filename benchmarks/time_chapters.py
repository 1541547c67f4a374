"""Time the experiment behind each chapter at a profile and print its claims verdicts.

Usage: WT_PROFILE=paper python benchmarks/time_chapters.py [convergence ...] [--device cuda]
"""

from __future__ import annotations

import argparse
import time

from winning_ticket import convergence
from winning_ticket.claims import verdict_lines
from winning_ticket.profiles import current_profile

CHAPTERS = {
    "convergence": (convergence.ConvergenceConfig.for_profile, convergence.run_convergence, convergence.check_claims),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("chapters", nargs="*", default=list(CHAPTERS), choices=list(CHAPTERS))
    ap.add_argument("--device", default=None)
    args = ap.parse_args()
    profile = current_profile()
    for name in args.chapters:
        make_config, run, check = CHAPTERS[name]
        start = time.perf_counter()
        result = run(make_config(), device=args.device)
        seconds = time.perf_counter() - start
        print(f"== {name} (profile {profile}): {seconds:.1f} s, {len(result.runs)} runs,"
              f" {result.flops / seconds / 1e9:.1f} GFLOP/s")
        print(verdict_lines(check(result)))


if __name__ == "__main__":
    main()
