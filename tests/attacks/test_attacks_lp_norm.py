"""``advrobust.attacks.lp_norm``: the one per-example Lp norm of the package.

Oracle: numpy's definitions on the flattened example, in float64 (``max |d_i|``,
``sqrt(sum d_i^2)``, ``sum |d_i|``, the count of non-zero ``d_i``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import advrobust.attacks as A
from advrobust.attacks import lp_norm

NORMS = ("linf", "l2", "l1", "l0")


def _numpy_norm(row: np.ndarray, norm: str) -> float:
    if norm == "linf":
        return float(np.abs(row).max())
    if norm == "l2":
        return float(np.sqrt((row**2).sum()))
    if norm == "l1":
        return float(np.abs(row).sum())
    return float(np.count_nonzero(row))


def test_lp_norm_is_public() -> None:
    assert "lp_norm" in A.__all__
    assert A.lp_norm is A._threat.lp_norm


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    batch=st.integers(1, 5),
    shape=st.sampled_from([(7,), (1, 4, 4), (3, 2, 5)]),
    sparsity=st.floats(0.0, 0.9),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_lp_norm_matches_the_definition_per_example(
    seed: int, batch: int, shape: tuple[int, ...], sparsity: float, dtype: torch.dtype
) -> None:
    g = torch.Generator().manual_seed(seed)
    delta = torch.randn((batch, *shape), generator=g, dtype=torch.float64)
    delta[torch.rand(delta.shape, generator=g, dtype=torch.float64) < sparsity] = 0.0
    delta = delta.to(dtype)
    rows = delta.double().flatten(1).numpy()
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for norm in NORMS:
        got = lp_norm(delta, norm)
        assert got.shape == (batch,) and got.dtype == dtype
        want = [_numpy_norm(r, norm) for r in rows]
        np.testing.assert_allclose(got.double().numpy(), want, rtol=tol, atol=0)


def test_lp_norm_linf_of_an_example_without_coordinates_is_zero() -> None:
    assert torch.equal(lp_norm(torch.empty(3, 0), "linf"), torch.zeros(3))


@pytest.mark.parametrize("norm", ["l3", "inf", "Linf", ""])
def test_lp_norm_unknown_norm_names_the_argument_and_the_valid_values(norm: str) -> None:
    with pytest.raises(ValueError, match=r"norm: unknown value .*valid values: linf, l2, l1, l0"):
        lp_norm(torch.ones(2, 3), norm)
