"""XProtoNet model: pooling and similarity by hand, output contract, heads, last layer."""

import pytest
import torch

from prototypes import XProtoNet, localize
from prototypes.xprotonet import cosine_similarities, occurrence_pooling
from tests.prototypes.tiny_xprotonet import make_xprotonet


def test_occurrence_pooling_weights_each_latent_position_by_the_occurrence_map():
    occurrence = torch.tensor([[[[1.0, 0.0], [0.5, 0.0]],    # prototype 0
                                [[0.0, 0.0], [0.0, 2.0]]]])  # prototype 1: (1, 2, 2, 2)
    latent = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]],        # channel 0
                            [[10.0, 20.0], [30.0, 40.0]]]])  # channel 1: (1, 2, 2, 2)
    pooled = occurrence_pooling(occurrence, latent)
    # prototype 0: 1 * (1, 10) + 0.5 * (3, 30); prototype 1: 2 * (4, 40)
    torch.testing.assert_close(pooled, torch.tensor([[[2.5, 25.0], [8.0, 80.0]]]))


def test_cosine_similarity_matches_hand_computed_values():
    features = torch.tensor([[[3.0, 4.0], [1.0, 0.0]], [[0.0, 2.0], [-1.0, 0.0]]])  # (2, 2, 2)
    prototypes = torch.tensor([[4.0, 3.0], [1.0, 1.0]])
    expected = torch.tensor([[24 / 25, 1 / 2 ** 0.5], [3 / 5, -1 / 2 ** 0.5]])
    torch.testing.assert_close(cosine_similarities(features, prototypes), expected)


def test_cosine_similarity_of_a_zero_feature_vector_is_zero():
    similarity = cosine_similarities(torch.zeros(1, 1, 3), torch.ones(1, 3))
    assert similarity.item() == 0.0


def test_pooling_and_similarity_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="occurrence"):
        occurrence_pooling(torch.ones(1, 2, 2, 2), torch.ones(1, 3, 3, 3))
    with pytest.raises(ValueError, match="prototypes"):
        cosine_similarities(torch.ones(1, 2, 3), torch.ones(2, 4))


def test_output_contract_shapes():
    model = make_xprotonet()
    out = model(torch.rand(5, 3, 16, 16))
    assert out.logits.shape == (5, 3)
    assert out.similarity_maps.shape == (5, 6, 2, 2)
    assert out.occurrence_maps is out.similarity_maps
    assert out.similarities.shape == (5, 6)
    assert out.prototype_features.shape == (5, 6, 4)
    assert out.latent.shape == (5, 4, 2, 2)
    assert model.prototype_class_identity.shape == (6, 3)
    assert model.prototype_classes.tolist() == [0, 0, 1, 1, 2, 2]
    assert (out.similarity_maps > 0).all() and (out.similarity_maps < 1).all()


def test_forward_is_the_papers_pipeline_of_heads_pooling_cosine_and_class_sums():
    model = make_xprotonet()
    images = torch.rand(3, 3, 16, 16)
    out = model(images)
    trunk = model.features(model.normalize(images))
    latent = model.feature_module(trunk)
    occurrence = model.occurrence_module(trunk)
    torch.testing.assert_close(out.latent, latent)
    torch.testing.assert_close(out.similarity_maps, occurrence)
    torch.testing.assert_close(model.occurrence(images), occurrence)
    for b in range(3):
        for p in range(6):
            feature = (occurrence[b, p][None] * latent[b]).sum(dim=(1, 2))
            prototype = model.prototype_vectors[p]
            cosine = feature @ prototype / (feature.norm() * prototype.norm())
            torch.testing.assert_close(out.similarities[b, p], cosine)
    # own-class last layer, all weights 1: each class sums its two prototypes' similarities
    torch.testing.assert_close(out.logits, out.similarities.view(3, 3, 2).sum(dim=2))


