"""Distributed adversarial training with torch.distributed (DDP) on scikit-learn's digits.

The same script runs

* on CPUs with the gloo backend:
  ``torchrun --standalone --nproc_per_node=2 examples/train_ddp.py``
* on GPUs with the nccl backend (one process per GPU): the same command on a CUDA machine;
* as a single process without torchrun: ``python examples/train_ddp.py``.

When torchrun has set the process-group environment, the script initialises the group; the
:class:`~advrobust.training.AdversarialTrainer` then wraps the model in
DistributedDataParallel, gives every rank its shard of the in-memory data (``batch_size`` per
process), makes adversarial examples on the underlying module, all-reduces the reported
figures, and writes checkpoints from rank 0 only. Re-running the same command resumes from
``--out/last.pt`` (in the system's temporary directory by default).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist

# The small BatchNorm CNN of examples/kurakin_training.py (this script's directory is on
# sys.path when it runs, with python or torchrun).
from kurakin_training import make_model

from advrobust.attacks import PGD
from advrobust.data import load_dataset
from advrobust.training import AdversarialTrainer, TrainConfig


def setup() -> torch.device:
    """Initialise the process group when launched by torchrun; return this rank's device."""
    launched = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    if launched and os.environ.get("MASTER_PORT") == "0":
        # torchrun hands --master_port=0 to the workers unchanged, and they would wait forever
        raise SystemExit(
            "MASTER_PORT is 0: launch with `torchrun --standalone --nproc_per_node=N ...` (which "
            "picks a free port) or give --master_port a real port number"
        )
    cuda = torch.cuda.is_available()
    if cuda:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
        torch.set_num_threads(1)
    if launched and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (< 60 s on a CPU)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(tempfile.gettempdir()) / "advrobust_train_ddp",
        help="checkpoint directory",
    )
    parser.add_argument(
        "--fresh", action="store_true", help="ignore an existing checkpoint (always with --quick)"
    )
    args = parser.parse_args()

    device = setup()
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    try:
        train = load_dataset("digits", split="train")
        test = load_dataset("digits", split="test")
        epochs = args.epochs or (2 if args.quick else 15)
        # seed 0: the same initial weights on every rank (DDP also broadcasts rank 0's)
        model = make_model(train.mean, train.std, seed=0).to(device)
        cfg = TrainConfig.kurakin(
            epochs=epochs,
            batch_size=32 // world if world <= 32 else 1,
            lr=0.05,
            scheduler={"name": "cosine"},
            eps={"name": "truncated_normal", "std": 0.1, "max": 0.2},
        )
        out = args.out / ("quick" if args.quick else "full")
        trainer = AdversarialTrainer(model, cfg, checkpoint_dir=out, device=device)
        if (out / "last.pt").is_file() and not (args.fresh or args.quick):
            trainer.resume()
            if rank == 0:
                print(f"resumed from {out / 'last.pt'} at epoch {trainer.epoch}")
        x_te, y_te = test.data, test.targets
        if args.quick:
            x_te, y_te = x_te[:128], y_te[:128]
        history = trainer.fit(
            (train.data, train.targets),
            val_loader=(x_te, y_te),
            val_attack=PGD(model, eps=0.2, alpha=0.025, steps=10),
            progress=rank == 0 and not args.quick,
        )
        if rank == 0:
            print(
                f"world size {world}, backend {dist.get_backend() if world > 1 else 'none'}, "
                f"device {device}, global batch {cfg.batch_size * world}"
            )
            print("| epoch | loss | train clean | train adv | val clean | val PGD |")
            print("|------:|-----:|------------:|----------:|----------:|--------:|")
            for e in history:
                print(
                    f"| {e.epoch} | {e.loss:.3f} | {e.train_clean_acc:.3f} | "
                    f"{e.train_adv_acc:.3f} | {e.val_clean_acc:.3f} | {e.val_adv_acc:.3f} |"
                )
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
