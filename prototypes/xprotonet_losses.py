"""The XProtoNet training objective: multi-label classification, per-label cluster and
separation, and the two occurrence-map regularisers.

Sources: Kim et al., CVPR 2021 (XProtoNet: binary cross-entropy, cluster and separation per
label, an occurrence-map transformation-consistency loss and an occurrence sparsity loss);
the terms and their weights as re-implemented in
hooman007/ProtoASNet (``src/loss/loss.py``: ``ClusterRoiFeat``, ``SeparationRoiFeat``,
``TransformLoss``, ``L_norm``; ``src/configs/Baseline_XProtoNet_Image.yml``) and
aywi/mprotonet (``src/tumor_cls.py``, the ``mapping`` loss of ``p_mode >= 2``: transformation
consistency plus the L1 norm of the occurrence maps).

Every per-label term is summed over classes and averaged over the batch (ProtoASNet's
``reduction='mean'``: ``loss.mean(dim=0).sum()``); the occurrence terms are averaged over
every element of the maps (MProtoNet's ``t.abs().mean()``), so their weights do not depend on
the latent size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from prototypes.xprotonet import XProtoNet, XProtoNetOutput

__all__ = ["XProtoNetLossCoefficients", "affine_matrices", "as_multi_hot", "random_affine",
           "transform_maps", "xprotonet_loss"]


@dataclass(frozen=True)
class XProtoNetLossCoefficients:
    """Weights of the XProtoNet loss terms and the range of the random transformations.

    ``binary_cross_entropy`` 1, ``cluster`` 0.8 and ``separation`` 0.08 are ProtoASNet's
    XProtoNet settings (ProtoPNet's values; both terms enter with a positive weight because
    they are written with similarities, see :func:`xprotonet_loss`); ``l1`` 1e-4 is its (and
    ProtoPNet's) last-layer weight, which only acts with ``last_layer="full"``.
    ``transformation`` and ``occurrence_sparsity`` weigh the two occurrence regularisers,
    which the sources weigh differently: ProtoASNet uses 1e-3 on a per-map *sum* of the
    transformation term (0.05 here, where the term is a mean: 1e-3 times the 49 positions
    of a 7x7 map) and 0 for sparsity; MProtoNet weighs the sum of both means by 0.5. The
    defaults were measured on SyntheticRadiographs (small_cnn, 64 px, 10 epochs): 0.05 and
    0.005 kept the mean AUROC (0.94) and the pointing accuracy of the upsampled occurrence
    maps (0.55) of training without them, where 0.5 and 0.05 lowered pointing to 0.39. The
    random transformation is ProtoASNet's ``get_affine_config``: a rotation by up to
    ``max_rotation`` degrees either way and a zoom by a factor in [``min_scale``,
    ``max_scale``] about the image centre, no translation or shear.
    """

    binary_cross_entropy: float = 1.0
    cluster: float = 0.8
    separation: float = 0.08
    transformation: float = 0.05
    occurrence_sparsity: float = 0.005
    l1: float = 1e-4
    max_rotation: float = 20.0
    min_scale: float = 0.6
    max_scale: float = 1.5


def as_multi_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, K) float 0/1 labels from multi-hot (B, K) labels or integer class labels (B,)."""
    if labels.ndim == 1 and not labels.dtype.is_floating_point:
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"class labels must lie in [0, {num_classes}), got "
                             f"{labels.tolist()}")
        return F.one_hot(labels, num_classes).float()
    if labels.ndim == 2 and labels.shape[1] == num_classes:
        return labels.float()
    raise ValueError(f"labels must be multi-hot (B, {num_classes}) or integer classes (B,), got "
                     f"{labels.dtype} {tuple(labels.shape)}")


def affine_matrices(angles: torch.Tensor, scales: torch.Tensor,
                    aspect: float = 1.0) -> torch.Tensor:
    """(B, 2, 3) ``affine_grid`` matrices rotating by ``angles`` (B,) radians (positive turns
    x towards y: clockwise on screen) and zooming by ``scales`` (B,) (``> 1`` enlarges the
    content) about the centre.

    The matrices map output to input coordinates in ``affine_grid``'s normalised frame and
    account for the aspect ratio ``aspect`` = width / height, so one matrix rotates a map and
    an image of the same aspect by the same angle whatever their resolutions: in
    pixel-proportional coordinates the output-to-input map is the inverse rotation divided by
    the zoom, and ``diag(1/W, 1/H) R^-1 diag(W, H)`` brings it to the normalised frame.
    """
    cos, sin = torch.cos(angles) / scales, torch.sin(angles) / scales
    zero = torch.zeros_like(cos)
    row_x = torch.stack([cos, sin / aspect, zero], dim=1)
    row_y = torch.stack([-sin * aspect, cos, zero], dim=1)
    return torch.stack([row_x, row_y], dim=1)


