"""nearest_patches: the k nearest images (one patch each) of every prototype, batched."""

from __future__ import annotations

import pytest
import torch

from prototypes import nearest_patches, push
from tests.prototypes.tiny_protopnet import make_batches
from tests.prototypes.tiny_xprotonet import make_xprotonet


def _brute_force(model, batches, k):
    """Per image and prototype the nearest patch, then sort images by (distance, index)."""
    images = torch.cat([b["image"] for b in batches])
    indices = torch.cat([b["index"] for b in batches])
    labels = torch.cat([b["label"] for b in batches])
    with torch.no_grad():
        distances = model.eval()(images).distance_maps  # (N, P, h, w)
    rows = []
    for j in range(distances.shape[1]):
        candidates = []
        for n in range(distances.shape[0]):
            flat = distances[n, j].flatten()
            position = int(flat.argmin())
            candidates.append((float(flat[position]), int(indices[n]), int(labels[n]),
                               divmod(position, distances.shape[-1])))
        rows.append(sorted(candidates, key=lambda c: (c[0], c[1]))[:k])
    return rows


@pytest.mark.parametrize("batch_size", [1, 3, 11])
def test_matches_brute_force_whatever_the_batch_size(tiny_model, toy_batches, batch_size):
    batches = make_batches(torch.cat([b["image"] for b in toy_batches]),
                           torch.cat([b["label"] for b in toy_batches]), batch_size, 100)
    found = nearest_patches(tiny_model, batches, k=4, progress=False)
    expected = _brute_force(tiny_model, toy_batches, 4)
    assert found.sample_indices.shape == (tiny_model.num_prototypes, 4)
    assert found.positions.shape == (tiny_model.num_prototypes, 4, 2)
    for j, row in enumerate(expected):
        assert found.sample_indices[j].tolist() == [c[1] for c in row]
        assert found.labels[j].tolist() == [c[2] for c in row]
        assert [tuple(p) for p in found.positions[j].tolist()] == [c[3] for c in row]
        torch.testing.assert_close(found.distances[j], torch.tensor([c[0] for c in row]))


def test_ties_go_to_the_lower_index_and_k_caps_at_the_image_count(tiny_model):
    image = torch.rand(1, 3, 16, 16)
    images = image.expand(5, -1, -1, -1).clone()  # five identical images
    batches = [{"image": images[3:], "label": torch.tensor([0, 0]), "index": torch.tensor([7, 2])},
               {"image": images[:3], "label": torch.tensor([1, 1, 1]),
                "index": torch.tensor([9, 4, 3])}]
    found = nearest_patches(tiny_model, batches, k=10, progress=False)
    assert found.k == 5
    assert (found.sample_indices == torch.tensor([2, 3, 4, 7, 9])).all()


def test_accepts_tuples_and_agrees_with_push(tiny_model, toy_batches):
    """The nearest own-class image of a prototype is where class-specific push projects it."""
    tuples = [(b["image"], b["label"], b["index"]) for b in toy_batches]
    found = nearest_patches(tiny_model, tuples, k=11, progress=False)
    records = push(tiny_model, toy_batches)
    for record in records:
        own = found.labels[record.prototype] == record.class_index
        first = int(own.nonzero()[0])
        assert int(found.sample_indices[record.prototype, first]) == record.sample_index
        assert tuple(found.positions[record.prototype, first].tolist()) == \
            record.latent_position
        assert float(found.distances[record.prototype, first]) == pytest.approx(
            record.distance, abs=1e-5)


def test_xprotonet_uses_cosine_distance_and_no_single_label():
    model = make_xprotonet()
    images = torch.rand(4, 3, 16, 16)
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0, 0, 1.0]])
    found = nearest_patches(model, [(images, labels, torch.arange(4))], k=2, progress=False)
    with torch.no_grad():
        output = model.eval()(images)
    best = (1 - output.similarities).t().sort(dim=1).values[:, :2]
    torch.testing.assert_close(found.distances, best)
    assert (found.labels == -1).all()


def test_rejects_a_bad_k(tiny_model, toy_batches):
    with pytest.raises(ValueError, match="k must be"):
        nearest_patches(tiny_model, toy_batches, k=0, progress=False)


@pytest.mark.cuda
def test_runs_on_the_model_device_and_agrees_with_the_cpu(tiny_model, toy_batches):
    on_cpu = nearest_patches(tiny_model, toy_batches, k=5, progress=False)
    on_gpu = nearest_patches(tiny_model.cuda(), toy_batches, k=5, progress=False)
    assert on_gpu.sample_indices.is_cuda
    assert torch.equal(on_gpu.sample_indices.cpu(), on_cpu.sample_indices)
    torch.testing.assert_close(on_gpu.distances.cpu(), on_cpu.distances, atol=1e-5, rtol=1e-5)
