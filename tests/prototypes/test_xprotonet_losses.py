"""XProtoNet loss terms against hand computation, and the random transformations."""

import math

import pytest
import torch

from prototypes import XProtoNetLossCoefficients, XProtoNetOutput, set_phase, xprotonet_loss
from prototypes.xprotonet_losses import (
    affine_matrices,
    as_multi_hot,
    random_affine,
    transform_maps,
)
from tests.prototypes.tiny_xprotonet import make_xprotonet


def _output(model, similarities, logits, occurrence):
    batch = similarities.shape[0]
    return XProtoNetOutput(logits=logits, similarity_maps=occurrence, similarities=similarities,
                           prototype_features=torch.zeros(batch, model.num_prototypes, 4),
                           latent=torch.zeros(batch, 4, 2, 2),
                           images=torch.zeros(batch, 3, 16, 16))


@pytest.fixture
def two_class_model():
    return make_xprotonet(num_classes=2, prototypes_per_class=2)


def test_each_loss_term_matches_hand_computation(two_class_model):
    model = two_class_model
    similarities = torch.tensor([[0.9, 0.2, 0.4, -0.3],    # image 0: class 0 only
                                 [0.1, 0.5, 0.8, 0.6]])    # image 1: both classes
    logits = torch.tensor([[2.0, -1.0], [0.5, 1.5]])
    occurrence = torch.tensor([0.1, 0.2, 0.3, 0.4]).repeat(2, 4, 1).view(2, 4, 2, 2)
    labels = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    coefs = XProtoNetLossCoefficients(transformation=0.0)
    terms = xprotonet_loss(_output(model, similarities, logits, occurrence), labels, model, coefs)

    def bce(z, y):
        p = 1 / (1 + math.exp(-z))
        return -(y * math.log(p) + (1 - y) * math.log(1 - p))

    expected_bce = (bce(2.0, 1) + bce(-1.0, 0) + bce(0.5, 1) + bce(1.5, 1)) / 2
    # best similarity per class: image 0 (0.9, 0.4), image 1 (0.5, 0.8)
    expected_cluster = -(0.9 + 0.5 + 0.8) / 2
    expected_separation = 0.4 / 2
    assert terms["binary_cross_entropy"].item() == pytest.approx(expected_bce, rel=1e-5)
    assert terms["cluster"].item() == pytest.approx(expected_cluster, rel=1e-5)
    assert terms["separation"].item() == pytest.approx(expected_separation, rel=1e-5)
    assert terms["occurrence_sparsity"].item() == pytest.approx(0.25, rel=1e-5)
    assert terms["l1"].item() == 0.0
    assert "transformation" not in terms
    expected_total = (expected_bce + 0.8 * expected_cluster + 0.08 * expected_separation
                      + coefs.occurrence_sparsity * 0.25)
    assert terms["total"].item() == pytest.approx(expected_total, rel=1e-5)


def test_integer_class_labels_count_as_one_hot(two_class_model):
    model = two_class_model
    out = model(torch.rand(3, 3, 16, 16))
    coefs = XProtoNetLossCoefficients(transformation=0.0)
    from_classes = xprotonet_loss(out, torch.tensor([1, 0, 1]), model, coefs)
    from_multi_hot = xprotonet_loss(out, torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]),
                                    model, coefs)
    for name, value in from_classes.items():
        torch.testing.assert_close(value, from_multi_hot[name])


def test_l1_is_the_norm_of_off_class_weights_of_a_full_last_layer():
    model = make_xprotonet(last_layer="full", incorrect_class_connection=-0.5)
    out = model(torch.rand(2, 3, 16, 16))
    terms = xprotonet_loss(out, torch.tensor([0, 2]), model,
                           XProtoNetLossCoefficients(transformation=0.0))
    assert terms["l1"].item() == pytest.approx(0.5 * 6 * 2)


def test_transformation_term_compares_moved_maps_with_maps_of_moved_images():
    model = make_xprotonet()
    images = torch.rand(3, 3, 16, 16)
    out = model(images)
    coefs = XProtoNetLossCoefficients()
    terms = xprotonet_loss(out, torch.tensor([0, 1, 2]), model, coefs,
                           generator=torch.Generator().manual_seed(5))
    theta = random_affine(3, max_rotation=coefs.max_rotation, min_scale=coefs.min_scale,
                          max_scale=coefs.max_scale, generator=torch.Generator().manual_seed(5))
    expected = (transform_maps(out.occurrence_maps, theta)
                - model.occurrence(transform_maps(images, theta))).abs().mean()
    torch.testing.assert_close(terms["transformation"], expected)
    expected_total = sum(getattr(coefs, name) * terms[name] for name in terms if name != "total")
    torch.testing.assert_close(terms["total"], expected_total)


