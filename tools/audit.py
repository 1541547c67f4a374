"""Audit the evidence archive: re-execute a seeded sample of archived runs and compare exactly.

Usage: python tools/audit.py [--samples 10] [--record] [--recertify] [CHAPTER ...]
Fails (exit 1), naming the chapter, when a re-executed run differs from its archived row or
when the algorithm code is not the code that produced the archive.  With ``--record`` (``make
audit``) each chapter's report is stored as ``results/<chapter>/audit.json``, which the book's
status page shows.  With ``--recertify``, a chapter whose only problem is changed algorithm
code, and whose sampled runs the changed code re-executes bit for bit, takes the new code's
digest (the old one stays in its provenance record; see ``archive.recertify``).

With ``--precision mixed`` it is the precision check instead: the same units re-executed with the
fused kernel in mixed precision (float32 gradients until a run nears the end, float64 to finish),
every run's verdict (status, success, flags) compared with the float64 archive, and the other
numeric columns' largest relative differences reported; ``--record`` stores it as
``results/<chapter>/precision_check.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import os

# Archives are made and audited with one BLAS/OpenMP thread per process, as with one torch thread:
# LAPACK results (the tensor initialization's eigen-decompositions) differ bitwise with the count.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

from winning_ticket import chapters
from winning_ticket.experiments import archive


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("chapters", nargs="*", help="default: every chapter with an archived run")
    ap.add_argument("--samples", type=int, default=10, help="archived units re-executed per chapter (at least one per task)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="the cheapest archived units, no minimum per task (make test)")
    ap.add_argument("--record", action="store_true", help="store each report in results/<chapter>/audit.json "
                    "(with --precision: precision_check.json)")
    ap.add_argument("--recertify", action="store_true",
                    help="accept changed algorithm code for archives it re-executes bit for bit")
    ap.add_argument("--precision", choices=["mixed"], default=None,
                    help="the precision check: re-execute in mixed precision and compare the verdicts")
    args = ap.parse_args(argv)
    if args.precision and args.recertify:
        ap.error("--recertify is for the audit proper, not with --precision")
    names = args.chapters or [n for n in chapters.NAMES if (archive.archive_dir(n) / "provenance.json").exists()]
    if args.precision and not args.chapters:  # the chapters whose runs use the engine
        names = [n for n in names if "engine" in archive.chapter_algorithms(chapters.get(n))]
    if not names:
        print("audit: the archive is empty; nothing to check")
        return 0
    failed = 0
    for name in names:
        spec = chapters.get(name)
        if args.precision and "engine" not in archive.chapter_algorithms(spec):
            print(f"{name}: skipped: its runs do not use the engine, so its precision is not an option", flush=True)
            continue
        report = archive.audit(spec, samples=args.samples, seed=args.seed, quick=args.quick, precision=args.precision)
        print(report.line(), flush=True)
        if report.drift:
            print("  largest relative differences from the archive: "
                  + (", ".join(f"{c} {v:.1e}" for c, v in sorted(report.drift.items()) if v > 0) or "none"), flush=True)
        if args.recertify and report.algorithm_changed:
            try:
                archive.recertify(spec, report, samples=args.samples, quick=args.quick)
            except ValueError as exc:
                print(f"  not recertified: {exc}", flush=True)
            else:
                print(f"  recertified: {report.checked} units re-executed bit for bit by today's code", flush=True)
                report = dataclasses.replace(report, mismatches=[], digest_ok=True, algorithm_changed=False)
        if args.record:
            archive.record_audit(report, samples=args.samples, quick=args.quick)
        failed += not report.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
