"""Decision rules that can fail: SUPPORTED, NOT SUPPORTED or INCONCLUSIVE from an interval.

A claim's rule is fixed before its evidence run is looked at.  Every rule here reduces the
data to an estimate with a 95% interval over the *independent unit* (a problem instance, a
seed) and compares the interval with what the claim says:

* the interval lies entirely where the claim says the value is: **SUPPORTED**;
* it lies entirely on the other side (or outside the claimed band): **NOT SUPPORTED**;
* it straddles the boundary, or there are fewer independent units than the rule needs:
  **INCONCLUSIVE**, with the reason.

Rules:

* :func:`above` / :func:`below`: an estimate beyond a threshold (e.g. "the slope is positive");
* :func:`within`: an estimate inside a band (e.g. "the log-log exponent is 1/2 ± 0.15");
* :func:`rate_at_least`: a success rate at least a level (Wilson interval);
* :func:`paired_difference`: the mean of paired differences (same problem, two treatments) with a
  Student-t interval over the pairs;
* :func:`cluster_slope`: a least-squares slope with a bootstrap interval that resamples whole
  independent units (every problem instance keeps all its points);
* :func:`holm`: Holm's step-down adjustment when one claim rests on several comparisons;
* :func:`at_every`: a claim made at every point of a grid (every n, every width), from one
  decision per point, each at the Bonferroni level :func:`bonferroni_level` for the grid's size.

Each returns a :class:`Decision` (verdict, estimate, interval, units, reason), which a chapter
turns into a :class:`~winning_ticket.experiments.claims.Claim` with :meth:`Decision.claim`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .claims import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, Claim
from .stats import wilson_interval
from .validation import check_int, check_real

LEVEL = 0.95
"""Coverage of every interval."""


@dataclass(frozen=True)
class Decision:
    """The outcome of a rule: the verdict, the estimate with its interval, and on how many units it rests."""

    verdict: str
    estimate: float
    low: float
    high: float
    units: int
    reason: str = ""

    @property
    def holds(self) -> bool | None:
        """``True``, ``False`` or ``None`` (INCONCLUSIVE), as :class:`~winning_ticket.experiments.claims.Claim` wants it."""
        return {SUPPORTED: True, NOT_SUPPORTED: False}.get(self.verdict)

    def describe(self, what: str = "estimate", fmt: str = ".3g") -> str:
        """``what = x [lo, hi] (95% CI, n units)`` and the reason, for a claim's statistic."""
        text = f"{what} = {self.estimate:{fmt}} [{self.low:{fmt}}, {self.high:{fmt}}] (95% CI, {self.units} units)"
        return text + (f"; {self.reason}" if self.reason else "")

    def claim(self, name: str, statement: str, rule: str, what: str = "estimate", fmt: str = ".3g") -> Claim:
        """The :class:`~winning_ticket.experiments.claims.Claim` this decision makes."""
        return Claim(name=name, statement=statement, holds=self.holds, statistic=self.describe(what, fmt), rule=rule)


def _too_few(estimate: float, units: int, needed: int) -> Decision | None:
    if units < needed:
        return Decision(INCONCLUSIVE, estimate, float("nan"), float("nan"), units,
                        f"{units} independent unit(s), the rule needs at least {needed}")
    return None


def compare(estimate: float, low: float, high: float, units: int, *, lower: float | None = None,
            upper: float | None = None, min_units: int = 5) -> Decision:
    """The claim "the value lies in [lower, upper]" (either bound may be ``None``) judged from an interval."""
    if lower is None and upper is None:
        raise ValueError("compare needs lower, upper or both")
    few = _too_few(estimate, units, min_units)
    if few is not None:
        return few
    if not (np.isfinite(low) and np.isfinite(high)):
        return Decision(INCONCLUSIVE, estimate, low, high, units, "the interval is undefined")
    inside = (lower is None or low > lower) and (upper is None or high < upper)
    outside = (lower is not None and high < lower) or (upper is not None and low > upper)
    if inside:
        return Decision(SUPPORTED, estimate, low, high, units)
    if outside:
        return Decision(NOT_SUPPORTED, estimate, low, high, units)
    bound = " and ".join(f"{b:g}" for b in (lower, upper) if b is not None)
    return Decision(INCONCLUSIVE, estimate, low, high, units, f"the interval overlaps the boundary {bound}")