def test_transformation_term_vanishes_for_the_identity_transformation():
    model = make_xprotonet()
    out = model(torch.rand(2, 3, 16, 16))
    coefs = XProtoNetLossCoefficients(max_rotation=0.0, min_scale=1.0, max_scale=1.0)
    terms = xprotonet_loss(out, torch.tensor([0, 1]), model, coefs)
    assert terms["transformation"].item() == pytest.approx(0.0, abs=1e-6)


def test_transformation_term_is_skipped_where_it_cannot_train_anything():
    model = make_xprotonet()
    labels = torch.tensor([0, 1])
    with torch.no_grad():
        assert "transformation" not in xprotonet_loss(model(torch.rand(2, 3, 16, 16)), labels,
                                                      model)
    set_phase(model, "last_layer")
    assert "transformation" not in xprotonet_loss(model(torch.rand(2, 3, 16, 16)), labels, model)
    set_phase(model, "warm")
    assert "transformation" in xprotonet_loss(model(torch.rand(2, 3, 16, 16)), labels, model)


def test_affine_matrices_turn_a_square_map_a_quarter_clockwise_exactly():
    maps = torch.arange(16.0).view(1, 1, 4, 4)
    quarter = affine_matrices(torch.tensor([math.pi / 2]), torch.tensor([1.0]))
    rotated = transform_maps(maps, quarter)
    torch.testing.assert_close(rotated, torch.rot90(maps, k=-1, dims=(2, 3)), atol=1e-5, rtol=0)


def test_affine_matrices_zoom_in_about_the_centre():
    maps = torch.zeros(1, 1, 8, 8)
    maps[..., 2:6, 2:6] = 1.0  # the central 4x4 block
    zoomed = transform_maps(maps, affine_matrices(torch.tensor([0.0]), torch.tensor([2.0])))[0, 0]
    # twice as large: the block now covers 8x8 pixels, so all but the outer ring samples only
    # block pixels, and the outer ring lies a quarter pixel beyond the block's last centres
    torch.testing.assert_close(zoomed[1:7, 1:7], torch.ones(6, 6))
    torch.testing.assert_close(zoomed[0, 1:7], torch.full((6,), 0.75))
    assert zoomed[0, 0].item() == pytest.approx(0.75 * 0.75)


def test_affine_matrices_rotate_by_the_same_angle_whatever_the_aspect():
    maps = torch.zeros(1, 1, 8, 16)
    maps[..., 3:5, 10:12] = 1.0  # 3 px right of the centre (8, 4)
    turned = transform_maps(maps, affine_matrices(torch.tensor([math.pi / 2]),
                                                  torch.tensor([1.0]), aspect=2.0))
    expected = torch.zeros(1, 1, 8, 16)
    expected[..., 6:8, 7:9] = 1.0  # a quarter turn clockwise: 3 px below the centre
    torch.testing.assert_close(turned, expected, atol=1e-5, rtol=0)


def test_random_affine_stays_in_its_ranges():
    theta = random_affine(500, max_rotation=20.0, min_scale=0.6, max_scale=1.5,
                          generator=torch.Generator().manual_seed(0))
    scale = 1 / theta[:, :, :2].det().sqrt()
    angle = torch.atan2(theta[:, 0, 1], theta[:, 0, 0]).abs()
    assert scale.min() >= 0.6 - 1e-5 and scale.max() <= 1.5 + 1e-5
    assert angle.max() <= math.radians(20.0) + 1e-5
    with pytest.raises(ValueError, match="min_scale"):
        random_affine(2, max_rotation=10.0, min_scale=2.0, max_scale=1.0)


def test_labels_are_checked():
    with pytest.raises(ValueError, match="multi-hot"):
        as_multi_hot(torch.ones(2, 4), 3)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        as_multi_hot(torch.tensor([0, 3]), 3)
    torch.testing.assert_close(as_multi_hot(torch.tensor([2, 0]), 3),
                               torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]))


def test_transformation_term_on_an_output_without_images_names_the_problem():
    model = make_xprotonet()
    set_phase(model, "warm")
    trunk = model.features(model.normalize(torch.rand(2, 3, 16, 16)))
    with pytest.raises(ValueError, match="transformation loss needs the input images"):
        xprotonet_loss(model.forward_from_trunk(trunk), torch.tensor([0, 1]), model)
