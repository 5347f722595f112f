"""Batched augmentation (shift, flip, rotation, Compose) and TensorLoader."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from advrobust.data import (
    Compose,
    RandomFlip,
    RandomRotation,
    RandomShift,
    TensorLoader,
    load_dataset,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_shift_by_a_known_amount_matches_a_roll_with_zero_fill() -> None:
    x = torch.rand(3, 2, 6, 7)
    shift = RandomShift(2)
    dy = torch.tensor([1, -2, 0])
    dx = torch.tensor([2, 0, -1])
    out = shift.shift(x, dy, dx)
    for i in range(3):
        expected = torch.zeros_like(x[i])
        a, b = int(dy[i]), int(dx[i])
        src = x[i][:, max(0, -a) : 6 - max(0, a), max(0, -b) : 7 - max(0, b)]
        expected[:, max(0, a) : 6 - max(0, -a), max(0, b) : 7 - max(0, -b)] = src
        assert torch.equal(out[i], expected), i


def test_shift_edge_fill_replicates_the_border() -> None:
    x = torch.arange(5.0).view(1, 1, 1, 5).expand(1, 1, 3, 5).contiguous() / 4
    out = RandomShift(2, fill="edge").shift(x, torch.tensor([0]), torch.tensor([2]))
    assert out[0, 0, 0].tolist() == [0.0, 0.0, 0.0, 0.25, 0.5]


def test_random_shift_draws_offsets_within_pad_and_is_reproducible() -> None:
    x = torch.rand(64, 1, 8, 8)
    a = RandomShift(3)(x, generator=_gen(1))
    b = RandomShift(3)(x, generator=_gen(1))
    c = RandomShift(3)(x, generator=_gen(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.shape == x.shape
    # Each output equals one of the 49 possible shifts of its input.
    shift = RandomShift(3)
    for i in range(4):
        candidates = [
            shift.shift(x[i : i + 1], torch.tensor([dy]), torch.tensor([dx]))
            for dy in range(-3, 4)
            for dx in range(-3, 4)
        ]
        assert any(torch.equal(a[i : i + 1], cand) for cand in candidates)
    assert torch.equal(RandomShift(0)(x), x)


def test_flip_twice_is_identity_and_p_controls_the_rate() -> None:
    x = torch.rand(5, 3, 4, 4)
    assert torch.equal(RandomFlip(1.0)(RandomFlip(1.0)(x)), x)
    assert torch.equal(RandomFlip(1.0)(x), x.flip(-1))
    assert torch.equal(RandomFlip(0.0)(x), x)
    big = torch.rand(2000, 1, 1, 2)
    flipped = RandomFlip(0.5)(big, generator=_gen(0))
    rate = (flipped != big).any(dim=(1, 2, 3)).float().mean().item()
    assert 0.45 < rate < 0.55
    assert torch.equal(RandomFlip()(big, generator=_gen(3)), RandomFlip()(big, generator=_gen(3)))


def test_rotation_zero_is_identity_and_quarter_turn_is_a_transpose() -> None:
    x = torch.rand(4, 3, 9, 9)
    torch.testing.assert_close(RandomRotation(0)(x, generator=_gen()), x, atol=1e-6, rtol=0)
    quarter = RandomRotation(90).rotate(x, torch.full((4,), 90.0))
    # A 90 degree rotation of a square image is a transpose plus a flip (up to rounding).
    options = [x.transpose(-1, -2).flip(-1), x.transpose(-1, -2).flip(-2)]
    assert any(torch.allclose(quarter, o, atol=1e-5) for o in options)
    a = RandomRotation(15)(x, generator=_gen(5))
    assert torch.equal(a, RandomRotation(15)(x, generator=_gen(5)))
    assert not torch.allclose(a, x)
    # A constant image stays constant in its centre under any rotation.
    const = torch.full((2, 1, 9, 9), 0.5)
    assert torch.allclose(
        RandomRotation(30)(const, generator=_gen())[:, :, 3:6, 3:6], const[:, :, 3:6, 3:6]
    )


def test_compose_passes_the_generator_and_keeps_shape_dtype_and_input() -> None:
    x = torch.rand(8, 3, 12, 12, dtype=torch.float64)
    before = x.clone()
    aug = Compose([RandomShift(2), RandomFlip(), RandomRotation(10)])
    a = aug(x, generator=_gen(4))
    assert torch.equal(a, aug(x, generator=_gen(4)))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(x, before)  # inputs are never modified
    assert "RandomShift(pad=2" in repr(aug)


def test_augment_errors() -> None:
    with pytest.raises(ValueError, match=r"pad must be >= 0"):
        RandomShift(-1)
    with pytest.raises(ValueError, match=r"p must be in"):
        RandomFlip(1.5)
    with pytest.raises(ValueError, match=r"degrees must be >= 0"):
        RandomRotation(-5)
    with pytest.raises(TypeError, match=r"floating-point"):
        RandomFlip()(torch.zeros(2, 1, 3, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        RandomShift(1)(torch.rand(3, 3))
    with pytest.raises(TypeError, match=r"callable"):
        Compose([RandomFlip(), 3])  # type: ignore[list-item]


def test_loader_covers_every_example_once_in_batches() -> None:
    x = torch.arange(10.0).view(10, 1)
    y = torch.arange(10)
    loader = TensorLoader(x, y, batch_size=4)
    assert len(loader) == 3
    batches = list(loader)
    assert [b[1].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert torch.equal(batches[0][0], x[:4])
    dropped = TensorLoader(x, y, batch_size=4, drop_last=True)
    assert len(dropped) == 2
    assert [b[1].tolist() for b in dropped] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    shuffled = TensorLoader(x, y, batch_size=3, shuffle=True, generator=_gen())
    seen = torch.cat([yb for _, yb in shuffled])
    assert sorted(seen.tolist()) == list(range(10))
    assert seen.tolist() != list(range(10))
    for xb, yb in shuffled:
        assert torch.equal(xb.view(-1).long(), yb)  # x and y stay paired


def test_loader_epochs_reshuffle_reproducibly() -> None:
    x, y = torch.rand(50, 2), torch.arange(50)

    def order(loader: TensorLoader) -> list[int]:
        return torch.cat([yb for _, yb in loader]).tolist()

    a = TensorLoader(x, y, batch_size=8, shuffle=True, generator=_gen(7))
    b = TensorLoader(x, y, batch_size=8, shuffle=True, generator=_gen(7))
    first, second = order(a), order(a)
    assert first != second  # a new order every epoch
    assert a.epoch == 2
    assert order(b) == first and order(b) == second  # same generator seed, same orders
    a.set_epoch(1)
    assert order(a) == second  # resuming at an epoch reproduces it
    c = TensorLoader(x, y, batch_size=8, shuffle=True, generator=_gen(8))
    assert order(c) != first
    with pytest.raises(ValueError, match=r"epoch must be >= 0"):
        a.set_epoch(-1)


def test_loader_augments_whole_batches_reproducibly() -> None:
    ds = load_dataset("digits")
    aug = Compose([RandomShift(1), RandomFlip()])
    a = TensorLoader(
        ds.data, ds.targets, batch_size=256, shuffle=True, generator=_gen(), augment=aug
    )
    b = TensorLoader(
        ds.data, ds.targets, batch_size=256, shuffle=True, generator=_gen(), augment=aug
    )
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    xa, _ = next(iter(TensorLoader(ds.data, ds.targets, batch_size=64, augment=RandomFlip(1.0))))
    assert torch.equal(xa, ds.data[:64].flip(-1))


def test_loader_from_dataset_device_and_errors() -> None:
    ds = load_dataset("digits", split="test")
    loader = TensorLoader.from_dataset(ds, batch_size=100, device="cpu")
    assert loader.device == torch.device("cpu")
    assert sum(int(yb.numel()) for _, yb in loader) == 400
    assert "batch_size=100" in repr(loader)
    with pytest.raises(ValueError, match=r"same number of examples"):
        TensorLoader(torch.rand(3, 1), torch.arange(4), batch_size=1)
    with pytest.raises(ValueError, match=r"batch_size must be >= 1"):
        TensorLoader(torch.rand(3, 1), torch.arange(3), batch_size=0)
    with pytest.raises(TypeError, match=r"generator"):
        TensorLoader(torch.rand(3, 1), torch.arange(3), batch_size=1, generator=0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"data and targets"):
        TensorLoader.from_dataset(object(), batch_size=1)


def test_loader_matches_torch_dataloader_without_shuffle() -> None:
    x, y = torch.rand(37, 3, 4, 4), torch.randint(0, 5, (37,))
    ours = list(TensorLoader(x, y, batch_size=10))
    theirs = list(DataLoader(TensorDataset(x, y), batch_size=10))
    assert len(ours) == len(theirs)
    for (xa, ya), (xb, yb) in zip(ours, theirs, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
