"""The model registry: ``register_model``, ``create_model``, ``list_models`` and ``ModelCfg``."""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from torch import nn

from .._validate import check_int, describe
from ._normalize import Normalize

__all__ = [
    "INPUT_SETTINGS",
    "InputSizeError",
    "ModelCfg",
    "count_parameters",
    "create_model",
    "get_model_cfg",
    "list_models",
    "register_model",
]

#: The input contracts of the datasets the reference papers use, keyed by setting name:
#: ``(num_classes, in_channels, input_size)``. ``ModelCfg.num_params`` is keyed by these names.
INPUT_SETTINGS: Mapping[str, tuple[int, int, int]] = MappingProxyType(
    {
        "digits": (10, 1, 8),
        "mnist": (10, 1, 28),
        "cifar10": (10, 3, 32),
        "stl10": (10, 3, 96),
        "tiny-imagenet": (200, 3, 64),
    }
)


class InputSizeError(ValueError):
    """A model was asked for an input size smaller than the smallest size it supports."""


@dataclass(frozen=True)
class ModelCfg:
    """What the registry knows about one model name.

    Attributes:
        name: The registry name, e.g. ``"resnet-20"``.
        builder: The keyword-only builder function ``create_model`` calls.
        family: The architecture family (``"resnet"``, ``"densenet"``, ...).
        description: One line describing the architecture.
        paper: The paper the architecture (or its parameter count) comes from.
        num_classes: Default number of classes.
        in_channels: Default number of input channels.
        input_size: Default input height and width.
        min_input_size: Smallest input height/width the default layout supports.
        num_params: Expected trainable parameter counts, keyed by a setting name of
            :data:`INPUT_SETTINGS` (``"mnist"``, ``"cifar10"``, ...), for the default kwargs.
        exact: ``False`` when no principled layout reproduces the paper's count exactly
            (``num_params`` then holds this implementation's count; see the builder docstring).
    """

    name: str
    builder: Callable[..., nn.Module]
    family: str
    description: str
    paper: str
    num_classes: int = 10
    in_channels: int = 3
    input_size: int = 32
    min_input_size: int = 1
    num_params: Mapping[str, int] = field(default_factory=dict)
    exact: bool = True

    def setting_kwargs(self, setting: str) -> dict[str, int]:
        """The ``create_model`` keyword arguments of a setting of :data:`INPUT_SETTINGS`.

        Args:
            setting: A key of :data:`INPUT_SETTINGS`, e.g. ``"mnist"``.

        Returns:
            ``{"num_classes": ..., "in_channels": ..., "input_size": ...}``.

        Raises:
            ValueError: If ``setting`` is unknown.
        """
        if setting not in INPUT_SETTINGS:
            valid = ", ".join(INPUT_SETTINGS)
            raise ValueError(f"setting must be one of {valid}, got {setting!r}")
        num_classes, in_channels, input_size = INPUT_SETTINGS[setting]
        return {"num_classes": num_classes, "in_channels": in_channels, "input_size": input_size}


_REGISTRY: dict[str, ModelCfg] = {}

_F = TypeVar("_F", bound=Callable[..., nn.Module])


