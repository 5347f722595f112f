"""State-of-the-art evaluation, side by side with adv-lib and AutoAttack, measured in one run.

    python benchmarks/bench_evaluation.py              # N = 100 images, budgets 100 and 1,000 steps
    python benchmarks/bench_evaluation.py --quick      # N = 32, budget 100, 2 PGD-AT epochs
    python benchmarks/bench_evaluation.py --n 16 --budgets 100 --skip robust   # part 1 only

Model and data as in ``bench_attacks.py``: the Carlini-Wagner MNIST CNN (312,202 parameters)
trained for a few seconds on scikit-learn's digits upsampled to 28x28 (no MNIST here), attacked
on held-out images it classifies correctly. Three parts:

1. Minimal distances (L2 and Linf). For every attack and budget: success rate, median distance
   over the examples, median of (distance / best distance any attack found for that example),
   forward passes per example (a gradient step counts one forward and one backward), and the
   time per pass divided by the floor (the time of one forward+backward of the batch, per
   example). Attacks: advrobust's FMN, DDN, ALMA, FAB, CW-L2 and the papers' I-FGSM bisection;
   adv-lib 0.2.8's fmn, ddn, alma, fab and carlini_wagner_l2 when installed (``pip install
   --no-deps adv-lib==0.2.8``; its unused imports of torchvision and visdom are stubbed here,
   in the benchmark only).
2. Robust accuracy at a fixed eps: ``robust_accuracy(suite="standard")`` and ``"fast"`` against
   AutoAttack's standard version (``pip install --no-deps pyautoattack``), on the undefended
   model and on one adversarially trained with advrobust's own PGD-AT. Lower is stronger; the
   passes column is the total of forward passes per example.
3. Nothing is asserted: the script prints tables.

Passes are counted in examples by a wrapper around the model: ``fwd`` every row of every
forward call, ``bwd`` every row of every backward pass that really flows through a forward's
output (a hook on it). The floor of a row is ``fwd * t_forward + bwd * (t_forward+backward -
t_forward)``, with both times measured right before the row (the load of a shared machine
changes). This script replaces ``bench_minimal_norm.py`` (part 1) and
``bench_robust_accuracy.py`` (part 2); ``bench_apgd_digits.py`` (APGD's step-size rule
against PGD's) and ``bench_fab_square.py`` (a gradient-masking model) answer other questions.
"""

# ruff: noqa: B023  (every closure below is called at once by record(), inside its loop turn)
from __future__ import annotations

import argparse
import math
import sys
import time
import types
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from bench_attacks import build_model, digits28, train
from torch import Tensor, nn

from advrobust import attacks as A
from advrobust.metrics import minimal_distortion


class Counter(nn.Module):
    """Wraps a model and counts, in examples, the forward passes and the backward passes.

    A backward row is counted only when a gradient really flows back through the output of a
    forward call (a hook on that output), not merely because the input required grad: a
    forward that builds a graph and never differentiates it costs one forward, not two.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.rows = 0
        self.grad_rows = 0

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        self.rows += n
        out: Tensor = self.model(x)
        if out.requires_grad:

            def seen(grad: Tensor) -> None:
                self.grad_rows += n

            out.register_hook(seen)
        return out

    def reset(self) -> None:
        self.rows = self.grad_rows = 0


def stub_adv_lib() -> Any:
    """Import adv-lib's attacks with its unused torchvision/visdom imports stubbed, or None."""
    for name in ("torchvision", "torchvision.models", "visdom"):
        if name not in sys.modules:
            mod = types.ModuleType(name)
            sys.modules[name] = mod
    sys.modules["torchvision"].models = sys.modules["torchvision.models"]  # type: ignore[attr-defined]
    sys.modules["visdom"].Visdom = object  # type: ignore[attr-defined]
    try:
        import adv_lib.attacks as advlib  # type: ignore[import-not-found]
    except Exception as exc:
        print(f"adv-lib not importable ({exc}); its rows are skipped")
        return None
    return advlib


def floor_per_example(model: nn.Module, x: Tensor, y: Tensor) -> tuple[float, float]:
    """Seconds per example of one forward+backward-to-input, and of one forward alone."""

    def fb() -> None:
        xr = x.detach().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(model(xr), y, reduction="sum"), xr)

    def fw() -> None:
        with torch.no_grad():
            model(x)

    out = []
    for fn in (fb, fw):
        fn()
        best = math.inf
        for _ in range(5):
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
        out.append(best / x.shape[0])
    return out[0], out[1]


