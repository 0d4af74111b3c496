"""Push (projection) against a brute-force search on a tiny model."""

import json

import pytest
import torch

from prototypes import ProjectionRecord, push, receptive_field_box
from tests.prototypes.tiny_protopnet import make_batches, make_model


def _all_latents(model, batches):
    model.eval()
    with torch.no_grad():
        images = torch.cat([b["image"] for b in batches])
        return (model.latent(images), torch.cat([b["label"] for b in batches]),
                torch.cat([b["index"] for b in batches]))


def _brute_force_nearest(latent, labels, prototype, allowed_class):
    """(image, h, w, distance) of the nearest patch, first one on ties, by plain loops."""
    best = None
    for image in range(latent.shape[0]):
        if allowed_class is not None and labels[image] != allowed_class:
            continue
        for h in range(latent.shape[2]):
            for w in range(latent.shape[3]):
                distance = ((latent[image, :, h, w] - prototype) ** 2).sum().item()
                if best is None or distance < best[3]:
                    best = (image, h, w, distance)
    return best


@pytest.mark.parametrize("class_specific", [True, False])
def test_push_replaces_each_prototype_with_nearest_patch_of_its_class(
        tiny_model, toy_batches, class_specific):
    latent, labels, indices = _all_latents(tiny_model, toy_batches)
    old_prototypes = tiny_model.prototype_vectors.detach()[:, :, 0, 0].clone()
    records = push(tiny_model, toy_batches, class_specific=class_specific)

    new_prototypes = tiny_model.prototype_vectors.detach()[:, :, 0, 0]
    assert len(records) == tiny_model.num_prototypes
    for j, record in enumerate(records):
        own_class = j // 2
        image, h, w, distance = _brute_force_nearest(
            latent, labels, old_prototypes[j], own_class if class_specific else None)
        assert record.prototype == j and record.class_index == own_class
        assert record.sample_index == indices[image].item()
        assert record.latent_position == (h, w)
        assert record.distance == pytest.approx(distance, rel=1e-4, abs=1e-5)
        assert record.similarity == pytest.approx(
            torch.log(torch.tensor((distance + 1) / (distance + 1e-4))).item(), rel=1e-3)
        torch.testing.assert_close(new_prototypes[j], latent[image, :, h, w])
        if class_specific:
            assert labels[image] == own_class


def test_pushed_prototypes_sit_at_distance_zero_from_their_source_patch(tiny_model, toy_batches):
    records = push(tiny_model, toy_batches)
    images = torch.cat([b["image"] for b in toy_batches])
    tiny_model.eval()
    with torch.no_grad():
        distances = tiny_model(images).distance_maps
    for record in records:
        h, w = record.latent_position
        assert distances[record.sample_index - 100, record.prototype, h, w] < 1e-5


def test_push_ties_keep_the_first_patch_in_loader_order():
    model = make_model()
    with torch.no_grad():  # every latent patch is exactly sigmoid(0) = 0.5, every prototype
        model.add_on_layers[-2].weight.zero_()  # 0.25: all distances tie exactly
        model.prototype_vectors.fill_(0.25)
    labels = torch.tensor([2, 1, 0, 1, 2, 0, 0, 1, 2])
    records = push(model, make_batches(torch.rand(9, 3, 16, 16), labels, batch_size=2))
    first_of_class = {0: 2, 1: 1, 2: 0}
    assert [r.sample_index for r in records] == [first_of_class[r.class_index] for r in records]
    assert all(r.latent_position == (0, 0) for r in records)


def test_push_records_receptive_field_boxes_of_their_latent_positions(tiny_model, toy_batches):
    for record in push(tiny_model, toy_batches):
        assert record.receptive_field_box == receptive_field_box(
            tiny_model.receptive_field, *record.latent_position, (16, 16))


def test_push_names_a_class_without_images(tiny_model, toy_batches):
    without_class_2 = [{key: value[batch["label"] != 2] for key, value in batch.items()}
                       for batch in toy_batches]
    before = tiny_model.prototype_vectors.detach().clone()
    with pytest.raises(ValueError, match=r"class\(es\) \[2\]"):
        push(tiny_model, without_class_2)
    assert torch.equal(tiny_model.prototype_vectors, before)


def test_push_needs_sample_indices(tiny_model, toy_batches):
    batches = [{"image": b["image"], "label": b["label"]} for b in toy_batches]
    with pytest.raises(ValueError, match="index"):
        push(tiny_model, batches)


def test_push_restores_the_training_mode(tiny_model, toy_batches):
    tiny_model.train()
    push(tiny_model, toy_batches)
    assert tiny_model.training and tiny_model.features[1].training


def test_projection_record_round_trips_through_json(tiny_model, toy_batches):
    records = push(tiny_model, toy_batches)
    rows = json.loads(json.dumps([r.to_dict() for r in records]))
    assert [ProjectionRecord.from_dict(row) for row in rows] == records
    with pytest.raises(ValueError, match="distance"):
        ProjectionRecord.from_dict({k: v for k, v in rows[0].items() if k != "distance"})
