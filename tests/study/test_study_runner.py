"""run_study end to end on real (tiny) digits models: files, resume, refusal, shards + merge."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from advrobust.attacks import BIM
from advrobust.metrics import accuracy, adversarial_accuracy, robustness_score
from advrobust.study import (
    ConfigError,
    DataSpec,
    EvalSpec,
    ModelSpec,
    RecipeSpec,
    StudyConfig,
    StudyConfigMismatchError,
    StudyResult,
    enumerate_cells,
    evaluation_sample,
    load_cell_model,
    merge_studies,
    read_results,
    run_study,
)


def _values(rows: list[dict[str, Any]]) -> dict[tuple[Any, ...], float | None]:
    return {
        (r["subset_size"], r["model"], r["recipe"], r["metric"], r["delta"], r["target"]): None
        if math.isnan(r["value"])
        else r["value"]
        for r in rows
    }


def test_study_run_writes_everything(tiny: tuple[StudyConfig, StudyResult]) -> None:
    config, result = tiny
    out = result.out_dir
    assert result.complete
    assert sorted(result.cells_run) == sorted(c.key for c in enumerate_cells(config))
    for name in ("study.json", "config.toml", "results.csv", "results.json"):
        assert (out / name).is_file(), name
    assert StudyConfig.load(out / "config.toml") == config
    # (figures renamed on purpose: one curves figure over all recipes, plus PDF; see _plots)
    assert {"tiny-curves.png", "tiny-curves.svg", "tiny-curves.pdf"} <= {
        p.name for p in result.figures
    }
    for cell in enumerate_cells(config):
        folder = out / "cells" / cell.key
        for name in ("cell.json", "model.pt", "model.json", "per_example.npz"):
            assert (folder / name).is_file(), (cell.key, name)
        assert not (folder / "checkpoints").exists()
    # atomic writes keep the usual permissions (0o666 minus the umask), not the 0o600 of a
    # temporary file: collaborators can read a study on a shared disk
    mask = os.umask(0)
    os.umask(mask)
    key = enumerate_cells(config)[0].key
    for path in (
        out / "study.json",
        out / "results.csv",
        out / "cells" / key / "model.pt",
        out / "cells" / key / "cell.json",
        out / "figures" / "tiny-curves.png",
    ):
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask, path
    rows = read_results(out)
    metrics = {r["metric"] for r in rows}
    assert metrics >= {
        "accuracy",
        "adversarial_accuracy",
        "robustness_linf",
        "robustness_l2",
        "mean_distortion_linf",
        "mean_distortion_l2",
        "unbroken_linf",
    }
    assert {r["subset_size"] for r in rows} == {40, 80}
    adv = [r for r in rows if r["metric"] == "adversarial_accuracy"]
    assert {r["delta"] for r in adv} == {0.1, 0.2}
    assert all(r["attack"].startswith("BIM(") for r in adv)
    # the spec of the attack that ran, verbatim (AttackSpec.to_dict)
    assert all(r["attack_config"]["name"] == "BIM" for r in adv)
    assert all(r["attack_config"]["config"]["steps"] == 5 for r in adv)
    assert all(r["attack_config"]["config"]["eps"] == r["delta"] for r in adv)
    for r in rows:
        if r["metric"] in ("accuracy", "adversarial_accuracy"):
            assert 0.0 <= r["value"] <= 1.0
    # eq. 5 is never above clean accuracy on the same examples
    acc = _values(rows)
    for r in adv:
        assert r["value"] <= 1.0
    # the weights on disk reproduce the recorded clean accuracy
    cell = enumerate_cells(config)[0]
    model = load_cell_model(out, cell.key)
    value = accuracy(model, evaluation_sample(config, accuracy_set=True)).value
    assert value == pytest.approx(acc[(40, "mlp", "clean", "accuracy", None, "")])
    # the CNN trained and was evaluated in the CPU's fast layout (models.to_device): its saved
    # weights keep the channels_last strides, and so does the model loaded back
    cnn = next(c for c in enumerate_cells(config) if c.model.name == "simple-cnn")
    saved = torch.load(out / "cells" / cnn.key / "model.pt", weights_only=True)
    convs = [v for k, v in saved.items() if v.dim() == 4 and v.shape[1] > 1]
    assert convs and all(v.is_contiguous(memory_format=torch.channels_last) for v in convs)
    assert all(not v.is_contiguous() for v in convs)
    loaded = load_cell_model(out, cnn.key)
    assert all(
        m.weight.is_contiguous(memory_format=torch.channels_last)
        for m in loaded.modules()
        if isinstance(m, torch.nn.Conv2d)
    )


def test_study_rerun_skips_finished_cells(tiny: tuple[StudyConfig, StudyResult]) -> None:
    config, result = tiny
    before = torch.get_num_threads()
    # device, threads and the data folder may differ between machines: still the same study
    moved = dataclasses.replace(config.data, root=str(result.out_dir / "elsewhere"))
    again = run_study(
        config.replace(device="cpu", threads=2, data=moved),
        result.out_dir,
        progress=False,
        stream=None,
    )
    assert torch.get_num_threads() == before  # the thread setting is restored
    assert again.cells_run == []
    assert sorted(again.cells_skipped) == sorted(result.cells_run)
    assert _values(again.rows) == _values(result.rows)


def test_study_rerun_redoes_only_the_unfinished_cell(
    tiny: tuple[StudyConfig, StudyResult], tmp_path: Path
) -> None:
    config, result = tiny
    out = tmp_path / "copy"
    shutil.copytree(result.out_dir, out)
    key = enumerate_cells(config)[1].key
    weights = out / "cells" / key / "model.pt"
    stamp = weights.stat().st_mtime_ns
    (out / "cells" / key / "cell.json").unlink()
    (out / "cells" / key / "eval-adversarial-accuracy.json").unlink()
    # crashed after writing the weights, before removing the trainer checkpoints
    (out / "cells" / key / "checkpoints").mkdir()
    (out / "cells" / key / "checkpoints" / "last.pt").write_bytes(b"stale")
    again = run_study(config, out, progress=False, stream=None)
    assert again.cells_run == [key]
    assert weights.stat().st_mtime_ns == stamp  # trained weights reused, not retrained
    assert not (out / "cells" / key / "checkpoints").exists()
    assert _values(again.rows) == _values(result.rows)


def test_study_changed_config_is_refused(tiny: tuple[StudyConfig, StudyResult]) -> None:
    config, result = tiny
    changed = config.replace(seed=7)
    with pytest.raises(StudyConfigMismatchError, match=r"seed: 0 -> 7") as info:
        run_study(changed, result.out_dir, progress=False, stream=None)
    assert "refusing to mix" in str(info.value)


def test_study_refuses_foreign_non_empty_folder(
    tmp_path: Path, make_config: Callable[..., StudyConfig]
) -> None:
    (tmp_path / "something.txt").write_text("x")
    with pytest.raises(StudyConfigMismatchError, match="not empty"):
        run_study(make_config(), tmp_path, progress=False, stream=None)


def test_study_interrupted_cell_resumes_from_checkpoint(
    tiny: tuple[StudyConfig, StudyResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from advrobust.training import AdversarialTrainer

    config, result = tiny
    one = config.replace(
        data=config.data.__class__(name="digits", sizes=(40,)), models=config.models[:1]
    )
    original = AdversarialTrainer.fit
    calls: list[int] = []

    def interrupted_fit(self: AdversarialTrainer, data: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        kwargs["epochs"] = 1
        original(self, data, *args, **kwargs)
        raise KeyboardInterrupt

    out = tmp_path / "interrupted"
    monkeypatch.setattr(AdversarialTrainer, "fit", interrupted_fit)
    with pytest.raises(KeyboardInterrupt):
        run_study(one, out, progress=False, stream=None)
    key = enumerate_cells(one)[0].key
    assert (out / "cells" / key / "checkpoints" / "last.pt").is_file()
    assert not (out / "cells" / key / "cell.json").exists()
    monkeypatch.setattr(AdversarialTrainer, "fit", original)
    resumed = run_study(one, out, progress=False, stream=None)
    assert resumed.cells_run == [key]
    # bit-identical to the uninterrupted run of the same cell
    a = torch.load(out / "cells" / key / "model.pt", weights_only=True)
    b = torch.load(result.out_dir / "cells" / key / "model.pt", weights_only=True)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_study_shards_merge_to_the_full_table(
    tiny: tuple[StudyConfig, StudyResult], tmp_path: Path
) -> None:
    config, result = tiny
    parts = []
    for i in range(2):
        part = run_study(
            config, tmp_path / f"shard{i}", shard=f"{i}/2", progress=False, stream=None
        )
        assert not part.complete
        parts.append(part)
    assert sorted(parts[0].cells_run + parts[1].cells_run) == sorted(result.cells_run)
    assert not set(parts[0].cells_run) & set(parts[1].cells_run)
    merged = merge_studies(
        [tmp_path / "shard0", tmp_path / "shard1"], tmp_path / "merged", stream=None
    )
    assert merged.complete
    assert _values(merged.rows) == _values(result.rows)
    assert json.loads((tmp_path / "merged" / "results.json").read_text()) == json.loads(
        (result.out_dir / "results.json").read_text()
    )


def test_study_merge_refuses_different_studies(
    tiny: tuple[StudyConfig, StudyResult], tmp_path: Path
) -> None:
    config, result = tiny
    other = tmp_path / "other"
    other.mkdir()
    (other / "study.json").write_text(
        json.dumps({"fingerprint": "x", "config": config.replace(seed=3).to_dict()})
    )
    with pytest.raises(StudyConfigMismatchError, match="seed: 0 -> 3"):
        merge_studies([result.out_dir, other], tmp_path / "m", stream=None)


def test_study_adversarial_recipes_and_cross_model_metrics(
    tmp_path: Path, make_config: Callable[..., StudyConfig]
) -> None:
    from advrobust.study import AttackSpec, DataSpec, EvalSpec, ModelSpec, RecipeSpec

    config = make_config(
        name="extra",
        data=DataSpec(name="digits", sizes=(60,)),
        models=(
            ModelSpec("mlp", {"hidden": 16}, label="a"),
            ModelSpec("mlp", {"hidden": 24}, label="b"),
        ),
        recipes=(
            RecipeSpec("clean"),
            RecipeSpec("kurakin", "kurakin", {"k": 8}),
            RecipeSpec("pgd", "pgd-at", {"attack": {"name": "PGD", "steps": 2}}),
        ),
        evaluation=EvalSpec(
            metrics=("accuracy", "transfer-matrix", "label-leak", "deepsec"),
            num_examples=16,
            transfer_attack=AttackSpec("FGSM", {"eps": 0.1}),
            deepsec_attack=AttackSpec("PGD", {"eps": 0.1, "steps": 3}),
        ),
    )
    # shards: the transfer matrices need both models of a (size, recipe): they run at merge
    for i in range(2):
        run_study(config, tmp_path / f"s{i}", shard=f"{i}/2", progress=False, stream=None)
    merged = merge_studies([tmp_path / "s0", tmp_path / "s1"], tmp_path / "m", stream=None)
    rows = merged.rows
    assert merged.complete
    transfer = [r for r in rows if r["metric"] == "transfer_rate"]
    # 3 recipes x 2 ordered pairs
    assert len(transfer) == 6
    assert {(r["model"], r["target"]) for r in transfer} == {("a", "b"), ("b", "a")}
    assert all(r["attack"].startswith("FGSM(") for r in transfer)
    assert all(math.isnan(r["value"]) or 0.0 <= r["value"] <= 1.0 for r in transfer)
    leak = [r for r in rows if r["metric"] == "label_leak_count"]
    assert len(leak) == 6
    assert all(r["value"] == int(r["value"]) and 0 <= r["value"] <= 16 for r in leak)
    deepsec = {r["metric"] for r in rows if r["metric"].startswith("deepsec_")}
    assert len(deepsec) >= 5
    assert {r["recipe"] for r in rows} == {"clean", "kurakin", "pgd"}
    assert (tmp_path / "m" / "groups").is_dir()


def test_study_scores_match_the_metrics_layer(tiny: tuple[StudyConfig, StudyResult]) -> None:
    """Eq. 4 over the commonly-correct set and eq. 5 are advrobust.metrics' numbers."""
    config, result = tiny
    ev = config.evaluation
    x, y = evaluation_sample(config)
    rows = result.rows
    for model_key in ("mlp", "cnn"):
        cells = [c for c in enumerate_cells(config) if c.model.key == model_key]
        models = {c.key: load_cell_model(result.out_dir, c.key) for c in cells}
        # common_set = "sizes": X is what every subset size's model classifies correctly
        score = robustness_score(
            models,
            (x, y),
            BIM(models[cells[0].key], **ev.linf_attack.kwargs),
            hi=ev.linf_max,
            tol=ev.linf_tol,
        )
        for cell in cells:
            row = next(
                r
                for r in rows
                if (r["model"], r["size_param"], r["metric"])
                == (model_key, cell.size, "robustness_linf")
            )
            assert score.num_unbroken[cell.key] == 0
            assert row["n"] == int(score.common.sum())
            assert row["value"] == pytest.approx(score.scores[cell.key], abs=ev.linf_tol)
            model = models[cell.key]
            for delta in ev.deltas:
                expected = adversarial_accuracy(
                    model, (x, y), BIM(model, eps=delta, **ev.delta_attack.kwargs), delta=delta
                ).value
                got = next(
                    r
                    for r in rows
                    if (r["model"], r["size_param"], r["metric"], r["delta"])
                    == (model_key, cell.size, "adversarial_accuracy", delta)
                )
                assert got["value"] == pytest.approx(expected)