def above(estimate, low, high, units, threshold: float, min_units: int = 5) -> Decision:
    """The claim "the value is above ``threshold``"."""
    return compare(estimate, low, high, units, lower=threshold, min_units=min_units)


def below(estimate, low, high, units, threshold: float, min_units: int = 5) -> Decision:
    """The claim "the value is below ``threshold``"."""
    return compare(estimate, low, high, units, upper=threshold, min_units=min_units)


def within(estimate, low, high, units, lower: float, upper: float, min_units: int = 5) -> Decision:
    """The claim "the value lies in the band [lower, upper]" (an equivalence test)."""
    if not lower < upper:
        raise ValueError(f"within needs lower < upper, got [{lower}, {upper}]")
    return compare(estimate, low, high, units, lower=lower, upper=upper, min_units=min_units)


def mean_interval(values, level: float = LEVEL) -> tuple[float, float, float]:
    """The mean of independent values and its Student-t interval at ``level`` (default 95%; NaNs
    when fewer than two values).

    The t interval keeps its coverage at the small numbers of units a rule may see (a
    percentile bootstrap covers only about 85-90% at 5 to 10 units).
    """
    from scipy.stats import t as student_t

    level = check_real("level", level, 0.0, 1.0, low_open=True, high_open=True)
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return (float(v.mean()) if v.size else float("nan")), float("nan"), float("nan")
    half = student_t.ppf((1 + level) / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)
    return float(v.mean()), float(v.mean() - half), float(v.mean() + half)


