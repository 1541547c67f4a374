"""The Strong-tickets chapter (Pensia et al.)."""

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pytest



def test_counting_bound():
    from winning_ticket.chapters.strong_tickets import counting_bound

    assert counting_bound(1, 0.25, 1.0) == pytest.approx(1.0)
    assert counting_bound(397_000, 0.01) == pytest.approx(397_000 * np.log2(100))



def _mnist(acc=0.98, approx=0.95, frac=0.45):
    import pandas as pd

    return pd.DataFrame([dict(target_accuracy=acc, approx_accuracy=approx, within_eps=1.0, max_weight_error=0.004,
                              remaining_coefficients=int(frac * 100), total_coefficients=100, weights=10,
                              coefficients_per_weight=10, trial=0)])


def test_strong_chapter_theory_part_and_claims():
    import dataclasses

    from winning_ticket.chapters import strong_tickets as st
    from winning_ticket.experiments.sweep import run_sweep

    c = dataclasses.replace(st.StrongConfig.for_profile("smoke"), depths=(2,), trials=1, sup_samples=300, widths=(4, 8))
    runs = run_sweep(st.theory_task, [dict(width=c.width, depth=2, n_values=c.n_values, sup_samples=300)], 1,
                     seed=c.seed, name="t", progress=False).runs
    assert set(runs["method"]) == set(st.METHODS) and len(runs) == 2 * len(c.n_values)
    result = st.StrongResult(config=c, runs=runs, mnist=_mnist(), seconds=0.0)
    by = {cl.name: cl for cl in st.check_claims(result)}
    assert not by["mnist-accuracy-preserved"].holds  # a 3-point drop must fail the claim
    assert by["mnist-remaining-fraction"].holds
    assert by["weight-error-halves-per-candidate"].verdict == "INCONCLUSIVE"  # one target
    assert by["candidates-grow-logarithmically-with-width"].verdict == "INCONCLUSIVE"  # one width
    st.plot_theory(result)
    st.plot_width(dataclasses.replace(result, runs=runs))


def _runs(weight_rate=-1.0, net_rate=-0.6, single_power=-1.0, per_doubling=1.0, targets=8, widths=(4, 8, 16, 32),
          depths=(2, 3), reach=True, seed=0):
    """A synthetic runs table with given rates (log2 per candidate, log-log power, candidates per doubling)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    for depth in depths:
        for w in widths:
            shift = per_doubling * np.log2(w / 8)  # a wider target needs `shift` more candidates
            for t in range(targets):
                noise = rng.normal(0, 0.05)
                for n in range(2, 21, 2):
                    for method in ("subset_sum", "single_unit"):
                        if method == "subset_sum":
                            we = 2.0 ** (weight_rate * n + noise)
                            se = 2.0 ** (net_rate * (n - shift) + noise) if reach else 1.0
                        else:
                            we = 0.5 * n ** single_power * 2 ** noise
                            se = 10 * we
                        rows.append(dict(width=w, depth=depth, trial=t, n=n, method=method, sup_error=se,
                                         weight_error_median=we, weight_error_max=we, kept=1, random_params=1,
                                         target_weights=1))
    return pd.DataFrame(rows)


def _verdicts(**kw):
    from winning_ticket.chapters import strong_tickets as st

    c = st.StrongConfig.for_profile("smoke")
    import dataclasses
    c = dataclasses.replace(c, n_values=tuple(range(2, 21, 2)))
    result = st.StrongResult(config=c, runs=_runs(**kw), mnist=_mnist(approx=0.98), seconds=0.0)
    return {cl.name: cl.verdict for cl in st.check_claims(result)}


def test_the_rate_rules_pass_fail_and_abstain():
    good = _verdicts()
    assert good["weight-error-halves-per-candidate"] == "SUPPORTED"
    assert good["network-error-falls-geometrically"] == "SUPPORTED"
    assert good["single-unit-error-polynomial"] == "SUPPORTED"
    slow = _verdicts(weight_rate=-0.33, net_rate=-0.1, single_power=-2.5)  # 2^-n/3 is not "about 2^-n"
    assert slow["weight-error-halves-per-candidate"] == "NOT SUPPORTED"
    assert slow["network-error-falls-geometrically"] == "NOT SUPPORTED"
    assert slow["single-unit-error-polynomial"] == "NOT SUPPORTED"
    few = _verdicts(targets=3)
    assert few["weight-error-halves-per-candidate"] == few["network-error-falls-geometrically"] == "INCONCLUSIVE"
    assert _verdicts()["mnist-accuracy-preserved"] == "SUPPORTED"


def test_the_width_rule_passes_fails_and_abstains():
    assert _verdicts(per_doubling=1.0)["candidates-grow-logarithmically-with-width"] == "SUPPORTED"
    assert _verdicts(per_doubling=5.0)["candidates-grow-logarithmically-with-width"] == "NOT SUPPORTED"
    assert _verdicts(reach=False)["candidates-grow-logarithmically-with-width"] == "INCONCLUSIVE"
    assert _verdicts(targets=3)["candidates-grow-logarithmically-with-width"] == "INCONCLUSIVE"
