"""XProtoNet push against a brute-force search over images positive for each class."""

import pytest
import torch

from prototypes import push_xprotonet, receptive_field_box
from tests.prototypes.tiny_xprotonet import make_xprotonet, multi_label_batches


def _brute_force(model, batches, prototypes):
    """Per prototype: (image, feature vector, similarity) of the most similar occurrence-
    weighted feature vector among images positive for its class, first one on ties, by
    plain loops over images."""
    model.eval()
    images = torch.cat([b["image"] for b in batches])
    labels = torch.cat([b["label"] for b in batches])
    with torch.no_grad():
        trunk = model.features(model.normalize(images))
        latent, occurrence = model.feature_module(trunk), model.occurrence_module(trunk)
    best = []
    for j in range(model.num_prototypes):
        own_class = j // model.prototypes_per_class
        found = None
        for image in range(len(images)):
            if labels[image, own_class] != 1:
                continue
            vector = (occurrence[image, j][None] * latent[image]).sum(dim=(1, 2))
            similarity = torch.nn.functional.cosine_similarity(vector, prototypes[j], dim=0)
            if found is None or similarity > found[2]:
                found = (image, vector, similarity.item())
        best.append(found)
    return best, occurrence


def test_push_projects_each_prototype_onto_the_nearest_feature_vector_of_a_positive_image():
    model = make_xprotonet()
    batches = multi_label_batches()
    indices = torch.cat([b["index"] for b in batches])
    labels = torch.cat([b["label"] for b in batches])
    old = model.prototype_vectors.detach().clone()
    best, occurrence = _brute_force(model, batches, old)
    records = push_xprotonet(model, batches)

    assert len(records) == model.num_prototypes
    for j, record in enumerate(records):
        image, vector, similarity = best[j]
        assert record.prototype == j and record.class_index == j // 2
        assert labels[image, record.class_index] == 1
        assert record.sample_index == indices[image].item()
        assert record.similarity == pytest.approx(similarity, abs=1e-5)
        assert record.distance == pytest.approx(1 - similarity, abs=1e-5)
        torch.testing.assert_close(model.prototype_vectors[j].detach(), vector)
        peak = occurrence[image, j].flatten().argmax().item()
        assert record.latent_position == divmod(peak, occurrence.shape[-1])
        assert record.receptive_field_box == receptive_field_box(
            model.receptive_field, *record.latent_position, (16, 16))


def test_pushed_prototypes_have_similarity_one_with_their_source_image():
    model = make_xprotonet()
    batches = multi_label_batches()
    records = push_xprotonet(model, batches)
    images = torch.cat([b["image"] for b in batches])
    first_index = batches[0]["index"][0].item()
    model.eval()
    with torch.no_grad():
        similarities = model(images).similarities
    for record in records:
        assert similarities[record.sample_index - first_index, record.prototype].item() == \
            pytest.approx(1.0, abs=1e-5)


def test_push_ties_keep_the_first_image_in_loader_order():
    model = make_xprotonet()
    image = torch.rand(1, 3, 16, 16)
    # One image per batch: copies of an image in different rows of one batch may differ in the
    # last bit (vectorised kernels round rows differently on some CPUs), copies in the same row
    # of equal batches do not, so this is an exact tie between batches.
    batches = [{"image": image, "label": torch.ones(1, 3), "index": torch.tensor([index])}
               for index in (7, 8, 9)]
    records = push_xprotonet(model, batches)
    assert {record.sample_index for record in records} == {7}


def test_push_accepts_integer_class_labels():
    model = make_xprotonet()
    images = torch.rand(6, 3, 16, 16)
    batches = [{"image": images, "label": torch.tensor([0, 1, 2, 2, 1, 0]),
                "index": torch.arange(6)}]
    records = push_xprotonet(model, batches)
    classes = [0, 1, 2, 2, 1, 0]
    assert all(classes[record.sample_index] == record.class_index for record in records)


def test_push_names_a_class_without_positive_images():
    model = make_xprotonet()
    batches = [{"image": torch.rand(2, 3, 16, 16),
                "label": torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]),
                "index": torch.arange(2)}]
    with pytest.raises(ValueError, match=r"class\(es\) \[1, 2\]"):
        push_xprotonet(model, batches)


def test_push_needs_indices_and_equal_sizes():
    model = make_xprotonet()
    batch = {"image": torch.rand(2, 3, 16, 16), "label": torch.ones(2, 3)}
    with pytest.raises(ValueError, match="index"):
        push_xprotonet(model, [batch])
    other = {"image": torch.rand(2, 3, 24, 24), "label": torch.ones(2, 3),
             "index": torch.arange(2)}
    with pytest.raises(ValueError, match="different sizes"):
        push_xprotonet(model, [{**batch, "index": torch.arange(2)}, other])


def test_push_restores_the_training_mode():
    model = make_xprotonet()
    model.train()
    push_xprotonet(model, multi_label_batches())
    assert model.training and all(module.training for module in model.modules())
