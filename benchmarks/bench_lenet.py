"""Benchmark: training LeNet-5 for the IMP-on-MNIST chapter, the plain loop against the stacked trainer.

Workload: one epoch of Adam on ``--images`` standardized images at batch 60, one thread, float32,
the masks of a pruned ticket (as in round 3 of IMP: 51% of the weights kept).  Variants:

* ``plain loop``: ``nn.Module`` LeNet-5, ``torch.optim.Adam``, ``F.max_pool2d`` then ``relu``,
  gradients masked after ``backward`` (the chapter's loop before the stacked trainer;
  :func:`~winning_ticket.algorithms.stacked_lenet.train_reference`);
* ``stacked, S = 1``: :func:`~winning_ticket.algorithms.stacked_lenet.train_stacked` on one network
  (the compiled pool+ReLU, Adam on the stacked tensors);
* ``stacked, S = 3``: three networks on the same minibatches (a pruning round: the ticket and
  its two controls).

Evaluation (forward only): the plain loop's ``accuracy`` (``nn.Module``, batches of 4096) against
:func:`~winning_ticket.algorithms.stacked_lenet.evaluate` (batches of 100), per network-image.

Every variant runs ``--repeats`` times, interleaved, and the table quotes medians.  GFLOP/s use
:func:`~winning_ticket.algorithms.stacked_lenet.flops_per_image` (training: 2.26 MFLOP per image,
forward 0.83).  The last lines project the chapter's protocols from the measured rates: the
``book`` protocol of one seed before (4 sizes x 13 trainings x 5 epochs, test set scored every
epoch, 2 processes) and the ``evidence`` run (5 seeds, controls at two sizes, validation and test
scored every epoch).  ``--markdown FILE`` writes the table; ``--update-readme`` replaces the
README's block between ``<!-- lenet:begin -->`` and ``<!-- lenet:end -->``.  Not a test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from winning_ticket.algorithms import stacked_lenet as sl
from winning_ticket.algorithms.networks import LeNet5, accuracy, reference_init
from winning_ticket.algorithms.pruning import magnitude_prune, rewind

from bench_engine import update_readme  # the README block writer (this script's directory is on sys.path)



def ticket(seed: int):
    """A LeNet-5 initialization and the layer-wise masks of three IMP rounds (magnitudes of the init)."""
    init = {n: p.detach().clone() for n, p in reference_init(LeNet5(), torch.Generator().manual_seed(seed)).named_parameters()}
    masks = {n: torch.ones_like(init[n], dtype=torch.bool) for n in sl.WEIGHTS}
    for _ in range(3):
        masks = magnitude_prune({n: init[n] for n in sl.WEIGHTS}, masks, 0.2, "layer")
    full = {n: masks.get(n, torch.ones_like(init[n], dtype=torch.bool)) for n in init}
    return rewind(init, full), masks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=3000, help="training images per epoch (default 3000)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--markdown", type=Path, default=None)
    ap.add_argument("--update-readme", action="store_true")
    args = ap.parse_args()
    if args.repeats < 1 or args.images < 60:
        ap.error("--repeats must be at least 1 and --images at least 60")
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(args.images, 784, generator=g), torch.randint(0, 10, (args.images,), generator=g)
    Xe, ye = torch.randn(5000, 784, generator=g), torch.randint(0, 10, (5000,), generator=g)
    nets = [ticket(s) for s in range(3)]
    kw = dict(epochs=1, lr=1.2e-3, weight_decay=1e-4, batch_size=60)

    def stacked(S):
        P = sl.stack([n[0] for n in nets[:S]])
        M = {k: torch.stack([n[1][k] for n in nets[:S]]) for k in sl.WEIGHTS}
        return lambda: sl.train_stacked(P, M, X, y, generator=torch.Generator().manual_seed(1), **kw)

    def plain():
        return sl.train_reference(nets[0][0], nets[0][1], X, y, generator=torch.Generator().manual_seed(1), **kw)

    model = LeNet5()
    model.load_state_dict(nets[0][0])
    P3 = sl.stack([n[0] for n in nets])
    variants = {  # name -> (function, networks, images per call)
        "plain loop (nn.Module, torch.optim.Adam, max_pool2d)": (plain, 1, args.images),
        "stacked trainer, S = 1": (stacked(1), 1, args.images),
        "stacked trainer, S = 3 (ticket and both controls)": (stacked(3), 3, args.images),
        "evaluation, plain (`accuracy`, batches of 4096)": (lambda: accuracy(model, Xe, ye), 1, len(Xe)),
        "evaluation, stacked (`evaluate`, batches of 100), S = 3": (lambda: sl.evaluate(P3, Xe, ye), 3, len(Xe)),
    }
    for fn, _, _ in variants.values():  # warm up (compiles the pooling kernel)
        fn()
    times = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, (fn, _, _) in variants.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    flops = sl.flops_per_image()
    us = {name: 1e6 * statistics.median(times[name]) / (S * n) for name, (_, S, n) in variants.items()}
    names = list(variants)
    rows = ["| variant | µs per network-image | GFLOP/s | vs plain |", "|---|---|---|---|"]
    for name in names[:3]:
        rows.append(f"| {name} | {us[name]:.0f} | {flops['train'] / us[name] / 1e3:.1f} | "
                    f"{us[names[0]] / us[name]:.2f}x |")
    for name in names[3:]:
        rows.append(f"| {name} | {us[name]:.1f} | {flops['eval'] / us[name] / 1e3:.1f} | "
                    f"{us[names[3]] / us[name]:.2f}x |")
    train_old, train_new, eval_old, eval_new = us[names[0]], us[names[2]], us[names[3]], us[names[4]]
    book_images = 5 * 13 * (10_000 + 20_000 + 30_000 + 40_000)
    old_book = (book_images * train_old + 5 * 13 * 4 * 10_000 * eval_old) / 1e6 / 2
    new_book = (book_images * train_new + 5 * 13 * 4 * 15_000 * eval_new) / 1e6 / 2
    nets_ev = 5 * (4 * 13 + 2 * 24)  # trainings of the evidence run
    ev_images = 5 * 5 * (13 * 100_000 + 24 * (10_000 + 40_000))
    old_ev = (ev_images * train_old + nets_ev * 5 * 15_000 * eval_old) / 1e6 / 2
    new_ev = (ev_images * train_new + nets_ev * 5 * 15_000 * eval_new) / 1e6 / 2
    head = (f"Measured {dt.date.today().isoformat()} on {platform.processor() or platform.machine()} "
            f"({os.cpu_count()} cores), one thread, float32, torch {torch.__version__}; {args.images} images "
            f"per epoch, medians of {args.repeats} interleaved repetitions; training {flops['train'] / 1e6:.2f} "
            f"MFLOP per image, evaluation {flops['eval'] / 1e6:.2f}.")
    notes = (f"Projected from these rates, on two processes: one seed of the book protocol (4 sizes x 13 trainings "
             f"x 5 epochs, test set every epoch) {old_book / 60:.1f} min with the plain loop, "
             f"{new_book / 60:.1f} min stacked (with the validation set scored too); the evidence run "
             f"(5 seeds, controls at 10,000 and 40,000: {nets_ev} trainings) {old_ev / 60:.0f} min with the "
             f"plain loop, {new_ev / 60:.0f} min stacked.")
    text = "\n".join([head, "", *rows, "", notes]) + "\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    if args.update_readme:
        update_readme("lenet", text)


if __name__ == "__main__":
    main()
