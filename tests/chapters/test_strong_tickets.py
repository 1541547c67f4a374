"""The Strong-tickets chapter (Pensia et al.)."""

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pytest



def test_counting_bound():
    from winning_ticket.chapters.strong_tickets import counting_bound

    assert counting_bound(1, 0.25, 1.0) == pytest.approx(1.0)
    assert counting_bound(397_000, 0.01) == pytest.approx(397_000 * np.log2(100))



def test_strong_chapter_theory_part_and_claims():
    import dataclasses

    from winning_ticket.chapters import strong_tickets as st
    from winning_ticket.experiments.sweep import run_sweep

    c = dataclasses.replace(st.StrongConfig.for_profile("smoke"), depths=(2,), trials=1, sup_samples=300)
    runs = run_sweep(st.theory_task, [dict(width=c.width, depth=2, n_values=c.n_values, sup_samples=300)], 1,
                     seed=c.seed, name="t", progress=False).runs
    assert set(runs["method"]) == set(st.METHODS) and len(runs) == 2 * len(c.n_values)
    mnist = dict(target_accuracy=0.98, approx_accuracy=0.95, within_eps=1.0, max_weight_error=0.004,
                 remaining_coefficients=45, total_coefficients=100)
    claims = st.check_claims(st.StrongResult(config=c, runs=runs, mnist=mnist, seconds=0.0))
    by = {cl.name: cl for cl in claims}
    assert not by["mnist-accuracy-preserved"].holds  # a 3-point drop must fail the claim
    assert by["mnist-remaining-fraction"].holds
    st.plot_theory(st.StrongResult(config=c, runs=runs, mnist=mnist, seconds=0.0))
