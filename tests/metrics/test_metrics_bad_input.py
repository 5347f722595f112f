"""Bad-input matrix over every public metrics entry point.

Each case asserts the exception type and that the message names the offending argument.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from advrobust import metrics as M
from advrobust.attacks import BIM, FGSM

X = torch.rand(6, 1, 4, 4)
Y = torch.tensor([0, 1, 2, 0, 1, 2])
BAD_Y = torch.tensor([0, 1, 2, 3, 1, -1])  # outside [0, 3)
LOADER = [(X[:3], Y[:3]), (X[3:], BAD_Y[3:])]  # the second batch is bad


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))


MODEL = _model()
OTHER = _model()
ATK = FGSM(MODEL, eps=0.1)

Case = tuple[str, Callable[[], object], type[Exception], str]

CASES: list[Case] = [
    # ---------------------------------------------------------- labels outside [0, K)
    ("accuracy-labels", lambda: M.accuracy(MODEL, (X, BAD_Y)), ValueError, r"data\[1\] \(y\)"),
    ("accuracy-labels-loader", lambda: M.accuracy(MODEL, LOADER), ValueError, "data batch 1 y"),
    ("success-labels", lambda: M.success_rate(MODEL, (X, BAD_Y), ATK), ValueError, "data"),
    ("ratio-labels", lambda: M.accuracy_ratio(MODEL, (X, BAD_Y), ATK), ValueError, "data"),
    (
        "adv-acc-labels",
        lambda: M.adversarial_accuracy(MODEL, (X, BAD_Y), ATK, delta=0.1),
        ValueError,
        r"data\[1\] \(y\)",
    ),
    (
        "distortion-labels",
        lambda: M.minimal_distortion(MODEL, (X, BAD_Y), ATK, tol=0.1),
        ValueError,
        r"data\[1\] \(y\)",
    ),
    (
        "distortion-labels-loader",
        lambda: M.minimal_distortion(MODEL, LOADER, ATK, tol=0.1),
        ValueError,
        "data batch 1 y",
    ),
    (
        "score-labels",
        lambda: M.robustness_score([MODEL, OTHER], (X, BAD_Y), ATK, tol=0.1),
        ValueError,
        r"data\[1\] \(y\)",
    ),
    (
        "deepsec-attack-labels",
        lambda: M.deepsec_attack_metrics(MODEL, (X, BAD_Y), ATK),
        ValueError,
        r"data\[1\] \(y\)",
    ),
    (
        "deepsec-defence-labels",
        lambda: M.deepsec_defence_metrics(MODEL, OTHER, (X, BAD_Y)),
        ValueError,
        r"data\[1\] \(y\)",
    ),
    (
        "transfer-rate-labels",
        lambda: M.transfer_rate(MODEL, OTHER, (X, BAD_Y), ATK),
        ValueError,
        r"data\[1\] \(y\)",
    ),
    (
        "transfer-matrix-labels",
        lambda: M.transfer_matrix([MODEL, OTHER], LOADER, ATK),
        ValueError,
        "data batch 1 y",
    ),
    (
        "leak-labels",
        lambda: M.label_leak_count(MODEL, (X, BAD_Y), eps=0.1),
        ValueError,
        r"data\[1\] \(y\)",
    ),
    (
        "robust-accuracy-labels",
        lambda: M.robust_accuracy(MODEL, (X, BAD_Y), 0.1, suite=[ATK]),
        ValueError,
        r"data\[1\] \(y\)",
    ),
    ("sanity-labels", lambda: M.sanity_check(MODEL, X, BAD_Y), ValueError, "y must hold"),
    # ---------------------------------------------------------------- wrong types
    ("accuracy-model", lambda: M.accuracy("net", (X, Y)), TypeError, "model"),  # type: ignore[arg-type]
    ("accuracy-data", lambda: M.accuracy(MODEL, X), TypeError, "data"),
    ("accuracy-x-int", lambda: M.accuracy(MODEL, (X.long(), Y)), TypeError, r"data\[0\] \(x\)"),
    ("accuracy-y-float", lambda: M.accuracy(MODEL, (X, Y.float())), TypeError, r"data\[1\] \(y\)"),
    ("accuracy-progress", lambda: M.accuracy(MODEL, (X, Y), progress="yes"), TypeError, "progress"),  # type: ignore[arg-type]
    (
        "accuracy-batch-size",
        lambda: M.accuracy(MODEL, (X, Y), batch_size=0),
        ValueError,
        "batch_size",
    ),
    ("success-attack", lambda: M.success_rate(MODEL, (X, Y), "FGSM"), TypeError, "attack"),  # type: ignore[arg-type]
    ("success-eps", lambda: M.success_rate(MODEL, (X, Y), ATK, eps=-1.0), ValueError, "eps"),
    (
        "success-eps-shape",
        lambda: M.success_rate(MODEL, (X, Y), ATK, eps=torch.ones(2, 2)),
        ValueError,
        "eps",
    ),
    ("ratio-attack", lambda: M.accuracy_ratio(MODEL, (X, Y), None), TypeError, "attack"),  # type: ignore[arg-type]
    (
        "adv-acc-delta",
        lambda: M.adversarial_accuracy(MODEL, (X, Y), ATK, delta=0.0),
        ValueError,
        "delta",
    ),
    (
        "adv-acc-norm",
        lambda: M.adversarial_accuracy(MODEL, (X, Y), ATK, delta=0.1, norm="l7"),
        ValueError,
        "norm",
    ),
    ("distortion-attack", lambda: M.minimal_distortion(MODEL, (X, Y), BIM), TypeError, "attack"),  # type: ignore[arg-type]
    ("distortion-lo", lambda: M.minimal_distortion(MODEL, (X, Y), ATK, lo=-1.0), ValueError, "lo"),
    ("distortion-hi", lambda: M.minimal_distortion(MODEL, (X, Y), ATK, hi=0.0), ValueError, "hi"),
    (
        "distortion-tol",
        lambda: M.minimal_distortion(MODEL, (X, Y), ATK, tol=0.0),
        ValueError,
        "tol",
    ),
    (
        "distortion-method",
        lambda: M.minimal_distortion(MODEL, (X, Y), ATK, method="newton"),
        ValueError,
        "method",
    ),
    ("score-models", lambda: M.robustness_score(MODEL, (X, Y), ATK), TypeError, "models"),  # type: ignore[arg-type]
    ("score-models-empty", lambda: M.robustness_score({}, (X, Y), ATK), ValueError, "models"),
    (
        "score-models-item",
        lambda: M.robustness_score({"a": 3}, (X, Y), ATK),
        TypeError,
        r"models\['a'\]",
    ),  # type: ignore[dict-item]
    ("search-attack", lambda: M.search_attack("BIM"), TypeError, "attack"),  # type: ignore[arg-type]
    ("transfer-source", lambda: M.transfer_rate("a", OTHER, (X, Y), ATK), TypeError, "source"),  # type: ignore[arg-type]
    ("transfer-target", lambda: M.transfer_rate(MODEL, 1, (X, Y), ATK), TypeError, "target"),  # type: ignore[arg-type]
    (
        "transfer-sources",
        lambda: M.transfer_matrix([MODEL, OTHER], (X, Y), ATK, sources=["z"]),
        ValueError,
        "sources",
    ),
    (
        "leak-attack-true",
        lambda: M.label_leak_count(MODEL, (X, Y), attack_true="FGSM"),
        TypeError,
        "attack_true",
    ),
    (
        "leak-attack-pred",
        lambda: M.label_leak_count(MODEL, (X, Y), eps=0.1, attack_pred=3),
        TypeError,
        "attack_pred",
    ),
    ("leak-eps-missing", lambda: M.label_leak_count(MODEL, (X, Y)), ValueError, "eps"),
    (
        "leak-bounds",
        lambda: M.label_leak_count(MODEL, (X, Y), eps=0.1, bounds=(1.0, 0.0)),
        ValueError,
        "bounds",
    ),
    (
        "deepsec-blur",
        lambda: M.deepsec_attack_metrics(MODEL, (X, Y), ATK, blur_sigma=0.0),
        ValueError,
        "blur_sigma",
    ),
    (
        "deepsec-jpeg-quality",
        lambda: M.deepsec_attack_metrics(MODEL, (X, Y), ATK, jpeg_quality=500),
        ValueError,
        "jpeg_quality",
    ),
    (
        "deepsec-defended",
        lambda: M.deepsec_defence_metrics(MODEL, None, (X, Y)),
        TypeError,
        "defended",
    ),  # type: ignore[arg-type]
    ("jpeg-quality-high", lambda: M.jpeg_compress(X, 500), ValueError, "quality"),
    ("jpeg-quality-zero", lambda: M.jpeg_compress(X, 0), ValueError, "quality"),
    ("jpeg-quality-type", lambda: M.jpeg_compress(X, 90.0), TypeError, "quality"),  # type: ignore[arg-type]
    ("ssim-range", lambda: M.ssim(X, X, data_range=0.0), ValueError, "data_range"),
    ("ssim-window", lambda: M.ssim(X, X, window_size=0), ValueError, "window_size"),
    ("blur-sigma", lambda: M.gaussian_blur(X, 0.0), ValueError, "sigma"),
    ("sanity-eps", lambda: M.sanity_check(MODEL, X, Y, eps=0.0), ValueError, "eps"),
    ("sanity-checks", lambda: M.sanity_check(MODEL, X, Y, checks=["nope"]), ValueError, "checks"),
    ("sanity-ensemble", lambda: M.sanity_check(MODEL, X, Y, ensemble=0.5), TypeError, "ensemble"),
    (
        "sanity-gradient-free",
        lambda: M.sanity_check(MODEL, X, Y, gradient_free="Square"),
        TypeError,
        "gradient_free",
    ),
    (
        "robust-accuracy-eps",
        lambda: M.robust_accuracy(MODEL, (X, Y), -0.1, suite=[ATK]),
        ValueError,
        "eps",
    ),
    (
        "robust-accuracy-norm",
        lambda: M.robust_accuracy(MODEL, (X, Y), 0.1, norm="l0", suite=[ATK]),
        ValueError,
        "norm",
    ),
    (
        "robust-accuracy-suite",
        lambda: M.robust_accuracy(MODEL, (X, Y), 0.1, suite="best"),
        ValueError,
        "suite",
    ),
    (
        "robust-accuracy-suite-item",
        lambda: M.robust_accuracy(MODEL, (X, Y), 0.1, suite=[ATK, 1]),
        TypeError,
        r"suite\[1\]",
    ),
    (
        "robust-accuracy-bounds",
        lambda: M.robust_accuracy(MODEL, (X, Y), 0.1, bounds=(0, 0)),
        ValueError,
        "bounds",
    ),
    ("robust-accuracy-model", lambda: M.robust_accuracy(None, (X, Y), 0.1), TypeError, "model"),  # type: ignore[arg-type]
    ("common-set-correct", lambda: M.common_set_score([], {}, {}), TypeError, "correct"),  # type: ignore[arg-type]
    (
        "common-set-names",
        lambda: M.common_set_score({"a": Y > 0}, {"b": Y > 0}, {"a": X[:, 0, 0, 0]}),
        ValueError,
        "found",
    ),
    (
        "common-set-shape",
        lambda: M.common_set_score({"a": Y > 0}, {"a": Y[:3] > 0}, {"a": X[:, 0, 0, 0]}),
        ValueError,
        r"found\['a'\]",
    ),
    ("from-dict-type", lambda: M.AccuracyResult.from_dict("x"), TypeError, "data"),  # type: ignore[arg-type]
    ("from-dict-key", lambda: M.DistortionResult.from_dict({"colour": 1}), ValueError, "colour"),
]


def test_metrics_bad_input_matrix_covers_every_entry_point() -> None:
    """Every public function of advrobust.metrics appears in the matrix."""
    names = {n for n in M.__all__ if callable(getattr(M, n)) and n[0].islower()}
    covered = {
        "accuracy",
        "success_rate",
        "accuracy_ratio",
        "adversarial_accuracy",
        "minimal_distortion",
        "robustness_score",
        "search_attack",
        "transfer_rate",
        "transfer_matrix",
        "label_leak_count",
        "deepsec_attack_metrics",
        "deepsec_defence_metrics",
        "jpeg_compress",
        "ssim",
        "gaussian_blur",
        "sanity_check",
        "robust_accuracy",
        "common_set_score",
        "jpeg_available",  # never raises: it returns the reason as a string
    }
    assert names <= covered, names - covered


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_metrics_bad_input(case: Case) -> None:
    _, call, exc, pattern = case
    with pytest.raises(exc, match=pattern):
        call()


def test_metrics_bad_input_jpeg_available_explains_instead_of_raising() -> None:
    assert "greyscale or RGB" in M.jpeg_available(torch.rand(2, 2, 4, 4))


def test_metrics_device_check_looks_at_buffers_and_every_parameter() -> None:
    """A model half on the meta device is refused naming the tensor, not only its first."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))
    model.eval()
    model[3].to("meta")  # the last layer only: the first parameter is still on the CPU
    with pytest.raises(ValueError, match=r"x is on cpu but the model's parameters are on meta"):
        M.accuracy(model, (X, Y))
    bn_only = nn.Sequential(nn.Flatten(), nn.Linear(16, 3), nn.BatchNorm1d(3)).eval()
    bn_only[2].register_buffer("running_mean", torch.zeros(3, device="meta"))
    with pytest.raises(ValueError, match=r"model's buffers are on meta.*running_mean"):
        M.accuracy(bn_only, (X, Y))


