r"""Batching problems of different sizes into one engine call.

:func:`pad_samples` appends zero samples so that problems of different ``N`` share one
``(B, K, r, N)`` tensor (one launch on a GPU, where a grid of small cells is launch-bound).
A zero input gives every neuron the pre-activation 0, so the student outputs
:math:`\phi(0) = 0`, which is its zero label: a padded sample adds exactly nothing to the sums
of the risk (2) and of its gradient.  Only the normalization :math:`1/N` changes, and
multiplying the step by :math:`N_{\text{pad}}/N` undoes it, so the padded run follows the
unpadded one (tested to rounding).
"""

from __future__ import annotations

import numpy as np

from ..experiments.validation import check_int
from .teacher_student import Problem


def pad_samples(problems, N: int | None = None) -> tuple[list[Problem], np.ndarray]:
    """The problems with zero samples appended up to a common ``N`` (default: the largest), and
    each problem's step factor ``N / N_problem`` (multiply its step size by it)."""
    problems = list(problems)
    if not problems:
        raise ValueError("problems must not be empty")
    largest = max(p.N for p in problems)
    target = largest if N is None else check_int("N", N, largest)
    padded = []
    for p in problems:
        extra = target - p.N
        X = np.concatenate([p.X, np.zeros((extra, p.d))]) if extra else p.X
        y = np.concatenate([p.y, np.zeros(extra)]) if extra else p.y
        padded.append(Problem(X=X, y=y, omega=p.omega, w_star=p.w_star, noise_level=p.noise_level, E_y=p.E_y))
    return padded, np.array([target / p.N for p in problems])
