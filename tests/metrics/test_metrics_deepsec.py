"""DeepSec attack and defence metrics, SSIM, blur and JPEG against independent oracles."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from advrobust.attacks import FGSM
from advrobust.metrics import (
    deepsec_attack_metrics,
    deepsec_defence_metrics,
    gaussian_blur,
    jpeg_available,
    jpeg_compress,
    ssim,
)


def ssim_bruteforce(a: np.ndarray, b: np.ndarray, win: int, sigma: float, L: float) -> float:
    """SSIM of two 2-D images by explicit loops over the valid window positions."""
    c = np.arange(win) - (win - 1) / 2
    g = np.exp(-(c**2) / (2 * sigma**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    vals = []
    for i in range(a.shape[0] - win + 1):
        for j in range(a.shape[1] - win + 1):
            pa, pb = a[i : i + win, j : j + win], b[i : i + win, j : j + win]
            ma, mb = (w * pa).sum(), (w * pb).sum()
            va = (w * pa * pa).sum() - ma * ma
            vb = (w * pb * pb).sum() - mb * mb
            cov = (w * pa * pb).sum() - ma * mb
            vals.append(
                ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
            )
    return float(np.mean(vals))


def test_metrics_ssim_identity_and_bruteforce() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, 12, 12, generator=g, dtype=torch.float64)
    assert torch.allclose(ssim(x, x), torch.ones(3, dtype=torch.float64), atol=1e-12)
    y = (x + 0.1 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    got = ssim(x, y)
    for i in range(3):
        want = np.mean(
            [ssim_bruteforce(x[i, c].numpy(), y[i, c].numpy(), 11, 1.5, 1.0) for c in range(2)]
        )
        assert float(got[i]) == pytest.approx(want, rel=1e-9)
    assert bool((got < 1).all())
    small = torch.rand(2, 1, 8, 8, generator=g)  # window shrinks to 7x7 on 8x8 digits
    assert ssim(small, small.flip(-1)).shape == (2,)
    with pytest.raises(ValueError, match="same shape"):
        ssim(x, y[:, :1])
    with pytest.raises(ValueError, match="data_range"):
        ssim(x, y, data_range=0.0)


def test_metrics_gaussian_blur_matches_scipy() -> None:
    from scipy.ndimage import gaussian_filter

    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 10, 9, generator=g, dtype=torch.float64)
    got = gaussian_blur(x, 0.8)
    want = gaussian_filter(x.numpy(), sigma=(0, 0, 0.8, 0.8), mode="mirror", truncate=4.0)
    assert np.allclose(got.numpy(), want, atol=1e-12)
    assert torch.equal(gaussian_blur(x, 0.05), x)  # radius 0
    const = torch.full((1, 1, 5, 5), 0.3)
    assert torch.allclose(gaussian_blur(const, 1.0), const)


def test_metrics_jpeg_roundtrip() -> None:
    x = torch.rand(2, 1, 16, 16)
    assert jpeg_available(x) == ""
    out = jpeg_compress(x, quality=95)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert float((out - x).abs().mean()) < 0.1
    flat = torch.full((1, 3, 8, 8), 0.5)
    assert torch.allclose(jpeg_compress(flat), flat, atol=2 / 255)
    assert "greyscale or RGB" in jpeg_available(torch.rand(1, 2, 8, 8))
    with pytest.raises(RuntimeError, match="unavailable"):
        jpeg_compress(torch.rand(1, 2, 8, 8))


def test_metrics_deepsec_attack_metrics_by_hand(threshold) -> None:
    """Mean-pixel threshold model on 4x4 images: FGSM moves every pixel by eps."""
    model = threshold(0.5, scale=4.0)
    base = torch.tensor([0.3, 0.45, 0.52, 0.7, 0.48])
    x = base[:, None, None, None].expand(5, 1, 4, 4).clone()
    y = torch.tensor([0, 0, 1, 1, 1])  # the last one is misclassified: not evaluated
    eps = 0.1
    res = deepsec_attack_metrics(model, (x, y), FGSM(model, eps=eps))
    s = res.summary()
    assert res.evaluated.tolist() == [True, True, True, True, False]
    # x' means: 0.4 (still 0), 0.55 (fooled), 0.42 (fooled), 0.6 (still 1)
    assert res.success.tolist()[:4] == [False, True, True, False]
    assert s["MR"] == pytest.approx(0.5)
    xa = torch.tensor([0.55, 0.42])
    p1 = torch.sigmoid(2 * 4.0 * (xa - 0.5))  # P(class 1) for logits +-4(x - 0.5)
    p_adv = torch.stack([p1[0], 1 - p1[1]])
    assert s["ACAC"] == pytest.approx(float(p_adv.mean()), rel=1e-5)
    assert s["ACTC"] == pytest.approx(float((1 - p_adv).mean()), rel=1e-5)
    assert s["NTE"] == pytest.approx(float((2 * p_adv - 1).mean()), rel=1e-5)
    assert s["ALD_0"] == pytest.approx(1.0)
    assert s["ALD_2"] == pytest.approx(float((0.1 / torch.tensor([0.45, 0.52])).mean()), rel=1e-5)
    assert s["ALD_inf"] == pytest.approx(s["ALD_2"], rel=1e-5)
    # constant images: SSIM reduces to the luminance term (2ab + C1) / (a^2 + b^2 + C1)
    c1 = 0.01**2
    a, b = torch.tensor([0.45, 0.52]), xa
    want_ass = float(((2 * a * b + c1) / (a * a + b * b + c1)).mean())
    assert s["ASS"] == pytest.approx(want_ass, rel=1e-4)  # float32 statistics
    assert s["RGB"] == pytest.approx(1.0)  # blurring a constant image changes nothing
    assert s["RIC"] == pytest.approx(1.0)  # nor (to 8 bits) does JPEG
    assert s["CC"] > 0
    assert res.to_dict()["summary"]["MR"] == pytest.approx(0.5)


def test_metrics_deepsec_ric_unavailable_for_two_channels(threshold) -> None:
    model = threshold(0.5)
    x = torch.rand(4, 2, 4, 4)
    y = model(x).argmax(1)
    res = deepsec_attack_metrics(model, (x, y), FGSM(model, eps=0.2))
    assert res.jpeg_success is None and res.ric is None
    assert res.summary()["RIC"] == "unavailable"
    assert "greyscale or RGB" in res.jpeg_note


def test_metrics_deepsec_defence_metrics_by_hand(threshold) -> None:
    from scipy.spatial.distance import jensenshannon

    orig, dfd = threshold(0.5, scale=3.0), threshold(0.4, scale=3.0)
    x = torch.tensor([[0.1], [0.45], [0.55], [0.9], [0.42], [0.3]])
    y = torch.tensor([0, 1, 1, 1, 0, 1])
    res = deepsec_defence_metrics(orig, dfd, (x, y))
    # orig preds 0 0 1 1 0 0 ; defended preds 0 1 1 1 1 0
    assert res.original_correct.tolist() == [True, False, True, True, True, False]
    assert res.defended_correct.tolist() == [True, True, True, True, False, False]
    assert res.crr == pytest.approx(1 / 6)
    assert res.csr == pytest.approx(1 / 6)
    assert res.cav == pytest.approx(res.crr - res.csr)
    both = [0, 2, 3]
    p = torch.softmax(orig(x).double(), 1)
    q = torch.softmax(dfd(x).double(), 1)
    ccv = float((p[both, y[both]] - q[both, y[both]]).abs().mean())
    assert res.ccv == pytest.approx(ccv, rel=1e-9)
    cos = np.mean([jensenshannon(p[i].numpy(), q[i].numpy()) ** 2 for i in both])
    assert res.cos == pytest.approx(cos, rel=1e-9)
    same = deepsec_defence_metrics(orig, orig, (x, y))
    assert same.cos == 0.0 and same.ccv == 0.0 and same.cav == 0.0
    with pytest.raises(ValueError, match="same number of classes"):
        deepsec_defence_metrics(orig, nn.Sequential(nn.Flatten(), nn.Linear(1, 3)), (x, y))


def test_metrics_deepsec_cav_equals_crr_minus_csr_random_models() -> None:
    g = torch.Generator().manual_seed(3)
    a = nn.Sequential(nn.Flatten(), nn.Linear(16, 5))
    b = nn.Sequential(nn.Flatten(), nn.Linear(16, 5))
    x = torch.rand(50, 1, 4, 4, generator=g)
    y = torch.randint(0, 5, (50,), generator=g)
    res = deepsec_defence_metrics(a, b, (x, y), batch_size=16)
    assert res.cav == pytest.approx(res.crr - res.csr, abs=1e-12)
    assert 0 <= res.cos <= math.log(2) or math.isnan(res.cos)
