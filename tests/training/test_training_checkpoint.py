import os

import numpy as np
import pytest
import torch
from torch import nn

import advrobust.training._checkpoint as ckpt_mod
from advrobust.training import (
    AdversarialTrainer,
    CheckpointError,
    TrainConfig,
    load_checkpoint,
    save_checkpoint,
)


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 4))


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.rand(32, 1, 4, 4, generator=g), torch.randint(0, 4, (32,), generator=g)


def test_training_checkpoint_round_trip_and_marker(tmp_path):
    path = save_checkpoint(tmp_path / "sub" / "a.pt", {"w": torch.arange(3), "n": 2})
    got = load_checkpoint(path)
    assert torch.equal(got["w"], torch.arange(3)) and got["n"] == 2
    assert got["format"] == "advrobust.training.checkpoint" and got["version"] == 1
    assert os.listdir(tmp_path / "sub") == ["a.pt"]


def test_training_checkpoint_crash_during_write_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"v": torch.tensor([1.0])})
    before = path.read_bytes()

    def crashing_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 partial bytes of a zip archive")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_mod.torch, "save", crashing_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"v": torch.tensor([2.0])})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert float(load_checkpoint(path)["v"]) == 1.0
    assert os.listdir(tmp_path) == ["last.pt"]  # the temporary file was removed


def test_training_checkpoint_interrupt_during_replace_keeps_previous(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"v": 1})

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt_mod.os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"v": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["v"] == 1 and os.listdir(tmp_path) == ["last.pt"]


def test_training_checkpoint_corrupt_foreign_and_missing(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(bad)
    good = save_checkpoint(tmp_path / "good.pt", {"v": torch.ones(1000)})
    truncated = tmp_path / "trunc.pt"
    truncated.write_bytes(good.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="corrupt, truncated"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not an advrobust training checkpoint"):
        load_checkpoint(foreign)
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"format": "advrobust.training.checkpoint", "obj": nn.Linear(2, 2)}, unsafe)
    with pytest.raises(CheckpointError, match="weights-only"):
        load_checkpoint(unsafe)
    with pytest.raises(FileNotFoundError, match=r"missing\.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(TypeError, match="state"):
        save_checkpoint(tmp_path / "x.pt", [1, 2])


def test_training_checkpoint_resume_from_corrupt_file_leaves_trainer_unchanged(tmp_path):
    x, y = _data()
    cfg = TrainConfig.kurakin(epochs=1, batch_size=16, lr=0.1)
    tr = AdversarialTrainer(_model(), cfg, checkpoint_dir=tmp_path)
    tr.fit((x, y), progress=False)
    good = (tmp_path / "last.pt").read_bytes()
    fresh_model = _model(seed=3)
    before = {k: v.clone() for k, v in fresh_model.state_dict().items()}
    fresh = AdversarialTrainer(fresh_model, cfg)
    (tmp_path / "broken.pt").write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError):
        fresh.resume(tmp_path / "broken.pt")
    # a checkpoint of another architecture: clear error, nothing loaded
    other = AdversarialTrainer(nn.Sequential(nn.Flatten(), nn.Linear(16, 5)), cfg)
    with pytest.raises(CheckpointError, match="does not fit this model"):
        other.resume(tmp_path / "last.pt")
    assert fresh.epoch == 0 and all(
        torch.equal(v, fresh_model.state_dict()[k]) for k, v in before.items()
    )
    # a different recipe is refused, naming the fields
    with pytest.raises(ValueError, match="adv_weight"):
        AdversarialTrainer(_model(), cfg.replace(adv_weight=0.5)).resume(tmp_path / "last.pt")
    fresh.resume(tmp_path / "last.pt")  # the good checkpoint is still usable
    assert fresh.epoch == 1 and torch.equal(fresh_model[1].weight, tr.model[1].weight)


