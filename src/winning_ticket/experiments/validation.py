"""Small input validators shared by the package.

Every public function validates its arguments up front and raises a
``ValueError`` that names the offending parameter and the allowed range,
so a typo in a notebook fails loudly instead of producing a wrong figure.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    """Return ``value`` as an int, or raise if it is not an integer in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        allowed = f"{low} <= {name}" + (f" <= {high}" if high is not None else "")
        raise ValueError(f"{name} = {value} is out of range; allowed: {allowed}")
    return value


def check_real(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a finite float, or raise if it is outside the interval."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    bad_low = low is not None and (value <= low if low_open else value < low)
    bad_high = high is not None and (value >= high if high_open else value > high)
    if bad_low or bad_high:
        left = "" if low is None else f"{low} {'<' if low_open else '<='} "
        right = "" if high is None else f" {'<' if high_open else '<='} {high}"
        raise ValueError(f"{name} = {value} is out of range; allowed: {left}{name}{right}")
    return value


def check_array(name: str, value: Any, shape: tuple[int | None, ...]) -> np.ndarray:
    """Return ``value`` as a float64 array of the given shape (None = any length) with finite entries.

    Complex, boolean-free object or string input is rejected rather than silently converted.
    """
    raw = np.asarray(value)
    if np.iscomplexobj(raw):
        raise ValueError(f"{name} must be real, got a complex array")
    if raw.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be a real numeric array, got dtype {raw.dtype}")
    arr = raw.astype(np.float64, copy=False)
    if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite entries")
    return arr
