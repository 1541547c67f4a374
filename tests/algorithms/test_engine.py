import warnings

import numpy as np
import pytest
import torch

from winning_ticket.algorithms.agd import RunStatus, run_agd
from winning_ticket.algorithms.engine import (
    batched_gradient,
    batched_hessian,
    batched_risk,
    run_agd_batched,
    stack_problems,
)
from winning_ticket.algorithms.teacher_student import dense_student, initial_point, make_problem
from winning_ticket.experiments.seeding import seed_sequence
from winning_ticket.algorithms.risk import gradient, hessian, risk


@pytest.fixture(autouse=True, params=["fused", "fused-rows", "torch"])
def kernel(request, monkeypatch):
    """Every test of this file runs with each of the engine's CPU kernels: the fused kernel as the
    engine lays it out (the sample blocks for the short rows of most of these tests), the fused
    kernel with its row layout at every r, and the torch kernel.  Returns ``"fused"`` or ``"torch"``."""
    from winning_ticket.algorithms import kernels

    if request.param == "fused-rows":
        monkeypatch.setattr(kernels, "BLOCKS_MAX_R", 0)
    name = request.param.split("-")[0]
    monkeypatch.setenv("WT_KERNEL", name)
    return name


def _problems(n, N=250, d=24, K=3, r=6, noise=0.0, seed=21):
    return [make_problem(N, d, K, r, noise, seed_sequence(seed, i)) for i in range(n)]


def _starts(problems, S, lam=0.5, seed=8):
    return np.stack([[initial_point(p.w_star, lam, seed_sequence(seed, b, s)) for s in range(S)] for b, p in enumerate(problems)])


def test_batched_risk_gradient_hessian_equal_reference():
    probs = _problems(3, noise=0.05)
    W = _starts(probs, 2)
    Xs, y, _ = stack_problems(probs, "cpu")
    Wt = torch.from_numpy(W)
    R, G, H = batched_risk(Xs, y, Wt).numpy(), batched_gradient(Xs, y, Wt).numpy(), batched_hessian(Xs, Wt).numpy()
    for b, p in enumerate(probs):
        for s in range(2):
            assert R[b, s] == pytest.approx(risk(p.sub_inputs(), p.y, W[b, s]), rel=1e-12)
            np.testing.assert_allclose(G[b, s], gradient(p.sub_inputs(), p.y, W[b, s]), rtol=1e-10, atol=1e-15)
            np.testing.assert_allclose(H[b, s], hessian(p.sub_inputs(), W[b, s]), rtol=1e-10, atol=1e-15)


def test_batched_runs_equal_the_reference_iterates():
    probs = _problems(3)
    W0 = _starts(probs, 2)
    res = run_agd_batched(probs, W0, eta=0.5, beta=[0.2, 0.0], progress=False)
    for b, p in enumerate(probs):
        for s, beta in enumerate((0.2, 0.0)):
            ref = run_agd(p.sub_inputs(), p.y, p.w_star, W0[b, s], eta=0.5, beta=beta)
            assert res.iterations[b, s] == ref.iterations
            assert res.status[b, s] == ref.status == RunStatus.CONVERGED
            np.testing.assert_allclose(res.W[b, s], ref.W, rtol=1e-9, atol=1e-14)
            h = res.rel_error[b, s]
            np.testing.assert_allclose(h[: ref.iterations + 1], ref.rel_error, rtol=1e-8)
            assert np.all(np.isnan(h[ref.iterations + 1 :]))
            assert res.final_error[b, s] == pytest.approx(ref.final_error, rel=1e-8)


def test_results_do_not_depend_on_batch_size_or_chunking():
    probs = _problems(4)
    W0 = _starts(probs, 2)
    full = run_agd_batched(probs, W0, 0.5, [0.2, 0.0], progress=False)
    chunked = run_agd_batched(probs, W0, 0.5, [0.2, 0.0], device="cpu", progress=False, max_chunk_bytes=1)
    alone = [run_agd_batched([p], W0[i : i + 1], 0.5, [0.2, 0.0], progress=False) for i, p in enumerate(probs)]
    np.testing.assert_array_equal(full.iterations, chunked.iterations)
    np.testing.assert_allclose(full.W, chunked.W, rtol=1e-12, atol=1e-15)
    for i, a in enumerate(alone):
        np.testing.assert_array_equal(full.iterations[i], a.iterations[0])
        np.testing.assert_allclose(full.W[i], a.W[0], rtol=1e-12, atol=1e-15)
    # the problems themselves come from keyed seeds: the same whatever else is drawn
    again = _problems(2)
    np.testing.assert_array_equal(again[1].X, probs[1].X)


def test_a_diverging_run_does_not_disturb_the_others():
    probs = _problems(2)
    W0 = _starts(probs, 2)
    etas = np.array([[0.5, 1e4], [0.5, 0.5]])
    res = run_agd_batched(probs, W0, etas, 0.2, progress=False)
    assert res.status[0, 1] == RunStatus.DIVERGED and not res.success[0, 1]
    assert np.all(np.isfinite(res.W))
    assert res.status_names[0, 1] == "diverged"
    ref = run_agd(probs[0].sub_inputs(), probs[0].y, probs[0].w_star, W0[0, 0], 0.5, 0.2)
    assert res.iterations[0, 0] == ref.iterations and res.success[0, 0]
    ref_bad = run_agd(probs[0].sub_inputs(), probs[0].y, probs[0].w_star, W0[0, 1], 1e4, 0.2)
    assert ref_bad.status == RunStatus.DIVERGED and res.iterations[0, 1] == ref_bad.iterations


def test_iteration_cap_and_history_off():
    probs = _problems(2)
    res = run_agd_batched(probs, _starts(probs, 1), 0.5, 0.2, max_iter=15, record_history=False, progress=False)
    assert res.rel_error is None
    assert np.all(res.status == RunStatus.MAX_ITER) and np.all(res.iterations == 15) and not res.success.any()


def test_flop_count():
    probs = _problems(1)
    res = run_agd_batched(probs, _starts(probs, 2), 0.5, 0.2, max_iter=10, progress=False)
    assert res.flops(250, 6, 3) == 4 * 250 * 6 * 3 * 20


