"""Perturbation by masking: the masked image is a blend of the image and a baseline.

``masked = mask * image + (1 - mask) * baseline`` (Fong & Vedaldi, "Interpretable
explanations of black boxes by meaningful perturbation", ICCV 2017, Eq. 3), where
``mask = 1`` keeps a pixel and ``mask = 0`` replaces it by the baseline. Images are in
[0, 1] in this toolkit (models normalise inside their forward), so the baselines below
mean the same thing for every model.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

BASELINES = ("zero", "mean", "blur")


def gaussian_kernel(sigma: float, kernel_size: int, *, device: torch.device | None = None,
                    dtype: torch.dtype = torch.float32) -> Tensor:
    """The 1-D Gaussian of standard deviation ``sigma`` sampled at the ``kernel_size`` (odd)
    integer offsets around 0, renormalised to sum to 1: ``(kernel_size,)``."""
    if kernel_size % 2 != 1:
        raise ValueError(f"kernel_size must be odd, got {kernel_size}")
    offsets = torch.arange(kernel_size, device=device, dtype=dtype) - kernel_size // 2
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def gaussian_blur(images: Tensor, sigma: float, kernel_size: int | None = None) -> Tensor:
    """Separable Gaussian blur with reflect padding, per channel.

    Args:
        images: ``(B, C, H, W)``.
        sigma: standard deviation in pixels.
        kernel_size: odd kernel width; default ``2 * ceil(3 sigma) + 1``. The truncated
            kernel is renormalised to sum to 1.
    """
    if sigma <= 0:
        return images
    if kernel_size is None:
        kernel_size = 2 * math.ceil(3 * sigma) + 1
    kernel = gaussian_kernel(sigma, kernel_size, device=images.device, dtype=images.dtype)
    channels = images.shape[1]
    pad = kernel_size // 2
    horizontal = kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    vertical = kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    mode = "reflect" if pad < min(images.shape[-2:]) else "replicate"
    out = F.conv2d(F.pad(images, (pad, pad, 0, 0), mode=mode), horizontal, groups=channels)
    return F.conv2d(F.pad(out, (0, 0, pad, pad), mode=mode), vertical, groups=channels)


def make_baseline(images: Tensor, kind: str = "zero", blur_sigma: float = 10.0) -> Tensor:
    """The image that masked-out pixels are replaced by.

    Args:
        images: ``(B, C, H, W)`` in [0, 1].
        kind: ``"zero"`` (black), ``"mean"`` (each image's per-channel mean colour) or
            ``"blur"`` (the image blurred with a Gaussian of ``blur_sigma`` pixels, as Fong &
            Vedaldi 2017 use sigma 10 at 224 px).
    Returns:
        ``(B, C, H, W)`` baseline.
    """
    if kind == "zero":
        return torch.zeros_like(images)
    if kind == "mean":
        return images.mean(dim=(2, 3), keepdim=True).expand_as(images)
    if kind == "blur":
        return gaussian_blur(images, blur_sigma)
    raise ValueError(f"baseline must be one of {BASELINES}, got {kind!r}")


def blend(images: Tensor, baseline: Tensor, masks: Tensor) -> Tensor:
    """Masked images ``baseline + masks * (images - baseline)``.

    Args:
        images, baseline: ``(B, C, H, W)``.
        masks: ``(B, H, W)`` or stacked ``(S, B, H, W)`` in [0, 1].
    Returns:
        ``(B, C, H, W)``, or ``(S * B, C, H, W)`` ordered scale-major for stacked masks.
    """
    return blend_difference(baseline, images - baseline, masks)


def blend_difference(baseline: Tensor, difference: Tensor, masks: Tensor) -> Tensor:
    """:func:`blend` given ``difference = images - baseline``, computed once by a caller that
    blends the same images many times. (``torch.addcmul`` would fuse the two operations but
    rounds differently, which moved HDM's normalised maps by up to 0.03 after a few steps; a
    compiled forward fuses them anyway.)"""
    if masks.dim() == 3:
        return baseline + masks[:, None] * difference
    return (baseline + masks[:, :, None] * difference).flatten(0, 1)
