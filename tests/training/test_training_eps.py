import math

import pytest
import torch
from scipy import special, stats

from advrobust.training import (
    FixedEps,
    TruncatedNormalEps,
    UniformEps,
    eps_sampler_from_spec,
)


def test_training_eps_truncated_normal_range_and_mean(generator):
    s = TruncatedNormalEps()
    assert s.std == pytest.approx(8 / 255) and s.max == pytest.approx(16 / 255)
    eps = s(100_000, generator=generator)
    assert eps.shape == (100_000,) and eps.dtype == torch.float32
    assert float(eps.min()) >= 0.0 and float(eps.max()) <= 16 / 255 + 1e-7
    # E|X| for |N(0, s)| truncated at 2s = s*sqrt(2/pi)*(1-e^-2)/erf(sqrt 2) = 0.72279 s
    expected = s.std * math.sqrt(2 / math.pi) * (1 - math.exp(-2)) / math.erf(math.sqrt(2))
    assert s.mean == pytest.approx(expected)
    assert expected / s.std == pytest.approx(0.72279, abs=1e-4)
    se = float(eps.std()) / math.sqrt(eps.numel())
    assert abs(float(eps.mean()) - expected) < 5 * se

    # Kolmogorov-Smirnov against the exact CDF F(e) = erf(e/(s sqrt2)) / erf(2/sqrt2)
    def cdf(e):
        return special.erf(e / (s.std * math.sqrt(2))) / math.erf(math.sqrt(2))

    assert stats.kstest(eps[:20000].double().numpy(), cdf).pvalue > 1e-3


def test_training_eps_truncation_at_custom_max(generator):
    eps = TruncatedNormalEps(std=0.1, max=0.05)(10_000, generator=generator)
    assert float(eps.max()) <= 0.05 + 1e-7
    # nearly flat density on [0, 0.5 std]: mean close to max/2
    assert float(eps.mean()) == pytest.approx(0.05 / 2, rel=0.05)


def test_training_eps_uniform_and_fixed(generator):
    u = UniformEps(0.01, 0.03)(50_000, generator=generator)
    assert float(u.min()) >= 0.01 and float(u.max()) <= 0.03
    assert float(u.mean()) == pytest.approx(0.02, abs=2e-4)
    f = FixedEps(0.1)(5, dtype=torch.float64)
    assert f.dtype == torch.float64 and torch.equal(f, torch.full((5,), 0.1, dtype=torch.float64))


@pytest.mark.parametrize("sampler", [TruncatedNormalEps(), UniformEps(0.0, 0.1), FixedEps(0.2)])
def test_training_eps_determinism_and_spec_round_trip(sampler):
    a = sampler(64, generator=torch.Generator().manual_seed(3))
    b = sampler(64, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    clone = eps_sampler_from_spec(sampler.spec())
    assert clone == sampler and type(clone) is type(sampler)
    assert torch.equal(clone(64, generator=torch.Generator().manual_seed(3)), a)
    assert sampler(0).shape == (0,)
    assert repr(sampler).startswith(type(sampler).__name__)


def test_training_eps_device_and_bad_input():
    s = TruncatedNormalEps()
    assert s(3, device="cpu").device.type == "cpu"
    with pytest.raises(ValueError, match="std"):
        TruncatedNormalEps(std=-1.0)
    with pytest.raises(ValueError, match="hi"):
        UniformEps(0.2, 0.1)
    with pytest.raises(ValueError, match="eps"):
        FixedEps(-0.1)
    with pytest.raises(ValueError, match="batch_size"):
        s(-1)
    with pytest.raises(TypeError, match="dtype"):
        s(3, dtype=torch.long)
    with pytest.raises(ValueError, match="truncated_normal"):
        eps_sampler_from_spec({"name": "gauss"})
    with pytest.raises(TypeError, match="parameters"):
        eps_sampler_from_spec({"name": "fixed", "epsilon": 0.1})
