"""The study grid: cells (subset size x model x recipe x replicate), their order and shards."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

from ._config import ModelSpec, RecipeSpec, StudyConfig

__all__ = [
    "Cell",
    "Shard",
    "cell_seed",
    "enumerate_cells",
    "parse_shard",
    "part_seed",
    "shard_cells",
]


@dataclass(frozen=True)
class Cell:
    """One training run of the grid: a model trained with a recipe on one nested subset.

    Attributes:
        index: position in the full grid (size-major, then model, then recipe).
        size_index: index i of the subset S_i.
        size: the subset size as written in the config (per class when ``data.per_class``).
        model: the model spec.
        recipe: the recipe spec.
        replicate: which of the study's independent replicates (0-based).
        seed: the cell's seed (model initialisation, data order, attacks): derived from the
            study seed (or the replicate's entry of ``seeds``) and the cell key.
        replicated: whether the study has several replicates (the key then ends in ``-rN``;
            a study of one replicate keeps the keys of studies written before replicates).
    """

    index: int
    size_index: int
    size: int
    model: ModelSpec
    recipe: RecipeSpec
    replicate: int = 0
    seed: int = 0
    replicated: bool = False

    @property
    def key(self) -> str:
        """A unique, file-name-safe identifier, stable across runs and shards."""
        base = f"n{self.size:07d}-{self.model.key}-{self.recipe.name}"
        return f"{base}-r{self.replicate}" if self.replicated else base

    @property
    def group(self) -> str:
        """The key without the replicate: the cells of one grid point across replicates."""
        return f"n{self.size:07d}-{self.model.key}-{self.recipe.name}"


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based): cells whose grid index is ``index`` mod ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        for name in ("index", "count"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"shard {name} must be an int, got {value!r}")
        if self.count < 1:
            raise ValueError(f"shard count must be >= 1, got {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(
                f"shard index must be in [0, {self.count}) (0-based), got {self.index}"
            )

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, position: int) -> bool:
        """Whether the item at ``position`` of a deterministic list belongs to this shard."""
        return position % self.count == self.index


def parse_shard(text: str) -> Shard:
    """Parse ``"i/n"`` (0-based ``i``), e.g. ``"0/4"``; SLURM: ``$SLURM_ARRAY_TASK_ID/N``."""
    parts = text.split("/")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"--shard must look like i/n with 0 <= i < n (e.g. 0/4), got {text!r}")
    return Shard(int(parts[0]), int(parts[1]))


def enumerate_cells(config: StudyConfig) -> list[Cell]:
    """All cells of the grid in a fixed order (size-major, then models, recipes, replicates).

    Replicate ``r`` of a cell gets an independent seed: from ``seeds[r]`` when the config lists
    seeds, else from the study seed and the replicate's key (replicate 0 of a one-replicate
    study keeps the seed of studies written before replicates existed).
    """
    count = config.num_replicates
    replicated = count > 1 or config.seeds is not None
    cells: list[Cell] = []
    for size_index, size in enumerate(config.data.sizes):
        for model in config.models:
            for recipe in config.recipes:
                for r in range(count):
                    cell = Cell(len(cells), size_index, size, model, recipe, r, 0, replicated)
                    master = config.seeds[r] if config.seeds is not None else config.seed
                    seed = cell_seed(master, cell.key)
                    cells.append(dataclasses.replace(cell, seed=seed))
    return cells


def shard_cells(cells: list[Cell], shard: Shard | None) -> list[Cell]:
    """The cells of one shard: round robin over the grid order.

    Every shard gets a mix of small and large subsets; the shards of one ``count`` partition
    the grid.
    """
    if shard is None:
        return list(cells)
    return [c for c in cells if shard.owns(c.index)]


def cell_seed(master: int, key: str) -> int:
    """A 63-bit seed derived from the study seed and a cell key (independent of the shard)."""
    digest = hashlib.sha256(f"{master}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def part_seed(seed: int, part: str) -> int:
    """A 63-bit seed of one evaluation part of a cell, from the cell seed and the part's name.

    Every part draws from its own generator, so a part skipped on resume (already finished)
    does not shift the random numbers of the parts after it.
    """
    return cell_seed(seed, f"part:{part}")
