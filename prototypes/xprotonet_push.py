"""XProtoNet projection ("push"): replace each prototype by the occurrence-weighted feature
vector of the training image, positive for its class, that it is most similar to.

Source: Kim et al., CVPR 2021 (XProtoNet: prototypes are replaced by the feature vectors
``f_p(x)`` of training images of their class); as re-implemented in
hooman007/ProtoASNet ``src/utils/push_abs_revision.py`` (``push_prototypes``: per prototype,
the image of its class with the smallest ``1 - similarity`` gives ``protoL_input[a, j]``) and
aywi/mprotonet ``src/push.py`` (``p_x`` of ``push_forward``). In XProtoNet a prototype's
candidate in an image is one vector, ``f_p(x) = sum_u M_p,u(x) F_u(x)``, not one per latent
position as in ProtoPNet.

As :func:`prototypes.push`: unaugmented training loader, running best across batches (an
earlier batch wins ties, within a batch the first image), records instead of pictures; the
record's ``latent_position`` is the peak of the prototype's occurrence map on its source image
and ``receptive_field_box`` that position's receptive field. Where the prototype lives is
localized separately (:func:`prototypes.localize`, whose ``upsample`` method upsamples the
occurrence map). Across processes, :func:`prototypes.push.nearest_across_processes` agrees on
the most similar candidate with the same tie order (the lowest sample index).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from tqdm.auto import tqdm

from hdm.hooks import evaluation_mode
from prototypes.push import ProjectionRecord, nearest_across_processes
from prototypes.receptive_field import receptive_field_boxes
from prototypes.xprotonet import XProtoNet
from prototypes.xprotonet_losses import as_multi_hot

__all__ = ["push_xprotonet"]


def push_xprotonet(model: XProtoNet, loader: Iterable[dict[str, Any]], *,
                   progress: bool = False) -> list[ProjectionRecord]:
    """Project every prototype onto the most similar occurrence-weighted feature vector of an
    image positive for its class, and return one record per prototype.

    Args:
        model: the XProtoNet; its ``prototype_vectors`` are overwritten in place.
        loader: the *unaugmented* training set, yielding dicts with ``image`` (B, 3, H, W) in
            [0, 1], ``label`` (B, K) multi-hot or (B,) integer classes, and ``index`` (B,)
            sample indices; all images the same size. Under torch.distributed, this
            process's part of it.
        progress: show a tqdm bar.

    Returns:
        Records with ``distance`` = ``1 - similarity`` (the cosine distance before the push)
        and ``similarity`` the cosine similarity found (after the push the prototype equals
        that feature vector, so its similarity with the source image is 1).

    Raises:
        ValueError: when a prototype's class has no positive image in the loader, or batches
            lack ``index`` or have images of different sizes.
    """
    device = model.prototype_vectors.device
    num_prototypes = model.num_prototypes
    classes = model.prototype_classes  # (P,)
    best_similarity = torch.full((num_prototypes,), float("-inf"), device=device)
    best_vector = torch.zeros(num_prototypes, model.prototype_dim, device=device)
    best_sample = torch.full((num_prototypes,), -1, dtype=torch.long, device=device)
    best_position = torch.zeros(num_prototypes, dtype=torch.long, device=device)
    image_size = None
    latent_width = 1
    every_prototype = torch.arange(num_prototypes, device=device)
    with evaluation_mode(model):
        for batch in tqdm(loader, desc="push", disable=not progress, leave=False):
            if "index" not in batch:
                raise ValueError("push needs batch['index'] (each sample's index in the data set)")
            images = batch["image"].to(device)
            if image_size is None:
                image_size = tuple(images.shape[-2:])
            elif tuple(images.shape[-2:]) != image_size:
                raise ValueError(f"push: images of different sizes ({image_size} and "
                                 f"{tuple(images.shape[-2:])}) in one loader")
            positive = as_multi_hot(batch["label"].to(device), model.num_classes) > 0.5
            output = model(images)
            allowed = positive[:, classes]  # (B, P): image positive for the prototype's class
            similarity = output.similarities.masked_fill(~allowed, float("-inf"))
            batch_best, image_in_batch = similarity.max(dim=0)  # first image on ties
            better = batch_best > best_similarity
            best_similarity = torch.where(better, batch_best, best_similarity)
            chosen = output.prototype_features[image_in_batch, every_prototype]  # (P, D)
            best_vector = torch.where(better[:, None], chosen, best_vector)
            best_sample = torch.where(better, batch["index"].to(device)[image_in_batch],
                                      best_sample)
            maps = output.occurrence_maps[image_in_batch, every_prototype]  # (P, h, w)
            latent_width = maps.shape[-1]
            best_position = torch.where(better, maps.flatten(1).argmax(dim=1), best_position)

        # the most similar is the nearest at distance -similarity (an exact negation); an
        # image's candidate is one vector, so ties go to the lowest sample index
        distance, best_sample, positions, best_vector, shape = nearest_across_processes(
            -best_similarity, best_sample, best_position[:, None].expand(-1, 2),
            best_vector, None if image_size is None else (*image_size, latent_width))
        if shape is not None:
            image_size, latent_width = tuple(shape[:2]), shape[2]
        best_position = positions[:, 0]
        best_similarity = -distance
        unfound = torch.isinf(best_similarity)
        if unfound.any():
            missing = sorted(set(classes[unfound].tolist()))
            raise ValueError(f"push: no image positive for class(es) {missing} in the loader, "
                             "so their prototypes cannot be projected (the loader must cover "
                             "every class of the training set)")
        model.prototype_vectors.copy_(best_vector)

    best_h, best_w = best_position // latent_width, best_position % latent_width
    boxes = receptive_field_boxes(model.receptive_field, best_h, best_w, image_size).tolist()
    columns = zip(range(num_prototypes), classes.tolist(), best_sample.tolist(),
                  best_h.tolist(), best_w.tolist(), best_similarity.tolist(), boxes,
                  strict=True)
    return [ProjectionRecord(prototype=j, class_index=k, sample_index=s, latent_position=(y, x),
                             distance=1.0 - sim, similarity=sim, receptive_field_box=tuple(box))
            for j, k, s, y, x, sim, box in columns]
