"""The attack registry and specs: strict names and kwargs, JSON/TOML round trips, rebuilds."""

from __future__ import annotations

import json

import pytest
import tomli_w
import tomllib
import torch
from torch import nn

from advrobust.attacks import (
    CWL2,
    PGD,
    Attack,
    AttackSpec,
    StepLL,
    attack_info,
    create_attack,
    list_attacks,
    register_attack,
)


def _model() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3))


def test_every_attack_class_is_registered_under_its_class_name() -> None:
    names = list_attacks()
    for expected in ("FGSM", "StepLL", "StepRnd", "BIM", "IterLL", "PGD", "CWL2"):
        assert expected in names
    assert names == sorted(names)
    for name in names:
        assert attack_info(name).cls.__name__ == name


def test_names_are_case_insensitive_and_patterns_filter() -> None:
    assert type(create_attack("pgd", _model(), eps=0.1)) is PGD
    assert type(create_attack("cwl2", _model(), steps=3)) is CWL2
    assert list_attacks("*gd") == [n for n in list_attacks() if n.lower().endswith("gd")]
    assert "PGD" in list_attacks("*gd")


def test_unknown_name_lists_the_registered_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown attack 'nope'.*PGD"):
        create_attack("nope", _model())


def test_unknown_kwarg_lists_the_valid_ones() -> None:
    with pytest.raises(
        TypeError, match=r"'PGD' got unexpected keyword argument\(s\): stepz.*steps"
    ):
        create_attack("PGD", _model(), stepz=3)


def test_duplicate_registration_is_an_error() -> None:
    with pytest.raises(ValueError, match="registered already"):

        @register_attack(description="a second PGD")
        class PGD(Attack):
            def _perturb(self, *args: object) -> torch.Tensor:  # type: ignore[override]
                raise AssertionError

    assert attack_info("PGD").cls.__module__ == "advrobust.attacks._presets"


@pytest.mark.parametrize("name", ["FGSM", "StepLL", "StepRnd", "BIM", "IterLL", "PGD", "CWL2"])
def test_spec_round_trips_through_json_and_toml_and_rebuilds(name: str) -> None:
    atk = create_attack(name, _model())
    spec = atk.spec()
    assert AttackSpec.from_json(spec.to_json()) == spec
    assert AttackSpec.from_dict(tomllib.loads(tomli_w.dumps(spec.to_toml_dict()))) == spec
    assert json.loads(spec.to_json())["name"] == name
    rebuilt = spec.build(_model())
    assert type(rebuilt) is type(atk)
    assert rebuilt.config() == atk.config()


def test_spec_facts() -> None:
    pgd = PGD(_model(), eps=0.25, steps=3).spec()
    assert (pgd.norm, pgd.kind, pgd.bounded, pgd.eps, pgd.targeted) == (
        "linf",
        "bounded",
        True,
        0.25,
        False,
    )
    assert PGD(_model(), norm="l2").spec().norm == "l2"
    cw = CWL2(_model()).spec()
    assert (cw.kind, cw.bounded, cw.eps) == ("minimal", False, None)
    assert StepLL(_model()).spec().targeted
    assert "PGD (linf, bounded, eps=0.25" in pgd.describe()


def test_spec_refuses_bad_fields() -> None:
    with pytest.raises(ValueError, match="norm"):
        AttackSpec(name="PGD", norm="l3", kind="bounded")
    with pytest.raises(ValueError, match="kind"):
        AttackSpec(name="PGD", norm="l2", kind="sometimes")
    with pytest.raises(ValueError, match="unknown attack spec key"):
        AttackSpec.from_dict({"name": "PGD", "norm": "l2", "kind": "bounded", "eps": 1})
    with pytest.raises(TypeError, match=r"config\.x"):
        AttackSpec(name="PGD", norm="l2", kind="bounded", config={"x": object()})
