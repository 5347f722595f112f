"""Grid enumeration and deterministic sharding."""

from __future__ import annotations

import pytest

from advrobust.study import (
    DataSpec,
    ModelSpec,
    RecipeSpec,
    Shard,
    StudyConfig,
    enumerate_cells,
    parse_shard,
    shard_cells,
)
from advrobust.study._grid import cell_seed


def _config() -> StudyConfig:
    return StudyConfig(
        name="g",
        data=DataSpec(sizes=(10, 20, 30, 40, 50)),
        models=(ModelSpec("mlp"), ModelSpec("simple-cnn"), ModelSpec("mlp", {"hidden": 8})),
        recipes=(RecipeSpec("clean"), RecipeSpec("pgd", "pgd-at")),
    )


def test_study_grid_enumerates_every_combination_once_in_order() -> None:
    cfg = _config()
    cells = enumerate_cells(cfg)
    assert len(cells) == 5 * 3 * 2
    assert [c.index for c in cells] == list(range(30))
    combos = {(c.size, c.model.key, c.recipe.name) for c in cells}
    assert len(combos) == 30
    assert len({c.key for c in cells}) == 30
    # size-major order, and keys sort like the grid
    assert [c.size for c in cells] == sorted(c.size for c in cells)
    assert cells[0].key == "n0000010-mlp-clean"
    assert enumerate_cells(cfg) == cells  # deterministic


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 30, 31])
def test_study_grid_shards_partition_the_grid(n: int) -> None:
    cells = enumerate_cells(_config())
    parts = [shard_cells(cells, Shard(i, n)) for i in range(n)]
    keys = [c.key for part in parts for c in part]
    assert sorted(keys) == sorted(c.key for c in cells)  # every cell exactly once
    assert len(keys) == len(set(keys))
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1  # balanced
    assert parts == [shard_cells(enumerate_cells(_config()), Shard(i, n)) for i in range(n)]


def test_study_grid_parse_shard() -> None:
    assert parse_shard("0/4") == Shard(0, 4)
    assert str(parse_shard("3/4")) == "3/4"
    for bad in ("4/4", "-1/4", "1", "a/b", "1/0", "1/2/3"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)
    assert shard_cells(enumerate_cells(_config()), None) == enumerate_cells(_config())


def test_study_grid_cell_seed_depends_on_key_and_master_only() -> None:
    assert cell_seed(0, "a") == cell_seed(0, "a")
    assert cell_seed(0, "a") != cell_seed(1, "a")
    assert cell_seed(0, "a") != cell_seed(0, "b")
    assert 0 <= cell_seed(123, "x") < 2**63
