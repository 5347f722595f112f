"""Reference architectures of the adversarial-robustness literature, with a registry.

Build models by name with :func:`create_model`; list the names with :func:`list_models`.
Every model is a plain ``nn.Module`` returning logits ``(B, num_classes)`` for images in the
input space; :class:`Normalize` puts a dataset's normalisation inside the model.
"""

from ._densenet import DenseNet as DenseNet
from ._layout import to_device as to_device
from ._mlp import MLP as MLP
from ._normalize import Normalize as Normalize
from ._registry import INPUT_SETTINGS as INPUT_SETTINGS
from ._registry import InputSizeError as InputSizeError
from ._registry import ModelCfg as ModelCfg
from ._registry import count_parameters as count_parameters
from ._registry import create_model as create_model
from ._registry import get_model_cfg as get_model_cfg
from ._registry import list_models as list_models
from ._registry import register_model as register_model
from ._resnet import ResNet as ResNet
from ._simple_cnn import SimpleCNN as SimpleCNN
from ._vgg import VGG as VGG
from ._wide_resnet import WideResNet as WideResNet

__all__ = [
    "INPUT_SETTINGS",
    "DenseNet",
    "InputSizeError",
    "MLP",
    "ModelCfg",
    "Normalize",
    "ResNet",
    "SimpleCNN",
    "VGG",
    "WideResNet",
    "count_parameters",
    "create_model",
    "get_model_cfg",
    "list_models",
    "register_model",
    "to_device",
]
