import pytest
import torch

from advrobust.training import select_replaced


def test_training_select_first_and_fraction():
    assert select_replaced(32, 16).tolist() == list(range(16))
    assert select_replaced(32, fraction=0.5).tolist() == list(range(16))
    assert select_replaced(5, 0).tolist() == []
    assert select_replaced(5, 5).tolist() == [0, 1, 2, 3, 4]
    mask = select_replaced(6, fraction=1 / 3, return_mask=True)
    assert mask.dtype == torch.bool and mask.tolist() == [True, True] + [False] * 4


def test_training_select_random_is_deterministic_distinct_and_uniform():
    a = select_replaced(32, 16, mode="random", generator=torch.Generator().manual_seed(1))
    b = select_replaced(32, 16, mode="random", generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert len(set(a.tolist())) == 16 and a.tolist() == sorted(a.tolist())
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(8)
    for _ in range(2000):
        counts += select_replaced(8, 2, mode="random", generator=g, return_mask=True).float()
    # every position is picked with probability 1/4
    assert torch.allclose(counts / 2000, torch.full((8,), 0.25), atol=0.04)


def test_training_select_bad_input():
    with pytest.raises(ValueError, match="k must be <= the batch size"):
        select_replaced(4, 5)
    with pytest.raises(ValueError, match="k"):
        select_replaced(4, -1)
    with pytest.raises(ValueError, match="exactly one"):
        select_replaced(4, 2, fraction=0.5)
    with pytest.raises(ValueError, match="fraction"):
        select_replaced(4, fraction=1.5)
    with pytest.raises(ValueError, match="mode"):
        select_replaced(4, 1, mode="last")
    with pytest.raises(TypeError, match="generator"):
        select_replaced(4, 1, mode="random", generator=0)
