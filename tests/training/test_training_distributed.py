import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _training_ddp_common import build, config, data

from advrobust.training import AdversarialTrainer, load_checkpoint
from advrobust.training._data import TensorBatches

WORKER = Path(__file__).resolve().parent / "_training_ddp_worker.py"


def _launch(out: Path, mode: str) -> list[dict]:
    store = out / "pg-store"
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(out), mode, str(store), str(rank), "2"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(2)
    ]
    logs = []
    for p in procs:
        try:
            logs.append(p.communicate(timeout=120)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]


def _without_time(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in e.items() if k != "seconds"} for e in history]


@pytest.mark.distributed
def test_training_distributed_two_gloo_ranks_match_single_process(tmp_path):
    ranks = _launch(tmp_path, "nobn")
    s0, s1 = ranks[0]["state"], ranks[1]["state"]
    assert all(torch.equal(s0[k], s1[k]) for k in s0)  # identical weights on both ranks
    # single process on the same global batch (2 x 8)
    x, y = data()
    ref = build("nobn")
    h = AdversarialTrainer(ref, config("nobn", per_rank_batch=16)).fit(
        (x, y), val_loader=(x[:40], y[:40]), progress=False
    )
    for k, v in ref.state_dict().items():
        assert torch.allclose(v, s0[k], rtol=1e-5, atol=1e-6), k
    # reported figures are all-reduced over the ranks
    hist = _without_time(ranks[0]["history"])
    assert hist == _without_time(ranks[1]["history"])
    assert [e["examples"] for e in hist] == [96, 96]
    for got, want in zip(hist, h.to_dict(), strict=True):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-5)
        assert got["train_adv_acc"] == pytest.approx(want["train_adv_acc"])
        assert got["val_clean_acc"] == pytest.approx(want["val_clean_acc"])
    # evaluation on a set that does not split evenly over the ranks (and on a DataLoader, which
    # the trainer shards) gives every rank the figures of the whole set, each example once
    single = build("nobn")
    single.load_state_dict(s0)
    want = AdversarialTrainer(single, config("nobn", per_rank_batch=16)).evaluate((x[:41], y[:41]))
    for r in ranks:
        assert r["evaluated"]["tensors"] == pytest.approx(want, abs=1e-12)
        assert r["evaluated"]["dataloader"] == pytest.approx(want, abs=1e-12)
    ck = load_checkpoint(tmp_path / "ckpt" / "last.pt")
    assert ck["world_size"] == 2 and len(ck["rng"]) == 2
    assert torch.equal(ck["model"]["1.weight"], s0["1.weight"])


@pytest.mark.distributed
@pytest.mark.slow
def test_training_distributed_batchnorm_ranks_stay_identical(tmp_path):
    ranks = _launch(tmp_path, "bn")
    s0, s1 = ranks[0]["state"], ranks[1]["state"]
    assert all(torch.equal(s0[k], s1[k]) for k in s0)
    assert _without_time(ranks[0]["history"]) == _without_time(ranks[1]["history"])


def _shards(n, world, **kwargs):
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    y = torch.arange(n)
    out = []
    for rank in range(world):
        tb = TensorBatches(
            x, y, batch_size=4, shuffle=True, base_seed=3, rank=rank, world_size=world, **kwargs
        )
        tb.set_epoch(2)
        out.append(list(tb))
    return out


def test_training_distributed_evaluation_shards_count_every_example_once():
    # training shards are padded to the same length on every rank (DDP needs equal steps);
    # evaluation shards (pad=False) partition the set exactly
    train = _shards(41, 2)
    assert len(train[0]) == len(train[1])
    assert sum(len(yb) for r in train for _, yb in r) == 42
    ev = _shards(41, 2, pad=False)
    seen = torch.cat([yb for r in ev for _, yb in r])
    assert sorted(seen.tolist()) == list(range(41))


def test_training_distributed_ranks_draw_independent_augmentations():
    def record(xb, generator=None):
        return xb + torch.rand(xb.shape[0], 1, 1, 1, generator=generator)

    r0, r1 = _shards(40, 2, augment=record)
    noise0 = torch.cat([xb[:, 0, 0, 0] - yb for xb, yb in r0])
    noise1 = torch.cat([xb[:, 0, 0, 0] - yb for xb, yb in r1])
    assert not torch.allclose(noise0, noise1)
    again = _shards(40, 2, augment=record)[0]  # still a function of (seed, epoch, rank)
    assert torch.equal(torch.cat([xb for xb, _ in again]), torch.cat([xb for xb, _ in r0]))