def distances_of(x_adv: Tensor, x: Tensor, y: Tensor, model: nn.Module, norm: str) -> Tensor:
    """Per-example distance in ``norm`` of a successful adversarial example, ``inf`` otherwise."""
    with torch.no_grad():
        ok = model(x_adv).argmax(1) != y
    d = (x_adv - x).flatten(1)
    dist = d.norm(dim=1) if norm == "l2" else d.abs().amax(dim=1)
    return torch.where(ok, dist, torch.full_like(dist, math.inf))


def _excluded(entry: str, name: str, budget: int) -> bool:
    """``entry`` is a case-insensitive part of a row's name, optionally ``@BUDGET`` (only there)."""
    pattern, _, at = entry.partition("@")
    return pattern.lower() in name.lower() and (not at or int(at) == budget)


def part_minimal(
    model: nn.Module, x: Tensor, y: Tensor, budgets: list[int], exclude: tuple[str, ...] = ()
) -> None:
    counter = Counter(model).eval()
    n = x.shape[0]
    advlib = stub_adv_lib()
    for norm in ("l2", "linf"):
        rows: list[tuple[str, int, Tensor, float, float, float, float]] = []

        def record(
            name: str, budget: int, fn: Callable[[], Tensor], optional: bool = False
        ) -> None:
            """Run ``fn`` (adversarial examples, or per-example distances when 1-D) and time it.

            An optional comparison (another library) that raises is reported and skipped.
            """
            if any(_excluded(e, name, budget) for e in exclude):
                return
            # the floor is measured right before each row: on a shared machine the load changes
            fb, fw = floor_per_example(model, x, y)
            counter.reset()
            t = time.perf_counter()
            try:
                out = fn()
            except Exception as exc:
                if not optional:
                    raise
                print(f"  {name} ({budget}) failed, row skipped: {exc!r}", file=sys.stderr)
                return
            elapsed = time.perf_counter() - t
            if out.dim() == 1:
                dist = torch.where(torch.isfinite(out), out, torch.full_like(out, math.inf))
            else:
                dist = distances_of(out.detach(), x, y, model, norm)
            floor = counter.rows * fw + counter.grad_rows * max(fb - fw, 0.0)
            rows.append(
                (
                    name,
                    budget,
                    dist,
                    counter.rows / n,
                    counter.grad_rows / n,
                    elapsed,
                    elapsed / max(floor, 1e-12),
                )
            )
            print(f"  ran {name} ({budget}) in {elapsed:.1f} s", file=sys.stderr)

        def g() -> torch.Generator:
            return torch.Generator().manual_seed(0)

        def one_budget(steps: int) -> None:
            if norm == "l2":
                record("advrobust FMN-L2", steps, lambda: A.FMN(counter, "l2", steps=steps)(x, y))
                record("advrobust DDN", steps, lambda: A.DDN(counter, steps=steps)(x, y))
                record("advrobust ALMA-L2", steps, lambda: A.ALMA(counter, "l2", steps=steps)(x, y))
                record(
                    "advrobust FAB-L2",
                    steps,
                    lambda: A.FAB(counter, eps=100.0, norm="l2", steps=steps)(x, y, generator=g()),
                )
                bs = 5 if steps <= 100 else 9
                record(
                    f"advrobust CWL2 {bs}x{steps // bs}",
                    steps,
                    lambda: A.CWL2(counter, binary_search_steps=bs, steps=steps // bs)(x, y),
                )
            else:
                record(
                    "advrobust FMN-Linf", steps, lambda: A.FMN(counter, "linf", steps=steps)(x, y)
                )
                record(
                    "advrobust FAB-Linf",
                    steps,
                    lambda: A.FAB(counter, eps=1.0, norm="linf", steps=steps)(x, y, generator=g()),
                )
                if steps <= 100:
                    # the papers' procedure: I-FGSM with 20 steps of eps/20, bisected to 1e-3
                    def paper() -> Tensor:
                        bim = A.BIM(counter, 0.5, steps=20, rel_alpha=1 / 20)
                        res = minimal_distortion(counter, (x, y), bim, hi=0.5, tol=1e-3)
                        return res.distance

                    record("advrobust I-FGSM bisection (paper)", 20, paper)
            if advlib is not None:
                p = 2 if norm == "l2" else float("inf")
                record(
                    f"adv-lib fmn-{norm}",
                    steps,
                    lambda: advlib.fmn(counter, x, y, norm=p, steps=steps),
                    optional=True,
                )
                record(
                    f"adv-lib fab-{norm}",
                    steps,
                    lambda: advlib.fab(counter, x, y, norm=p, n_iter=steps),
                    optional=True,
                )
                if norm == "l2":
                    record(
                        "adv-lib ddn",
                        steps,
                        lambda: advlib.ddn(counter, x, y, steps=steps),
                        optional=True,
                    )
                    record(
                        "adv-lib alma-l2",
                        steps,
                        lambda: advlib.alma(counter, x, y, num_steps=steps),
                        optional=True,
                    )
                    bs = 5 if steps <= 100 else 9
                    record(
                        f"adv-lib cw-l2 {bs}x{steps // bs}",
                        steps,
                        lambda: advlib.carlini_wagner_l2(
                            counter, x, y, binary_search_steps=bs, max_iterations=steps // bs
                        ),
                        optional=True,
                    )

        for steps in budgets:
            one_budget(steps)
        if not rows:
            continue
        best = torch.stack([r[2] for r in rows]).amin(dim=0)
        print(f"\n{norm.upper()} minimal distances on {n} images (best per example over all rows)")
        print(
            f"{'attack':<36}{'steps':>6}{'success':>9}{'median':>9}{'med ratio':>10}"
            f"{'mean ratio':>11}{'p90 ratio':>10}{'fwd':>7}{'bwd':>7}{'time [s]':>9}{'/floor':>8}"
        )
        for name, steps, dist, fwd, bwd, elapsed, ratio in rows:
            ok = torch.isfinite(dist)
            med = float(dist[ok].median()) if ok.any() else math.nan
            # the median ratio hides a tail: an attack can be best on most examples and far off
            # on the rest, so the mean (over successes) and the 90th percentile are shown too
            q = (dist / best)[torch.isfinite(best)]
            rel = float(q.median())
            fin = q[torch.isfinite(q)]
            mean = float(fin.mean()) if fin.numel() else math.nan
            p90 = float(q.quantile(0.9)) if q.numel() else math.nan
            print(
                f"{name:<36}{steps:>6}{float(ok.float().mean()):>9.3f}{med:>9.4f}{rel:>10.4f}"
                f"{mean:>11.4f}{p90:>10.4f}{fwd:>7.0f}{bwd:>7.0f}{elapsed:>9.1f}{ratio:>8.2f}"
            )
        sys.stdout.flush()


def pgd_trained(x: Tensor, y: Tensor, eps: float, epochs: int) -> nn.Module:
    """The CNN trained with advrobust's own PGD adversarial training."""
    from advrobust.training import AdversarialTrainer, TrainConfig

    torch.manual_seed(0)
    model = build_model()
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=64,
        lr=1e-3,
        optimizer="adam",
        weight_decay=0.0,
        attack={"name": "PGD", "steps": 10, "rel_alpha": 0.25},
        fraction=1.0,
        adv_weight=1.0,
        eps={"name": "fixed", "eps": eps},
    )
    AdversarialTrainer(model, cfg).fit((x, y), progress=False)
    return model.eval()


