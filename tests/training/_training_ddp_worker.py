"""Worker for test_training_distributed.py: one rank of a two-process gloo run on the CPU.

Usage: python _training_ddp_worker.py OUT_DIR MODE STORE_FILE RANK WORLD_SIZE

The ranks meet through a file store rather than a TCP store: a TCP store lives in rank 0's
process, and a rank 0 that exits first can abort the other rank's shutdown ("terminate called
without an active exception").
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, TensorDataset

torch.set_num_threads(1)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _training_ddp_common import build, config, data  # noqa: E402

from advrobust.training import AdversarialTrainer  # noqa: E402


def main() -> None:
    out, mode, store, rank, world = sys.argv[1:6]
    dist.init_process_group(
        "gloo", init_method=f"file://{store}", rank=int(rank), world_size=int(world)
    )
    try:
        x, y = data()
        model = build(mode)
        cfg = config(mode, per_rank_batch=8)
        trainer = AdversarialTrainer(model, cfg, checkpoint_dir=Path(out) / "ckpt")
        history = trainer.fit((x, y), val_loader=(x[:40], y[:40]), progress=False)
        # 41 examples do not split evenly over 2 ranks: evaluation must count each one once
        odd = TensorDataset(x[:41], y[:41])
        evaluated = {
            "tensors": trainer.evaluate((x[:41], y[:41])),
            "dataloader": trainer.evaluate(DataLoader(odd, batch_size=8)),
        }
        torch.save(
            {"state": model.state_dict(), "history": history.to_dict(), "evaluated": evaluated},
            Path(out) / f"rank{rank}.pt",
        )
        dist.barrier()  # both ranks are done with collectives before either tears down
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
