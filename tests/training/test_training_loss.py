import math

import pytest
import torch
import torch.nn.functional as F

from advrobust.training import mixed_batch_loss


def _closed_form(lc, yc, la, ya, lam):
    m_minus_k, k = lc.shape[0], la.shape[0]
    s_clean = sum(float(F.cross_entropy(lc[i : i + 1], yc[i : i + 1])) for i in range(m_minus_k))
    s_adv = sum(float(F.cross_entropy(la[i : i + 1], ya[i : i + 1])) for i in range(k))
    return (s_clean + lam * s_adv) / (m_minus_k + lam * k)


@pytest.mark.parametrize("k", [0, 1, 16, 31, 32])
@pytest.mark.parametrize("lam", [0.3, 1.0, 2.5])
def test_training_loss_closed_form(k, lam):
    g = torch.Generator().manual_seed(k)
    m = 32
    lc = torch.randn(m - k, 10, generator=g, dtype=torch.float64)
    la = torch.randn(k, 10, generator=g, dtype=torch.float64)
    yc = torch.randint(0, 10, (m - k,), generator=g)
    ya = torch.randint(0, 10, (k,), generator=g)
    got = float(mixed_batch_loss(lc, yc, la, ya, lam))
    assert got == pytest.approx(_closed_form(lc, yc, la, ya, lam), rel=1e-12)


def test_training_loss_k0_is_mean_clean_loss_and_km_is_mean_adv_loss():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 5, generator=g)
    y = torch.randint(0, 5, (8,), generator=g)
    empty_l, empty_y = logits[:0], y[:0]
    ce = F.cross_entropy(logits, y)
    assert torch.allclose(mixed_batch_loss(logits, y, empty_l, empty_y, 0.3), ce)
    # k = m: 1/(lam*m) * lam * sum = mean, for any lam > 0
    for lam in (0.3, 1.0, 7.0):
        assert torch.allclose(mixed_batch_loss(empty_l, empty_y, logits, y, lam), ce)


def test_training_loss_gradient_weights():
    # d loss / d logit of a clean example is 1/D, of an adversarial one lam/D.
    lc = torch.zeros(3, 4, requires_grad=True)
    la = torch.zeros(2, 4, requires_grad=True)
    y3, y2 = torch.zeros(3, dtype=torch.long), torch.zeros(2, dtype=torch.long)
    lam = 0.3
    mixed_batch_loss(lc, y3, la, y2, lam).backward()
    d = 3 + lam * 2
    # CE grad wrt logits at uniform logits: softmax - onehot
    base = torch.full((4,), 0.25)
    base[0] -= 1
    assert torch.allclose(lc.grad[0], base / d)
    assert torch.allclose(la.grad[0], lam * base / d)


def test_training_loss_zero_lambda_all_adversarial_is_error():
    la, y = torch.zeros(4, 3), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="normaliser"):
        mixed_batch_loss(la[:0], y[:0], la, y, 0.0)
    with pytest.raises(ValueError, match="normaliser"):
        mixed_batch_loss(la[:0], y[:0], la[:0], y[:0], 0.3)
    # lambda = 0 with clean examples: the adversarial part is ignored
    got = mixed_batch_loss(la, y, torch.randn(4, 3), y, 0.0)
    assert float(got) == pytest.approx(math.log(3))


def test_training_loss_bad_input():
    lc, y = torch.zeros(4, 3), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="adv_weight"):
        mixed_batch_loss(lc, y, lc, y, -0.1)
    with pytest.raises(ValueError, match="y_adv"):
        mixed_batch_loss(lc, y, lc, y[:3], 0.3)
    with pytest.raises(TypeError, match="y_clean"):
        mixed_batch_loss(lc, y.float(), lc, y, 0.3)
    with pytest.raises(ValueError, match="classes"):
        mixed_batch_loss(lc, y, torch.zeros(4, 5), y, 0.3)
    with pytest.raises(ValueError, match="logits_clean"):
        mixed_batch_loss(torch.zeros(4), y, lc, y, 0.3)


def test_training_loss_custom_loss_fn():
    lc, y = torch.randn(4, 3), torch.zeros(4, dtype=torch.long)
    ones = mixed_batch_loss(lc, y, lc[:2], y[:2], 0.5, loss_fn=lambda lo, t: torch.ones(len(t)))
    assert float(ones) == pytest.approx(1.0)
