"""The findings of :func:`~advrobust.metrics.sanity_check`: the check ids, the records, the report.

Every check has an id (:data:`SANITY_CHECKS`), a title and a section of the evaluation-pitfalls
guide; :func:`finding` makes the :class:`Finding` of a check from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..attacks import AttackSpec
from ._result_base import Scalar, _Result

__all__ = ["ATTACK_CHECKS", "SANITY_CHECKS", "Finding", "SanityReport", "finding"]

DOCS_PAGE = "docs/guide/evaluation-pitfalls.md"

# the checks on the model's outputs and input gradients, then those that run attacks
_MODEL_CHECKS: tuple[str, ...] = (
    "probability-outputs",
    "randomness",
    "zero-gradients",
    "nonfinite-gradients",
)
ATTACK_CHECKS: tuple[str, ...] = (
    "iterative-weaker-than-single-step",
    "accuracy-not-monotone-in-eps",
    "unbounded-attack-below-100",
    "noise-beats-attack",
    "adversarial-accuracy-above-clean",
    "gradient-free-gap",
)
SANITY_CHECKS: tuple[str, ...] = (*_MODEL_CHECKS, *ATTACK_CHECKS)

_TITLES = {
    "probability-outputs": "the model outputs probabilities instead of logits",
    "randomness": "the model's output changes between identical forward passes",
    "zero-gradients": "the input gradient is exactly zero for many examples",
    "nonfinite-gradients": "the input gradient contains NaN or Inf",
    "iterative-weaker-than-single-step": "the iterative attack is weaker than the single-step one",
    "accuracy-not-monotone-in-eps": "adversarial accuracy increases with eps",
    "unbounded-attack-below-100": "an attack with unbounded eps does not reach 100% success",
    "noise-beats-attack": "random noise breaks examples the gradient attack does not",
    "adversarial-accuracy-above-clean": "accuracy on adversarial examples is above clean accuracy",
    "gradient-free-gap": "a gradient-free attack or the ensemble breaks what the gradient attack "
    "reports robust",
}


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


def finding(id_: str, explanation: str, **details: Any) -> Finding:
    """The :class:`Finding` of check ``id_``: its title and docs anchor, the numbers as details."""
    return Finding(
        id=id_,
        title=_TITLES[id_],
        explanation=explanation,
        docs=f"{DOCS_PAGE}#{id_}",
        details={k: (float(v) if isinstance(v, float) else v) for k, v in details.items()},
    )


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
