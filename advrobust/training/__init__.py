"""advrobust.training: mixed-batch adversarial training, PGD adversarial training, clean training.

Kurakin et al. (2017) mixed minibatches, Madry et al. (2018) PGD adversarial training and
clean training, as functional pieces (``mixed_batch_loss``, epsilon samplers,
``select_replaced``) and a resumable, distributed-ready :class:`AdversarialTrainer` configured
by a frozen :class:`TrainConfig`.
"""

from ._checkpoint import CheckpointError as CheckpointError
from ._checkpoint import load_checkpoint as load_checkpoint
from ._checkpoint import save_checkpoint as save_checkpoint
from ._config import TrainConfig as TrainConfig
from ._eps import EpsSampler as EpsSampler
from ._eps import FixedEps as FixedEps
from ._eps import TruncatedNormalEps as TruncatedNormalEps
from ._eps import UniformEps as UniformEps
from ._eps import eps_sampler_from_spec as eps_sampler_from_spec
from ._loss import mixed_batch_loss as mixed_batch_loss
from ._records import BatchInfo as BatchInfo
from ._records import Callback as Callback
from ._records import EpochStats as EpochStats
from ._records import History as History
from ._select import select_replaced as select_replaced
from ._trainer import AdversarialTrainer as AdversarialTrainer
from ._trainer import NonFiniteLossError as NonFiniteLossError
from ._trainer import StepFigures as StepFigures
from ._trainer import StepOutput as StepOutput

__all__ = [
    "AdversarialTrainer",
    "BatchInfo",
    "Callback",
    "CheckpointError",
    "EpochStats",
    "EpsSampler",
    "FixedEps",
    "History",
    "NonFiniteLossError",
    "StepFigures",
    "StepOutput",
    "TrainConfig",
    "TruncatedNormalEps",
    "UniformEps",
    "eps_sampler_from_spec",
    "load_checkpoint",
    "mixed_batch_loss",
    "save_checkpoint",
    "select_replaced",
]
