import numpy as np
import pytest

from winning_ticket.model import initial_point, make_problem, seed_sequence


@pytest.fixture
def small_problem():
    """A small noiseless problem with overlapping supports (seconds to solve)."""
    return make_problem(N=300, d=30, K=3, r=8, noise_level=0.0, seed=11)


def starts(problem, lam, n, seed=5):
    return np.stack([initial_point(problem.w_star, lam, seed_sequence(seed, i)) for i in range(n)])
