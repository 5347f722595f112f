"""Every registered model: shapes, gradients, state_dict, compile, counts and golden logits."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from advrobust.models import (
    INPUT_SETTINGS,
    InputSizeError,
    count_parameters,
    create_model,
    get_model_cfg,
    list_models,
)

# (input_size, in_channels) of the five input contracts: digits, MNIST, CIFAR, Tiny ImageNet, STL.
SIZES = [(8, 1), (28, 1), (32, 3), (64, 3), (96, 3)]
# Models whose forward/backward at 64x64 and 96x96 takes seconds on one CPU core.
HEAVY = {"wide-resnet-28-10", "wide-resnet-34-10"}
GOLDEN = Path(__file__).with_name("models_golden_logits.json")


def _supports(name: str, size: int) -> bool:
    return size >= get_model_cfg(name).min_input_size


def _shape_cases() -> list[object]:
    cases: list[object] = []
    for name in list_models():
        for size, channels in SIZES:
            heavy = (name in HEAVY and size > 8) or (name == "densenet" and size == 96)
            marks = [pytest.mark.slow] if heavy else []
            cases.append(pytest.param(name, size, channels, marks=marks, id=f"{name}-{size}"))
    return cases


@pytest.mark.parametrize(("name", "size", "channels"), _shape_cases())
def test_forward_shape_no_nan_and_every_parameter_gets_a_gradient(
    name: str, size: int, channels: int
) -> None:
    if not _supports(name, size):
        with pytest.raises(InputSizeError, match=r"smallest input size it supports is \d+x\d+"):
            create_model(name, in_channels=channels, input_size=size)
        return
    model = create_model(name, num_classes=7, in_channels=channels, input_size=size)
    model.train()
    x = torch.rand(2, channels, size, size, generator=torch.Generator().manual_seed(1))
    out = model(x)
    assert out.shape == (2, 7)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    # A loss that depends on every logit, so that every parameter is on the gradient path.
    (out.square().sum() + out.sum()).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: {pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}: {pname} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name}: {pname} has an all-zero gradient"


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=[pytest.mark.slow] if n in HEAVY else []) for n in list_models()],
)
def test_state_dict_round_trip(name: str, tmp_path: Path) -> None:
    size, channels = (32, 3) if name == "vgg-20" else (8, 1)
    torch.manual_seed(0)
    a = create_model(name, in_channels=channels, input_size=size)
    torch.manual_seed(1)
    b = create_model(name, in_channels=channels, input_size=size)
    a.eval()
    b.eval()
    x = torch.rand(2, channels, size, size)
    assert a.state_dict().keys() == b.state_dict().keys()
    with torch.no_grad():
        assert not torch.equal(a(x), b(x))
    path = tmp_path / "model.pt"
    torch.save(a.state_dict(), path)
    b.load_state_dict(torch.load(path, weights_only=True))
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


@pytest.mark.parametrize(
    "name",
    [
        "mlp",
        "resnet-20",
        *(
            pytest.param(n, marks=pytest.mark.slow)
            for n in ["simple-cnn", "densenet-40", "wide-resnet", "vgg-20"]
        ),
    ],
)
def test_forward_traces_as_one_graph_for_torch_compile(name: str) -> None:
    # fullgraph=True fails on any graph break; the aot_eager backend traces forward and backward
    # without generating C++ (the inductor run below is slow on CPU).
    size, channels = (32, 3) if name == "vgg-20" else (8, 1)
    model = create_model(name, in_channels=channels, input_size=size).eval()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    x = torch.rand(2, channels, size, size)
    torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-5)
    torch._dynamo.reset()


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("gcc") is None,
    reason="torch.compile's inductor backend needs a C compiler on CPU",
)
# torch's own inductor code path triggers its deprecation of torch.jit.script_method.
@pytest.mark.filterwarnings("ignore:.*torch.jit.script_method.*:DeprecationWarning")
@pytest.mark.parametrize("name", ["mlp", "resnet-20"])
def test_inductor_compiled_forward_matches_eager(name: str) -> None:
    model = create_model(name, in_channels=1, input_size=8).eval()
    compiled = torch.compile(model, fullgraph=True)
    x = torch.rand(4, 1, 8, 8)
    torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-4)
    torch._dynamo.reset()


def _count_cases() -> list[object]:
    return [
        pytest.param(name, setting, expected, id=f"{name}-{setting}")
        for name in list_models()
        for setting, expected in get_model_cfg(name).num_params.items()
    ]


@pytest.mark.parametrize(("name", "setting", "expected"), _count_cases())
def test_parameter_count_matches_the_registry(name: str, setting: str, expected: int) -> None:
    with torch.device("meta"):
        model = create_model(name, **get_model_cfg(name).setting_kwargs(setting))
    assert count_parameters(model) == expected


# The numbers of REFERENCE.md table 1 (paper 000) and the standard ones of other papers, written
# out here independently of the registry's metadata.
PAPER_COUNTS = [
    ("mlp", "mnist", 814_090),
    ("mlp", "cifar10", 3_157_002),
    ("simple-cnn", "mnist", 312_202),
    ("simple-cnn", "cifar10", 1_147_978),
    ("resnet-32", "cifar10", 467_946),
    ("resnet-20", "mnist", 272_778),
    ("resnet-20", "stl10", 278_186),
    ("densenet-40", "cifar10", 1_019_722),
    ("densenet-40", "stl10", 1_019_722),
    ("densenet-40", "tiny-imagenet", 1_105_032),
    # vgg-20 approximates paper 000's 7,257,322 / 6,044,072 by +36,320 (see its docstring).
    ("vgg-20", "stl10", 7_293_642),
    ("vgg-20", "tiny-imagenet", 6_080_392),
    # Zagoruyko & Komodakis / Madry et al. reference implementations.
    ("wide-resnet-28-10", "cifar10", 36_479_194),
    ("wide-resnet-34-10", "cifar10", 46_160_474),
    # DenseNet-BC-100 (k = 12) of Huang et al.
    ("densenet", "cifar10", 769_162),
]


@pytest.mark.parametrize(("name", "setting", "expected"), PAPER_COUNTS)
def test_reference_parameter_counts(name: str, setting: str, expected: int) -> None:
    kwargs = get_model_cfg(name).setting_kwargs(setting)
    with torch.device("meta"):
        model = create_model(name, **kwargs)
    assert count_parameters(model) == expected
    assert get_model_cfg(name).num_params[setting] == expected


def test_densenet40_count_does_not_depend_on_input_size() -> None:
    counts = {
        count_parameters(create_model("densenet-40", input_size=s).to("meta")) for s in (8, 32, 96)
    }
    assert counts == {1_019_722}


def test_resnet_he_option_a_counts() -> None:
    # He et al. option A (zero-padding shortcuts, no conv biases, global pooling): ARCHITECTURES.
    with torch.device("meta"):
        assert count_parameters(create_model("resnet-20", layout="he")) == 269_722
        assert count_parameters(create_model("resnet-32", layout="he")) == 464_154
        mnist = create_model("resnet-20", layout="he", in_channels=1, input_size=28)
        assert count_parameters(mnist) == 269_434
    model = create_model("resnet-20", layout="he", in_channels=1, input_size=8)
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 10)


def test_resnet_keras_pool_is_global_below_8x8_and_fixed_above() -> None:
    # 28 -> 14 -> 7: global pooling, 64 features; 96 -> 48 -> 24: AvgPool(8), 3x3x64 = 576.
    assert create_model("resnet-20", in_channels=1, input_size=28).fc.in_features == 64
    assert create_model("resnet-20", input_size=96).fc.in_features == 576
    assert create_model("resnet-20", input_size=64).fc.in_features == 256
    assert create_model("resnet-20", input_size=96, global_pool=True).fc.in_features == 64


def test_resnet_rejects_a_depth_that_is_not_6n_plus_2() -> None:
    from advrobust.models import ResNet

    with pytest.raises(ValueError, match=r"6n \+ 2"):
        ResNet(21)


def test_width_multiplier_scales_every_conv_family() -> None:
    # Kurakin's rho: rho = 0.5 halves the widths, so convolution weights shrink about 4x.
    with torch.device("meta"):
        for name in ["simple-cnn", "resnet-20", "vgg-20", "wide-resnet", "densenet-40"]:
            kwargs = {"input_size": 32, "in_channels": 3}
            full = count_parameters(create_model(name, **kwargs))
            half = count_parameters(create_model(name, width=0.5, **kwargs))
            double = count_parameters(create_model(name, width=2.0, **kwargs))
            assert half < full < double, name
            assert 2.5 < full / half < 4.5, name
    r = create_model("resnet-20", width=0.5)
    assert r.conv1.out_channels == 8
    assert r.layer3[0].conv1.out_channels == 32
    d = create_model("densenet-40", width=2.0)
    assert d.features.conv0.out_channels == 32


def test_simple_cnn_padding_on_digits() -> None:
    # Valid padding (the paper) needs 16x16; "auto" switches to "same" below that.
    with pytest.raises(InputSizeError, match=r"smallest input size it supports is 16x16"):
        create_model("simple-cnn", in_channels=1, input_size=8, padding="valid")
    auto = create_model("simple-cnn", in_channels=1, input_size=8)
    assert auto.features[0].padding == (1, 1)
    assert auto.classifier[0].in_features == 64 * 2 * 2
    paper = create_model("simple-cnn", in_channels=1, input_size=28)
    assert paper.features[0].padding == (0, 0)
    assert paper.classifier[0].in_features == 64 * 4 * 4
    same = create_model("simple-cnn", in_channels=1, input_size=28, padding="same")
    assert same.classifier[0].in_features == 64 * 7 * 7
    smallest = create_model("simple-cnn", in_channels=1, input_size=16, padding="valid")
    assert smallest(torch.rand(2, 1, 16, 16)).shape == (2, 10)
    with pytest.raises(InputSizeError, match=r"4x4"):
        create_model("simple-cnn", in_channels=1, input_size=3)


def test_simple_cnn_variant_follows_channels_and_can_be_forced() -> None:
    assert create_model("simple-cnn", in_channels=1, input_size=28).features[0].out_channels == 32
    assert create_model("simple-cnn", in_channels=3, input_size=32).features[0].out_channels == 64
    forced = create_model("simple-cnn", in_channels=1, input_size=28, variant="cifar")
    assert forced.features[0].out_channels == 64


def test_mlp_depth_and_hidden() -> None:
    m = create_model("mlp", in_channels=1, input_size=8, hidden=32, depth=3)
    assert [layer.out_features for layer in m.features if isinstance(layer, nn.Linear)] == [32] * 3
    m = create_model("mlp", in_channels=1, input_size=8, hidden=[64, 16])
    assert m.classifier.in_features == 16
    with pytest.raises(ValueError, match=r"depth"):
        create_model("mlp", hidden=[64, 16], depth=3)


def test_vgg_input_size_error_names_the_smallest_size() -> None:
    with pytest.raises(ValueError, match=r"smallest input size it supports is 32x32"):
        create_model("vgg-20", in_channels=1, input_size=28)


def test_general_densenet_options() -> None:
    d40 = create_model("densenet", depth=40, bottleneck=False, compression=1.0)
    assert count_parameters(d40) == 1_019_722
    assert d40.num_features == 448
    with pytest.raises(ValueError, match=r"6L \+ 4"):
        create_model("densenet", depth=41)
    assert create_model("densenet", depth=22, input_size=8)(torch.rand(2, 3, 8, 8)).shape == (2, 10)


def test_wide_resnet_options() -> None:
    with torch.device("meta"):
        assert (
            count_parameters(create_model("wide-resnet", depth=28, widen_factor=10)) == 36_479_194
        )
    m = create_model("wide-resnet", depth=10, widen_factor=1, dropout=0.3)
    assert isinstance(m.layer1[0].dropout, nn.Dropout)
    with pytest.raises(ValueError, match=r"6n \+ 4"):
        create_model("wide-resnet", depth=12)


def _golden_case(name: str) -> tuple[int, int]:
    return (32, 3) if get_model_cfg(name).min_input_size > 8 else (8, 1)


def test_golden_logits() -> None:
    """Seeded init + fixed input -> stored logits (ADVROBUST_ACCEPT_GOLDEN=1 rewrites them)."""
    accept = os.environ.get("ADVROBUST_ACCEPT_GOLDEN") == "1"
    stored = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    got: dict[str, list[list[float]]] = {}
    for name in list_models():
        if name in HEAVY:
            continue
        size, channels = _golden_case(name)
        torch.manual_seed(0)
        model = create_model(name, in_channels=channels, input_size=size).eval()
        x = torch.rand(2, channels, size, size, generator=torch.Generator().manual_seed(123))
        with torch.no_grad():
            got[name] = model(x).tolist()
    if accept:
        GOLDEN.write_text(json.dumps(got, indent=1) + "\n")
        return
    missing = sorted(set(got) - set(stored))
    assert not missing, f"no golden logits for {missing}; run with ADVROBUST_ACCEPT_GOLDEN=1"
    for name, logits in got.items():
        torch.testing.assert_close(
            torch.tensor(logits), torch.tensor(stored[name]), rtol=1e-4, atol=1e-5, msg=name
        )


def test_input_settings_cover_the_papers_datasets() -> None:
    assert INPUT_SETTINGS["stl10"] == (10, 3, 96)
    assert INPUT_SETTINGS["tiny-imagenet"] == (200, 3, 64)
    assert get_model_cfg("mlp").setting_kwargs("mnist") == {
        "num_classes": 10,
        "in_channels": 1,
        "input_size": 28,
    }
    with pytest.raises(ValueError, match=r"setting must be one of"):
        get_model_cfg("mlp").setting_kwargs("imagenet")