def paired_difference(a, b, *, lower: float | None = None, upper: float | None = None,
                      min_units: int = 5, level: float = LEVEL) -> Decision:
    """The claim "mean(a - b) lies in [lower, upper]" for pairs (a[i], b[i]) measured on the same unit i
    (Student-t interval of the mean difference over the pairs, at ``level``).

    Pairs with a non-finite member are left out (and counted out of the units).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be one-dimensional and paired, got shapes {a.shape} and {b.shape}")
    d = a - b
    d = d[np.isfinite(d)]
    est, lo, hi = mean_interval(d, level)
    return compare(est, lo, hi, int(d.size), lower=lower, upper=upper, min_units=min_units)


def bonferroni_level(points: int) -> float:
    """The interval level that keeps a 95% family-wise level over ``points`` comparisons."""
    points = check_int("points", points, 1)
    return 1 - (1 - LEVEL) / points


def at_every(decisions) -> Decision:
    """The claim "it holds at every point" from one :class:`Decision` per point (a mapping
    ``label -> Decision``, each made at :func:`bonferroni_level` for the number of points).

    SUPPORTED when every point is; NOT SUPPORTED when any point is (the first such is reported);
    otherwise INCONCLUSIVE, naming the undecided points.  The reported estimate and interval are
    those of the deciding point (for SUPPORTED, the point whose interval comes closest to the
    boundary is not known to this function: the first point is shown, and the reason lists all).
    """
    items = list(dict(decisions).items())
    if not items:
        raise ValueError("at_every needs at least one decision")
    units = min(d.units for _, d in items)
    summary = "; ".join(f"{label}: {d.verdict} {d.estimate:.3g} [{d.low:.3g}, {d.high:.3g}]" for label, d in items)
    failed = [(label, d) for label, d in items if d.verdict == NOT_SUPPORTED]
    if failed:
        label, d = failed[0]
        return Decision(NOT_SUPPORTED, d.estimate, d.low, d.high, units, f"fails at {label}; {summary}")
    open_ = [(label, d) for label, d in items if d.verdict == INCONCLUSIVE]
    if open_:
        label, d = open_[0]
        return Decision(INCONCLUSIVE, d.estimate, d.low, d.high, units,
                        f"undecided at {', '.join(str(lbl) for lbl, _ in open_)}; {summary}")
    label, d = items[0]
    return Decision(SUPPORTED, d.estimate, d.low, d.high, units, summary)


def rate_at_least(successes: int, trials: int, level: float, min_units: int = 10) -> Decision:
    """The claim "the success probability is at least ``level``", judged by its Wilson 95% interval:
    SUPPORTED when the interval lies at or above ``level``, NOT SUPPORTED when it lies below."""
    level = check_real("level", level, 0.0, 1.0)
    trials = check_int("trials", trials, 0)
    successes = check_int("successes", successes, 0, trials)
    rate = successes / trials if trials else float("nan")
    few = _too_few(rate, trials, min_units)
    if few is not None:
        return few
    lo, hi = (float(v) for v in wilson_interval(successes, trials))
    if lo >= level:
        return Decision(SUPPORTED, rate, lo, hi, trials)
    if hi < level:
        return Decision(NOT_SUPPORTED, rate, lo, hi, trials)
    return Decision(INCONCLUSIVE, rate, lo, hi, trials, f"the interval overlaps the level {level:g}")


def cluster_slope(x, y, units, *, seed: int, n_boot: int = 2000) -> tuple[float, float, float, int]:
    """Least-squares slope of ``y`` on ``x`` with a bootstrap 95% interval resampling whole units.

    ``units`` labels the independent unit of each point (a problem instance seen at several x,
    or one point per unit); a resample draws units with replacement and keeps all their points.
    Returns ``(slope, low, high, number of units)``; NaNs when x takes fewer than two values.
    """
    x, y, units = (np.asarray(v) for v in (x, y, units))
    if not (x.ndim == y.ndim == units.ndim == 1 and x.shape == y.shape == units.shape):
        raise ValueError(f"x, y and units must be one-dimensional and of equal length, got {x.shape}, {y.shape}, {units.shape}")
    ok = np.isfinite(x.astype(float)) & np.isfinite(y.astype(float))
    x, y, units = x[ok].astype(float), y[ok].astype(float), units[ok]
    labels, inverse = np.unique(units, return_inverse=True)
    if np.unique(x).size < 2:
        return float("nan"), float("nan"), float("nan"), int(labels.size)
    slope = float(np.polyfit(x, y, 1)[0])
    members = [np.flatnonzero(inverse == i) for i in range(labels.size)]
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(check_int("n_boot", n_boot, 100)):
        idx = np.concatenate([members[i] for i in rng.integers(0, labels.size, labels.size)])
        if np.unique(x[idx]).size >= 2:
            boots.append(np.polyfit(x[idx], y[idx], 1)[0])
    if len(boots) < n_boot // 2:  # most resamples see a single x: the interval means nothing
        return slope, float("nan"), float("nan"), int(labels.size)
    lo, hi = np.percentile(boots, [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2])
    return slope, float(lo), float(hi), int(labels.size)


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control for several comparisons)."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1 or np.any((p < 0) | (p > 1)):
        raise ValueError("p_values must be a one-dimensional array of probabilities")
    order = np.argsort(p, kind="stable")
    m = p.size
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def sign_test_p(differences) -> float:
    """Two-sided exact sign-test p-value that the median paired difference is 0 (zeros left out)."""
    from scipy.stats import binomtest

    d = np.asarray(differences, dtype=np.float64)
    d = d[np.isfinite(d) & (d != 0)]
    if d.size == 0:
        return 1.0
    return float(binomtest(int((d > 0).sum()), int(d.size), 0.5).pvalue)
