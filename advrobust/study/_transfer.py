"""The cross-model task: transfer matrices between the models of one (size, recipe, replicate)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ._build import StudyData, attack_record, load_cell_model, make_attack, subset_tensors
from ._config import StudyConfig
from ._grid import Cell, Shard, enumerate_cells
from ._results import finished_cells
from ._state import atomic_write_json

__all__ = ["pending_groups", "run_transfer", "transfer_groups"]


def transfer_groups(config: StudyConfig, cells: Sequence[Cell]) -> list[tuple[str, list[Cell]]]:
    """The groups of cells whose models are attacked across each other, by group key."""
    if "transfer-matrix" not in config.evaluation.metrics:
        return []
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        key = f"transfer-n{cell.size:07d}-{cell.recipe.name}"
        if cell.replicated:
            key += f"-r{cell.replicate}"
        groups.setdefault(key, []).append(cell)
    return list(groups.items())


def run_transfer(
    config: StudyConfig,
    key: str,
    members: Sequence[Cell],
    out_dir: Path,
    data: StudyData,
    device: torch.device,
) -> None:
    """Kurakin sec. 4.4 transfer rates between the group's models, written as ``group.json``."""
    from advrobust import metrics as M

    models = {c.model.key: load_cell_model(out_dir, c.key, device=str(device)) for c in members}
    first = next(iter(models.values()))
    attack = make_attack(config.evaluation.transfer_attack, first, "evaluation.transfer_attack")
    record = attack_record(attack)
    xe, ye = subset_tensors(data.test, data.eval_idx, device)
    res = M.transfer_matrix(models, (xe, ye), attack, batch_size=config.evaluation.batch_size)
    by_label = {c.model.key: c.key for c in members}
    names = list(res.names)
    rows = []
    for i, src in enumerate(names):
        for j, dst in enumerate(names):
            if src == dst:
                continue
            for metric, table in (("transfer_rate", res.rates), ("transfer_error", res.absolute)):
                rows.append(
                    {
                        "cell": by_label[src],
                        "metric": metric,
                        "value": float(table[i, j]),
                        "target": dst,
                        "norm": attack.norm,
                        "n": int(ye.shape[0]),
                        "attack": record["repr"],
                        "attack_config": record["config"],
                    }
                )
    atomic_write_json(out_dir / "groups" / key / "group.json", {"key": key, "rows": rows})


def pending_groups(
    config: StudyConfig, out_dir: Path, shard: Shard | None
) -> list[tuple[str, list[Cell]]]:
    """The groups (of ``shard``) whose cells are all finished and whose matrix is not."""
    cells = enumerate_cells(config)
    done = finished_cells(out_dir, cells)
    out = []
    for position, (key, members) in enumerate(transfer_groups(config, cells)):
        if shard is not None and not shard.owns(position):
            continue
        if (out_dir / "groups" / key / "group.json").is_file():
            continue
        if all(c.key in done for c in members):
            out.append((key, members))
    return out
