"""The chapter protocol: what every chapter module under :mod:`winning_ticket.chapters` provides.

A chapter module reproduces one figure (or one result) of a paper.  It defines

* a **config**: a frozen dataclass deriving from :class:`ChapterConfig`.  Its field defaults
  are the ``paper`` set-up; ``PROFILES`` maps each other profile's name to the fields it
  overrides (data, not code), and ``validate`` checks every constraint when the config is
  built, so an impossible config fails at once with the parameter's name;
* a **result**: a dataclass deriving from :class:`ChapterResult` that holds the config, the
  tidy per-trial tables (pandas, one row per run; their names in ``TABLES``) and the wall time;
* ``run(config, *, executor=None, cache_dir=None, progress=None) -> result``: the experiment.
  ``executor`` is any :class:`concurrent.futures.Executor` (default: in-process),
  ``cache_dir`` a directory for resumable unit results (``None``: no cache), ``progress``
  shows a bar (``None``: on unless ``WT_PROGRESS=0`` or ``CI`` is set);
* ``check_claims(result) -> list[Claim]``: the verdicts; its docstring states each claim's rule;
* figure functions named after the paper's figures (``plot_figure3``).

Each module registers itself with a :class:`ChapterSpec` named ``CHAPTER``;
:mod:`winning_ticket.chapters` lists them all and ``tests/test_protocol.py`` checks the protocol.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping

import pandas as pd

from .profiles import config_table, current_profile
from .validation import check_int, check_real


def param(default, doc: str, *, low=None, high=None, low_open: bool = False, high_open: bool = False,
          item: str | None = None, min_len: int = 1, choices: tuple | None = None):
    """A config field with its meaning and its allowed values, checked when the config is built.

    ``low``/``high`` bound the value (or every value of a tuple; ``item`` names one value in
    the error, e.g. ``"r"`` for ``r_values``); a bound may name another field (``high="d"``).
    Tuples need at least ``min_len`` values; ``choices`` lists the allowed values of a string.
    """
    meta = dict(doc=doc, low=low, high=high, low_open=low_open, high_open=high_open, item=item,
                min_len=min_len, choices=choices)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ChapterConfig:
    """Base of every chapter's configuration (a frozen dataclass; see the module docstring).

    Subclasses declare their fields with the ``paper`` values as defaults, end with
    ``profile: str = "custom"``, set ``PROFILES`` and override :meth:`validate`.
    """

    PROFILES: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    """Profile name -> the fields it overrides (``paper`` overrides nothing)."""

    def __post_init__(self) -> None:
        self._check_params()
        self.validate()

    def validate(self) -> None:
        """Checks between fields (each field's own range is checked from its :func:`~winning_ticket.experiments.chapter.param`)."""

    def _check_params(self) -> None:
        """Check every :func:`param` field and store it normalized (plain ``int``/``float``, tuples)."""
        from .profiles import PROFILES

        if self.profile not in PROFILES + ("custom",):
            raise ValueError(f"profile = {self.profile!r}; allowed: {', '.join(PROFILES + ('custom',))}")
        for f in dataclasses.fields(self):
            m = f.metadata
            if "doc" not in m:
                continue
            value = getattr(self, f.name)
            if m["choices"] is not None:
                if value not in m["choices"]:
                    raise ValueError(f"{f.name} = {value!r}; allowed: {', '.join(map(repr, m['choices']))}")
                continue
            kind = str(f.type).replace(" ", "")
            many = kind.startswith("tuple[")
            is_int = kind in ("int", "tuple[int,...]")
            if many and isinstance(value, list):
                value = tuple(value)
            if many and (not isinstance(value, tuple) or len(value) < m["min_len"]):
                raise ValueError(f"{f.name} needs a tuple of at least {m['min_len']} value{'s' if m['min_len'] > 1 else ''}, "
                                 f"got {value!r}")
            low = getattr(self, m["low"]) if isinstance(m["low"], str) else m["low"]
            high = getattr(self, m["high"]) if isinstance(m["high"], str) else m["high"]
            name = m["item"] or f.name
            out = []
            for v in (value if many else (value,)):
                if is_int:
                    lo = -(2**63) if low is None else int(low) + (1 if m["low_open"] else 0)
                    hi = None if high is None else int(high) - (1 if m["high_open"] else 0)
                    out.append(check_int(name, v, lo, hi))
                else:
                    out.append(check_real(name, v, low, high, low_open=m["low_open"], high_open=m["high_open"]))
            object.__setattr__(self, f.name, tuple(out) if many else out[0])

    @classmethod
    def describe(cls) -> pd.DataFrame:
        """Every parameter with its meaning and allowed values (from the :func:`~winning_ticket.experiments.chapter.param` declarations)."""
        rows = {}
        for f in dataclasses.fields(cls):
            m = f.metadata
            if "doc" not in m:
                continue
            if m["choices"] is not None:
                allowed = ", ".join(map(str, m["choices"]))
            else:
                lo = "" if m["low"] is None else f"{m['low']} {'<' if m['low_open'] else '≤'} "
                hi = "" if m["high"] is None else f" {'<' if m['high_open'] else '≤'} {m['high']}"
                allowed = f"{lo}{m['item'] or f.name}{hi}" if (lo or hi) else "any"
            rows[f.name] = {"meaning": m["doc"], "allowed": allowed}
        return pd.DataFrame.from_dict(rows, orient="index").rename_axis("parameter")

    @classmethod
    def for_profile(cls, profile: str | None = None):
        """The configuration of a profile: ``profile``, else ``$WT_PROFILE``, else ``evidence`` when
        the chapter has that profile and ``book`` otherwise (see :mod:`~winning_ticket.experiments.profiles`)."""
        name = current_profile(profile, default="evidence" if "evidence" in cls.PROFILES else "book")
        if name == "evidence" and name not in cls.PROFILES:
            raise ValueError(f"{cls.__name__} has no 'evidence' profile yet; allowed: smoke, book, paper")
        return cls(**dict(cls.PROFILES.get(name, {})), profile=name)

    def replace(self, **changes):
        """A copy with some fields changed (validated again); ``profile`` becomes ``"custom"`` unless given."""
        changes.setdefault("profile", "custom")
        return dataclasses.replace(self, **changes)

    def table(self) -> pd.DataFrame:
        """The parameters as a two-column table for the chapter's parameter table."""
        return config_table(self)


@dataclass(kw_only=True)
class ChapterResult:
    """Base of every chapter's result: the config, tidy per-trial tables, and the wall time."""

    TABLES: ClassVar[tuple[str, ...]] = ("runs",)
    """Names of the attributes that hold tidy per-trial tables."""

    config: ChapterConfig
    seconds: float = 0.0

    def tables(self) -> dict[str, pd.DataFrame]:
        """The tidy per-trial tables by name."""
        return {name: getattr(self, name) for name in self.TABLES}


@dataclass(frozen=True)
class SweepPlan:
    """One sweep of a chapter's experiment, enough to run it and to re-execute any of its units.

    ``table`` names the result table its rows form.
    """

    name: str
    fn: Callable
    tasks: tuple
    trials: int
    seed: int
    seed_keys: tuple[str, ...] | None = None
    trials_per_unit: int | None = None
    table: str = "runs"
    audit_prefix: tuple[str, int, str] | None = None
    """``(parameter, value, column)``: the audit re-executes a unit with ``parameter`` set to ``value``
    and compares the archived rows whose ``column`` is at most ``value`` (for a sequential unit whose
    first steps do not depend on how many follow, such as IMP's rounds; the seeds must then not
    depend on ``parameter``: give ``seed_keys``)."""

    def __post_init__(self) -> None:
        if self.audit_prefix is not None and (self.seed_keys is None or self.audit_prefix[0] in self.seed_keys):
            raise ValueError(f"sweep {self.name!r}: audit_prefix {self.audit_prefix} needs seed_keys that leave out "
                             f"{self.audit_prefix[0]!r} (else the shortened unit draws other seeds)")

    def run(self, *, executor=None, cache_dir=None, progress=None):
        """Run the sweep (see :func:`~winning_ticket.experiments.sweep.run_sweep`), after
        :func:`check_precision` of its task function."""
        from .sweep import run_sweep

        check_precision(self.fn)

        return run_sweep(self.fn, list(self.tasks), self.trials, seed=self.seed, name=self.name,
                         trials_per_unit=self.trials_per_unit, executor=executor, cache_dir=cache_dir,
                         progress=progress, seed_keys=self.seed_keys)


def check_precision(fn) -> None:
    """Refuse to run a chapter's task ``fn`` in the engine's mixed precision (``$WT_PRECISION``) unless
    the chapter's last recorded precision check passed.

    Mixed precision changes a run's iterates, and only the precision check
    (``tools/audit.py --precision mixed --record``, ``results/<chapter>/precision_check.json``) shows
    that it leaves a chapter's verdicts as the float64 archive has them; where it did not (Landscape:
    one far start stalls in float64 and succeeds in mixed precision), or where no check was recorded,
    the chapter runs in float64 or not at all.  Task functions outside the chapter modules (tests,
    scratch work) and chapters whose runs do not use the engine are not checked.  The audit
    re-executes units without this check, so the precision check itself can run anywhere.
    """
    module = getattr(fn, "__module__", "") or ""
    if not module.startswith("winning_ticket.chapters."):
        return
    from ..algorithms.engine import precision_setting

    if precision_setting() != "mixed":
        return
    from .archive import PRECISION_RECORD, archive_dir, last_precision_check
    from .sweep import algorithm_modules

    if "engine" not in algorithm_modules(inspect.getsourcefile(fn)):
        return
    chapter = module.rsplit(".", 1)[1]
    record = last_precision_check(chapter)
    where = archive_dir(chapter) / PRECISION_RECORD
    if record is None:
        why = f"no precision check is recorded for it ({where} is missing)"
    elif not record.get("ok") or record.get("precision") != "mixed":
        flips = record.get("flips")
        found = (f"{flips} of {record.get('rows')} verdicts differ" if flips else
                 (record.get("mismatches") or ["it failed"])[0])
        why = f"its last precision check did not pass ({found}; {where})"
    else:
        return
    raise ValueError(f"WT_PRECISION = 'mixed' is not allowed for chapter {chapter!r}: {why}; allowed here: 'float64' "
                     f"(unset WT_PRECISION), or record a passing check with "
                     f"`tools/audit.py --precision mixed --record {chapter}`")


def run_plans(plans, result: type[ChapterResult], config: ChapterConfig, *, executor=None, cache_dir=None,
              progress=None) -> ChapterResult:
    """Run every :class:`SweepPlan` of a chapter and gather their tables into its ``result`` class
    (``seconds``: the sum of the sweeps' wall times)."""
    done = {plan.table: plan.run(executor=executor, cache_dir=cache_dir, progress=progress) for plan in plans}
    return result(config=config, seconds=sum(r.seconds for r in done.values()), **{t: r.runs for t, r in done.items()})


@dataclass(frozen=True)
class ChapterSpec:
    """What a chapter module registers as ``CHAPTER``: its name and the protocol's pieces."""

    name: str
    """Equal to the module's and the notebook's name."""
    title: str
    config: type[ChapterConfig]
    result: type[ChapterResult]
    run: Callable[..., ChapterResult]
    check_claims: Callable[[ChapterResult], list]
    figures: Mapping[str, Callable] = field(default_factory=dict)
    """The paper's figure label (``"Fig. 3"``) -> the function that draws it from a result."""
    sweeps: Callable[[ChapterConfig], list[SweepPlan]] | None = None
    """The chapter's sweeps for a config (what ``run`` executes); needed to archive and audit it."""

    def __post_init__(self) -> None:
        for name in ("smoke", "book"):
            if name not in self.config.PROFILES:
                raise ValueError(f"chapter {self.name!r}: profile {name!r} missing from {self.config.__name__}.PROFILES")
