"""sanity_check raises its findings on models built to trigger them and stays quiet otherwise."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from advrobust.attacks import BIM, FGSM, list_attacks
from advrobust.metrics import SANITY_CHECKS, SanityReport, sanity_check

EPS = 0.1


@pytest.fixture(scope="module")
def batch(digits) -> tuple[Tensor, Tensor]:
    _, _, x, y = digits
    return x[:96], y[:96]


def test_metrics_sanity_quiet_on_healthy_digits_model(digits_model, batch) -> None:
    x, y = batch
    report = sanity_check(digits_model, x, y, eps=EPS, generator=torch.Generator().manual_seed(0))
    assert isinstance(report, SanityReport)
    assert report.ok, str(report)
    # gradient-free-gap runs with the default Square attack when it is registered
    square = "Square" in list_attacks()
    assert report.checks == tuple(c for c in SANITY_CHECKS if square or c != "gradient-free-gap")
    assert report.summary()["num_findings"] == 0
    assert not digits_model.training


def test_metrics_sanity_softmax_model(digits_model, batch) -> None:
    x, y = batch
    model = nn.Sequential(digits_model, nn.Softmax(dim=1))
    report = sanity_check(model, x, y, eps=EPS, checks=["probability-outputs", "randomness"])
    assert report.ids == ("probability-outputs",)
    f = report.findings[0]
    assert f.docs == "docs/guide/evaluation-pitfalls.md#probability-outputs"
    assert "logits" in f.explanation
    logsm = nn.Sequential(digits_model, nn.LogSoftmax(dim=1))
    assert sanity_check(logsm, x, y, checks=["probability-outputs"]).ids == ("probability-outputs",)


def test_metrics_sanity_dropout_left_in_train_mode(batch) -> None:
    x, y = batch
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 32),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.BatchNorm1d(32),
        nn.Linear(32, 10),
    )
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = sanity_check(model, x, y, eps=EPS, checks=["randomness"])
    assert report.ids == ("randomness",)
    assert report.findings[0].details["relative_difference_eval_mode"] == 0.0
    assert "training mode" in report.findings[0].explanation
    # the model comes back in train mode with its BatchNorm statistics untouched
    assert model.training and all(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    model.eval()
    assert sanity_check(model, x, y, checks=["randomness"]).ok


class Quantise(nn.Module):
    """Rounds pixels to 4 levels: the input gradient is zero everywhere."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.round(x * 3) / 3


def test_metrics_sanity_quantising_first_layer(digits_model, batch) -> None:
    x, y = batch
    model = nn.Sequential(Quantise(), digits_model)
    report = sanity_check(model, x, y, eps=EPS, generator=torch.Generator().manual_seed(0))
    assert "zero-gradients" in report.ids
    assert "unbounded-attack-below-100" in report.ids  # gradient attacks cannot move
    assert "noise-beats-attack" in report.ids  # random noise does better than no move
    for f in report.findings:
        assert f.docs.startswith("docs/guide/evaluation-pitfalls.md#")
        assert f.docs.endswith(f.id)
    assert "zero-gradients" in str(report)


def test_metrics_sanity_label_leak_signature(sine) -> None:
    """A model whose FGSM(true label) examples are classified better than the clean inputs."""
    model = sine()
    x = torch.tensor([[0.175], [0.42], [0.175], [0.42]])
    y = torch.tensor([1, 0, 1, 0])  # all four misclassified, all four leak at eps = 0.15
    report = sanity_check(
        model,
        x,
        y,
        eps=0.15,
        checks=["adversarial-accuracy-above-clean"],
        single_step=FGSM(model, eps=0.15),
    )
    assert report.ids == ("adversarial-accuracy-above-clean",)
    assert report.findings[0].details["single_step_accuracy"] == 1.0


def test_metrics_sanity_weak_iterative_and_non_monotone(digits_model, batch) -> None:
    x, y = batch
    # one tiny absolute step: the "iterative" attack barely moves whatever eps it is given
    weak = BIM(digits_model, steps=1, alpha=1e-4)
    report = sanity_check(
        digits_model,
        x,
        y,
        eps=0.3,
        attack=weak,
        checks=["iterative-weaker-than-single-step", "unbounded-attack-below-100"],
    )
    assert set(report.ids) == {"iterative-weaker-than-single-step", "unbounded-attack-below-100"}


