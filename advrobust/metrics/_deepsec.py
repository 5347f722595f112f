"""DeepSec utility metrics (Ling et al. 2019), as used by Marchetti and Ho 2022.

Marchetti and Ho, "Improving deep learning model robustness against adversarial attack by
increasing the network capacity", 2022, tables 3 and 4.

Also the image operations they need, written in torch: SSIM, Gaussian blur, and JPEG
compression through Pillow when a codec is available.
"""

from __future__ import annotations

import io
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advrobust.attacks import lp_norm

from .._validate import check_bounds, check_int, check_positive, describe, model_state_guard
from ..attacks import Attack
from ._loop import (
    Batch,
    as_run,
    bind_attack,
    check_eps_arg,
    check_model,
    evaluate,
    predict,
    predict_checked,
    predict_eval,
    run_attack,
)
from ._results_deepsec import DeepSecAttackResult, DeepSecDefenceResult

__all__ = [
    "deepsec_attack_metrics",
    "deepsec_defence_metrics",
    "gaussian_blur",
    "jpeg_available",
    "jpeg_compress",
    "ssim",
]


def _as_4d(x: Tensor, name: str) -> Tensor:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {describe(x)}")
    if x.dim() == 3:
        return x.unsqueeze(1)
    if x.dim() != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W) or (B, H, W), got {tuple(x.shape)}")
    return x


def _gauss_1d(size: int, sigma: float, like: Tensor) -> Tensor:
    coords = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma * sigma))
    return g / g.sum()


def _sep_conv(x: Tensor, g: Tensor) -> Tensor:
    """Depthwise separable convolution of (B, C, H, W) with the 1-D kernel ``g`` (valid)."""
    c = x.shape[1]
    k = g.numel()
    kh = g.reshape(1, 1, k, 1).expand(c, 1, k, 1)
    kw = g.reshape(1, 1, 1, k).expand(c, 1, 1, k)
    return F.conv2d(F.conv2d(x, kh, groups=c), kw, groups=c)


