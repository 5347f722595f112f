"""Device-agnostic code, checked on the ``meta`` device.

A tensor created on a hard-coded device (a stray CPU constant, a CPU random draw combined with
the batch) fails here as it would on a GPU. Early stopping and restarts decide on data (an
``.item()`` or a data-dependent index), which meta tensors cannot answer, so those
configurations are left out. FAB and Square shrink their batch to the examples not yet broken
between runs or queries; on the meta device (no data) they keep every example. The
minimal-norm attacks FMN, DDN and ALMA and their boundary refinement never sync, so they run
here; CWL2's abort-early check is skipped on the meta device (the full budget runs). APGD
restarts and APGDT's later target classes, which run on the examples still robust, are left
out too.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advrobust.attacks import (
    ALMA,
    APGD,
    APGDT,
    BIM,
    CWL2,
    DDN,
    FAB,
    FGSM,
    FMN,
    PGD,
    Attack,
    IterLL,
    Square,
    StepLL,
    StepRnd,
)

CONFIGS = {
    "CWL2-abort-early": lambda m: CWL2(m, steps=4, binary_search_steps=2),
    "FGSM": lambda m: FGSM(m, 0.1),
    "FGSM-l2": lambda m: FGSM(m, 0.5, norm="l2"),
    "StepLL": lambda m: StepLL(m, 0.1),
    "StepRnd": lambda m: StepRnd(m, 0.1),
    "BIM": lambda m: BIM(m, 0.1, steps=3),
    "IterLL": lambda m: IterLL(m, 0.1, steps=3),
    "PGD": lambda m: PGD(m, 0.1, steps=3),
    "PGD-l2": lambda m: PGD(m, 0.5, norm="l2", steps=3),
    "PGD-margin": lambda m: PGD(m, 0.1, steps=3, loss="margin"),
    "FAB": lambda m: FAB(m, 0.1, steps=2),
    "FAB-T-l1": lambda m: FAB(m, 1.0, norm="l1", steps=2, targeted=True, n_target_classes=2),
    "FAB-l2": lambda m: FAB(m, 0.5, norm="l2", steps=2),
    "Square": lambda m: Square(m, 0.1, queries=4),
    "Square-l2": lambda m: Square(m, 0.5, norm="l2", queries=4),
    "FMN": lambda m: FMN(m, steps=3),
    "FMN-linf": lambda m: FMN(m, "linf", steps=3),
    "FMN-l1": lambda m: FMN(m, "l1", steps=3),
    "FMN-l0": lambda m: FMN(m, "l0", steps=3),
    "DDN": lambda m: DDN(m, steps=3),
    "ALMA": lambda m: ALMA(m, steps=3),
    "ALMA-l1": lambda m: ALMA(m, "l1", steps=3),
    "APGD": lambda m: APGD(m, 0.1, steps=3),
    "APGD-l2-dlr": lambda m: APGD(m, 0.5, norm="l2", loss="dlr", steps=3),
    "APGD-l1": lambda m: APGD(m, 2.0, norm="l1", steps=3),
    "APGDT": lambda m: APGDT(m, 0.1, steps=3, n_target_classes=1),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_attacks_run_on_the_meta_device(name: str) -> None:
    with torch.device("meta"):
        model = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(4 * 8 * 8, 10),
        )
    x = torch.rand(4, 1, 8, 8, device="meta")
    y = torch.zeros(4, dtype=torch.long, device="meta")
    atk: Attack = CONFIGS[name](model)
    res = atk.run(x, y, eps=torch.full((4,), 0.1, device="meta"))
    for t in (res.x_adv, res.success, res.adv_pred, res.l2, res.linf):
        assert t.device.type == "meta"
    assert res.x_adv.shape == x.shape and res.x_adv.dtype == x.dtype
    assert res.success.dtype == torch.bool and res.adv_pred.dtype == torch.long
