import pytest

from winning_ticket.model import make_problem


@pytest.fixture
def small_problem():
    """A small noiseless problem with overlapping supports (seconds to solve)."""
    return make_problem(N=300, d=30, K=3, r=8, noise_level=0.0, seed=11)

