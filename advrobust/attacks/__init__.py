"""Adversarial attacks: the gradient engine and its presets, minimal-norm and ensemble attacks.

Fixed-eps attacks: FGSM, StepLL, StepRnd, BIM, IterLL, PGD (one gradient engine), APGD, APGDT,
FAB and Square. Minimal-norm attacks: CWL2, FMN, DDN and ALMA. Every attack is registered
(``create_attack``, ``list_attacks``) and describes itself with ``spec()``.

Every attack is bound to a model at construction and called on a batch:

```python
atk = PGD(model, eps=8 / 255)
x_adv = atk(x, y)          # tensor, same shape/dtype/device as x
res = atk.run(x, y)        # AttackResult: x_adv, success, adv_pred, l2, linf, y, target
```
"""

from ._alma import ALMA as ALMA
from ._apgd import APGD as APGD
from ._apgd import APGDT as APGDT
from ._base import Attack as Attack
from ._cw import CWL2 as CWL2
from ._ddn import DDN as DDN
from ._engine import IterativeGradientAttack as IterativeGradientAttack
from ._fab import FAB as FAB
from ._fab import project_hyperplane_box as project_hyperplane_box
from ._fmn import FMN as FMN
from ._losses import dlr_loss as dlr_loss
from ._losses import logit_margin as logit_margin
from ._presets import BIM as BIM
from ._presets import FGSM as FGSM
from ._presets import PGD as PGD
from ._presets import IterLL as IterLL
from ._presets import StepLL as StepLL
from ._presets import StepRnd as StepRnd
from ._registry import AttackInfo as AttackInfo
from ._registry import AttackSpec as AttackSpec
from ._registry import attack_info as attack_info
from ._registry import create_attack as create_attack
from ._registry import list_attacks as list_attacks
from ._registry import register_attack as register_attack
from ._result import AttackResult as AttackResult
from ._square import Square as Square
from ._threat import L2Ball as L2Ball
from ._threat import LinfBall as LinfBall
from ._threat import ThreatModel as ThreatModel
from ._threat import lp_norm as lp_norm

__all__ = [
    "ALMA",
    "APGD",
    "APGDT",
    "BIM",
    "CWL2",
    "FAB",
    "DDN",
    "FGSM",
    "FMN",
    "PGD",
    "Attack",
    "AttackInfo",
    "AttackResult",
    "AttackSpec",
    "IterLL",
    "IterativeGradientAttack",
    "L2Ball",
    "LinfBall",
    "Square",
    "StepLL",
    "StepRnd",
    "ThreatModel",
    "attack_info",
    "create_attack",
    "dlr_loss",
    "list_attacks",
    "logit_margin",
    "lp_norm",
    "project_hyperplane_box",
    "register_attack",
]