def test_training_checkpoint_on_demand_and_every(tmp_path):
    x, y = _data()
    cfg = TrainConfig.kurakin(epochs=2, batch_size=16, checkpoint_every=0)
    tr = AdversarialTrainer(_model(), cfg)
    with pytest.raises(ValueError, match="path"):
        tr.save_checkpoint()
    p = tr.save_checkpoint(tmp_path / "manual.pt")
    assert load_checkpoint(p)["counters"]["epoch"] == 0
    tr2 = AdversarialTrainer(_model(), cfg, checkpoint_dir=tmp_path / "d")
    tr2.fit((x, y), progress=False)
    assert load_checkpoint(tmp_path / "d" / "last.pt")["counters"]["epoch"] == 2


def _count_saves(monkeypatch):
    epochs = []
    real = AdversarialTrainer.save_checkpoint

    def spy(self, *args, **kwargs):
        epochs.append(self.epoch)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(AdversarialTrainer, "save_checkpoint", spy)
    return epochs


def test_training_checkpoint_seconds_skips_epoch_checkpoints_until_due(tmp_path, monkeypatch):
    x, y = _data()
    # 0 s (the default): every epoch, as before
    saved = _count_saves(monkeypatch)
    cfg = TrainConfig.clean(epochs=3, batch_size=16)
    AdversarialTrainer(_model(), cfg, checkpoint_dir=tmp_path / "a").fit((x, y), progress=False)
    assert saved == [1, 2, 3]
    # a long interval: only the end of fit writes one, with the same final state
    saved.clear()
    slow = cfg.replace(checkpoint_seconds=3600.0)
    tr = AdversarialTrainer(_model(), slow, checkpoint_dir=tmp_path / "b")
    tr.fit((x, y), progress=False)
    assert saved == [3]
    a = load_checkpoint(tmp_path / "a" / "last.pt")
    b = load_checkpoint(tmp_path / "b" / "last.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    # an interval that has passed by each epoch's end: every epoch again (clock advanced 10 s
    # per reading)
    saved.clear()
    clock = iter(range(0, 10_000, 10))
    monkeypatch.setattr("advrobust.training._trainer.time.monotonic", lambda: next(clock))
    AdversarialTrainer(
        _model(), cfg.replace(checkpoint_seconds=5.0), checkpoint_dir=tmp_path / "c"
    ).fit((x, y), progress=False)
    assert saved == [1, 2, 3]
    # it may differ between the checkpoint and the resuming trainer (does not change results)
    resumed = AdversarialTrainer(_model(), cfg.replace(epochs=4), checkpoint_dir=tmp_path / "b")
    resumed.resume(tmp_path / "b" / "last.pt")
    assert resumed.epoch == 3


def test_training_checkpoint_resume_into_another_optimizer_layout_changes_nothing(tmp_path):
    # the model fits but the optimizer does not (two parameter groups instead of one): the
    # model must not be left overwritten by the checkpoint while the optimizer load fails
    x, y = _data()
    cfg = TrainConfig.kurakin(epochs=1, batch_size=16, lr=0.1)
    AdversarialTrainer(_model(), cfg, checkpoint_dir=tmp_path).fit((x, y), progress=False)
    model = _model(seed=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    groups = [{"params": [model[1].weight]}, {"params": [model[1].bias]}]
    tr = AdversarialTrainer(model, cfg, optimizer=torch.optim.SGD(groups, lr=0.1, momentum=0.9))
    gen_before = tr.generator.get_state()
    with pytest.raises(CheckpointError, match="left unchanged"):
        tr.resume(tmp_path / "last.pt")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert torch.equal(tr.generator.get_state(), gen_before)
    assert tr.epoch == 0 and tr.step == 0 and len(tr.history) == 0


def _flip_inside(data: bytes, needle: bytes) -> bytes:
    at = data.index(needle) + len(needle) // 2
    return data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1 :]


def test_training_checkpoint_flipped_tensor_bytes_are_refused(tmp_path):
    weights = torch.arange(256, dtype=torch.float32)
    path = save_checkpoint(tmp_path / "w.pt", {"w": weights, "step": 3})
    damaged = _flip_inside(path.read_bytes(), weights.numpy().tobytes())
    path.write_bytes(damaged)
    # torch itself loads the damaged file without complaint: the checksum is what catches it
    raw = torch.load(path, weights_only=True)
    assert not torch.equal(raw["w"], weights)
    with pytest.raises(CheckpointError, match=r"w\.pt.*fails its checksum"):
        load_checkpoint(path)


def test_training_checkpoint_trainer_file_with_flipped_weight_is_refused(tmp_path):
    x, y = _data()
    cfg = TrainConfig.clean(epochs=1, batch_size=16, lr=0.1)
    tr = AdversarialTrainer(_model(), cfg, checkpoint_dir=tmp_path)
    tr.fit((x, y), progress=False)
    path = tmp_path / "last.pt"
    weight = tr.model[1].weight.detach().contiguous().numpy().tobytes()
    path.write_bytes(_flip_inside(path.read_bytes(), weight))
    fresh = AdversarialTrainer(_model(seed=1), cfg)
    with pytest.raises(CheckpointError, match=r"last\.pt.*checksum"):
        fresh.resume(path)
    assert fresh.epoch == 0


def test_training_checkpoint_without_checksum_loads_with_a_warning(tmp_path):
    legacy = tmp_path / "old.pt"  # as written before checksums existed
    torch.save({"w": torch.ones(2), "format": ckpt_mod.CHECKPOINT_FORMAT, "version": 1}, legacy)
    with pytest.warns(UserWarning, match=r"old\.pt.*no checksum.*unverified"):
        got = load_checkpoint(legacy)
    assert torch.equal(got["w"], torch.ones(2))


def test_training_checkpoint_malformed_checksum_entry_is_refused(tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"format": ckpt_mod.CHECKPOINT_FORMAT, "version": 1, "checksum": "abc"}, bad)
    with pytest.raises(CheckpointError, match=r"bad\.pt.*malformed checksum"):
        load_checkpoint(bad)


