"""StudyConfig: validation naming the field, TOML/JSON round trips, fingerprints, presets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from advrobust.study import (
    AttackSpec,
    ConfigError,
    DataSpec,
    EvalSpec,
    ModelSpec,
    RecipeSpec,
    StudyConfig,
    TrainingSpec,
    list_presets,
    load_preset,
)


def _config(**changes: object) -> StudyConfig:
    base: dict[str, object] = {
        "name": "t",
        "data": DataSpec(name="digits", sizes=(20, 40)),
        "models": (ModelSpec("mlp", {"hidden": 16}), ModelSpec("simple-cnn", {"width": 0.25})),
        "recipes": (RecipeSpec("clean"), RecipeSpec("adv", "kurakin", {"k": 4})),
        "training": TrainingSpec(epochs=2, augmentation=("shift",)),
        "evaluation": EvalSpec(num_examples=10, deltas=(0.1, 0.2)),
    }
    base.update(changes)
    return StudyConfig(**base)  # type: ignore[arg-type]


def test_study_config_toml_and_json_round_trip(tmp_path: Path) -> None:
    cfg = _config(description="a test", device="cpu")
    assert StudyConfig.from_toml(cfg.to_toml()) == cfg
    assert StudyConfig.from_json(cfg.to_json()) == cfg
    for suffix in (".toml", ".json"):
        path = cfg.save(tmp_path / f"c{suffix}")
        assert StudyConfig.load(path) == cfg
    # tuples come back as tuples, labels are resolved
    again = StudyConfig.from_toml(cfg.to_toml())
    assert again.data.sizes == (20, 40)
    assert [m.key for m in again.models] == ["mlp-hidden=16", "simple-cnn-width=0.25"]


def test_study_config_optional_none_fields_survive_toml() -> None:
    cfg = _config(evaluation=EvalSpec(accuracy_examples=None, num_examples=5))
    assert "accuracy_examples" not in cfg.to_toml()
    assert StudyConfig.from_toml(cfg.to_toml()) == cfg
    cfg2 = _config(data=DataSpec(root="/data/x", sizes=(5,)))
    assert StudyConfig.from_toml(cfg2.to_toml()).data.root == "/data/x"


def test_study_config_fingerprint_ignores_device_and_description() -> None:
    a = _config()
    assert a.fingerprint() == _config(device="cpu", description="other").fingerprint()
    # where the files are is not what the study is: resuming on another machine is allowed
    moved = _config(data=DataSpec(name="digits", root="/elsewhere", sizes=(20, 40)))
    assert moved.fingerprint() == a.fingerprint()
    assert _config(data=DataSpec(name="digits", sizes=(20, 80))).fingerprint() != a.fingerprint()
    assert a.fingerprint() == _config(threads=3).fingerprint()
    assert a.fingerprint() != _config(seed=1).fingerprint()
    assert a.fingerprint() != _config(data=DataSpec(sizes=(20, 41))).fingerprint()
    # how often a cell's training is checkpointed does not change its results
    rare = TrainingSpec(epochs=2, augmentation=("shift",), checkpoint_seconds=600.0)
    assert a.training.checkpoint_seconds == 60.0  # the study default
    assert _config(training=rare).fingerprint() == a.fingerprint()
    assert StudyConfig.from_toml(_config(training=rare).to_toml()).training == rare
    assert a.fingerprint() != _config(training=TrainingSpec(epochs=3)).fingerprint()


@pytest.mark.parametrize(
    ("changes", "field", "text"),
    [
        ({"data": {"name": "digits", "sizes": [40, 20]}}, "data.sizes", "strictly increasing"),
        ({"data": {"name": "digits", "sizes": []}}, "data.sizes", "non-empty"),
        ({"data": {"name": "digits", "sizes": [10, "x"]}}, "data.sizes[1]", "must be an int"),
        ({"data": {"name": "nope", "sizes": [10]}}, "data.name", "valid datasets: "),
        ({"data": {"name": "digits", "sizes": [10], "colour": 1}}, "data.colour", "unknown key"),
        ({"models": [{"name": "mlp"}, {"name": "resnet-21"}]}, "models[1].name", "resnet-20"),
        ({"models": [{"name": "mlp"}, {"name": "mlp"}]}, "models[1].label", "duplicate"),
        ({"models": [{"name": "mlp", "label": "a b"}]}, "models[0].label", "file names"),
        ({"models": []}, "models", "non-empty"),
        ({"recipes": [{"name": "r", "kind": "fancy"}]}, "recipes[0].kind", "pgd-at"),
        ({"training": {"epochs": 0}}, "training.epochs", ">= 1"),
        ({"training": {"lr": -1.0}}, "training.lr", "> 0"),
        ({"training": {"optimizer": "rmsprop"}}, "training.optimizer", "adam"),
        ({"training": {"augmentation": ["blur"]}}, "training.augmentation[0]", "rotation"),
        ({"evaluation": {"metrics": ["accuracy", "psnr"]}}, "evaluation.metrics[1]", "deepsec"),
        ({"evaluation": {"deltas": [0.1, -0.2]}}, "evaluation.deltas[1]", "> 0"),
        ({"evaluation": {"num_examples": 0}}, "evaluation.num_examples", ">= 1"),
        ({"evaluation": {"common_set": "some"}}, "evaluation.common_set", "sizes"),
        ({"evaluation": {"linf_attack": {"name": "Foo"}}}, "evaluation.linf_attack.name", "CWL2"),
        (
            {"evaluation": {"l2_attack": {"name": "CWL2", "kwargs": {"steps": None}}}},
            "evaluation.l2_attack.kwargs.steps",
            "None",
        ),
        ({"device": "gpu"}, "device", "cuda"),
        ({"seed": -1}, "seed", ">= 0"),
        ({"threads": 0}, "threads", ">= 1"),
        ({"colour": "red"}, "colour", "unknown key"),
    ],
)
def test_study_config_errors_name_the_field(
    changes: dict[str, object], field: str, text: str
) -> None:
    data = _config().to_dict()
    data.update(changes)
    with pytest.raises(ConfigError) as info:
        StudyConfig.from_dict(data)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert text in str(info.value)


def test_study_config_missing_required_and_bad_toml() -> None:
    with pytest.raises(ConfigError, match=r"^models: missing"):
        StudyConfig.from_dict({"name": "x", "data": {"sizes": [1]}})
    with pytest.raises(ConfigError, match="invalid TOML"):
        StudyConfig.from_toml("name = [")
    with pytest.raises(ConfigError, match="invalid JSON"):
        StudyConfig.from_json("{")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        StudyConfig.load("/nonexistent/x.toml")


def test_study_config_is_frozen() -> None:
    cfg = _config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 3  # type: ignore[misc]
    assert cfg.replace(seed=3).seed == 3
    with pytest.raises(ConfigError, match=r"^seed"):
        cfg.replace(seed=-3)


def test_study_config_attack_spec_rejects_model_kwarg() -> None:
    with pytest.raises(ConfigError, match=r"kwargs\.model"):
        AttackSpec("BIM", {"model": "x"})


def test_study_presets_load_and_unknown_preset_lists_names() -> None:
    names = list_presets()
    for expected in (
        "digits",
        "mnist-000",
        "cifar10-000",
        "kurakin-label-leak",
        "transfer-matrix",
        "capacity",
    ):
        assert expected in names
    for name in names:
        cfg = load_preset(name)
        assert cfg.name == name
        assert cfg.description
        assert StudyConfig.from_toml(cfg.to_toml()) == cfg
    digits = load_preset("digits")
    assert {m.name for m in digits.models} >= {"mlp", "simple-cnn"}
    assert set(digits.evaluation.metrics) >= {
        "accuracy",
        "robustness-linf",
        "robustness-l2",
        "adversarial-accuracy",
    }
    with pytest.raises(ValueError, match=r"valid presets: .*digits"):
        load_preset("digit")


@pytest.mark.parametrize("name", list_presets())
def test_study_presets_build_models_recipes_and_attacks(name: str) -> None:
    import numpy as np
    import torch

    from advrobust.models import INPUT_SETTINGS
    from advrobust.study._build import StudyData, check_buildable, make_attack, train_config

    cfg = load_preset(name)
    for recipe in cfg.recipes:
        tc = train_config(cfg, recipe, 0)
        assert tc.epochs == cfg.training.epochs
        assert (tc.num_replaced(32) == 0) == (recipe.kind == "clean")
    # what run_study checks before it writes anything (models on the dataset's input contract,
    # recipes, the attacks of the chosen metrics), without the data files
    classes, channels, size = INPUT_SETTINGS[cfg.data.name]
    index = np.arange(1)
    check_buildable(cfg, StudyData(None, None, [], index, index, classes, channels, size))
    probe = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    ev = cfg.evaluation
    for field in ("linf_attack", "l2_attack", "delta_attack", "transfer_attack", "deepsec_attack"):
        make_attack(getattr(ev, field), probe, field)
