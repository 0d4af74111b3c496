"""The score of an (image, prototype) pair: the prototype's similarity at the latent position
where it peaks on the unperturbed image (Xu-Darme et al. 2023, romain-xu-darme/
prototype_sanity_checks ``protopnet/get_prototype_stats.py`` lines 295-300) or pooled over
positions (``out.similarities``, the prototype's score in the classifier).

Used as the explained score of learned-mask localization and by the localization metrics
(fidelity, occlusion of parts, deletion/insertion), so that they measure the same quantity.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

SIMILARITY_AT = ("peak", "max")
"""``peak``: the similarity at the unperturbed peak position; ``max``: ``out.similarities``."""


class PairScores:
    """The score of each pair's prototype, for images that are copies of the pair's image.

    Built from the unperturbed batch: ``peaks`` (B,) is the flat latent position (in a map
    of ``latent_size`` (h, w)) where each pair's prototype peaks there, and ``reference``
    (B,) its score. Called on a model output of ``R * B`` rows (``R`` copies of the batch,
    copy-major), it returns the ``R * B`` scores, so it also serves as a callable target for
    :mod:`hdm`.
    """

    def __init__(self, model: nn.Module, images: Tensor, prototype_ids: Tensor,
                 similarity_at: str) -> None:
        self.model = model
        self.prototype_ids = prototype_ids
        self.similarity_at = similarity_at
        with torch.no_grad():
            output = model(images)
        rows = torch.arange(images.shape[0], device=images.device)
        self.latent_size = tuple(output.similarity_maps.shape[-2:])
        self.peaks = output.similarity_maps[rows, prototype_ids].flatten(1).argmax(dim=1)
        self.reference = self(output)

    def __call__(self, output: Any) -> Tensor:
        rows = output.similarities.shape[0]
        repeats = rows // self.prototype_ids.shape[0]
        ids = self.prototype_ids.repeat(repeats)
        every = torch.arange(rows, device=ids.device)
        if self.similarity_at == "max":
            return output.similarities[every, ids]
        maps = output.similarity_maps[every, ids].flatten(1)
        return maps.gather(1, self.peaks.repeat(repeats)[:, None]).squeeze(1)

    def relative(self, output: Any) -> Tensor:
        """The scores divided by the unperturbed ``|reference|``: 1 on the pair's own image,
        so curves and areas are comparable across prototypes and models."""
        rows = output.similarities.shape[0]
        reference = self.reference.abs().clamp(min=1e-12).repeat(rows // self.reference.shape[0])
        return self(output) / reference

    def of_images(self, images: Tensor) -> Tensor:
        """Scores of ``R * B`` images (R copies of the batch, copy-major), without grad."""
        with torch.no_grad():
            return self(self.model(images))
