"""Claim verdicts computed from data.

Each chapter ends with a claims check: every claim of the paper the chapter
tests becomes a :class:`Claim` whose verdict is computed from the chapter's
results, together with the statistic behind it.  The verdict lines are
printed on their own (the notebook regression test compares them across
profiles); the statistics go in a table next to them.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Claim:
    """One tested claim: ``holds`` is computed, ``statistic`` says from what.

    ``holds`` is ``True`` (SUPPORTED), ``False`` (NOT SUPPORTED) or ``None`` (INCONCLUSIVE:
    the data cannot decide, e.g. too few runs reach the quantity the rule needs).
    """

    name: str
    statement: str
    holds: bool | None
    statistic: str
    rule: str

    @property
    def verdict(self) -> str:
        """SUPPORTED, NOT SUPPORTED or INCONCLUSIVE."""
        if self.holds is None:
            return INCONCLUSIVE
        return SUPPORTED if self.holds else NOT_SUPPORTED


SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "SUPPORTED", "NOT SUPPORTED", "INCONCLUSIVE"


def inconclusive(name: str, statement: str, rule: str, reason: str) -> Claim:
    """A claim the data cannot decide, with the reason as its statistic."""
    return Claim(name=name, statement=statement, holds=None, statistic=f"inconclusive: {reason}", rule=rule)


def verdict_lines(claims: list[Claim]) -> str:
    """One line per claim: ``name: VERDICT``."""
    return "\n".join(f"{c.name}: {c.verdict}" for c in claims)


def claims_table(claims: list[Claim]) -> pd.DataFrame:
    """The claims with their statistics and decision rules, as a table."""
    return pd.DataFrame(
        {
            "claim": [c.statement for c in claims],
            "verdict": [c.verdict for c in claims],
            "statistic": [c.statistic for c in claims],
            "decision rule": [c.rule for c in claims],
        },
        index=pd.Index([c.name for c in claims], name="id"),
    )
