"""Duplicate prototypes: several prototypes projected onto the same patch, or with
(near-)identical vectors, and merging them without changing the model's logits.

Two ProtoPNet prototypes with the same vector have the same similarity on every image, so the
last layer sees the same value twice; keeping one and summing their last-layer columns gives
exactly the same logits with fewer prototypes (the redundancy ProtoPShare and ProtoPool remove;
the original ProtoPNet keeps duplicates).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from prototypes.model import ProtoPNet
from prototypes.pruning import _require_protopnet, select_prototypes
from prototypes.push import ProjectionRecord

__all__ = ["DEFAULT_TOLERANCE", "duplicate_prototypes", "merge_duplicates"]

DEFAULT_TOLERANCE = 1e-6
"""Relative vector tolerance of :func:`duplicate_prototypes`: prototypes projected onto the
same patch are bit-identical, so only float noise needs room."""


def _components(pairs: torch.Tensor, count: int) -> list[list[int]]:
    parent = list(range(count))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs.tolist():
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for i in range(count):
        groups.setdefault(root(i), []).append(i)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def duplicate_prototypes(model: ProtoPNet, records: Sequence[ProjectionRecord] | None = None,
                         *, tolerance: float = DEFAULT_TOLERANCE) -> list[list[int]]:
    """Groups of duplicate prototypes, each sorted, of two or more, ordered by first id.

    Two prototypes are duplicates when their projection records (``records``, as
    :func:`prototypes.push` returns; prototypes without a record, e.g. of an unprojected
    imported model, are compared by vector only) name the same source sample and latent
    position, or when their vectors are near-identical:
    ``||p_i - p_j|| <= tolerance * max(||p_i||, ||p_j||)``. Groups are the connected
    components of that relation. ``tolerance=0`` asks for identical vectors; a negative
    tolerance disables the vector test (records only).
    """
    _require_protopnet(model, "duplicate_prototypes")
    count = model.num_prototypes
    vectors = model.prototype_vectors.detach().flatten(1).double()
    same = torch.zeros(count, count, dtype=torch.bool, device=vectors.device)
    if tolerance >= 0:
        gaps = torch.cdist(vectors, vectors)
        norms = vectors.norm(dim=1)
        same |= gaps <= tolerance * torch.maximum(norms[:, None], norms[None, :])
    if records:
        if any(not 0 <= r.prototype < count for r in records):
            raise ValueError(f"projection records name prototypes outside [0, {count})")
        keys = torch.stack([torch.full((count,), -1, dtype=torch.long) - torch.arange(count),
                            torch.zeros(count, dtype=torch.long),
                            torch.zeros(count, dtype=torch.long)], dim=1)  # unique: no record
        for r in records:
            keys[r.prototype] = torch.tensor([r.sample_index, *r.latent_position])
        keys = keys.to(vectors.device)
        same |= (keys[:, None, :] == keys[None, :, :]).all(dim=-1)
    pairs = torch.triu(same, diagonal=1).nonzero().cpu()
    return _components(pairs, count)


def merge_duplicates(model: ProtoPNet, groups: Sequence[Sequence[int]]) -> ProtoPNet:
    """A new model in which each group of duplicates is one prototype (``model`` is not
    changed).

    The group's lowest id is kept, with its vector and class; its last-layer column becomes the
    sum of the group's columns, and the others are removed. Prototype ids shift down to stay
    contiguous, in their old order. The logits are unchanged when every group's vectors are
    identical (then every member has the same similarity); this is checked, with the relative
    tolerance :data:`DEFAULT_TOLERANCE` scaled by 100, and a :class:`ValueError` names a group
    whose vectors differ (e.g. records that share a patch after joint training moved the
    prototypes).
    """
    _require_protopnet(model, "merge_duplicates")
    weight = model.last_layer.weight.detach().clone()
    vectors = model.prototype_vectors.detach().flatten(1)
    removed: set[int] = set()
    for group in groups:
        members = sorted(int(j) for j in group)
        if len(members) < 2 or len(set(members)) != len(members):
            raise ValueError(f"a group needs two or more distinct prototypes, got {list(group)}")
        if removed.intersection(members) or any(j < 0 or j >= model.num_prototypes
                                                for j in members):
            raise ValueError(f"group {members} overlaps another group or is out of range")
        chosen = vectors[members]
        spread = (chosen - chosen[0]).norm(dim=1).max()
        if spread > 100 * DEFAULT_TOLERANCE * max(float(chosen.norm(dim=1).max()), 1e-12):
            raise ValueError(f"prototypes {members} do not have identical vectors (largest "
                             f"difference {float(spread):.3g}), so merging them would change "
                             "the logits")
        weight[:, members[0]] = weight[:, members].sum(dim=1)
        removed.update(members[1:])
    keep = [j for j in range(model.num_prototypes) if j not in removed]
    return select_prototypes(model, keep, last_layer_weight=weight[:, keep])