def test_study_bad_model_or_recipe_fails_before_writing(
    tmp_path: Path, make_config: Callable[..., StudyConfig]
) -> None:
    out = tmp_path / "o"
    bad_model = make_config(models=(ModelSpec("mlp", {"hiddn": 3}, label="mlp"),))
    with pytest.raises(ConfigError, match=r"hiddn") as info:
        run_study(bad_model, out, progress=False, stream=None)
    # the field names the offending key (before: only models[0].kwargs)
    assert info.value.field == "models[0].kwargs.hiddn"
    bad_k = make_config(recipes=(RecipeSpec("k", "kurakin", {"k": 100}),))
    with pytest.raises(ConfigError, match=r"batch size 16") as info:
        run_study(bad_k, out, progress=False, stream=None)
    assert info.value.field == "recipes[0].settings.k"  # (before: recipes[0].settings)
    # nothing was written, so the corrected config may use the same folder
    assert not out.exists()


def test_study_label_leak_resumes_an_interrupted_evaluation(
    tmp_path: Path, make_config: Callable[..., StudyConfig]
) -> None:
    config = make_config(
        name="leak",
        data=DataSpec(name="digits", sizes=(40,)),
        models=(ModelSpec("mlp", {"hidden": 16}, label="mlp"),),
        evaluation=EvalSpec(metrics=("accuracy", "label-leak"), num_examples=16, leak_eps=0.2),
    )
    out = tmp_path / "leak"
    first = run_study(config, out, progress=False, stream=None)
    (key,) = first.cells_run
    # interrupted after the accuracy part, before the label-leak part was written
    (out / "cells" / key / "cell.json").unlink()
    (out / "cells" / key / "eval-label-leak.json").unlink()
    again = run_study(config, out, progress=False, stream=None)
    assert again.cells_run == [key]
    assert _values(again.rows) == _values(first.rows)
    (row,) = [r for r in again.rows if r["metric"] == "label_leak_count"]
    assert row["attack"].startswith("FGSM(") and "true vs predicted labels" in row["attack"]
    assert row["attack_config"]["config"]["eps"] == 0.2 and row["delta"] == 0.2