def test_bad_inputs():
    probs = _problems(2)
    W0 = _starts(probs, 2)
    with pytest.raises(ValueError, match="^W0"):
        run_agd_batched(probs, W0[:1], progress=False)
    with pytest.raises(ValueError, match="^W0"):
        run_agd_batched(probs, W0.transpose(0, 1, 3, 2), progress=False)
    bad = W0.copy()
    bad[1, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="^W0 contains"):
        run_agd_batched(probs, bad, progress=False)
    with pytest.raises(ValueError, match="^eta"):
        run_agd_batched(probs, W0, eta=[0.5, -1.0], progress=False)
    with pytest.raises(ValueError, match="^beta"):
        run_agd_batched(probs, W0, beta=1.5, progress=False)
    with pytest.raises(ValueError, match="^eta must be"):
        run_agd_batched(probs, W0, eta=np.ones((3, 3)), progress=False)
    with pytest.raises(ValueError, match="^max_iter"):
        run_agd_batched(probs, W0, max_iter=0, progress=False)
    with pytest.raises(ValueError, match="^problems"):
        run_agd_batched([], W0, progress=False)
    with pytest.raises(ValueError, match="share"):
        stack_problems([probs[0], make_problem(10, 24, 3, 6, seed=0)], "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_gpu_equals_cpu():
    probs = _problems(3)
    W0 = _starts(probs, 2)
    cpu = run_agd_batched(probs, W0, 0.5, [0.2, 0.0], progress=False)
    gpu = run_agd_batched(probs, W0, 0.5, [0.2, 0.0], device="cuda", progress=False)
    np.testing.assert_array_equal(cpu.iterations, gpu.iterations)
    np.testing.assert_allclose(cpu.W, gpu.W, rtol=1e-9, atol=1e-14)


def test_early_success_gives_the_full_protocols_verdict():
    # starts near and far; with a small cap some runs fail, with a larger one most succeed
    probs = _problems(4, N=200, d=30, K=3, r=10)
    W0 = np.stack([[initial_point(p.w_star, lam, seed_sequence(3, b)) for lam in (0.3, 1.0, 3.0)]
                   for b, p in enumerate(probs)])
    verdicts = []
    for cap in (600, 3000):
        full = run_agd_batched(probs, W0, 0.5, 0.2, max_iter=cap, progress=False)
        early = run_agd_batched(probs, W0, 0.5, 0.2, max_iter=cap, device="cpu", progress=False, success_stop=1e-4)
        np.testing.assert_array_equal(full.success, early.success)
        if full.success.any():
            assert early.iterations[early.success].sum() < full.iterations[full.success].sum()
            assert set(early.status_names[early.success]) == {"early_success"}
        verdicts.append(full.success)
    both = np.concatenate(verdicts)
    assert both.any() and not both.all()  # the test saw successes and failures


def test_sharing_a_problem_across_starts_changes_nothing():
    probs = _problems(2)
    W0 = _starts(probs, 3)
    shared = run_agd_batched(probs, W0, 0.5, 0.2, progress=False)
    for s in range(3):
        alone = run_agd_batched(probs, W0[:, s : s + 1], 0.5, 0.2, progress=False)
        np.testing.assert_array_equal(shared.iterations[:, s], alone.iterations[:, 0])
        np.testing.assert_allclose(shared.W[:, s], alone.W[:, 0], rtol=1e-12, atol=1e-15)


def test_mean_rate_matches_the_fitted_rate_on_long_runs():
    from winning_ticket.algorithms.rates import fit_rate

    probs = _problems(1)
    res = run_agd_batched(probs, _starts(probs, 1, lam=0.5), 0.5, 0.2, progress=False)
    fitted = fit_rate(res.rel_error[0, 0]).rate
    assert res.mean_rate(0.5)[0, 0] == pytest.approx(fitted, abs=2e-3)
    assert res.mean_rate(0.5)[0, 0] < 1


def test_masked_engine_equals_masked_reference_and_keeps_zeros():
    problems = [dense_student(make_problem(150, 12, 2, 4, 1e-3, seed=s)) for s in range(2)]
    rng = np.random.default_rng(0)
    mask = (rng.random((2, 1, 12, 2)) < 0.5).astype(float)
    W0 = rng.normal(0, 0.3, (2, 1, 12, 2)) * mask
    res = run_agd_batched(problems, W0, 0.5, 0.2, max_iter=300, device="cpu", record_history=False, mask=mask)
    for b, p in enumerate(problems):
        ref = run_agd(p.sub_inputs(), p.y, p.w_star, W0[b, 0], 0.5, 0.2, max_iter=300, mask=mask[b, 0])
        assert np.allclose(res.W[b, 0], ref.W, rtol=1e-9, atol=1e-12)
        assert np.all(res.W[b, 0][mask[b, 0] == 0] == 0)
        assert np.any(res.W[b, 0][mask[b, 0] == 1] != W0[b, 0][mask[b, 0] == 1])
    with pytest.raises(ValueError, match="zero wherever mask"):
        run_agd_batched(problems, W0 + 0.1, 0.5, 0.2, max_iter=3, mask=mask)
    with pytest.raises(ValueError, match="0 or 1"):
        run_agd_batched(problems, W0, 0.5, 0.2, max_iter=3, mask=mask * 0.5)


def test_diverged_runs_have_no_mean_rate():
    probs = _problems(2)
    res = run_agd_batched(probs, _starts(probs, 1), [500.0], 0.2, max_iter=50, record_history=False, progress=False)
    assert (res.status == RunStatus.DIVERGED).all()
    assert np.isnan(res.mean_rate(0.5)).all()


def test_device_errors_are_clear(monkeypatch):
    import torch

    from winning_ticket.algorithms.engine import default_device, engine_threads

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("WT_DEVICE", "cuda")
    with pytest.raises(ValueError, match="WT_DEVICE = 'cuda' but this torch has no usable CUDA"):
        default_device()
    monkeypatch.setenv("WT_DEVICE", "tpu")
    with pytest.raises(ValueError, match="WT_DEVICE"):
        default_device()
    monkeypatch.setenv("WT_THREADS", "zero")
    with pytest.raises(ValueError, match="WT_THREADS = 'zero'; allowed: a positive integer"):
        engine_threads()


def test_results_do_not_depend_on_the_thread_count(monkeypatch):
    probs = _problems(2)
    W0 = _starts(probs, 2)
    monkeypatch.setenv("WT_THREADS", "1")
    one = run_agd_batched(probs, W0, 0.5, 0.2, max_iter=200, progress=False)
    monkeypatch.setenv("WT_THREADS", "2")
    two = run_agd_batched(probs, W0, 0.5, 0.2, max_iter=200, progress=False)
    np.testing.assert_array_equal(one.iterations, two.iterations)
    np.testing.assert_allclose(one.W, two.W, rtol=1e-12, atol=1e-15)


def test_fused_kernel_equals_the_reference_gradient(kernel):
    """Both layouts of the one-pass kernel give the reference gradient for any S and r (lengths that
    are and are not multiples of the vector width), and never read the samples beyond n_valid."""
    from winning_ticket.algorithms.engine import stack_rows
    from winning_ticket.algorithms.kernels import fused_gradient

    if kernel != "fused":
        pytest.skip("the fused kernel's own test")
    for layout in ("rows", "blocks"):
        for r, S in ((1, 1), (6, 2), (13, 3), (40, 10)):
            probs = _problems(2, N=90, d=60, K=3, r=r, noise=0.1)
            W = np.ascontiguousarray(_starts(probs, S).transpose(0, 3, 1, 2))  # (B, K, S, r)
            XN, y, n = stack_rows(probs)
            G = fused_gradient(XN, y, W, n, layout=layout)
            for b, p in enumerate(probs):
                for s in range(S):
                    np.testing.assert_allclose(G[b, :, s], gradient(p.sub_inputs(), p.y, W[b, :, s].T).T,
                                               rtol=1e-12, atol=1e-16)
            # garbage after n_valid is never read: padding with NaN changes nothing, bit for bit
            XNp = np.concatenate([XN, np.full((2, 7) + XN.shape[2:], np.nan)], axis=1)
            yp = np.concatenate([y, np.full((2, 7), np.nan)], axis=1)
            np.testing.assert_array_equal(fused_gradient(XNp, yp, W, n, layout=layout), G)
        with pytest.raises(ValueError, match="n_valid"):
            fused_gradient(XN, y, W, [0, 90], layout=layout)
        with pytest.raises(ValueError, match="C-contiguous float64"):
            fused_gradient(XN.astype(np.float32), y, W, n, layout=layout)


def test_fused_kernel_is_bitwise_independent_of_the_batch(kernel):
    """With the fused kernel a problem's runs are the same bits whatever else is in its batch or chunk."""
    if kernel != "fused":
        pytest.skip("the torch kernel agrees to rounding (test_results_do_not_depend_on_batch_size_or_chunking)")
    probs = _problems(4, noise=0.05)
    W0 = _starts(probs, 3)
    full = run_agd_batched(probs, W0, 0.5, [0.2, 0.0, 0.2], progress=False, max_iter=400)
    chunked = run_agd_batched(probs, W0, 0.5, [0.2, 0.0, 0.2], progress=False, max_iter=400, max_chunk_bytes=1)
    alone = run_agd_batched(probs[2:3], W0[2:3], 0.5, [0.2, 0.0, 0.2], progress=False, max_iter=400)
    np.testing.assert_array_equal(full.W, chunked.W)
    np.testing.assert_array_equal(full.rel_error, chunked.rel_error)
    np.testing.assert_array_equal(full.W[2], alone.W[0])


def test_the_two_kernels_agree_run_by_run(kernel):
    """Fused and torch kernels: the same status and iteration count for every run (converging, capped,
    diverging, masked, stopped early), the same iterates to rounding."""
    if kernel != "fused":
        pytest.skip("compares both kernels itself")
    probs = _problems(3, noise=0.02)
    clean = _problems(3, seed=5)
    W0 = _starts(probs, 4)
    mask = np.ones(W0.shape)
    mask[:, :, 0, :] = 0.0
    W0m = W0 * mask
    out = {}
    for k in ("torch", "fused"):
        out[k] = [run_agd_batched(probs, W0, [0.5, 0.5, 60.0, 0.5], [0.2, 0.0, 0.2, 0.2], max_iter=700, progress=False,
                                  kernel=k),
                  run_agd_batched(probs, W0m, 0.5, 0.2, max_iter=3000, progress=False, kernel=k, mask=mask),
                  run_agd_batched(clean, _starts(clean, 4), 0.5, 0.2, progress=False, kernel=k, success_stop=1e-3)]
    statuses = set()
    for a, b in zip(out["torch"], out["fused"]):
        np.testing.assert_array_equal(a.status, b.status)
        np.testing.assert_array_equal(a.iterations, b.iterations)
        ok = a.status != RunStatus.DIVERGED
        np.testing.assert_allclose(a.W[ok], b.W[ok], rtol=1e-9, atol=1e-13)
        np.testing.assert_allclose(a.final_error[ok], b.final_error[ok], rtol=1e-8)
        statuses |= set(a.status.ravel().tolist())
    assert {RunStatus.CONVERGED, RunStatus.DIVERGED, RunStatus.EARLY_SUCCESS} <= statuses
    assert np.all(out["fused"][1].W[:, :, 0, :] == 0.0)


def _runs_where_every_rule_fires():
    """Batches and settings whose runs between them stop in every way the engine knows: noisy problems
    of two sample counts in one batch (converging; a step size of 60 diverging; masked), and
    noiseless ones from starts near and far (early successes; capped).  Returns the noiseless
    problems and the ``(problems, W0, keyword arguments)`` of each call."""
    probs = _problems(3, noise=0.02) + _problems(1, N=180, noise=0.02, seed=5)
    clean = _problems(4, N=200, d=30, K=3, r=10)
    W0 = _starts(probs, 4)
    mask = np.ones(W0.shape)
    mask[:, :, 0, :] = 0.0
    far = np.stack([[initial_point(p.w_star, lam, seed_sequence(3, b)) for lam in (0.3, 1.0, 3.0)]
                    for b, p in enumerate(clean)])
    return clean, [(probs, W0, dict(eta=[0.5, 0.5, 60.0, 0.5], beta=[0.2, 0.0, 0.2, 0.2], max_iter=700)),
                   (probs, W0 * mask, dict(eta=0.5, beta=0.2, max_iter=3000, mask=mask)),
                   (clean, far, dict(eta=0.5, beta=0.2, max_iter=3000, success_stop=1e-4)),
                   (clean, far, dict(eta=0.5, beta=0.2, max_iter=600))]


def test_mixed_precision_reads_only_gradients_the_kernel_wrote(kernel, monkeypatch):
    """The kernels leave a skipped problem's gradient rows as the buffer held them (uninitialized
    memory): the mixed path must not read them.  With every gradient buffer filled with signalling
    NaNs before the kernel runs, and numpy raising on invalid operations, every run ends bit for bit
    as with untouched buffers.  (Before the fix, the float32 rows of a stopped run's skipped problem
    were cast to float64: a "invalid value encountered in cast" warning, depending on the garbage.)"""
    if kernel != "fused":
        pytest.skip("mixed precision needs the fused kernel")
    from winning_ticket.algorithms import kernels

    _, calls = _runs_where_every_rule_fires()
    plain = [run_agd_batched(ps, W, progress=False, precision="mixed", **kw) for ps, W, kw in calls]
    poisoned = []
    for name, at in (("gradient", 4), ("blocks", 5)):  # the position of the output buffer G
        real = kernels.compiled(name)

        def poisoning(*args, real=real, at=at):
            G = args[at]
            if G.dtype == np.float32:
                G.view(np.uint32)[...] = 0x7FA00000  # a signalling NaN
            else:
                G.view(np.uint64)[...] = 0x7FF4000000000000
            poisoned.append(G.dtype)
            return real(*args)

        monkeypatch.setitem(kernels._compiled, name, poisoning)
    with np.errstate(all="raise"), warnings.catch_warnings():
        warnings.simplefilter("error")
        again = [run_agd_batched(ps, W, progress=False, precision="mixed", **kw) for ps, W, kw in calls]
    assert {np.dtype(np.float32), np.dtype(np.float64)} <= set(poisoned)  # both phases went through the poison
    for a, b in zip(plain, again):
        for field in ("W", "status", "iterations", "final_error"):
            np.testing.assert_array_equal(getattr(b, field), getattr(a, field))


def test_mixed_precision_keeps_every_runs_verdict(kernel):
    """Mixed precision (float32 gradients until a run nears the end, float64 to finish): every run
    (converging, capped, diverging, masked, stopped early, noisy, from starts near and far) ends with
    the status and success of float64, at nearly the same final error; the float32 phase really ran
    (the iterates are not float64's bits); a run does not depend on its batch or chunk (bit for bit)."""
    if kernel != "fused":
        pytest.skip("mixed precision needs the fused kernel")
    clean, calls = _runs_where_every_rule_fires()
    statuses, successes, differ = set(), set(), 0
    for ps, W, kw in calls:
        f64 = run_agd_batched(ps, W, progress=False, precision="float64", **kw)
        mixed = run_agd_batched(ps, W, progress=False, precision="mixed", **kw)
        np.testing.assert_array_equal(mixed.status, f64.status)
        np.testing.assert_array_equal(mixed.success, f64.success)
        ok = f64.status != RunStatus.DIVERGED
        np.testing.assert_allclose(mixed.final_error[ok], f64.final_error[ok], rtol=1e-3, atol=1e-9)
        differ += int(np.any(mixed.W[ok] != f64.W[ok]))
        statuses |= set(f64.status.ravel().tolist())
        successes |= set(f64.success.ravel().tolist())
        if ps is clean:  # the batch and the chunk change no bit
            for b in (0, 3):
                alone = run_agd_batched([ps[b]], W[b:b + 1], progress=False, precision="mixed", **kw)
                np.testing.assert_array_equal(alone.W[0], mixed.W[b])
                np.testing.assert_array_equal(alone.iterations[0], mixed.iterations[b])
    assert {RunStatus.CONVERGED, RunStatus.DIVERGED, RunStatus.EARLY_SUCCESS, RunStatus.MAX_ITER} <= statuses
    assert successes == {True, False} and differ == len(calls)


def test_mixed_precision_from_float64_is_float64(kernel, monkeypatch):
    """With the switch threshold at infinity every run starts in float64: mixed precision then gives
    float64's iterates, statuses and histories bit for bit (the plumbing adds nothing of its own)."""
    from winning_ticket.algorithms import engine

    if kernel != "fused":
        pytest.skip("mixed precision needs the fused kernel")
    probs = _problems(3, noise=0.02)
    W0 = _starts(probs, 3)
    kw = dict(eta=[0.5, 0.5, 60.0], beta=[0.2, 0.0, 0.2], max_iter=500, progress=False)
    f64 = run_agd_batched(probs, W0, precision="float64", **kw)
    monkeypatch.setattr(engine, "SWITCH_ERROR", np.inf)
    mixed = run_agd_batched(probs, W0, precision="mixed", **kw)
    np.testing.assert_array_equal(mixed.W, f64.W)
    np.testing.assert_array_equal(mixed.status, f64.status)
    np.testing.assert_array_equal(mixed.rel_error, f64.rel_error)


@pytest.mark.parametrize("per_call", [0, 1, 7, 64])
def test_the_compiled_iteration_loop_is_one_call_per_iteration(kernel, monkeypatch, per_call):
    """The fused path runs float64 iterations in one compiled loop (``kernels._iterate``), returning to
    Python when a problem has finished or after ``ITERATIONS_PER_CALL`` iterations.  Its iterates,
    statuses, iteration counts and histories are those of one gradient call and one step call per
    iteration, bit for bit: the reference is the mixed-precision loop with its switch at infinity
    (every run in float64, fresh buffers, one compiled call of each per iteration), on problems of
    different N whose runs stop at different iterations as converged, diverged, early successes and
    capped, masked and unmasked.  With more than one iteration per call the loop is entered a few
    times per chunk, not once per iteration; ``ITERATIONS_PER_CALL = 0`` (one float64 gradient call
    and one step call per iteration, from Python) does not enter it and gives the same bits too."""
    from winning_ticket.algorithms import engine, kernels

    if kernel != "fused":
        pytest.skip("the fused kernel's iteration loop")
    monkeypatch.setattr(kernels, "ITERATIONS_PER_CALL", per_call)
    real, calls = kernels.compiled("iterate"), []

    def iterate(*a):  # records (first iteration, limit, last iteration, problems finished) of each call
        t, finished = real(*a)
        calls.append((a[17], a[18], t, finished))
        return t, finished

    monkeypatch.setitem(kernels._compiled, "iterate", iterate)
    _, cases = _runs_where_every_rule_fires()
    statuses = set()
    for ps, start, kw in cases:
        calls.clear()
        fast = run_agd_batched(ps, start, progress=False, precision="float64", **kw)
        if per_call == 0:  # the per-iteration loop
            assert calls == []
        else:  # one chunk: the calls tile the iterations, each at most per_call long, and one ends
            # exactly at the iteration where a problem's last running run stopped, and only there
            stopped_at = fast.iterations - (fast.status != RunStatus.DIVERGED)  # a diverged run's step is not counted
            finishing = set(stopped_at.max(axis=1).tolist())
            assert calls[0][0] == 0 and calls[-1][2] == max(finishing)
            assert all(b[0] == a[2] + 1 for a, b in zip(calls, calls[1:]))
            assert all(t0 <= t < t1 <= t0 + per_call for t0, t1, t, _ in calls)
            assert {t for _, _, t, finished in calls if finished} == finishing
            assert sum(finished for *_, finished in calls) == len(ps)
        with monkeypatch.context() as m:
            m.setattr(engine, "SWITCH_ERROR", np.inf)
            slow = run_agd_batched(ps, start, progress=False, precision="mixed", **kw)
        for field in ("W", "iterations", "status", "final_error", "rel_error"):
            np.testing.assert_array_equal(getattr(fast, field), getattr(slow, field), err_msg=field)
        statuses |= set(fast.status.ravel())
    assert {RunStatus.CONVERGED, RunStatus.DIVERGED, RunStatus.EARLY_SUCCESS, RunStatus.MAX_ITER} <= statuses


def test_the_iteration_loop_calls_the_engines_own_kernels(kernel, monkeypatch):
    """The compiled loop binds its own dispatchers of the row kernel, the block kernel and the step,
    even when another kernel was swapped into ``kernels._compiled`` before the loop was first
    compiled (the benchmark swaps in the one-sample loop for one of its rows)."""
    from winning_ticket.algorithms import kernels

    if kernel != "fused":
        pytest.skip("the fused kernel's iteration loop")
    monkeypatch.setattr(kernels, "_compiled", {"gradient": kernels.compiled("reference")})
    for name in ("_jit_blocks", "_jit_rows", "_jit_step"):
        monkeypatch.setattr(kernels, name, None)
    kernels.compiled("iterate")
    assert kernels._jit_rows.py_func is kernels._fused_gradient
    assert kernels._jit_blocks.py_func is kernels._fused_gradient_blocks
    assert kernels._jit_step.py_func is kernels._agd_step


def test_mixed_precision_decides_convergence_in_float64(kernel, monkeypatch):
    """Even with the switch thresholds at zero (a run would otherwise stay in float32 to the end), a
    run is never stopped as converged or as an early success on a float32 gradient: it moves to
    float64 there and finishes, so noisy runs stop as converged as float64's do, at final errors
    within 1e-5 relative (the stopping rule's own resolution: float64's AGD and GD runs on one problem
    differ by about 1e-6).  Removing that rule from ``_agd_step`` made this test fail (statuses
    differ); ``test_the_compiled_step_keeps_float32_runs_going`` checks the rule itself."""
    from winning_ticket.algorithms import engine

    if kernel != "fused":
        pytest.skip("mixed precision needs the fused kernel")
    probs = _problems(3, noise=0.02)
    W0 = _starts(probs, 2)
    kw = dict(eta=0.5, beta=[0.2, 0.0], max_iter=5000, progress=False)
    f64 = run_agd_batched(probs, W0, precision="float64", **kw)
    monkeypatch.setattr(engine, "SWITCH_ERROR", 0.0)
    monkeypatch.setattr(engine, "SWITCH_CHANGE", 0.0)
    mixed = run_agd_batched(probs, W0, precision="mixed", tol=engine.STOP_TOL, **kw)
    assert set(f64.status.ravel().tolist()) == {RunStatus.CONVERGED}
    np.testing.assert_array_equal(mixed.status, f64.status)
    np.testing.assert_allclose(mixed.final_error, f64.final_error, rtol=1e-5)


def test_the_compiled_step_keeps_float32_runs_going(kernel):
    """The compiled step on hand-made states: where the stopping rule says converged (no change) or
    early success, a run in its float32 phase is not stopped but moves to float64 (at the cap it
    stops as capped); a float64 run stops; a float32 run moves to float64 below the switch error or
    change; with ``low=None`` the statuses are those of the float64 runs."""
    from winning_ticket.algorithms.engine import STATUS_CODES
    from winning_ticket.algorithms.kernels import compiled

    if kernel != "fused":
        pytest.skip("the fused path's compiled step")
    step = compiled("step")
    S, r = 4, 3
    Ws = np.ones((1, 1, r))

    def run(low, tol, success_stop, t, max_iter=100, G=0.0, switch=(0.0, 0.0)):
        W = np.full((1, 1, S, r), 1.0 + 1e-3)  # error 1e-3, no change (G = 0, no momentum)
        status, iters, err = np.zeros((1, S), np.int64), np.zeros((1, S), np.int64), np.ones((1, S))
        Gs = np.full(W.shape, G)
        step(W, W.copy(), Gs, Gs, False, np.full((1, S), 0.1), np.zeros((1, S)), Ws[:, :, :], np.array([np.sqrt(r)]),
             err, status, iters, np.empty((0, 0, 0)), False, t, max_iter, tol, success_stop, 1e6, STATUS_CODES,
             np.empty(W.shape), low, *switch)
        return status[0].tolist()

    low = lambda: np.array([[True, False, True, False]])  # noqa: E731
    for tol, success in ((1e-8, -1.0), (0.0, 0.1)):  # converged; early success
        stop = STATUS_CODES[0] if tol > 0 else STATUS_CODES[2]
        flags = low()
        assert run(flags, tol, success, t=5) == [0, stop, 0, stop] and not flags.any()
        assert run(low(), tol, success, t=99) == [STATUS_CODES[3], stop, STATUS_CODES[3], stop]
        assert run(None, tol, success, t=5) == [stop] * S
    flags = low()  # no stop due: a float32 run moves only below a switch threshold
    assert run(flags, 0.0, -1.0, t=5, G=1e-3, switch=(1e-4, 1e-9)) == [0] * S and flags.tolist() == low().tolist()
    assert run(flags, 0.0, -1.0, t=5, G=1e-3, switch=(1e-2, 1e-9)) == [0] * S and not flags.any()
    flags = low()
    assert run(flags, 0.0, -1.0, t=5, G=1e-3, switch=(1e-4, 1e-2)) == [0] * S and not flags.any()


def test_mixed_precision_runs_do_not_depend_on_their_batch(kernel):
    """In mixed precision a problem's runs are bit for bit the same alone, in a zero-padded batch of
    problems of different N, and one problem per chunk (each run's precision is its own)."""
    if kernel != "fused":
        pytest.skip("mixed precision needs the fused kernel")
    probs = [make_problem(N, 24, 3, 6, 0.02, seed_sequence(33, i)) for i, N in enumerate((97, 250, 820))]
    W0 = _starts(probs, 3)
    kw = dict(eta=[0.5, 0.5, 0.5], beta=[0.2, 0.0, 0.2], max_iter=1500, progress=False, precision="mixed")
    batch = run_agd_batched(probs, W0, **kw)
    chunks = run_agd_batched(probs, W0, max_chunk_bytes=1, **kw)
    np.testing.assert_array_equal(chunks.W, batch.W)
    for b, p in enumerate(probs):
        alone = run_agd_batched([p], W0[b:b + 1], **kw)
        np.testing.assert_array_equal(alone.W[0], batch.W[b])
        np.testing.assert_array_equal(alone.rel_error[0], batch.rel_error[b, :, :alone.rel_error.shape[2]])


def test_precision_errors_are_clear(kernel, monkeypatch):
    from winning_ticket.algorithms import engine

    probs = _problems(1)
    W0 = _starts(probs, 1)
    with pytest.raises(ValueError, match="precision = 'half'; allowed: 'float64', 'mixed'"):
        run_agd_batched(probs, W0, progress=False, precision="half")
    with pytest.raises(ValueError, match="precision = 'mixed' needs the fused kernel"):
        run_agd_batched(probs, W0, progress=False, precision="mixed", kernel="torch")
    monkeypatch.setenv("WT_PRECISION", "float16")
    with pytest.raises(ValueError, match="WT_PRECISION = 'float16'; allowed: 'float64', 'mixed'"):
        engine.precision_setting()
    monkeypatch.setenv("WT_PRECISION", "mixed")
    assert engine.precision_setting() == "mixed"
    if kernel == "fused":  # the setting is the default
        a = run_agd_batched(probs, W0, max_iter=50, progress=False)
        b = run_agd_batched(probs, W0, max_iter=50, progress=False, precision="mixed")
        np.testing.assert_array_equal(a.W, b.W)


def test_kernel_choice_errors_are_clear(monkeypatch):
    from winning_ticket.algorithms import engine, kernels

    monkeypatch.setenv("WT_KERNEL", "blas")
    with pytest.raises(ValueError, match="WT_KERNEL = 'blas'; allowed: 'auto', 'torch', 'fused'"):
        engine.engine_kernel("cpu")
    monkeypatch.setenv("WT_KERNEL", "auto")
    for r in (1, 8, 64, 65, 300):  # both layouts of the fused kernel
        assert engine.engine_kernel("cpu", r=r) == ("fused" if kernels.available() else "torch")
    r_max = kernels.BLOCKS_MAX_R
    assert kernels.layout_for(r_max + 1) == "rows" and (r_max < 1 or kernels.layout_for(r_max) == "blocks")
    assert engine.check_kernel("auto", torch.device("cuda")) == "torch"
    with pytest.raises(ValueError, match="kernel = 'fused' runs on the CPU only"):
        engine.check_kernel("fused", torch.device("cuda"))
    with pytest.raises(ValueError, match="kernel = 'gpu'"):
        run_agd_batched(_problems(1), _starts(_problems(1), 1), kernel="gpu", progress=False)
    monkeypatch.setattr(kernels, "numba", None)
    assert engine.check_kernel("auto", torch.device("cpu")) == "torch"
    with pytest.raises(ValueError, match="needs numba"):
        engine.check_kernel("fused", torch.device("cpu"))


def test_blocked_kernel_equals_the_one_sample_loop(kernel):
    """Both fused kernels compute what the plain one-sample loop computes (the same sums; the dot
    products' vector lanes may split differently): the row kernel (samples eight at a time, runs two
    at a time, with and without the pairs) and the sample-block kernel (samples along the vector
    lanes, in blocks of ``SAMPLE_BLOCK``), for sample counts that are and are not multiples of eight
    and of the block, odd and even S, r below, at and above the vector width and not a multiple of
    eight, problems of different n_valid.  The row kernel's default call is the engine's own
    compiled version, bit for bit (the engine's block path: ``test_the_engine_takes_the_layout_for_r``)."""
    from winning_ticket.algorithms.kernels import SAMPLE_BLOCK, compiled, fused_gradient

    if kernel != "fused":
        pytest.skip("the fused kernel's own test")
    rng = np.random.default_rng(3)
    cases = ((1, 1, 1), (3, 6, 2), (5, 13, 3), (37, 13, 3), (40, 17, 5), (45, 21, 3), (90, 40, 10),
             (101, 100, 2), (50, 24, 5), (203, 64, 4), (SAMPLE_BLOCK + 1, 9, 3), (2 * SAMPLE_BLOCK, 16, 2),
             (60, 15, 3), (33, 23, 1), (70, 12, 3), (44, 11, 2), (52, 10, 3), (29, 20, 1))  # r mod 8 = 0 to 7
    for N, r, S in cases:
        XN = rng.standard_normal((3, N, 4, r))
        y = rng.standard_normal((3, N))
        W = rng.standard_normal((3, 4, S, r)) / np.sqrt(r)
        n = np.array([N, max(1, N - 1), max(1, N // 2)])
        plain = fused_gradient(XN, y, W, n, reference=True)
        engine_calls = {"rows": compiled("gradient")(XN, y, W, n, np.empty(W.shape))}  # as the engine calls it
        for layout, pair_runs in (("rows", True), ("rows", False), ("blocks", True)):
            blocked = fused_gradient(XN, y, W, n, pair_runs=pair_runs, layout=layout)
            assert np.max(np.abs(blocked - plain)) <= 1e-14 * np.max(np.abs(plain)), (N, r, S, layout, pair_runs)
            if layout == "rows" and pair_runs:
                np.testing.assert_array_equal(blocked, engine_calls[layout])
            # n_valid is honoured: problem 2 gives the bits of its first N // 2 samples on their own
            alone = fused_gradient(np.ascontiguousarray(XN[2:, :n[2]]), np.ascontiguousarray(y[2:, :n[2]]),
                                   W[2:], n[2:], pair_runs=pair_runs, layout=layout)
            np.testing.assert_array_equal(blocked[2:], alone)
            # a run's gradient is its own: any other run of the problem diverging changes no bit of it
            for s in range(S):
                for bad in (np.nan, 1e300):
                    Wn = W.copy()
                    Wn[:, :, s] = bad
                    poisoned = fused_gradient(XN, y, Wn, n, pair_runs=pair_runs, layout=layout)
                    others = [t for t in range(S) if t != s]
                    np.testing.assert_array_equal(poisoned[:, :, others], blocked[:, :, others])
    with pytest.raises(ValueError, match="layout = 'columns'; allowed: 'rows', 'blocks'"):
        fused_gradient(XN, y, W, n, layout="columns")
    with pytest.raises(ValueError, match="layout = 'blocks' takes neither reference=True"):
        fused_gradient(XN, y, W, n, layout="blocks", pair_runs=False)


def test_kernels_compile_for_float32_inputs(kernel):
    """Given float32 arrays, both fused kernels compile a float32 version (products and running sums in
    float32: what the benchmark measures as the float32 precision; the engine itself passes float64)
    whose gradients agree with the float64 one-sample loop on the same (rounded) inputs to float32
    rounding, and differ from it (the sums really are float32)."""
    from winning_ticket.algorithms.kernels import compiled, fused_gradient, to_blocks

    if kernel != "fused":
        pytest.skip("the fused kernel's own test")
    rng = np.random.default_rng(5)
    for N, r, S in ((300, 9, 2), (600, 100, 3)):
        XN = rng.standard_normal((2, N, 4, r)).astype(np.float32)
        y = rng.standard_normal((2, N)).astype(np.float32)
        W = (rng.standard_normal((2, 4, S, r)) / np.sqrt(r)).astype(np.float32)
        n = np.array([N, N - 7])
        plain = fused_gradient(XN.astype(np.float64), y.astype(np.float64), W.astype(np.float64), n, reference=True)
        XB, rows, yB = to_blocks(XN, y)
        assert XB.dtype == yB.dtype == np.float32
        for name, args in (("gradient", (XN, y)), ("blocks", (XB, rows, yB))):
            G = compiled(name)(*args, W, n, np.empty(W.shape, np.float32))
            assert G.dtype == np.float32
            err = np.max(np.abs(G - plain)) / np.max(np.abs(plain))
            assert err < 1e-5, (name, N, r, S, err)
            # float64 sums would give the reference rounded to float32 in (nearly) every entry
            assert np.mean(G != plain.astype(np.float32)) > 0.3, (name, N, r, S)


def test_the_engine_takes_the_layout_for_r(kernel, monkeypatch):
    """With the fused kernel the engine runs the sample-block kernel for r up to ``BLOCKS_MAX_R`` and the
    row kernel above it (the compiled functions it asks for are recorded; under the ``fused-rows``
    parameter ``BLOCKS_MAX_R`` is 0, so the rows at every r), and runs over several sample blocks
    (N = 2 SAMPLE_BLOCK + 88: three blocks, the last of 88 samples) have the torch kernel's status and iteration count, with
    iterates equal to rounding.  In float64 the kernel runs inside the compiled loop, which picks it by
    a flag: its iterates are those of the kernel the engine asked for, called once per iteration
    (``ITERATIONS_PER_CALL = 0``), bit for bit."""
    from winning_ticket.algorithms import kernels

    if kernel != "fused":
        pytest.skip("the fused kernel's own test")
    real, asked = kernels.compiled, []
    monkeypatch.setattr(kernels, "compiled", lambda name: (asked.append(name), real(name))[1])
    N = 2 * kernels.SAMPLE_BLOCK + 88  # blocks of SAMPLE_BLOCK, SAMPLE_BLOCK and 88 samples
    assert kernels.layout_for(kernels.BLOCKS_MAX_R) == "blocks" and kernels.layout_for(kernels.BLOCKS_MAX_R + 1) == "rows"
    for r in (6, 100, 140):  # blocks; blocks (r <= 128); rows
        probs = _problems(2, N=N, d=150, K=3, r=r, noise=0.02)
        W0 = _starts(probs, 3)
        asked.clear()
        fused = run_agd_batched(probs, W0, [0.5, 0.5, 0.5], [0.2, 0.0, 0.2], max_iter=300, progress=False)
        assert "gradient" not in asked or "blocks" not in asked
        assert ("blocks" if r <= kernels.BLOCKS_MAX_R else "gradient") in asked, (r, kernels.BLOCKS_MAX_R, asked)
        torch_runs = run_agd_batched(probs, W0, [0.5, 0.5, 0.5], [0.2, 0.0, 0.2], max_iter=300, progress=False,
                                     kernel="torch")
        np.testing.assert_array_equal(fused.status, torch_runs.status)
        np.testing.assert_array_equal(fused.iterations, torch_runs.iterations)
        np.testing.assert_allclose(fused.W, torch_runs.W, rtol=1e-9, atol=1e-13)
        with monkeypatch.context() as m:
            m.setattr(kernels, "ITERATIONS_PER_CALL", 0)
            per_iteration = run_agd_batched(probs, W0, [0.5, 0.5, 0.5], [0.2, 0.0, 0.2], max_iter=300, progress=False)
        np.testing.assert_array_equal(fused.W, per_iteration.W)


def test_sample_blocks_layout():
    """``to_blocks`` puts sample ``k L + l`` of neuron j's input i at ``XB[b, k, j r + i, l]`` (``rows`` says
    so), zero beyond N; ``feature_blocks`` puts feature u of the union of a problem's supports at one
    row, ``rows`` pointing each neuron's inputs at theirs, a smaller union and a shorter problem
    zero-padded; ``check_blocks`` refuses mismatched shapes, sample counts and rows out of range."""
    from winning_ticket.algorithms.kernels import check_blocks, feature_blocks, to_blocks

    rng = np.random.default_rng(0)
    XN, y = rng.standard_normal((2, 11, 3, 5)), rng.standard_normal((2, 11))
    XB, rows, yB = to_blocks(XN, y, L=4)
    assert XB.shape == (2, 3, 15, 4) and yB.shape == (2, 12) and XB.flags.c_contiguous
    for n in range(11):
        for j in range(3):
            np.testing.assert_array_equal(XB[:, n // 4, rows[0, j], n % 4], XN[:, n, j])
    np.testing.assert_array_equal(rows, np.broadcast_to(np.arange(15).reshape(1, 3, 5), (2, 3, 5)))
    assert np.all(XB[:, 2, :, 3] == 0.0) and np.all(yB[:, 11] == 0.0)
    np.testing.assert_array_equal(yB[:, :11], y)
    W = np.zeros((2, 3, 2, 5))
    check_blocks(XB, rows, yB, W, [11, 12])
    with pytest.raises(ValueError, match=r"n_valid must hold B = 2 sample counts in \[1, 12\]"):
        check_blocks(XB, rows, yB, W, [11, 13])
    with pytest.raises(ValueError, match="shapes do not match"):
        check_blocks(XB, rows, yB[:, :11].copy(), W, [11, 11])
    bad = rows.copy()
    bad[1, 2, 4] = 15
    with pytest.raises(ValueError, match=r"rows must index the F = 15 rows of a block: values in \[0, 14\]"):
        check_blocks(XB, bad, yB, W, [11, 12])

    probs = [make_problem(N, 12, 3, 5, 0.0, seed_sequence(4, i)) for i, N in enumerate((11, 9))]
    XF, rows, yF = feature_blocks([p.X for p in probs], [p.omega for p in probs], [p.y for p in probs], L=4)
    unions = [np.unique(p.omega) for p in probs]
    assert len(unions[0]) != len(unions[1]) and max(map(len, unions)) < 15  # shared features, unequal unions
    assert XF.shape == (2, 3, max(map(len, unions)), 4) and rows.shape == (2, 3, 5) and yF.shape == (2, 12)
    for b, p in enumerate(probs):
        np.testing.assert_array_equal(unions[b][rows[b]], p.omega)  # a neuron's inputs are its support's rows
        for n in range(p.N):
            np.testing.assert_array_equal(XF[b, n // 4, :len(unions[b]), n % 4], p.X[n, unions[b]])
        assert np.all(XF[b, :, len(unions[b]):] == 0.0) and np.all(yF[b, p.N:] == 0.0)
        np.testing.assert_array_equal(yF[b, :p.N], p.y)
    assert np.all(XF[1, 2, :, 1:] == 0.0)  # problem 1 has 9 samples: block 2 holds one
    check_blocks(XF, rows, yF, W, [11, 9])
    with pytest.raises(ValueError, match=r"omegas\[1\] has shape \(2, 5\)"):
        feature_blocks([p.X for p in probs], [probs[0].omega, probs[1].omega[:2]], [p.y for p in probs])


def test_shared_feature_rows_give_the_per_neuron_layouts_bits(kernel):
    """The engine's layout (``feature_blocks``: a feature that several neurons read is stored once)
    gives the block kernel's gradients bit for bit as the per-neuron layout (``to_blocks``), for
    overlapping and disjoint supports, several blocks, problems of different N and unions of
    different sizes, odd and even S."""
    from winning_ticket.algorithms.kernels import compiled, feature_blocks, to_blocks

    if kernel != "fused":
        pytest.skip("the fused kernel's own test")
    rng = np.random.default_rng(11)
    blocks = compiled("blocks")
    for Ns, d, K, r, S, disjoint in (((300, 250), 40, 4, 12, 2, False), ((1700, 1000), 300, 5, 100, 3, False),
                                     ((500, 500), 60, 3, 20, 2, True), ((90, 37), 9, 6, 5, 1, False)):
        probs = [make_problem(N, d, K, r, 0.0, seed_sequence(9, i), disjoint=disjoint) for i, N in enumerate(Ns)]
        W = rng.standard_normal((len(probs), K, S, r)) / np.sqrt(r)
        n = np.array(Ns)
        N = max(Ns)
        XN = np.stack([np.pad(p.X[:, p.omega], ((0, N - p.N), (0, 0), (0, 0))) for p in probs])
        y = np.stack([np.pad(p.y, (0, N - p.N)) for p in probs])
        per_neuron = blocks(*to_blocks(XN, y), W, n, np.empty(W.shape))
        XF, rows, yF = feature_blocks([p.X for p in probs], [p.omega for p in probs], [p.y for p in probs])
        assert (XF.shape[2] == K * r) == disjoint, (XF.shape, K * r)
        np.testing.assert_array_equal(blocks(XF, rows, yF, W, n, np.empty(W.shape)), per_neuron)


def test_the_engine_reads_each_feature_once(kernel, monkeypatch):
    """The engine's block path lays problems out with ``feature_blocks`` (and its rows path does not),
    and its runs are the same bit for bit when that layout is swapped for the per-neuron one."""
    from winning_ticket.algorithms import kernels

    if kernel != "fused" or kernels.layout_for(8) != "blocks":
        pytest.skip("the fused kernel's block layout's own test")
    real, calls = kernels.feature_blocks, []
    monkeypatch.setattr(kernels, "feature_blocks", lambda *a, **k: (calls.append(len(a[0])), real(*a, **k))[1])
    probs = _problems(3, N=400, d=30, K=4, r=8, noise=0.01)
    W0 = _starts(probs, 2)
    shared = run_agd_batched(probs, W0, [0.5, 0.5], [0.2, 0.0], max_iter=200, progress=False, kernel="fused")
    assert calls == [3]
    assert max(len(np.unique(p.omega)) for p in probs) < 4 * 8  # features really are shared

    def per_neuron(Xs, omegas, ys, L=None):  # the previous layout: one row per neuron input
        N = max(X.shape[0] for X in Xs)
        XN = np.stack([np.pad(X[:, om], ((0, N - X.shape[0]), (0, 0), (0, 0))) for X, om in zip(Xs, omegas)])
        return kernels.to_blocks(XN, np.stack([np.pad(y, (0, N - len(y))) for y in ys]), L)

    monkeypatch.setattr(kernels, "feature_blocks", per_neuron)
    old = run_agd_batched(probs, W0, [0.5, 0.5], [0.2, 0.0], max_iter=200, progress=False, kernel="fused")
    for field in ("W", "iterations", "status", "final_error"):
        np.testing.assert_array_equal(getattr(shared, field), getattr(old, field))
    calls.clear()
    monkeypatch.setattr(kernels, "feature_blocks", lambda *a, **k: (calls.append(len(a[0])), real(*a, **k))[1])
    wide = _problems(1, N=200, d=400, K=2, r=kernels.BLOCKS_MAX_R + 1)
    run_agd_batched(wide, _starts(wide, 1), 0.5, 0.2, max_iter=3, progress=False, kernel="fused")
    assert calls == []


def test_compiled_step_equals_the_torch_step(kernel):
    """The fused path's compiled iteration (step and stopping rule, in place) against the torch path's
    ``_step``, on states where every rule fires: the iterates bit for bit, the same statuses and
    iteration counts, the errors to rounding."""
    from winning_ticket.algorithms import engine, kernels

    if kernel != "fused":
        pytest.skip("the fused kernel's own test")
    rng = np.random.default_rng(4)
    B, K, S, r = 3, 4, 6, 7
    Ws = rng.standard_normal((B, K, r))
    W = Ws[:, :, None, :] + 0.3 * rng.standard_normal((B, K, S, r))
    Wp = W + 0.01 * rng.standard_normal((B, K, S, r))
    G = rng.standard_normal((B, K, S, r))
    G[0, :, 1] = 1e9  # diverges
    G[0, :, 2], Wp[0, :, 2] = 0.0, W[0, :, 2]  # no change: converged
    W[1, :, 3] = Ws[1] + 1e-6  # near W*, and the step (eta = 0.5) halves the distance: an early success
    Wp[1, :, 3], G[1, :, 3] = W[1, :, 3], W[1, :, 3] - Ws[1]
    M = (rng.random((B, K, S, r)) < 0.8).astype(float)
    eta, beta = np.full((B, S), 0.5), rng.random((B, S)) * 0.3
    ws_norm = np.linalg.norm(Ws.reshape(B, -1), axis=1)
    t_ = torch.from_numpy
    for masked in (False, True):
        for t, max_iter in ((5, 100), (99, 100)):
            err = np.linalg.norm((W - Ws[:, :, None]).transpose(0, 2, 1, 3).reshape(B, S, -1), axis=2) / ws_norm[:, None]
            status = np.zeros((B, S), dtype=np.int64)
            status[2, 5] = int(RunStatus.CONVERGED)  # already stopped: left alone
            iters = np.full((B, S), 7, dtype=np.int64)
            hist = np.full((B, S, max_iter + 1), np.nan)
            want = engine._step(t_(W.copy()), t_(Wp.copy()), t_(G.copy()), t_(M) if masked else None,
                                t_(eta).view(B, 1, S, 1), t_(beta).view(B, 1, S, 1), t_(Ws).unsqueeze(2),
                                t_(ws_norm).unsqueeze(1), t_(err.copy()), t_(status.copy()), t_(iters.copy()), t,
                                max_iter, 1e-8, 1e-4)
            Wc, Wpc, errc, stc, itc = W.copy(), Wp.copy(), err.copy(), status.copy(), iters.copy()
            finished = kernels.compiled("step")(Wc, Wpc, G, M, masked, eta, beta, Ws, ws_norm, errc, stc, itc, hist,
                                                True, t, max_iter, 1e-8, 1e-4, 1e6, engine.STATUS_CODES,
                                                np.empty_like(W))
            np.testing.assert_array_equal(Wc, want[0].numpy())
            np.testing.assert_array_equal(Wpc, want[1].numpy())
            np.testing.assert_allclose(errc, want[2].numpy(), rtol=1e-14)
            np.testing.assert_array_equal(stc, want[3].numpy())
            np.testing.assert_array_equal(itc, want[4].numpy())
            np.testing.assert_allclose(hist[:, :, t + 1], want[5].numpy(), rtol=1e-14)
            assert finished == int((want[3].numpy() != 0).all(axis=1).sum())
            codes = set(stc.ravel().tolist())
            assert {0, int(RunStatus.DIVERGED), int(RunStatus.CONVERGED), int(RunStatus.EARLY_SUCCESS)} <= codes | {0}
            if t == max_iter - 1:
                assert int(RunStatus.MAX_ITER) in codes and finished == B


def test_problems_of_different_N_share_a_batch(kernel):
    """Problems of different N in one call (zero-padded inside, each gradient divided by its own N)
    run as they do alone: bit for bit with the fused kernel, to rounding with the torch kernel.  With
    the sample blocks, the batch's blocks are ``SAMPLE_BLOCK`` long (one problem has more samples) and
    each problem's own are shorter when it runs alone (``block_length``)."""
    from winning_ticket.algorithms.agd import SUCCESS_TOL
    from winning_ticket.algorithms.kernels import SAMPLE_BLOCK, block_length

    sizes = (97, 30, 150, 45, 250, SAMPLE_BLOCK + 50)
    assert block_length(max(sizes)) == SAMPLE_BLOCK and block_length(97) == 104
    probs = [make_problem(N, 24, 3, 6, 0.0, seed_sequence(32, i)) for i, N in enumerate(sizes)]
    W0 = _starts(probs, 2)
    both = run_agd_batched(probs, W0, 0.5, [0.2, 0.0], max_iter=1500, progress=False, success_stop=SUCCESS_TOL)
    assert {0, 1} <= set(both.success.ravel().tolist())  # both outcomes occur: the comparison has teeth
    for b, p in enumerate(probs):
        alone = run_agd_batched([p], W0[b : b + 1], 0.5, [0.2, 0.0], max_iter=1500, progress=False,
                                success_stop=SUCCESS_TOL)
        np.testing.assert_array_equal(both.status[b], alone.status[0])
        np.testing.assert_array_equal(both.iterations[b], alone.iterations[0])
        if kernel == "fused":
            np.testing.assert_array_equal(both.W[b], alone.W[0])
            n = alone.rel_error.shape[2]
            np.testing.assert_array_equal(both.rel_error[b, :, :n], alone.rel_error[0])
        else:
            np.testing.assert_allclose(both.W[b], alone.W[0], rtol=1e-9, atol=1e-13)
    with pytest.raises(ValueError, match=r"share \(d, K, r\)"):
        run_agd_batched(probs + [make_problem(97, 24, 3, 5, 0.0, seed_sequence(1))], np.zeros((5, 1, 6, 3)),
                        progress=False)
    with pytest.raises(ValueError, match=r"share \(N, d, K, r\)"):
        stack_problems(probs)


def test_chunks_count_the_padded_sample_blocks(kernel, monkeypatch):
    """The chunk size counts the memory a problem takes in its kernel's layout.  With the sample blocks
    a problem holds one row per feature its neurons read (the batch's largest union of supports) and
    a problem of ``SAMPLE_BLOCK + 2`` samples holds two whole blocks, so a chunk of four blocks' bytes
    gets two problems (three would fit unpadded); a problem of N = 20 holds 24 samples (its block is
    rounded up to eight samples, not to a whole ``SAMPLE_BLOCK``), so six problems' unpadded bytes
    hold five.  The torch kernel and the rows hold N."""
    from winning_ticket.algorithms import engine, kernels

    padded = kernel == "fused" and kernels.layout_for(6) == "blocks"
    L = kernels.SAMPLE_BLOCK
    sizes = []
    real = engine._run_chunk
    monkeypatch.setattr(engine, "_run_chunk", lambda problems, *a, **k: (sizes.append(len(problems)),
                                                                          real(problems, *a, **k))[1])
    for N, budget, blocks, rows in ((L + 2, 4 * L, [2, 2, 2], [3, 3]), (20, 6 * 20, [5, 1], [6])):
        probs = _problems(6, N=N, d=24, K=3, r=6)
        F = max(len(np.unique(p.omega)) for p in probs)  # the sample blocks hold each feature once
        assert F < 3 * 6
        sizes.clear()
        engine.run_agd_batched(probs, _starts(probs, 1), 0.5, 0.2, max_iter=5, progress=False,
                               max_chunk_bytes=budget * (F if padded else 3 * 6) * 8)
        assert sizes == (blocks if padded else rows), (N, sizes)
    if padded:  # mixed precision holds a float32 copy beside the float64: 12 bytes a number
        probs = _problems(4, N=24, d=24, K=3, r=6)
        F = max(len(np.unique(p.omega)) for p in probs)
        for precision, expected in (("float64", [2, 2]), ("mixed", [1, 1, 1, 1])):
            sizes.clear()
            engine.run_agd_batched(probs, _starts(probs, 1), 0.5, 0.2, max_iter=5, progress=False,
                                   max_chunk_bytes=2 * 24 * F * 8, precision=precision)
            assert sizes == expected, (precision, sizes)


def test_chunk_size_setting(kernel, monkeypatch):
    """``$WT_CHUNK_BYTES`` sets the CPU chunk when ``max_chunk_bytes`` is not given; bad values are refused."""
    from winning_ticket.algorithms import engine

    monkeypatch.delenv("WT_CHUNK_BYTES", raising=False)
    assert engine.engine_chunk_bytes() == engine.CHUNK_BYTES_CPU == 8 << 20
    for bad in ("0", "-5", "16MiB"):
        monkeypatch.setenv("WT_CHUNK_BYTES", bad)
        with pytest.raises(ValueError, match="WT_CHUNK_BYTES = .*allowed: a positive integer"):
            engine.engine_chunk_bytes()
    probs = _problems(4, N=300, d=24, K=3, r=6)
    sizes = []
    real = engine._run_chunk
    monkeypatch.setattr(engine, "_run_chunk", lambda problems, *a, **k: (sizes.append(len(problems)),
                                                                          real(problems, *a, **k))[1])
    monkeypatch.setenv("WT_CHUNK_BYTES", "1")  # one problem per chunk
    engine.run_agd_batched(probs, _starts(probs, 1), 0.5, 0.2, max_iter=3, progress=False)
    assert sizes == [1, 1, 1, 1]
