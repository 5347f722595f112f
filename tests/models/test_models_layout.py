"""to_device: the CPU layout of convolutional models (channels_last), values unchanged."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from advrobust.models import create_model, to_device

CL = torch.channels_last


def _conv_weights(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize(
    ("name", "kwargs", "channels", "size"),
    [("simple-cnn", {"width": 0.5}, 1, 8), ("resnet-20", {}, 3, 32), ("vgg-20", {}, 3, 32)],
)
def test_models_to_device_gives_conv_models_channels_last_on_cpu_and_the_same_function(
    name: str, kwargs: dict[str, object], channels: int, size: int
) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_channels=channels, input_size=size, **kwargs)
    ref = copy.deepcopy(model).eval()
    out = to_device(model, "cpu")
    assert out is model  # moved in place, as nn.Module.to
    model.eval()
    # every 4-D weight with more than one input channel and a k x k kernel (k > 1; for 1 the
    # two layouts are the same strides) is stored NHWC now
    weights = [w for w in _conv_weights(model) if w.shape[1] > 1 and w.shape[-1] > 1]
    assert weights and all(w.is_contiguous(memory_format=CL) for w in weights)
    assert all(not w.is_contiguous() for w in weights)
    x = torch.rand(5, channels, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got, want = model(x), ref(x)
    # the same network: only the summation order of the convolutions differs
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    # input gradients too (what every attack uses)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    (ga,) = torch.autograd.grad(model(xa).logsumexp(1).sum(), xa)
    (gb,) = torch.autograd.grad(ref(xb).logsumexp(1).sum(), xb)
    torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-6)
    # state_dict files are interchangeable between the layouts
    fresh = create_model(name, num_classes=10, in_channels=channels, input_size=size, **kwargs)
    fresh.load_state_dict(model.state_dict())
    fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), want, rtol=1e-4, atol=1e-5)


def test_models_to_device_leaves_models_without_convolutions_and_other_devices_alone() -> None:
    mlp = create_model("mlp", num_classes=10, in_channels=1, input_size=8)
    before = {k: v.clone() for k, v in mlp.state_dict().items()}
    assert to_device(mlp, torch.device("cpu")) is mlp
    for k, v in mlp.state_dict().items():
        assert v.is_contiguous() and torch.equal(v, before[k])
    cnn = create_model("simple-cnn", num_classes=10, in_channels=1, input_size=8)
    moved = to_device(cnn, "meta")  # not the CPU: torch's layout, unchanged
    assert all(w.device.type == "meta" and w.is_contiguous() for w in _conv_weights(moved))


def test_models_to_device_bad_input_names_the_argument() -> None:
    with pytest.raises(TypeError, match=r"model must be an nn\.Module"):
        to_device("simple-cnn", "cpu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="device must be one of"):
        to_device(nn.Linear(2, 2), "gpu0")