def ssim(
    x: Tensor,
    y: Tensor,
    *,
    data_range: float = 1.0,
    window_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Tensor:
    r"""Structural similarity (Wang et al. 2004) of two image batches, one value per example.

    $$\mathrm{SSIM}(x, y) = \frac{(2\mu_x\mu_y + C_1)(2\sigma_{xy} + C_2)}
    {(\mu_x^2 + \mu_y^2 + C_1)(\sigma_x^2 + \sigma_y^2 + C_2)}$$

    with local statistics under a Gaussian window (``window_size``, ``sigma``), ``C_1 =
    (k_1 L)^2``, ``C_2 = (k_2 L)^2``, ``L = data_range``, averaged over valid window positions
    and channels. Windows larger than the image shrink to the largest odd size that fits
    (8x8 digits use a 7x7 window).

    Args:
        x: images ``(B, C, H, W)`` or ``(B, H, W)``.
        y: images of the same shape.
        data_range: dynamic range of the pixel values (``hi - lo`` of the bounds).
        window_size: Gaussian window size (odd).
        sigma: Gaussian window standard deviation.
        k1: stabiliser constant of the luminance term.
        k2: stabiliser constant of the contrast term.

    Returns:
        ``(B,)`` SSIM values in ``[-1, 1]``; ``ssim(x, x)`` is 1.

    Raises:
        ValueError: shapes differ or a parameter is out of range.

    Example:
        >>> import torch
        >>> x = torch.rand(2, 1, 8, 8)
        >>> torch.allclose(ssim(x, x), torch.ones(2))
        True
    """
    x4, y4 = _as_4d(x, "x"), _as_4d(y, "y")
    if x4.shape != y4.shape:
        raise ValueError(
            f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    data_range = check_positive(data_range, "data_range")
    check_int(window_size, "window_size", minimum=1)
    sigma = check_positive(sigma, "sigma")
    dtype = torch.float64 if x4.dtype == torch.float64 else torch.float32
    x4, y4 = x4.to(dtype), y4.to(dtype)
    if x4.shape[0] == 0:
        return x4.new_zeros(0)
    win = min(window_size, x4.shape[-1], x4.shape[-2])
    if win % 2 == 0:
        win -= 1
    g = _gauss_1d(win, sigma, x4)
    mu_x, mu_y = _sep_conv(x4, g), _sep_conv(y4, g)
    sxx = _sep_conv(x4 * x4, g) - mu_x * mu_x
    syy = _sep_conv(y4 * y4, g) - mu_y * mu_y
    sxy = _sep_conv(x4 * y4, g) - mu_x * mu_y
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (sxx + syy + c2)
    return (num / den).flatten(1).mean(1).to(x.dtype)


def gaussian_blur(
    x: Tensor,
    sigma: float = 0.5,
    *,
    truncate: float = 4.0,
    bounds: tuple[float, float] | None = None,
) -> Tensor:
    """Gaussian blur of an image batch, channel by channel, with reflected borders.

    The kernel has radius ``int(truncate * sigma + 0.5)`` (as scipy's ``gaussian_filter``);
    borders are reflected (replicated when the image is smaller than the radius).

    Args:
        x: images ``(B, C, H, W)`` or ``(B, H, W)``.
        sigma: standard deviation in pixels (> 0).
        truncate: kernel radius in standard deviations.
        bounds: clip the result to this box when given.

    Returns:
        Blurred images, same shape and dtype as ``x``.
    """
    x4 = _as_4d(x, "x")
    sigma = check_positive(sigma, "sigma")
    truncate = check_positive(truncate, "truncate")
    radius = int(truncate * sigma + 0.5)
    if radius == 0 or x4.shape[0] == 0:
        return x.clone()
    g = _gauss_1d(2 * radius + 1, sigma, x4)
    mode = "reflect" if radius < min(x4.shape[-1], x4.shape[-2]) else "replicate"
    padded = F.pad(x4, (radius, radius, radius, radius), mode=mode)
    out = _sep_conv(padded, g)
    if bounds is not None:
        out = out.clamp(bounds[0], bounds[1])
    return out.reshape(x.shape)


def jpeg_available(x: Tensor) -> str:
    """Why JPEG compression cannot be applied to ``x`` (``""`` when it can)."""
    try:
        from PIL import Image, features
    except ImportError:
        return "Pillow is not installed (pip install pillow)"
    try:
        if not features.check_codec("jpg"):
            return "Pillow was built without a JPEG codec"
    except (ValueError, AttributeError):  # very old Pillow
        pass
    del Image
    if x.dim() not in (3, 4) or (x.dim() == 4 and x.shape[1] not in (1, 3)):
        return f"JPEG needs greyscale or RGB images (B, 1|3, H, W), got shape {tuple(x.shape)}"
    return ""


def _check_quality(quality: object, name: str) -> int:
    """A JPEG quality: an int in 1..95 (Pillow's useful range; above 95 disables parts of it)."""
    q = check_int(quality, name, minimum=1)
    if q > 95:
        raise ValueError(f"{name} must be in 1..95, got {q}")
    return q


def jpeg_compress(
    x: Tensor, quality: int = 90, *, bounds: tuple[float, float] = (0.0, 1.0)
) -> Tensor:
    """JPEG-compress and decode an image batch with Pillow (8-bit, one image at a time).

    Args:
        x: greyscale or RGB images ``(B, 1|3, H, W)`` (or ``(B, H, W)``) inside ``bounds``.
        quality: JPEG quality, 1..95.
        bounds: the pixel box; values are mapped to 0..255 and back.

    Returns:
        The decoded images, same shape, dtype and device as ``x``.

    Raises:
        TypeError, ValueError: ``quality`` not an int in 1..95, bad ``bounds``.
        RuntimeError: no usable JPEG codec or unsupported channel count.
    """
    _check_quality(quality, "quality")
    lo, hi = check_bounds(bounds)
    reason = jpeg_available(x)
    if reason:
        raise RuntimeError(f"JPEG compression unavailable: {reason}")
    from PIL import Image

    x4 = _as_4d(x, "x")
    arr = ((x4.detach().float().cpu() - lo) / (hi - lo) * 255).round().clamp(0, 255).to(torch.uint8)
    out = torch.empty(arr.shape, dtype=torch.uint8)
    for i in range(arr.shape[0]):  # the codec works on one image at a time
        img = arr[i].permute(1, 2, 0).numpy()
        pil = Image.fromarray(np.ascontiguousarray(img[:, :, 0] if img.shape[2] == 1 else img))
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        dec = torch.from_numpy(np.array(Image.open(buf).convert(pil.mode)))
        out[i] = dec.reshape(img.shape).permute(2, 0, 1)
    res = out.to(torch.float32) / 255 * (hi - lo) + lo
    return res.to(device=x.device, dtype=x.dtype).reshape(x.shape)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def deepsec_attack_metrics(
    model: nn.Module,
    data: object,
    attack: Attack,
    *,
    eps: float | Tensor | None = None,
    only_correct: bool = True,
    use_labels: bool = True,
    blur_sigma: float = 0.5,
    jpeg_quality: int = 90,
    batch_size: int = 256,
    progress: bool = False,
    generator: torch.Generator | None = None,
) -> DeepSecAttackResult:
    r"""DeepSec's attack utility metrics (Marchetti and Ho 2022, table 3).

    With ``n`` the successful adversarial examples among the evaluated ones (DeepSec's
    candidates: the clean-correct examples), ``P`` the softmax output and ``F`` the prediction:

    - MR: fraction of evaluated examples whose adversarial version is misclassified;
    - ACAC: mean ``P(x')_{F(x')}``; ACTC: mean ``P(x')_y`` over the ``n``;
    - ALD_p: mean ``||x' - x||_p / ||x||_p`` for p = 0, 2, inf;
    - ASS: mean ``SSIM(x', x)``;
    - NTE: mean ``P(x')_{F(x')} - max_{j != F(x')} P(x')_j``;
    - RGB: fraction of the ``n`` still misclassified after Gaussian blur (``blur_sigma``);
    - RIC: the same after JPEG compression (``jpeg_quality``), "unavailable" without a codec
      or for images that are neither greyscale nor RGB;
    - CC: attack wall time per example (on CUDA the device is synchronised around the attack).

    Args:
        model: the attacked classifier.
        data: ``(x, y)`` tensors or an iterable of ``(x, y)`` batches.
        attack: an :class:`advrobust.attacks.Attack`.
        eps: call-time eps (float or ``(N,)`` tensor); None uses the attack's eps.
        only_correct: evaluate only the clean-correct examples (DeepSec), else all.
        use_labels: attack with the true labels (True) or the model's predictions (False).
        blur_sigma: standard deviation of the blur of RGB, in pixels.
        jpeg_quality: JPEG quality of RIC.
        batch_size: batch size when ``data`` is a pair of tensors.
        progress: show a progress bar.
        generator: random generator passed to the attack.

    Returns:
        :class:`DeepSecAttackResult` (``summary()`` gives the table row).
    """
    eps = check_eps_arg(eps)
    attack = as_run(bind_attack(attack, check_model(model)), eps)
    blur_sigma = check_positive(blur_sigma, "blur_sigma")
    _check_quality(jpeg_quality, "jpeg_quality")
    lo, hi = attack.bounds
    notes: dict[str, str] = {}

    def fn(b: Batch) -> dict[str, Tensor]:
        clean = predict_checked(model, b).argmax(1) == b.y
        _sync(b.x.device)
        t0 = time.perf_counter()
        res = run_attack(attack, b, b.y if use_labels else None, eps, generator)
        _sync(b.x.device)
        seconds = time.perf_counter() - t0
        x_adv = res.x_adv
        with model_state_guard(model):
            probs = predict(model, x_adv).float().softmax(1)
            blur_pred = predict(model, gaussian_blur(x_adv, blur_sigma, bounds=(lo, hi))).argmax(1)
            reason = notes.setdefault("jpeg", jpeg_available(x_adv))
            jpeg_wrong = None
            if not reason:
                jpeg_pred = predict(model, jpeg_compress(x_adv, jpeg_quality, bounds=(lo, hi)))
                jpeg_wrong = jpeg_pred.argmax(1) != b.y
        adv_cls = probs.argmax(1)
        top = probs.gather(1, adv_cls[:, None]).squeeze(1)
        other = probs.scatter(1, adv_cls[:, None], -math.inf).amax(1)
        delta = x_adv - b.x
        out = {
            "evaluated": clean if only_correct else torch.ones_like(clean),
            "success": res.adv_pred != b.y,
            "adv_confidence": top,
            "true_confidence": probs.gather(1, b.y[:, None].long()).squeeze(1),
            "noise_tolerance": top - other,
            "blur_success": blur_pred != b.y,
            "ssim": ssim(x_adv, b.x, data_range=hi - lo).float(),
            "seconds": torch.full((b.x.shape[0],), seconds / b.x.shape[0], dtype=torch.float64),
        }
        norms = {"l0": lp_norm(delta, "l0"), "l2": res.l2, "linf": res.linf}
        for p, dist in norms.items():
            num = dist.float()
            den = lp_norm(b.x, p).float()
            out[p] = torch.where(
                den > 0, num / den.clamp_min(1e-30), torch.full_like(num, math.nan)
            )
        if jpeg_wrong is not None:
            out["jpeg_success"] = jpeg_wrong
        return out

    out = evaluate(
        data,
        fn,
        batch_size=batch_size,
        progress=progress,
        desc="DeepSec attack",
        bounds=attack.bounds,
        eps=eps,
    )
    return DeepSecAttackResult(
        evaluated=out["evaluated"],
        success=out["success"],
        adv_confidence=out["adv_confidence"],
        true_confidence=out["true_confidence"],
        l0=out["l0"],
        l2=out["l2"],
        linf=out["linf"],
        ssim=out["ssim"],
        noise_tolerance=out["noise_tolerance"],
        blur_success=out["blur_success"],
        jpeg_success=out.get("jpeg_success"),
        seconds=out["seconds"],
        jpeg_note=notes.get("jpeg", ""),
        attack=attack.spec(),
    )


def _js_divergence(p: Tensor, q: Tensor) -> Tensor:
    m = (p + q) / 2
    kl_pm = (torch.special.xlogy(p, p) - torch.special.xlogy(p, m)).sum(1)
    kl_qm = (torch.special.xlogy(q, q) - torch.special.xlogy(q, m)).sum(1)
    out: Tensor = (kl_pm + kl_qm) / 2
    return out


def deepsec_defence_metrics(
    original: nn.Module,
    defended: nn.Module,
    data: object,
    *,
    batch_size: int = 256,
    progress: bool = False,
) -> DeepSecDefenceResult:
    r"""DeepSec's defence utility metrics (Marchetti and Ho 2022, table 4) on clean data.

    - CAV: accuracy of ``defended`` minus accuracy of ``original`` (= CRR - CSR);
    - CRR: fraction of examples misclassified by ``original`` and correct with ``defended``;
    - CSR: fraction correct with ``original`` and misclassified by ``defended``;
    - CCV: mean ``|P(x)_y - P^D(x)_y|`` over the examples both classify correctly;
    - COS: mean Jensen-Shannon divergence (natural log, at most ln 2) of the two softmax
      outputs over the examples both classify correctly.

    Args:
        original: the raw model.
        defended: the defence-enhanced model (same number of classes).
        data: ``(x, y)`` tensors or an iterable of ``(x, y)`` batches.
        batch_size: batch size when ``data`` is a pair of tensors.
        progress: show a progress bar.

    Returns:
        :class:`DeepSecDefenceResult`.

    Raises:
        ValueError: the models have different numbers of classes, bad data.
    """
    check_model(original, "original")
    check_model(defended, "defended")

    def fn(b: Batch) -> dict[str, Tensor]:
        lo = predict_checked(original, b, "original")
        ld = predict_eval(defended, b.x, "defended")
        if lo.shape[1] != ld.shape[1]:
            raise ValueError(
                f"original and defended must have the same number of classes, got "
                f"{lo.shape[1]} and {ld.shape[1]}"
            )
        p, q = lo.double().softmax(1), ld.double().softmax(1)
        yy = b.y[:, None].long()
        return {
            "oc": lo.argmax(1) == b.y,
            "dc": ld.argmax(1) == b.y,
            "op": p.gather(1, yy).squeeze(1),
            "dp": q.gather(1, yy).squeeze(1),
            "js": _js_divergence(p, q),
        }

    out = evaluate(
        data,
        fn,
        batch_size=batch_size,
        progress=progress,
        desc="DeepSec defence",
    )
    return DeepSecDefenceResult(out["oc"], out["dc"], out["op"], out["dp"], out["js"])
