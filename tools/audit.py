"""Audit the evidence archive: re-execute a seeded sample of archived runs and compare exactly.

Usage: python tools/audit.py [--samples 10] [--record] [--recertify] [CHAPTER ...]
Fails (exit 1), naming the chapter, when a re-executed run differs from its archived row or
when the algorithm code is not the code that produced the archive.  With ``--record`` (``make
audit``) each chapter's report is stored as ``results/<chapter>/audit.json``, which the book's
status page shows.  With ``--recertify``, a chapter whose only problem is changed algorithm
code, and whose sampled runs the changed code re-executes bit for bit, takes the new code's
digest (the old one stays in its provenance record; see ``archive.recertify``).
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
    ap.add_argument("--record", action="store_true", help="store each report in results/<chapter>/audit.json")
    ap.add_argument("--recertify", action="store_true",
                    help="accept changed algorithm code for archives it re-executes bit for bit")
    args = ap.parse_args(argv)
    names = args.chapters or [n for n in chapters.NAMES if (archive.archive_dir(n) / "provenance.json").exists()]
    if not names:
        print("audit: the archive is empty; nothing to check")
        return 0
    failed = 0
    for name in names:
        spec = chapters.get(name)
        report = archive.audit(spec, samples=args.samples, seed=args.seed, quick=args.quick)
        print(report.line(), flush=True)
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
