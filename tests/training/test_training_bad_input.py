"""Bad input at every training entry point: the exception type, and a message naming the argument.

Each case builds its own tiny model and data (4x4 single-channel images, 3 classes) and calls
one public entry point of ``advrobust.training`` with one thing wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from advrobust.attacks import FGSM
from advrobust.training import (
    AdversarialTrainer,
    Callback,
    TrainConfig,
    TruncatedNormalEps,
    eps_sampler_from_spec,
    load_checkpoint,
    mixed_batch_loss,
    save_checkpoint,
    select_replaced,
)

CLEAN = TrainConfig.clean(epochs=1, batch_size=8, lr=0.1)
KURAKIN = TrainConfig.kurakin(epochs=1, batch_size=8, lr=0.1)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))


class _TupleOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.lin(x.flatten(1))
        return out, out


class _FlatOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x.flatten(1)).squeeze(1)  # (B,), not (B, K)


def _data(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 4, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


def _with_nan() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = _data()
    x[5, 0, 1, 1] = float("nan")
    return x, y


def _labels(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x, _ = _data(values.shape[0])
    return x, values


def _fit(data: Any, model: nn.Module | None = None, cfg: TrainConfig = CLEAN, **kw: Any) -> Any:
    return lambda: AdversarialTrainer(model or _model(), cfg).fit(data, progress=False, **kw)


def _evaluate(data: Any, model: nn.Module | None = None) -> Callable[[], Any]:
    return lambda: AdversarialTrainer(model or _model(), CLEAN).evaluate(data)


def _train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], Any]:
    return lambda: AdversarialTrainer(model, CLEAN).train_step(x, y)


def _two_device_model() -> nn.Module:
    model = _model()
    model[1].bias = nn.Parameter(torch.zeros(3, device="meta"))
    return model


def _other_optimizer() -> Callable[[], Any]:
    stranger = nn.Linear(2, 2)
    return lambda: AdversarialTrainer(
        _model(), CLEAN, optimizer=torch.optim.SGD(stranger.parameters(), lr=0.1)
    )


def _empty_loader() -> DataLoader[Any]:
    x, y = _data()
    return DataLoader(TensorDataset(x[:0], y[:0]), batch_size=8)


def _loader(x: torch.Tensor, y: torch.Tensor) -> DataLoader[Any]:
    return DataLoader(TensorDataset(x, y), batch_size=8)


def _save_in(tmp: Path, state: Any) -> Callable[[], Any]:
    return lambda: save_checkpoint(tmp / "c.pt", state)


x16, y16 = _data()
bad_high = torch.tensor([0, 1, 2, 7] * 4)
bad_negative = torch.tensor([0, -1, 2, 1] * 4)

# (id, factory(tmp_path) -> call, exception type, regex the message must match)
CASES: list[tuple[str, Callable[[Path], Callable[[], Any]], type[BaseException], str]] = [
    # ---------------------------------------------------------------- AdversarialTrainer(...)
    ("init-model-type", lambda t: lambda: AdversarialTrainer("net"), TypeError, r"model must"),
    (
        "init-config-type",
        lambda t: lambda: AdversarialTrainer(_model(), {"lr": 0.1}),
        TypeError,
        r"config must",
    ),
    (
        "init-no-parameters",
        lambda t: lambda: AdversarialTrainer(nn.Flatten(), CLEAN),
        ValueError,
        r"model has no parameters",
    ),
    (
        "init-meta-model",
        lambda t: lambda: AdversarialTrainer(_model().to("meta"), CLEAN),
        ValueError,
        r"model is on the meta device",
    ),
    (
        "init-two-devices",
        lambda t: lambda: AdversarialTrainer(_two_device_model(), CLEAN),
        ValueError,
        r"model has parameters.*several devices",
    ),
    (
        "init-optimizer-type",
        lambda t: lambda: AdversarialTrainer(_model(), CLEAN, optimizer="sgd"),
        TypeError,
        r"optimizer must",
    ),
    (
        "init-optimizer-foreign",
        lambda t: _other_optimizer(),
        ValueError,
        r"optimizer holds parameters",
    ),
    (
        "init-attack-type",
        lambda t: lambda: AdversarialTrainer(_model(), CLEAN, attack="FGSM"),
        TypeError,
        r"attack must",
    ),
    (
        "init-attack-other-model",
        lambda t: lambda: AdversarialTrainer(_model(), CLEAN, attack=FGSM(_model())),
        ValueError,
        r"attack attacks a different model",
    ),
    (
        "init-loss-fn",
        lambda t: lambda: AdversarialTrainer(_model(), CLEAN, loss_fn=3),
        TypeError,
        r"loss_fn must be callable",
    ),
    (
        "init-regularizer",
        lambda t: lambda: AdversarialTrainer(_model(), CLEAN, regularizer="l2"),
        TypeError,
        r"regularizer must be callable",
    ),
    (
        "init-amp-fp16-cpu",
        lambda t: lambda: AdversarialTrainer(_model(), CLEAN.replace(amp="fp16")),
        ValueError,
        r"amp='fp16'",
    ),
    # ---------------------------------------------------------------- fit
    ("fit-data-type", lambda t: _fit(5), TypeError, r"train_loader must be"),
    (
        "fit-empty-tensors",
        lambda t: _fit((x16[:0], y16[:0])),
        ValueError,
        r"train_loader holds no examples",
    ),
    ("fit-empty-loader", lambda t: _fit(_empty_loader()), ValueError, r"train_loader is empty"),
    (
        "fit-empty-iterable",
        lambda t: _fit(iter([])),
        ValueError,
        r"train_loader yielded no batches",
    ),
    (
        "fit-y-length",
        lambda t: _fit((x16, y16[:5])),
        ValueError,
        r"train_loader: y must have shape \(16,\)",
    ),
    ("fit-nan-x-clean", lambda t: _fit(_with_nan()), ValueError, r"x contains NaN"),
    ("fit-nan-x-kurakin", lambda t: _fit(_with_nan(), cfg=KURAKIN), ValueError, r"x contains NaN"),
    ("fit-nan-x-loader", lambda t: _fit(_loader(*_with_nan())), ValueError, r"x contains NaN"),
    (
        "fit-label-too-high",
        lambda t: _fit(_labels(bad_high)),
        ValueError,
        r"y must hold class indices in \[0, 3\)",
    ),
    (
        "fit-label-negative",
        lambda t: _fit(_labels(bad_negative)),
        ValueError,
        r"y must hold class indices in \[0, 3\)",
    ),
    (
        "fit-label-too-high-loader",
        lambda t: _fit(_loader(*_labels(bad_high))),
        ValueError,
        r"y must hold class indices in \[0, 3\)",
    ),
    (
        "fit-label-float",
        lambda t: _fit(_loader(x16, y16.float())),
        TypeError,
        r"y must be a 1-D integer tensor",
    ),
    (
        "fit-x-int",
        lambda t: _fit(_loader((x16 * 255).long(), y16)),
        TypeError,
        r"x must be a floating-point",
    ),
    (
        "fit-model-tuple",
        lambda t: _fit(_data(), model=_TupleOut()),
        TypeError,
        r"model output must be a tensor",
    ),
    (
        "fit-model-tuple-loader",
        lambda t: _fit(_loader(*_data()), model=_TupleOut()),
        TypeError,
        r"model output must be a tensor",
    ),
    (
        "fit-model-flat",
        lambda t: _fit(_data(), model=_FlatOut()),
        ValueError,
        r"model output must have shape \(B, K\)",
    ),
    (
        "fit-data-on-meta",
        lambda t: _fit(_loader(x16.to("meta"), y16.to("meta"))),
        ValueError,
        r"x is on meta",
    ),
    (
        "fit-epochs-zero",
        lambda t: _fit(_data(), epochs=0),
        ValueError,
        r"epochs must be an int >= 1",
    ),
    (
        "fit-epochs-str",
        lambda t: _fit(_data(), epochs="2"),
        ValueError,
        r"epochs must be an int >= 1",
    ),
    (
        "fit-callbacks",
        lambda t: _fit(_data(), callbacks=[print]),
        TypeError,
        r"callbacks must be Callback",
    ),
    (
        "fit-val-attack",
        lambda t: _fit(_data(), val_loader=_data(), val_attack=FGSM(_model())),
        ValueError,
        r"val_attack attacks a different model",
    ),
    (
        "fit-val-empty",
        lambda t: _fit(_data(), val_loader=(x16[:0], y16[:0])),
        ValueError,
        r"val_loader holds no examples",
    ),
    # ---------------------------------------------------------------- evaluate
    (
        "evaluate-empty",
        lambda t: _evaluate((x16[:0], y16[:0])),
        ValueError,
        r"data holds no examples",
    ),
    (
        "evaluate-empty-loader",
        lambda t: _evaluate(_empty_loader()),
        ValueError,
        r"data holds no examples",
    ),
    ("evaluate-nan-x", lambda t: _evaluate(_with_nan()), ValueError, r"x contains NaN"),
    (
        "evaluate-label-too-high",
        lambda t: _evaluate(_labels(bad_high)),
        ValueError,
        r"y must hold class indices in \[0, 3\)",
    ),
    (
        "evaluate-model-tuple",
        lambda t: _evaluate(_data(), model=_TupleOut()),
        TypeError,
        r"model output must be a tensor",
    ),
    (
        "evaluate-attack-type",
        lambda t: lambda: AdversarialTrainer(_model(), CLEAN).evaluate(_data(), attack="FGSM"),
        TypeError,
        r"attack must",
    ),
    # ---------------------------------------------------------------- train_step
    (
        "train-step-label-too-high",
        lambda t: _train_step(_model(), x16, bad_high),
        ValueError,
        r"y must hold class indices in \[0, 3\)",
    ),
    (
        "train-step-model-tuple",
        lambda t: _train_step(_TupleOut(), x16, y16),
        TypeError,
        r"model output must be a tensor",
    ),
    # ---------------------------------------------------------------- checkpoints
    ("save-path-type", lambda t: lambda: save_checkpoint(123, {}), TypeError, r"path must be"),
    (
        "save-state-type",
        lambda t: lambda: save_checkpoint(t / "c.pt", [1]),
        TypeError,
        r"state must be a mapping",
    ),
    ("save-state-key", lambda t: _save_in(t, {1: 2}), TypeError, r"state keys must be strings"),
    (
        "save-state-numpy",
        lambda t: _save_in(t, {"lr": np.float64(0.1)}),
        TypeError,
        r"state\['lr'\]",
    ),
    (
        "save-state-object",
        lambda t: _save_in(t, {"m": {"fn": print}}),
        TypeError,
        r"state\['m'\]\['fn'\]",
    ),
    ("load-path-type", lambda t: lambda: load_checkpoint(None), TypeError, r"path must be"),
    (
        "load-missing",
        lambda t: lambda: load_checkpoint(t / "nope.pt"),
        FileNotFoundError,
        r"nope\.pt",
    ),
    (
        "trainer-save-no-dir",
        lambda t: lambda: AdversarialTrainer(_model(), CLEAN).save_checkpoint(),
        ValueError,
        r"path is required",
    ),
    (
        "trainer-resume-no-dir",
        lambda t: lambda: AdversarialTrainer(_model(), CLEAN).resume(),
        ValueError,
        r"path is required",
    ),
    # ---------------------------------------------------------------- functional pieces
    (
        "loss-adv-weight",
        lambda t: (
            lambda: mixed_batch_loss(torch.zeros(2, 3), y16[:2], torch.zeros(0, 3), y16[:0], -1.0)
        ),
        ValueError,
        r"adv_weight must be >= 0",
    ),
    (
        "loss-label-too-high",
        lambda t: (
            lambda: mixed_batch_loss(torch.zeros(4, 3), bad_high[:4], torch.zeros(0, 3), y16[:0])
        ),
        ValueError,
        r"y_clean must hold class indices in \[0, 3\)",
    ),
    (
        "loss-logits-tuple",
        lambda t: lambda: mixed_batch_loss((1, 2), y16[:2], torch.zeros(0, 3), y16[:0]),
        TypeError,
        r"logits_clean must be a tensor",
    ),
    ("select-k-too-large", lambda t: lambda: select_replaced(4, k=5), ValueError, r"k"),
    (
        "select-generator",
        lambda t: lambda: select_replaced(4, k=2, generator=1),
        TypeError,
        r"generator must be",
    ),
    ("eps-std-negative", lambda t: lambda: TruncatedNormalEps(std=-1.0), ValueError, r"std"),
    (
        "eps-spec-name",
        lambda t: lambda: eps_sampler_from_spec({"name": "gaussian"}),
        ValueError,
        r"\['name'\] must be one of",
    ),
    (
        "config-batch-size",
        lambda t: lambda: TrainConfig(batch_size=0),
        ValueError,
        r"batch_size must be >= 1",
    ),
    (
        "config-lr-nan",
        lambda t: lambda: TrainConfig(lr=float("nan")),
        ValueError,
        r"lr must be finite",
    ),
]


@pytest.mark.parametrize(
    ("make", "exc", "pattern"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_training_bad_input(tmp_path, make, exc, pattern):
    with pytest.raises(exc, match=pattern):
        make(tmp_path)()


def test_training_bad_input_leaves_model_untouched():
    # refused before the first step: parameters, buffers, .grad and the train flag unchanged
    model = _model()
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for data in (_with_nan(), _labels(bad_high), (x16[:0], y16[:0])):
        with pytest.raises(ValueError):
            AdversarialTrainer(model, CLEAN).fit(data, progress=False)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(p.grad is None for p in model.parameters()) and not model.training


def test_training_bad_input_callback_subclass_is_accepted():
    class Count(Callback):
        n = 0

        def on_batch_end(self, trainer: Any, info: Any) -> None:
            Count.n += 1

    AdversarialTrainer(_model(), CLEAN).fit(_data(), callbacks=[Count()], progress=False)
    assert Count.n == 2
