"""Transfer of adversarial examples between models (Kurakin sec. 4.4, tables 4 and 6)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from ..attacks import Attack
from ._loop import (
    Batch,
    as_run,
    bind_attack,
    check_eps_arg,
    check_model,
    evaluate,
    named_models,
    predict_checked,
    predict_labels,
    run_attack,
)
from ._results_transfer import TransferMatrixResult, TransferResult

__all__ = ["transfer_matrix", "transfer_rate"]


def transfer_rate(
    source: nn.Module,
    target: nn.Module,
    data: object,
    attack: Attack,
    *,
    eps: float | Tensor | None = None,
    use_labels: bool = True,
    batch_size: int = 256,
    progress: bool = False,
    generator: torch.Generator | None = None,
) -> TransferResult:
    """How often adversarial examples made on ``source`` fool ``target``.

    Kurakin's transfer rate (sec. 4.4, table 4): among the examples the source classifies
    correctly when clean and misclassifies when adversarial, the fraction the target
    misclassifies (``.value``). The absolute variant (table 6) is the target's error rate on
    all adversarial examples of the source (``.absolute``).

    Args:
        source: the model the adversarial examples are made on.
        target: the model they are transferred to.
        data: ``(x, y)`` tensors or an iterable of ``(x, y)`` batches.
        attack: an :class:`advrobust.attacks.Attack`; it is applied to ``source``.
        eps: call-time eps (float or ``(N,)`` tensor); None uses the attack's eps.
        use_labels: attack with the true labels (True) or the source's predictions (False).
        batch_size: batch size when ``data`` is a pair of tensors.
        progress: show a progress bar.
        generator: random generator passed to the attack.

    Returns:
        :class:`TransferResult`.

    Raises:
        ValueError: models with different numbers of classes, bad data.
    """
    res = transfer_matrix(
        {"source": check_model(source, "source"), "target": check_model(target, "target")},
        data,
        attack,
        eps=eps,
        use_labels=use_labels,
        batch_size=batch_size,
        progress=progress,
        generator=generator,
        sources=("source",),
    )
    return res.pair("source", "target")


def transfer_matrix(
    models: Mapping[str, nn.Module] | Sequence[nn.Module],
    data: object,
    attack: Attack,
    *,
    eps: float | Tensor | None = None,
    use_labels: bool = True,
    batch_size: int = 256,
    progress: bool = False,
    generator: torch.Generator | None = None,
    sources: Sequence[str] | None = None,
) -> TransferMatrixResult:
    """Transfer rates over all ordered pairs of models.

    Each source's adversarial examples are generated once per batch and evaluated on every
    target (the diagonal is the source itself: its Kurakin rate is 1 wherever it has
    candidates, its absolute rate is the source's error rate under attack).

    Args:
        models: a mapping name -> model (a sequence is named ``model_0``, ...). All models
            must output the same number of classes.
        data: ``(x, y)`` tensors or an iterable of ``(x, y)`` batches.
        attack: an :class:`advrobust.attacks.Attack`, applied to each source with
            ``with_model``.
        eps: call-time eps (float or ``(N,)`` tensor); None uses the attack's eps.
        use_labels: attack with the true labels (True) or each source's predictions (False).
        batch_size: batch size when ``data`` is a pair of tensors.
        progress: show a progress bar.
        generator: random generator passed to the attack.
        sources: names of the models to use as sources (default: all). Rows of the result
            follow ``names``; rows of models that are not sources are NaN.

    Returns:
        :class:`TransferMatrixResult` with ``rates`` and ``absolute`` matrices ``(S, T)``.

    Raises:
        ValueError: models with different numbers of classes, unknown ``sources``, bad data.
    """
    named = named_models(models)
    names = tuple(named)
    if sources is None:
        src = names
    else:
        unknown = [s for s in sources if s not in named]
        if unknown:
            raise ValueError(f"sources {unknown} are not among the models {list(names)}")
        src = tuple(sources)
    eps = check_eps_arg(eps)
    attacks = {s: as_run(bind_attack(attack, named[s]), eps) for s in src}
    bounds = attacks[src[0]].bounds

    def fn(b: Batch) -> dict[str, Tensor]:
        n = b.x.shape[0]
        classes: dict[str, int] = {}
        clean_pred: dict[str, Tensor] = {}
        for name, m in named.items():
            logits = predict_checked(m, b, f"models[{name!r}]")
            classes[name] = int(logits.shape[1])
            clean_pred[name] = logits.argmax(1)
        if len(set(classes.values())) > 1:
            raise ValueError(f"models must all have the same number of classes, got {classes}")
        s_correct = torch.zeros(len(names), n, dtype=torch.bool, device=b.x.device)
        s_fooled = torch.zeros_like(s_correct)
        t_wrong = torch.zeros(len(names), len(names), n, dtype=torch.bool, device=b.x.device)
        for s in src:
            i = names.index(s)
            res = run_attack(attacks[s], b, b.y if use_labels else None, eps, generator)
            s_correct[i] = clean_pred[s] == b.y
            s_fooled[i] = res.adv_pred != b.y
            for j, t in enumerate(names):
                if t == s:
                    t_wrong[i, j] = res.adv_pred != b.y
                else:
                    pred = predict_labels(named[t], res.x_adv, f"models[{t!r}]")
                    t_wrong[i, j] = pred != b.y
        # per-example dimension last in the result; the loop concatenates along dim 0
        return {
            "s_correct": s_correct.T,
            "s_fooled": s_fooled.T,
            "t_wrong": t_wrong.permute(2, 0, 1),
        }

    out = evaluate(
        data,
        fn,
        batch_size=batch_size,
        progress=progress,
        desc="transfer",
        bounds=bounds,
        eps=eps,
    )
    return TransferMatrixResult(
        names,
        out["s_correct"].T.contiguous(),
        out["s_fooled"].T.contiguous(),
        out["t_wrong"].permute(1, 2, 0).contiguous(),
        sources=src,
        attack=attacks[src[0]].spec(),
    )
