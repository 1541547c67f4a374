"""Run a chapter's evidence run into the archive (results/<chapter>/), resumably.

Usage: python tools/reproduce.py CHAPTER [--profile evidence] [--workers 2] [--cache-dir DIR]
       python tools/reproduce.py --all

Units of work are written to the cache directory as they finish (default .wt-cache/reproduce),
so a killed run resumes where it stopped when started again with the same arguments.  With
--workers N > 1 the units run in N processes (one engine thread each); --dask ADDRESS sends
them to a Dask scheduler instead.  A progress bar shows the units done and the time left.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import os

# Archives are made and audited with one BLAS/OpenMP thread per process, as with one torch thread:
# LAPACK results (the tensor initialization's eigen-decompositions) differ bitwise with the count.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

from winning_ticket import chapters
from winning_ticket.experiments import archive


def _code_state_now(name: str) -> dict:
    """The code state of the files as they are now, read by a fresh interpreter: this process's
    functions keep the line numbers of the files it imported, so re-reading an edited file through
    them would digest the wrong lines (an edit above a task function looked like a change to it)."""
    import json
    import subprocess

    script = ("import json, sys; from winning_ticket import chapters; from winning_ticket.experiments import archive; "
              "print(json.dumps(archive.code_state(chapters.get(sys.argv[1]))))")
    out = subprocess.run([sys.executable, "-c", script, name], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def reproduce(name: str, profile: str, workers: int, cache_dir: Path, dask: str | None = None) -> Path:
    spec = chapters.get(name)
    if spec.sweeps is None or not archive.archivable(spec):
        raise SystemExit(f"chapter {name!r} does not have an archived evidence run yet (its issue converts it)")
    config = spec.config.for_profile(profile)
    code = archive.code_state(spec)  # the code this run executes
    executor, own = None, None
    if dask:
        from distributed import Client

        own = Client(dask)
        executor = own.get_executor()
    elif workers > 1:
        own = executor = ProcessPoolExecutor(workers)
    try:
        result = spec.run(config, executor=executor, cache_dir=cache_dir, progress=True)
    finally:
        if own is not None:
            own.close() if dask else own.shutdown()
    now = _code_state_now(name)
    if (now["source_digest"], now["task_digests"]) != (code["source_digest"], code["task_digests"]):
        raise SystemExit(f"{name}: the algorithm or task code changed while the run was going; not archived (rerun it)")
    path = archive.save(spec, result, workers="dask" if dask else workers, code=code)
    print(f"{name}: archived {sum(len(t) for t in result.tables().values())} rows in {path} "
          f"({result.seconds / 60:.1f} min)", flush=True)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("chapter", nargs="?", help=f"one of: {', '.join(chapters.NAMES)}")
    ap.add_argument("--all", action="store_true", help="every chapter that has an evidence run")
    ap.add_argument("--profile", default="evidence")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--dask", default=None, help="address of a Dask scheduler")
    ap.add_argument("--cache-dir", type=Path, default=archive.REPO_ROOT / ".wt-cache" / "reproduce")
    args = ap.parse_args(argv)
    if args.workers < 1:
        ap.error(f"--workers = {args.workers}; allowed: 1 or more")
    names = [n for n in chapters.NAMES if chapters.get(n).sweeps is not None] if args.all else [args.chapter]
    if names == [None]:
        ap.error("name a chapter or pass --all")
    for name in names:
        if name not in chapters.NAMES:
            ap.error(f"chapter = {name!r}; allowed: {', '.join(chapters.NAMES)}")
        reproduce(name, args.profile, args.workers, args.cache_dir, args.dask)
    return 0


if __name__ == "__main__":
    sys.exit(main())
