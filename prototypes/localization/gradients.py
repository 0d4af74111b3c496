"""SmoothGrad of a prototype's score with respect to the input image.

Smilkov, Thorat, Kim, Viégas & Wattenberg, "SmoothGrad: removing noise by adding noise",
arXiv:1706.03825 (2017), Eq. 3: the sensitivity map is averaged over ``n`` noisy copies,

    M(x) = 1/n * sum_i g(x + e_i),   e_i ~ N(0, sigma^2),   g = d score / d x,

with ``sigma`` a fraction (the *noise level*) of the input's range ``max(x) - min(x)``. The
paper finds 10-20 % noise and n around 50 work well; its official code (PAIR-code/saliency,
``saliency/core/base.py``, ``GetSmoothedMask``) defaults to ``stdev_spread=0.15``,
``nsamples=25`` and ``magnitude=True``, which averages the *squared* gradients. Those are our
defaults. The colour channels are then reduced to one map by the maximum, as for gradient
saliency (Simonyan, Vedaldi & Zisserman, arXiv:1312.6034, 2014, Sec. 3.1, take the maximum
magnitude over colour channels); the official code's grayscale visualisation sums them
(``channels="sum"``).

The score is the prototype's pooled similarity ``out.similarities[b, prototype_ids[b]]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from hdm.hooks import evaluation_mode, explaining
from prototypes.localization.result import Localization, localization_from_maps
from prototypes.localization.scores import prototype_id_tensor, prototype_scores
from prototypes.model import ProtoPNet

__all__ = ["CHANNEL_REDUCTIONS", "MAGNITUDES", "smoothgrad_localization"]

MAGNITUDES = ("squared", "absolute", "signed")
"""How each noisy gradient enters the mean: ``g^2`` (the official code's ``magnitude=True``),
``|g|``, or ``g`` itself with the absolute value taken after averaging (the paper's Eq. 3
shown as an absolute-value map; the official code's ``magnitude=False``)."""

CHANNEL_REDUCTIONS = ("max", "sum")


def smoothgrad_localization(model: ProtoPNet, images: torch.Tensor,
                            prototype_ids: torch.Tensor | Sequence[int], *,
                            samples: int = 25, noise: float = 0.15,
                            magnitude: str = "squared", channels: str = "max",
                            seed: int = 0, max_batch: int = 64, percentile: float = 95.0,
                            relative_threshold: float = 0.0,
                            progress: bool = False) -> Localization:
    """SmoothGrad map (see the module docstring) of prototype ``prototype_ids[b]`` in
    ``images[b]``, for all pairs and noisy copies in batched forward/backward passes.

    Args:
        model: the ProtoPNet (run in eval mode with frozen parameters; its flags are restored
            afterwards and no gradient reaches its parameters).
        images: (B, 3, H, W) in [0, 1].
        prototype_ids: (B,) one prototype per image.
        samples: noisy copies per pair (``n``).
        noise: noise standard deviation as a fraction of each image's ``max - min``.
        magnitude: one of :data:`MAGNITUDES`.
        channels: ``"max"`` or ``"sum"`` of the per-channel map over colour channels.
        seed: seeds the noise. Copy ``i`` of every pair uses the same standard-normal field
            (scaled by its own image's range), so a pair's map does not depend on the rest of
            the batch; the noise is drawn on the images' device, so it is reproducible on the
            same kind of device.
        max_batch: most images per forward/backward pass (``samples * B`` copies are split
            into chunks of this size; the maps do not depend on it). Memory grows with it:
            with 256, a benchmark of EfficientNet-Lite0 at 224 px reached 21.6 GB and was
            killed on a 24 GB machine.
        percentile, relative_threshold: the box rule
            (:func:`prototypes.localization.result.high_activation_box`).
        progress: tqdm bar over the chunks.

    Returns:
        ``maps`` (B, H, W) min-max normalised; ``boxes`` (B, 4) int64.
    """
    if samples < 1:
        raise ValueError(f"smoothgrad: samples must be >= 1, got {samples}")
    if noise < 0:
        raise ValueError(f"smoothgrad: noise must be >= 0, got {noise}")
    if magnitude not in MAGNITUDES:
        raise ValueError(f"smoothgrad: magnitude must be one of {MAGNITUDES}, got {magnitude!r}")
    if channels not in CHANNEL_REDUCTIONS:
        raise ValueError(f"smoothgrad: channels must be one of {CHANNEL_REDUCTIONS}, "
                         f"got {channels!r}")
    if max_batch < 1:
        raise ValueError(f"smoothgrad: max_batch must be >= 1, got {max_batch}")
    ids = prototype_id_tensor(model, images, prototype_ids)
    images = images.detach()
    batch = images.shape[0]
    generator = torch.Generator(device=images.device).manual_seed(seed)
    standard = torch.randn((samples, *images.shape[1:]), generator=generator,
                           device=images.device, dtype=images.dtype)
    sigma = noise * (images.amax(dim=(1, 2, 3)) - images.amin(dim=(1, 2, 3)))  # (B,)
    total = torch.zeros_like(images)
    copies = samples * batch  # copy r is pair r % B with noise field r // B
    starts = range(0, copies, max_batch)
    with evaluation_mode(model), explaining(model), torch.enable_grad():
        for start in tqdm(starts, desc="smoothgrad", disable=not progress, leave=False):
            rows = torch.arange(start, min(start + max_batch, copies), device=images.device)
            pair, field = rows % batch, rows // batch
            noisy = (images[pair] + sigma[pair, None, None, None] * standard[field])
            noisy.requires_grad_(True)
            score = prototype_scores(model(noisy).similarities, ids[pair]).sum()
            (gradient,) = torch.autograd.grad(score, noisy)
            if magnitude == "squared":
                gradient = gradient.square()
            elif magnitude == "absolute":
                gradient = gradient.abs()
            total.index_add_(0, pair, gradient)
    mean = total / samples
    if magnitude == "signed":
        mean = mean.abs()
    saliency = mean.amax(dim=1) if channels == "max" else mean.sum(dim=1)
    return localization_from_maps(saliency, percentile, relative_threshold)
