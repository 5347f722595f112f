"""The one evaluation loop every metric shares.

``data`` is either a pair of tensors ``(x, y)`` (sliced into batches of ``batch_size``) or any
iterable of ``(x, y)`` batches (a ``DataLoader``, a ``TensorLoader``, a list of pairs). The loop
calls a batch function that returns per-example tensors, keeps them on the device they were
computed on, and concatenates them once at the end: there is no host synchronisation per batch
in the loop itself and no Python loop over examples.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .._validate import (
    check_images,
    check_int,
    check_labels,
    check_model_device,
    describe,
    model_state_guard,
)
from ..attacks import Attack, AttackResult

__all__ = [
    "Batch",
    "DataLike",
    "EpsLike",
    "batch_eps",
    "check_batch_labels",
    "check_eps_arg",
    "evaluate",
    "iterate_batches",
    "progress_enabled",
    "predict",
    "predict_eval",
    "predict_checked",
    "predict_labels",
]

DataLike = tuple[Tensor, Tensor] | Iterable[Any]
EpsLike = float | Tensor | None


@dataclass(frozen=True)
class Batch:
    """One batch of the evaluation loop: images, labels and its slice of the whole data set."""

    x: Tensor
    y: Tensor
    start: int
    index: int
    name: str = "data"
    all_y: Tensor | None = None
    """Every label of ``data`` when it is a pair of tensors (on the first batch only)."""
    pair: bool = False

    @property
    def stop(self) -> int:
        return self.start + int(self.x.shape[0])


def _is_tensor_pair(data: object) -> bool:
    return (
        isinstance(data, (tuple, list))
        and len(data) == 2
        and isinstance(data[0], Tensor)
        and isinstance(data[1], Tensor)
    )


def _unpack(item: object, index: int) -> tuple[Tensor, Tensor]:
    if isinstance(item, Mapping):
        raise TypeError(
            f"data must yield (x, y) pairs of tensors, batch {index} is a mapping with keys "
            f"{sorted(map(str, item))}"
        )
    if not isinstance(item, (tuple, list)) or len(item) < 2:
        raise TypeError(
            f"data must yield (x, y) pairs of tensors, batch {index} is {describe(item)}"
        )
    x, y = item[0], item[1]
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise TypeError(
            f"data must yield (x, y) pairs of tensors, batch {index} holds "
            f"({describe(x)}, {describe(y)})"
        )
    return x, y


def iterate_batches(
    data: object,
    *,
    batch_size: int = 256,
    bounds: tuple[float, float] | None = None,
    name: str = "data",
) -> Iterator[Batch]:
    """Yield :class:`Batch` objects from tensors or an iterable of ``(x, y)`` pairs.

    Tensors are validated once in full (one host sync per call); batches from an iterable are
    checked for type and shape, and the first one also for its values.

    Raises:
        TypeError, ValueError: bad ``data`` or ``batch_size``; ``data`` holding no example.
    """
    check_int(batch_size, "batch_size", minimum=1)
    if _is_tensor_pair(data):
        x, y = data[0], data[1]  # type: ignore[index]
        check_images(x, f"{name}[0] (x)", bounds=bounds)
        check_labels(y, int(x.shape[0]), f"{name}[1] (y)")
        if y.device != x.device:
            raise ValueError(f"{name}: x is on {x.device} but y is on {y.device}")
        n = int(x.shape[0])
        if n == 0:
            raise ValueError(f"{name} is empty: got x of shape {tuple(x.shape)}")
        for i, start in enumerate(range(0, n, batch_size)):
            yield Batch(
                x[start : start + batch_size],
                y[start : start + batch_size],
                start,
                i,
                name,
                y if i == 0 else None,
                True,
            )
        return
    if isinstance(data, Tensor):
        raise TypeError(
            f"{name} must be a pair (x, y) of tensors or an iterable of (x, y) batches, "
            "got a single tensor"
        )
    if not isinstance(data, Iterable):
        raise TypeError(
            f"{name} must be a pair (x, y) of tensors or an iterable of (x, y) batches, got "
            f"{describe(data)}"
        )
    start = 0
    index = 0
    for item in data:
        x, y = _unpack(item, index)
        check_images(x, f"{name} batch {index} x", bounds=bounds if index == 0 else None)
        check_labels(y, int(x.shape[0]), f"{name} batch {index} y")
        if int(x.shape[0]) == 0:
            continue
        yield Batch(x, y.to(x.device), start, index, name)
        start += int(x.shape[0])
        index += 1
    if start == 0:
        raise ValueError(f"{name} is empty: the iterable yielded no example")


def progress_enabled(progress: object) -> bool:
    """Whether to draw a progress bar: asked for, and stderr is a terminal.

    A bar written into a redirected stderr (a log file, a pipe) fills it with hundreds of
    kilobytes of carriage returns, so it is off there, as tqdm users expect.
    """
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be a bool, got {describe(progress)}")
    if not progress:
        return False
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # a closed or replaced stderr
        return False


def evaluate(
    data: object,
    fn: Callable[[Batch], Mapping[str, Tensor]],
    *,
    batch_size: int = 256,
    progress: bool = False,
    desc: str = "evaluating",
    bounds: tuple[float, float] | None = None,
    name: str = "data",
    eps: EpsLike = None,
) -> dict[str, Tensor]:
    """Run ``fn`` over every batch of ``data`` and concatenate its per-example outputs.

    ``fn`` returns a mapping of tensors whose first dimension is the batch size. Outputs stay on
    their device until the single concatenation at the end. A per-example ``eps`` (sliced by
    ``fn`` through :func:`batch_eps`) must have exactly one value per example of ``data``.

    ``fn`` checks the labels' range with :func:`check_batch_labels` (or gets its clean
    logits from :func:`predict_checked`) before anything indexes with them.
    """
    from tqdm.auto import tqdm

    show = progress_enabled(progress)

    total: int | None = None
    if _is_tensor_pair(data):
        n = int(data[0].shape[0])  # type: ignore[index]
        total = -(-n // batch_size) if batch_size > 0 else None
    else:
        try:
            total = len(data)  # type: ignore[arg-type]
        except TypeError:
            total = None
    parts: dict[str, list[Tensor]] = {}
    n = 0
    bar = tqdm(total=total, desc=desc, disable=not show, leave=False)
    try:
        for batch in iterate_batches(data, batch_size=batch_size, bounds=bounds, name=name):
            out = fn(batch)
            for key, value in out.items():
                parts.setdefault(key, []).append(value)
            n = batch.stop
            bar.update(1)
    finally:
        bar.close()
    if isinstance(eps, Tensor) and eps.shape[0] != n:
        raise ValueError(f"eps has {eps.shape[0]} values but data has {n} examples")
    return {key: torch.cat(values) for key, values in parts.items()}


def predict(model: nn.Module, x: Tensor, name: str = "model") -> Tensor:
    """Logits of ``model`` on ``x`` without gradients (the caller sets the model's mode)."""
    check_model_device(model, x)
    with torch.no_grad():
        out: object = model(x)
    if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != x.shape[0]:
        raise ValueError(
            f"{name} must return logits of shape (B, K) = ({x.shape[0]}, K), got {describe(out)}"
        )
    return out


def predict_eval(model: nn.Module, x: Tensor, name: str = "model") -> Tensor:
    """Logits of ``model`` on ``x`` in eval mode (every flag, ``.grad`` restored afterwards)."""
    with model_state_guard(model):
        return predict(model, x, name)


def check_batch_labels(b: Batch, num_classes: int) -> None:
    """Refuse labels outside ``[0, num_classes)``, naming the data argument.

    Tensors are checked once in full (on the first batch); the batches of an iterable one by
    one (one host sync per batch, before anything indexes with the labels).
    """
    if b.pair:
        if b.all_y is not None:
            check_labels(
                b.all_y, int(b.all_y.shape[0]), f"{b.name}[1] (y)", num_classes=num_classes
            )
        return
    check_labels(b.y, int(b.y.shape[0]), f"{b.name} batch {b.index} y", num_classes=num_classes)


def predict_checked(model: nn.Module, b: Batch, name: str = "model") -> Tensor:
    """Eval-mode logits of ``model`` on the batch, after checking its labels against them."""
    logits = predict_eval(model, b.x, name)
    check_batch_labels(b, int(logits.shape[1]))
    return logits


def predict_labels(model: nn.Module, x: Tensor, name: str = "model") -> Tensor:
    """Predicted classes of ``model`` on ``x`` in eval mode (see :func:`predict_eval`)."""
    return predict_eval(model, x, name).argmax(1)


def check_eps_arg(eps: object, name: str = "eps") -> EpsLike:
    """Check a metric-level eps: None, a float >= 0 or a 1-D tensor with one value per example."""
    if eps is None:
        return None
    if isinstance(eps, Tensor):
        if eps.dim() != 1:
            raise ValueError(
                f"{name} must be a float or a tensor with one value per example (N,), got shape "
                f"{tuple(eps.shape)}"
            )
        if eps.numel() and bool((~torch.isfinite(eps) | (eps < 0)).any()):
            raise ValueError(f"{name} must be finite and >= 0")
        return eps
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        raise TypeError(f"{name} must be a float or a (N,) tensor, got {describe(eps)}")
    if not float(eps) >= 0 or float(eps) == float("inf"):
        raise ValueError(f"{name} must be finite and >= 0, got {eps}")
    return float(eps)


def batch_eps(eps: EpsLike, batch: Batch, name: str = "eps") -> float | Tensor | None:
    """The slice of a per-example eps belonging to ``batch`` (floats pass through)."""
    if isinstance(eps, Tensor):
        part = eps[batch.start : batch.stop]
        if part.shape[0] != batch.x.shape[0]:
            raise ValueError(
                f"{name} has {eps.shape[0]} values but data has more examples "
                f"(batch {batch.index} needs indices {batch.start}..{batch.stop - 1})"
            )
        return part.to(device=batch.x.device, dtype=batch.x.dtype)
    return eps


def bind_attack(attack: object, model: nn.Module, name: str = "attack") -> Attack:
    """Check that ``attack`` is an advrobust attack and return it bound to ``model``.

    An attack built for another model is re-bound with ``attack.with_model(model)`` (same
    configuration), so passing the attack of a sibling model never attacks the wrong network.
    """
    if not isinstance(attack, Attack):
        raise TypeError(f"{name} must be an advrobust.attacks.Attack, got {describe(attack)}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {describe(model)}")
    if attack.model is model:
        return attack
    return attack.with_model(model)


def check_model(model: object, name: str = "model") -> nn.Module:
    """Check that ``model`` is an ``nn.Module``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {describe(model)}")
    return model


def check_norm(norm: object, name: str = "norm") -> str:
    """Check a norm name: ``"linf"`` or ``"l2"``."""
    if norm not in ("linf", "l2"):
        raise ValueError(f"{name} must be 'linf' or 'l2', got {norm!r}")
    return str(norm)


def is_minimal(attack: Attack) -> bool:
    """True for minimal-norm (unbounded) attacks: ``attack.spec().kind == "minimal"``."""
    return not attack.spec().bounded


def as_run(attack: Attack, eps: EpsLike) -> Attack:
    """The attack as it runs under a metric-level ``eps``: the spec a result records.

    A bounded attack given one float eps is rebuilt with it (``attack.replace(eps=...)``), so
    its spec says the eps that ran; per-example eps (a tensor) and minimal-norm attacks leave
    the attack as it is (the per-example eps is passed at call time).
    """
    spec = attack.spec()
    if isinstance(eps, float) and spec.bounded and "eps" in spec.config:
        current = spec.config.get("eps")
        if current is None or float(current) != eps:
            return attack.replace(eps=eps)
    return attack


def run_attack(
    attack: Attack,
    batch: Batch,
    labels: Tensor | None,
    eps: EpsLike,
    generator: torch.Generator | None,
) -> AttackResult:
    """``attack.run`` on a batch, with ``labels`` (None: the model's predictions).

    ``eps`` is the metric-level eps (a float or one value per example of the whole data set);
    its slice for this batch is passed only when given and meaningful for the attack.
    """
    e = batch_eps(eps, batch)
    if e is None or is_minimal(attack):
        return attack.run(batch.x, labels, generator=generator)
    return attack.run(batch.x, labels, eps=e, generator=generator)


def named_models(models: object) -> dict[str, nn.Module]:
    """Models as an ordered name -> module dict (a sequence is named model_0, model_1, ...)."""
    if isinstance(models, Mapping):
        named = {str(k): v for k, v in models.items()}
    elif isinstance(models, Sequence) and not isinstance(models, (str, bytes)):
        named = {f"model_{i}": m for i, m in enumerate(models)}
    elif isinstance(models, nn.Module):
        raise TypeError("models must be a sequence or a mapping of models, got a single nn.Module")
    else:
        raise TypeError(
            f"models must be a sequence or a mapping of nn.Module, got {describe(models)}"
        )
    if not named:
        raise ValueError("models is empty: pass at least one model")
    for name, m in named.items():
        if not isinstance(m, nn.Module):
            raise TypeError(f"models[{name!r}] must be a torch.nn.Module, got {describe(m)}")
    return named
