"""Model-randomisation sanity check for prototype maps (Adebayo et al., NeurIPS 2018).

Source: Adebayo, Gilmer, Muelly, Goodfellow, Hardt, Kim, "Sanity Checks for Saliency Maps",
NeurIPS 2018 (README of adebayoj/sanity_checks_saliency): a map that explains the model must
change when the model's learned weights are destroyed; the original and the randomised maps
are compared with Spearman rank correlation and SSIM (low similarity passes the check).

Choice made here: the whole model is randomised *at once* (the last step of the original's
cascade from the top layer down), because a prototype's similarity map depends on every
layer below the prototypes and not at all on the last layer, so a partial cascade mostly
tests layers the map does not use; one randomised model also costs a single extra
localization per pair.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hdm.perturbation import gaussian_kernel

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
"""Gaussian window and stabilising constants of Wang et al., IEEE TIP 2004."""


def randomized_copy(model: nn.Module, *, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with every learned parameter re-drawn at random.

    Modules with ``reset_parameters`` (convolutions, linear layers, batch norms, including
    their running statistics) are re-initialised with PyTorch's defaults; any other parameter
    (e.g. prototype vectors) has its entries randomly permuted, which keeps its value range
    and destroys what was learned. Buffers that are not learned (normalisation mean and std,
    class identity) are kept. Drawn on the CPU from ``seed`` (the global RNG is untouched),
    then moved to the model's device.
    """
    device = next(model.parameters()).device
    randomized = copy.deepcopy(model).cpu()
    generator = torch.Generator().manual_seed(seed)
    reset: set[int] = set()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in randomized.modules():
            if callable(getattr(module, "reset_parameters", None)):
                module.reset_parameters()
                reset.update(id(p) for p in module.parameters(recurse=False))
    with torch.no_grad():
        for parameter in randomized.parameters():
            if id(parameter) not in reset:
                order = torch.randperm(parameter.numel(), generator=generator)
                parameter.copy_(parameter.flatten()[order].view_as(parameter))
    return randomized.to(device)


def _average_ranks(values: Tensor) -> Tensor:
    """Ranks (0-based) of each row of (B, N), ties sharing their average rank."""
    batch, count = values.shape
    order = values.argsort(dim=1, stable=True)
    ordered = values.gather(1, order)
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    group = starts.long().cumsum(dim=1) - 1
    positions = torch.arange(count, device=values.device, dtype=values.dtype).expand(batch, -1)
    sums = torch.zeros_like(ordered).scatter_add_(1, group, positions)
    sizes = torch.zeros_like(ordered).scatter_add_(1, group, torch.ones_like(ordered))
    average = (sums / sizes.clamp(min=1)).gather(1, group)
    return torch.empty_like(average).scatter_(1, order, average)


def spearman_correlation(first: Tensor, second: Tensor) -> Tensor:
    """Spearman rank correlation between paired maps (B, H, W): float (B,).

    Pearson correlation of the average ranks (ties share a rank, as
    ``scipy.stats.spearmanr``); NaN when a map is constant (the correlation is undefined).
    """
    ranks = [_average_ranks(m.flatten(1).double()) for m in (first, second)]
    centred = [r - r.mean(dim=1, keepdim=True) for r in ranks]
    covariance = (centred[0] * centred[1]).sum(dim=1)
    scale = centred[0].pow(2).sum(dim=1).sqrt() * centred[1].pow(2).sum(dim=1).sqrt()
    return (covariance / scale).to(first.dtype)


def _gaussian_window(device: torch.device, dtype: torch.dtype) -> Tensor:
    kernel = gaussian_kernel(SSIM_SIGMA, SSIM_WINDOW, device=device, dtype=dtype)
    return (kernel[:, None] * kernel[None, :]).view(1, 1, SSIM_WINDOW, SSIM_WINDOW)


def structural_similarity(first: Tensor, second: Tensor, *, data_range: float = 1.0) -> Tensor:
    """Mean SSIM between paired maps (B, H, W) in [0, ``data_range``]: float (B,).

    Wang et al. 2004 with an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03,
    averaged over the positions where the window fits inside the map (as scikit-image's
    ``structural_similarity(..., gaussian_weights=True, use_sample_covariance=False)``).
    """
    if min(first.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"maps must be at least {SSIM_WINDOW}x{SSIM_WINDOW} for SSIM, "
                         f"got {tuple(first.shape[-2:])}")
    window = _gaussian_window(first.device, torch.float64)
    x, y = first.unsqueeze(1).double(), second.unsqueeze(1).double()
    mean_x, mean_y = F.conv2d(x, window), F.conv2d(y, window)
    var_x = F.conv2d(x * x, window) - mean_x.pow(2)
    var_y = F.conv2d(y * y, window) - mean_y.pow(2)
    cov = F.conv2d(x * y, window) - mean_x * mean_y
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    ssim = ((2 * mean_x * mean_y + c1) * (2 * cov + c2)) / (
        (mean_x.pow(2) + mean_y.pow(2) + c1) * (var_x + var_y + c2))
    return ssim.flatten(1).mean(dim=1).to(first.dtype)