def test_study_merge_crash_mid_copy_leaves_no_half_cell(
    tiny: tuple[StudyConfig, StudyResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, result = tiny
    original = shutil.copytree
    copied: list[str] = []

    def failing_copy(src: str, dst: str) -> None:
        if len(copied) == 3:
            raise OSError("disk full")
        copied.append(src)
        shutil.copy2(src, dst)

    def copytree(src: Any, dst: Any, **kwargs: Any) -> Any:
        return original(src, dst, copy_function=failing_copy)

    merged = tmp_path / "merged"
    monkeypatch.setattr(shutil, "copytree", copytree)
    with pytest.raises(OSError, match="disk full"):
        merge_studies([result.out_dir], merged, stream=None)
    monkeypatch.setattr(shutil, "copytree", original)
    for folder in (merged / "cells").iterdir():
        if not folder.name.startswith("."):  # every visible cell folder is whole
            source = result.out_dir / "cells" / folder.name
            assert sorted(os.listdir(folder)) == sorted(os.listdir(source))
    again = merge_studies([result.out_dir], merged, stream=None)
    assert again.complete
    assert _values(again.rows) == _values(result.rows)


def test_study_shards_starting_together_in_one_folder_do_not_refuse_each_other(
    tmp_path: Path, make_config: Callable[..., StudyConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    from advrobust.study import _folder

    config = make_config()
    out = tmp_path / "shared"
    out.mkdir()
    original = Path.iterdir

    def iterdir(self: Path) -> Any:
        if self == out and not (out / "study.json").exists():
            # another shard writes the state record between this shard's two looks
            _folder.write_state(config, out)
        return original(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    _folder.prepare_out_dir(config, out)  # the same study: accepted
    with pytest.raises(StudyConfigMismatchError, match="seed: 0 -> 5"):
        _folder.prepare_out_dir(config.replace(seed=5), out)


def test_study_folder_of_an_older_fingerprint_definition_is_still_accepted(
    tmp_path: Path, make_config: Callable[..., StudyConfig]
) -> None:
    from advrobust.study import _folder

    config = make_config()
    out = tmp_path / "older"
    _folder.write_state(config, out)
    state = json.loads((out / "study.json").read_text())
    state["fingerprint"] = "computed-by-an-older-version"
    (out / "study.json").write_text(json.dumps(state))
    _folder.prepare_out_dir(config, out)  # the recorded config is the same study
    with pytest.raises(StudyConfigMismatchError, match="seed: 0 -> 2"):
        _folder.prepare_out_dir(config.replace(seed=2), out)