def test_own_class_last_layer_ignores_weights_to_other_classes():
    model = make_xprotonet()
    images = torch.rand(2, 3, 16, 16)
    before = model(images).logits
    with torch.no_grad():
        model.last_layer.weight.add_(1 - model.prototype_class_identity.t())
    torch.testing.assert_close(model(images).logits, before)


def test_full_last_layer_starts_with_the_incorrect_class_connection():
    model = make_xprotonet(last_layer="full", incorrect_class_connection=-0.5)
    expected = torch.tensor([[1, 1, -0.5, -0.5, -0.5, -0.5],
                             [-0.5, -0.5, 1, 1, -0.5, -0.5],
                             [-0.5, -0.5, -0.5, -0.5, 1, 1]])
    torch.testing.assert_close(model.last_layer.weight.detach(), expected)
    out = model(torch.rand(2, 3, 16, 16))
    torch.testing.assert_close(out.logits, out.similarities @ expected.t())


def test_heads_are_add_on_layers_with_zero_biases_and_a_sigmoid_occurrence():
    model = make_xprotonet()
    assert set(model.add_on_layers) == {"feature", "occurrence"}
    occurrence = model.occurrence_module
    assert [type(m).__name__ for m in occurrence] == ["Conv2d", "ReLU", "Conv2d", "Sigmoid"]
    assert occurrence[0].out_channels == 4 and occurrence[2].out_channels == 6
    assert [type(m).__name__ for m in model.feature_module] == ["Conv2d", "ReLU", "Conv2d"]
    with_sigmoid = make_xprotonet(latent_activation="sigmoid")
    assert isinstance(with_sigmoid.feature_module[-1], torch.nn.Sigmoid)
    assert len(with_sigmoid.feature_module) == 4
    for module in model.add_on_layers.modules():
        if isinstance(module, torch.nn.Conv2d):
            assert (module.bias == 0).all()
    assert ((model.prototype_vectors >= 0) & (model.prototype_vectors < 1)).all()


def test_upsample_localization_upsamples_the_occurrence_map():
    model = make_xprotonet().eval()
    images = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        maps = model(images).occurrence_maps
    loc = localize(model, images, [1, 4], method="upsample")
    for row, prototype in enumerate([1, 4]):
        upsampled = torch.nn.functional.interpolate(maps[row, prototype][None, None], size=16,
                                                    mode="bicubic", align_corners=False)[0, 0]
        normalised = (upsampled - upsampled.min()) / (upsampled.max() - upsampled.min())
        torch.testing.assert_close(loc.maps[row], normalised)


@pytest.mark.parametrize("method, options", [
    ("receptive_field", {}), ("smoothgrad", {}), ("centre", {}), ("mdm", {"steps": 3}),
])
def test_localization_methods_work_unchanged_on_xprotonet(method, options):
    model = make_xprotonet(image_size=32)
    loc = localize(model, torch.rand(2, 3, 32, 32), [0, 5], method=method, **options)
    assert loc.maps.shape == (2, 32, 32) and loc.boxes.shape == (2, 4)
    assert loc.maps.min() >= 0 and loc.maps.max() <= 1


def test_default_is_a_densenet121_for_the_fourteen_findings():
    model = XProtoNet(image_size=64)
    assert model.backbone_name == "densenet121" and model.num_classes == 14
    assert model.num_prototypes == 14 * model.prototypes_per_class
    assert model.latent_size == (2, 2)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="last_layer"):
        make_xprotonet(last_layer="sparse")
    with pytest.raises(ValueError, match="latent_activation"):
        make_xprotonet(latent_activation="tanh")
    with pytest.raises(ValueError, match="prototypes_per_class"):
        make_xprotonet(prototypes_per_class=0)
    with pytest.raises(ValueError, match="mean and std"):
        make_xprotonet(std=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="images must be"):
        make_xprotonet()(torch.rand(2, 1, 16, 16))
