"""Shallow-deep feature alignment: keep the latent map's spatial structure close to that of an
early trunk layer, so that a prototype's place in the latent map stays a place in the image.

Source: Huang et al., "Evaluation and Improvement of Interpretability for Self-Explainable
Part-Prototype Networks", ICCV 2023, Sec. 4 (the SDFA module and its alignment loss); facts
checked against hqhQAQ/EvalProtoPNet ``model.py`` (``get_SDFA_loss``) and ``main.py``
(``--consis_coe 0.3``, ``--consis_thresh 0.1``):

- the shallow map is the output of ResNet's ``layer1`` (8 times finer than ``layer4``),
  folded into the deep map's resolution (each block of 8 x 8 positions becomes channels) and
  detached, so only the deep layers move;
- for each image and each prototype of the image's class, the cosine similarity between the
  deep feature at the prototype's best position and the deep feature at every position is
  compared with the same in the shallow map; differences beyond a margin (0.1) are
  penalised on average (weight 0.3).

Our choices where the original is tied to its backbones: the shallow layer is found by a rule
(:func:`shallow_layer_index`) instead of a per-architecture index (it picks ``layer1`` for
ResNets, as the original); when the shallow side is not a multiple of the deep side, the
shallow map is first average-pooled to the nearest multiple.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hdm.hooks import evaluation_mode

__all__ = ["alignment_loss", "fold_to", "shallow_layer_index", "trunk_maps"]


def shallow_layer_index(trunk: nn.Module, image_size: tuple[int, int],
                        latent_size: tuple[int, int], ratio: int = 8) -> int | None:
    """Index of the trunk's top-level child whose output is the alignment's shallow map.

    The deepest child whose output side is still at least ``ratio`` times the latent side
    (the original's ResNet ``layer1``: 56 against 7 at 224 px), or, when the trunk never
    gets that fine, the deepest child at the finest side it has. ``None`` when the trunk is
    not an ``nn.Sequential`` (no children to stop after).
    """
    if not isinstance(trunk, nn.Sequential) or len(trunk) == 0:
        return None
    parameter = next(trunk.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    sides = []
    with evaluation_mode(trunk):
        x = torch.zeros(1, 3, *image_size, device=device)
        for child in trunk:
            x = child(x)
            sides.append(x.shape[-2])
    target = min(ratio * latent_size[0], max(sides))
    return max(i for i, side in enumerate(sides) if side >= target)


def trunk_maps(trunk: nn.Sequential, images: torch.Tensor,
               shallow_index: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The trunk's output and the output of its child ``shallow_index`` (``None`` when the
    index is ``None`` or beyond the trunk, as after a trunk was swapped for a shorter one), in
    one pass.

    The trunk runs as a whole (so hooks on it fire, e.g. Grad-CAM's on ``features``); the
    child's output is caught by a hook that lives for this call only.
    """
    if shallow_index is None or shallow_index >= len(trunk):
        return trunk(images), None
    caught: list[torch.Tensor] = []
    handle = trunk[shallow_index].register_forward_hook(
        lambda _module, _inputs, output: caught.append(output))
    try:
        output = trunk(images)
    finally:
        handle.remove()
    return output, caught[-1]


def fold_to(shallow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, c, H, W) -> (B, c * f * f, h, w) with ``f = max(1, H // h)``: each f x f block of
    positions becomes channels (after average-pooling to (h f, w f) when H, W are not
    multiples of h, w)."""
    h, w = size
    factor = max(1, shallow.shape[-2] // h)
    if shallow.shape[-2:] != (h * factor, w * factor):
        shallow = F.adaptive_avg_pool2d(shallow, (h * factor, w * factor))
    return F.pixel_unshuffle(shallow, factor) if factor > 1 else shallow


def alignment_loss(shallow: torch.Tensor, deep: torch.Tensor, similarity_maps: torch.Tensor,
                   labels: torch.Tensor, prototype_classes: torch.Tensor,
                   margin: float = 0.1) -> torch.Tensor:
    """Mean over (image, own-class prototype, position) of
    ``relu(|cos_deep(peak, q) - cos_shallow(peak, q)| - margin)``.

    Args:
        shallow: (B, c, H, W) the shallow map (detached here).
        deep: (B, C, h, w) the trunk's output.
        similarity_maps: (B, P, h, w); a prototype's peak is its argmax.
        labels: (B,) class of each image.
        prototype_classes: (P,) class of each prototype.
        margin: differences up to this are free (the original's ``consis_thresh``).
    """
    size = tuple(deep.shape[-2:])
    shallow_rows = F.normalize(fold_to(shallow.detach(), size).flatten(2), dim=1)  # (B, c', N)
    deep_rows = F.normalize(deep.flatten(2), dim=1)  # (B, C, N)
    peaks = similarity_maps.flatten(2).argmax(dim=2)  # (B, P)
    own = (prototype_classes.unsqueeze(0) == labels.unsqueeze(1)).to(deep.dtype)  # (B, P)

    def peak_similarities(rows: torch.Tensor) -> torch.Tensor:
        at_peaks = rows.gather(2, peaks.unsqueeze(1).expand(-1, rows.shape[1], -1))  # (B, c, P)
        return torch.einsum("bcp,bcn->bpn", at_peaks, rows)  # (B, P, N)

    gap = (peak_similarities(deep_rows) - peak_similarities(shallow_rows)).abs()
    penalty = F.relu(gap - margin).mean(dim=2)  # (B, P)
    return (penalty * own).sum() / own.sum().clamp(min=1)
