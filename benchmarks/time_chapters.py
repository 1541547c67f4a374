"""Time the experiment behind each chapter at a profile and print its claims verdicts.

Usage: WT_PROFILE=paper python benchmarks/time_chapters.py [convergence ...] [--device cuda]
"""

from __future__ import annotations

import argparse
import os
import time

from winning_ticket import chapters
from winning_ticket.experiments.claims import verdict_lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("chapters", nargs="*", help=f"some of {', '.join(chapters.NAMES)} (default: all)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--trials", type=int, default=None, help="override the profile's trial count")
    args = ap.parse_args()
    unknown = set(args.chapters) - set(chapters.NAMES)
    if unknown:
        ap.error(f"unknown chapter(s) {', '.join(sorted(unknown))}; choose from {', '.join(chapters.NAMES)}")
    if args.device:
        os.environ["WT_DEVICE"] = args.device  # sweep tasks pick their device from here
    for name in args.chapters or list(chapters.NAMES):
        spec = chapters.get(name)
        start = time.perf_counter()
        config = spec.config.for_profile()
        if args.trials is not None:
            config = config.replace(trials=args.trials, profile=config.profile)
        result = spec.run(config)
        seconds = time.perf_counter() - start
        flops = getattr(result, "flops", None)
        rate = f", {flops / seconds / 1e9:.1f} GFLOP/s" if flops else ""
        rows = sum(len(t) for t in result.tables().values())
        print(f"== {name} (profile {config.profile}, {config.trials} trials): {seconds:.1f} s, {rows} rows{rate}",
              flush=True)
        print(verdict_lines(spec.check_claims(result)))


if __name__ == "__main__":
    main()
