"""Results of :func:`~advrobust.metrics.sanity_check`: the findings and the report."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..attacks import AttackSpec
from ._result_base import Scalar, _Result

__all__ = ["Finding", "SanityReport"]


@dataclass(frozen=True, repr=False)
class Finding(_Result):
    """One problem found by :func:`advrobust.metrics.sanity_check`.

    Attributes:
        id: short stable identifier (also the anchor of its docs section).
        title: one line.
        explanation: what was measured and what it usually means, with the fix.
        docs: link to the section of the evaluation-pitfalls guide.
        details: the numbers behind the finding.
    """

    id: str
    title: str
    explanation: str
    docs: str
    details: dict[str, Scalar] = field(default_factory=dict)

    def summary(self) -> dict[str, Scalar]:
        """Id and title."""
        return {"id": self.id, "title": self.title}

    def __str__(self) -> str:
        return f"[{self.id}] {self.title}\n  {self.explanation}\n  see {self.docs}"


@dataclass(frozen=True, repr=False)
class SanityReport(_Result):
    """Findings of :func:`advrobust.metrics.sanity_check` (empty when every check passed).

    Attributes:
        findings: the problems found.
        checks: ids of the checks that ran.
        attacks: the specs of the attacks the checks ran (iterative, single-step, and the
            gradient-free attack when it ran).
    """

    findings: tuple[Finding, ...]
    checks: tuple[str, ...]
    attacks: tuple[AttackSpec, ...] = ()

    @property
    def ok(self) -> bool:
        """True when no check raised a finding."""
        return not self.findings

    @property
    def ids(self) -> tuple[str, ...]:
        """Ids of the findings."""
        return tuple(f.id for f in self.findings)

    def summary(self) -> dict[str, Scalar]:
        """``ok``, the number of findings and their ids."""
        return {"ok": self.ok, "num_findings": len(self.findings), "findings": ",".join(self.ids)}

    def __str__(self) -> str:
        if self.ok:
            return f"sanity_check: no finding ({len(self.checks)} checks ran)"
        return "\n".join(str(f) for f in self.findings)
