"""Each loss term on a batch of two, against values computed by hand."""

import math

import pytest
import torch

from prototypes import LossCoefficients, ProtoPNetOutput, protopnet_loss
from tests.prototypes.tiny_protopnet import make_model


def _output(min_distances, logits):
    batch, prototypes = min_distances.shape
    maps = min_distances[:, :, None, None]
    return ProtoPNetOutput(logits=logits, similarity_maps=maps, similarities=min_distances,
                           min_distances=min_distances, distance_maps=maps,
                           latent=torch.zeros(batch, 4, 1, 1))


@pytest.fixture
def two_class_model():
    # 2 classes x 2 prototypes of dimension 4: max_dist = 4; prototypes 0, 1 -> class 0.
    model = make_model(num_classes=2, prototypes_per_class=2, prototype_dim=4)
    with torch.no_grad():
        model.last_layer.weight.copy_(torch.tensor([[1.0, 1.0, -0.5, 0.25],
                                                    [-2.0, 0.5, 1.0, 1.0]]))
    return model


def test_each_loss_term_matches_hand_computation(two_class_model):
    min_distances = torch.tensor([[1.0, 3.0, 0.5, 2.0],    # label 0
                                  [2.5, 0.2, 3.5, 1.5]])   # label 1
    logits = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    terms = protopnet_loss(_output(min_distances, logits), torch.tensor([0, 1]),
                           two_class_model)

    cross_entropy = (math.log(1 + math.exp(-2)) + math.log(2)) / 2
    cluster = (1.0 + 1.5) / 2          # nearest own-class prototype
    separation = (0.5 + 0.2) / 2       # nearest other-class prototype
    avg_separation = ((0.5 + 2.0) / 2 + (2.5 + 0.2) / 2) / 2
    l1 = (0.5 + 0.25) + (2.0 + 0.5)   # weights to classes other than the prototype's own
    total = cross_entropy + 0.8 * cluster - 0.08 * separation + 1e-4 * l1
    expected = {"cross_entropy": cross_entropy, "cluster": cluster, "separation": separation,
                "avg_separation": avg_separation, "l1": l1, "total": total}
    for name, value in expected.items():
        assert terms[name].item() == pytest.approx(value, rel=1e-6), name


def test_loss_coefficients_weight_the_terms(two_class_model):
    output = _output(torch.tensor([[1.0, 3.0, 0.5, 2.0]]), torch.tensor([[0.3, -0.2]]))
    labels = torch.tensor([0])
    terms = protopnet_loss(output, labels, two_class_model)
    coefs = LossCoefficients(cross_entropy=2.0, cluster=0.0, separation=-1.0, l1=0.5)
    weighted = protopnet_loss(output, labels, two_class_model, coefs)["total"]
    expected = 2 * terms["cross_entropy"] - terms["separation"] + 0.5 * terms["l1"]
    torch.testing.assert_close(weighted, expected)


def test_default_coefficients_are_the_originals():
    assert LossCoefficients() == LossCoefficients(cross_entropy=1.0, cluster=0.8,
                                                  separation=-0.08, l1=1e-4)


def test_cluster_saturates_at_max_dist_like_the_original(two_class_model):
    # The original's max-trick: own-class distances above max_dist = 4 count as 4.
    output = _output(torch.tensor([[5.0, 6.0, 0.5, 2.0]]), torch.tensor([[0.0, 0.0]]))
    terms = protopnet_loss(output, torch.tensor([0]), two_class_model)
    assert terms["cluster"].item() == pytest.approx(4.0)


def test_loss_rejects_float_labels(two_class_model):
    output = _output(torch.ones(1, 4), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="integer class labels"):
        protopnet_loss(output, torch.tensor([0.0]), two_class_model)