def random_affine(batch: int, *, max_rotation: float, min_scale: float, max_scale: float,
                  aspect: float = 1.0, device: torch.device | str | None = None,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, 2, 3) :func:`affine_matrices` with an angle uniform in ``[-max_rotation,
    max_rotation]`` degrees and a zoom uniform in ``[min_scale, max_scale]`` per image."""
    if max_rotation < 0 or not 0 < min_scale <= max_scale:
        raise ValueError(f"need max_rotation >= 0 and 0 < min_scale <= max_scale, got "
                         f"{max_rotation}, {min_scale}, {max_scale}")
    draws = torch.rand(batch, 2, device=device, generator=generator)
    angles = (2 * draws[:, 0] - 1) * math.radians(max_rotation)
    scales = min_scale + (max_scale - min_scale) * draws[:, 1]
    return affine_matrices(angles, scales, aspect)


def transform_maps(maps: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Resample (B, C, h, w) maps with ``affine_grid`` matrices ``theta`` (B, 2, 3): bilinear,
    zeros outside (ProtoASNet's ``fill=0``)."""
    grid = F.affine_grid(theta.to(maps.dtype), list(maps.shape), align_corners=False)
    return F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _transformation_term_applies(model: XProtoNet) -> bool:
    """The transformation term needs a second forward pass; it is computed only when it can
    change a parameter (grad enabled and the trunk or occurrence module trainable)."""
    if not torch.is_grad_enabled():
        return False
    parameters = [*model.features.parameters(), *model.occurrence_module.parameters()]
    return any(parameter.requires_grad for parameter in parameters)


def xprotonet_loss(output: XProtoNetOutput, labels: torch.Tensor, model: XProtoNet,
                   coefs: XProtoNetLossCoefficients = XProtoNetLossCoefficients(),
                   *, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """All loss terms for one batch, as scalars on the output's device.

    With ``y`` (B, K) the multi-hot labels, ``s`` = ``output.similarities`` (B, P),
    ``S[b, c] = max_{p of class c} s[b, p]`` and ``M`` = ``output.occurrence_maps``:

    - ``binary_cross_entropy``: ``mean_b sum_c BCE(sigmoid(logits[b, c]), y[b, c])``;
    - ``cluster``: ``-mean_b sum_c y[b, c] S[b, c]`` (ProtoASNet's ``ClusterRoiFeat``): each
      positive label pulls its most similar prototype towards the image;
    - ``separation``: ``mean_b sum_c (1 - y[b, c]) S[b, c]`` (``SeparationRoiFeat``): each
      negative label pushes its most similar prototype away;
    - ``transformation``: ``mean |A(M(x)) - M(A(x))|`` for a random rotation and zoom ``A``
      per image (:func:`random_affine`), applied to the images and, with the same matrix, to
      their occurrence maps: occurrence maps should move with the image. Computed (and
      reported) only when it can change a parameter, i.e. with grad enabled and the trunk or
      the occurrence module trainable (not in last-layer epochs nor in evaluation), since it
      costs a second forward pass;
    - ``occurrence_sparsity``: ``mean |M|``, keeping occurrence areas small;
    - ``l1``: ``sum |W * (1 - identity^T)|`` of the last layer (0 with ``"own_class"``);
    - ``total``: the weighted sum with ``coefs``.

    Args:
        output: the model's output for the batch.
        labels: (B, K) multi-hot labels, or (B,) integer classes (taken as one-hot).
        model: the model (class identity, last layer, occurrence module for the second pass).
        coefs: term weights and transformation ranges.
        generator: random generator of the transformations (default: torch's global one).
    """
    targets = as_multi_hot(labels, model.num_classes).to(output.logits.device)
    batch = targets.shape[0]
    similarities = output.similarities.view(batch, model.num_classes, model.prototypes_per_class)
    best = similarities.max(dim=2).values  # (B, K): most similar prototype of each class

    binary_cross_entropy = F.binary_cross_entropy_with_logits(
        output.logits, targets, reduction="sum") / batch
    cluster = -(targets * best).sum() / batch
    separation = ((1 - targets) * best).sum() / batch
    occurrence_sparsity = output.occurrence_maps.abs().mean()
    l1 = (model.last_layer.weight * (1 - model.prototype_class_identity.t())).norm(p=1)

    terms = {"binary_cross_entropy": binary_cross_entropy, "cluster": cluster,
             "separation": separation, "occurrence_sparsity": occurrence_sparsity, "l1": l1}
    total = (coefs.binary_cross_entropy * binary_cross_entropy + coefs.cluster * cluster
             + coefs.separation * separation + coefs.occurrence_sparsity * occurrence_sparsity
             + coefs.l1 * l1)
    if coefs.transformation != 0 and _transformation_term_applies(model):
        images = output.images
        if images is None:
            raise ValueError("the transformation loss needs the input images, which an output "
                             "computed from cached trunk maps does not keep (set its "
                             "coefficient to 0, or do not cache the trunk)")
        height, width = images.shape[-2:]
        theta = random_affine(batch, max_rotation=coefs.max_rotation,
                              min_scale=coefs.min_scale, max_scale=coefs.max_scale,
                              aspect=width / height, device=images.device, generator=generator)
        moved_maps = transform_maps(output.occurrence_maps, theta)
        maps_of_moved = model.occurrence(transform_maps(images, theta))
        transformation = (moved_maps - maps_of_moved).abs().mean()
        terms["transformation"] = transformation
        total = total + coefs.transformation * transformation
    return {"total": total, **terms}
