"""The score of an (image, prototype) pair (:class:`prototypes.localization.scores.PairScores`,
here for the metrics' imports), and the colour that removed pixels take."""

from __future__ import annotations

from torch import Tensor, nn

from hdm.perturbation import gaussian_blur
from prototypes.localization.scores import SCORES, PairScores

__all__ = ["FILLS", "SCORES", "PairScores", "fill_values"]

FILLS = ("dataset_mean", "image_mean", "blur")


def fill_values(model: nn.Module, images: Tensor, fill: str) -> Tensor:
    """What removed pixels become: (B, C) the model's normalisation mean (``dataset_mean``) or
    each image's mean colour (``image_mean``), or (B, C, H, W) the image blurred with a
    Gaussian of sigma = H / 8 px (``blur``; Fong & Vedaldi's sigma 10 at 224 px scaled to 28
    at 224 px so that a removed part leaves no recognisable shape at our small sizes)."""
    if fill == "image_mean":
        return images.mean(dim=(2, 3))
    if fill == "blur":
        return gaussian_blur(images, images.shape[-2] / 8)
    return model.mean.to(images).expand(images.shape[0], -1)