def test_metrics_sanity_accuracy_not_monotone(threshold) -> None:
    """FGSM with a fixed overshooting step: accuracy at a larger eps can be higher."""

    class Window(nn.Module):
        # class 1 inside (0.4, 0.6), class 0 outside: moving by 0.15 exits, by 0.3 re-enters
        def forward(self, x: Tensor) -> Tensor:
            v = x.flatten(1)[:, 0]
            s = 0.1 - (v - 0.5).abs()
            return torch.stack([-s, s], 1) * 10

    model = Window()
    x = torch.tensor([[0.3], [0.3], [0.7]])
    y = torch.tensor([0, 0, 0])
    report = sanity_check(
        model,
        x,
        y,
        eps=0.15,
        eps_grid=[0.15, 0.5],
        attack=FGSM(model),
        checks=["accuracy-not-monotone-in-eps"],
    )
    assert report.ids == ("accuracy-not-monotone-in-eps",)


def test_metrics_sanity_bad_input(digits_model, batch) -> None:
    x, y = batch
    with pytest.raises(ValueError, match="checks"):
        sanity_check(digits_model, x, y, checks=["nope"])
    with pytest.raises(ValueError, match="eps"):
        sanity_check(digits_model, x, y, eps=-1.0)
    with pytest.raises(ValueError, match="x is empty"):
        sanity_check(digits_model, x[:0], y[:0])
    with pytest.raises(ValueError, match="bounds"):
        sanity_check(digits_model, x * 3, y)


def test_metrics_sanity_every_finding_has_a_docs_section() -> None:
    """Each check id is the anchor of a heading of docs/guide/evaluation-pitfalls.md."""
    import re
    from pathlib import Path

    page = Path(__file__).resolve().parents[2] / "docs" / "guide" / "evaluation-pitfalls.md"
    if not page.exists():
        pytest.skip("docs are not part of this installation")
    headings = re.findall(r"^## (.+)$", page.read_text(encoding="utf-8"), flags=re.M)
    # python-markdown's toc slugify: drop non-word characters, lowercase, spaces to hyphens
    slugs = {re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", h).strip().lower()) for h in headings}
    assert set(SANITY_CHECKS) <= slugs, set(SANITY_CHECKS) - slugs


def _overconfident_linear(scale: float) -> tuple[nn.Module, Tensor, Tensor]:
    g = torch.Generator().manual_seed(0)
    lin = nn.Linear(6, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(2, 6, generator=g) * scale)
        lin.bias.zero_()
    x = torch.rand(16, 6, generator=g) * 0.2 + 0.4
    with torch.no_grad():
        y = lin(x).argmax(1)
    return lin, x, y


def test_metrics_sanity_saturated_softmax_suggests_margin_loss() -> None:
    """Cross-entropy gradient exactly zero, margin gradient not: the finding names the fix."""
    model, x, y = _overconfident_linear(1e4)
    report = sanity_check(model, x, y, eps=EPS, bounds=(-10.0, 10.0), checks=["zero-gradients"])
    assert report.ids == ("zero-gradients",)
    f = report.findings[0]
    assert 'loss="margin"' in f.explanation
    assert f.details["suggest_margin_loss"] is True
    assert f.details["margin_zero_fraction"] == 0.0
    assert f.details["cross_entropy_zero_fraction"] == 1.0
    # an attack that already uses the margin loss is not affected: nothing to report
    margin_bim = BIM(model, EPS, steps=5, rel_alpha=0.2, loss="margin", bounds=(-10.0, 10.0))
    quiet = sanity_check(
        model, x, y, eps=EPS, bounds=(-10.0, 10.0), attack=margin_bim, checks=["zero-gradients"]
    )
    assert quiet.ok, str(quiet)
    # a moderately confident model keeps a cross-entropy gradient: no finding
    calm, xc, yc = _overconfident_linear(1.0)
    assert sanity_check(calm, xc, yc, eps=EPS, bounds=(-10.0, 10.0), checks=["zero-gradients"]).ok


def test_metrics_sanity_quantising_layer_does_not_suggest_margin_loss(digits_model, batch) -> None:
    x, y = batch
    model = nn.Sequential(Quantise(), digits_model)
    report = sanity_check(model, x, y, eps=EPS, checks=["zero-gradients"])
    (f,) = report.findings
    assert f.details["suggest_margin_loss"] is False
    assert "BPDA" in f.explanation and 'loss="margin"' not in f.explanation


def test_metrics_sanity_labels_out_of_range_name_y(digits_model, batch) -> None:
    x, y = batch
    with pytest.raises(ValueError, match=r"y must hold class indices in \[0, 10\)"):
        sanity_check(digits_model, x, torch.full_like(y, 12), checks=["zero-gradients"])
