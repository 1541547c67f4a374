"""The Noise chapter (Fig. 5) on its smoke profile, and its rules."""

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pandas as pd
import pytest

from winning_ticket.chapters import noise as nz
from winning_ticket.experiments.claims import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED
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
    claims = nz.check_claims(noisy)
    assert [c.name for c in claims] == ["error-grows-like-sqrt-r", "error-follows-least-squares",
                                        "error-proportional-to-noise"]
    nz.plot_figure5(noisy)


def _synthetic(exponent=0.5, ls=False, level_power=1.0, trials=30, config=None, seed=0):
    """Runs whose final error is level**level_power * r**exponent (or the least-squares shape) times noise."""
    c = config or nz.NoiseConfig.for_profile("evidence")
    rng = np.random.default_rng(seed)
    rows = []
    for r in c.r_values:
        for t in range(trials):
            base = np.exp(0.15 * rng.standard_normal())
            shape = nz.least_squares_scale(r, c.K, c.N) if ls else r**exponent
            for level in c.levels:
                rows.append(dict(r=r, sqrt_r=np.sqrt(r), level=level, trial=t, status="max_iter",
                                 final_error=base * level**level_power * shape * np.exp(0.02 * rng.standard_normal())))
    return nz.NoiseResult(config=c.replace(trials=trials), runs=pd.DataFrame(rows), seconds=0.0)


def _v(result):
    return {c.name: c.verdict for c in nz.check_claims(result)}


def test_noise_rules_decide_in_every_direction():
    v = _v(_synthetic(exponent=0.5))
    assert v["error-grows-like-sqrt-r"] == SUPPORTED and v["error-proportional-to-noise"] == SUPPORTED
    assert _v(_synthetic(exponent=0.2))["error-follows-least-squares"] == NOT_SUPPORTED  # far flatter than least squares
    v = _v(_synthetic(ls=True))
    assert v["error-follows-least-squares"] == SUPPORTED
    assert _v(_synthetic(exponent=1.0))["error-grows-like-sqrt-r"] == NOT_SUPPORTED
    assert _v(_synthetic(level_power=1.5))["error-proportional-to-noise"] == NOT_SUPPORTED


def test_noise_rules_are_inconclusive_with_too_little_data():
    v = _v(_synthetic(trials=1, config=nz.NoiseConfig.for_profile("evidence").replace(r_values=(5, 10))))
    assert set(v.values()) == {INCONCLUSIVE}, v


def test_kink_cycling_reports_each_checkpoint():
    c = nz.NoiseConfig.for_profile("smoke")
    table = nz.kink_cycling(c, level=0.1, r=4, checkpoints=(50, 200))
    assert list(table.index) == [50, 200]
    assert (table["activations"] == c.N * c.K).all() and (table["relative_change"] > 0).all()



def test_noise_levels_share_the_problem():
    a = make_problem(100, 20, 2, 5, 0.01, seed_sequence(1, 2))
    b = make_problem(100, 20, 2, 5, 0.1, seed_sequence(1, 2))
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.w_star, b.w_star)
    clean = teacher_output(a.X, a.omega, a.w_star)
    np.testing.assert_allclose(b.y - clean, 10 * (a.y - clean), rtol=1e-9, atol=1e-15)
