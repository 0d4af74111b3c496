"""The ProtoPNet training objective (class-specific version).

Source: Chen et al., NeurIPS 2019, Sec. 2.2; cfchen-duke/ProtoPNet ``train_and_test.py``
(``_train_or_test`` with ``class_specific=True`` and ``use_l1_mask=True``, as ``main.py`` runs
it) and ``settings.py`` (``coefs``). The optional feature-alignment term is Huang et al.,
ICCV 2023 (:mod:`prototypes.feature_alignment`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from prototypes.feature_alignment import alignment_loss
from prototypes.model import ProtoPNet, ProtoPNetOutput

__all__ = ["LossCoefficients", "protopnet_loss"]


@dataclass(frozen=True)
class LossCoefficients:
    """Weights of the loss terms; defaults are the original's ``settings.py`` ``coefs``
    (``crs_ent`` 1, ``clst`` 0.8, ``sep`` -0.08, ``l1`` 1e-4).

    ``alignment`` weighs Huang et al.'s shallow-deep feature alignment (0: off, as the
    original ProtoPNet; their paper trains with 0.3) and ``alignment_margin`` is its free
    margin (their 0.1); see :func:`prototypes.feature_alignment.alignment_loss`."""

    cross_entropy: float = 1.0
    cluster: float = 0.8
    separation: float = -0.08
    l1: float = 1e-4
    alignment: float = 0.0
    alignment_margin: float = 0.1

    def __post_init__(self) -> None:
        for name in ("alignment", "alignment_margin"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


def protopnet_loss(output: ProtoPNetOutput, labels: torch.Tensor, model: ProtoPNet,
                   coefs: LossCoefficients = LossCoefficients()) -> dict[str, torch.Tensor]:
    """All loss terms for one batch, as scalars on the output's device.

    With ``d`` = ``output.min_distances`` (B, P), ``M = D * 1 * 1`` (the original's
    ``max_dist``) and ``own[b, j]`` = 1 when prototype j belongs to class ``labels[b]``:

    - ``cross_entropy``: mean cross-entropy of ``output.logits``;
    - ``cluster``: ``mean_b (M - max_j (M - d[b, j]) * own[b, j])``, i.e. the distance to the
      nearest own-class prototype (exactly that while d <= M; like the original, a batch
      element whose own-class distances all exceed M contributes M);
    - ``separation``: the same over the other classes' prototypes;
    - ``avg_separation``: mean distance to other classes' prototypes (logged by the
      original, not part of ``total``);
    - ``l1``: ``sum |W * (1 - identity^T)|``, the L1 norm of the last-layer weights from
      prototypes to classes other than their own;
    - ``alignment`` (only when ``coefs.alignment`` is not 0): the feature-alignment term;
    - ``total``: ``cross_entropy * ce + cluster * clst + separation * sep + l1 * l1``
      (``+ alignment * alignment``) with the coefficients of ``coefs`` (the separation
      coefficient is negative).

    Args:
        output: the model's output for the batch.
        labels: (B,) integer class labels.
        model: the model (for the class identity, the last layer and D).
        coefs: the term weights.
    """
    if labels.ndim != 1 or labels.dtype.is_floating_point:
        raise ValueError("protopnet_loss needs integer class labels of shape (B,), got "
                         f"{labels.dtype} {tuple(labels.shape)}")
    identity = model.prototype_class_identity  # (P, K)
    min_distances = output.min_distances  # (B, P)
    max_dist = float(model.prototype_vectors[0].numel())

    cross_entropy = F.cross_entropy(output.logits, labels)
    own = identity[:, labels].t()  # (B, P)
    other = 1 - own
    inverted = max_dist - min_distances
    cluster = (max_dist - (inverted * own).max(dim=1).values).mean()
    separation = (max_dist - (inverted * other).max(dim=1).values).mean()
    avg_separation = ((min_distances * other).sum(dim=1) / other.sum(dim=1).clamp(min=1)).mean()
    l1 = (model.last_layer.weight * (1 - identity.t())).norm(p=1)

    total = (coefs.cross_entropy * cross_entropy + coefs.cluster * cluster
             + coefs.separation * separation + coefs.l1 * l1)
    terms = {"cross_entropy": cross_entropy, "cluster": cluster, "separation": separation,
             "avg_separation": avg_separation, "l1": l1}
    if coefs.alignment != 0:
        if output.shallow is None or output.trunk is None:
            raise ValueError("the alignment loss needs the trunk's shallow map: call "
                             "model.keep_shallow_map() before training (training runs do "
                             "when training.loss.alignment is set; the trunk must be an "
                             "nn.Sequential)")
        terms["alignment"] = alignment_loss(output.shallow, output.trunk,
                                            output.similarity_maps, labels,
                                            model.prototype_classes, coefs.alignment_margin)
        total = total + coefs.alignment * terms["alignment"]
    return {"total": total, **terms}
