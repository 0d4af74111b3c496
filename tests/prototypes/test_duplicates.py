"""Duplicate prototypes: detection by source patch or vector, and logit-preserving merges;
selecting and resizing prototypes."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from prototypes import (
    duplicate_prototypes,
    merge_duplicates,
    push,
    resize_prototypes,
    select_prototypes,
)
from tests.prototypes.tiny_protopnet import make_model
from tests.prototypes.tiny_xprotonet import make_xprotonet


def _with_copies(model):
    """Prototype 4 copies 1 and prototype 5 copies 1: one group {1, 4, 5}."""
    with torch.no_grad():
        model.prototype_vectors[4] = model.prototype_vectors[1]
        model.prototype_vectors[5] = model.prototype_vectors[1]
        model.last_layer.weight.normal_()
    return model


def test_identical_vectors_form_one_group(tiny_model):
    model = _with_copies(tiny_model)
    assert duplicate_prototypes(model) == [[1, 4, 5]]
    with torch.no_grad():
        model.prototype_vectors[5] += 1e-3
    assert duplicate_prototypes(model) == [[1, 4]]
    assert duplicate_prototypes(model, tolerance=1.0)[0][:2] == [0, 1]  # loose: all alike


def test_records_sharing_a_patch_are_duplicates(tiny_model, toy_batches):
    records = push(tiny_model, toy_batches)
    shared = dataclasses.replace(records[3], prototype=0, class_index=0)
    records[0] = shared  # prototype 0 claims prototype 3's patch
    assert [0, 3] in duplicate_prototypes(tiny_model, records, tolerance=-1)
    assert [0, 3] in duplicate_prototypes(tiny_model, [records[0], records[3]], tolerance=-1)
    assert duplicate_prototypes(tiny_model, [], tolerance=-1) == []
    with pytest.raises(ValueError, match="outside"):
        duplicate_prototypes(tiny_model, [dataclasses.replace(records[0], prototype=9)])


def test_merging_keeps_the_logits(tiny_model):
    model = _with_copies(tiny_model).eval()
    images = torch.rand(5, 3, 16, 16)
    merged = merge_duplicates(model, duplicate_prototypes(model))
    assert merged.num_prototypes == 4 and model.num_prototypes == 6
    with torch.no_grad():
        torch.testing.assert_close(merged(images).logits, model(images).logits)
        torch.testing.assert_close(merged.prototype_vectors, model.prototype_vectors[[0, 1, 2, 3]])
    assert merged.prototype_classes.tolist() == [0, 0, 1, 1]


def test_merging_refuses_different_vectors(tiny_model):
    with pytest.raises(ValueError, match="identical vectors"):
        merge_duplicates(tiny_model, [[0, 1]])


def test_select_and_resize(tiny_model):
    model = tiny_model.eval()
    images = torch.rand(2, 3, 16, 16)
    selected = select_prototypes(model, [5, 0, 2])
    with torch.no_grad():
        full = model(images)
        part = selected(images)
    torch.testing.assert_close(part.similarities, full.similarities[:, [5, 0, 2]])
    torch.testing.assert_close(part.logits, full.similarities[:, [5, 0, 2]]
                               @ model.last_layer.weight[:, [5, 0, 2]].t())
    fresh = resize_prototypes(make_model(), selected.prototype_class_identity)
    fresh.load_state_dict(selected.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(images).logits, part.logits)
    with pytest.raises(ValueError, match="distinct"):
        select_prototypes(model, [0, 0])


def test_xprotonet_is_refused():
    with pytest.raises(TypeError, match="ProtoPNet"):
        duplicate_prototypes(make_xprotonet())
