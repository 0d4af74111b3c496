"""Prototype distances and the distance-to-similarity functions of ProtoPNet.

Source: cfchen-duke/ProtoPNet ``model.py`` (``_l2_convolution``, ``distance_2_similarity``);
Chen et al., "This Looks Like That", NeurIPS 2019, Eq. (1) and Sec. 2.1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["ACTIVATIONS", "distance_to_similarity", "linear_similarity", "log_similarity",
           "squared_l2_distances"]

ACTIVATIONS = ("log", "linear")
"""Names of the distance-to-similarity functions (the original's
``prototype_activation_function``)."""


def squared_l2_distances(latent: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Squared L2 distance between every latent patch and every prototype.

    Args:
        latent: (B, D, h, w) latent feature map.
        prototypes: (P, D, kh, kw) prototype vectors (ProtoPNet uses kh = kw = 1).

    Returns:
        (B, P, h - kh + 1, w - kw + 1) distances, ``||z||^2 - 2 z.p + ||p||^2`` computed with
        convolutions and clamped at 0 by a ReLU (the expansion can round slightly below 0), as
        the original's ``_l2_convolution``.
    """
    if latent.ndim != 4 or prototypes.ndim != 4 or latent.shape[1] != prototypes.shape[1]:
        raise ValueError(f"latent (B, D, h, w) {tuple(latent.shape)} and prototypes "
                         f"(P, D, kh, kw) {tuple(prototypes.shape)} do not match")
    patch_norms = F.conv2d(latent ** 2, torch.ones_like(prototypes[:1]))  # (B, 1, h', w')
    prototype_norms = (prototypes ** 2).sum(dim=(1, 2, 3)).view(-1, 1, 1)  # (P, 1, 1)
    products = F.conv2d(latent, prototypes)  # (B, P, h', w')
    return F.relu(patch_norms + (-2 * products + prototype_norms))


def log_similarity(distances: torch.Tensor, epsilon: float = 1e-4) -> torch.Tensor:
    """``log((d + 1) / (d + epsilon))``: large for small distances, 0 as d -> infinity."""
    return torch.log((distances + 1) / (distances + epsilon))


def linear_similarity(distances: torch.Tensor) -> torch.Tensor:
    """``-d`` (the original's ``'linear'`` activation)."""
    return -distances


def distance_to_similarity(distances: torch.Tensor, activation: str,
                           epsilon: float = 1e-4) -> torch.Tensor:
    """Apply the similarity named ``activation`` (one of :data:`ACTIVATIONS`)."""
    if activation == "log":
        return log_similarity(distances, epsilon)
    if activation == "linear":
        return linear_similarity(distances)
    raise ValueError(f"unknown activation {activation!r}; choose one of {ACTIVATIONS}")