def part_robust(models: dict[str, nn.Module], x: Tensor, y: Tensor, eps: float) -> None:
    from advrobust.metrics import robust_accuracy

    try:
        from pyautoattack import AutoAttack  # type: ignore[import-not-found]
    except ImportError:
        AutoAttack = None
        print("pyautoattack is not installed: AutoAttack rows skipped")
    print(f"\nRobust accuracy at Linf eps {eps} on {x.shape[0]} images (lower is stronger)")
    print(f"{'model':<14}{'evaluation':<34}{'robust acc':>11}{'fwd':>9}{'bwd':>9}{'time [s]':>9}")
    for mname, model in models.items():
        for p in model.parameters():
            p.requires_grad_(False)
        counter = Counter(model).eval()
        # PGD-40 alone (Madry's step 2.5 eps / steps, random start): the usual single attack
        counter.reset()
        t = time.perf_counter()
        pgd = A.PGD(counter, eps, steps=40, alpha=2.5 * eps / 40, random_start=True)
        x_adv = pgd(x, y, generator=torch.Generator().manual_seed(0))
        el = time.perf_counter() - t
        with torch.no_grad():
            acc = float((model(x_adv).argmax(1) == y).float().mean())
        print(
            f"{mname:<14}{'advrobust PGD-40 alone':<34}{acc:>11.3f}"
            f"{counter.rows / x.shape[0]:>9.0f}{counter.grad_rows / x.shape[0]:>9.0f}"
            f"{el:>9.1f}"
        )
        for suite in ("fast", "standard"):
            counter.reset()
            t = time.perf_counter()
            res = robust_accuracy(
                counter,
                (x, y),
                eps,
                norm="linf",
                suite=suite,
                generator=torch.Generator().manual_seed(0),
            )
            el = time.perf_counter() - t
            if suite == "fast":
                clean = float(res.clean_correct.float().mean())
                print(f"{mname:<14}{'clean accuracy':<34}{clean:>11.3f}")
            print(
                f"{mname:<14}{'advrobust ' + suite:<34}{res.value:>11.3f}"
                f"{counter.rows / x.shape[0]:>9.0f}{counter.grad_rows / x.shape[0]:>9.0f}"
                f"{el:>9.1f}"
            )
        if AutoAttack is not None:
            counter.reset()
            t = time.perf_counter()
            try:
                aa = AutoAttack(counter, eps=eps, norm="Linf", version="standard", seed=0)
                aa.verbose = False
                out = aa.run_standard_evaluation(x, y, batch_size=x.shape[0])
                x_adv = out[0] if isinstance(out, tuple) else out  # pyautoattack: (x, y)
            except Exception as exc:
                print(f"{mname:<14}{'AutoAttack standard':<34} failed, row skipped: {exc!r}")
                continue
            el = time.perf_counter() - t
            with torch.no_grad():
                inside = (x_adv - x).abs().flatten(1).amax(1) <= eps * (1 + 1e-5)
                acc = float(((model(x_adv).argmax(1) == y) | ~inside).float().mean())
            print(
                f"{mname:<14}{'AutoAttack standard':<34}{acc:>11.3f}"
                f"{counter.rows / x.shape[0]:>9.0f}{counter.grad_rows / x.shape[0]:>9.0f}"
                f"{el:>9.1f}"
            )
        sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 32, budget 100 only")
    parser.add_argument("--n", type=int, default=None, help="number of images (default 100)")
    parser.add_argument("--eps", type=float, default=0.1, help="Linf eps of part 2")
    parser.add_argument("--skip", choices=("minimal", "robust"), default=None)
    parser.add_argument(
        "--undefended-only",
        action="store_true",
        help="part 2 on the undefended model only (skips the PGD-AT training)",
    )
    parser.add_argument(
        "--exclude",
        nargs="+",
        default=(),
        help="skip part-1 rows whose name contains one of these (case-insensitive), e.g. fab;"
        " NAME@BUDGET skips them at that budget only, e.g. fab@1000",
    )
    parser.add_argument(
        "--budgets", type=int, nargs="+", default=None, help="step budgets (default 100 1000)"
    )
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    torch.manual_seed(0)
    n = args.n or (32 if args.quick else 100)
    budgets = args.budgets or ([100] if args.quick else [100, 1000])

    model = build_model()
    x_all, y_all = digits28()
    perm = torch.randperm(len(y_all), generator=torch.Generator().manual_seed(0))
    train_idx, test_idx = perm[:1400], perm[1400:]
    train(model, x_all[train_idx], y_all[train_idx], epochs=4)
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        right = test_idx[model(x_all[test_idx]).argmax(1) == y_all[test_idx]]
    x, y = x_all[right][:n].contiguous(), y_all[right][:n].contiguous()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {n} test images")
    if args.skip != "minimal":
        part_minimal(model, x, y, budgets, tuple(args.exclude))
    if args.skip != "robust":
        xt, yt = x_all[test_idx][:n], y_all[test_idx][:n]
        models = {"undefended": model}
        if not args.undefended_only:
            models["PGD-AT"] = pgd_trained(
                x_all[train_idx], y_all[train_idx], args.eps, epochs=2 if args.quick else 4
            )
        part_robust(models, xt, yt, args.eps)


if __name__ == "__main__":
    main()
