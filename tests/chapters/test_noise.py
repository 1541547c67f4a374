"""The Noise chapter (Fig. 5) on its smoke profile, and its rules."""

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pytest

from winning_ticket.chapters import noise as nz
from winning_ticket.experiments.seeding import seed_sequence
from winning_ticket.algorithms.teacher_student import make_problem, teacher_output


@pytest.fixture(scope="module")
def noisy():
    return nz.run(nz.NoiseConfig.for_profile("smoke"), progress=False)



def test_noise(noisy):
    s = nz.summary(noisy)
    assert (s["error_mean"] > 0).all()
    # common random numbers: same data at every level, noise scaled by the level
    runs = noisy.runs
    assert set(runs["level"]) == set(noisy.config.levels)
    assert [c.holds for c in nz.check_claims(noisy)] == [True, True]
    nz.plot_figure5(noisy)



def test_noise_levels_share_the_problem():
    a = make_problem(100, 20, 2, 5, 0.01, seed_sequence(1, 2))
    b = make_problem(100, 20, 2, 5, 0.1, seed_sequence(1, 2))
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.w_star, b.w_star)
    clean = teacher_output(a.X, a.omega, a.w_star)
    np.testing.assert_allclose(b.y - clean, 10 * (a.y - clean), rtol=1e-9, atol=1e-15)
