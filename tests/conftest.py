"""Project-wide pytest fixtures and settings."""

from __future__ import annotations

import os

import pytest
import torch

# Two cores are shared by everything that runs here: one intra-op thread keeps tests predictable.
torch.set_num_threads(1)
os.environ.setdefault("ADVROBUST_TEST", "1")


@pytest.fixture
def generator() -> torch.Generator:
    """A seeded CPU generator: same seed, same result."""
    return torch.Generator().manual_seed(0)


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    torch.manual_seed(0)