def test_metrics_float16_model_with_float32_input_names_both_dtypes() -> None:
    model = _model().half()
    with pytest.raises(ValueError, match=r"x has dtype torch.float32 .* dtype torch.float16"):
        M.accuracy(model, (X, Y))
    with pytest.raises(ValueError, match=r"x has dtype torch.float32 .* dtype torch.float16"):
        FGSM(model, eps=0.1).run(X, Y)
    # the other way round (float32 model, float16 input) too
    with pytest.raises(ValueError, match=r"x has dtype torch.float16 .* dtype torch.float32"):
        M.accuracy(_model(), (X.half(), Y))


def test_metrics_progress_bar_off_when_stderr_is_not_a_terminal(capsys) -> None:
    """progress=True writes nothing into a redirected stderr (pytest captures it: no tty)."""
    M.accuracy(MODEL, (X, Y), progress=True, batch_size=2)
    M.robust_accuracy(MODEL, (X, Y), 0.1, suite=[ATK], progress=True, batch_size=2)
    assert capsys.readouterr().err == ""


def test_metrics_attack_result_loads_with_weights_only(tmp_path) -> None:
    res = ATK.run(X, Y)
    path = tmp_path / "result.pt"
    torch.save(res, path)
    back = torch.load(path)  # weights_only=True by default
    assert torch.equal(back.x_adv, res.x_adv) and torch.equal(back.success, res.success)
    torch.save(res.to_dict(), tmp_path / "plain.pt")
    again = type(res).from_dict(torch.load(tmp_path / "plain.pt", weights_only=True))
    assert torch.equal(again.adv_pred, res.adv_pred) and again.target is None
    with pytest.raises(ValueError, match="missing"):
        type(res).from_dict({"x_adv": res.x_adv})
    with pytest.raises(TypeError, match=r"data\['l2'\] must be a tensor"):
        type(res).from_dict({**res.to_dict(), "l2": [1.0]})


def test_metrics_labels_inside_range_pass_and_bad_tensor_is_not_reached(digits_model) -> None:
    """The label check comes before the model indexes with the labels: a clear ValueError."""
    x = torch.rand(4, 1, 8, 8)
    y = torch.tensor([0, 1, 2, 10])
    with pytest.raises(ValueError, match=r"data\[1\] \(y\) must hold class indices in \[0, 10\)"):
        M.deepsec_attack_metrics(digits_model, (x, y), FGSM(digits_model))
