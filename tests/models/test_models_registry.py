"""The registry (register_model, create_model, list_models, get_model_cfg) and Normalize."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advrobust.models import (
    ModelCfg,
    Normalize,
    _registry,
    count_parameters,
    create_model,
    get_model_cfg,
    list_models,
    register_model,
)

EXPECTED_NAMES = {
    "mlp",
    "simple-cnn",
    "vgg-20",
    "resnet-20",
    "resnet-32",
    "resnet-44",
    "resnet-56",
    "resnet-110",
    "wide-resnet",
    "wide-resnet-28-10",
    "wide-resnet-34-10",
    "densenet-40",
    "densenet",
}


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> dict[str, ModelCfg]:
    registry = dict(_registry._REGISTRY)
    monkeypatch.setattr(_registry, "_REGISTRY", registry)
    return registry


def test_the_contract_names_are_registered() -> None:
    assert set(list_models()) == EXPECTED_NAMES
    assert list_models() == sorted(list_models())


def test_list_models_filters_with_shell_patterns() -> None:
    assert list_models("resnet-*") == [
        "resnet-110",
        "resnet-20",
        "resnet-32",
        "resnet-44",
        "resnet-56",
    ]
    assert list_models("wide-resnet-??-10") == ["wide-resnet-28-10", "wide-resnet-34-10"]
    assert list_models("*net-4?") == ["densenet-40", "resnet-44"]
    assert list_models("nothing*") == []
    with pytest.raises(TypeError, match=r"filter"):
        list_models(3)  # type: ignore[arg-type]


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'resnet-18'.*densenet-40.*vgg-20"):
        create_model("resnet-18")
    with pytest.raises(ValueError, match=r"valid names"):
        get_model_cfg("nope")


def test_unknown_kwargs_are_errors_naming_them() -> None:
    with pytest.raises(TypeError, match=r"unexpected keyword argument.*depthh.*accepts.*width"):
        create_model("resnet-20", depthh=3)


def test_none_kwargs_do_not_override_defaults() -> None:
    a = create_model("mlp", hidden=None, depth=None, num_classes=None, in_channels=None)
    cfg = get_model_cfg("mlp")
    assert a.classifier.out_features == cfg.num_classes
    assert a.features[0].in_features == cfg.in_channels * cfg.input_size**2
    assert a.features[0].out_features == 1024
    # None passes even for unknown options, which lets callers forward optional settings.
    assert isinstance(create_model("mlp", not_an_option=None), nn.Module)


def test_contract_arguments_are_validated() -> None:
    with pytest.raises(ValueError, match=r"num_classes must be >= 1"):
        create_model("mlp", num_classes=0)
    with pytest.raises(TypeError, match=r"input_size must be an int"):
        create_model("mlp", input_size=8.0)
    with pytest.raises(ValueError, match=r"width must be > 0"):
        create_model("resnet-20", width=0)


def test_duplicate_registration_is_an_error(scratch_registry: dict[str, ModelCfg]) -> None:
    @register_model("tmp-linear", family="linear", description="test")
    def tmp_linear(
        *, num_classes: int = 10, in_channels: int = 3, input_size: int = 32
    ) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * input_size**2, num_classes))

    assert "tmp-linear" in list_models()
    assert create_model("tmp-linear", input_size=4)(torch.rand(2, 3, 4, 4)).shape == (2, 10)
    with pytest.raises(ValueError, match=r"already registered"):
        register_model("tmp-linear", family="linear", description="again")(tmp_linear)
    with pytest.raises(ValueError, match=r"already registered"):
        register_model("resnet-20", family="resnet", description="clash")(tmp_linear)


def test_builders_must_be_keyword_only(scratch_registry: dict[str, ModelCfg]) -> None:
    def positional(num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> nn.Module:
        return nn.Identity()

    with pytest.raises(TypeError, match=r"keyword-only"):
        register_model("tmp-positional", family="x", description="x")(positional)

    def incomplete(*, num_classes: int = 10) -> nn.Module:
        return nn.Identity()

    with pytest.raises(TypeError, match=r"in_channels, input_size"):
        register_model("tmp-incomplete", family="x", description="x")(incomplete)
    with pytest.raises(ValueError, match=r"num_params keys"):
        register_model("tmp-bad", family="x", description="x", num_params={"imagenet": 1})


def test_model_cfg_records_the_input_contract_and_paper() -> None:
    cfg = get_model_cfg("vgg-20")
    assert isinstance(cfg, ModelCfg)
    assert (cfg.input_size, cfg.in_channels, cfg.num_classes, cfg.min_input_size) == (32, 3, 10, 32)
    assert cfg.exact is False
    assert "ICLR 2019 study" in cfg.paper  # (was "paper 000": papers are named now)
    assert get_model_cfg("densenet-40").exact is True
    with pytest.raises(TypeError):
        cfg.num_params["stl10"] = 1  # type: ignore[index]
    # The defaults of create_model are the registry's: 10 classes, 3x32x32 for every model.
    for name in list_models():
        c = get_model_cfg(name)
        assert (c.num_classes, c.in_channels, c.input_size) == (10, 3, 32), name
    assert create_model("vgg-20").classifier[0].in_features == 512
    assert create_model("mlp").features[0].in_features == 3 * 32 * 32


def test_normalize_layer_is_prepended() -> None:
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)
    torch.manual_seed(0)
    plain = create_model("resnet-20", input_size=8)
    torch.manual_seed(0)
    wrapped = create_model("resnet-20", input_size=8, normalize=(mean, std))
    assert isinstance(wrapped, nn.Sequential)
    assert isinstance(wrapped[0], Normalize)
    assert count_parameters(wrapped) == count_parameters(plain)
    plain.eval()
    wrapped.eval()
    x = torch.rand(2, 3, 8, 8)
    manual = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(wrapped(x), plain(manual))
    with pytest.raises(ValueError, match=r"in_channels=1"):
        create_model("mlp", in_channels=1, input_size=8, normalize=(mean, std))
    with pytest.raises(TypeError, match=r"normalize"):
        create_model("mlp", normalize=(0.5,))  # type: ignore[arg-type]


def test_normalize_math_buffers_and_validation() -> None:
    norm = Normalize([0.5, 0.25], [0.5, 0.25])
    x = torch.rand(3, 2, 4, 4, dtype=torch.float64)
    out = norm(x)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out[:, 0], (x[:, 0] - 0.5) / 0.5)
    torch.testing.assert_close(out[:, 1], (x[:, 1] - 0.25) / 0.25)
    assert count_parameters(norm) == 0
    assert set(norm.state_dict()) == {"mean", "std"}
    assert "mean=(0.5, 0.25)" in repr(norm)
    single = Normalize([0.1307], [0.3081])
    assert single(torch.zeros(1, 1, 2, 2)).shape == (1, 1, 2, 2)
    with pytest.raises(ValueError, match=r"same length"):
        Normalize([0.5, 0.5], [0.5])
    with pytest.raises(ValueError, match=r"std must be > 0"):
        Normalize([0.5], [0.0])
    with pytest.raises(ValueError, match=r"finite"):
        Normalize([float("nan")], [1.0])
    with pytest.raises(TypeError, match=r"sequence"):
        Normalize("abc", [1.0])  # type: ignore[arg-type]


def test_count_parameters_counts_trainable_only() -> None:
    bn = nn.BatchNorm2d(4)
    assert count_parameters(bn) == 8  # gamma and beta; running stats are buffers
    lin = nn.Linear(3, 2)
    lin.bias.requires_grad_(False)
    assert count_parameters(lin) == 6
    with pytest.raises(TypeError, match=r"nn.Module"):
        count_parameters("resnet")  # type: ignore[arg-type]