@pytest.mark.parametrize(
    ("state", "where"),
    [
        ({"lr": np.float64(0.1)}, r"state\['lr'\]"),
        ({"opt": {"groups": [{"arr": np.zeros(2)}]}}, r"state\['opt'\]\['groups'\]\[0\]\['arr'\]"),
        ({"f": slice(1)}, r"state\['f'\]"),
    ],
)
def test_training_checkpoint_never_writes_what_load_refuses(tmp_path, state, where):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"v": 1})
    before = path.read_bytes()
    with pytest.raises(TypeError, match=where):
        save_checkpoint(path, state)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["c.pt"]


def test_training_checkpoint_trainer_refuses_unloadable_extra_state(tmp_path):
    class WithExtra(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(16, 4)

        def forward(self, x):
            return self.lin(x.flatten(1))

        def get_extra_state(self):
            return {"scale": np.float32(2.0)}  # a numpy scalar: weights-only loads refuse it

        def set_extra_state(self, state):
            pass

    tr = AdversarialTrainer(WithExtra(), TrainConfig.clean(epochs=1, batch_size=16))
    with pytest.raises(TypeError, match=r"state\['model'\]\['_extra_state'\]\['scale'\]"):
        tr.save_checkpoint(tmp_path / "last.pt")
    assert not os.listdir(tmp_path)


def test_training_checkpoint_content_digest_is_stable_and_sensitive():
    a = {"w": torch.arange(4.0), "s": {"x", "y"}, "n": (1, 2.5, None, True)}
    b = {"w": torch.arange(4.0), "s": {"y", "x"}, "n": (1, 2.5, None, True)}
    assert ckpt_mod.content_digest(a) == ckpt_mod.content_digest(b)
    c = dict(a, w=torch.tensor([0.0, 1.0, 2.0, 3.0000002]))
    assert ckpt_mod.content_digest(a) != ckpt_mod.content_digest(c)
    assert ckpt_mod.content_digest({"n": 1}) != ckpt_mod.content_digest({"n": 1.0})
    assert ckpt_mod.content_digest({"n": [1]}) != ckpt_mod.content_digest({"n": (1,)})


def test_training_checkpoint_fit_removes_temporaries_of_killed_writers(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    stale = tmp_path / f".last.pt.{dead}.0123456789abcdef.tmp"
    stale.write_bytes(b"half a checkpoint")
    cfg = TrainConfig.clean(epochs=1, batch_size=16)
    AdversarialTrainer(_model(), cfg, checkpoint_dir=tmp_path).fit(_data(), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
