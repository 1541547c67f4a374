import pytest

from winning_ticket.algorithms.teacher_student import make_problem


@pytest.fixture
def small_problem():
    """A small noiseless problem with overlapping supports (seconds to solve)."""
    return make_problem(N=300, d=30, K=3, r=8, noise_level=0.0, seed=11)



def pytest_configure(config):
    """One torch thread per xdist worker: two workers on two cores must not oversubscribe them."""
    import os

    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)