def register_model(
    name: str,
    *,
    family: str,
    description: str,
    paper: str = "",
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int = 32,
    min_input_size: int = 1,
    num_params: Mapping[str, int] | None = None,
    exact: bool = True,
) -> Callable[[_F], _F]:
    """Register a keyword-only model builder under ``name``.

    The builder must accept ``num_classes``, ``in_channels`` and ``input_size`` as keyword-only
    arguments (plus any architecture options) and return an ``nn.Module`` producing logits.

    Args:
        name: The registry name; registering a name twice is an error.
        family: The architecture family.
        description: One line describing the architecture.
        paper: The paper the architecture comes from.
        num_classes: Default number of classes.
        in_channels: Default number of input channels.
        input_size: Default input height/width.
        min_input_size: Smallest input height/width of the default layout.
        num_params: Expected parameter counts keyed by a setting of :data:`INPUT_SETTINGS`.
        exact: Whether ``num_params`` reproduces the paper exactly.

    Returns:
        A decorator that registers the builder and returns it unchanged.

    Raises:
        ValueError: If ``name`` is already registered or a setting name is unknown.
        TypeError: If the builder has positional parameters or lacks the input-contract ones.

    Example:
        A builder in a user module::

            @register_model("my-linear", family="linear", description="a linear model")
            def my_linear(*, num_classes=10, in_channels=3, input_size=32):
                return nn.Sequential(
                    nn.Flatten(), nn.Linear(in_channels * input_size**2, num_classes)
                )
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got {describe(name)}")
    counts = dict(num_params or {})
    for setting in counts:
        if setting not in INPUT_SETTINGS:
            valid = ", ".join(INPUT_SETTINGS)
            raise ValueError(f"num_params keys must be settings ({valid}), got {setting!r}")

    def decorator(builder: _F) -> _F:
        if name in _REGISTRY:
            raise ValueError(
                f"a model named {name!r} is already registered (by "
                f"{_REGISTRY[name].builder.__module__}.{_REGISTRY[name].builder.__qualname__}); "
                f"choose another name"
            )
        params = inspect.signature(builder).parameters
        positional = [
            p.name
            for p in params.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
        ]
        if positional:
            raise TypeError(
                f"model builder {builder.__qualname__} must be keyword-only; positional "
                f"parameter(s): {', '.join(positional)}"
            )
        missing = [k for k in ("num_classes", "in_channels", "input_size") if k not in params]
        if missing:
            raise TypeError(
                f"model builder {builder.__qualname__} must accept keyword(s) {', '.join(missing)}"
            )
        _REGISTRY[name] = ModelCfg(
            name=name,
            builder=builder,
            family=family,
            description=description,
            paper=paper,
            num_classes=num_classes,
            in_channels=in_channels,
            input_size=input_size,
            min_input_size=min_input_size,
            num_params=MappingProxyType(counts),
            exact=exact,
        )
        return builder

    return decorator


def _unknown(name: object) -> ValueError:
    valid = ", ".join(sorted(_REGISTRY))
    return ValueError(f"unknown model {name!r}; valid names: {valid}")


def list_models(filter: str | None = None) -> list[str]:
    """The sorted names of the registered models, optionally filtered by a shell pattern.

    Args:
        filter: An ``fnmatch`` pattern such as ``"resnet-*"``; ``None`` lists every model.

    Returns:
        The matching names, sorted.

    Example:
        >>> list_models("resnet-*")
        ['resnet-110', 'resnet-20', 'resnet-32', 'resnet-44', 'resnet-56']
    """
    if filter is not None and not isinstance(filter, str):
        raise TypeError(f"filter must be a str pattern or None, got {describe(filter)}")
    names = sorted(_REGISTRY)
    if filter is None:
        return names
    return [n for n in names if fnmatch.fnmatchcase(n, filter)]


def get_model_cfg(name: str) -> ModelCfg:
    """The :class:`ModelCfg` registered under ``name``.

    Args:
        name: A registered model name.

    Returns:
        The model's configuration record.

    Raises:
        ValueError: If ``name`` is unknown (the message lists the valid names).
    """
    if name not in _REGISTRY:
        raise _unknown(name)
    return _REGISTRY[name]


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    in_channels: int | None = None,
    input_size: int | None = None,
    normalize: tuple[Sequence[float], Sequence[float]] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model.

    ``None`` values (for the input contract and for any ``kwargs``) do not override the
    builder's defaults, so callers can forward optional settings unconditionally. The defaults
    of the input contract are those of :func:`get_model_cfg`: 10 classes, 3x32x32 images.

    Args:
        name: A registered model name (see :func:`list_models`).
        num_classes: Number of output logits (default 10).
        in_channels: Number of input channels (default 3).
        input_size: Input height and width of square images (default 32).
        normalize: Optional ``(mean, std)``; the model is then
            ``nn.Sequential(Normalize(mean, std), net)``, so it takes images in [0, 1].
        **kwargs: Architecture options of the builder (e.g. ``width``, ``depth``).

    Returns:
        The model (parameters initialised from torch's global RNG).

    Raises:
        ValueError: On an unknown name (the message lists the valid ones), or when the model
            cannot take ``input_size`` (the message gives the smallest size it supports).
        TypeError: On unknown keyword arguments.

    Example:
        >>> import torch
        >>> model = create_model("mlp", in_channels=1, input_size=8)
        >>> model(torch.rand(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """
    cfg = get_model_cfg(name)
    options = {k: v for k, v in kwargs.items() if v is not None}
    params = inspect.signature(cfg.builder).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    unknown = [] if takes_any else sorted(k for k in options if k not in params)
    if unknown:
        accepted = sorted(
            k for k in params if k not in ("num_classes", "in_channels", "input_size")
        )
        raise TypeError(
            f"create_model({name!r}) got unexpected keyword argument(s): {', '.join(unknown)}; "
            f"it accepts: {', '.join(accepted) or 'no architecture options'}"
        )
    nc = check_int(
        cfg.num_classes if num_classes is None else num_classes, "num_classes", minimum=1
    )
    ic = check_int(
        cfg.in_channels if in_channels is None else in_channels, "in_channels", minimum=1
    )
    size = check_int(cfg.input_size if input_size is None else input_size, "input_size", minimum=1)
    net = cfg.builder(num_classes=nc, in_channels=ic, input_size=size, **options)
    if normalize is None:
        return net
    if not isinstance(normalize, (tuple, list)) or len(normalize) != 2:
        raise TypeError(f"normalize must be a pair (mean, std) or None, got {describe(normalize)}")
    mean, std = normalize
    norm = Normalize(mean, std)
    if norm.mean.numel() not in (1, ic):
        raise ValueError(
            f"normalize mean/std must have 1 or in_channels={ic} values, got {norm.mean.numel()}"
        )
    return nn.Sequential(norm, net)


def count_parameters(model: nn.Module) -> int:
    """The number of trainable parameters (``requires_grad``) of ``model``.

    BatchNorm contributes gamma and beta; its running statistics are buffers and do not count,
    the Keras "trainable params" convention the reference papers use. Shared parameters count
    once. Works for models on the ``meta`` device.

    Args:
        model: Any ``nn.Module``.

    Returns:
        The number of trainable parameters.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {describe(model)}")
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def input_size_error(name: str, smallest: int, input_size: int, hint: str = "") -> InputSizeError:
    """The error a builder raises for an input it cannot take (used by the model modules)."""
    message = (
        f"{name} cannot take {input_size}x{input_size} inputs: the smallest input size it "
        f"supports is {smallest}x{smallest}"
    )
    if hint:
        message += f"; {hint}"
    return InputSizeError(message)
