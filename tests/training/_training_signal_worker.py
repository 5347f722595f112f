"""Worker for test_training_signals.py: trains, and may send itself SIGTERM at a chosen point.

Usage: ``python _training_signal_worker.py CKPT_DIR OUT MODE POINT STEP``

* MODE ``cli``: SIGTERM raises ``KeyboardInterrupt``, as the advrobust CLI's handler does
  (a scheduler's preemption treated as Ctrl-C); ``default``: SIGTERM keeps the operating
  system's action (the process dies at once); ``resume``: resume from ``CKPT_DIR/last.pt``
  first, never signal.
* POINT ``optimizer``: right after ``optimizer.step()`` of step STEP; ``attack``: inside the
  attack of step STEP (before the update); ``scheduler``: right after the LR scheduler's step
  at the end of epoch STEP; ``none``: never.

Exit status 0 after training to the end without a signal (the final weights saved to OUT);
3 after a ``KeyboardInterrupt`` (the trainer wrote its checkpoint first), which a fresh trainer
in the same process then resumed to the end (final weights in OUT); a default SIGTERM kills
the process (resume it with MODE ``resume``).
"""

from __future__ import annotations

import os
import signal
import sys

import torch
from torch import nn

from advrobust.training import AdversarialTrainer, TrainConfig, load_checkpoint

EPOCHS = 3


def build() -> tuple[AdversarialTrainer, tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(16, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3)
    )
    g = torch.Generator().manual_seed(1)
    x = torch.rand(40, 1, 4, 4, generator=g)
    y = torch.randint(0, 3, (40,), generator=g)
    cfg = TrainConfig.kurakin(
        epochs=EPOCHS,
        batch_size=8,
        lr=0.05,
        selection="random",
        scheduler={"name": "cosine"},
        checkpoint_every=1,
    )
    return AdversarialTrainer(model, cfg, checkpoint_dir=sys.argv[1]), (x, y)


def main() -> int:
    _ckpt, out, mode, point, at = sys.argv[1:6]
    when = int(at)
    trainer, data = build()
    if mode == "cli":

        def as_interrupt(signum: int, frame: object) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        signal.signal(signal.SIGTERM, as_interrupt)
    if mode == "resume":
        trainer.resume()

    def term() -> None:
        os.kill(os.getpid(), signal.SIGTERM)

    if point == "optimizer":
        step = trainer.optimizer.step

        def step_then_term(*a: object, **k: object) -> object:
            result = step(*a, **k)
            if trainer.step + 1 == when:  # trainer.step counts completed steps
                term()
            return result

        trainer.optimizer.step = step_then_term  # type: ignore[method-assign]
    elif point == "attack":
        attack = trainer.attack

        class Terminating:
            def __call__(self, *a: object, **k: object) -> torch.Tensor:
                out = attack(*a, **k)
                if trainer.step + 1 == when:
                    term()
                return out

        trainer.attack = Terminating()  # type: ignore[assignment]
    elif point == "scheduler":
        # patched on the class: an instance attribute would land in the scheduler's state_dict
        cls = type(trainer.scheduler)
        sched_step = cls.step

        def sched_then_term(self: object, *a: object, **k: object) -> None:
            sched_step(self, *a, **k)  # type: ignore[arg-type]
            if trainer.epoch + 1 == when:
                term()

        cls.step = sched_then_term  # type: ignore[method-assign,assignment]
    try:
        trainer.fit(data, progress=False)
    except KeyboardInterrupt:
        if point == "scheduler":
            cls.step = sched_step  # type: ignore[method-assign]
        saved = load_checkpoint(os.path.join(sys.argv[1], "last.pt"))["counters"]["step"]
        print(f"interrupted; checkpoint at step {saved}", flush=True)
        # a fresh trainer in the same process (nothing shared but the file) finishes the run
        trainer, data = build()
        trainer.resume()
        trainer.fit(data, progress=False)
        status = 3
    else:
        status = 0
    torch.save({k: v.clone() for k, v in trainer.model.state_dict().items()}, out)
    print(f"done epoch={trainer.epoch} step={trainer.step}")
    return status


if __name__ == "__main__":
    sys.exit(main())
