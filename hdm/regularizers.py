"""Mask regularisers, each a weighted penalty per sample on one mask grid.

Every regulariser is called as ``reg(parameters, masks)`` with the raw parameters ``w``
and the constrained mask values ``m`` of one grid, both ``(B, h, w)``, and returns the
weighted penalty ``(B,)``. Penalties are means over the grid, so their weights do not
depend on the grid size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


class MaskArea:
    """``weight * mean(m)``: the L1 norm of the mask per cell, i.e. "small mask values"."""

    def __init__(self, weight: float) -> None:
        self.weight = weight

    def __call__(self, parameters: Tensor, masks: Tensor) -> Tensor:
        return self.weight * masks.flatten(1).mean(dim=1)


class TotalVariation:
    """``weight * mean(|dm/dx|^beta) + mean(|dm/dy|^beta)`` on the mask grid.

    Fong & Vedaldi (ICCV 2017, Eq. 4) use beta = 3; beta = 1 is the anisotropic TV norm.
    """

    def __init__(self, weight: float, beta: float = 1.0) -> None:
        self.weight = weight
        self.beta = beta

    def __call__(self, parameters: Tensor, masks: Tensor) -> Tensor:
        penalty = masks.new_zeros(masks.shape[0])
        if masks.shape[1] > 1:
            penalty = penalty + (masks[:, 1:] - masks[:, :-1]).abs().pow(self.beta).flatten(1).mean(
                dim=1
            )
        if masks.shape[2] > 1:
            penalty = penalty + (masks[:, :, 1:] - masks[:, :, :-1]).abs().pow(self.beta).flatten(
                1
            ).mean(dim=1)
        return self.weight * penalty


class LaplacianSmoothness:
    """``weight * mean((L * x)^2)`` with a discrete Laplacian ``L`` at every cell of the grid.

    NeuroMask's official code (nesl/neuromask, ``smoothing_loss``) applies it to the
    parameters ``w`` with the 3x3 kernel (8 centre, -1 around) for CIFAR and the 5x5
    kernel (24 centre, -1 around) otherwise, as a 'VALID' convolution: the cells within
    ``kernel_size // 2`` of the border are never a kernel centre, so their strong centre
    term never pulls them towards their neighbours and they keep values near their random
    start wherever the prediction ignores them. Here the grid is first padded by
    replicating its border (``F.pad(mode="replicate")``), so the response has the grid's
    size and every cell, border included, is penalised; a constant grid still costs
    nothing. On a model that reads only the centre 16x16 pixels of a 32x32 image,
    NeuroMask's map with its defaults keeps a mean of 0.18 on the image's outer 2-pixel
    frame with the 'VALID' convolution and 0.0005 with the padded one
    (``tests/hdm/test_hdm_localization.py``).

    Args:
        weight: penalty weight.
        kernel_size: 3 or 5.
        on: ``"parameters"`` (as NeuroMask) or ``"masks"``.
    """

    def __init__(self, weight: float, kernel_size: int = 5, on: str = "parameters") -> None:
        if kernel_size not in (3, 5):
            raise ValueError(f"kernel_size must be 3 or 5, got {kernel_size}")
        if on not in ("parameters", "masks"):
            raise ValueError(f"on must be 'parameters' or 'masks', got {on!r}")
        self.weight = weight
        self.kernel_size = kernel_size
        self.on = on

    def __call__(self, parameters: Tensor, masks: Tensor) -> Tensor:
        x = parameters if self.on == "parameters" else masks
        k = self.kernel_size
        kernel = -torch.ones(1, 1, k, k, dtype=x.dtype, device=x.device)
        kernel[0, 0, k // 2, k // 2] = k * k - 1
        padded = F.pad(x[:, None], (k // 2,) * 4, mode="replicate")
        response = F.conv2d(padded, kernel)
        return self.weight * response.pow(2).flatten(1).mean(dim=1)


class ParameterSparsity:
    """``weight * mean(|w + offset|)``: NeuroMask's sparsity term on the parameters.

    With parameters initialised in [-offset, offset] and ``m = sigmoid(w / T)``, it pulls
    ``w`` towards ``-offset`` (mask off) everywhere the prediction does not need it.
    """

    def __init__(self, weight: float, offset: float = 10.0) -> None:
        self.weight = weight
        self.offset = offset

    def __call__(self, parameters: Tensor, masks: Tensor) -> Tensor:
        return self.weight * (parameters + self.offset).abs().flatten(1).mean(dim=1)


Regularizer = MaskArea | TotalVariation | LaplacianSmoothness | ParameterSparsity
