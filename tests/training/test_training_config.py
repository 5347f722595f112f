import dataclasses
import json

import pytest

from advrobust.training import FixedEps, TrainConfig


def test_training_config_defaults_are_kurakin():
    c = TrainConfig()
    assert c.attack == {"name": "StepLL"}
    assert c.adv_weight == 0.3 and c.num_replaced(32) == 16
    assert c.eps == {"name": "truncated_normal", "std": 8 / 255, "max": 16 / 255}
    assert c.eps_sampler().max_eps == pytest.approx(16 / 255)
    assert TrainConfig.kurakin() == c.replace(fraction=0.5)


def test_training_config_presets():
    pgd = TrainConfig.pgd_at()
    assert pgd.num_replaced(32) == 32 and pgd.adv_weight == 1.0
    assert pgd.attack == {"name": "PGD", "eps": 8 / 255, "alpha": 2 / 255, "steps": 10}
    assert pgd.eps == {"name": "fixed", "eps": 8 / 255}
    assert TrainConfig.clean().num_replaced(32) == 0
    assert TrainConfig.kurakin(k=8).num_replaced(32) == 8
    assert TrainConfig.pgd_at(epochs=3).epochs == 3


@pytest.mark.parametrize(
    "cfg",
    [
        TrainConfig(),
        TrainConfig.pgd_at(scheduler={"name": "cosine"}, grad_clip=1.0, amp="bf16"),
        TrainConfig.clean(optimizer="adam", lr=1e-3),
        TrainConfig(k=4, eps=FixedEps(0.1), scheduler={"name": "multistep", "milestones": [2, 4]}),
        TrainConfig(
            scheduler={"name": "step", "step_size": 2, "gamma": 0.5},
            delay=10,
            attack={"name": "FGSM", "eps": 0.1},
            attack_labels="predicted",
        ),
    ],
)
def test_training_config_json_round_trip(cfg):
    text = cfg.to_json()
    back = TrainConfig.from_json(text)
    assert back == cfg and hash(back) == hash(cfg)
    assert json.loads(text) == cfg.to_dict()
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert "TrainConfig(" in repr(cfg)


def test_training_config_is_frozen_and_specs_read_only():
    c = TrainConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.lr = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        c.attack["name"] = "PGD"  # type: ignore[index]
    src = {"name": "FGSM", "eps": 0.1}
    c2 = TrainConfig(attack=src)
    src["eps"] = 0.5
    assert c2.attack["eps"] == 0.1


@pytest.mark.parametrize(
    ("changes", "field", "exc"),
    [
        ({"epochs": 0}, "epochs", ValueError),
        ({"batch_size": 1.5}, "batch_size", TypeError),
        ({"optimizer": "rmsprop"}, "optimizer", ValueError),
        ({"lr": -1.0}, "lr", ValueError),
        ({"lr": float("nan")}, "lr", ValueError),
        ({"momentum": -0.1}, "momentum", ValueError),
        ({"nesterov": True, "momentum": 0.0}, "nesterov", ValueError),
        ({"scheduler": {"name": "exp"}}, "scheduler", ValueError),
        ({"scheduler": {"name": "step"}}, "step_size", TypeError),
        ({"scheduler": {"name": "cosine", "gamma": 0.1}}, "gamma", TypeError),
        ({"attack": {"name": "Nope"}}, "attack", ValueError),
        ({"attack": {"eps": 0.1}}, "attack", ValueError),
        ({"attack": {"name": "PGD", "f": object()}}, "attack", TypeError),
        ({"k": 2, "fraction": 0.5}, "fraction", ValueError),
        ({"k": -1}, "k", ValueError),
        ({"fraction": 1.5}, "fraction", ValueError),
        ({"adv_weight": -0.3}, "adv_weight", ValueError),
        ({"adv_weight": 0.0, "fraction": 1.0}, "adv_weight", ValueError),
        ({"eps": {"name": "normal"}}, "eps", ValueError),
        ({"eps": {"name": "fixed", "eps": -1}}, "eps", ValueError),
        ({"selection": "last"}, "selection", ValueError),
        ({"delay": -1}, "delay", ValueError),
        ({"attack_labels": "false"}, "attack_labels", ValueError),
        ({"grad_clip": 0.0}, "grad_clip", ValueError),
        ({"amp": "fp8"}, "amp", ValueError),
        ({"seed": -2}, "seed", ValueError),
        ({"checkpoint_every": -1}, "checkpoint_every", ValueError),
        ({"checkpoint_seconds": -1.0}, "checkpoint_seconds", ValueError),
        ({"checkpoint_seconds": float("nan")}, "checkpoint_seconds", ValueError),
        ({"checkpoint_seconds": "60"}, "checkpoint_seconds", TypeError),
        ({"log_every": 0}, "log_every", ValueError),
    ],
)
def test_training_config_validation_names_the_field(changes, field, exc):
    with pytest.raises(exc, match=field):
        TrainConfig(**changes)


def test_training_config_from_dict_rejects_unknown_and_bad_json():
    with pytest.raises(TypeError, match="colour"):
        TrainConfig.from_dict({"colour": "red"})
    with pytest.raises(ValueError, match="JSON"):
        TrainConfig.from_json("{not json")


def test_training_config_k_larger_than_batch_names_k():
    with pytest.raises(ValueError, match="k must be <= the batch size"):
        TrainConfig(k=40).num_replaced(32)
